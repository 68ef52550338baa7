# convx: im2col + GEMM, the three passes (see _core.pyx, "Each pass has two implementations").
# Included by _core.pyx, whose helpers and declarations it uses.

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


cdef cvx_operand _image(const void* x, const Geom* G, Py_ssize_t p0,
                        bint transposed) noexcept nogil:
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


cdef inline int _gemm_taps(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const cvx_operand* A,
                           const cvx_operand* B, floating* bbuf, floating* C, Py_ssize_t ldc,
                           Py_ssize_t taps, Py_ssize_t astep, Py_ssize_t cstep,
                           const int* stop) noexcept nogil:
    """C + t*cstep += (A moved t*astep) @ B for t < taps, A of kind
    CVX_PANELS, B packed once for all of them."""
    if floating is float:
        return cvx_gemm_taps_f32(M, N, K, A, B, bbuf, C, ldc, taps, astep, cstep, stop)
    else:
        return cvx_gemm_taps_f64(M, N, K, A, B, bbuf, C, ldc, taps, astep, cstep, stop)


# Scratch: sizes in elements, shared by the engine (which allocates) and the
# kernels (which carve it up).  A product's packed panels of B hold at most
# one block of its depth (cvx_kc_max) x CVX_NC values, rounded to the widest
# panel (CVX_NR_MAX) so that the sizes do not depend on the instruction set.

cdef inline Py_ssize_t _bpack(Py_ssize_t depth, Py_ssize_t cols) noexcept nogil:
    return cvx_kc_max(depth) * _round_up(_min(cols, CVX_NC), CVX_NR_MAX)


cdef inline Py_ssize_t _apack(Py_ssize_t rows, Py_ssize_t depth) noexcept nogil:
    return _min(_round_up(rows, CVX_MR), CVX_MC) * cvx_kc_max(depth)


def forward_scratch(Py_ssize_t Fg, Py_ssize_t K, Py_ssize_t groups, Py_ssize_t nb):
    """(shared, per thread) scratch of conv_forward: nothing shared (the
    weights are read in place), then each thread's packed block of the column
    matrix (nb positions)."""
    return 0, _bpack(K, nb)


def input_grad_scratch(Py_ssize_t Cg, Py_ssize_t Fg, Py_ssize_t KHW, Py_ssize_t groups,
                       Py_ssize_t cc, Py_ssize_t nb, bint pointwise, bint pack):
    """(shared, per thread) scratch of conv_input_grad with blocks of ``cc``
    channels and ``nb`` positions: the packed weights, chunk by chunk (none
    unless ``pack``: the product then reads w.T in place), then each
    thread's packed tail of the output gradient and block of the column
    matrix's gradient (none when the kernel is pointwise)."""
    return (_input_grad_shared(Cg, Fg, KHW, groups, cc, pack),
            _input_grad_each(Fg, KHW, cc, nb, pointwise))


