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

    out[n, f, i, j] = bias[f] + sum_{c, p, q} w[f, c, p, q]
                      * x[n, g*Cg + c, i*sh - pt + p*dh, j*sw - pl + q*dw]

with g = f // (F // G), Cg = C // G, and x read as zero outside
0 <= row < H, 0 <= col < W.  That zero border is the padding: ``pt`` rows above
and ``pl`` columns to the left; the rows below and columns to the right are
implied by the output size (OH, OW), so asymmetric padding costs nothing.
The forward pass and the weight gradient multiply the border's zeros like any
other value (so 0 * inf = NaN there, as with an explicitly padded input); the
input gradient sums over the output positions that exist, as its definition
says (docs/reliability.md, "Non-finite values").

Each pass has two implementations; the engine picks one per call.

**im2col + GEMM** (any stride), by the matrix product of ``_gemm.h``, which
reads the image as its im2col matrix (rows ``(c*KH + p)*KW + q``, one column
per output position) straight into its packed panels:

    forward       out_g  (Fg, P)  =  w_g (Fg, K)     @ col (K, P)
    input grad    dcol   (K, P)   =  w_g.T (K, Fg)   @ g_g (Fg, P);  col2im(dcol) -> dx
    weight grad   dw_g   (Fg, K) +=  g_g (Fg, P)     @ col.T (P, K)

**Direct** (unit horizontal stride, ``conv_direct`` and
``conv_weight_grad_direct``).  The rows and columns of the image a piece of
work needs are copied with their zero border into the thread's scratch
(``_pad_block``), and
the SIMD micro-kernels of ``_direct.h`` sum over the taps straight from it: no
column matrix, no packing.  At stride 1 the input gradient is the same
forward sum over the padded output gradient with the kernel flipped, so
``conv_direct`` serves both.

Work and threads
----------------
Each kernel splits its call into items, (image, group, block), where a block
is a range of output positions (GEMM), of output rows and columns (direct) or
of input channels (the GEMM input gradient), sized by the caller.  ``nt`` threads share
the items in a static schedule (``nt == 1`` runs them in order on the calling
thread); each thread has its own slice of ``work``, after a slice all threads
share (the packed weights).  Every element of the forward pass and of the
input gradient is summed by one item in an order that does not depend on the
blocks or on the threads, so those results are the same bits for any ``nt``.
The weight gradient sums over images and positions: each thread adds its
items into its own accumulator, and the accumulators are added in thread
order at the end (the same bits for the same ``nt``).

