# convx: the bias gradient, a sum over images and positions.
# Included by _core.pyx, whose helpers and declarations it uses.

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
    cdef cvx_team team = cvx_team_new()
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _bias_item(gp, cell, P, nch, chunk, it)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop):
                _bias_item(gp, cell, P, nch, chunk, it)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
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