cdef inline Py_ssize_t _input_grad_shared(Py_ssize_t Cg, Py_ssize_t Fg, Py_ssize_t KHW,
                                          Py_ssize_t groups, Py_ssize_t cc,
                                          bint pack) noexcept nogil:
    """input_grad_scratch's shared part, for it and conv_input_grad (one formula)."""
    return groups * ((Cg + cc - 1) // cc) * _chunk_pack(cc, KHW, Fg) if pack else 0


cdef inline Py_ssize_t _input_grad_each(Py_ssize_t Fg, Py_ssize_t KHW, Py_ssize_t cc,
                                        Py_ssize_t nb, bint pointwise) noexcept nogil:
    """input_grad_scratch's part per thread, for it and conv_input_grad."""
    return _bpack(Fg, nb) + (0 if pointwise else cc * KHW * nb)


cdef inline Py_ssize_t _taps_row(Py_ssize_t nb, Py_ssize_t KW, Py_ssize_t dw) noexcept nogil:
    """The row of one channel in a block of ``nb`` positions, taps as rows:
    the positions and the span of the taps, in whole 64-byte lines."""
    return _round_up(nb + (KW - 1) * dw, 16)


def weight_grad_scratch(Py_ssize_t F, Py_ssize_t Fg, Py_ssize_t K, Py_ssize_t nb,
                        Py_ssize_t ipb, Py_ssize_t kb, bint dot, bint pointwise,
                        Py_ssize_t KW=1, Py_ssize_t dw=1, bint taps=False):
    """Per-thread scratch of conv_weight_grad: the thread's accumulator
    (F x K), then its packed output gradient and column-matrix block of
    ``kb`` taps (the matrix product), or its packed output gradient and
    block of the image's channels (``K // KW`` rows of
    ``_taps_row(nb, KW, dw)``; the product with taps as rows), or its block
    of the column matrix, ``ipb`` images of ``nb`` positions (the dot
    products; none when the kernel is pointwise)."""
    return _weight_grad_per(F, Fg, K, nb, ipb, kb, dot, pointwise, KW, dw, taps)


cdef inline Py_ssize_t _weight_grad_per(Py_ssize_t F, Py_ssize_t Fg, Py_ssize_t K,
                                        Py_ssize_t nb, Py_ssize_t ipb, Py_ssize_t kb, bint dot,
                                        bint pointwise, Py_ssize_t KW, Py_ssize_t dw,
                                        bint taps) noexcept nogil:
    """weight_grad_scratch, for it and conv_weight_grad (one formula)."""
    if dot:
        return F * K + (0 if pointwise else K * ipb * nb)
    if taps:
        return F * K + _bpack(nb, Fg) + _round_up(K // KW, CVX_MR) * _taps_row(nb, KW, dw)
    return F * K + _apack(Fg, nb) + _bpack(nb, kb)


def gemm_blocks():
    """(MR, KC, MC, NC, NR_MAX) of _gemm.h, for the engine and the tests."""
    return CVX_MR, CVX_KC, CVX_MC, CVX_NC, CVX_NR_MAX


cdef void _forward_item(const floating* x, const floating* w, const floating* bias,
                        floating* out, floating* bbuf, const Geom* G, Py_ssize_t nb,
                        Py_ssize_t nblk, Py_ssize_t mb, Py_ssize_t nmb, Py_ssize_t item,
                        const int* stop) noexcept nogil:
    """Filters m*mb.. of group g, positions b*nb.. of image n, for
    item = ((n*groups + g)*nblk + b)*nmb + m."""
    cdef Py_ssize_t m = item % nmb, b = (item // nmb) % nblk, ng = item // (nmb * nblk)
    cdef Py_ssize_t n = ng // G.groups, g = ng % G.groups
    cdef Py_ssize_t p0 = b * nb, np_ = _min(nb, G.P - b * nb)
    cdef Py_ssize_t m0 = m * mb, f0 = g * G.Fg + m0
    # A = the weights, read in place (rows of K taps): packed once per call,
    # they cost a pass over memory that few columns repay (one image of 7x7,
    # 512 -> 512 channels: 1.3x the time; 2 threads, Zen 4, the same bits)
    cdef cvx_operand A = _dense(w + (g * G.Fg + m0) * G.K, G.K, 1)
    cdef cvx_operand B
    B = _image(x + (n * G.C + g * G.Cg) * G.H * G.W, G, p0, False)
    if G.pointwise:
        B.p = <const floating*> B.p + p0
    if bias != NULL:
        bias = bias + f0
    _gemm(_min(mb, G.Fg - m0), np_, G.K, &A, &B, <floating*> NULL, bbuf,
          out + (n * G.F + f0) * G.P + p0, G.P, 0, bias, stop)


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
    cdef Py_ssize_t per = _bpack(G.K, nb), nblk = (G.P + nb - 1) // nb
    cdef Py_ssize_t nmb = (G.Fg + mb - 1) // mb
    cdef Py_ssize_t items = x.shape[0] * groups * nblk * nmb, it, tid
    cdef const floating* xp = _data4(x)
    cdef const floating* wp = _data4(w)
    cdef const floating* b = _data_or_null(bias)
    cdef floating* op = &out[0, 0, 0, 0]
    cdef const int* stop = _stop(interruptible)
    cdef cvx_team team = cvx_team_new()
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _forward_item(xp, wp, b, op, scratch, &G, nb, nblk, mb, nmb, it, stop)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop):
                _forward_item(xp, wp, b, op, scratch + tid * per, &G, nb, nblk, mb, nmb,
                              it, stop)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
    return not CVX_STOPPED(stop)


cdef inline void _add_strided(floating* dst, const floating* src, Py_ssize_t n,
                              Py_ssize_t s) noexcept nogil:
    """dst[j*s] += src[j] for j < n (dst and src apart), four at a time.
    With one sum an iteration the loop is seven instructions, and its speed
    followed where the compiler happened to put it: builds whose loop
    crossed a 32-byte boundary took 1.13-1.18x the time of one whose loop
    did not on the input gradient of a 7x7 stride-2 stem and a depthwise
    stride-2 layer (sources that differed elsewhere, interleaved, 2 threads,
    Intel Xeon; perf put the time in this loop)."""
    cdef Py_ssize_t j = 0
    cdef floating a0, a1, a2, a3
    while j + 4 <= n:
        a0 = dst[j * s] + src[j]
        a1 = dst[(j + 1) * s] + src[j + 1]
        a2 = dst[(j + 2) * s] + src[j + 2]
        a3 = dst[(j + 3) * s] + src[j + 3]
        dst[j * s] = a0
        dst[(j + 1) * s] = a1
        dst[(j + 2) * s] = a2
        dst[(j + 3) * s] = a3
        j += 4
    while j < n:
        dst[j * s] += src[j]
        j += 1


cdef inline void _add_run(floating* dst, const floating* src, Py_ssize_t n,
                          Py_ssize_t sw) noexcept nogil:
    if sw != 1:
        _add_strided(dst, src, n, sw)
    elif floating is float:
        cvx_add_run_f32(dst, src, n)
    else:
        cvx_add_run_f64(dst, src, n)


cdef enum:
    _FUSE_MAX_KW = 16   # kernel widths whose runs col2im sums in one pass


cdef void _col2im_add(const floating* dcol, Py_ssize_t ld, floating* dx, Py_ssize_t c0,
                      Py_ssize_t c1, Py_ssize_t p0, Py_ssize_t npos, const Geom* G) noexcept nogil:
    """The adjoint of reading the im2col matrix: row ``((c - c0)*KH + p)*KW + q``
    of ``dcol`` (columns: output positions p0..p0+npos) is added back to the
    cells of channel c of ``dx`` (one group's (Cg, H, W)) that tap read;
    entries that fell in the padding are dropped.  Runs at unit column
    stride are added in vectors (cvx_add_run_*: the same sums).  By perf,
    Intel Xeon, one image of 14x14, 256 channels, 3x3, float32: col2im took
    15% of the input gradient's time value by value with a division a run,
    11% so.  1-D layers take _col2im_add_1d."""
    cdef Py_ssize_t c, p, q, i, ja, jb, va, vb, j0, j1, r, pos, off_w, off_h
    cdef Py_ssize_t i0 = p0 // G.OW, ja0 = p0 - i0 * G.OW
    cdef const floating* row
    if G.H == 1 and G.OH == 1 and G.KH == 1 and G.sw == 1 and 1 < G.KW <= _FUSE_MAX_KW:
        _col2im_add_1d(dcol, ld, dx, c0, c1, p0, npos, G)
        return
    for c in range(c0, c1):
        for p in range(G.KH):
            for q in range(G.KW):
                row = dcol + (((c - c0) * G.KH + p) * G.KW + q) * ld
                off_w = q * G.dw - G.pl
                off_h = p * G.dh - G.pt
                j0 = cvx_first_valid(off_w, G.sw, G.OW)
                j1 = cvx_end_valid(off_w, G.sw, G.W, G.OW)
                pos, i, ja = p0, i0, ja0
                while pos < p0 + npos:
                    jb = _min(G.OW, ja + p0 + npos - pos)
                    r = i * G.sh + off_h
                    va = ja if ja > j0 else j0
                    vb = jb if jb < j1 else j1
                    if 0 <= r < G.H and vb > va:
                        _add_run(dx + (c * G.H + r) * G.W + va * G.sw + off_w,
                                 row + (pos - p0) + (va - ja), vb - va, G.sw)
                    pos += jb - ja
                    i, ja = i + 1, 0


cdef void _col2im_add_1d(const floating* dcol, Py_ssize_t ld, floating* dx, Py_ssize_t c0,
                         Py_ssize_t c1, Py_ssize_t p0, Py_ssize_t npos,
                         const Geom* G) noexcept nogil:
    """_col2im_add for a 1-D layer (H = OH = KH = 1) at unit stride with 2 to
    _FUSE_MAX_KW taps: each channel's KW runs land on its one row, and are
    summed in one pass over the cells they all reach (cvx_add_runs_*), each
    run's cells outside that range on their own before and after.  Every
    cell still gets its terms in the order of q: the same sums as one run at
    a time.  A (64, 1, 4096) input gradient of 16 filters of 9 taps, float64,
    2 threads: 0.93-0.95x the time (col2im was 14% of it by perf, 9 passes
    over dx).  2-D layers keep a run at a time: with the runs' bounds found
    per row, 3x3 layers of 24 to 256 channels took 1.08-1.11x in float64."""
    cdef Py_ssize_t c, q, lo, n, x0 = 0, x1 = G.W
    cdef Py_ssize_t va[_FUSE_MAX_KW]
    cdef Py_ssize_t vb[_FUSE_MAX_KW]
    cdef Py_ssize_t off[_FUSE_MAX_KW]
    cdef const floating* srcs[_FUSE_MAX_KW]
    cdef const floating* row
    cdef floating* drow
    # run q: outputs va..vb of p0..p0+npos (one row: OH = 1), image cells
    # from va + off[q], values from row q at va - p0
    for q in range(G.KW):
        off[q] = q * G.dw - G.pl
        va[q] = _max(p0, cvx_first_valid(off[q], 1, G.OW))
        vb[q] = _min(p0 + npos, cvx_end_valid(off[q], 1, G.W, G.OW))
        x0 = _max(x0, va[q] + off[q])
        x1 = _min(x1, vb[q] + off[q])
    if x1 <= x0:
        x0 = x1 = G.W   # no cell every run reaches: each run whole
    for c in range(c0, c1):
        row = dcol + (c - c0) * G.KH * G.KW * ld
        drow = dx + c * G.W
        for q in range(G.KW):   # the cells before x0
            n = _min(vb[q], x0 - off[q]) - va[q]
            if n > 0:
                _add_run(drow + va[q] + off[q], row + q * ld + va[q] - p0, n, 1)
        if x1 > x0:
            for q in range(G.KW):
                srcs[q] = row + q * ld + x0 - off[q] - p0
            if floating is float:
                cvx_add_runs_f32(drow + x0, srcs, <int> G.KW, x1 - x0)
            else:
                cvx_add_runs_f64(drow + x0, srcs, <int> G.KW, x1 - x0)
        for q in range(G.KW):   # the cells from x1
            lo = _max(va[q], x1 - off[q])
            if vb[q] > lo:
                _add_run(drow + lo + off[q], row + q * ld + lo - p0, vb[q] - lo, 1)


cdef inline Py_ssize_t _chunk_pack(Py_ssize_t cc, Py_ssize_t khw, Py_ssize_t Fg) noexcept nogil:
    """The packed size of one chunk of w.T: cc*khw rows (rounded up) by Fg."""
    return _round_up(cc * khw, CVX_MR) * Fg


# Rows of w.T a unit of its packing takes (a multiple of CVX_MR): the units
# are shared among the threads.  On one thread the packing of a 3x3 layer of
# 512 -> 512 channels took a fifth of the input gradient of a 7x7 image.
cdef enum:
    _PACK_ROWS = 256
    _PACK_SPLIT = 1 << 18   # values of the packed w.T from which the team packs it


cdef void _input_grad_pack(const floating* w, const Geom* G, Py_ssize_t cc, Py_ssize_t nchunk,
                           Py_ssize_t nrb, Py_ssize_t u, floating* pack) noexcept nogil:
    """Unit ``u`` of w.T's packing, chunk by chunk (``nrb`` units a chunk):
    rows r0 .. r1 of group g's chunk, A[r, f] = w[g*Fg + f, c0*khw + r]."""
    cdef Py_ssize_t rb = u % nrb, chunk = u // nrb % nchunk, g = u // (nrb * nchunk)
    cdef Py_ssize_t khw = G.KH * G.KW, c0 = chunk * cc
    cdef Py_ssize_t M = (_min(G.Cg, c0 + cc) - c0) * khw
    cdef Py_ssize_t r0 = rb * _PACK_ROWS, r1 = _min(M, r0 + _PACK_ROWS)
    cdef floating* dst = pack + (g * nchunk + chunk) * _chunk_pack(cc, khw, G.Fg)
    cdef cvx_operand W
    if r0 >= M:
        return
    W = _dense(w + g * G.Fg * G.K + c0 * khw, 1, G.K)
    # blocked as the product reads it beside the output gradient, DENSE or
    # ROWS (_input_grad_item): blocks of CVX_KC either way (cvx_kc_step)
    if floating is float:
        cvx_prepack_f32(&W, M, G.Fg, r0, r1, CVX_DENSE, dst)
    else:
        cvx_prepack_f64(&W, M, G.Fg, r0, r1, CVX_DENSE, dst)


cdef void _input_grad_item(const floating* gout, const floating* wpack, const floating* w,
                           floating* dx, floating* scratch, const Geom* G, Py_ssize_t nb,
                           Py_ssize_t cc, Py_ssize_t nchunk, Py_ssize_t item,
                           const int* stop) noexcept nogil:
    """dx[n, channels c0..c1 of group g] for item = (n*groups + g)*nchunk + chunk;
    w.T from ``wpack``, or, where it is NULL, read in place from ``w``."""
    cdef Py_ssize_t chunk = item % nchunk, ng = item // nchunk
    cdef Py_ssize_t n = ng // G.groups, g = ng % G.groups
    cdef Py_ssize_t c0 = chunk * cc, c1 = _min(G.Cg, c0 + cc), khw = G.KH * G.KW
    cdef Py_ssize_t M = (c1 - c0) * khw, p0, np_
    cdef floating* bbuf = scratch
    cdef floating* dcol = bbuf + _bpack(G.Fg, nb)
    cdef floating* dxg = dx + (n * G.C + g * G.Cg) * G.H * G.W
    # A = w_g.T restricted to the chunk's taps: packed once per call, or read
    # in place (CVX_COLUMNS: element (r, f) at w[g*Fg + f, c0*khw + r])
    cdef cvx_operand A
    cdef cvx_operand B
    if wpack != NULL:
        A = _dense(wpack + (g * nchunk + chunk) * _chunk_pack(cc, khw, G.Fg),
                   _round_up(M, CVX_MR), 0)
        A.kind = CVX_PREPACKED
    else:
        A = _dense(w + g * G.Fg * G.K + c0 * khw, 1, G.K)
        A.kind = CVX_COLUMNS
    # B = the output gradient: read in place where few rows of A use each of
    # its values or its rows are few; else packed, as a panel of its many rows
    # (each G.P apart) read in place misses the caches.  Packed, with 2
    # threads, 13 of 14 layers (1x1, 3x3, 7x7 stride 2; 32 to 1152 rows,
    # 64 to 256 filters) took 0.70-0.95x the time, one 1.05x.
    B = _dense(gout + (n * G.F + g * G.Fg) * G.P, G.P, 1)
    B.kind = CVX_DENSE if M >= 32 and G.Fg >= 64 else CVX_ROWS
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
                    Py_ssize_t nb, Py_ssize_t cc, bint pack, int nt, bint interruptible):
    """dx = the gradient of sum(conv(x, w) * gout) with respect to x, each item
    a block of ``cc`` input channels of one image, in blocks of ``nb`` output
    positions; w.T packed once (``pack``: input_grad_scratch's shared part),
    or read in place by the product.  Returns False when interrupted."""
    cdef Geom G = _geom(dx.shape[1], dx.shape[2], dx.shape[3], w.shape[0], w.shape[2], w.shape[3],
                        gout.shape[2], gout.shape[3], sh, sw, dh, dw, pt, pl, groups)
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* scratch = _scratch(work, stack)
    cdef Py_ssize_t khw = G.KH * G.KW, nchunk = (G.Cg + cc - 1) // cc
    cdef Py_ssize_t items = dx.shape[0] * groups * nchunk, it, tid
    cdef Py_ssize_t shared = _input_grad_shared(G.Cg, G.Fg, khw, groups, cc, pack)
    cdef Py_ssize_t per = _input_grad_each(G.Fg, khw, cc, nb, G.pointwise)
    cdef const floating* gp = _data4(gout)
    cdef floating* dp = &dx[0, 0, 0, 0]
    cdef const int* stop = _stop(interruptible)
    cdef Py_ssize_t nrb = (cc * khw + _PACK_ROWS - 1) // _PACK_ROWS
    cdef Py_ssize_t units = groups * nchunk * nrb if pack else 0, u
    cdef const floating* wp = _data4(w)
    cdef const floating* wpack = scratch if pack else NULL
    # w.T packed by the team, in the items' parallel region (as conv_winograd:
    # a region of its own would wake the team twice), where it is large;
    # else before it, on this thread (the team's barrier cost small calls
    # more than the packing: 1.18x the time with 3 -> 16 channels, 5x5)
    cdef bint shared_pack = units > 1 and shared >= _PACK_SPLIT
    cdef cvx_team team = cvx_team_new(), packs = cvx_team_new()
    with nogil:
        nt = _team(nt)
        if nt == 1 or not shared_pack:
            for u in range(units):
                _input_grad_pack(wp, &G, cc, nchunk, nrb, u, scratch)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _input_grad_item(gp, wpack, wp, dp, scratch + shared, &G, nb, cc, nchunk, it,
                                 stop)
    else:
        tid = it = u = 0   # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            if shared_pack:   # the packing's units, then a barrier
                u = cvx_claim(&packs)
                while u < units:
                    _input_grad_pack(wp, &G, cc, nchunk, nrb, u, scratch)
                    u = cvx_claim(&packs)
                cvx_team_wait(&team)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop):
                _input_grad_item(gp, wpack, wp, dp, scratch + shared + tid * per, &G, nb,
                                 cc, nchunk, it, stop)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
    return not CVX_STOPPED(stop)


