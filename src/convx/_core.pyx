# cython: language_level=3
"""The convx kernels.  This module computes only.

It does no checking: every shape, stride, padding and dtype is validated by the
Python layer (``convx._engine``) before a kernel is called, and the kernels run
with bounds checking off (``setup.py``; ``CONVX_DEBUG=1`` turns it back on).
Outputs and scratch buffers are allocated by the caller (a serial call whose
scratch is small may pass none: the kernel then uses its stack); no kernel
creates a Python object, and each releases the GIL for its whole run.

Layout and formula
------------------
All passes are 2-D, NCHW; 1-D convolution is the case H = 1.  With
x of shape (N, C, H, W), w of shape (F, C // G, KH, KW) and G groups, the
forward pass is the cross-correlation

    out[n, f, i, j] = sum_{c, p, q} w[f, c, p, q]
                      * x[n, g*Cg + c, i*sh - pt + p*dh, j*sw - pl + q*dw]

with g = f // (F // G), Cg = C // G, and x read as zero outside
0 <= row < H, 0 <= col < W.  That zero border is the padding: ``pt`` rows above
and ``pl`` columns to the left; the rows below and columns to the right are
implied by the output size (OH, OW), so asymmetric padding costs nothing.
Padding is never materialised: ``_im2col`` writes zeros where a tap falls
outside the image.

Each pass has two implementations; the engine picks one per call.

**im2col + GEMM** (any stride).  One image and one group at a time, ``col``
has shape (Cg*KH*KW, OH*OW), row
``(c*KH + p)*KW + q`` holding the input seen by tap (c, p, q) at each output
position:

    forward       out_g  (Fg, P)  =  w_g (Fg, K)   @ col (K, P)
    input grad    dcol   (K, P)   =  w_g.T (K, Fg) @ g_g (Fg, P);  col2im(dcol) -> dx
    weight grad   dw_g.T (K, Fg) +=  col (K, P)    @ g_g.T (P, Fg)

BLAS is column-major and our arrays are row-major, so each product is issued
as its transpose (see ``_gemm``).

**Direct** (unit horizontal stride, ``conv_direct`` and
``conv_weight_grad_direct``).  Each image is copied with its zero border into
the thread's scratch (``_pad_into``), and the SIMD micro-kernels of
``_direct.h`` sum over the taps straight from it: no column matrix, no packing.
At stride 1 the input gradient is the same forward sum over the padded output
gradient with the kernel flipped, so ``conv_direct`` serves both.

Threads: ``work.shape[0]`` is the number of threads.  One runs the batch
serially; more run one image at a time per OpenMP thread, each with its own
scratch (and, for the weight gradient, its own accumulator).
"""

from libc.stdint cimport int64_t
from libc.string cimport memset

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef extern from *:
    """
    #ifdef _OPENMP
    #define CONVX_OPENMP 1
    #else
    #define CONVX_OPENMP 0
    #endif
    """
    const int CONVX_OPENMP


def openmp_enabled():
    """True when this extension was compiled with OpenMP."""
    return bool(CONVX_OPENMP)


ctypedef fused pad_t:
    float
    double
    int64_t


cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       const floating* a, int lda,
                       const floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    """Column-major C (m, n) = op(A) @ op(B) + beta * C, with alpha = 1."""
    cdef floating alpha = 1
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*> a, &lda,
              <float*> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*> a, &lda,
              <double*> b, &ldb, &beta, c, &ldc)


cdef inline const floating* _data_or_null(const floating[::1] a) noexcept:
    """``&a[0]``, or NULL for an absent (None) array such as a missing bias."""
    if a is None:
        return NULL
    return &a[0]


cdef inline Py_ssize_t _first_valid(Py_ssize_t offset, Py_ssize_t stride,
                                    Py_ssize_t n_out) noexcept nogil:
    """Smallest j >= 0 with j*stride + offset >= 0, clipped to n_out."""
    cdef Py_ssize_t j = 0
    if offset < 0:
        j = (-offset + stride - 1) // stride
    return j if j < n_out else n_out


