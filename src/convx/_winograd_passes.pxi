# convx: Winograd's F(4x4, 3x3) and F(2x2, 5x5) (_winograd.h) for a 3x3 or
# 5x5 kernel at unit stride and dilation: the forward pass, and the input
# gradient (the same sum over the output gradient, the kernel turned by 180
# degrees and its channel axes exchanged); and the copies that run a dilated
# call on phase images (at the end).  Included by _core.pyx after
# _gemm_passes.pxi, whose matrix product runs the 36 products per block of
# tiles.
#
# An item is a block of ``tb`` tiles (4x4 or 2x2 outputs each, numbered over the
# whole batch): its input transform (V, 36 x C rows of tb columns), then for
# each group and each of the 36 positions xi, M[xi] = U[xi] . V[xi], then the
# output transform.  Each output is computed by one item, in an order that
# depends on neither the block nor the threads: the same bits for any ``nt``.

cdef extern from "_winograd.h" nogil:
    int cvx_wino_in_f32(const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t TH, Py_ssize_t TW,
                        Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t ncols, float* V,
                        Py_ssize_t tb, Py_ssize_t xs, Py_ssize_t step)
    int cvx_wino_in_f64(const double* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t TH, Py_ssize_t TW,
                        Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t ncols, double* V,
                        Py_ssize_t tb, Py_ssize_t xs, Py_ssize_t step)
    Py_ssize_t cvx_wino_stride(Py_ssize_t rows, Py_ssize_t tb, Py_ssize_t size)
    int cvx_wino_out_f32(const float* M, Py_ssize_t F, Py_ssize_t tb, Py_ssize_t xs,
                         Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t TH, Py_ssize_t TW,
                         const float* bias, float* out, Py_ssize_t OH, Py_ssize_t OW,
                         Py_ssize_t step)
    int cvx_wino_out_f64(const double* M, Py_ssize_t F, Py_ssize_t tb, Py_ssize_t xs,
                         Py_ssize_t t0, Py_ssize_t nt, Py_ssize_t TH, Py_ssize_t TW,
                         const double* bias, double* out, Py_ssize_t OH, Py_ssize_t OW,
                         Py_ssize_t step)
    int cvx_wino_weights_f32(const float* w, Py_ssize_t Co, Py_ssize_t I, int flip,
                             Py_ssize_t o0, float* pack)
    int cvx_wino_weights_f64(const double* w, Py_ssize_t Co, Py_ssize_t I, int flip,
                             Py_ssize_t o0, double* pack)
    int cvx_wino_weights5_f32(const float* w, Py_ssize_t Co, Py_ssize_t I, int flip,
                              Py_ssize_t o0, float* pack)
    int cvx_wino_weights5_f64(const double* w, Py_ssize_t Co, Py_ssize_t I, int flip,
                              Py_ssize_t o0, double* pack)


# A block's tiles are the columns of its products, in rows of a multiple of
# _WINO_LANES values: of every vector's (16 floats at x86-64-v4) and of the
# transforms' lanes (8), so that the product reads each row in whole
# vectors, in place (CVX_ROWS_WHOLE), and a block of few tiles computes few
# more columns (one image of 49 tiles in two blocks: 64 columns, where
# blocks of whole 48-column panels computed 96).
cdef enum:
    _WINO_LANES = 16


cdef inline Py_ssize_t _wino_row(Py_ssize_t tb) noexcept nogil:
    """The values of a row of V or M for blocks of ``tb`` tiles."""
    return _round_up(tb, _WINO_LANES)


def winograd_scratch(Py_ssize_t C, Py_ssize_t Co, Py_ssize_t groups, Py_ssize_t tb,
                     Py_ssize_t itemsize):
    """(shared, per thread) scratch of conv_winograd from C input to Co output
    channels with blocks of ``tb`` tiles, in values of ``itemsize`` bytes:
    the transformed kernel, packed, then each thread's V and M."""
    cdef Py_ssize_t Ig = C // groups, Og = Co // groups, row = _wino_row(tb)
    return (groups * 36 * _round_up(Og, CVX_MR) * Ig,
            36 * (cvx_wino_stride(C, row, itemsize) + cvx_wino_stride(Co, row, itemsize)))


