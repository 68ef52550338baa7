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
"""
import numpy as np

__all__ = ["same_pads", "pad", "corr_same_1d", "corr_same_2d",
           "forward", "input_grad", "param_grad"]


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