Between items, and between the blocks of a matrix product, every thread
checks the stop flag (``_runtime.h``); when the call is interrupted the
kernel returns False with its output incomplete, and the caller raises.
"""

from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid


cdef extern from *:
    """
    #ifdef _OPENMP
    #define CONVX_OPENMP 1
    #else
    #define CONVX_OPENMP 0
    #endif
    """
    const int CONVX_OPENMP


cdef extern from "_runtime.h" nogil:
    int cvx_isa
    int cvx_never
    int cvx_interrupted
    int cvx_user_threads
    int cvx_default_threads
    int cvx_max_threads
    int cvx_forked
    int cvx_sigint_installed
    size_t cvx_stack_size
    int cvx_get_threads()
    int cvx_team_size(int want)
    int cvx_interrupt_begin()
    void cvx_interrupt_end()
    void cvx_runtime_init()
    int cvx_isa_detect()
    int CVX_STOPPED(const int* stop)
    unsigned long long cvx_seen
    void cvx_saw(int tid)


cdef extern from "_gemm.h" nogil:
    enum:
        CVX_DENSE
        CVX_ROWS
        CVX_PREPACKED
        CVX_IM2COL
        CVX_IM2COL_T
        CVX_MR
        CVX_KC
        CVX_MC
        CVX_NC
        CVX_NR_MAX
    ctypedef struct cvx_operand:
        int kind
        const void* p
        Py_ssize_t rs, cs
        Py_ssize_t H, W, KH, KW, OW, sh, sw, dh, dw, pt, pl
        Py_ssize_t p0
    Py_ssize_t cvx_first_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t n)
    Py_ssize_t cvx_end_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size, Py_ssize_t n)
    void cvx_im2col_f32(const cvx_operand* X, Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t p0,
                        Py_ssize_t np, float* dst, Py_ssize_t ld)
    void cvx_im2col_f64(const cvx_operand* X, Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t p0,
                        Py_ssize_t np, double* dst, Py_ssize_t ld)
    void cvx_prepack_f32(const cvx_operand* A, Py_ssize_t M, Py_ssize_t K, float* dst)
    void cvx_prepack_f64(const cvx_operand* A, Py_ssize_t M, Py_ssize_t K, double* dst)
    int cvx_gemm_f32(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                     const cvx_operand* B, float* abuf, float* bbuf, float* C, Py_ssize_t ldc,
                     int accumulate, const float* bias, const int* stop)
    int cvx_gemm_f64(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                     const cvx_operand* B, double* abuf, double* bbuf, double* C, Py_ssize_t ldc,
                     int accumulate, const double* bias, const int* stop)


cdef extern from "_direct.h" nogil:
    void cvx_direct_f32(const float* xpad, Py_ssize_t row_step, const float* wt,
                        const Py_ssize_t* off, Py_ssize_t K, Py_ssize_t F, const float* bias,
                        float* out, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t i0, Py_ssize_t i1,
                        Py_ssize_t ja, Py_ssize_t jb)
    void cvx_direct_f64(const double* xpad, Py_ssize_t row_step, const double* wt,
                        const Py_ssize_t* off, Py_ssize_t K, Py_ssize_t F, const double* bias,
                        double* out, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t i0, Py_ssize_t i1,
                        Py_ssize_t ja, Py_ssize_t jb)
    void cvx_wgrad_f32(const float* xpad, Py_ssize_t row_step, const Py_ssize_t* off,
                       Py_ssize_t K, const float* g, Py_ssize_t gs, Py_ssize_t grs, Py_ssize_t F,
                       Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t ja, Py_ssize_t jb, float* dw)
    void cvx_wgrad_f64(const double* xpad, Py_ssize_t row_step, const Py_ssize_t* off,
                       Py_ssize_t K, const double* g, Py_ssize_t gs, Py_ssize_t grs, Py_ssize_t F,
                       Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t ja, Py_ssize_t jb, double* dw)
    int cvx_direct_fast()


cvx_runtime_init()


# --------------------------------------------------------------------------
# The process-level settings of _runtime.h, for convx._threads and the tests.
# --------------------------------------------------------------------------

def openmp_enabled():
    """True when this extension was compiled with OpenMP."""
    return bool(CONVX_OPENMP)


def configure_threads(int default, int maximum, size_t stack_size):
    """Set the default thread count, its bound (the CPUs the process may use)
    and the stack size libgomp gives its threads (0: the system's default)."""
    global cvx_default_threads, cvx_max_threads, cvx_stack_size
    cvx_default_threads = default
    cvx_max_threads = maximum
    cvx_stack_size = stack_size


def set_user_threads(int n):
    """convx.set_num_threads: ``n`` threads per call, or 0 for the default."""
    global cvx_user_threads
    cvx_user_threads = n


def user_threads():
    """What set_user_threads last set (0: the default)."""
    return cvx_user_threads


def get_threads():
    """The threads a call may use now: 1 in a forked child."""
    return cvx_get_threads()


def forked():
    """True in a child of fork() (made after convx was imported)."""
    return bool(cvx_forked)


def isa():
    """The instruction-set level the SIMD kernels run at: 4 (x86-64-v4),
    3 (x86-64-v3) or 1 (the baseline)."""
    return cvx_isa


def set_isa(int level):
    """Run the SIMD kernels at ``level`` at most (the CPU's own at most); for
    tests, which check the baseline kernels on any machine.  Returns the level
    now in force."""
    global cvx_isa
    cdef int best = cvx_isa_detect()
    cvx_isa = level if level < best else best
    return cvx_isa


def direct_fast():
    """True when the direct kernels run vectorised on this CPU (see _direct.h)."""
    return bool(cvx_direct_fast())


def interrupt_begin():
    """Chain convx's SIGINT handler in front of the current one, for a call
    from the main thread; returns whether one was installed."""
    return bool(cvx_interrupt_begin())


def interrupt_end():
    """Put the SIGINT handler that interrupt_begin found back."""
    cvx_interrupt_end()


def sigint_chained():
    """True while convx's SIGINT handler is chained in front of Python's (only
    during a long call from the main thread)."""
    return bool(cvx_sigint_installed)


cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1


def check_signals():
    """Run the Python handlers of pending signals (a KeyboardInterrupt raises
    here), then forget that a kernel was interrupted."""
    global cvx_interrupted
    PyErr_CheckSignals()
    cvx_interrupted = 0


cdef inline const int* _stop(bint interruptible) noexcept nogil:
    return &cvx_interrupted if interruptible else &cvx_never


cdef inline int _team(int nt) noexcept nogil:
    """The threads a parallel region may start: libgomp exits the process when
    it cannot create one, so ask for no more than cvx_team_size found."""
    global cvx_seen
    nt = cvx_team_size(nt) if nt > 1 and CONVX_OPENMP else 1
    cvx_seen = 1 if nt == 1 else 0   # the team's threads mark themselves
    return nt


def threads_seen():
    """How many threads ran items in the last kernel call (from any Python
    thread): a diagnostic for the tests."""
    return bin(cvx_seen).count("1")


ctypedef fused pad_t:
    float
    double
    int64_t


cdef inline const floating* _data_or_null(const floating[::1] a) noexcept:
    """``&a[0]``, or NULL for an absent (None) array such as a missing bias."""
    if a is None:
        return NULL
    return &a[0]


cdef inline const floating* _data4(const floating[:, :, :, ::1] a) noexcept:
    """``&a[0, 0, 0, 0]``, or NULL for an empty array: an empty input with
    padding still has an output (of the border's zeros), and its data is
    never read."""
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    return (n + m - 1) // m * m


cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------

cdef struct Geom:
    Py_ssize_t C, H, W, F, OH, OW, P     # input channels and size, filters, output size
    Py_ssize_t groups, Cg, Fg, K         # group sizes; K = Cg*KH*KW taps per group
    Py_ssize_t KH, KW, sh, sw, dh, dw, pt, pl
    bint pointwise                       # 1x1 kernel, stride 1, no padding: col is x


cdef Geom _geom(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F,
                Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups) noexcept:
    cdef Geom G
    G.C, G.H, G.W, G.F, G.OH, G.OW, G.P = C, H, W, F, OH, OW, OH * OW
    G.groups = groups
    G.Cg = C // groups
    G.Fg = F // groups
    G.K = G.Cg * KH * KW
    G.KH, G.KW = KH, KW
    G.sh, G.sw, G.dh, G.dw, G.pt, G.pl = sh, sw, dh, dw, pt, pl
    G.pointwise = KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 \
        and OH == H and OW == W
    return G


cdef cvx_operand _image(const void* x, const Geom* G, Py_ssize_t p0, bint transposed) noexcept nogil:
    """One group's channels of an image, read as its im2col matrix (or that
    matrix transposed) from output position p0 on."""
    cdef cvx_operand op
    memset(&op, 0, sizeof(op))
    if G.pointwise:  # the image is its own column matrix, (Cg, P)
        op.kind = CVX_DENSE
        op.p = x
        op.rs = 1 if transposed else G.P
        op.cs = G.P if transposed else 1
        return op
    op.kind = CVX_IM2COL_T if transposed else CVX_IM2COL
    op.p = x
    op.H, op.W, op.KH, op.KW, op.OW = G.H, G.W, G.KH, G.KW, G.OW
    op.sh, op.sw, op.dh, op.dw, op.pt, op.pl = G.sh, G.sw, G.dh, G.dw, G.pt, G.pl
    op.p0 = p0
    return op


cdef cvx_operand _dense(const void* p, Py_ssize_t rs, Py_ssize_t cs) noexcept nogil:
    cdef cvx_operand op
    memset(&op, 0, sizeof(op))
    op.kind = CVX_DENSE
    op.p = p
    op.rs, op.cs = rs, cs
    return op


cdef inline int _gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                      const cvx_operand* B, floating* abuf, floating* bbuf, floating* C,
                      Py_ssize_t ldc, int accumulate, const floating* bias,
                      const int* stop) noexcept nogil:
    if floating is float:
        return cvx_gemm_f32(M, N, K, A, B, abuf, bbuf, C, ldc, accumulate, bias, stop)
    else:
        return cvx_gemm_f64(M, N, K, A, B, abuf, bbuf, C, ldc, accumulate, bias, stop)


