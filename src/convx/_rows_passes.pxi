# convx: the rows kernel (_rows.h): a dense convolution at unit stride and
# dilation, vectorised along the output rows, whose source rows outside the
# image are no terms (the input gradient of unpadded layers on small images,
# LeNet-like).  Included by _core.pyx.

def rows_max_width(Py_ssize_t itemsize):
    """The widest output row conv_rows takes on this CPU, for values of
    ``itemsize`` bytes: 3 vectors of 64 bytes at x86-64-v4, else 2 of 32."""
    return cvx_rows_max_width(itemsize)


def rows_scratch(Py_ssize_t Cg, Py_ssize_t Hs, Py_ssize_t Wp):
    """The scratch values conv_rows needs per thread: one group's channels
    of one image, each row padded to Wp, and the slack the kernel reads."""
    return Cg * Hs * Wp + CVX_ROWS_SLACK


cdef void _rows_item(const floating* src, const floating* wt, const floating* bias,
                     floating* out, floating* pad, Py_ssize_t Cg, Py_ssize_t Hs,
                     Py_ssize_t Ws, Py_ssize_t Wp, Py_ssize_t K, Py_ssize_t top,
                     Py_ssize_t left, Py_ssize_t groups, Py_ssize_t Fg, Py_ssize_t OH,
                     Py_ssize_t OW, Py_ssize_t chunks, Py_ssize_t item) noexcept nogil:
    """Filters f0..f1 (piece k of ``chunks``) of group g of image n, item =
    (n*groups + g)*chunks + k: the group's channels of the image padded
    along the width into ``pad``, then the kernel."""
    cdef Py_ssize_t k = item % chunks, ng = item // chunks
    cdef Py_ssize_t n = ng // groups, g = ng % groups
    cdef Py_ssize_t f0 = k * Fg // chunks, f1 = (k + 1) * Fg // chunks
    cdef Py_ssize_t plane = Hs * Wp, F = groups * Fg
    cdef const floating* b = NULL
    if f1 <= f0:
        return
    _pad_block(src + (n * groups + g) * Cg * Hs * Ws, Cg, Hs, Ws, pad, Hs, Wp, 0, left, 0, Hs,
               0, Wp, CVX_ROWS_SLACK)
    if bias != NULL:
        b = bias + g * Fg + f0
    wt = wt + (g * Fg + f0) * Cg * K * K
    out = out + (n * F + g * Fg + f0) * OH * OW
    if floating is float:
        cvx_rows_f32(pad, plane, Hs, Wp, Cg, wt, f1 - f0, K, K, top, b, out, OH, OW)
    else:
        cvx_rows_f64(pad, plane, Hs, Wp, Cg, wt, f1 - f0, K, K, top, b, out, OH, OW)


def conv_rows(const floating[:, :, :, ::1] src,   # IN  (N, groups*Cg, Hs, Ws)
              const floating[:, ::1] wt,          # IN  (F, Cg*K*K): F = groups*Fg
              const floating[::1] bias,           # IN  (F,), or None
              floating[:, :, :, ::1] out,         # OUT (N, F, OH, OW), all written
              floating[::1] work,                 # scratch: rows_scratch per thread
              Py_ssize_t K, Py_ssize_t top, Py_ssize_t left, Py_ssize_t groups,
              Py_ssize_t chunks, int nt, bint interruptible):
    """out[n, f, i, j] = bias[f] + sum over c, p, q of
    wt[f, (c*K + p)*K + q] * src[n, g*Cg + c, i + p - top, j + q - left]
    (f in group g), where a source row outside the image is no term and a
    source column outside it a zero: a K x K kernel (5 or 7) at unit
    stride and dilation, OH >= 4, OW at most rows_max_width.  Each item is
    one image's group and one of ``chunks`` pieces of its filters (_rows.h's
    order of the sums does not depend on them).  Returns False when
    interrupted."""
    cdef Py_ssize_t N = src.shape[0], Hs = src.shape[2], Ws = src.shape[3]
    cdef Py_ssize_t Cg = src.shape[1] // groups, Fg = out.shape[1] // groups
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], Wp = OW + K - 1
    cdef Py_ssize_t per = rows_scratch(Cg, Hs, Wp)
    cdef Py_ssize_t items = N * groups * chunks, it, tid
    cdef const floating* sp = _data4(src)
    cdef const floating* wp = &wt[0, 0]
    cdef const floating* b = _data_or_null(bias)
    cdef floating* op = &out[0, 0, 0, 0]
    cdef floating* scratch = &work[0]
    cdef const int* stop = _stop(interruptible)
    cdef cvx_team team = cvx_team_new()
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _rows_item(sp, wp, b, op, scratch, Cg, Hs, Ws, Wp, K, top, left, groups, Fg,
                           OH, OW, chunks, it)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop):
                _rows_item(sp, wp, b, op, scratch + tid * per, Cg, Hs, Ws, Wp, K, top,
                           left, groups, Fg, OH, OW, chunks, it)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
    return not CVX_STOPPED(stop)
