"""Allocate outputs and call the core: the one path every face of convx takes.

Callers (the notebook names in ``_notebook.py``, the public API) have already
checked their arguments and brought arrays to one float dtype, C order.  Here
the output sizes are computed, outputs and scratch are allocated (``np.empty``
where the kernel writes every cell, ``np.zeros`` for accumulators), the
degenerate sizes the kernels are not asked to handle are answered directly,
and the kernel in ``_core`` is called.

Geometry is always 2-D: ``stride=(sh, sw)``, ``dilation=(dh, dw)`` and
``pads=(top, bottom, left, right)``.  1-D callers pass H = 1.
"""
import numpy as np

from . import _core, _threads
from ._validate import ConvxValueError

# BLAS takes 32-bit sizes.
_BLAS_MAX = 2**31 - 1
_NO_BIAS = {np.dtype(np.float32): np.empty(0, np.float32),
            np.dtype(np.float64): np.empty(0, np.float64)}


def output_size(func, size, k, stride, dilation, pad_lo, pad_hi, axis):
    """Output length along one axis; an error if the kernel does not fit."""
    padded = size + pad_lo + pad_hi
    span = dilation * (k - 1) + 1
    if span > padded:
        raise ConvxValueError(
            f"{func}(): the kernel spans {span} along {axis} (size {k}, dilation {dilation}) "
            f"but the padded input is only {padded} ({size} + padding {pad_lo} + {pad_hi})")
    return (padded - span) // stride + 1


def sizes(func, in_hw, k_hw, stride, pads, dilation):
    oh = output_size(func, in_hw[0], k_hw[0], stride[0], dilation[0], pads[0], pads[1], "height")
    ow = output_size(func, in_hw[1], k_hw[1], stride[1], dilation[1], pads[2], pads[3], "width")
    return oh, ow


def _plan(func, dtype, n, k, p, f):
    """Threads for a call and their scratch: one im2col matrix (K, P) per thread.

    Returns ``(work, blas_threads)``; ``work.shape[0]`` is the number of
    threads.  Checks first that BLAS's 32-bit sizes can index the products.
    """
    if max(k, p, f) > _BLAS_MAX:
        raise ConvxValueError(
            f"{func}(): a GEMM dimension exceeds 2**31 - 1 (kernel taps {k}, output "
            f"positions {p}, filters {f}); split the input into smaller pieces")
    threads, blas_threads = _threads.plan(n, n * k * p * f)
    return np.empty((threads, k, p), dtype), blas_threads


def forward(func, x, w, bias, stride, pads, dilation, groups):
    """conv(x, w) + bias: x (N, C, H, W), w (F, C // groups, KH, KW) -> (N, F, OH, OW)."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    oh, ow = sizes(func, (h, wd), (kh, kw), stride, pads, dilation)
    out = np.empty((n, f, oh, ow), x.dtype)
    if out.size == 0:
        return out
    k = cg * kh * kw
    if k == 0:  # no input channels: the sum is empty
        out[...] = 0 if bias is None else bias[:, None, None]
        return out
    work, blas = _plan(func, x.dtype, n, k, oh * ow, f)
    _threads.run(blas, _core.conv_forward, x, w, _NO_BIAS[x.dtype] if bias is None else bias,
                 out, work, stride[0], stride[1], dilation[0], dilation[1], pads[0], pads[2],
                 groups)
    return out


def input_grad(func, input_shape, w, gout, stride, pads, dilation, groups):
    """The gradient of sum(conv(x, w) * gout) with respect to x, x of ``input_shape``."""
    n, c, h, wd = input_shape
    f, cg, kh, kw = w.shape
    dx = np.zeros(input_shape, w.dtype)
    k = cg * kh * kw
    if dx.size == 0 or gout.size == 0 or k == 0:
        return dx
    work, blas = _plan(func, w.dtype, n, k, gout.shape[2] * gout.shape[3], f)
    _threads.run(blas, _core.conv_input_grad, gout, w, dx, work, stride[0], stride[1],
                 dilation[0], dilation[1], pads[0], pads[2], groups)
    return dx


def weight_grad(func, x, weight_shape, gout, stride, pads, dilation, groups):
    """The gradient of sum(conv(x, w) * gout) with respect to w, w of ``weight_shape``."""
    f, cg, kh, kw = weight_shape
    k = cg * kh * kw
    if k * f == 0 or gout.size == 0:
        return np.zeros(weight_shape, x.dtype)
    work, blas = _plan(func, x.dtype, x.shape[0], k, gout.shape[2] * gout.shape[3], f)
    # One accumulator per thread (each thread sums its own images), then one reduction.
    dw = np.zeros((work.shape[0],) + tuple(weight_shape), x.dtype)
    _threads.run(blas, _core.conv_weight_grad, x, gout, dw, work, stride[0], stride[1],
                 dilation[0], dilation[1], pads[0], pads[2], groups)
    return dw[0] if dw.shape[0] == 1 else dw.sum(axis=0)


def pad(x, pads):
    """x (N, C, H, W) with ``pads=(top, bottom, left, right)`` zeros around each image.

    ``x`` must be C-contiguous float32, float64 or int64; the result has its dtype.
    """
    n, c, h, w = x.shape
    out = np.empty((n, c, h + pads[0] + pads[1], w + pads[2] + pads[3]), x.dtype)
    if out.size == 0:
        return out
    if x.size == 0:  # nothing to copy: all border
        out[...] = 0
        return out
    _core.pad(x, out, pads[0], pads[2])
    return out
