# cython: language_level=3
"""The convx kernels.  This module computes only.

It does no checking: every shape, stride, padding and dtype is validated by the
Python layer (``convx._engine``) before a kernel is called, and the kernels run
with bounds checking off (``setup.py``; ``CONVX_DEBUG=1`` turns it back on).
Outputs and scratch buffers are allocated by the caller; no kernel creates a
Python object, and each releases the GIL for its whole run.

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

The three passes are GEMMs over an im2col matrix, one image and one group at a
time.  For one image and group, ``col`` has shape (Cg*KH*KW, OH*OW), row
``(c*KH + p)*KW + q`` holding the input seen by tap (c, p, q) at each output
position:

    forward       out_g  (Fg, P)  =  w_g (Fg, K)   @ col (K, P)
    input grad    dcol   (K, P)   =  w_g.T (K, Fg) @ g_g (Fg, P);  col2im(dcol) -> dx
    weight grad   dw_g   (Fg, K) +=  g_g (Fg, P)   @ col.T (P, K)

BLAS is column-major and our arrays are row-major, so each product is issued
as its transpose (see ``_gemm``).
"""

from libc.stdint cimport int64_t

cimport cython
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


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


cdef void _im2col(const floating[:, :, ::1] x,      # IN  (Cg, H, W)
                  floating[:, ::1] col,              # OUT (Cg*KH*KW, OH*OW)
                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t c, p, q, i, j, row, off_w, j0, j1, r
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
                    r = i * sh - pt + p * dh
                    if r < 0 or r >= H:
                        for j in range(OW):
                            col[row, i * OW + j] = 0
                        continue
                    for j in range(j0):
                        col[row, i * OW + j] = 0
                    for j in range(j0, j1):
                        col[row, i * OW + j] = x[c, r, j * sw + off_w]
                    for j in range(j1, OW):
                        col[row, i * OW + j] = 0


cdef void _col2im_add(const floating[:, ::1] col,   # IN  (Cg*KH*KW, OH*OW)
                      floating[:, :, ::1] dx,        # IN/OUT (Cg, H, W), accumulated into
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                      Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    """The adjoint of ``_im2col``: every column entry is added back to the
    input cell it was read from; entries that were padding are dropped."""
    cdef Py_ssize_t C = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t c, p, q, i, j, row, off_w, j0, j1, r
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = (c * KH + p) * KW + q
                off_w = q * dw - pl
                j0 = _first_valid(off_w, sw, OW)
                j1 = _end_valid(off_w, sw, W, OW)
                for i in range(OH):
                    r = i * sh - pt + p * dh
                    if r < 0 or r >= H:
                        continue
                    for j in range(j0, j1):
                        dx[c, r, j * sw + off_w] += col[row, i * OW + j]


cdef inline bint _is_pointwise(Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t sh, Py_ssize_t sw,
                               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t H, Py_ssize_t W,
                               Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """True when col is the input itself (1x1 kernel, stride 1, no padding)."""
    return KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 \
        and OH == H and OW == W


def conv_forward(const floating[:, :, :, ::1] x,     # IN  (N, C, H, W)
                 const floating[:, :, :, ::1] w,     # IN  (F, C // G, KH, KW)
                 const floating[::1] bias,           # IN  (F,) or (0,) for no bias
                 floating[:, :, :, ::1] out,         # OUT (N, F, OH, OW)
                 floating[:, :, ::1] work,           # scratch (1, K, OH*OW)
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                 Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups):
    """out = conv(x, w) + bias.  Every cell of ``out`` is written."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w.shape[0], KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t Cg = C // groups, Fg = F // groups
    cdef Py_ssize_t K = Cg * KH * KW, P = OH * OW
    cdef Py_ssize_t n, g, f, i, j
    cdef bint pointwise = _is_pointwise(KH, KW, sh, sw, pt, pl, H, W, OH, OW)
    cdef bint has_bias = bias.shape[0] > 0
    cdef floating beta = 1 if has_bias else 0
    cdef floating[:, ::1] col = work[0]
    cdef const floating* b_ptr
    with nogil:
        for n in range(N):
            if has_bias:
                for f in range(F):
                    for i in range(OH):
                        for j in range(OW):
                            out[n, f, i, j] = bias[f]
            for g in range(groups):
                if pointwise:
                    b_ptr = &x[n, g * Cg, 0, 0]
                else:
                    _im2col(x[n, g * Cg:(g + 1) * Cg], col, KH, KW, OH, OW,
                            sh, sw, dh, dw, pt, pl)
                    b_ptr = &col[0, 0]
                _gemm(c'N', c'N', <int> P, <int> Fg, <int> K,
                      b_ptr, <int> P, &w[g * Fg, 0, 0, 0], <int> K,
                      beta, &out[n, g * Fg, 0, 0], <int> P)


def conv_input_grad(const floating[:, :, :, ::1] gout,  # IN  (N, F, OH, OW)
                    const floating[:, :, :, ::1] w,     # IN  (F, C // G, KH, KW)
                    floating[:, :, :, ::1] dx,          # OUT (N, C, H, W), must arrive zeroed
                    floating[:, :, ::1] work,           # scratch (1, K, OH*OW)
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups):
    """dx = the gradient of sum(conv(x, w) * gout) with respect to x."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t F = w.shape[0], KH = w.shape[2], KW = w.shape[3]
    cdef Py_ssize_t OH = gout.shape[2], OW = gout.shape[3]
    cdef Py_ssize_t Cg = C // groups, Fg = F // groups
    cdef Py_ssize_t K = Cg * KH * KW, P = OH * OW
    cdef Py_ssize_t n, g
    cdef bint pointwise = _is_pointwise(KH, KW, sh, sw, pt, pl, H, W, OH, OW)
    cdef floating[:, ::1] col = work[0]
    with nogil:
        for n in range(N):
            for g in range(groups):
                if pointwise:
                    _gemm(c'N', c'T', <int> P, <int> K, <int> Fg,
                          &gout[n, g * Fg, 0, 0], <int> P, &w[g * Fg, 0, 0, 0], <int> K,
                          0, &dx[n, g * Cg, 0, 0], <int> P)
                else:
                    _gemm(c'N', c'T', <int> P, <int> K, <int> Fg,
                          &gout[n, g * Fg, 0, 0], <int> P, &w[g * Fg, 0, 0, 0], <int> K,
                          0, &col[0, 0], <int> P)
                    _col2im_add(col, dx[n, g * Cg:(g + 1) * Cg], KH, KW, OH, OW,
                                sh, sw, dh, dw, pt, pl)


def conv_weight_grad(const floating[:, :, :, ::1] x,     # IN  (N, C, H, W)
                     const floating[:, :, :, ::1] gout,  # IN  (N, F, OH, OW)
                     floating[:, :, :, ::1] dw_,         # OUT (F, C // G, KH, KW), must arrive zeroed
                     floating[:, :, ::1] work,           # scratch (1, K, OH*OW)
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                     Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups):
    """dw_ += the gradient of sum(conv(x, w) * gout) with respect to w."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = dw_.shape[0], KH = dw_.shape[2], KW = dw_.shape[3]
    cdef Py_ssize_t OH = gout.shape[2], OW = gout.shape[3]
    cdef Py_ssize_t Cg = C // groups, Fg = F // groups
    cdef Py_ssize_t K = Cg * KH * KW, P = OH * OW
    cdef Py_ssize_t n, g
    cdef bint pointwise = _is_pointwise(KH, KW, sh, sw, pt, pl, H, W, OH, OW)
    cdef floating[:, ::1] col = work[0]
    cdef const floating* a_ptr
    with nogil:
        for n in range(N):
            for g in range(groups):
                if pointwise:
                    a_ptr = &x[n, g * Cg, 0, 0]
                else:
                    _im2col(x[n, g * Cg:(g + 1) * Cg], col, KH, KW, OH, OW,
                            sh, sw, dh, dw, pt, pl)
                    a_ptr = &col[0, 0]
                _gemm(c'T', c'N', <int> K, <int> Fg, <int> P,
                      a_ptr, <int> P, &gout[n, g * Fg, 0, 0], <int> P,
                      1, &dw_[g * Fg, 0, 0, 0], <int> K)


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
