"""An independent pure-NumPy reference for the notebook's convolutions.

Nothing here imports convx, and nothing here unrolls the input into an im2col
matrix: every pass is a plain sum over the kernel's taps of shifted slices of
an explicitly zero-padded array, which is short enough to check by eye.

The notebook's convolution is a "same" cross-correlation.  For a kernel of
size k along an axis, ``k // 2`` zeros go before the data and
``k - 1 - k // 2`` after it, so the output has the input's size and

    out[o] = sum_p param[p] * x_pad[o + p]

(per axis in 2-D).  The multi-channel layout is the notebook's:
x is (N, C_in, H, W), param is (C_in, C_out, KH, KW) and

    out[n, co] = sum_ci corr(x[n, ci], param[ci, co]).

``input_grad`` and ``param_grad`` are the exact adjoints of ``forward``: the
gradients of ``sum(forward(x, param) * g)`` with respect to ``x`` and to
``param``.  They scatter the same shifted slices back (adjoint of "read a
slice" is "add into that slice"), so they are derived from the forward formula
alone, never from convx.

Every result is float64, whatever the input dtype: integer inputs are small
in the tests, so float64 sums of them are exact.

The second half of this file is a general reference for the public API
(``torch.nn.functional.conv1d/conv2d`` semantics): strides, asymmetric zero
padding, dilation and groups, see :func:`conv_nd`.
"""
import numpy as np

__all__ = ["conv_nd", "conv_nd_input_grad", "conv_nd_weight_grad", "conv_output_size",
           "corr_same_1d", "corr_same_2d", "forward", "input_grad", "pad", "param_grad",
           "same_pads", "torch_same_pads"]