cdef void _weight_grad_taps(const floating* xg, const floating* gg, floating* acc,
                            floating* scratch, const Geom* G, Py_ssize_t p0, Py_ssize_t np_,
                            const int* stop) noexcept nogil:
    """acc[q, c, f] += sum over positions p0..p0+np_ of x[c, p + q*dw - pl] *
    g[f, p]: one group of one 1-D image at unit stride, with the taps as the
    rows of the product.  Tap q's row of the column matrix is channel c
    shifted by q*dw, so the image's channels, packed once with their padding
    into panels along the whole span (CVX_PANELS), serve every tap at its
    shift; the output gradient, its positions by filters, is packed once per
    block for every tap: KW times fewer values than the column matrix that
    the other order packs, transposed."""
    cdef Py_ssize_t span = np_ + (G.KW - 1) * G.dw, ps = CVX_MR * _taps_row(np_, G.KW, G.dw)
    cdef Py_ssize_t start = p0 - G.pl, j0, j1
    cdef floating* rows = scratch + _bpack(np_, G.Fg)
    cdef cvx_operand A, B
    j0 = _min(_max(-start, 0), span)             # rows[c, j] = x[c, start + j], 0 outside
    j1 = _max(_min(G.W - start, span), j0)
    if floating is float:
        cvx_pack_panels_f32(xg, G.W, start, G.Cg, j0, j1, span, rows, ps)
    else:
        cvx_pack_panels_f64(xg, G.W, start, G.Cg, j0, j1, span, rows, ps)
    memset(&A, 0, sizeof(A))
    A.kind = CVX_PANELS
    A.p = rows
    A.rs = ps
    B = _dense(gg, 1, G.P)                       # B[p, f] = g[f, p]
    _gemm_taps(G.Cg, G.Fg, np_, &A, &B, scratch, acc, G.Fg, G.KW, G.dw * CVX_MR, G.Cg * G.Fg,
               stop)


