# convx: depthwise convolution (one input and one output channel per group):
# the forward pass at any stride and, at stride 1, the input gradient; the
# weight gradient at unit width stride.  Included by _core.pyx after
# _direct_passes.pxi, whose Direct geometry, items and padding it shares
# (with Cs = Fo = 1).

cdef void _pad_phases(const floating* src, floating* pad, const Direct* D, Py_ssize_t i0,
                      Py_ssize_t i1, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    """What outputs (i0..i1, j0..j1) of one channel read of its padded image,
    in D.sw phase planes of (Hp, Lp): plane a, row r, place m holds the
    padded image's column a + m*sw (_pad_block's value there: zero outside
    the source), so that the taps of output j read places j + q*dw // sw
    of plane q*dw % sw.  The slack values after the planes are zeroed."""
    cdef Py_ssize_t sw = D.sw, Lp = D.Lp, Hp = D.Hp
    cdef Py_ssize_t r0 = i0 * D.sh, r1 = _min(Hp, (i1 - 1) * D.sh + D.span_h)
    cdef Py_ssize_t c1 = _min(D.Wp, (j1 - 1) * sw + D.span_w)
    cdef Py_ssize_t r, a, m, m1, i, s
    cdef floating* d
    cdef const floating* row
    for r in range(r0, r1):
        i = r - D.top
        for a in range(sw):
            d = pad + (a * Hp + r) * Lp
            m1 = (c1 - a + sw - 1) // sw      # places j0..m1 hold columns below c1
            if i < 0 or i >= D.Hs:
                cvx_zero(d + j0, (m1 - j0) * sizeof(floating))
                continue
            row = src + i * D.Ws
            for m in range(j0, m1):
                s = a + m * sw - D.left
                d[m] = row[s] if 0 <= s < D.Ws else 0
    cvx_zero(pad + sw * Hp * Lp, D.slack * sizeof(floating))


cdef void _depthwise_item(const floating* src, const floating* wt, const floating* bias,
                          floating* out, floating* pad, const Direct* D, Py_ssize_t KH,
                          Py_ssize_t KW, Py_ssize_t dh, Py_ssize_t dw, const Py_ssize_t* qoff,
                          Py_ssize_t item) noexcept nogil:
    """One block of rows and columns of one channel of one image."""
    cdef Py_ssize_t n, g, i0, i1, j0, j1, i, strip
    _item_block(D, item, &n, &g, &i0, &i1, &j0, &j1)
    cdef Py_ssize_t plane = n * D.groups + g
    cdef floating b = 0 if bias == NULL else bias[g]
    cdef floating* tmp
    out = out + plane * D.OH * D.OW + i0 * D.OW
    if D.sw > 1:
        _pad_phases(src + plane * D.Hs * D.Ws, pad, D, i0, i1, j0, j1)
        if floating is float:
            cvx_depthwise_f32_phases(pad + i0 * D.sh * D.Lp, D.Lp, wt + g * KH * KW, KH, KW,
                                     D.sh, dh, dw, qoff, b, out, D.OW, i1 - i0, j0, j1)
        else:
            cvx_depthwise_f64_phases(pad + i0 * D.sh * D.Lp, D.Lp, wt + g * KH * KW, KH, KW,
                                     D.sh, dh, dw, qoff, b, out, D.OW, i1 - i0, j0, j1)
        return
    _pad_for(src + plane * D.Hs * D.Ws, pad, D, i0, i1, j0, j1)
    if D.flat:
        # Narrow rows (whole rows, unit vertical stride): the rows i0..i1 as
        # one row of (i1 - i0 - 1)*Wp + OW columns of the padded image, the
        # Wp - OW columns between two rows computed and dropped: one long
        # loop per tap instead of a short one per row and tap.  Each value is
        # the same sum, in the same order, as row by row.
        strip = (i1 - i0 - 1) * D.Wp + D.OW
        tmp = pad + D.Hp * D.Wp + D.slack
        if floating is float:
            cvx_depthwise_f32(pad + i0 * D.Wp, D.Wp, wt + g * KH * KW, KH, KW, 1, dh, dw, b,
                              tmp, strip, 1, 0, strip)
        else:
            cvx_depthwise_f64(pad + i0 * D.Wp, D.Wp, wt + g * KH * KW, KH, KW, 1, dh, dw, b,
                              tmp, strip, 1, 0, strip)
        for i in range(i1 - i0):
            cvx_copy(out + i * D.OW, tmp + i * D.Wp, D.OW * sizeof(floating))
        return
    if floating is float:
        cvx_depthwise_f32(pad + i0 * D.row_step, D.Wp, wt + g * KH * KW, KH, KW, D.sh, dh, dw,
                          b, out, D.OW, i1 - i0, j0, j1)
    else:
        cvx_depthwise_f64(pad + i0 * D.row_step, D.Wp, wt + g * KH * KW, KH, KW, D.sh, dh, dw,
                          b, out, D.OW, i1 - i0, j0, j1)


def depthwise_scratch(Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t sw, Py_ssize_t slack,
                      Py_ssize_t flat):
    """The scratch values conv_depthwise needs per thread."""
    if sw > 1:
        return sw * Hp * ((Wp + sw - 1) // sw) + slack
    return Hp * Wp + slack + flat


def conv_depthwise(const floating[:, :, :, ::1] src,   # IN  (N, C, Hs, Ws)
                   const floating[:, ::1] wt,          # IN  (C, KH*KW): each channel's taps
                   const floating[::1] bias,           # IN  (C,), or None
                   floating[:, :, :, ::1] out,         # OUT (N, C, OH, OW), all written
                   floating[::1] work,                 # scratch: depthwise_scratch per thread
                   Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t top, Py_ssize_t left,
                   Py_ssize_t row_step, Py_ssize_t span_h, Py_ssize_t span_w,
                   Py_ssize_t slack, Py_ssize_t rb, Py_ssize_t cb, Py_ssize_t KH,
                   Py_ssize_t KW, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t sw,
                   const Py_ssize_t[::1] qoff, Py_ssize_t flat, int nt,
                   bint interruptible):
    """out[n, c, i, j] = bias[c]
                        + sum_{p, q} wt[c, p*KW + q] * pad[c][i*row_step + p*dh*Wp + j*sw + q*dw],
    each channel of ``src`` padded (or cropped) to (Hp, Wp) at offset (top,
    left), in blocks of ``rb`` output rows by ``cb`` columns.  The forward
    pass (src = x) and, at stride 1, the input gradient (src = grad_output,
    wt = the flipped taps).  At sw > 1 each item pads its rows into sw
    phase planes of (Hp, ceil(Wp / sw)) (_pad_phases), and the kernel reads
    tap column q at ``qoff[q]`` = (q*dw % sw) * Hp*ceil(Wp / sw) + q*dw // sw
    (at sw = 1, at q*dw: qoff may be empty, and is not read).  ``flat`` > 0 (whole rows,
    cb = OW, row_step = Wp, sw = 1) computes each item's rows as one strip
    of at most ``flat`` columns.  Returns False when interrupted."""
    cdef Py_ssize_t C = src.shape[1]
    cdef Direct D = _direct_geom(1, src.shape[2], src.shape[3], C, 1, out.shape[2],
                                 out.shape[3], KH * KW, Hp, Wp, top, left, row_step, span_h,
                                 span_w, rb, cb, slack)
    D.flat = flat
    D.sw, D.Lp = sw, (Wp + sw - 1) // sw
    cdef Py_ssize_t per = depthwise_scratch(Hp, Wp, sw, slack, flat)
    cdef Py_ssize_t items = src.shape[0] * C * D.nrb * D.ncb, it, tid
    cdef const floating* sp = _data4(src)
    cdef const floating* wp = &wt[0, 0]
    cdef const floating* b = _data_or_null(bias)
    cdef const Py_ssize_t* qo = &qoff[0] if sw > 1 else NULL   # (empty at sw = 1)
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
                _depthwise_item(sp, wp, b, op, scratch, &D, KH, KW, dh, dw, qo, it)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop):
                _depthwise_item(sp, wp, b, op, scratch + tid * per, &D, KH, KW, dh, dw,
                                qo, it)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
    return not CVX_STOPPED(stop)


def depthwise_weight_grad_chunks(Py_ssize_t N, Py_ssize_t C):
    """How many pieces conv_depthwise_weight_grad cuts each channel's images
    into: enough for about 16 items in all (fixed by the shapes, so the
    order of the sums is too)."""
    return _min(N, _max(1, (16 + C - 1) // C)) if N > 0 else 1


cdef inline Py_ssize_t dw_wgrad_lanes(Py_ssize_t itemsize) noexcept nogil:
    """The widest vector of cvx_dwr's sums: 64 bytes' values."""
    return 64 // itemsize


cdef inline Py_ssize_t _dw_wgrad_sums(Py_ssize_t KH, Py_ssize_t KW,
                                      Py_ssize_t fold) noexcept nogil:
    """How many vectors of sums cvx_dwr keeps: one a tap, and folded, one a
    tap of the ceil(KW / fold) x fold kernel (the taps from KW on unused)."""
    return KH * KW if fold == 0 else (KW + fold - 1) // fold * fold


def depthwise_weight_grad_scratch(Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t slack, Py_ssize_t KH,
                                  Py_ssize_t KW, Py_ssize_t itemsize, bint columns,
                                  Py_ssize_t fold):
    """conv_depthwise_weight_grad's values per thread: a padded image
    (Hp*Wp + slack), and by columns or folded one item's vectors of sums (64
    bytes each)."""
    return Hp * Wp + slack + (_dw_wgrad_sums(KH, KW, fold) * dw_wgrad_lanes(itemsize)
                              if columns or fold else 0)


def depthwise_weight_grad_fold(Py_ssize_t itemsize):
    """The width of the rows conv_depthwise_weight_grad folds a 1-D signal
    into (``fold``): the widest vector's values, 64 bytes, so that any
    level's vectors fit a row."""
    return dw_wgrad_lanes(itemsize)


def depthwise_weight_grad_fold_slack(Py_ssize_t Wp, Py_ssize_t OW, Py_ssize_t KW,
                                     Py_ssize_t fold):
    """The zeros a folded signal of Wp values needs after it: cvx_dwr reads
    its rows up to (OW // fold + ceil(KW / fold)) * fold - 1 (the taps from
    KW on, unused, read past the signal)."""
    return _max(0, (OW // fold + (KW + fold - 1) // fold) * fold - 1 - Wp)


def depthwise_weight_grad_rows_width(Py_ssize_t itemsize):
    """The narrowest output row conv_depthwise_weight_grad's columns kernel
    (``columns=True``) takes on this CPU: a vector of the level's, 64 bytes
    at x86-64-v4, else 32."""
    return cvx_dwr_min_width(itemsize)


cdef inline void _dw_wgrad_folded(const floating* pad, const floating* g, floating* vacc,
                                  floating* acc, const Direct* D, Py_ssize_t KW,
                                  Py_ssize_t fold) noexcept nogil:
    """One image's channel of a 1-D signal (one row, one tap row, unit stride
    and dilation), folded into rows of ``fold`` values ``fold`` apart: tap
    t = a*fold + b is tap (a, b) of a ceil(KW / fold) x fold kernel on the
    OW // fold whole rows of g, which cvx_dwr takes by columns (each loaded
    vector serving a block of tap rows); the OW % fold positions after them,
    tap by tap (cvx_dw_wgrad), into acc."""
    cdef Py_ssize_t rows = D.OW // fold, KH2 = (KW + fold - 1) // fold, j = rows * fold
    if rows > 0:
        if floating is float:
            cvx_dwr_f32(pad, fold, g, fold, rows, KH2, fold, vacc)
        else:
            cvx_dwr_f64(pad, fold, g, fold, rows, KH2, fold, vacc)
    if j < D.OW:
        if floating is float:
            cvx_dw_wgrad_f32(pad + j, D.Wp, g + j, D.OW - j, 1, 1, 1, KW, 1, 1, acc)
        else:
            cvx_dw_wgrad_f64(pad + j, D.Wp, g + j, D.OW - j, 1, 1, 1, KW, 1, 1, acc)


cdef void _dw_wgrad_item(const floating* x, const floating* g, floating* partial,
                         floating* pad, floating* vacc, const Direct* D, Py_ssize_t N,
                         Py_ssize_t chunks, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t dh,
                         Py_ssize_t dw, bint columns, Py_ssize_t fold,
                         Py_ssize_t item) noexcept nogil:
    """Channel c, images of piece k (item = c*chunks + k), into partial[item];
    by columns or folded, through the item's vectors of sums in ``vacc``."""
    cdef Py_ssize_t c = item // chunks, k = item % chunks, n
    cdef Py_ssize_t n0 = k * N // chunks, n1 = (k + 1) * N // chunks
    cdef Py_ssize_t C = D.groups, K = KH * KW
    cdef floating* acc = partial + item * K
    cdef const floating* gi
    memset(acc, 0, K * sizeof(floating))
    if columns or fold:
        memset(vacc, 0,
               _dw_wgrad_sums(KH, KW, fold) * dw_wgrad_lanes(sizeof(floating)) * sizeof(floating))
    for n in range(n0, n1):
        _pad_for(x + (n * C + c) * D.Hs * D.Ws, pad, D, 0, D.OH, 0, D.OW)
        gi = g + (n * C + c) * D.OH * D.OW
        if fold:
            _dw_wgrad_folded(pad, gi, vacc, acc, D, KW, fold)
        elif columns:
            if floating is float:
                cvx_dwr_f32(pad, D.Wp, gi, D.OW, D.OH, KH, KW, vacc)
            else:
                cvx_dwr_f64(pad, D.Wp, gi, D.OW, D.OH, KH, KW, vacc)
        elif floating is float:
            cvx_dw_wgrad_f32(pad, D.Wp, gi, D.OW, D.OH, D.sh, KH, KW, dh, dw, acc)
        else:
            cvx_dw_wgrad_f64(pad, D.Wp, gi, D.OW, D.OH, D.sh, KH, KW, dh, dw, acc)
    if columns or fold:
        if floating is float:
            cvx_dwr_lanes_f32(vacc, K, acc)
        else:
            cvx_dwr_lanes_f64(vacc, K, acc)


def conv_depthwise_weight_grad(const floating[:, :, :, ::1] x,    # IN  (N, C, H, W)
                               const floating[:, :, :, ::1] g,    # IN  (N, C, OH, OW)
                               floating[:, ::1] dwt,              # OUT (C, KH*KW), all written
                               floating[::1] work,                # scratch, see below
                               Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t top, Py_ssize_t left,
                               Py_ssize_t row_step, Py_ssize_t span_h, Py_ssize_t span_w,
                               Py_ssize_t slack, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t dh,
                               Py_ssize_t dw, Py_ssize_t chunks, bint columns, Py_ssize_t fold,
                               int nt, bint interruptible):
    """dwt[c, p*KW + q] = sum over n, i, j of pad[n, c][i*row_step + p*dh*Wp + j + q*dw]
    * g[n, c, i, j]: the depthwise weight gradient (one channel in and out
    per group, unit width stride), tap by tap (cvx_dw_wgrad) unless:
    - ``columns``: by _depthwise.h's cvx_dwr (unit stride and dilation,
      kernels of 3 columns or more, output rows at least
      depthwise_weight_grad_rows_width wide, else tap by tap): each item
      sums its images into a vector of sums a tap, their lanes added at its
      end;
    - ``fold`` > 0 (depthwise_weight_grad_fold's width): a 1-D signal (one
      row, one tap row, unit stride and dilation, ``slack`` at least
      depthwise_weight_grad_fold_slack) folded into rows of ``fold``
      values, its taps a 2-D kernel that cvx_dwr takes by columns.
    Each item is one channel's images of one of ``chunks`` pieces, summed
    into its own row of partial sums (``work``'s first C*chunks*KH*KW
    values); each thread pads one image's channel at a time into its
    Hp*Wp + slack values after them, followed by its item's vectors of sums
    (depthwise_weight_grad_scratch's values per thread).  The pieces are
    added in order at the end: the same bits for any ``nt``.  Returns False
    when interrupted."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], K = KH * KW, items = C * chunks
    cdef Direct D = _direct_geom(1, x.shape[2], x.shape[3], C, 1, g.shape[2], g.shape[3], K, Hp,
                                 Wp, top, left, row_step, span_h, span_w, g.shape[2],
                                 g.shape[3], slack)
    cdef Py_ssize_t padded = Hp * Wp + slack    # the padded image, then the vectors of sums
    cdef Py_ssize_t per = depthwise_weight_grad_scratch(Hp, Wp, slack, KH, KW, sizeof(floating),
                                                        columns, fold)
    cdef Py_ssize_t it, tid, c, k, t
    cdef const floating* xp = _data4(x)
    cdef const floating* gp = &g[0, 0, 0, 0]
    cdef floating* partial = &work[0]
    cdef floating* pads = partial + items * K
    cdef floating s
    cdef const int* stop = _stop(interruptible)
    cdef cvx_team team = cvx_team_new()
    # (a plan made at a narrower level's vectors: tap by tap)
    columns = columns and D.OW >= cvx_dwr_min_width(sizeof(floating))
    with nogil:
        nt = _team(nt)
    if nt == 1:
        with nogil:
            for it in range(items):
                if CVX_STOPPED(stop):
                    break
                _dw_wgrad_item(xp, gp, partial, pads, pads + padded, &D, N, chunks, KH, KW, dh,
                               dw, columns, fold, it)
    else:
        tid = it = 0    # firstprivate in the parallel block: defined before it
        with nogil, parallel(num_threads=nt):
            tid = threadid()
            cvx_saw(tid)
            it = cvx_claim(&team)
            while it < items and not CVX_STOPPED(stop):
                _dw_wgrad_item(xp, gp, partial, pads + tid * per, pads + tid * per + padded,
                               &D, N, chunks, KH, KW, dh, dw, columns, fold, it)
                it = cvx_claim(&team)
            cvx_team_wait(&team)
    if CVX_STOPPED(stop):
        return False
    with nogil:
        for c in range(C):
            for t in range(K):
                s = partial[c * chunks * K + t]
                for k in range(1, chunks):
                    s = s + partial[(c * chunks + k) * K + t]
                dwt[c, t] = s
    return True
