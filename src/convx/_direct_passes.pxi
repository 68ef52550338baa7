# convx: the direct passes, unit horizontal stride (see _core.pyx).
# Included by _core.pyx, whose helpers and declarations it uses.
#
# The passes below read their tap offsets through ``offs``, a pointer taken
# before the parallel block: an index into the memoryview there, which
# boundscheck can raise in CONVX_DEBUG=1 builds (the sanitizer build), gives
# the block an error path whose line numbers GCC -O1 sees as
# maybe-uninitialized, and that build fails (-Werror).

# --------------------------------------------------------------------------
# The direct path (unit horizontal stride): pad the rows of one image that a
# block of output rows reads into the thread's scratch, then run the SIMD
# micro-kernel of _direct.h over them.  conv_direct reads the columns whose
# taps all lie inside the image in place, and pads only the border's.
# --------------------------------------------------------------------------

cdef void _pad_block(const floating* src, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                     floating* dst, Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t top,
                     Py_ssize_t left, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0,
                     Py_ssize_t c1, Py_ssize_t slack) noexcept nogil:
    """Rows r0..r1, columns c0..c1 of each channel of dst (C, Hp, Wp):
    dst[c, r, s] = src[c, r - top, s - left], zero outside src (a negative top
    or left crops instead of padding).  The ``slack`` values after the image
    are zeroed."""
    cdef Py_ssize_t c, r, i, s0, s1
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
                cvx_zero(d + c0, (c1 - c0) * sizeof(floating))
                continue
            row = src + (c * H + i) * W - left
            if s0 > c0:
                cvx_zero(d + c0, (s0 - c0) * sizeof(floating))
            cvx_copy(d + s0, row + s0, (s1 - s0) * sizeof(floating))
            if c1 > s1:
                cvx_zero(d + s1, (c1 - s1) * sizeof(floating))
    cvx_zero(dst + C * Hp * Wp, slack * sizeof(floating))


cdef struct Direct:
    Py_ssize_t Cs, Hs, Ws, groups        # the source (x, or grad_output): (groups*Cs, Hs, Ws)
    Py_ssize_t Fo, OH, OW, K, blocks     # output channels per group, output size, taps
    Py_ssize_t Hp, Wp, top, left         # the padded image, and where the source lies in it
    # sh: rows between output rows; span_h, span_w: the rows and columns one
    # output position reads
    Py_ssize_t sh, span_h, span_w
    Py_ssize_t row_step, slack           # row_step = sh*Wp
    Py_ssize_t rb, nrb, cb, ncb          # blocks of rb output rows by cb columns
    # flat > 0: whole rows computed as one strip, of at most this many columns
    # (conv_direct)
    Py_ssize_t flat
    # the depthwise kernel at width stride sw > 1: the padded rows in sw phase
    # planes of (Hp, Lp) (conv_depthwise); else sw = 1, Lp = Wp
    Py_ssize_t sw, Lp
    int wide                             # the channels kernels: 64-byte vectors
    # conv_direct's blocks whose reads lie inside the source read it in place
    # (_direct_item): rows sh*Ws apart, from columns at least ``inplace`` wide
    # (0: never)
    Py_ssize_t inplace


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
    D.wide = 0
    D.sw, D.Lp = 1, Wp
    D.inplace = 0
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