def same_pads(k):
    """The notebook's (before, after) padding for a kernel of size ``k``."""
    return (k // 2, k - 1 - k // 2)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def pad(x, pads_per_axis):
    """``x`` (as float64) with zeros added: ``pads_per_axis`` is one
    ``(before, after)`` pair per axis of ``x`` (or an int for every side)."""
    x = _f64(x)
    if isinstance(pads_per_axis, (int, np.integer)):
        pads_per_axis = [(int(pads_per_axis),) * 2] * x.ndim
    pads_per_axis = [tuple(int(n) for n in p) for p in pads_per_axis]
    if len(pads_per_axis) != x.ndim:
        raise ValueError("one (before, after) pair per axis")
    return np.pad(x, pads_per_axis, mode="constant", constant_values=0.0)


def corr_same_1d(x, k):
    """'same' cross-correlation of each row of ``x`` (..., L) with ``k`` (K,)."""
    x, k = _f64(x), _f64(k)
    (K,) = k.shape
    L = x.shape[-1]
    xp = pad(x, [(0, 0)] * (x.ndim - 1) + [same_pads(K)])
    out = np.zeros(x.shape)
    for p in range(K):
        out += k[p] * xp[..., p:p + L]
    return out


def corr_same_2d(x, k):
    """'same' cross-correlation of each image of ``x`` (..., H, W) with ``k`` (KH, KW)."""
    x, k = _f64(x), _f64(k)
    KH, KW = k.shape
    H, W = x.shape[-2:]
    xp = pad(x, [(0, 0)] * (x.ndim - 2) + [same_pads(KH), same_pads(KW)])
    out = np.zeros(x.shape)
    for p in range(KH):
        for q in range(KW):
            out += k[p, q] * xp[..., p:p + H, q:q + W]
    return out


def _pads_2d(param_shape):
    KH, KW = param_shape[-2:]
    return same_pads(KH), same_pads(KW)


def forward(x, param):
    """x (N, C_in, H, W), param (C_in, C_out, KH, KW) -> (N, C_out, H, W)."""
    x, param = _f64(x), _f64(param)
    N, C_in, H, W = x.shape
    C_in2, C_out, KH, KW = param.shape
    if C_in2 != C_in:
        raise ValueError("channels of param and x differ")
    xp = pad(x, [(0, 0), (0, 0), *_pads_2d(param.shape)])
    out = np.zeros((N, C_out, H, W))
    for ci in range(C_in):
        for co in range(C_out):
            for p in range(KH):
                for q in range(KW):
                    out[:, co] += param[ci, co, p, q] * xp[:, ci, p:p + H, q:q + W]
    return out


def input_grad(x_shape, param, g):
    """d sum(forward(x, param) * g) / dx, for x of shape ``x_shape``.

    forward reads ``xp[:, ci, p:p+H, q:q+W]`` with weight ``param[ci, co, p, q]``
    into ``out[:, co]``; the adjoint adds ``param[ci, co, p, q] * g[:, co]`` into
    that same slice of a padded zero array, then drops the padding (padding is
    constant, so its gradient goes nowhere).
    """
    param, g = _f64(param), _f64(g)
    N, C_in, H, W = x_shape
    C_in2, C_out, KH, KW = param.shape
    if C_in2 != C_in or g.shape != (N, C_out, H, W):
        raise ValueError("shapes of x, param and g do not fit")
    (pt, pb), (pl, pr) = _pads_2d(param.shape)
    dxp = np.zeros((N, C_in, H + pt + pb, W + pl + pr))
    for ci in range(C_in):
        for co in range(C_out):
            for p in range(KH):
                for q in range(KW):
                    dxp[:, ci, p:p + H, q:q + W] += param[ci, co, p, q] * g[:, co]
    return dxp[:, :, pt:pt + H, pl:pl + W].copy()


def param_grad(x, g, param_shape):
    """d sum(forward(x, param) * g) / dparam, for param of shape ``param_shape``.

    ``param[ci, co, p, q]`` multiplies ``xp[:, ci, p:p+H, q:q+W]`` into
    ``out[:, co]``, so its gradient is the sum of that slice times ``g[:, co]``.
    """
    x, g = _f64(x), _f64(g)
    N, C_in, H, W = x.shape
    C_in2, C_out, KH, KW = param_shape
    if C_in2 != C_in or g.shape != (N, C_out, H, W):
        raise ValueError("shapes of x, param and g do not fit")
    xp = pad(x, [(0, 0), (0, 0), *_pads_2d(param_shape)])
    dparam = np.zeros(tuple(param_shape))
    for ci in range(C_in):
        for co in range(C_out):
            for p in range(KH):
                for q in range(KW):
                    dparam[ci, co, p, q] = np.sum(xp[:, ci, p:p + H, q:q + W] * g[:, co])
    return dparam


# --------------------------------------------------------------------------
# The general convolution of the public API (PyTorch's semantics)
# --------------------------------------------------------------------------
#
# Layouts: x is (N, C, H, W), w is (F, C // groups, KH, KW).  With
# Cg = C // groups and Fg = F // groups, filter f belongs to group
# gi = f // Fg and reads input channels gi*Cg .. gi*Cg + Cg - 1:
#
#     out[n, f, i, j] = bias[f] + sum_{c, p, q} w[f, c, p, q]
#                         * xpad[n, gi*Cg + c, i*sh + p*dh, j*sw + q*dw]
#
# where xpad is x with ``top``/``bottom`` zero rows and ``left``/``right``
# zero columns.  For one tap (p, q) the positions i*sh + p*dh, i = 0..OH-1,
# are the strided slice ``p*dh : p*dh + sh*(OH-1) + 1 : sh``, so each pass
# below is a loop over groups and taps of one such slice; the sum over the
# group's channels is a plain contraction of that slice with w[..., p, q].
#
# 1-D arrays (N, C, L) / (F, C // groups, K) are taken as H = 1; stride,
# pads and dilation are then still given in the 2-D form (pass sh = dh = 1
# and top = bottom = 0).


def _two(v):
    """An int or a pair as a pair of ints."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    a, b = v
    return (int(a), int(b))


def pads4(padding):
    """(top, bottom, left, right) of a padding given per side as an int or
    (height, width), the same before and after."""
    ph, pw = _two(padding)
    return (ph, ph, pw, pw)


def kernel_hw(k):
    """A kernel's (height, width) from ``k``, a pair or one size for both."""
    return k if isinstance(k, tuple) else (k, k)


def depthwise_case(case, dtype):
    """A depthwise layer's test data from ``case`` = (input shape, k,
    padding), a k x k kernel (or kh x kw, ``k`` a pair) at stride 1: its
    (top, bottom, left, right) pads, a random input and output gradient,
    and the generator that made them (seeded by the shapes), for the
    weights."""
    xs, k, padding = case
    kh, kw = kernel_hw(k)
    pads = padding if isinstance(padding, tuple) else pads4(padding)
    rng = np.random.default_rng(sum(xs) + kh + 1000 * abs(kw - kh))
    x = rng.standard_normal(xs).astype(dtype)
    oh, ow = xs[2] + pads[0] + pads[1] - kh + 1, xs[3] + pads[2] + pads[3] - kw + 1
    g = rng.standard_normal((xs[0], xs[1], oh, ow)).astype(dtype)
    return pads, x, g, rng


def torch_same_pads(k, dilation=1):
    """PyTorch's padding='same' along one axis: ``(before, after)``.

    The total is ``dilation * (k - 1)``; ``total // 2`` goes before and the
    rest (one more, when the total is odd) after.
    """
    total = dilation * (k - 1)
    return (total // 2, total - total // 2)


def conv_output_size(size, k, stride=1, dilation=1, pad_lo=0, pad_hi=0):
    """Output length along one axis, or None when the kernel does not fit in the padded input."""
    padded = size + pad_lo + pad_hi
    span = dilation * (k - 1) + 1
    if span > padded:
        return None
    return (padded - span) // stride + 1


def _geometry(x_shape, w_shape, stride, pads, dilation, groups):
    """Check the shapes and return everything the three passes need."""
    N, C, H, W = x_shape
    F, Cg, KH, KW = w_shape
    if groups < 1 or C % groups or F % groups or Cg * groups != C:
        raise ValueError(f"shapes {x_shape} and {w_shape} do not fit groups={groups}")
    sh, sw = _two(stride)
    dh, dw = _two(dilation)
    pt, pb, pl, pr = (int(p) for p in pads)
    if min(sh, sw, dh, dw) < 1 or min(pt, pb, pl, pr) < 0 or min(KH, KW) < 1:
        raise ValueError("bad stride, dilation, padding or kernel size")
    OH = conv_output_size(H, KH, sh, dh, pt, pb)
    OW = conv_output_size(W, KW, sw, dw, pl, pr)
    if OH is None or OW is None:
        raise ValueError("the kernel does not fit in the padded input")
    return dict(N=N, C=C, H=H, W=W, F=F, Cg=Cg, Fg=F // groups, KH=KH, KW=KW, sh=sh, sw=sw,
                dh=dh, dw=dw, pt=pt, pb=pb, pl=pl, pr=pr, OH=OH, OW=OW,
                Hp=H + pt + pb, Wp=W + pl + pr)


def _tap(G, p, q):
    """The index of xpad's spatial axes read by tap (p, q): a pair of strided slices."""
    rows = slice(p * G["dh"], p * G["dh"] + G["sh"] * (G["OH"] - 1) + 1, G["sh"])
    cols = slice(q * G["dw"], q * G["dw"] + G["sw"] * (G["OW"] - 1) + 1, G["sw"])
    return rows, cols


def _as4(shape):
    """A 3-D (1-D conv) shape as a 4-D one with H = 1."""
    shape = tuple(int(s) for s in shape)
    return shape[:2] + (1,) + shape[2:] if len(shape) == 3 else shape


def conv_nd(x, w, bias=None, stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1):
    """The forward pass: x (N, C, H, W), w (F, C // groups, KH, KW) -> (N, F, OH, OW).

    ``pads`` is ``(top, bottom, left, right)``; ``stride`` and ``dilation``
    are an int or ``(along H, along W)``.  3-D x and w are 1-D convolutions
    (H = 1) and give a 3-D result.
    """
    x, w = _f64(x), _f64(w)
    one_d = x.ndim == 3
    x, w = x.reshape(_as4(x.shape)), w.reshape(_as4(w.shape))
    G = _geometry(x.shape, w.shape, stride, pads, dilation, groups)
    xp = np.pad(x, [(0, 0), (0, 0), (G["pt"], G["pb"]), (G["pl"], G["pr"])])
    out = np.zeros((G["N"], G["F"], G["OH"], G["OW"]))
    Cg, Fg = G["Cg"], G["Fg"]
    for gi in range(groups):
        xg = xp[:, gi * Cg:(gi + 1) * Cg]          # (N, Cg, Hp, Wp)
        wg = w[gi * Fg:(gi + 1) * Fg]              # (Fg, Cg, KH, KW)
        for p in range(G["KH"]):
            for q in range(G["KW"]):
                rows, cols = _tap(G, p, q)
                # out[n, f, i, j] += sum_c w[f, c, p, q] * xpad[n, c, i*sh + p*dh, j*sw + q*dw]
                out[:, gi * Fg:(gi + 1) * Fg] += np.einsum(
                    "fc,nchw->nfhw", wg[:, :, p, q], xg[:, :, rows, cols])
    if bias is not None:
        out += _f64(bias)[None, :, None, None]
    return out[:, :, 0, :] if one_d else out


def conv_nd_input_grad(input_shape, w, g, stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1):
    """d sum(conv_nd(x, w) * g) / dx for x of ``input_shape``: the exact adjoint of conv_nd.

    conv_nd reads the slice ``xpad[:, group's channels, rows, cols]`` of tap
    (p, q) with weight ``w[f, c, p, q]`` into ``out[:, f]``; the adjoint adds
    ``sum_f w[f, c, p, q] * g[:, f]`` into that same slice of a zero padded
    array (within one slice every position is distinct, so ``+=`` is a true
    scatter-add), then drops the padding.
    """
    w, g = _f64(w), _f64(g)
    input_shape = tuple(int(s) for s in input_shape)
    w = w.reshape(_as4(w.shape))
    G = _geometry(_as4(input_shape), w.shape, stride, pads, dilation, groups)
    g = g.reshape(G["N"], G["F"], G["OH"], G["OW"])  # raises if g has the wrong size
    dxp = np.zeros((G["N"], G["C"], G["Hp"], G["Wp"]))
    Cg, Fg = G["Cg"], G["Fg"]
    for gi in range(groups):
        wg = w[gi * Fg:(gi + 1) * Fg]
        gg = g[:, gi * Fg:(gi + 1) * Fg]           # (N, Fg, OH, OW)
        for p in range(G["KH"]):
            for q in range(G["KW"]):
                rows, cols = _tap(G, p, q)
                dxp[:, gi * Cg:(gi + 1) * Cg, rows, cols] += np.einsum(
                    "fc,nfhw->nchw", wg[:, :, p, q], gg)
    dx = dxp[:, :, G["pt"]:G["pt"] + G["H"], G["pl"]:G["pl"] + G["W"]]
    return dx.reshape(input_shape).copy()


def conv_nd_weight_grad(x, w_shape, g, stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1):
    """d sum(conv_nd(x, w) * g) / dw for w of ``w_shape``: the exact adjoint of conv_nd.

    ``w[f, c, p, q]`` multiplies the slice of tap (p, q) of input channel
    ``gi*Cg + c`` into ``out[:, f]``, so its gradient is the sum over the
    batch and the output positions of that slice times ``g[:, f]``.
    """
    x, g = _f64(x), _f64(g)
    w_shape = tuple(int(s) for s in w_shape)
    x = x.reshape(_as4(x.shape))
    G = _geometry(x.shape, _as4(w_shape), stride, pads, dilation, groups)
    g = g.reshape(G["N"], G["F"], G["OH"], G["OW"])
    xp = np.pad(x, [(0, 0), (0, 0), (G["pt"], G["pb"]), (G["pl"], G["pr"])])
    dw = np.zeros((G["F"], G["Cg"], G["KH"], G["KW"]))
    Cg, Fg = G["Cg"], G["Fg"]
    for gi in range(groups):
        xg = xp[:, gi * Cg:(gi + 1) * Cg]
        gg = g[:, gi * Fg:(gi + 1) * Fg]
        for p in range(G["KH"]):
            for q in range(G["KW"]):
                rows, cols = _tap(G, p, q)
                dw[gi * Fg:(gi + 1) * Fg, :, p, q] += np.einsum(
                    "nchw,nfhw->fc", xg[:, :, rows, cols], gg)
    return dw.reshape(w_shape)


def random_call(rng, nsp, depthwise_max, size_max, pad_max, padding_p):
    """A random valid convolution for the oracle comparisons, or None when
    the kernel drawn does not fit: plain, grouped (2, 3) or depthwise, with
    strides and dilations 1-3, kernels 1-5 and padding an int, a tuple,
    'valid' or 'same' (drawn with the probabilities ``padding_p``).

    ``depthwise_max``, ``size_max`` and ``pad_max`` bound a depthwise
    call's channels, the spatial sizes and the padding (each exclusive).
    Returns a dict of the shapes, the geometry as the public API takes it
    (``stride``, ``dilation``, ``padding``) and as :func:`conv_nd` takes it
    (``rk``), whether to add a bias, the dtype and a seed for the data.
    """
    kind = str(rng.choice(["g1", "g1", "g2", "g3", "depthwise"]))
    if kind == "depthwise":
        C = int(rng.integers(1, depthwise_max))
        groups, F = C, C * int(rng.integers(1, 3))
    else:
        groups = int(kind[1])
        C = groups * int(rng.integers(1, 6 // groups + 1))
        F = groups * int(rng.integers(1, 6 // groups + 1))
    N = int(rng.integers(1, 4))
    sizes = [int(rng.integers(1, size_max)) for _ in range(nsp)]
    ks = [int(rng.integers(1, 6)) for _ in range(nsp)]
    pform = str(rng.choice(["int", "pair", "valid", "same"], p=padding_p))
    strides = [1] * nsp if pform == "same" else [int(rng.integers(1, 4)) for _ in range(nsp)]
    dils = [int(rng.integers(1, 4)) for _ in range(nsp)]
    if pform == "int":
        p = int(rng.integers(0, pad_max))
        padding, lohi = p, [(p, p)] * nsp
    elif pform == "pair":
        ps = [int(rng.integers(0, pad_max)) for _ in range(nsp)]
        padding, lohi = tuple(ps), [(p, p) for p in ps]
    elif pform == "valid":
        padding, lohi = "valid", [(0, 0)] * nsp
    else:
        padding, lohi = "same", [torch_same_pads(k, d) for k, d in zip(ks, dils)]
    outs = [conv_output_size(n, k, s, d, lo, hi)
            for n, k, s, d, (lo, hi) in zip(sizes, ks, strides, dils, lohi)]
    if None in outs:
        return None
    pads = (0, 0) + lohi[0] if nsp == 1 else lohi[0] + lohi[1]
    two = (lambda v: (1,) + tuple(v)) if nsp == 1 else tuple
    return dict(nsp=nsp, N=N, C=C, F=F, groups=groups, kind=kind, sizes=sizes, ks=ks,
                x_shape=(N, C, *sizes), w_shape=(F, C // groups, *ks),
                out_shape=(N, F, *outs), stride=tuple(strides), dilation=tuple(dils),
                padding=padding, pform=pform, bias=bool(rng.random() < 0.5),
                dtype=np.dtype(np.float32) if rng.random() < 0.5 else np.dtype(np.float64),
                seed=int(rng.integers(2**31)),
                rk=dict(stride=two(strides), dilation=two(dils), pads=pads, groups=groups))