def winograd_lanes():
    """The multiple of which a block's columns are (its tiles rounded up)."""
    return _WINO_LANES


cdef inline Py_ssize_t _wino_part(Py_ssize_t part, Py_ssize_t panels,
                                  Py_ssize_t parts) noexcept nogil:
    """The first micro-panel of filters of part ``part`` of ``parts``
    (conv_winograd's parts; ``part`` = ``parts``: the end of the last)."""
    return part * panels // parts


cdef int _wino_item(const floating* x, const floating* pack, const floating* bias,
                    floating* out, floating* V, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                    Py_ssize_t Co, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t groups,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t TH, Py_ssize_t TW,
                    Py_ssize_t tiles, Py_ssize_t tb, Py_ssize_t item, Py_ssize_t step,
                    Py_ssize_t o0, Py_ssize_t o1, const int* stop) noexcept nogil:
    """Tiles item*tb .. of the batch, filters o0 .. o1 of each group: all of
    them (0, Og), or for one image of one group a part (o0 a multiple of
    CVX_MR), whose output transform is given the part's filters from o0 on
    (with one image, their planes lie where a call of Co filters puts them):
    V and then M in the thread's ``V``.  Returns 1,
    and leaves the item's outputs unwritten, when a value of V is not finite
    (cvx_wino_in_f32); returns 1 too when a value of the output transform is
    not finite (cvx_wino_out_f32: finite products overflowed, or the
    kernel's transform did), its outputs written."""
    cdef Py_ssize_t t0 = item * tb, nt = _min(tb, tiles - item * tb), row = _wino_row(tb)
    cdef Py_ssize_t ncols = _round_up(nt, _WINO_LANES), Ig = C // groups, Og = Co // groups
    cdef Py_ssize_t Mp = _round_up(Og, CVX_MR), g, xi, nf = o1 - o0
    cdef Py_ssize_t vs = cvx_wino_stride(C, row, sizeof(floating))
    cdef Py_ssize_t ms = cvx_wino_stride(Co, row, sizeof(floating))
    cdef floating* M = V + 36 * vs
    cdef cvx_operand A, B
    if floating is float:
        if cvx_wino_in_f32(x, C, H, W, pt, pl, TH, TW, t0, nt, ncols, V, row, vs, step):
            return 1
    else:
        if cvx_wino_in_f64(x, C, H, W, pt, pl, TH, TW, t0, nt, ncols, V, row, vs, step):
            return 1
    for g in range(groups):
        for xi in range(36):
            A = _dense(pack + (g * 36 + xi) * Mp * Ig, Mp, 0)
            A.kind = CVX_PREPACKED
            A.p0 = o0
            B = _dense(V + xi * vs + g * Ig * row, row, 1)
            B.kind = CVX_ROWS_WHOLE
            if _gemm(nf, ncols, Ig, &A, &B, <floating*> NULL, <floating*> NULL,
                     M + xi * ms + (g * Og + o0) * row, row, 0, NULL, stop):
                return 0
    if o0 != 0:     # one image, one group: filters o0 .. o1 (see above)
        M += o0 * row
        out += o0 * OH * OW
        if bias != NULL:
            bias += o0
    if floating is float:
        return cvx_wino_out_f32(M, nf * groups, row, ms, t0, nt, TH, TW, bias, out, OH, OW, step)
    else:
        return cvx_wino_out_f64(M, nf * groups, row, ms, t0, nt, TH, TW, bias, out, OH, OW, step)