cdef inline void _direct_kernel(const floating* xpad, Py_ssize_t row_step, const floating* wt,
                                const Py_ssize_t* off, const floating* b, floating* out,
                                const Direct* D, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t i0,
                                Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """out (Fo, OH, OW)'s rows i0..i1, columns j0..j1, by _direct.h's kernel."""
    if floating is float:
        cvx_direct_f32(xpad, row_step, wt, off, D.K, D.Fo, b, out, OH, OW, i0, i1, j0, j1)
    else:
        cvx_direct_f64(xpad, row_step, wt, off, D.K, D.Fo, b, out, OH, OW, i0, i1, j0, j1)


cdef void _direct_item(const floating* src, const floating* wt, const Py_ssize_t* off,
                       const Py_ssize_t* off_src, const floating* bias, floating* out,
                       floating* pad, const Direct* D, Py_ssize_t item) noexcept nogil:
    cdef Py_ssize_t n, g, i0, i1, j0, j1, jl, jr
    _item_block(D, item, &n, &g, &i0, &i1, &j0, &j1)
    cdef const floating* b = NULL
    if bias != NULL:
        b = bias + g * D.Fo
    src = src + (n * D.groups + g) * D.Cs * D.Hs * D.Ws
    wt = wt + g * D.blocks * D.K * 4
    out = out + (n * D.groups + g) * D.Fo * D.OH * D.OW
    cdef Py_ssize_t strip, f, i
    cdef floating* tmp
    if D.flat:
        # Narrow rows (whole rows, unit vertical stride): the rows i0..i1 as
        # one strip of (i1 - i0 - 1)*Wp + OW columns of the padded image, the
        # Wp - OW columns between two rows computed and dropped.  Each value
        # is the same sum, in the same order, as row by row.
        _pad_for(src, pad, D, i0, i1, j0, j1)
        strip = (i1 - i0 - 1) * D.Wp + D.OW
        tmp = pad + D.Cs * D.Hp * D.Wp + D.slack
        _direct_kernel(pad + i0 * D.Wp, 0, wt, off, b, tmp, D, 1, strip, 0, 1, 0, strip)
        for f in range(D.Fo):
            for i in range(i0, i1):
                cvx_copy(out + (f * D.OH + i) * D.OW, tmp + f * strip + (i - i0) * D.Wp,
                         D.OW * sizeof(floating))
        return
    # The columns jl..jr whose reads all lie inside the source (rows too) are
    # read there, in place, through off_src: no copy into the scratch.  The
    # columns on either side, which read the zero border, are padded as
    # before.  Each value is the same sum, in the same order: the same bits.
    jl, jr = j0, j0
    if D.inplace and i0 * D.sh >= D.top and (i1 - 1) * D.sh + D.span_h <= D.top + D.Hs:
        jl = _max(j0, D.left)
        jr = _min(j1, D.left + D.Ws - D.span_w + 1)
        if jr - jl < D.inplace:
            jl = jr = j0
    if jr == j0:
        _pad_for(src, pad, D, i0, i1, j0, j1)
        _direct_kernel(pad, D.row_step, wt, off, b, out, D, D.OH, D.OW, i0, i1, j0, j1)
        return
    _direct_kernel(src, D.sh * D.Ws, wt, off_src, b, out, D, D.OH, D.OW, i0, i1, jl, jr)
    if jl > j0:
        _pad_for(src, pad, D, i0, i1, j0, jl)
        _direct_kernel(pad, D.row_step, wt, off, b, out, D, D.OH, D.OW, i0, i1, j0, jl)
    if j1 > jr:
        _pad_for(src, pad, D, i0, i1, jr, j1)
        _direct_kernel(pad, D.row_step, wt, off, b, out, D, D.OH, D.OW, i0, i1, jr, j1)


cdef enum:
    # A block reads its columns in place from this many on (_direct_item): 4
    # blocks of the kernel's 2 vectors of doubles, 2 of floats.
    _INPLACE_MIN_COLS = 32


cdef void _source_offsets(const Py_ssize_t* off, Py_ssize_t* off_src,
                          const Direct* D) noexcept:
    """off_src[k]: where tap k reads in the source, relative to an output
    position, for off[k] = c*Hp*Wp + r*Wp + s in the padded image: source
    channel c, row r - top, column s - left (r < Hp and s < Wp, so the three
    are off[k]'s digits)."""
    cdef Py_ssize_t k, c, r, s
    for k in range(D.K):
        c = off[k] // (D.Hp * D.Wp)
        r = off[k] % (D.Hp * D.Wp) // D.Wp
        s = off[k] % D.Wp
        off_src[k] = (c * D.Hs + r - D.top) * D.Ws + s - D.left


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
    cdef cvx_team team = cvx_team_new()
    cdef const Py_ssize_t* offs = &off[0]   # (see the file's head)
    cdef Py_ssize_t* off_src = NULL
    if not flat and D.OW >= _INPLACE_MIN_COLS:
        off_src = <Py_ssize_t*>PyMem_Malloc(D.K * sizeof(Py_ssize_t))
        if off_src == NULL:
            raise MemoryError()
        _source_offsets(offs, off_src, &D)
        D.inplace = _INPLACE_MIN_COLS
    try:
        with nogil:
            nt = _team(nt)
        if nt == 1:
            with nogil:
                for it in range(items):
                    if CVX_STOPPED(stop):
                        break
                    _direct_item(sp, wp, offs, off_src, b, op, scratch, &D, it)
        else:
            tid = it = 0    # firstprivate in the parallel block: defined before it
            with nogil, parallel(num_threads=nt):
                tid = threadid()
                cvx_saw(tid)
                it = cvx_claim(&team)
                while it < items and not CVX_STOPPED(stop):
                    _direct_item(sp, wp, offs, off_src, b, op, scratch + tid * per, &D, it)
                    it = cvx_claim(&team)
                cvx_team_wait(&team)
    finally:
        PyMem_Free(off_src)
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
                            # work: scratch, (dw.size + Cg*Hp*Wp + slack) per thread
                            floating[::1] work,
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
    cdef cvx_team team = cvx_team_new()
    cdef const Py_ssize_t* offs = &off[0]   # (see the file's head)
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
        tid = it = 0    # firstprivate in the parallel block: defined before it
        mine = scratch
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            mine = scratch + tid * per
            for it in range(cvx_share(items, tid), cvx_share(items, tid + 1)):
                if CVX_STOPPED(stop):
                    break
                _wgrad_direct_item(xp, gp, offs, mine, mine + size, &D, it)
            cvx_team_wait(&team)
    with nogil:
        _add_accumulators(scratch, per, size, nt, out)
    return not CVX_STOPPED(stop)


# --------------------------------------------------------------------------
# The weight gradient by output channels (any stride): each item's output
# gradient transposed, positions by channels, and the image read in place,
# one value per tap broadcast against vectors of channels (_direct.h).
# --------------------------------------------------------------------------

cdef inline void _pad_item_rows(const floating* x, floating* pad, const Direct* D,
                                Py_ssize_t sw, Py_ssize_t n, Py_ssize_t g, Py_ssize_t i0,
                                Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """The padded rows that output rows i0..i1, columns j0..j1 of image n,
    group g read (at stride sh, sw), from row i0 * sh on, into ``pad``: the
    channels kernels' item (its rows relative, its columns absolute)."""
    cdef Py_ssize_t r0 = i0 * D.sh
    _pad_block(x + (n * D.groups + g) * D.Cs * D.Hs * D.Ws, D.Cs, D.Hs, D.Ws, pad, D.Hp, D.Wp,
               D.top - r0, D.left, 0, (i1 - 1) * D.sh + D.span_h - r0, j0 * sw,
               _min(D.Wp, (j1 - 1) * sw + D.span_w), 0)

cdef void _wgradt_item(const floating* x, const floating* gout, const Py_ssize_t* off,
                       floating* acc, floating* pad, floating* gt, const Direct* D,
                       Py_ssize_t sw, Py_ssize_t FP, Py_ssize_t item) noexcept nogil:
    """acc[group g] (K, FP) += the weight gradient of one block of image n's
    outputs.  pad holds the padded rows the block reads, r0.. (D.Hp of them
    at most), channel after channel."""
    cdef Py_ssize_t n, g, i0, i1, j0, j1
    _item_block(D, item, &n, &g, &i0, &i1, &j0, &j1)
    _pad_item_rows(x, pad, D, sw, n, g, i0, i1, j0, j1)
    cdef const floating* gg = gout + (n * D.groups + g) * D.Fo * D.OH * D.OW + i0 * D.OW
    if floating is float:
        cvx_wgradt_f32(pad, D.row_step, sw, off, D.K, gg, D.OH * D.OW, D.OW, D.Fo, FP, 0,
                       i1 - i0, j0, j1, gt, acc + g * D.K * FP, D.wide)
    else:
        cvx_wgradt_f64(pad, D.row_step, sw, off, D.K, gg, D.OH * D.OW, D.OW, D.Fo, FP, 0,
                       i1 - i0, j0, j1, gt, acc + g * D.K * FP, D.wide)


cdef int _channels_wide(Py_ssize_t VL, Py_ssize_t FP, Py_ssize_t itemsize,
                        str name) except -1:
    """1 where a channels kernel is asked for 64-byte vectors of VL values,
    0 for 32-byte ones; an error for another width, a width this CPU cannot
    run (cvx_channels_wide), or filters FP not a whole number of vectors."""
    cdef int wide = VL * itemsize == 64
    if not (VL * itemsize == 32 or wide and cvx_channels_wide()) or FP % VL:
        raise ValueError(f"{name}: {FP} filters in vectors of {VL} values")
    return wide


def conv_weight_grad_channels(const floating[:, :, :, ::1] x,      # IN  (N, C, H, W)
                              const floating[:, :, :, ::1] gout,   # IN  (N, F, OH, OW)
                              const Py_ssize_t[::1] off,           # IN  (K,)
                              floating[:, :, :, ::1] dw,           # OUT (F, Cg, KH, KW)
                              # work: scratch, groups*K*FP + Cg*Hr*Wp + rb*cb*FP per thread
                              floating[::1] work,
                              Py_ssize_t groups, Py_ssize_t Hr, Py_ssize_t Wp,
                              Py_ssize_t top, Py_ssize_t left, Py_ssize_t sh, Py_ssize_t sw,
                              Py_ssize_t span_h, Py_ssize_t span_w, Py_ssize_t FP,
                              Py_ssize_t VL, Py_ssize_t rb, Py_ssize_t cb, int nt,
                              bint interruptible):
    """dw = the weight gradient, vectorised along the output channels (FP:
    the channels of a group rounded up to whole vectors), in blocks of
    ``rb`` output rows by ``cb`` columns, at any stride.  A block's padded
    rows, at most ``Hr`` ((rb - 1)*sh + span_h), are Hr*Wp apart from one
    channel to the next, as ``off`` expects.

    Each thread sums its items into its own accumulator (groups, K, FP);
    the threads' accumulators are then added in thread order and transposed
    into dw.  The vectors hold ``VL`` values: 32 or (channels_wide) 64
    bytes; FP is a whole number of them.  Returns False when interrupted."""
    cdef int wide = _channels_wide(VL, FP, sizeof(floating), "conv_weight_grad_channels")
    cdef Direct D = _direct_geom(x.shape[1] // groups, x.shape[2], x.shape[3], groups,
                                 gout.shape[1] // groups, gout.shape[2], gout.shape[3],
                                 off.shape[0], Hr, Wp, top, left, sh * Wp, span_h, span_w, rb,
                                 cb, 0)
    D.wide = wide
    cdef Py_ssize_t size = groups * D.K * FP
    cdef Py_ssize_t per = size + D.Cs * Hr * Wp + rb * cb * FP
    cdef Py_ssize_t items = x.shape[0] * groups * D.nrb * D.ncb, it, tid
    cdef const floating* xp = _data4(x)
    cdef const floating* gp = _data4(gout)
    cdef floating* scratch = &work[0]
    cdef floating* out = &dw[0, 0, 0, 0]
    cdef floating* mine
    cdef const int* stop = _stop(interruptible)
    cdef cvx_team team = cvx_team_new()
    cdef const Py_ssize_t* offs = &off[0]   # (see the file's head)
    cdef Py_ssize_t adds = groups * ((D.K + _ADD_TAPS - 1) // _ADD_TAPS)
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            _zero_accumulators(scratch, per, size, 1)
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _wgradt_item(xp, gp, &off[0], scratch, scratch + size,
                             scratch + size + D.Cs * Hr * Wp, &D, sw, FP, it)
            for it in range(adds):
                _add_accumulators_block(scratch, per, D.K, FP, D.Fo, 1, it, out)
    else:
        # One region: each thread zeroes its accumulator (the first, those
        # of threads the region did not get too) and sums its share of the
        # items into it; then the team adds the accumulators in thread order,
        # a block of taps each, into dw.  The waits between spin
        # (cvx_team_wait).
        tid = it = 0    # firstprivate in the parallel block: defined before it
        mine = scratch
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            mine = scratch + tid * per
            _zero_own_accumulator(scratch, per, size, tid, nt)
            for it in range(cvx_share(items, tid), cvx_share(items, tid + 1)):
                if CVX_STOPPED(stop):
                    break
                _wgradt_item(xp, gp, offs, mine, mine + size,
                             mine + size + D.Cs * Hr * Wp, &D, sw, FP, it)
            cvx_team_wait(&team)
            for it in range(cvx_share(adds, tid), cvx_share(adds, tid + 1)):
                _add_accumulators_block(scratch, per, D.K, FP, D.Fo, nt, it, out)
            cvx_team_wait(&team)
    return not CVX_STOPPED(stop)


# --------------------------------------------------------------------------
# The forward pass by output channels (any stride): the image read in
# place, one value per tap and output position broadcast against vectors of
# the tap's weights (_direct.h).
# --------------------------------------------------------------------------

cdef void _fwdt_item(const floating* x, const floating* wt, const Py_ssize_t* off,
                     const floating* bias, floating* out, floating* pad, const Direct* D,
                     Py_ssize_t sw, Py_ssize_t FP, Py_ssize_t item) noexcept nogil:
    """One block of image n's outputs, group g.  pad holds the padded rows
    the block reads, r0.. (D.Hp of them at most), channel after channel."""
    cdef Py_ssize_t n, g, i0, i1, j0, j1
    _item_block(D, item, &n, &g, &i0, &i1, &j0, &j1)
    _pad_item_rows(x, pad, D, sw, n, g, i0, i1, j0, j1)
    cdef const floating* b = NULL
    if bias != NULL:
        b = bias + g * D.Fo
    cdef floating* o = out + (n * D.groups + g) * D.Fo * D.OH * D.OW + i0 * D.OW
    if floating is float:
        cvx_fwdt_f32(pad, D.row_step, sw, off, D.K, wt + g * D.K * FP, D.Fo, FP, b, o,
                     D.OH * D.OW, D.OW, 0, i1 - i0, j0, j1, D.wide)
    else:
        cvx_fwdt_f64(pad, D.row_step, sw, off, D.K, wt + g * D.K * FP, D.Fo, FP, b, o,
                     D.OH * D.OW, D.OW, 0, i1 - i0, j0, j1, D.wide)


def conv_forward_channels(const floating[:, :, :, ::1] x,     # IN  (N, C, H, W)
                          const floating[::1] wt,             # IN  (groups, K*FP), by chunks
                          const Py_ssize_t[::1] off,          # IN  (K,)
                          const floating[::1] bias,           # IN  (F,), or None
                          floating[:, :, :, ::1] out,         # OUT (N, F, OH, OW), all written
                          floating[::1] work,                 # scratch: Cg*Hr*Wp per thread
                          Py_ssize_t groups, Py_ssize_t Hr, Py_ssize_t Wp,
                          Py_ssize_t top, Py_ssize_t left, Py_ssize_t sh, Py_ssize_t sw,
                          Py_ssize_t span_h, Py_ssize_t span_w, Py_ssize_t FP,
                          Py_ssize_t VL, Py_ssize_t rb, Py_ssize_t cb, int nt,
                          bint interruptible):
    """out = the forward pass, vectorised along the output channels, in
    blocks of ``rb`` output rows by ``cb`` columns, at any stride (padded
    rows of a block as conv_weight_grad_channels pads them), in vectors of
    ``VL`` values as conv_weight_grad_channels; ``wt`` is packed in chunks
    of two of them.  Returns False when interrupted."""
    cdef int wide = _channels_wide(VL, FP, sizeof(floating), "conv_forward_channels")
    if wt.shape[0] != groups * off.shape[0] * FP:
        raise ValueError("conv_forward_channels: weights of another size")
    cdef Direct D = _direct_geom(x.shape[1] // groups, x.shape[2], x.shape[3], groups,
                                 out.shape[1] // groups, out.shape[2], out.shape[3],
                                 off.shape[0], Hr, Wp, top, left, sh * Wp, span_h, span_w, rb,
                                 cb, 0)
    D.wide = wide
    cdef Py_ssize_t per = D.Cs * Hr * Wp
    cdef Py_ssize_t items = x.shape[0] * groups * D.nrb * D.ncb, it, tid
    cdef const floating* xp = _data4(x)
    cdef const floating* wp_ = &wt[0]
    cdef const floating* b = _data_or_null(bias)
    cdef floating* op = &out[0, 0, 0, 0]
    cdef floating* scratch = &work[0]
    cdef const int* stop = _stop(interruptible)
    cdef cvx_team team = cvx_team_new()
    cdef const Py_ssize_t* offs = &off[0]   # (see the file's head)
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _fwdt_item(xp, wp_, &off[0], b, op, scratch, &D, sw, FP, it)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop):
                _fwdt_item(xp, wp_, offs, b, op, scratch + tid * per, &D, sw, FP, it)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
    return not CVX_STOPPED(stop)