cdef void _weight_grad_item(const floating* x, const floating* gout, const Py_ssize_t* off,
                            floating* acc, floating* scratch, const Geom* G, Py_ssize_t N,
                            Py_ssize_t nb, Py_ssize_t ipb, Py_ssize_t nblk, Py_ssize_t kb,
                            Py_ssize_t nkb, bint taps, Py_ssize_t item, int add,
                            const int* stop) noexcept nogil:
    """acc[group g] += g_g @ col.T over positions b*nb.. of images n0..n0+ipb,
    taps t*kb.. (the matrix product; every tap for the dot products, nkb = 1),
    for item = (((n0 // ipb)*groups + g)*nblk + b)*nkb + t; without ``add``
    (the matrix product only), acc[group g]'s block = that sum.

    With ``off`` (tap k's row of the block of the column matrix starts at
    off[k]), as blocks of dot products along the positions (the direct
    kernel's weight gradient, each image a row), over the block written to
    ``scratch`` (or over x itself when pointwise); else by the matrix product
    (one image per item), whose packed panels ``scratch`` holds: with
    ``taps``, a 1-D layer at unit stride, taps as rows (_weight_grad_taps;
    group g's part of acc is then (KW, Cg, Fg))."""
    cdef Py_ssize_t t = item % nkb, b = (item // nkb) % nblk, ng = item // (nkb * nblk)
    cdef Py_ssize_t k0 = t * kb
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
    if taps:
        _weight_grad_taps(xg, gg, acc + g * G.Fg * G.K, scratch, G, p0, np_, stop)
        return
    A = _dense(gg, G.P, 1)
    B = _image(xg, G, p0, True)
    if G.pointwise:  # B[pos, c] = x[c, pos]
        B.p = <const floating*> B.p + p0 + k0 * G.P
    else:
        B.k0 = k0
    _gemm(G.Fg, _min(kb, G.K - k0), np_, &A, &B, scratch, scratch + _apack(G.Fg, nb),
          acc + g * G.Fg * G.K + k0, G.K, add, <const floating*> NULL, stop)


# The weight gradient's accumulators (F x K values each) from which the team
# zeroes and adds them (on one thread, those of a 3x3 layer of 512 -> 512
# channels took a third of the time of one 7x7 image's gradient), in parts
# of _ACC_PART values.
cdef enum:
    _ACC_TEAM = 1 << 16
    _ACC_PART = 1 << 14


def conv_weight_grad(const floating[:, :, :, ::1] x,      # IN  (N, C, H, W)
                     const floating[:, :, :, ::1] gout,   # IN  (N, F, OH, OW)
                     floating[:, :, :, ::1] dw,           # OUT (F, C // G, KH, KW)
                     floating[::1] work,                  # scratch: weight_grad_scratch x nt,
                                                          # or None
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw_,
                     Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups,
                     Py_ssize_t nb, Py_ssize_t ipb, Py_ssize_t kb, const Py_ssize_t[::1] off,
                     bint taps, int nt, bint interruptible):
    """dw = the gradient of sum(conv(x, w) * gout) with respect to w, each item
    a block of ``nb`` output positions of ``ipb`` images (``nb`` is every
    position when ``ipb`` > 1) and one group: by blocks of dot products when
    ``off`` is given (off[k] = k*ipb*nb, or k*OH*OW for a pointwise kernel),
    else by the matrix product (``ipb`` = 1), for a block of ``kb`` taps
    (every tap, K, with the dot products), with the taps as its rows when
    ``taps`` (a 1-D layer at unit stride, kb = K).

    Each thread's scratch starts with its accumulator (F x K): thread t sums
    its items there, then the threads' parts are added, in thread order, into
    dw; but one image in one block of positions (by the matrix product) goes
    straight into dw, each item its own block of taps.  Returns False when
    interrupted."""
    cdef Geom G = _geom(x.shape[1], x.shape[2], x.shape[3], dw.shape[0], dw.shape[2], dw.shape[3],
                        gout.shape[2], gout.shape[3], sh, sw, dh, dw_, pt, pl, groups)
    cdef floating stack[_STACK_SCRATCH]
    cdef floating* scratch = _scratch(work, stack)
    cdef const Py_ssize_t* offp = NULL
    if taps and not (G.H == 1 and G.KH == 1 and G.OH == 1 and G.sw == 1 and kb == G.K
                     and off is None):
        raise ValueError("conv_weight_grad: taps as rows need a 1-D layer at unit stride")
    if off is not None:
        offp = &off[0]
    cdef Py_ssize_t size = G.F * G.K, nblk = (G.P + nb - 1) // nb, N = x.shape[0]
    cdef Py_ssize_t nkb = (G.K + kb - 1) // kb
    cdef Py_ssize_t per = _weight_grad_per(G.F, G.Fg, G.K, nb, ipb, kb, offp != NULL,
                                           G.pointwise, G.KW, G.dw, taps)
    cdef Py_ssize_t items = (N + ipb - 1) // ipb * groups * nblk * nkb, it, tid
    cdef const floating* xp = _data4(x)
    cdef const floating* gp = _data4(gout)
    cdef floating* out = &dw[0, 0, 0, 0]
    cdef floating* mine
    cdef const int* stop = _stop(interruptible)
    cdef Py_ssize_t parts = (size + _ACC_PART - 1) // _ACC_PART, part
    cdef cvx_team team = cvx_team_new()
    cdef bint team_sums, own
    with nogil:
        nt = _team(nt)
    # One image in one block of positions (the matrix product): each item
    # sums its own block of taps, every position, straight into dw; no
    # accumulators (the same bits: each added its block to zeros).  Else
    # large accumulators are zeroed and added by the team, in the items'
    # parallel region, each value in the same order (the same bits); small
    # ones on this thread, where the team's two more barriers would cost more
    own = offp == NULL and not taps and N == 1 and nblk == 1
    team_sums = not own and nt > 1 and not taps and size >= _ACC_TEAM
    if not (own or team_sums):
        with nogil:
            _zero_accumulators(scratch, per, size, nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _weight_grad_item(xp, gp, offp, out if own else scratch, scratch + size, &G, N,
                                  nb, ipb, nblk, kb, nkb, taps, it, not own, stop)
    else:
        tid = it = part = 0   # firstprivate in the parallel block: defined before it
        mine = scratch
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            mine = scratch + tid * per
            if team_sums:
                _zero_own_accumulator(scratch, per, size, tid, nt)
            for it in range(cvx_share(items, tid), cvx_share(items, tid + 1)):
                if CVX_STOPPED(stop):
                    break
                _weight_grad_item(xp, gp, offp, out if own else mine, mine + size, &G, N,
                                  nb, ipb, nblk, kb, nkb, taps, it, not own, stop)
            cvx_team_wait(&team)
            if team_sums:
                for part in range(cvx_share(parts, tid), cvx_share(parts, tid + 1)):
                    _add_accumulators(scratch + part * _ACC_PART, per,
                                      _min(_ACC_PART, size - part * _ACC_PART), nt,
                                      out + part * _ACC_PART)
                cvx_team_wait(&team)
    if not (own or team_sums):
        with nogil:
            if taps:
                _add_accumulators_taps(scratch, per, G.groups, G.Fg, G.Cg, G.KW, nt, out)
            else:
                _add_accumulators(scratch, per, size, nt, out)
    return not CVX_STOPPED(stop)
