"""Allocate outputs and call the core: the one path every face of convx takes.

Callers (the notebook names in ``_notebook.py``, the public API) have already
checked their arguments and brought arrays to one float dtype, C order.  Here
the output sizes are computed, outputs and scratch are allocated (``np.empty``
where the kernel writes every cell, ``np.zeros`` for accumulators), the
degenerate sizes the kernels are not asked to handle are answered directly,
and the kernel in ``_core`` is called.

Each pass is split in two: ``*_plan`` looks only at shapes and geometry and
decides the path (direct kernel or im2col + GEMM), the output shape and the
kernel's arguments; ``*_run`` allocates and calls the kernel.  A plan can be
kept for calls with the same signature (``planned``): both faces keep theirs,
the public API beside its own argument checks, since planning and checking
are most of what a call on a tiny input costs.

Geometry is always 2-D: ``stride=(sh, sw)``, ``dilation=(dh, dw)`` and
``pads=(top, bottom, left, right)``.  1-D callers pass H = 1.
"""
import math

import numpy as np

from . import _core, _threads
from ._validate import ConvxValueError

# BLAS takes 32-bit sizes.
_BLAS_MAX = 2**31 - 1


def check_gemm_sizes(func, k, p, f, kernel_arg="weight", input_arg="input"):
    """BLAS takes 32-bit sizes: taps K, output positions P and filters F must fit."""
    if max(k, p, f) > _BLAS_MAX:
        culprit = (f"argument '{input_arg}' with this padding, stride and dilation gives"
                   if p > _BLAS_MAX else f"argument '{kernel_arg}' has")
        raise ConvxValueError(
            f"{func}(): {culprit} a GEMM dimension past 2**31 - 1 (kernel taps {k}, output "
            f"positions {p}, filters {f}); split the input into smaller pieces")


