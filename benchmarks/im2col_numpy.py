"""A plain NumPy im2col convolution: the baseline ``benchmarks/bench.py`` times.

This is the vectorised convolution a NumPy user writes after *Deep Learning
from Scratch* (its ``im2col`` / ``col2im``) or CS231n's fast layers: lay every
receptive field out as a row of one big matrix for the whole batch, then one
matrix product.  It is deliberately ordinary, clean NumPy, not tuned:

* forward: ``sliding_window_view`` of the padded input, copied into the
  ``(N*OH*OW, C*kH*kW)`` column matrix, times the weight matrix;
* weight grad: the same column matrix, times the output gradient;
* input grad: output gradient times weight gives the column gradients, which
  ``col2im`` scatters back with one strided ``+=`` per kernel tap (the book's
  loop over filter rows and columns).

Layouts and semantics are PyTorch's: data NCHW (NCL for 1-D), weights
``(C_out, C_in, kH, kW)``, cross-correlation, the same ``stride`` and
``padding`` (ints) on both spatial axes, no dilation or groups.  The column
matrix holds the whole batch, so its memory grows with the batch size.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["conv1d", "conv1d_input_grad", "conv1d_weight_grad",
           "conv2d", "conv2d_input_grad", "conv2d_weight_grad"]


def _out_size(size, k, stride, padding):
    return (size + 2 * padding - k) // stride + 1


def im2col(x, kh, kw, stride=1, padding=0):
    """x (N, C, H, W) -> columns (N*OH*OW, C*kH*kW), and (OH, OW)."""
    n, c, _, _ = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    oh, ow = win.shape[2], win.shape[3]
    # (N, C, OH, OW, kH, kW) -> (N, OH, OW, C, kH, kW): the reshape copies.
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    return cols, (oh, ow)


def col2im(cols, input_shape, kh, kw, stride=1, padding=0):
    """The adjoint of :func:`im2col`: columns (N*OH*OW, C*kH*kW) summed back into (N, C, H, W)."""
    n, c, h, w = input_shape
    oh, ow = _out_size(h, kh, stride, padding), _out_size(w, kw, stride, padding)
    cols = cols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # (N, C, kH, kW, OH, OW)
    xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, :, i, j]
    return xp[:, :, padding:padding + h, padding:padding + w]


def conv2d(x, weight, stride=1, padding=0):
    """x (N, C, H, W), weight (F, C, kH, kW) -> (N, F, OH, OW)."""
    n = x.shape[0]
    f, _, kh, kw = weight.shape
    cols, (oh, ow) = im2col(x, kh, kw, stride, padding)
    out = cols @ weight.reshape(f, -1).T                      # (N*OH*OW, F)
    return np.ascontiguousarray(out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2))


def conv2d_input_grad(input_shape, weight, grad_output, stride=1, padding=0):
    """The gradient of ``sum(conv2d(x, weight) * grad_output)`` with respect to x."""
    f, _, kh, kw = weight.shape
    g = grad_output.transpose(0, 2, 3, 1).reshape(-1, f)      # (N*OH*OW, F)
    dcols = g @ weight.reshape(f, -1)                         # (N*OH*OW, C*kH*kW)
    return np.ascontiguousarray(col2im(dcols, input_shape, kh, kw, stride, padding))


def conv2d_weight_grad(x, weight_shape, grad_output, stride=1, padding=0):
    """The gradient of ``sum(conv2d(x, weight) * grad_output)`` with respect to weight."""
    f, _, kh, kw = weight_shape
    cols, _ = im2col(x, kh, kw, stride, padding)
    g = grad_output.transpose(0, 2, 3, 1).reshape(-1, f)      # (N*OH*OW, F)
    return (g.T @ cols).reshape(weight_shape)


# 1-D: the 2-D functions with H = 1 (a kernel of height 1 and no padding along H
# would need a second padding argument, so the 1-D input is padded here instead).

def _pad1(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding))) if padding else x


def conv1d(x, weight, stride=1, padding=0):
    """x (N, C, L), weight (F, C, k) -> (N, F, OL)."""
    return conv2d(_pad1(x, padding)[:, :, None, :], weight[:, :, None, :], stride)[:, :, 0, :]


def conv1d_input_grad(input_shape, weight, grad_output, stride=1, padding=0):
    n, c, length = input_shape
    dxp = conv2d_input_grad((n, c, 1, length + 2 * padding), weight[:, :, None, :],
                            grad_output[:, :, None, :], stride)[:, :, 0, :]
    return np.ascontiguousarray(dxp[:, :, padding:padding + length])


def conv1d_weight_grad(x, weight_shape, grad_output, stride=1, padding=0):
    f, c, k = weight_shape
    return conv2d_weight_grad(_pad1(x, padding)[:, :, None, :], (f, c, 1, k),
                              grad_output[:, :, None, :], stride)[:, :, 0, :]
