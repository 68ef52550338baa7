# convx: the FFT algorithm's products in the frequency domain (the channel
# mixing, _fft.h), which NumPy would do with temporaries or through BLAS.
# The transforms themselves are scipy.fft's (convx._fft plans and calls them).
# Included by _core.pyx, whose helpers and declarations it uses.
#
# Spectra are complex arrays seen as interleaved (real, imaginary) floats:
# a row of B complex bins is 2B values.  Every output bin is summed by one
# item in a fixed order (channels; images, then tiles), so the bits do not
# depend on the threads.

cdef extern from "_fft.h" nogil:
    void cvx_mix_f32(const float* x, Py_ssize_t xcs, const float* w, Py_ssize_t wcs,
                     Py_ssize_t C, float* y, Py_ssize_t B)
    void cvx_mix_f64(const double* x, Py_ssize_t xcs, const double* w, Py_ssize_t wcs,
                     Py_ssize_t C, double* y, Py_ssize_t B)
    void cvx_mix_f32_conj(const float* g, Py_ssize_t gns, Py_ssize_t gts, const float* x,
                          Py_ssize_t xns, Py_ssize_t xts, Py_ssize_t N, Py_ssize_t NT,
                          float* acc, Py_ssize_t B)
    void cvx_mix_f64_conj(const double* g, Py_ssize_t gns, Py_ssize_t gts, const double* x,
                          Py_ssize_t xns, Py_ssize_t xts, Py_ssize_t N, Py_ssize_t NT,
                          double* acc, Py_ssize_t B)


def fft_mix(const floating[:, :, :, ::1] x,   # IN  (N, C, T, 2B): spectra of N images' tiles
            const floating[:, :, ::1] w,      # IN  (F, C // groups, 2B): the kernel's spectra
            floating[:, :, :, ::1] y,         # OUT (N, F, T, 2B)
            Py_ssize_t groups, int nt):
    """y[n, o, t] = sum over c of x[n, g*Cg + c, t] * w[o, c] (complex, bin by
    bin), g = o's group: the forward pass and the input gradient in the
    frequency domain.  Items are (n, o, t) rows, each summed over the
    channels in order."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], T = x.shape[2], B = x.shape[3] // 2
    cdef Py_ssize_t F = w.shape[0], Cg = w.shape[1], Fg = F // groups
    cdef Py_ssize_t items = N * F * T, it, tid
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* wp = &w[0, 0, 0]
    cdef floating* yp = &y[0, 0, 0, 0]
    cdef cvx_team team = cvx_team_new()
    with nogil:
        nt = _team(nt)
    if nt == 1 or items < 2:
        with nogil:
            for it in range(items):
                _mix_item(xp, wp, yp, C, T, B, F, Cg, Fg, it)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items:
                _mix_item(xp, wp, yp, C, T, B, F, Cg, Fg, it)
                it = cvx_claim(&team)
            cvx_team_wait(&team)


cdef inline void _mix_item(const floating* x, const floating* w, floating* y, Py_ssize_t C,
                           Py_ssize_t T, Py_ssize_t B, Py_ssize_t F, Py_ssize_t Cg,
                           Py_ssize_t Fg, Py_ssize_t it) noexcept nogil:
    cdef Py_ssize_t t = it % T, o = (it // T) % F, n = it // (T * F)
    cdef const floating* xs = x + ((n * C + o // Fg * Cg) * T + t) * 2 * B
    if floating is float:
        cvx_mix_f32(xs, T * 2 * B, w + o * Cg * 2 * B, 2 * B, Cg, y + it * 2 * B, B)
    else:
        cvx_mix_f64(xs, T * 2 * B, w + o * Cg * 2 * B, 2 * B, Cg, y + it * 2 * B, B)


def fft_mix_grad(const floating[:, :, :, ::1] g,  # IN  (N, F, T, 2B): the output gradient's tiles
                 const floating[:, :, :, ::1] x,  # IN  (N, C, T, 2B): the input's tiles
                 floating[:, :, ::1] acc,         # IN/OUT (F, C // groups, 2B)
                 Py_ssize_t groups, int nt):
    """acc[o, c] += sum over n and t of conj(g[n, o, t]) * x[n, gr*Cg + c, t]
    (complex, bin by bin), gr = o's group: the weight gradient in the
    frequency domain.  Items are (o, c) rows, each summed over images and
    tiles in order."""
    cdef Py_ssize_t N = g.shape[0], F = g.shape[1], T = g.shape[2], B = g.shape[3] // 2
    cdef Py_ssize_t C = x.shape[1], Cg = acc.shape[1], Fg = F // groups
    cdef Py_ssize_t items = F * Cg, it, tid
    cdef const floating* gp = &g[0, 0, 0, 0]
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef floating* ap = &acc[0, 0, 0]
    cdef cvx_team team = cvx_team_new()
    with nogil:
        nt = _team(nt)
    if nt == 1 or items < 2:
        with nogil:
            for it in range(items):
                _mix_grad_item(gp, xp, ap, N, C, T, B, F, Cg, Fg, it)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items:
                _mix_grad_item(gp, xp, ap, N, C, T, B, F, Cg, Fg, it)
                it = cvx_claim(&team)
            cvx_team_wait(&team)


cdef inline void _mix_grad_item(const floating* g, const floating* x, floating* acc,
                                Py_ssize_t N, Py_ssize_t C, Py_ssize_t T, Py_ssize_t B,
                                Py_ssize_t F, Py_ssize_t Cg, Py_ssize_t Fg,
                                Py_ssize_t it) noexcept nogil:
    cdef Py_ssize_t o = it // Cg, c = it % Cg
    cdef const floating* gs = g + o * T * 2 * B
    cdef const floating* xs = x + (o // Fg * Cg + c) * T * 2 * B
    if floating is float:
        cvx_mix_f32_conj(gs, F * T * 2 * B, 2 * B, xs, C * T * 2 * B, 2 * B, N, T,
                         acc + it * 2 * B, B)
    else:
        cvx_mix_f64_conj(gs, F * T * 2 * B, 2 * B, xs, C * T * 2 * B, 2 * B, N, T,
                         acc + it * 2 * B, B)