cdef inline void _wgrad(const floating* xpad, Py_ssize_t row_step, const Py_ssize_t* off,
                        Py_ssize_t K, const floating* g, Py_ssize_t gs, Py_ssize_t grs,
                        Py_ssize_t F, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t ja,
                        Py_ssize_t jb, floating* dw) noexcept nogil:
    if floating is float:
        cvx_wgrad_f32(xpad, row_step, off, K, g, gs, grs, F, i0, i1, ja, jb, dw)
    else:
        cvx_wgrad_f64(xpad, row_step, off, K, g, gs, grs, F, i0, i1, ja, jb, dw)


# Scratch: sizes in elements, shared by the engine (which allocates) and the
# kernels (which carve it up).  A product's packed panels of B hold at most
# CVX_KC x CVX_NC values, rounded to the widest panel (CVX_NR_MAX) so that the
# sizes do not depend on the instruction set.

cdef inline Py_ssize_t _bpack(Py_ssize_t depth, Py_ssize_t cols) noexcept nogil:
    return _min(depth, CVX_KC) * _round_up(_min(cols, CVX_NC), CVX_NR_MAX)


cdef inline Py_ssize_t _apack(Py_ssize_t rows, Py_ssize_t depth) noexcept nogil:
    return _min(_round_up(rows, CVX_MR), CVX_MC) * _min(depth, CVX_KC)


def forward_scratch(Py_ssize_t Fg, Py_ssize_t K, Py_ssize_t groups, Py_ssize_t nb):
    """(shared, per thread) scratch of conv_forward: the packed weights, then
    each thread's packed block of the column matrix (nb positions)."""
    return groups * _round_up(Fg, CVX_MR) * K, _bpack(K, nb)