cdef inline Py_ssize_t _end_valid(Py_ssize_t offset, Py_ssize_t stride,
                                  Py_ssize_t size, Py_ssize_t n_out) noexcept nogil:
    """One past the largest j with j*stride + offset <= size - 1, clipped to n_out."""
    cdef Py_ssize_t last = size - 1 - offset
    if last < 0:
        return 0
    last = last // stride + 1
    return last if last < n_out else n_out


# The im2col inner loops work on raw row pointers taken from the memoryviews:
# with a unit stride the copy and the scatter-add are plain loops GCC
# vectorises (rows are short: a memcpy call per row costs more than the copy),
# which indexing the 2-D memoryviews element by element hid.
# Pointers are only taken to cells inside the arrays (CONVX_DEBUG checks it).
# The column matrix is a pointer itself, since it may live on the kernel's
# stack (STACK_SCRATCH): its bounds are the sanitizer build's to check.

cdef void _im2col(const floating[:, :, ::1] x,      # IN  (Cg, H, W)
                  floating* col,                     # OUT (Cg*KH*KW, OH*OW), C order
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t c, p, q, i, j, row, off_w, j0, j1, r
    cdef floating* dst
    cdef const floating* src
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = (c * KH + p) * KW + q
                off_w = q * dw - pl
                j0 = _first_valid(off_w, sw, OW)
                j1 = _end_valid(off_w, sw, W, OW)
                if j1 < j0:
                    j1 = j0
                for i in range(OH):
                    dst = col + (row * OH + i) * OW
                    r = i * sh - pt + p * dh
                    if r < 0 or r >= H or j0 == j1:
                        for j in range(OW):
                            dst[j] = 0
                        continue
                    for j in range(j0):
                        dst[j] = 0
                    src = &x[c, r, j0 * sw + off_w]
                    dst += j0
                    if sw == 1:
                        for j in range(j1 - j0):
                            dst[j] = src[j]
                    else:
                        for j in range(j1 - j0):
                            dst[j] = src[j * sw]
                    dst -= j0
                    for j in range(j1, OW):
                        dst[j] = 0


cdef void _col2im_add(const floating* col,          # IN  (Cg*KH*KW, OH*OW), C order
                      floating[:, :, ::1] dx,        # IN/OUT (Cg, H, W), accumulated into
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    """The adjoint of ``_im2col``: every column entry is added back to the
    input cell it was read from; entries that were padding are dropped."""
    cdef Py_ssize_t C = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t c, p, q, i, j, row, off_w, j0, j1, r
    cdef floating* dst
    cdef const floating* src
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = (c * KH + p) * KW + q
                off_w = q * dw - pl
                j0 = _first_valid(off_w, sw, OW)
                j1 = _end_valid(off_w, sw, W, OW)
                if j1 <= j0:
                    continue
                for i in range(OH):
                    r = i * sh - pt + p * dh
                    if r < 0 or r >= H:
                        continue
                    src = col + (row * OH + i) * OW + j0
                    dst = &dx[c, r, j0 * sw + off_w]
                    if sw == 1:
                        for j in range(j1 - j0):
                            dst[j] += src[j]
                    else:
                        for j in range(j1 - j0):
                            dst[j * sw] += src[j]


cdef struct Geom:
    Py_ssize_t groups, Cg, Fg, K, P     # group sizes, taps per group, output positions
    Py_ssize_t KH, KW, OH, OW
    Py_ssize_t sh, sw, dh, dw, pt, pl
    bint pointwise                      # 1x1 kernel, stride 1, no padding: col is x


cdef Geom _geom(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F,
                Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups) noexcept:
    cdef Geom G
    G.groups = groups
    G.Cg = C // groups
    G.Fg = F // groups
    G.K = G.Cg * KH * KW
    G.P = OH * OW
    G.KH, G.KW, G.OH, G.OW = KH, KW, OH, OW
    G.sh, G.sw, G.dh, G.dw, G.pt, G.pl = sh, sw, dh, dw, pt, pl
    G.pointwise = KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 \
        and OH == H and OW == W
    return G


# --------------------------------------------------------------------------
# The direct path (unit horizontal stride): pad one image into the thread's
# scratch, then run the SIMD micro-kernel of _direct.h over it.
# --------------------------------------------------------------------------

cdef extern from "_direct.h" nogil:
    void cvx_direct_f32(const float* xpad, Py_ssize_t row_step, const float* wt,
                        const Py_ssize_t* off, Py_ssize_t K, Py_ssize_t F, const float* bias,
                        float* out, Py_ssize_t OH, Py_ssize_t OW)
    void cvx_direct_f64(const double* xpad, Py_ssize_t row_step, const double* wt,
                        const Py_ssize_t* off, Py_ssize_t K, Py_ssize_t F, const double* bias,
                        double* out, Py_ssize_t OH, Py_ssize_t OW)
    void cvx_wgrad_f32(const float* xpad, Py_ssize_t row_step, const Py_ssize_t* off,
                       Py_ssize_t K, const float* g, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                       float* dw)
    void cvx_wgrad_f64(const double* xpad, Py_ssize_t row_step, const Py_ssize_t* off,
                       Py_ssize_t K, const double* g, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                       double* dw)
    int cvx_direct_fast()


def direct_fast():
    """True when the direct kernels run vectorised on this CPU (see _direct.h)."""
    return bool(cvx_direct_fast())


cdef void _pad_into(const floating[:, :, ::1] src,   # IN  (C, H, W)
                    floating[::1] dst,                # OUT (C*Hp*Wp + slack,), all written
                    Py_ssize_t Hp, Py_ssize_t Wp,
                    Py_ssize_t top, Py_ssize_t left) noexcept nogil:
    """dst[c, r, s] = src[c, r - top, s - left], zero outside src; a negative
    top or left crops instead of padding.  The slack after the image is zeroed."""
    cdef Py_ssize_t C = src.shape[0], H = src.shape[1], W = src.shape[2]
    cdef Py_ssize_t c, r, s, i, s0, s1, base
    s0 = left if left > 0 else 0                 # first column that holds data
    s1 = W + left if W + left < Wp else Wp       # one past the last
    if s1 < s0:
        s1 = s0
    for c in range(C):
        for r in range(Hp):
            base = (c * Hp + r) * Wp
            i = r - top
            if i < 0 or i >= H or s0 == s1:
                for s in range(Wp):
                    dst[base + s] = 0
                continue
            for s in range(s0):
                dst[base + s] = 0
            for s in range(s0, s1):
                dst[base + s] = src[c, i, s - left]
            for s in range(s1, Wp):
                dst[base + s] = 0
    for s in range(C * Hp * Wp, dst.shape[0]):
        dst[s] = 0


cdef inline void _direct(const floating* xpad, Py_ssize_t row_step, const floating* wt,
                         const Py_ssize_t* off, Py_ssize_t K, Py_ssize_t F,
                         const floating* bias, floating* out,
                         Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    if floating is float:
        cvx_direct_f32(xpad, row_step, wt, off, K, F, bias, out, OH, OW)
    else:
        cvx_direct_f64(xpad, row_step, wt, off, K, F, bias, out, OH, OW)


cdef void _direct_image(const floating[:, :, ::1] src,    # IN  (groups*Cs, Hs, Ws)
                        const floating[:, :, :, ::1] wt,  # IN  (groups, blocks, K, FB)
                        const Py_ssize_t[::1] off,        # IN  (K,)
                        const floating* bias,             # IN  (groups*Fo,) or NULL
                        floating[:, :, ::1] out,          # OUT (groups*Fo, OH, OW)
                        floating[::1] pad,                # scratch (Cs*Hp*Wp + slack,)
                        Py_ssize_t groups, Py_ssize_t Hp, Py_ssize_t Wp,
                        Py_ssize_t top, Py_ssize_t left, Py_ssize_t row_step) noexcept nogil:
    cdef Py_ssize_t g, Cs = src.shape[0] // groups, Fo = out.shape[0] // groups
    cdef const floating* b = NULL
    for g in range(groups):
        _pad_into(src[g * Cs:(g + 1) * Cs], pad, Hp, Wp, top, left)
        if bias != NULL:
            b = bias + g * Fo
        _direct(&pad[0], row_step, &wt[g, 0, 0, 0], &off[0], wt.shape[2], Fo, b,
                &out[g * Fo, 0, 0], out.shape[1], out.shape[2])


def conv_direct(const floating[:, :, :, ::1] src,   # IN  (N, groups*Cs, Hs, Ws)
                const floating[:, :, :, ::1] wt,    # IN  (groups, blocks, K, FB)
                const Py_ssize_t[::1] off,          # IN  (K,)
                const floating[::1] bias,           # IN  (groups*Fo,), or None
                floating[:, :, :, ::1] out,         # OUT (N, groups*Fo, OH, OW), all written
                floating[:, ::1] work,              # scratch (threads, Cs*Hp*Wp + slack)
                Py_ssize_t groups, Py_ssize_t Hp, Py_ssize_t Wp,
                Py_ssize_t top, Py_ssize_t left, Py_ssize_t row_step):
    """The direct pass: each image of ``src`` is padded (or cropped) to
    (Cs, Hp, Wp) at offset (top, left), then
    out[n, f, i, j] = bias[f] + sum_k wt[g, f // FB, k, f % FB] * pad[i*row_step + j + off[k]].
    It is the forward pass (src = x) and, at stride 1, the input gradient
    (src = grad_output, wt = the flipped, transposed weight)."""
    cdef Py_ssize_t n, tid, nt = work.shape[0]
    cdef const floating* b = _data_or_null(bias)
    if nt == 1:
        with nogil:
            for n in range(src.shape[0]):
                _direct_image(src[n], wt, off, b, out[n], work[0], groups, Hp, Wp,
                              top, left, row_step)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            for n in prange(src.shape[0], schedule="static"):
                _direct_image(src[n], wt, off, b, out[n], work[tid], groups, Hp, Wp,
                              top, left, row_step)


cdef void _wgrad_direct_image(const floating[:, :, ::1] x,      # IN  (groups*Cs, H, W)
                              const floating[:, :, ::1] gout,   # IN  (groups*Fo, OH, OW)
                              const Py_ssize_t[::1] off,        # IN  (K,)
                              floating* acc,                    # IN/OUT (groups*Fo, Cs*KH*KW)
                              floating[::1] pad,                # scratch (Cs*Hp*Wp + slack,)
                              Py_ssize_t groups, Py_ssize_t Hp, Py_ssize_t Wp,
                              Py_ssize_t top, Py_ssize_t left, Py_ssize_t row_step) noexcept nogil:
    cdef Py_ssize_t g, Cs = x.shape[0] // groups, Fo = gout.shape[0] // groups
    for g in range(groups):
        _pad_into(x[g * Cs:(g + 1) * Cs], pad, Hp, Wp, top, left)
        if floating is float:
            cvx_wgrad_f32(&pad[0], row_step, &off[0], off.shape[0], &gout[g * Fo, 0, 0], Fo,
                          gout.shape[1], gout.shape[2], acc + g * Fo * off.shape[0])
        else:
            cvx_wgrad_f64(&pad[0], row_step, &off[0], off.shape[0], &gout[g * Fo, 0, 0], Fo,
                          gout.shape[1], gout.shape[2], acc + g * Fo * off.shape[0])


def conv_weight_grad_direct(const floating[:, :, :, ::1] x,      # IN  (N, C, H, W)
                            const floating[:, :, :, ::1] gout,   # IN  (N, F, OH, OW)
                            const Py_ssize_t[::1] off,           # IN  (K,)
                            floating[:, :, :, ::1] dw,           # OUT (F, Cg, KH, KW)
                            floating[:, ::1] work,               # scratch (threads, Cg*Hp*Wp + slack + F*Cg*KH*KW)
                            Py_ssize_t groups, Py_ssize_t Hp, Py_ssize_t Wp,
                            Py_ssize_t top, Py_ssize_t left, Py_ssize_t row_step):
    """dw = the weight gradient, by the direct kernel (unit horizontal stride).

    Each thread's scratch row holds its padded image and, after it, its
    accumulator (the last dw.size values): thread t sums its images' part
    there, then the threads' parts are added, in thread order, into dw."""
    cdef Py_ssize_t n, tid, nt = work.shape[0], i, t
    cdef Py_ssize_t size = dw.shape[0] * dw.shape[1] * dw.shape[2] * dw.shape[3]
    cdef Py_ssize_t plen = work.shape[1] - size, step = work.shape[1]
    cdef floating s
    cdef floating* acc = &work[0, plen]     # thread t's accumulator: acc + t * step
    cdef floating* out = &dw[0, 0, 0, 0]
    if nt == 1:
        with nogil:
            memset(acc, 0, size * sizeof(floating))
            for n in range(x.shape[0]):
                _wgrad_direct_image(x[n], gout[n], off, acc, work[0, :plen], groups, Hp, Wp,
                                    top, left, row_step)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            memset(acc + tid * step, 0, size * sizeof(floating))
            for n in prange(x.shape[0], schedule="static"):
                _wgrad_direct_image(x[n], gout[n], off, acc + tid * step, work[tid, :plen],
                                    groups, Hp, Wp, top, left, row_step)
    with nogil:
        for i in range(size):
            s = acc[i]
            for t in range(1, nt):
                s = s + acc[t * step + i]
            out[i] = s


# --------------------------------------------------------------------------
# One image.  The kernels below run these over the batch, serially or one
# image per OpenMP thread; ``col`` is the calling thread's scratch.
# --------------------------------------------------------------------------

cdef void _forward_image(const floating[:, :, ::1] x,      # IN  (C, H, W)
                         const floating[:, :, :, ::1] w,   # IN  (F, Cg, KH, KW)
                         const floating* bias,             # IN  (F,) or NULL
                         floating[:, :, ::1] out,          # OUT (F, OH, OW)
                         floating* col,                    # scratch (K, P), C order
                         const Geom* G) noexcept nogil:
    cdef Py_ssize_t g, f, i, j
    cdef floating beta = 0
    cdef const floating* b
    if bias != NULL:
        beta = 1
        for f in range(out.shape[0]):
            for i in range(G.OH):
                for j in range(G.OW):
                    out[f, i, j] = bias[f]
    for g in range(G.groups):
        if G.pointwise:
            b = &x[g * G.Cg, 0, 0]
        else:
            _im2col(x[g * G.Cg:(g + 1) * G.Cg], col, G.KH, G.KW, G.OH, G.OW,
                    G.sh, G.sw, G.dh, G.dw, G.pt, G.pl)
            b = col
        _gemm(c'N', c'N', <int> G.P, <int> G.Fg, <int> G.K,
              b, <int> G.P, &w[g * G.Fg, 0, 0, 0], <int> G.K,
              beta, &out[g * G.Fg, 0, 0], <int> G.P)


cdef void _input_grad_image(const floating[:, :, ::1] gout,   # IN  (F, OH, OW)
                            const floating[:, :, :, ::1] w,   # IN  (F, Cg, KH, KW)
                            floating[:, :, ::1] dx,           # OUT (C, H, W), zeroed
                            floating* col,                    # scratch (K, P), C order
                            const Geom* G) noexcept nogil:
    cdef Py_ssize_t g
    for g in range(G.groups):
        if G.pointwise:
            _gemm(c'N', c'T', <int> G.P, <int> G.K, <int> G.Fg,
                  &gout[g * G.Fg, 0, 0], <int> G.P, &w[g * G.Fg, 0, 0, 0], <int> G.K,
                  0, &dx[g * G.Cg, 0, 0], <int> G.P)
        else:
            _gemm(c'N', c'T', <int> G.P, <int> G.K, <int> G.Fg,
                  &gout[g * G.Fg, 0, 0], <int> G.P, &w[g * G.Fg, 0, 0, 0], <int> G.K,
                  0, col, <int> G.P)
            _col2im_add(col, dx[g * G.Cg:(g + 1) * G.Cg], G.KH, G.KW, G.OH, G.OW,
                        G.sh, G.sw, G.dh, G.dw, G.pt, G.pl)


cdef void _weight_grad_image(const floating[:, :, ::1] x,      # IN  (C, H, W)
                             const floating[:, :, ::1] gout,   # IN  (F, OH, OW)
                             floating* acc,                    # IN/OUT (groups, K, Fg), added to
                             floating* col,                    # scratch (K, P), C order
                             const Geom* G) noexcept nogil:
    cdef Py_ssize_t g
    cdef const floating* a
    for g in range(G.groups):
        if G.pointwise:
            a = &x[g * G.Cg, 0, 0]
        else:
            _im2col(x[g * G.Cg:(g + 1) * G.Cg], col, G.KH, G.KW, G.OH, G.OW,
                    G.sh, G.sw, G.dh, G.dw, G.pt, G.pl)
            a = col
        _gemm(c'T', c'N', <int> G.Fg, <int> G.K, <int> G.P,
              &gout[g * G.Fg, 0, 0], <int> G.P, a, <int> G.P,
              1, acc + g * G.K * G.Fg, <int> G.Fg)


# --------------------------------------------------------------------------
# The kernels.  ``work.shape[0]`` is the number of threads: 1 runs the batch
# serially; more run one image at a time per OpenMP thread, each thread with
# its own scratch.  The caller limits BLAS to one thread around a parallel
# call (convx._threads), so the two thread pools never compete.
#
# ``work=None`` runs serially with a scratch of STACK_SCRATCH values on the
# kernel's stack: the caller may pass it when the scratch fits, which spares
# a tiny call an allocation (the cost of a call, not of its arithmetic).
# --------------------------------------------------------------------------

cdef enum:
    _STACK_SCRATCH = 512

STACK_SCRATCH = _STACK_SCRATCH



def conv_forward(const floating[:, :, :, ::1] x,     # IN  (N, C, H, W)
                 const floating[:, :, :, ::1] w,     # IN  (F, C // G, KH, KW)
                 const floating[::1] bias,           # IN  (F,), or None
                 floating[:, :, :, ::1] out,         # OUT (N, F, OH, OW), every cell written
                 floating[:, :, ::1] work,           # scratch (threads, K, OH*OW) or None
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                 Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups):
    """out = conv(x, w) + bias."""
    cdef Geom G = _geom(x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3],
                        out.shape[2], out.shape[3], sh, sw, dh, dw, pt, pl, groups)
    cdef Py_ssize_t n, tid, nt = 1 if work is None else work.shape[0]
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* col = &stack[0] if work is None else &work[0, 0, 0]
    cdef const floating* b = _data_or_null(bias)
    if nt == 1:
        with nogil:
            for n in range(x.shape[0]):
                _forward_image(x[n], w, b, out[n], col, &G)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            for n in prange(x.shape[0], schedule="static"):
                _forward_image(x[n], w, b, out[n], &work[tid, 0, 0], &G)


def conv_input_grad(const floating[:, :, :, ::1] gout,  # IN  (N, F, OH, OW)
                    const floating[:, :, :, ::1] w,     # IN  (F, C // G, KH, KW)
                    floating[:, :, :, ::1] dx,          # OUT (N, C, H, W), must arrive zeroed
                    floating[:, :, ::1] work,           # scratch (threads, K, OH*OW) or None
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups):
    """dx = the gradient of sum(conv(x, w) * gout) with respect to x."""
    cdef Geom G = _geom(dx.shape[1], dx.shape[2], dx.shape[3], w.shape[0], w.shape[2], w.shape[3],
                        gout.shape[2], gout.shape[3], sh, sw, dh, dw, pt, pl, groups)
    cdef Py_ssize_t n, tid, nt = 1 if work is None else work.shape[0]
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* col = &stack[0] if work is None else &work[0, 0, 0]
    if nt == 1:
        with nogil:
            for n in range(dx.shape[0]):
                _input_grad_image(gout[n], w, dx[n], col, &G)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            for n in prange(dx.shape[0], schedule="static"):
                _input_grad_image(gout[n], w, dx[n], &work[tid, 0, 0], &G)


def conv_weight_grad(const floating[:, :, :, ::1] x,      # IN  (N, C, H, W)
                     const floating[:, :, :, ::1] gout,   # IN  (N, F, OH, OW)
                     floating[:, :, :, ::1] dw,           # OUT (F, C // G, KH, KW)
                     floating[:, :, ::1] work,            # scratch (threads, K + R, OH*OW) or None
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw_,
                     Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups):
    """dw = the gradient of sum(conv(x, w) * gout) with respect to w.

    Each thread's scratch holds its im2col matrix in its first K rows and,
    from row K on, its accumulator (R rows hold groups*K*Fg values): thread t
    sums its images' part there, transposed, acc[t, g, (c, p, q), f] being its
    part of the gradient of w[g*Fg + f, c, p, q].  Then the threads' parts are
    added, in thread order, into dw."""
    cdef Geom G = _geom(x.shape[1], x.shape[2], x.shape[3], dw.shape[0], dw.shape[2], dw.shape[3],
                        gout.shape[2], gout.shape[3], sh, sw, dh, dw_, pt, pl, groups)
    cdef Py_ssize_t n, tid, nt = 1 if work is None else work.shape[0], g, kk, f, t
    cdef Py_ssize_t size = G.groups * G.K * G.Fg
    cdef Py_ssize_t step = 0 if work is None else work.shape[1] * work.shape[2]
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* col = &stack[0] if work is None else &work[0, 0, 0]
    cdef floating* acc = col + G.K * G.P   # thread t's accumulator: acc + t * step
    cdef floating s
    cdef floating* out = &dw[0, 0, 0, 0]
    if nt == 1:
        with nogil:
            memset(acc, 0, size * sizeof(floating))
            for n in range(x.shape[0]):
                _weight_grad_image(x[n], gout[n], acc, col, &G)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            memset(acc + tid * step, 0, size * sizeof(floating))
            for n in prange(x.shape[0], schedule="static"):
                _weight_grad_image(x[n], gout[n], acc + tid * step, col + tid * step, &G)
    with nogil:
        for g in range(G.groups):
            for f in range(G.Fg):
                for kk in range(G.K):
                    s = acc[(g * G.K + kk) * G.Fg + f]
                    for t in range(1, nt):
                        s = s + acc[t * step + (g * G.K + kk) * G.Fg + f]
                    out[(g * G.Fg + f) * G.K + kk] = s


def pad(const pad_t[:, :, :, ::1] x,    # IN  (N, C, H, W)
        pad_t[:, :, :, ::1] out,        # OUT (N, C, H + pt + pb, W + pl + pr)
        Py_ssize_t pt, Py_ssize_t pl):
    """Copy x into out at offset (pt, pl) and zero the border."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t n, c, i, j
    with nogil:
        for n in range(N):
            for c in range(C):
                for i in range(OH):
                    if i < pt or i >= pt + H:
                        for j in range(OW):
                            out[n, c, i, j] = 0
                        continue
                    for j in range(pl):
                        out[n, c, i, j] = 0
                    for j in range(W):
                        out[n, c, i, pl + j] = x[n, c, i - pt, j]
                    for j in range(pl + W, OW):
                        out[n, c, i, j] = 0