cdef int _wino_weights(const floating* w, Py_ssize_t R, Py_ssize_t Og, Py_ssize_t Ig,
                       bint flip, Py_ssize_t Mp, Py_ssize_t it, floating* pack) noexcept nogil:
    """Block ``it`` of the kernel's transform, packed for the products: a
    micro-panel of rows of each of group g's 36 matrices (rows past Og are
    zeros), it = g * (Mp / MR) + the panel.  Returns 1 when one of its
    kernels holds a value that is not finite, or is so small that its
    transform could underflow (cvx_wino_weights_f32), else 0."""
    cdef Py_ssize_t g = it // (Mp // CVX_MR), o = it % (Mp // CVX_MR) * CVX_MR
    cdef const floating* wg = w + g * Og * Ig * R * R
    cdef floating* pg = pack + g * 36 * Mp * Ig
    if floating is float:
        if R == 5:
            return cvx_wino_weights5_f32(wg, Og, Ig, flip, o, pg)
        return cvx_wino_weights_f32(wg, Og, Ig, flip, o, pg)
    else:
        if R == 5:
            return cvx_wino_weights5_f64(wg, Og, Ig, flip, o, pg)
        return cvx_wino_weights_f64(wg, Og, Ig, flip, o, pg)


def conv_winograd(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                  const floating[:, :, :, ::1] w,   # IN  (Co, C//G, R, R); flip: (C, Co//G, R, R)
                  const floating[::1] bias,         # IN  (Co,), or None
                  floating[:, :, :, ::1] out,       # OUT (N, Co, OH, OW), every cell written
                  floating[::1] work,               # scratch: winograd_scratch
                  int[::1] found,                   # OUT (1,): 1 if not all finite
                  Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups, bint flip,
                  Py_ssize_t tb, bint transformed, int nt, Py_ssize_t parts,
                  bint interruptible):
    """out = the R x R correlation of x, R = 3 (F(4x4, 3x3)) or 5 (F(2x2,
    5x5)) (read as zero outside it, ``pt`` rows
    above and ``pl`` columns left of out's first cell; negative values crop)
    with w, or with ``flip`` with w turned by 180 degrees and its two channel
    axes exchanged, plus bias; by blocks of ``tb`` tiles (any number: a
    block's rows hold them rounded up to winograd_lanes()).  Returns False
    when interrupted.  found[0] becomes 1,
    and the items not yet begun are left, when the transform of x, or that
    of an item's outputs, holds a value that is not finite, or when a
    kernel does, or is so small that its transform could underflow
    (_wino_weights: then before any item begins): out is then unfinished,
    for the caller to compute another way; else 0.
    With
    ``transformed``, work already holds the transformed kernel (a previous
    call's, with the same w and sizes).

    With ``parts`` > 1 (one image, one group, not ``transformed``) the
    filters are cut into that many parts of whole micro-panels, and each
    item is one part's filters over a block of tiles: the items of part p
    run on thread p when ``nt`` = ``parts`` (a static schedule), which also
    transforms that part's kernel, so that a thread reads only the
    transformed kernel it wrote.  Every output is computed as without parts:
    the same bits."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t Co = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t Ig = C // groups, Og = Co // groups, Mp = _round_up(Og, CVX_MR)
    cdef Py_ssize_t R = w.shape[2], step = 7 - w.shape[2]   # outputs per tile side
    cdef Py_ssize_t TH = (OH + step - 1) // step, TW = (OW + step - 1) // step
    cdef Py_ssize_t tiles = N * TH * TW
    cdef Py_ssize_t blocks_t = (tiles + tb - 1) // tb, items = blocks_t * parts
    cdef Py_ssize_t panels = Mp // CVX_MR, part
    cdef Py_ssize_t per = 36 * (cvx_wino_stride(C, _wino_row(tb), sizeof(floating))
                                + cvx_wino_stride(Co, _wino_row(tb), sizeof(floating)))
    cdef Py_ssize_t it, tid
    cdef cvx_team team = cvx_team_new()
    cdef floating* pack = &work[0]
    cdef floating* scratch = pack + groups * 36 * Mp * Ig
    cdef const floating* wp = &w[0, 0, 0, 0]
    cdef const floating* xp = _data4(x)
    cdef const floating* b = _data_or_null(bias)
    cdef floating* op = &out[0, 0, 0, 0]
    cdef const int* stop = _stop(interruptible)
    cdef int* bad = &found[0]
    bad[0] = 0
    cdef Py_ssize_t blocks = 0 if transformed else groups * panels
    if parts < 1 or parts > 1 and (N != 1 or groups != 1 or transformed or parts > panels):
        raise ValueError(f"conv_winograd: {parts} parts of the filters need one image, one "
                         f"group and at least one micro-panel of filters a part")
    nt = _team(nt)
    # the kernel's transform, packed for the products (_wino_weights), then
    # the items, in one parallel region: a region of its own for the
    # transform woke the team twice a call, which cost small calls more than
    # their work (2 threads, x86-64-v4: 0.61-1.00x the time with one region,
    # geomean 0.80, on 80 passes of 8 to 48 channels; an (8, 12, 16, 16) ->
    # 24 layer took 0.22 ms on 2 threads with two regions, 0.17 with one,
    # and 0.07 on one thread)
    if nt == 1:
        with nogil:
            for it in range(blocks):
                if _wino_weights(wp, R, Og, Ig, flip, Mp, it, pack):
                    bad[0] = 1
            for it in range(items):
                if CVX_STOPPED(stop) or bad[0]:
                    break
                part = it // blocks_t
                if _wino_item(xp, pack, b, op, scratch, C, H, W, Co, OH, OW, groups, pt, pl,
                              TH, TW, tiles, tb, it % blocks_t, step,
                              _wino_part(part, panels, parts) * CVX_MR,
                              _min(Og, _wino_part(part + 1, panels, parts) * CVX_MR), stop):
                    bad[0] = 1
                    break
    elif parts > 1:
        tid = it = part = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            for part in range(cvx_share(parts, tid), cvx_share(parts, tid + 1)):
                for it in range(_wino_part(part, panels, parts),
                                _wino_part(part + 1, panels, parts)):
                    if _wino_weights(wp, R, Og, Ig, flip, Mp, it, pack):
                        CVX_STORE(bad, 1)
            cvx_team_wait(&team)
            for it in range(cvx_share(items, tid), cvx_share(items, tid + 1)):
                if CVX_STOPPED(stop) or CVX_STOPPED(bad):   # (part it // blocks_t)
                    break
                if _wino_item(xp, pack, b, op, scratch + tid * per, C, H, W, Co, OH, OW,
                              groups, pt, pl, TH, TW, tiles, tb, it % blocks_t, step,
                              _wino_part(it // blocks_t, panels, parts) * CVX_MR,
                              _min(Og, _wino_part(it // blocks_t + 1, panels, parts)
                                   * CVX_MR), stop):
                    CVX_STORE(bad, 1)
            cvx_team_wait(&team)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            for it in range(cvx_share(blocks, tid), cvx_share(blocks, tid + 1)):
                if _wino_weights(wp, R, Og, Ig, flip, Mp, it, pack):
                    CVX_STORE(bad, 1)
            cvx_team_wait(&team)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop) and not CVX_STOPPED(bad):
                if _wino_item(xp, pack, b, op, scratch + tid * per, C, H, W, Co, OH, OW,
                              groups, pt, pl, TH, TW, tiles, tb, it, step, 0, Og, stop):
                    CVX_STORE(bad, 1)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
    return not CVX_STOPPED(stop)


# ---- dilation: phases ----------------------------------------------------------
# At dilation (dh, dw) the output cells of one phase, rows i = dh*u + r and
# columns j = dw*v + s, read only input rows dh*m + r - pt and columns
# dw*k + s - pl: an undilated 3x3 correlation, padding 0, of the phase image
# xs[m, k] = x[dh*m + r - pt, dw*k + s - pl] (zero outside x).  So a dilated
# call runs conv_winograd on a batch of dh*dw phase images per image, cut
# from the input and put back into the output by these two copies.

def winograd_split(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                   floating[:, :, :, ::1] xs,        # OUT (nb*dh*dw, C, Hp, Wp)
                   Py_ssize_t n0, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt,
                   Py_ssize_t pl, int nt):
    """xs[(n*dh + r)*dw + s, c, m, k] = x[n0 + n, c, dh*m + r - pt, dw*k + s - pl],
    zero outside x: the phase images of x's images n0 .. n0 + nb."""
    cdef Py_ssize_t Cx = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = xs.shape[0], C = xs.shape[1], Hp = xs.shape[2], Wp = xs.shape[3]
    cdef Py_ssize_t it, n, r, s, c, m, k, i, j
    cdef const floating* src
    cdef floating* dst
    # the loop reads and writes through pointers: an index that can raise
    # inside prange (boundscheck, in CONVX_DEBUG=1 builds) gives the parallel
    # block an error path whose private line numbers GCC sees as
    # maybe-uninitialized
    cdef const floating* xp = _data4(x)
    cdef floating* xsp = <floating*> _data4(xs)
    cdef cvx_team team = cvx_team_new()
    with nogil:
        nt = _team(nt)
    it = n = r = s = c = m = k = i = j = 0   # private in the parallel block: defined before it
    src = dst = NULL
    with nogil, parallel(num_threads=nt):
        for it in range(cvx_share(P * C, threadid()), cvx_share(P * C, threadid() + 1)):
            n = it // (C * dh * dw)
            r = it // (C * dw) % dh
            s = it // C % dw
            c = it % C
            for m in range(Hp):
                dst = xsp + (it * Hp + m) * Wp        # &xs[it // C, c, m, 0]
                i = dh * m + r - pt
                if i < 0 or i >= H:
                    for k in range(Wp):
                        dst[k] = 0
                    continue
                src = xp + (((n0 + n) * Cx + c) * H + i) * W   # &x[n0 + n, c, i, 0]
                for k in range(Wp):
                    j = dw * k + s - pl
                    dst[k] = src[j] if 0 <= j < W else 0
        cvx_team_wait(&team)