def input_grad_scratch(Py_ssize_t Cg, Py_ssize_t Fg, Py_ssize_t KHW, Py_ssize_t groups,
                       Py_ssize_t cc, Py_ssize_t nb, bint pointwise):
    """(shared, per thread) scratch of conv_input_grad with blocks of ``cc``
    channels and ``nb`` positions: the packed weights, chunk by chunk, then
    each thread's packed tail of the output gradient and block of the column
    matrix's gradient (none when the kernel is pointwise)."""
    return (groups * ((Cg + cc - 1) // cc) * _chunk_pack(cc, KHW, Fg),
            _bpack(Fg, nb) + (0 if pointwise else cc * KHW * nb))


def weight_grad_scratch(Py_ssize_t F, Py_ssize_t Fg, Py_ssize_t K, Py_ssize_t nb,
                        Py_ssize_t ipb, bint dot, bint pointwise):
    """Per-thread scratch of conv_weight_grad: the thread's accumulator
    (F x K), then its packed output gradient and column-matrix block (the
    matrix product), or its block of the column matrix, ``ipb`` images of
    ``nb`` positions (the dot products; none when the kernel is pointwise)."""
    if dot:
        return F * K + (0 if pointwise else K * ipb * nb)
    return F * K + _apack(Fg, nb) + _bpack(nb, K)


def gemm_blocks():
    """(MR, KC, MC, NC, NR_MAX) of _gemm.h, for the engine and the tests."""
    return CVX_MR, CVX_KC, CVX_MC, CVX_NC, CVX_NR_MAX


# --------------------------------------------------------------------------
# The kernels.  ``work`` may be None for a serial call whose scratch fits in
# STACK_SCRATCH values (the engine decides): it then lives on the kernel's
# stack, which spares a tiny call an allocation.
# --------------------------------------------------------------------------

cdef enum:
    _STACK_SCRATCH = 512

STACK_SCRATCH = _STACK_SCRATCH


cdef inline floating* _scratch(floating[::1] work, floating* stack) noexcept:
    return stack if work is None else &work[0]


cdef void _zero_accumulators(floating* scratch, Py_ssize_t per, Py_ssize_t size,
                             int nt) noexcept nogil:
    """The weight gradients' per-thread accumulators: the first ``size``
    values of each thread's ``per``.  All of them, whether or not a thread
    gets items."""
    cdef int t
    for t in range(nt):
        memset(scratch + t * per, 0, size * sizeof(floating))


cdef void _add_accumulators(const floating* scratch, Py_ssize_t per, Py_ssize_t size, int nt,
                            floating* out) noexcept nogil:
    """out = the threads' accumulators added in thread order (the same bits
    for the same number of threads)."""
    cdef Py_ssize_t i
    cdef int t
    cdef floating s
    for i in range(size):
        s = scratch[i]
        for t in range(1, nt):
            s = s + scratch[t * per + i]
        out[i] = s


cdef void _forward_item(const floating* x, const floating* wpack, const floating* bias,
                        floating* out, floating* bbuf, const Geom* G, Py_ssize_t nb,
                        Py_ssize_t nblk, Py_ssize_t mb, Py_ssize_t nmb, Py_ssize_t item,
                        const int* stop) noexcept nogil:
    """Filters m*mb.. of group g, positions b*nb.. of image n, for
    item = ((n*groups + g)*nblk + b)*nmb + m."""
    cdef Py_ssize_t m = item % nmb, b = (item // nmb) % nblk, ng = item // (nmb * nblk)
    cdef Py_ssize_t n = ng // G.groups, g = ng % G.groups
    cdef Py_ssize_t p0 = b * nb, np_ = _min(nb, G.P - b * nb)
    cdef Py_ssize_t m0 = m * mb, f0 = g * G.Fg + m0
    cdef cvx_operand A = _dense(wpack + g * _round_up(G.Fg, CVX_MR) * G.K,
                                _round_up(G.Fg, CVX_MR), 0)
    cdef cvx_operand B
    A.kind = CVX_PREPACKED
    A.p0 = m0
    B = _image(x + (n * G.C + g * G.Cg) * G.H * G.W, G, p0, False)
    if G.pointwise:
        B.p = <const floating*> B.p + p0
    _gemm(_min(mb, G.Fg - m0), np_, G.K, &A, &B, <floating*> NULL, bbuf,
          out + (n * G.F + f0) * G.P + p0, G.P, 0, NULL if bias == NULL else bias + f0, stop)


def conv_forward(const floating[:, :, :, ::1] x,     # IN  (N, C, H, W)
                 const floating[:, :, :, ::1] w,     # IN  (F, C // G, KH, KW)
                 const floating[::1] bias,           # IN  (F,), or None
                 floating[:, :, :, ::1] out,         # OUT (N, F, OH, OW), every cell written
                 floating[::1] work,                 # scratch: forward_scratch, or None
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                 Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups,
                 Py_ssize_t nb, Py_ssize_t mb, int nt, bint interruptible):
    """out = conv(x, w) + bias, each item a block of ``mb`` filters (a multiple
    of the micro-tile's rows) and ``nb`` output positions of one image.
    Returns False when interrupted (``out`` is then incomplete)."""
    cdef Geom G = _geom(x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3],
                        out.shape[2], out.shape[3], sh, sw, dh, dw, pt, pl, groups)
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* scratch = _scratch(work, stack)
    cdef Py_ssize_t Mp = _round_up(G.Fg, CVX_MR), shared = groups * Mp * G.K
    cdef Py_ssize_t per = _bpack(G.K, nb), nblk = (G.P + nb - 1) // nb
    cdef Py_ssize_t nmb = (G.Fg + mb - 1) // mb
    cdef Py_ssize_t items = x.shape[0] * groups * nblk * nmb, it, g, tid
    cdef const floating* xp = _data4(x)
    cdef const floating* b = _data_or_null(bias)
    cdef floating* op = &out[0, 0, 0, 0]
    cdef const int* stop = _stop(interruptible)
    cdef cvx_operand W
    with nogil:
        for g in range(groups):  # the weights, packed once for every item
            W = _dense(&w[g * G.Fg, 0, 0, 0], G.K, 1)
            if floating is float:
                cvx_prepack_f32(&W, G.Fg, G.K, scratch + g * Mp * G.K)
            else:
                cvx_prepack_f64(&W, G.Fg, G.K, scratch + g * Mp * G.K)
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _forward_item(xp, scratch, b, op, scratch + shared, &G, nb, nblk, mb, nmb, it,
                              stop)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            for it in prange(items, schedule="static"):
                if not CVX_STOPPED(stop):
                    _forward_item(xp, scratch, b, op, scratch + shared + tid * per, &G, nb,
                                  nblk, mb, nmb, it, stop)
    return not CVX_STOPPED(stop)


cdef void _col2im_add(const floating* dcol, Py_ssize_t ld, floating* dx, Py_ssize_t c0,
                      Py_ssize_t c1, Py_ssize_t p0, Py_ssize_t npos, const Geom* G) noexcept nogil:
    """The adjoint of reading the im2col matrix: row ``((c - c0)*KH + p)*KW + q``
    of ``dcol`` (columns: output positions p0..p0+npos) is added back to the
    cells of channel c of ``dx`` (one group's (Cg, H, W)) that tap read;
    entries that fell in the padding are dropped."""
    cdef Py_ssize_t c, p, q, i, ja, jb, va, vb, j0, j1, j, r, pos, off_w, off_h
    cdef const floating* row
    cdef const floating* src
    cdef floating* dst
    for c in range(c0, c1):
        for p in range(G.KH):
            for q in range(G.KW):
                row = dcol + (((c - c0) * G.KH + p) * G.KW + q) * ld
                off_w = q * G.dw - G.pl
                off_h = p * G.dh - G.pt
                j0 = cvx_first_valid(off_w, G.sw, G.OW)
                j1 = cvx_end_valid(off_w, G.sw, G.W, G.OW)
                pos = p0
                while pos < p0 + npos:
                    i = pos // G.OW
                    ja = pos - i * G.OW
                    jb = _min(G.OW, ja + p0 + npos - pos)
                    r = i * G.sh + off_h
                    va = ja if ja > j0 else j0
                    vb = jb if jb < j1 else j1
                    if 0 <= r < G.H and vb > va:
                        src = row + (pos - p0) + (va - ja)
                        dst = dx + (c * G.H + r) * G.W + va * G.sw + off_w
                        if G.sw == 1:
                            for j in range(vb - va):
                                dst[j] += src[j]
                        else:
                            for j in range(vb - va):
                                dst[j * G.sw] += src[j]
                    pos += jb - ja


cdef inline Py_ssize_t _chunk_pack(Py_ssize_t cc, Py_ssize_t khw, Py_ssize_t Fg) noexcept nogil:
    """The packed size of one chunk of w.T: cc*khw rows (rounded up) by Fg."""
    return _round_up(cc * khw, CVX_MR) * Fg


cdef void _input_grad_item(const floating* gout, const floating* wpack, floating* dx,
                           floating* scratch, const Geom* G, Py_ssize_t nb, Py_ssize_t cc,
                           Py_ssize_t nchunk, Py_ssize_t item, const int* stop) noexcept nogil:
    """dx[n, channels c0..c1 of group g] for item = (n*groups + g)*nchunk + chunk."""
    cdef Py_ssize_t chunk = item % nchunk, ng = item // nchunk
    cdef Py_ssize_t n = ng // G.groups, g = ng % G.groups
    cdef Py_ssize_t c0 = chunk * cc, c1 = _min(G.Cg, c0 + cc), khw = G.KH * G.KW
    cdef Py_ssize_t M = (c1 - c0) * khw, p0, np_
    cdef floating* bbuf = scratch
    cdef floating* dcol = bbuf + _bpack(G.Fg, nb)
    cdef floating* dxg = dx + (n * G.C + g * G.Cg) * G.H * G.W
    # A = w_g.T restricted to the chunk's taps, packed once per call
    cdef cvx_operand A = _dense(wpack + (g * nchunk + chunk) * _chunk_pack(cc, khw, G.Fg),
                                _round_up(M, CVX_MR), 0)
    cdef cvx_operand B
    A.kind = CVX_PREPACKED
    # B = the output gradient, read in place
    B = _dense(gout + (n * G.F + g * G.Fg) * G.P, G.P, 1)
    B.kind = CVX_ROWS
    p0 = 0
    while p0 < G.P:
        np_ = _min(nb, G.P - p0)
        if G.pointwise:  # dcol is dx itself
            if _gemm(M, np_, G.Fg, &A, &B, <floating*> NULL, bbuf, dxg + c0 * G.P + p0, G.P, 0,
                     <const floating*> NULL, stop):
                return
        else:
            if _gemm(M, np_, G.Fg, &A, &B, <floating*> NULL, bbuf, dcol, np_, 0,
                     <const floating*> NULL, stop):
                return
            _col2im_add(dcol, np_, dxg, c0, c1, p0, np_, G)
        B.p = <const floating*> B.p + nb
        p0 += nb


def conv_input_grad(const floating[:, :, :, ::1] gout,  # IN  (N, F, OH, OW)
                    const floating[:, :, :, ::1] w,     # IN  (F, C // G, KH, KW)
                    floating[:, :, :, ::1] dx,          # IN/OUT (N, C, H, W), must arrive zeroed
                    floating[::1] work,                 # scratch: input_grad_scratch, or None
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups,
                    Py_ssize_t nb, Py_ssize_t cc, int nt, bint interruptible):
    """dx = the gradient of sum(conv(x, w) * gout) with respect to x, each item
    a block of ``cc`` input channels of one image, in blocks of ``nb`` output
    positions.  Returns False when interrupted."""
    cdef Geom G = _geom(dx.shape[1], dx.shape[2], dx.shape[3], w.shape[0], w.shape[2], w.shape[3],
                        gout.shape[2], gout.shape[3], sh, sw, dh, dw, pt, pl, groups)
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* scratch = _scratch(work, stack)
    cdef Py_ssize_t khw = G.KH * G.KW, nchunk = (G.Cg + cc - 1) // cc
    cdef Py_ssize_t items = dx.shape[0] * groups * nchunk, it, tid, g, chunk, c0
    cdef Py_ssize_t shared = groups * nchunk * _chunk_pack(cc, khw, G.Fg)
    cdef Py_ssize_t per = _bpack(G.Fg, nb) + (0 if G.pointwise else cc * khw * nb)
    cdef const floating* gp = _data4(gout)
    cdef floating* dp = &dx[0, 0, 0, 0]
    cdef const int* stop = _stop(interruptible)
    cdef cvx_operand W
    with nogil:
        for g in range(groups):  # w.T, chunk by chunk: A[r, f] = w[g*Fg + f, c0*khw + r]
            for chunk in range(nchunk):
                c0 = chunk * cc
                W = _dense(&w[g * G.Fg, 0, 0, 0] + c0 * khw, 1, G.K)
                if floating is float:
                    cvx_prepack_f32(&W, (_min(G.Cg, c0 + cc) - c0) * khw, G.Fg,
                                    scratch + (g * nchunk + chunk) * _chunk_pack(cc, khw, G.Fg))
                else:
                    cvx_prepack_f64(&W, (_min(G.Cg, c0 + cc) - c0) * khw, G.Fg,
                                    scratch + (g * nchunk + chunk) * _chunk_pack(cc, khw, G.Fg))
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _input_grad_item(gp, scratch, dp, scratch + shared, &G, nb, cc, nchunk, it, stop)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            for it in prange(items, schedule="static"):
                if not CVX_STOPPED(stop):
                    _input_grad_item(gp, scratch, dp, scratch + shared + tid * per, &G, nb, cc,
                                     nchunk, it, stop)
    return not CVX_STOPPED(stop)


cdef void _weight_grad_item(const floating* x, const floating* gout, const Py_ssize_t* off,
                            floating* acc, floating* scratch, const Geom* G, Py_ssize_t N,
                            Py_ssize_t nb, Py_ssize_t ipb, Py_ssize_t nblk, Py_ssize_t item,
                            const int* stop) noexcept nogil:
    """acc[group g] += g_g @ col.T over positions b*nb.. of images n0..n0+ipb,
    for item = ((n0 // ipb)*groups + g)*nblk + b.

    With ``off`` (tap k's row of the block of the column matrix starts at
    off[k]), as blocks of dot products along the positions (the direct
    kernel's weight gradient, each image a row), over the block written to
    ``scratch`` (or over x itself when pointwise); else by the matrix product
    (one image per item), whose packed panels ``scratch`` holds."""
    cdef Py_ssize_t b = item % nblk, ng = item // nblk
    cdef Py_ssize_t n0 = (ng // G.groups) * ipb, g = ng % G.groups
    cdef Py_ssize_t p0 = b * nb, np_ = _min(nb, G.P - b * nb), ni = _min(ipb, N - n0), i
    cdef const floating* xg = x + (n0 * G.C + g * G.Cg) * G.H * G.W
    cdef const floating* gg = gout + (n0 * G.F + g * G.Fg) * G.P + p0
    cdef cvx_operand A, B
    if off != NULL:
        if G.pointwise:  # tap c's row is x's channel c; images C*P apart
            _wgrad(xg + p0, G.C * G.P, off, G.K, gg, G.P, G.F * G.P, G.Fg, 0, ni, 0, np_,
                   acc + g * G.Fg * G.K)
            return
        for i in range(ni):  # image i's positions follow image i-1's in each tap's row
            B = _image(xg + i * G.C * G.H * G.W, G, 0, False)
            if floating is float:
                cvx_im2col_f32(&B, 0, G.K, p0, np_, scratch + i * np_, off[1] if G.K > 1 else 0)
            else:
                cvx_im2col_f64(&B, 0, G.K, p0, np_, scratch + i * np_, off[1] if G.K > 1 else 0)
        _wgrad(scratch, np_, off, G.K, gg, G.P, G.F * G.P, G.Fg, 0, ni, 0, np_,
               acc + g * G.Fg * G.K)
        return
    A = _dense(gg, G.P, 1)
    B = _image(xg, G, p0, True)
    if G.pointwise:
        B.p = <const floating*> B.p + p0
    _gemm(G.Fg, G.K, np_, &A, &B, scratch, scratch + _apack(G.Fg, nb), acc + g * G.Fg * G.K,
          G.K, 1, <const floating*> NULL, stop)


def conv_weight_grad(const floating[:, :, :, ::1] x,      # IN  (N, C, H, W)
                     const floating[:, :, :, ::1] gout,   # IN  (N, F, OH, OW)
                     floating[:, :, :, ::1] dw,           # OUT (F, C // G, KH, KW)
                     floating[::1] work,                  # scratch: weight_grad_scratch x nt, or None
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw_,
                     Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups,
                     Py_ssize_t nb, Py_ssize_t ipb, const Py_ssize_t[::1] off, int nt,
                     bint interruptible):
    """dw = the gradient of sum(conv(x, w) * gout) with respect to w, each item
    a block of ``nb`` output positions of ``ipb`` images (``nb`` is every
    position when ``ipb`` > 1) and one group: by blocks of dot products when
    ``off`` is given (off[k] = k*ipb*nb, or k*OH*OW for a pointwise kernel),
    else by the matrix product (``ipb`` = 1).

    Each thread's scratch starts with its accumulator (F x K): thread t sums
    its items there, then the threads' parts are added, in thread order, into
    dw.  Returns False when interrupted."""
    cdef Geom G = _geom(x.shape[1], x.shape[2], x.shape[3], dw.shape[0], dw.shape[2], dw.shape[3],
                        gout.shape[2], gout.shape[3], sh, sw, dh, dw_, pt, pl, groups)
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* scratch = _scratch(work, stack)
    cdef const Py_ssize_t* offp = NULL if off is None else &off[0]
    cdef Py_ssize_t size = G.F * G.K, nblk = (G.P + nb - 1) // nb, N = x.shape[0]
    cdef Py_ssize_t per = size + (((0 if G.pointwise else G.K * ipb * nb)) if offp != NULL
                                  else _apack(G.Fg, nb) + _bpack(nb, G.K))
    cdef Py_ssize_t items = (N + ipb - 1) // ipb * groups * nblk, it, tid
    cdef const floating* xp = _data4(x)
    cdef const floating* gp = _data4(gout)
    cdef floating* out = &dw[0, 0, 0, 0]
    cdef floating* mine
    cdef const int* stop = _stop(interruptible)
    with nogil:
        nt = _team(nt)
    with nogil:
        _zero_accumulators(scratch, per, size, nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _weight_grad_item(xp, gp, offp, scratch, scratch + size, &G, N, nb, ipb, nblk, it,
                                  stop)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            mine = scratch + tid * per
            for it in prange(items, schedule="static"):
                if not CVX_STOPPED(stop):
                    _weight_grad_item(xp, gp, offp, mine, mine + size, &G, N, nb, ipb, nblk, it,
                                      stop)
    with nogil:
        _add_accumulators(scratch, per, size, nt, out)
    return not CVX_STOPPED(stop)


# --------------------------------------------------------------------------
# The direct path (unit horizontal stride): pad the rows of one image that a
# block of output rows reads into the thread's scratch, then run the SIMD
# micro-kernel of _direct.h over them.
# --------------------------------------------------------------------------

cdef void _pad_block(const floating* src, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                     floating* dst, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t top,
                     Py_ssize_t left, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0,
                     Py_ssize_t c1, Py_ssize_t slack) noexcept nogil:
    """Rows r0..r1, columns c0..c1 of each channel of dst (C, Hp, Wp):
    dst[c, r, s] = src[c, r - top, s - left], zero outside src (a negative top
    or left crops instead of padding).  The ``slack`` values after the image
    are zeroed."""
    cdef Py_ssize_t c, r, s, i, s0, s1
    cdef floating* d
    cdef const floating* row
    s0 = left if left > c0 else c0               # first column that holds data
    s1 = W + left if W + left < c1 else c1       # one past the last
    if s1 < s0:
        s1 = s0
    for c in range(C):
        for r in range(r0, r1):
            d = dst + (c * Hp + r) * Wp
            i = r - top
            if i < 0 or i >= H or s0 == s1:
                memset(d + c0, 0, (c1 - c0) * sizeof(floating))
                continue
            row = src + (c * H + i) * W - left
            for s in range(c0, s0):
                d[s] = 0
            for s in range(s0, s1):
                d[s] = row[s]
            for s in range(s1, c1):
                d[s] = 0
    memset(dst + C * Hp * Wp, 0, slack * sizeof(floating))


cdef struct Direct:
    Py_ssize_t Cs, Hs, Ws, groups        # the source (x, or grad_output): (groups*Cs, Hs, Ws)
    Py_ssize_t Fo, OH, OW, K, blocks     # output channels per group, output size, taps
    Py_ssize_t Hp, Wp, top, left         # the padded image, and where the source lies in it
    Py_ssize_t sh, span_h, span_w        # rows between output rows; rows and columns one
                                         # output position reads
    Py_ssize_t row_step, slack           # row_step = sh*Wp
    Py_ssize_t rb, nrb, cb, ncb          # blocks of rb output rows by cb columns
    Py_ssize_t flat                      # > 0: whole rows computed as one strip, of at
                                         # most this many columns (conv_direct)


cdef Direct _direct_geom(Py_ssize_t Cs, Py_ssize_t Hs, Py_ssize_t Ws, Py_ssize_t groups,
                         Py_ssize_t Fo, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t K,
                         Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t top, Py_ssize_t left,
                         Py_ssize_t row_step, Py_ssize_t span_h, Py_ssize_t span_w,
                         Py_ssize_t rb, Py_ssize_t cb, Py_ssize_t slack) noexcept:
    cdef Direct D
    D.Cs, D.Hs, D.Ws, D.groups = Cs, Hs, Ws, groups
    D.Fo, D.OH, D.OW, D.K = Fo, OH, OW, K
    D.Hp, D.Wp, D.top, D.left = Hp, Wp, top, left
    D.row_step, D.sh, D.span_h, D.span_w = row_step, row_step // Wp, span_h, span_w
    D.rb, D.nrb, D.cb, D.ncb, D.slack = rb, (OH + rb - 1) // rb, cb, (OW + cb - 1) // cb, slack
    D.flat = 0
    return D


cdef inline void _item_block(const Direct* D, Py_ssize_t item, Py_ssize_t* n, Py_ssize_t* g,
                             Py_ssize_t* i0, Py_ssize_t* i1, Py_ssize_t* j0,
                             Py_ssize_t* j1) noexcept nogil:
    """The image, group and block of output rows and columns of an item,
    item = ((n*groups + g)*nrb + row block)*ncb + column block."""
    cdef Py_ssize_t cbi = item % D.ncb, rbi = (item // D.ncb) % D.nrb
    cdef Py_ssize_t ng = item // (D.ncb * D.nrb)
    n[0], g[0] = ng // D.groups, ng % D.groups
    i0[0], j0[0] = rbi * D.rb, cbi * D.cb
    i1[0], j1[0] = _min(D.OH, i0[0] + D.rb), _min(D.OW, j0[0] + D.cb)


cdef inline void _pad_for(const floating* src, floating* pad, const Direct* D, Py_ssize_t i0,
                          Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """The rows and columns of the padded source that outputs (i0..i1, j0..j1) read."""
    _pad_block(src, D.Cs, D.Hs, D.Ws, pad, D.Hp, D.Wp, D.top, D.left, i0 * D.sh,
               _min(D.Hp, (i1 - 1) * D.sh + D.span_h), j0, _min(D.Wp, j1 - 1 + D.span_w),
               D.slack)


cdef void _direct_item(const floating* src, const floating* wt, const Py_ssize_t* off,
                       const floating* bias, floating* out, floating* pad, const Direct* D,
                       Py_ssize_t item) noexcept nogil:
    cdef Py_ssize_t n, g, i0, i1, j0, j1
    _item_block(D, item, &n, &g, &i0, &i1, &j0, &j1)
    cdef const floating* b = NULL if bias == NULL else bias + g * D.Fo
    _pad_for(src + (n * D.groups + g) * D.Cs * D.Hs * D.Ws, pad, D, i0, i1, j0, j1)
    wt = wt + g * D.blocks * D.K * 4
    out = out + (n * D.groups + g) * D.Fo * D.OH * D.OW
    cdef Py_ssize_t strip, f, i
    cdef floating* tmp
    if D.flat:
        # Narrow rows (whole rows, unit vertical stride): the rows i0..i1 as
        # one strip of (i1 - i0 - 1)*Wp + OW columns of the padded image, the
        # Wp - OW columns between two rows computed and dropped.  Each value
        # is the same sum, in the same order, as row by row.
        strip = (i1 - i0 - 1) * D.Wp + D.OW
        tmp = pad + D.Cs * D.Hp * D.Wp + D.slack
        if floating is float:
            cvx_direct_f32(pad + i0 * D.Wp, 0, wt, off, D.K, D.Fo, b, tmp, 1, strip, 0, 1, 0,
                           strip)
        else:
            cvx_direct_f64(pad + i0 * D.Wp, 0, wt, off, D.K, D.Fo, b, tmp, 1, strip, 0, 1, 0,
                           strip)
        for f in range(D.Fo):
            for i in range(i0, i1):
                memcpy(out + (f * D.OH + i) * D.OW, tmp + f * strip + (i - i0) * D.Wp,
                       D.OW * sizeof(floating))
        return
    if floating is float:
        cvx_direct_f32(pad, D.row_step, wt, off, D.K, D.Fo, b, out, D.OH, D.OW, i0, i1, j0, j1)
    else:
        cvx_direct_f64(pad, D.row_step, wt, off, D.K, D.Fo, b, out, D.OH, D.OW, i0, i1, j0, j1)


def conv_direct(const floating[:, :, :, ::1] src,   # IN  (N, groups*Cs, Hs, Ws)
                const floating[:, :, :, ::1] wt,    # IN  (groups, blocks, K, FB)
                const Py_ssize_t[::1] off,          # IN  (K,)
                const floating[::1] bias,           # IN  (groups*Fo,), or None
                floating[:, :, :, ::1] out,         # OUT (N, groups*Fo, OH, OW), all written
                floating[::1] work,                 # scratch: Cs*Hp*Wp + slack + Fo*flat
                                                    # per thread
                Py_ssize_t groups, Py_ssize_t Hp, Py_ssize_t Wp,
                Py_ssize_t top, Py_ssize_t left, Py_ssize_t row_step, Py_ssize_t span_h,
                Py_ssize_t span_w, Py_ssize_t slack, Py_ssize_t rb, Py_ssize_t cb,
                Py_ssize_t flat, int nt, bint interruptible):
    """The direct pass: each image of ``src`` is padded (or cropped) to
    (Cs, Hp, Wp) at offset (top, left), then
    out[n, f, i, j] = bias[f] + sum_k wt[g, f // FB, k, f % FB] * pad[i*row_step + j + off[k]],
    in blocks of ``rb`` output rows by ``cb`` columns; one output position
    reads ``span_h`` padded rows and ``span_w`` columns.  It is the forward
    pass (src = x) and, at stride 1, the input gradient (src = grad_output,
    wt = the flipped, transposed weight).  ``flat`` > 0 (whole rows, cb = OW,
    row_step = Wp) computes each item's rows as one strip of at most ``flat``
    columns, for narrow images.  Returns False when interrupted."""
    cdef Direct D = _direct_geom(src.shape[1] // groups, src.shape[2], src.shape[3], groups,
                                 out.shape[1] // groups, out.shape[2], out.shape[3],
                                 wt.shape[2], Hp, Wp, top, left, row_step, span_h, span_w, rb,
                                 cb, slack)
    D.blocks = wt.shape[1]
    D.flat = flat
    cdef Py_ssize_t per = D.Cs * Hp * Wp + slack + D.Fo * flat
    cdef Py_ssize_t items = src.shape[0] * groups * D.nrb * D.ncb, it, tid
    cdef const floating* sp = _data4(src)
    cdef const floating* wp = &wt[0, 0, 0, 0]
    cdef const floating* b = _data_or_null(bias)
    cdef floating* op = &out[0, 0, 0, 0]
    cdef floating* scratch = &work[0]
    cdef const int* stop = _stop(interruptible)
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _direct_item(sp, wp, &off[0], b, op, scratch, &D, it)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            for it in prange(items, schedule="static"):
                if not CVX_STOPPED(stop):
                    _direct_item(sp, wp, &off[0], b, op, scratch + tid * per, &D, it)
    return not CVX_STOPPED(stop)


cdef void _wgrad_direct_item(const floating* x, const floating* gout, const Py_ssize_t* off,
                             floating* acc, floating* pad, const Direct* D,
                             Py_ssize_t item) noexcept nogil:
    """acc[group g] += the weight gradient of one block of image n's outputs."""
    cdef Py_ssize_t n, g, i0, i1, j0, j1
    _item_block(D, item, &n, &g, &i0, &i1, &j0, &j1)
    cdef const floating* gg = gout + (n * D.groups + g) * D.Fo * D.OH * D.OW
    _pad_for(x + (n * D.groups + g) * D.Cs * D.Hs * D.Ws, pad, D, i0, i1, j0, j1)
    _wgrad(pad, D.row_step, off, D.K, gg, D.OH * D.OW, D.OW, D.Fo, i0, i1, j0, j1,
           acc + g * D.Fo * D.K)


def conv_weight_grad_direct(const floating[:, :, :, ::1] x,      # IN  (N, C, H, W)
                            const floating[:, :, :, ::1] gout,   # IN  (N, F, OH, OW)
                            const Py_ssize_t[::1] off,           # IN  (K,)
                            floating[:, :, :, ::1] dw,           # OUT (F, Cg, KH, KW)
                            floating[::1] work,                  # scratch: (dw.size + Cg*Hp*Wp + slack) per thread
                            Py_ssize_t groups, Py_ssize_t Hp, Py_ssize_t Wp,
                            Py_ssize_t top, Py_ssize_t left, Py_ssize_t row_step,
                            Py_ssize_t span_h, Py_ssize_t span_w, Py_ssize_t slack,
                            Py_ssize_t rb, Py_ssize_t cb, int nt, bint interruptible):
    """dw = the weight gradient, by the direct kernel (unit horizontal stride),
    in blocks of ``rb`` output rows by ``cb`` columns.

    Each thread's scratch holds its accumulator (the first dw.size values)
    and then its padded image: thread t sums its items' part there, then the
    threads' parts are added, in thread order, into dw.  Returns False when
    interrupted."""
    cdef Direct D = _direct_geom(x.shape[1] // groups, x.shape[2], x.shape[3], groups,
                                 gout.shape[1] // groups, gout.shape[2], gout.shape[3],
                                 off.shape[0], Hp, Wp, top, left, row_step, span_h, span_w, rb,
                                 cb, slack)
    cdef Py_ssize_t size = dw.shape[0] * dw.shape[1] * dw.shape[2] * dw.shape[3]
    cdef Py_ssize_t per = size + D.Cs * Hp * Wp + slack
    cdef Py_ssize_t items = x.shape[0] * groups * D.nrb * D.ncb, it, tid
    cdef const floating* xp = _data4(x)
    cdef const floating* gp = _data4(gout)
    cdef floating* scratch = &work[0]
    cdef floating* out = &dw[0, 0, 0, 0]
    cdef floating* mine
    cdef const int* stop = _stop(interruptible)
    with nogil:
        nt = _team(nt)
    with nogil:
        _zero_accumulators(scratch, per, size, nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _wgrad_direct_item(xp, gp, &off[0], scratch, scratch + size, &D, it)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            mine = scratch + tid * per
            for it in prange(items, schedule="static"):
                if not CVX_STOPPED(stop):
                    _wgrad_direct_item(xp, gp, &off[0], mine, mine + size, &D, it)
    with nogil:
        _add_accumulators(scratch, per, size, nt, out)
    return not CVX_STOPPED(stop)


cdef double _sum(const floating* a, Py_ssize_t n) noexcept nogil:
    """The sum of ``n`` values, in double, by eight interleaved partial sums
    (vectorised, and about as accurate as NumPy's pairwise sum)."""
    cdef double s[8]
    cdef Py_ssize_t i = 0
    cdef int t
    for t in range(8):
        s[t] = 0
    while i + 8 <= n:
        for t in range(8):
            s[t] += a[i + t]
        i += 8
    while i < n:
        s[0] += a[i]
        i += 1
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))


cdef inline void _bias_item(const floating* g, double* cell, Py_ssize_t P, Py_ssize_t nch,
                            Py_ssize_t chunk, Py_ssize_t it) noexcept nogil:
    """cell[it]: the sum of chunk it % nch of row it // nch of g (rows of P)."""
    cdef Py_ssize_t row = it // nch, k = it % nch
    cell[it] = _sum(g + row * P + k * chunk, _min(chunk, P - k * chunk))


def bias_grad(const floating[:, :, ::1] g,    # IN  (N, C, P): the output gradient
              double[:, :, ::1] partial,      # scratch (N, C, chunks)
              double[::1] out,                # OUT (C,)
              Py_ssize_t chunk, int nt, bint interruptible):
    """out[c] = the sum, in double, of g[:, c, :].

    Each item sums one chunk of ``chunk`` values of one (image, channel) row
    into its cell of ``partial``; then each channel's cells are added in
    image and chunk order: the same bits for any ``nt``.  Returns False when
    interrupted (``out`` is then not written)."""
    cdef Py_ssize_t N = g.shape[0], C = g.shape[1], P = g.shape[2]
    cdef Py_ssize_t nch = partial.shape[2], items = N * C * nch, it, k, n, c, tid
    cdef const floating* gp = &g[0, 0, 0]
    cdef double* cell = &partial[0, 0, 0]
    cdef double s
    cdef const int* stop = _stop(interruptible)
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _bias_item(gp, cell, P, nch, chunk, it)
    else:
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            for it in prange(items, schedule="static"):
                if not CVX_STOPPED(stop):
                    _bias_item(gp, cell, P, nch, chunk, it)
    if CVX_STOPPED(stop):
        return False
    with nogil:
        for c in range(C):
            s = 0
            for n in range(N):
                for k in range(nch):
                    s = s + cell[(n * C + c) * nch + k]
            out[c] = s
    return True


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
