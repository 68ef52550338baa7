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

Each pass has several implementations, each family in a file of its own
that this module includes (``_gemm_passes.pxi``, ``_direct_passes.pxi``, and
for one channel per group ``_depthwise_passes.pxi``; the FFT's products of
spectra in ``_fft_passes.pxi``; Winograd's F(4x4, 3x3) in
``_winograd_passes.pxi``; the bias gradient's sum in ``_sum_passes.pxi``);
the engine's table of algorithms (``_engine.ALGORITHMS``) picks one per
call.  The two below are the ones every pass has.

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
of input channels (the GEMM input gradient), sized by the caller.  ``nt``
threads share the items in a dynamic schedule, one item at a time, so that a
thread whose CPU is shared with another process does less (``nt == 1`` runs
them in order on the calling thread); the weight gradients, whose threads each
sum into an accumulator of their own, share theirs in a static schedule; each
thread has its own slice of ``work``, after a slice all threads share (the
packed weights).  Every element of the forward pass and of the
input gradient is summed by one item in an order that does not depend on the
blocks or on the threads, so those results are the same bits for any ``nt``.
The weight gradient sums over images and positions: each thread adds its
items into its own accumulator, and the accumulators are added in thread
order at the end (the same bits for the same ``nt``: a static split).

Between items, and between the blocks of a matrix product, every thread
checks the stop flag (``_runtime.h``); when the call is interrupted the
kernel returns False with its output incomplete, and the caller raises.
"""

from libc.stdint cimport int64_t
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memset

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
    int cvx_cpu_id(char* vendor)
    int CVX_STOPPED(const int* stop)
    const int CVX_HAVE_GCC_VECTOR
    void CVX_STORE(int* p, int v)
    unsigned long long cvx_seen
    void cvx_saw(int tid)
    ctypedef struct cvx_team:
        pass
    cvx_team cvx_team_new()
    Py_ssize_t cvx_claim(cvx_team* t)
    void cvx_team_wait(cvx_team* t)
    int cvx_team_threads()
    Py_ssize_t cvx_share(Py_ssize_t n, Py_ssize_t t)
    void cvx_copy(void* dst, const void* src, size_t n)
    void cvx_zero(void* dst, size_t n)


cdef extern from "_gemm.h" nogil:
    enum:
        CVX_DENSE
        CVX_ROWS
        CVX_ROWS_WHOLE
        CVX_COLUMNS
        CVX_PANELS
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
        Py_ssize_t p0, k0
    Py_ssize_t cvx_kc_max(Py_ssize_t K)
    Py_ssize_t cvx_first_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t n)
    Py_ssize_t cvx_end_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size, Py_ssize_t n)
    int cvx_vector_runs
    void cvx_add_run_f32(float* dst, const float* src, Py_ssize_t n)
    void cvx_add_run_f64(double* dst, const double* src, Py_ssize_t n)
    void cvx_add_runs_f32(float* dst, const float** src, int m, Py_ssize_t n)
    void cvx_add_runs_f64(double* dst, const double** src, int m, Py_ssize_t n)
    void cvx_im2col_f32(const cvx_operand* X, Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t p0,
                        Py_ssize_t np, float* dst, Py_ssize_t ld)
    void cvx_im2col_f64(const cvx_operand* X, Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t p0,
                        Py_ssize_t np, double* dst, Py_ssize_t ld)
    void cvx_pack_panels_f32(const float* p, Py_ssize_t rs, Py_ssize_t off, Py_ssize_t M,
                             Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t K, float* dst,
                             Py_ssize_t ps)
    void cvx_pack_panels_f64(const double* p, Py_ssize_t rs, Py_ssize_t off, Py_ssize_t M,
                             Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t K, double* dst,
                             Py_ssize_t ps)
    void cvx_prepack_f32(const cvx_operand* A, Py_ssize_t M, Py_ssize_t K, Py_ssize_t r0,
                         Py_ssize_t r1, int b_kind, float* dst)
    void cvx_prepack_f64(const cvx_operand* A, Py_ssize_t M, Py_ssize_t K, Py_ssize_t r0,
                         Py_ssize_t r1, int b_kind, double* dst)
    int cvx_gemm_f32(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                     const cvx_operand* B, float* abuf, float* bbuf, float* C, Py_ssize_t ldc,
                     int accumulate, const float* bias, const int* stop)
    int cvx_gemm_f64(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                     const cvx_operand* B, double* abuf, double* bbuf, double* C, Py_ssize_t ldc,
                     int accumulate, const double* bias, const int* stop)
    int cvx_gemm_taps_f32(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                          const cvx_operand* B, float* bbuf, float* C, Py_ssize_t ldc,
                          Py_ssize_t taps, Py_ssize_t astep, Py_ssize_t cstep, const int* stop)
    int cvx_gemm_taps_f64(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                          const cvx_operand* B, double* bbuf, double* C, Py_ssize_t ldc,
                          Py_ssize_t taps, Py_ssize_t astep, Py_ssize_t cstep, const int* stop)


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
    void cvx_wgradt_f32(const float* xpad, Py_ssize_t row_step, Py_ssize_t sw,
                        const Py_ssize_t* off, Py_ssize_t K, const float* g, Py_ssize_t gs,
                        Py_ssize_t grs, Py_ssize_t F, Py_ssize_t FP, Py_ssize_t i0,
                        Py_ssize_t i1, Py_ssize_t ja, Py_ssize_t jb, float* gt, float* dwt,
                        int wide)
    void cvx_wgradt_f64(const double* xpad, Py_ssize_t row_step, Py_ssize_t sw,
                        const Py_ssize_t* off, Py_ssize_t K, const double* g, Py_ssize_t gs,
                        Py_ssize_t grs, Py_ssize_t F, Py_ssize_t FP, Py_ssize_t i0,
                        Py_ssize_t i1, Py_ssize_t ja, Py_ssize_t jb, double* gt, double* dwt,
                        int wide)
    void cvx_fwdt_f32(const float* xpad, Py_ssize_t row_step, Py_ssize_t sw,
                      const Py_ssize_t* off, Py_ssize_t K, const float* wt, Py_ssize_t F,
                      Py_ssize_t FP, const float* bias, float* out, Py_ssize_t plane,
                      Py_ssize_t OW, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t ja, Py_ssize_t jb,
                      int wide)
    void cvx_fwdt_f64(const double* xpad, Py_ssize_t row_step, Py_ssize_t sw,
                      const Py_ssize_t* off, Py_ssize_t K, const double* wt, Py_ssize_t F,
                      Py_ssize_t FP, const double* bias, double* out, Py_ssize_t plane,
                      Py_ssize_t OW, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t ja, Py_ssize_t jb,
                      int wide)
    int cvx_direct_fast()
    int cvx_channels_wide()


cdef extern from "_depthwise.h" nogil:
    void cvx_dw_wgrad_f32(const float* xpad, Py_ssize_t Wp, const float* g, Py_ssize_t OW,
                          Py_ssize_t rows, Py_ssize_t sh, Py_ssize_t KH, Py_ssize_t KW,
                          Py_ssize_t dh, Py_ssize_t dw, float* acc)
    void cvx_dw_wgrad_f64(const double* xpad, Py_ssize_t Wp, const double* g, Py_ssize_t OW,
                          Py_ssize_t rows, Py_ssize_t sh, Py_ssize_t KH, Py_ssize_t KW,
                          Py_ssize_t dh, Py_ssize_t dw, double* acc)
    void cvx_dwr_f32(const float* xpad, Py_ssize_t Wp, const float* g, Py_ssize_t OW,
                     Py_ssize_t OH, Py_ssize_t KH, Py_ssize_t KW, float* vacc)
    void cvx_dwr_f64(const double* xpad, Py_ssize_t Wp, const double* g, Py_ssize_t OW,
                     Py_ssize_t OH, Py_ssize_t KH, Py_ssize_t KW, double* vacc)
    void cvx_dwr_lanes_f32(const float* vacc, Py_ssize_t K, float* acc)
    void cvx_dwr_lanes_f64(const double* vacc, Py_ssize_t K, double* acc)
    Py_ssize_t cvx_dwr_min_width(Py_ssize_t itemsize)
    void cvx_depthwise_f32(const float* xpad, Py_ssize_t Wp, const float* w, Py_ssize_t KH,
                           Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t dw,
                           float bias, float* out, Py_ssize_t OW, Py_ssize_t rows,
                           Py_ssize_t ja, Py_ssize_t jb)
    void cvx_depthwise_f32_phases(const float* xpad, Py_ssize_t Wp, const float* w,
                                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t dh,
                                  Py_ssize_t dw, const Py_ssize_t* qoff, float bias, float* out,
                                  Py_ssize_t OW, Py_ssize_t rows, Py_ssize_t ja, Py_ssize_t jb)
    void cvx_depthwise_f64(const double* xpad, Py_ssize_t Wp, const double* w, Py_ssize_t KH,
                           Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t dw,
                           double bias, double* out, Py_ssize_t OW, Py_ssize_t rows,
                           Py_ssize_t ja, Py_ssize_t jb)
    void cvx_depthwise_f64_phases(const double* xpad, Py_ssize_t Wp, const double* w,
                                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t dh,
                                  Py_ssize_t dw, const Py_ssize_t* qoff, double bias, double* out,
                                  Py_ssize_t OW, Py_ssize_t rows, Py_ssize_t ja, Py_ssize_t jb)


cdef extern from "_rows.h" nogil:
    enum: CVX_ROWS_SLACK
    void cvx_rows_f32(const float* xs, Py_ssize_t plane, Py_ssize_t Hs, Py_ssize_t Wp,
                      Py_ssize_t C, const float* w, Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW,
                      Py_ssize_t top, const float* bias, float* out, Py_ssize_t OH,
                      Py_ssize_t OW)
    void cvx_rows_f64(const double* xs, Py_ssize_t plane, Py_ssize_t Hs, Py_ssize_t Wp,
                      Py_ssize_t C, const double* w, Py_ssize_t F, Py_ssize_t KH,
                      Py_ssize_t KW, Py_ssize_t top, const double* bias, double* out,
                      Py_ssize_t OH, Py_ssize_t OW)
    Py_ssize_t cvx_rows_max_width(Py_ssize_t itemsize)

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


def set_vector_runs(bint on):
    """For tests: with False, the GEMM's im2col packing and the input
    gradient's col2im go run by run, value by value, at every level, as
    below x86-64-v3 (with True, in masked vectors from x86-64-v3 on: the same
    values, so the same bits).  Returns the setting before."""
    global cvx_vector_runs
    before = bool(cvx_vector_runs)
    cvx_vector_runs = 1 if on else 0
    return before


def cpu_id():
    """(vendor, family) from the CPU's cpuid: ('AuthenticAMD', 26) on an AMD
    Zen 5, ('GenuineIntel', 6) on Intel's cores; ('', 0) where there is no
    cpuid.  The engine picks its cost constants by it (_engine._tuning)."""
    cdef char vendor[13]
    cdef int family = cvx_cpu_id(vendor)
    return vendor[:12].decode("ascii", "replace").rstrip("\0"), family


def channels_wide():
    """True where the channels kernels (conv_forward_channels,
    conv_weight_grad_channels) can run in 64-byte vectors (x86-64-v4): then
    a call may ask for vectors of 64 // itemsize values, else of 32 //
    itemsize, and pads its filters to whole vectors of that width."""
    return bool(cvx_channels_wide())


def direct_fast():
    """True when the direct kernels run vectorised on this CPU (see _direct.h)."""
    return bool(cvx_direct_fast())


def portable():
    """True for a portable build (CONVX_PORTABLE=1, or a compiler without
    GCC's vector extensions, as MSVC): the kernels' vectors are structs of
    lanes and plain C loops (_runtime.h), with the same sums in the same
    order as the vector code at the baseline level, and no run-time choice of
    instruction set (isa() is 1).  The engine's choices are those of a build
    with vectors but no run-time dispatch (clang's): direct_fast()."""
    return not CVX_HAVE_GCC_VECTOR


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


cdef enum:
    _HUGE_PAGE = 1 << 21    # the 2 MiB pages NumPy asks Linux for (madvise) from 4 MiB on


def touch_pages(unsigned char[::1] b, int nt, bint interruptible):
    """Write 0 to the first byte of ``b`` and to each of its bytes whose
    address is a multiple of 2 MiB, on ``nt`` threads, reading the stop flag
    before each; returns False when interrupted.  The engine calls it on an
    output it has just allocated, before a kernel that will write all of it:
    each 2 MiB page that backs it is then zeroed by the operating system
    here, one between checks, not inside one of the kernel's items, which
    may write into dozens of them (docs/reliability.md, "Ctrl-C").  Memory
    already backed costs a store per 2 MiB."""
    cdef Py_ssize_t n = b.shape[0], first, pieces, k, at
    cdef unsigned char* p
    cdef const int* stop = _stop(interruptible)
    if n == 0:
        return True
    p = &b[0]
    first = <Py_ssize_t> ((-<size_t> p) & (_HUGE_PAGE - 1))   # b[first] is aligned
    pieces = 1 + (_max(0, n - first) + _HUGE_PAGE - 1) // _HUGE_PAGE
    with nogil:
        nt = _team(nt)
        for k in prange(pieces, schedule="static", num_threads=nt):
            if not CVX_STOPPED(stop):
                at = 0 if k == 0 else first + (k - 1) * _HUGE_PAGE
                p[at] = 0
    return not CVX_STOPPED(stop)


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


cdef inline Py_ssize_t _max(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline void _wgrad(const floating* xpad, Py_ssize_t row_step, const Py_ssize_t* off,
                        Py_ssize_t K, const floating* g, Py_ssize_t gs, Py_ssize_t grs,
                        Py_ssize_t F, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t ja,
                        Py_ssize_t jb, floating* dw) noexcept nogil:
    if floating is float:
        cvx_wgrad_f32(xpad, row_step, off, K, g, gs, grs, F, i0, i1, ja, jb, dw)
    else:
        cvx_wgrad_f64(xpad, row_step, off, K, g, gs, grs, F, i0, i1, ja, jb, dw)


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


cdef inline void _zero_own_accumulator(floating* scratch, Py_ssize_t per, Py_ssize_t size,
                                       int tid, int nt) noexcept nogil:
    """In a parallel region asked for ``nt`` threads: thread ``tid`` zeroes
    its accumulator, and thread 0 also those of the threads the region did
    not get (fewer than asked for, when nested), which the team's sum reads."""
    memset(scratch + tid * per, 0, size * sizeof(floating))
    if tid == 0:
        _zero_accumulators(scratch + cvx_team_threads() * per, per, size,
                           nt - cvx_team_threads())


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


cdef enum:
    _ADD_TAPS = 16   # taps of the channels kernel's accumulators added as one block


cdef void _add_accumulators_block(const floating* scratch, Py_ssize_t per, Py_ssize_t K,
                                  Py_ssize_t FP, Py_ssize_t Fo, int nt, Py_ssize_t item,
                                  floating* out) noexcept nogil:
    """The same, from accumulators whose groups are (K, FP) (the channels
    kernel's) into out, (groups*Fo, K): block ``item`` of _ADD_TAPS taps of
    one group, filter by filter, so that the reads stay in L1 and each
    filter's taps are one run of writes."""
    cdef Py_ssize_t nb = (K + _ADD_TAPS - 1) // _ADD_TAPS
    cdef Py_ssize_t g = item // nb
    cdef Py_ssize_t k0 = item % nb * _ADD_TAPS
    cdef Py_ssize_t k1 = _min(K, k0 + _ADD_TAPS), f, k, i
    cdef int t
    cdef floating s
    for f in range(Fo):
        for k in range(k0, k1):
            i = (g * K + k) * FP + f
            s = scratch[i]
            for t in range(1, nt):
                s = s + scratch[t * per + i]
            out[(g * Fo + f) * K + k] = s


cdef void _add_accumulators_taps(const floating* scratch, Py_ssize_t per, Py_ssize_t groups,
                                 Py_ssize_t Fg, Py_ssize_t Cg, Py_ssize_t KW, int nt,
                                 floating* out) noexcept nogil:
    """The same, from accumulators whose groups are (KW, Cg, Fg) (the taps as
    rows) into out, (groups*Fg, Cg, KW)."""
    cdef Py_ssize_t g, q, c, f, i = 0
    cdef int t
    cdef floating s
    for g in range(groups):
        for q in range(KW):
            for c in range(Cg):
                for f in range(Fg):
                    s = scratch[i]
                    for t in range(1, nt):
                        s = s + scratch[t * per + i]
                    out[((g * Fg + f) * Cg + c) * KW + q] = s
                    i += 1


# --------------------------------------------------------------------------
# The algorithm families, one file each (textually included: they share
# this module's helpers, and their kernels are entry points of convx._core).
# --------------------------------------------------------------------------

include "_gemm_passes.pxi"
include "_direct_passes.pxi"
include "_depthwise_passes.pxi"
include "_rows_passes.pxi"
include "_sum_passes.pxi"
include "_fft_passes.pxi"
include "_winograd_passes.pxi"


# --------------------------------------------------------------------------
# Padding, for the notebook names
# --------------------------------------------------------------------------

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