def sizes(func, kernel_arg, in_hw, w_shape, stride, pads, dilation, input_arg="input"):
    """(OH, OW) for a weight of shape ``w_shape`` (F, Cg, KH, KW).

    Raises, before anything is allocated, when the kernel does not fit (naming
    ``kernel_arg``) or when the products would be too large for BLAS.
    """
    k_hw = w_shape[2:]
    out = []
    for axis in (0, 1):
        padded = in_hw[axis] + pads[2 * axis] + pads[2 * axis + 1]
        span = dilation[axis] * (k_hw[axis] - 1) + 1
        if span > padded:
            raise ConvxValueError(
                f"{func}(): argument '{kernel_arg}': the kernel spans {span} along "
                f"{('height', 'width')[axis]} (size {k_hw[axis]}, dilation {dilation[axis]}) but "
                f"the padded input is only {padded} ({in_hw[axis]} + padding "
                f"{pads[2 * axis]} + {pads[2 * axis + 1]})")
        out.append((padded - span) // stride[axis] + 1)
    check_gemm_sizes(func, w_shape[1] * k_hw[0] * k_hw[1], out[0] * out[1], w_shape[0],
                     kernel_arg, input_arg)
    return tuple(out)


# The direct kernel (_direct.h) computes a block of this many output channels
# times this many columns at once; its scratch needs a column block of slack.
_DIRECT_FB = 4
_DIRECT_JB = {np.dtype(np.float32): 16, np.dtype(np.float64): 8}
# A pass goes to GEMM once the direct kernel's (channels x taps) block is
# larger than these: there OpenBLAS's packing pays for itself.  Measured
# single-threaded, CPU time of direct / GEMM, float32 and float64: the forward
# and input gradient (one kernel) of 16 -> 32 channels 3x3, a block of 4608,
# 0.62 and 0.74; of 32 -> 32 5x5, 25600, 0.58 and 0.70; of 64 -> 64 3x3,
# 36864, 0.91 and 0.77; of 128 -> 128 3x3, 147456, 1.01 and 1.02; of
# 256 -> 256 3x3, 589824, 1.19 and 1.13.  The weight gradient of 3 -> 16
# channels 5x5, a block of 1200, is faster direct; of 16 -> 32 channels k5,
# 2560, by GEMM.
_DIRECT_MAX_BLOCK = 65536
_DIRECT_MAX_BLOCK_WEIGHT_GRAD = 2048
# Tests and benchmarks switch this off to compare the two paths; on an x86-64
# CPU without AVX2 the direct kernels are scalar and BLAS is faster.
USE_DIRECT = _core.direct_fast()


def _direct_pays(taps, cols, sw, image, scratch, weight_grad=False):
    """The direct kernel needs a unit horizontal stride, and beats im2col + GEMM
    when there are enough taps to sum and its output-channel blocks of
    _DIRECT_FB are not mostly padding.  Enough taps: K >= 32; for the forward
    kernel (forward and input gradient) also K >= 24 with at most 16 output
    channels, where GEMM's fixed costs (im2col, packing) weigh most.  Measured
    single-threaded, direct / GEMM CPU time of the forward pass, float32 and
    float64: 1 -> 8 channels 5x5 (K = 25), 0.67 and 0.75; 1 -> 16 5x5, 0.89
    and 0.99; 3 -> 16 3x3 (K = 27), 0.91 and 1.02; 1 -> 32 5x5, 1.11 and 1.37;
    2 -> 16 3x3 (K = 18), 0.99 and 1.08; 1 -> 16 3x3 (K = 9), 1.22 and 1.22.
    The weight-gradient kernel loses at K = 25 (1.8 and 1.25 on 1 -> 16 5x5).
    Its scratch is the image with its zero border: a border much larger than
    the image (a huge padding or dilation) is left to im2col, whose scratch
    does not grow with either."""
    padded = -(-cols // _DIRECT_FB) * _DIRECT_FB
    enough = taps >= 32 or (not weight_grad and taps >= 24 and cols <= 16)
    return (USE_DIRECT and sw == 1 and enough and padded <= 1.5 * cols
            and scratch <= 4 * image + 4096)


def _tap_offsets(cs, kh, kw, hp, wp, dh, dw):
    """Where each tap (c, p, q) reads in a padded (cs, hp, wp) image, relative to
    the output position: c*hp*wp + p*dh*wp + q*dw, in (c, p, q) order.
    Read-only: plans that hold it are shared between calls and threads."""
    off = (np.arange(cs)[:, None, None] * (hp * wp) + np.arange(kh)[None, :, None] * (dh * wp)
           + np.arange(kw)[None, None, :] * dw).ravel().astype(np.intp)
    off.flags.writeable = False
    return off


def _direct_weights(w, groups, flip):
    """The direct kernel's weights: (groups, blocks, K, _DIRECT_FB), the
    output channels packed by blocks of _DIRECT_FB (zero past the last).

    Forward: wt[g, b, (c, p, q), a] = w[g*Fg + b*FB + a, c, p, q].  Input
    gradient (``flip``), whose output channels are w's inputs:
    wt[g, b, (f, p, q), a] = w[g*Fg + f, b*FB + a, KH-1-p, KW-1-q].
    """
    f, cg, kh, kw = w.shape
    fg = f // groups
    if flip:
        wg = w[:, :, ::-1, ::-1].reshape(groups, fg, cg, kh, kw).transpose(0, 1, 3, 4, 2)
        wg = wg.reshape(groups, fg * kh * kw, cg)
    else:
        wg = w.reshape(groups, fg, cg * kh * kw).transpose(0, 2, 1)
    taps, cols = wg.shape[1], wg.shape[2]
    blocks = -(-cols // _DIRECT_FB)
    wt = np.zeros((groups, blocks, _DIRECT_FB, taps), w.dtype)
    wt.reshape(groups, blocks * _DIRECT_FB, taps)[:, :cols] = wg.transpose(0, 2, 1)
    return np.ascontiguousarray(wt.transpose(0, 1, 3, 2))


def _direct_scratch(dtype, n, macs, cs, hp, wp, extra=0):
    """Threads for a direct-kernel call and their scratch: one zero-bordered
    image (cs, hp, wp) per thread, plus the column block of slack the kernel
    may read past it, plus ``extra`` values (the weight gradient's
    accumulator).  ``work.shape[0]`` is the number of threads."""
    threads, _ = _threads.plan(n, macs, blas=False)
    return np.empty((threads, cs * hp * wp + _DIRECT_JB[dtype] + extra), dtype)


def _direct(src, wt, bias, out, d):
    """Run the direct kernel over a batch: see _core.conv_direct.  ``d`` is a
    plan's ``(off, cs, hp, wp, top, left, row_step, groups, macs)``."""
    off, cs, hp, wp, top, left, row_step, groups, macs = d
    work = _direct_scratch(src.dtype, src.shape[0], macs, cs, hp, wp)
    _core.conv_direct(src, wt, off, bias, out, work, groups, hp, wp, top, left, row_step)
    return out


def _specialised(kernel):
    """The float32 and float64 versions of a fused kernel, by dtype: calling one
    directly skips Cython's run-time dispatch on the buffers' types."""
    return {np.dtype(np.float32): kernel["float"], np.dtype(np.float64): kernel["double"]}


_STACK_SCRATCH = _core.STACK_SCRATCH
_FORWARD = _specialised(_core.conv_forward)
_INPUT_GRAD = _specialised(_core.conv_input_grad)
_WEIGHT_GRAD = _specialised(_core.conv_weight_grad)

# How a plan says which way a pass runs.  A plan depends only on shapes and
# geometry (and USE_DIRECT), never on the arrays' values, so callers that see
# the same call signature again may keep it (the public API does).
_EMPTY, _ZERO, _DIRECT, _GEMM = "empty", "zero", "direct", "gemm"


def _gemm_args(func, n, k, p, f, stride, pads, dilation, groups, extra=0):
    """A GEMM plan's ``(n, rows, p, macs, geometry)``; checks BLAS's size
    limits.  The kernel's scratch is ``rows`` by ``p`` per thread: the im2col
    matrix (K, P), then ``extra`` rows it may use past it."""
    check_gemm_sizes(func, k, p, f)
    return (n, k + extra, p, n * k * p * f,
            (stride[0], stride[1], dilation[0], dilation[1], pads[0], pads[2], groups))


def _gemm_run(kernel, dtype, g, arrays):
    """Call an im2col + GEMM kernel on ``arrays``, then its scratch, then the
    plan's geometry.  The scratch is ``(threads, rows, p)``, or None for a
    serial call whose scratch fits on the kernel's stack."""
    n, rows, p, macs, geometry = g
    threads, blas = _threads.plan(n, macs)
    if blas is None:  # BLAS left as it is: no need for _threads.run
        work = None if threads == 1 and rows * p <= _STACK_SCRATCH else \
            np.empty((threads, rows, p), dtype)
        kernel(*(arrays + (work,) + geometry))
    else:
        _threads.run(blas, kernel, *arrays, np.empty((threads, rows, p), dtype), *geometry)


# Checking the arguments, and planning the engine's path, cost more than
# convolving a small input.  Both depend only on the shapes, dtypes and
# geometry arguments, so the faces keep them per call signature: a call like
# an earlier valid one skips them (an invalid call is never stored, and fails
# again in full).  A plan holds the path chosen with USE_DIRECT as it was;
# whoever changes that flag empties PLANS.
PLANS = {}
_PLANS_MAX = 256


def planned(key, make, *args):
    """``make(*args)``, or what it returned before for the same ``key``
    (None: no cache for this call).  ``key`` must name ``make`` and all that
    ``make`` depends on, with values whose equality means "same argument"."""
    if key is None:
        return make(*args)
    try:
        return PLANS[key]
    except KeyError:
        pass
    plan = make(*args)
    if len(PLANS) >= _PLANS_MAX:
        PLANS.clear()
    PLANS[key] = plan
    return plan


def forward_plan(func, x_shape, w_shape, stride, pads, dilation, groups, out_hw=None):
    """How to run conv(x, w): ``(how, out_shape, args)``.

    ``out_hw``: (OH, OW) when the caller has checked the geometry already
    (else :func:`sizes` checks it, naming the notebook's arguments).
    """
    n, c, h, wd = x_shape
    f, cg, kh, kw = w_shape
    oh, ow = out_hw or sizes(func, "param", (h, wd), w_shape, stride, pads, dilation, "inp")
    out_shape = (n, f, oh, ow)
    k = cg * kh * kw
    if n * f * oh * ow == 0:
        return _EMPTY, out_shape, None
    if k == 0:  # no input channels: the sum is empty
        return _ZERO, out_shape, None
    hp, wp = (oh - 1) * stride[0] + (kh - 1) * dilation[0] + 1, ow + (kw - 1) * dilation[1]
    if _direct_pays(k, f // groups, stride[1], h * wd, hp * wp) \
            and k * (f // groups) <= _DIRECT_MAX_BLOCK:
        off = _tap_offsets(c // groups, kh, kw, hp, wp, dilation[0], dilation[1])
        return _DIRECT, out_shape, (off, c // groups, hp, wp, pads[0], pads[2], stride[0] * wp,
                                    groups, n * k * f * oh * ow)
    return _GEMM, out_shape, _gemm_args(func, n, k, oh * ow, f, stride, pads, dilation, groups)


def forward_run(plan, x, w, bias):
    """conv(x, w) + bias by a :func:`forward_plan` made for these shapes."""
    how, out_shape, args = plan
    dtype = x.dtype
    out = np.empty(out_shape, dtype)
    if how is _GEMM:
        _gemm_run(_FORWARD[dtype], dtype, args, (x, w, bias, out))
    elif how is _DIRECT:
        _direct(x, _direct_weights(w, args[7], flip=False), bias, out, args)
    elif how is _ZERO:
        out[...] = 0 if bias is None else bias[:, None, None]
    return out


def input_grad_plan(func, input_shape, w_shape, gout_shape, stride, pads, dilation, groups):
    """How to run the input gradient: ``(how, input_shape, args)``."""
    n, c, h, wd = input_shape
    f, cg, kh, kw = w_shape
    k = cg * kh * kw
    p = gout_shape[2] * gout_shape[3]
    if n * c * h * wd == 0 or n * f * p == 0 or k == 0:
        return _ZERO, input_shape, None
    hp, wp = h + (kh - 1) * dilation[0], wd + (kw - 1) * dilation[1]
    taps = (f // groups) * kh * kw  # the flipped kernel's: output channels x KH x KW
    if (stride[0] == 1 and _direct_pays(taps, cg, stride[1], p, hp * wp)
            and taps * cg <= _DIRECT_MAX_BLOCK):
        off = _tap_offsets(f // groups, kh, kw, hp, wp, dilation[0], dilation[1])
        return _DIRECT, input_shape, (off, f // groups, hp, wp, (kh - 1) * dilation[0] - pads[0],
                                      (kw - 1) * dilation[1] - pads[2], wp, groups,
                                      n * taps * c * h * wd)
    return _GEMM, input_shape, _gemm_args(func, n, k, p, f, stride, pads, dilation, groups)


def input_grad_run(plan, w, gout):
    """The gradient of sum(conv(x, w) * gout) with respect to x, by an
    :func:`input_grad_plan` made for these shapes."""
    how, shape, args = plan
    dtype = w.dtype
    if how is _GEMM:
        dx = np.zeros(shape, dtype)
        _gemm_run(_INPUT_GRAD[dtype], dtype, args, (gout, w, dx))
        return dx
    if how is _DIRECT:
        return _direct(gout, _direct_weights(w, args[7], flip=True), None,
                       np.empty(shape, w.dtype), args)
    return np.zeros(shape, w.dtype)


def weight_grad_plan(func, x_shape, weight_shape, gout_shape, stride, pads, dilation, groups):
    """How to run the weight gradient: ``(how, weight_shape, args)``."""
    f, cg, kh, kw = weight_shape
    k = cg * kh * kw
    n, c, h, wd = x_shape
    oh, ow = gout_shape[2], gout_shape[3]
    if k * f == 0 or n * oh * ow == 0:
        return _ZERO, weight_shape, None
    hp, wp = (oh - 1) * stride[0] + (kh - 1) * dilation[0] + 1, ow + (kw - 1) * dilation[1]
    if (_direct_pays(k, f // groups, stride[1], h * wd, hp * wp, weight_grad=True)
            and k * (f // groups) <= _DIRECT_MAX_BLOCK_WEIGHT_GRAD):
        off = _tap_offsets(cg, kh, kw, hp, wp, dilation[0], dilation[1])
        return _DIRECT, weight_shape, (off, cg, hp, wp, pads[0], pads[2], stride[0] * wp,
                                       groups, n * k * f * oh * ow)
    # The kernel accumulates F * K values per thread in its scratch's extra rows.
    return _GEMM, weight_shape, _gemm_args(func, n, k, oh * ow, f, stride, pads, dilation, groups,
                                           extra=-(-f * k // (oh * ow)))


def weight_grad_run(plan, x, gout):
    """The gradient of sum(conv(x, w) * gout) with respect to w, by a
    :func:`weight_grad_plan` made for these shapes."""
    how, shape, args = plan
    if how is _GEMM:
        # Accumulated per thread and transposed, (groups, K, Fg), in rows of
        # the scratch past the im2col matrix, then added and transposed back
        # by the kernel: OpenBLAS packs the column matrix faster as the
        # product's right operand (measured: 1.6x on the float32 gradient of
        # 16 -> 32 channels 3x3).
        dtype = x.dtype
        dw = np.empty(shape, dtype)
        _gemm_run(_WEIGHT_GRAD[dtype], dtype, args, (x, gout, dw))
        return dw
    if how is _DIRECT:
        off, cg, hp, wp, top, left, row_step, groups, macs = args
        # One accumulator per thread, after its padded image (each thread sums
        # its own images); the kernel adds them into dw.
        work = _direct_scratch(x.dtype, x.shape[0], macs, cg, hp, wp, extra=math.prod(shape))
        dw = np.empty(shape, x.dtype)
        _core.conv_weight_grad_direct(x, gout, off, dw, work, groups, hp, wp, top, left,
                                      row_step)
        return dw
    return np.zeros(shape, x.dtype)


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