def winograd_merge(const floating[:, :, :, ::1] ys,  # IN  (nb*dh*dw, Co, OHp, OWp)
                   floating[:, :, :, ::1] out,       # OUT (N, Co, OH, OW)
                   Py_ssize_t n0, Py_ssize_t dh, Py_ssize_t dw, int nt):
    """out[n0 + n, o, dh*u + r, dw*v + s] = ys[(n*dh + r)*dw + s, o, u, v]: every
    cell of out's images n0 .. n0 + nb from the phase results."""
    cdef Py_ssize_t nb = ys.shape[0] // (dh * dw), Co = out.shape[1]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t OHp = ys.shape[2], OWp = ys.shape[3]
    cdef Py_ssize_t it, n, o, i, s, v
    cdef const floating* src
    cdef floating* dst
    cdef const floating* ysp = _data4(ys)      # pointers: as in winograd_phases
    cdef floating* outp = <floating*> _data4(out)
    cdef cvx_team team = cvx_team_new()
    with nogil:
        nt = _team(nt)
    it = n = o = i = s = v = 0   # private in the parallel block: defined before it
    src = dst = NULL
    with nogil, parallel(num_threads=nt):
        for it in range(cvx_share(nb * Co * OH, threadid()),
                        cvx_share(nb * Co * OH, threadid() + 1)):
            n = it // (Co * OH)
            o = it // OH % Co
            i = it % OH
            dst = outp + (((n0 + n) * Co + o) * OH + i) * OW     # &out[n0 + n, o, i, 0]
            for s in range(dw):
                # &ys[(n * dh + i % dh) * dw + s, o, i // dh, 0]
                src = ysp + ((((n * dh + i % dh) * dw + s) * Co + o) * OHp + i // dh) * OWp
                for v in range((OW - s + dw - 1) // dw):
                    dst[s + v * dw] = src[v]
        cvx_team_wait(&team)
