"""Allocate outputs and call the core: the one path every face of convx takes.

Callers (the notebook names in ``_notebook.py``, the public API) have already
checked their arguments and brought arrays to one float dtype, C order.  Here
the output sizes are computed, outputs and scratch are allocated (``np.empty``
where the kernel writes every cell, ``np.zeros`` for accumulators), the
degenerate sizes the kernels are not asked to handle are answered directly,
and the kernel in ``_core`` is called.

Each pass is split in two: ``*_plan`` looks only at shapes and geometry and
decides the path (direct kernel or im2col + GEMM), the output shape and the
kernel's arguments; ``*_run`` picks the threads, allocates and calls the
kernel.  A plan can be kept for calls with the same signature (``planned``):
both faces keep theirs, the public API beside its own argument checks, since
planning and checking are most of what a call on a tiny input costs.

Every kernel call goes through :func:`_call`, which makes a long call from the
main thread interruptible: Ctrl-C stops the kernel's threads between pieces
of work and raises ``KeyboardInterrupt`` (docs/reliability.md).

Geometry is always 2-D: ``stride=(sh, sw)``, ``dilation=(dh, dw)`` and
``pads=(top, bottom, left, right)``.  1-D callers pass H = 1.
"""
import math
import threading

import numpy as np

from . import _core, _threads
from ._validate import ConvxMemoryError, ConvxValueError

# The GEMM's sizes are 64-bit, but the engine keeps them below 2**31 so that
# the arithmetic on products of them (positions x taps, the scratch) stays far
# from overflowing.
_GEMM_MAX = 2**31 - 1


def check_gemm_sizes(func, k, p, f, kernel_arg="weight", input_arg="input"):
    """Taps K, output positions P and filters F must each be below 2**31."""
    if max(k, p, f) > _GEMM_MAX:
        culprit = (f"argument '{input_arg}' with this padding, stride and dilation gives"
                   if p > _GEMM_MAX else f"argument '{kernel_arg}' has")
        raise ConvxValueError(
            f"{func}(): {culprit} a GEMM dimension past 2**31 - 1 (kernel taps {k}, output "
            f"positions {p}, filters {f}); split the input into smaller pieces")


def sizes(func, kernel_arg, in_hw, w_shape, stride, pads, dilation, input_arg="input"):
    """(OH, OW) for a weight of shape ``w_shape`` (F, Cg, KH, KW).

    Raises, before anything is allocated, when the kernel does not fit (naming
    ``kernel_arg``) or when a size would be too large for the GEMM.
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


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------

def _nbytes(shape, dtype):
    return math.prod(shape) * np.dtype(dtype).itemsize


def _human(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


# NumPy refuses an array of more than this many bytes ("array is too big").
_NUMPY_MAX_BYTES = 2**63 - 1


def check_result_size(func, shape):
    """A result shape NumPy could not even represent (in float64) is refused
    here, at planning, before any argument is copied: its size is known from
    the shapes alone (a zero-size input may have a huge result)."""
    n = math.prod(shape)
    if n * 8 > _NUMPY_MAX_BYTES:
        raise ConvxMemoryError(
            f"{func}(): the result would have {n} elements ({n * 4} bytes in float32, "
            f"{n * 8} in float64), more than an array can hold; split the batch "
            f"(of {shape[0]}), or the input, into smaller pieces")


def _result(who, shape, dtype, zero=False):
    """The result array, or ConvxMemoryError naming what it needs.  ``who`` is
    a plan's ``(func, kernel_arg, w_shape)``."""
    try:
        return (np.zeros if zero else np.empty)(shape, dtype)
    except (MemoryError, ValueError):  # ValueError: NumPy's "array is too big"
        pass
    raise ConvxMemoryError(
        f"{who[0]}(): the result, {math.prod(shape)} elements of {np.dtype(dtype)}, needs "
        f"{_nbytes(shape, dtype)} bytes ({_human(_nbytes(shape, dtype))}), which could not be "
        f"allocated; split the batch (of {shape[0]}), or the input, into smaller pieces"
    ) from None


def _scratch(who, size, dtype, threads, shared=0):
    """A kernel's working memory: ``shared`` values plus ``size`` per thread,
    or ConvxMemoryError saying what it needs and how to need less."""
    total = shared + size * threads
    try:
        return np.empty(total, dtype)
    except (MemoryError, ValueError):
        pass
    func, kernel_arg, (f, cg, kh, kw) = who
    item = np.dtype(dtype).itemsize
    raise ConvxMemoryError(
        f"{func}(): with argument '{kernel_arg}' of {f} filters of {cg} channels and "
        f"{kh}x{kw} taps, this call needs {total * item} bytes ({_human(total * item)}) of "
        f"working memory ({_human(size * item)} for each of {threads} "
        f"thread{'s' if threads > 1 else ''}"
        + (f", plus {_human(shared * item)} shared" if shared else "")
        + "), which could not be allocated; use fewer threads (convx.set_num_threads), or "
        "split the input into smaller pieces (fewer channels, a smaller image)") from None


# --------------------------------------------------------------------------
# Calling a kernel
# --------------------------------------------------------------------------

# A call of at least this many multiply-adds from the main thread can be
# interrupted by Ctrl-C: installing and removing the signal handler costs
# about a microsecond, nothing beside a call of this size.
_INTERRUPT_MIN_MACS = _threads._PARALLEL_MIN_MACS


def _call(kernel, macs, *args, accumulates_into=None):
    """``kernel(*args, interruptible)``, which returns False when interrupted.

    A call from the main thread of at least _INTERRUPT_MIN_MACS chains a
    SIGINT handler in front of Python's for its duration: a Ctrl-C then
    stops the kernel's threads at their next check (between items of at most
    _ITEM_MACS, and between a matrix product's blocks) and Python's own
    handler raises KeyboardInterrupt here.  If
    that handler returns instead of raising (a user's handler), the call is
    made again from the start, after zeroing ``accumulates_into`` (the output
    of a kernel that adds into it; the others overwrite theirs).
    """
    if macs < _INTERRUPT_MIN_MACS or threading.get_ident() != threading.main_thread().ident:
        kernel(*args, False)
        return
    installed = _core.interrupt_begin()
    try:
        while not kernel(*args, installed):
            _core.interrupt_end()
            _core.check_signals()  # runs Python's handler: KeyboardInterrupt
            if accumulates_into is not None:
                accumulates_into[...] = 0
            installed = _core.interrupt_begin()
    finally:
        _core.interrupt_end()


# --------------------------------------------------------------------------
# The direct kernel
# --------------------------------------------------------------------------

# The direct kernel (_direct.h) computes a block of this many output channels
# times this many columns at once; its scratch needs a column block of slack.
_DIRECT_FB = 4
_DIRECT_JB = {np.dtype(np.float32): 16, np.dtype(np.float64): 8}
# A pass goes to GEMM once the direct kernel's (channels x taps) block is
# larger than these: there the GEMM's packing pays for itself.  Measured
# single-threaded, CPU time of direct / GEMM (OpenBLAS's, on which these were
# first set), float32 and float64: the forward and input gradient (one
# kernel) of 16 -> 32 channels 3x3, a block of 4608, 0.62 and 0.74; of
# 32 -> 32 5x5, 25600, 0.58 and 0.70; of 64 -> 64 3x3, 36864, 0.91 and 0.77;
# of 128 -> 128 3x3, 147456, 1.01 and 1.02; of 256 -> 256 3x3, 589824, 1.19
# and 1.13.  The weight gradient of 3 -> 16 channels 5x5, a block of 1200, is
# faster direct; of 16 -> 32 channels k5, 2560, by GEMM.
_DIRECT_MAX_BLOCK = 65536
_DIRECT_MAX_BLOCK_WEIGHT_GRAD = 2048
# Tests and benchmarks switch this off to compare the two paths; on an x86-64
# CPU without AVX2 the direct kernels are scalar and the GEMM is faster.
USE_DIRECT = _core.direct_fast()

# Work is split into items of about this many multiply-adds at most: the
# granularity at which threads share one image and at which a call notices
# Ctrl-C (a third of a millisecond on AVX2 at 50 GFLOP/s, some 20 ms on the
# baseline kernels).
_ITEM_MACS = 1 << 24


def _direct_pays(taps, cols, sw, image, scratch, weight_grad=False):
    """The direct kernel needs a unit horizontal stride, and beats im2col + GEMM
    when there are enough taps to sum and its output-channel blocks of
    _DIRECT_FB are not mostly padding.  Enough taps: K >= 32; for the forward
    kernel (forward and input gradient) also K >= 24 with at most 16 output
    channels, where GEMM's fixed costs (im2col, packing) weigh most.  Measured
    single-threaded, direct / GEMM CPU time of the forward pass, float32 and
    float64: 1 -> 8 channels 5x5 (K = 25), 0.67 and 0.75; 1 -> 16 5x5, 0.89
    and 0.99; 3 -> 16 3x3 (K = 27), 0.91 and 1.02; 1 -> 32 5x5, 1.11 and 1.37;
    2 -> 16 3x3 (K = 18), 0.99 and 1.08; 1 -> 16 3x3 (K = 9), 1.22 and 1.22
    (against OpenBLAS's GEMM, before convx had its own).  The weight-gradient
    kernel, a block of dot products along the output rows, needs no more
    taps than one: against convx's own product it took 0.41-0.86 of the time
    on 1 -> 16 channels k9 (1-D) and 5x5, and 0.9-1.5 on 16 -> 32 3x3, both
    threaded and not (the limit on its block, below, keeps it from larger
    ones).  Its scratch is the image with its zero border: a border much larger than
    the image (a huge padding or dilation) is left to im2col, whose scratch
    does not grow with either."""
    padded = -(-cols // _DIRECT_FB) * _DIRECT_FB
    enough = weight_grad or taps >= 32 or (taps >= 24 and cols <= 16)
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


def _blocks(rows, cols, col_macs, images, threads):
    """(rows, columns) of output per item of the direct kernels: at most
    _ITEM_MACS of work (whole rows when a row is less; else part of one row,
    a long 1-D signal's say), and enough items for every thread when there
    are fewer images than threads."""
    row_macs = cols * col_macs
    if row_macs > _ITEM_MACS:
        return 1, min(cols, max(64, _ITEM_MACS // max(col_macs, 1)))
    rb = _ITEM_MACS // max(row_macs, 1)
    if images < 2 * threads:
        rb = min(rb, -(-rows // -(-2 * threads // images)))
    return max(1, min(rows, rb)), cols


def _strip(rows, cols, wp, row_step, slack):
    """The columns of conv_direct's strip for items of ``rows`` whole rows of
    ``cols`` outputs (the padded image ``wp`` wide), or 0 where row by row
    is as fast: the kernel computes columns in blocks of ``slack`` (two
    vectors), so a narrow row wastes most of its last block, and a strip
    only the wp - cols columns between rows.  Measured on (32, 16, 8, 8) ->
    32 channels 3x3, float32, AVX2, 2 threads: the forward pass in 0.68 and
    the input gradient in 0.73 of the time row by row; (8, 32, 4, 4) -> 64
    channels: 0.66 and 0.65 (tests/test_narrow.py checks the bits)."""
    if row_step != wp or rows < 2:
        return 0
    strip = (rows - 1) * wp + cols
    by_rows = rows * -(-cols // slack) * slack
    return strip if -(-strip // slack) * slack < 0.85 * by_rows else 0


def _direct_run(who, kernel, arrays, d, n, rows, cols, dtype, accumulator=0):
    """Run a direct kernel (_core.conv_direct or conv_weight_grad_direct) on
    ``arrays`` over a batch of ``n`` images whose output is rows x cols.
    ``d`` is a plan's ``(off, cs, hp, wp, top, left, row_step, span_h, span_w,
    groups, macs, col_macs)``; each thread's scratch is ``accumulator`` values
    (the weight gradient's) and a padded image, and for conv_direct's strip
    (:func:`_strip`) its output."""
    off, cs, hp, wp, top, left, row_step, span_h, span_w, groups, macs, col_macs = d
    threads = _threads.plan(n * groups * rows * cols, macs)
    slack = _DIRECT_JB[dtype]
    rb, cb = _blocks(rows, cols, col_macs, n * groups, threads)
    extra, strip_out = (), 0
    if kernel is _core.conv_direct:
        strip = _strip(rb, cols, wp, row_step, slack) if cb == cols else 0
        extra = (strip,)
        strip_out = arrays[4].shape[1] // groups * strip   # out: arrays[4]
    work = _scratch(who, accumulator + strip_out + cs * hp * wp + slack, dtype, threads)
    _call(kernel, macs, *arrays, work, groups, hp, wp, top, left, row_step, span_h, span_w,
          slack, rb, cb, *extra, threads)


# --------------------------------------------------------------------------
# The GEMM kernels
# --------------------------------------------------------------------------

_MR, _KC, _MC, _NC, _NR_MAX = _core.gemm_blocks()
_STACK_SCRATCH = _core.STACK_SCRATCH


def _specialised(kernel):
    """The float32 and float64 versions of a fused kernel, by dtype: calling one
    directly skips Cython's run-time dispatch on the buffers' types."""
    return {np.dtype(np.float32): kernel["float"], np.dtype(np.float64): kernel["double"]}


_FORWARD = _specialised(_core.conv_forward)
_INPUT_GRAD = _specialised(_core.conv_input_grad)
_WEIGHT_GRAD = _specialised(_core.conv_weight_grad)


def _round_up(n, m):
    return -(-n // m) * m


def _input_grad_positions(k):
    """Output positions per block of the GEMM input gradient, whose column
    matrix block (k x positions) each thread keeps: about 2**17 values, from
    shapes alone (the order in which dx sums its terms depends on it, and must
    not depend on the threads)."""
    return min(_NC, max(4 * _NR_MAX, _round_up((1 << 17) // k, _NR_MAX)))


# How a plan says which way a pass runs.  A plan depends only on shapes and
# geometry (and USE_DIRECT), never on the arrays' values, so callers that see
# the same call signature again may keep it (the public API does).  _SMALL is
# a GEMM call too small for threads or Ctrl-C, whose scratch fits on the
# kernel's stack: its plan holds the kernel's arguments ready, since on a tiny
# input the Python around the kernel is most of the cost.
_EMPTY, _ZERO, _DIRECT, _GEMM, _SMALL = "empty", "zero", "direct", "gemm", "small"


def _fits_small(macs, scratch):
    return macs < _threads._PARALLEL_MIN_MACS and scratch <= _STACK_SCRATCH


def _run_small(who, kernel, shape, dtype, zero, arrays, args):
    """A _SMALL plan's call: the result, then the kernel on the calling
    thread with its scratch on its stack, and nothing else."""
    try:
        out = (np.zeros if zero else np.empty)(shape, dtype)
    except MemoryError:
        out = _result(who, shape, dtype, zero)
    kernel(*arrays, out, None, *args)
    return out


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


def _geometry(stride, pads, dilation, groups):
    return stride[0], stride[1], dilation[0], dilation[1], pads[0], pads[2], groups


def forward_plan(func, x_shape, w_shape, stride, pads, dilation, groups, out_hw=None,
                 kernel_arg="param"):
    """How to run conv(x, w): ``(who, how, out_shape, args)``, ``who`` naming
    the function and its kernel argument for messages.

    ``out_hw``: (OH, OW) when the caller has checked the geometry already
    (else :func:`sizes` checks it, naming the notebook's arguments).
    """
    who = (func, kernel_arg, w_shape)
    n, c, h, wd = x_shape
    f, cg, kh, kw = w_shape
    oh, ow = out_hw or sizes(func, "param", (h, wd), w_shape, stride, pads, dilation, "inp")
    out_shape = (n, f, oh, ow)
    check_result_size(func, out_shape)
    k, fg = cg * kh * kw, f // groups
    if n * f * oh * ow == 0:
        return who, _EMPTY, out_shape, None
    if k == 0:  # no input channels: the sum is empty
        return who, _ZERO, out_shape, None
    macs = n * k * f * oh * ow
    hp, wp = (oh - 1) * stride[0] + (kh - 1) * dilation[0] + 1, ow + (kw - 1) * dilation[1]
    if _direct_pays(k, fg, stride[1], h * wd, hp * wp) and k * fg <= _DIRECT_MAX_BLOCK:
        off = _tap_offsets(c // groups, kh, kw, hp, wp, dilation[0], dilation[1])
        return who, _DIRECT, out_shape, (off, c // groups, hp, wp, pads[0], pads[2],
                                         stride[0] * wp, (kh - 1) * dilation[0] + 1,
                                         (kw - 1) * dilation[1] + 1, groups, macs, fg * k)
    check_gemm_sizes(func, k, oh * ow, f)
    p = oh * ow
    nb = min(p, _NC)
    shared, per = _core.forward_scratch(fg, k, groups, nb)
    geometry = _geometry(stride, pads, dilation, groups)
    if _fits_small(macs, shared + per):
        return who, _SMALL, out_shape, geometry + (nb, fg, 1, False)
    return who, _GEMM, out_shape, (geometry, nb, shared, per, macs, n * groups * -(-p // nb), fg)


def forward_run(plan, x, w, bias):
    """conv(x, w) + bias by a :func:`forward_plan` made for these shapes."""
    who, how, out_shape, args = plan
    dtype = x.dtype
    if how is _SMALL:
        return _run_small(who, _FORWARD[dtype], out_shape, dtype, False, (x, w, bias), args)
    out = _result(who, out_shape, dtype)
    if how is _GEMM:
        geometry, nb, shared, per, macs, items, fg = args
        threads = _threads.plan(items * fg, macs)
        # Blocks of filters too, when one image's blocks are fewer than the
        # threads (one image, few positions): rows of the micro-tile at a time.
        mb = fg if items >= 2 * threads else _round_up(-(-fg // -(-2 * threads // items)), _MR)
        work = None if threads == 1 and shared + per <= _STACK_SCRATCH else \
            _scratch(who, per, dtype, threads, shared)
        _call(_FORWARD[dtype], macs, x, w, bias, out, work, *geometry, nb, mb, threads)
    elif how is _DIRECT:
        _direct_run(who, _core.conv_direct,
                    (x, _direct_weights(w, args[9], flip=False), args[0], bias, out), args,
                    x.shape[0], out_shape[2], out_shape[3], dtype)
    elif how is _ZERO:
        out[...] = 0 if bias is None else bias[:, None, None]
    return out


def input_grad_plan(func, input_shape, w_shape, gout_shape, stride, pads, dilation, groups,
                    kernel_arg="param"):
    """How to run the input gradient: ``(who, how, input_shape, args)``."""
    who = (func, kernel_arg, w_shape)
    check_result_size(func, input_shape)
    n, c, h, wd = input_shape
    f, cg, kh, kw = w_shape
    k, fg = cg * kh * kw, f // groups
    p = gout_shape[2] * gout_shape[3]
    if n * c * h * wd == 0 or n * f * p == 0 or k == 0:
        return who, _ZERO, input_shape, None
    macs = n * k * f * p
    check_gemm_sizes(func, k, p, f)
    pointwise = (kh == kw == 1 and stride == (1, 1) and pads == (0, 0, 0, 0)
                 and p == h * wd)
    nb = p if pointwise else _input_grad_positions(k)
    geometry = _geometry(stride, pads, dilation, groups)
    shared, per = _core.input_grad_scratch(cg, fg, kh * kw, groups, cg, min(nb, p), pointwise)
    gemm = (geometry, min(nb, p), pointwise, (shared, per), macs, cg, kh * kw, fg)
    hp, wp = h + (kh - 1) * dilation[0], wd + (kw - 1) * dilation[1]
    taps = fg * kh * kw  # the flipped kernel's: output channels x KH x KW
    if (stride[0] == 1 and _direct_pays(taps, cg, stride[1], p, hp * wp)
            and taps * cg <= _DIRECT_MAX_BLOCK):
        off = _tap_offsets(fg, kh, kw, hp, wp, dilation[0], dilation[1])
        return who, _DIRECT, input_shape, (
            (off, fg, hp, wp, (kh - 1) * dilation[0] - pads[0], (kw - 1) * dilation[1] - pads[2],
             wp, (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1, groups, macs,
             cg * taps), gemm)
    if _fits_small(macs, shared + per):
        return who, _SMALL, input_shape, geometry + (min(nb, p), cg, 1, False)
    return who, _GEMM, input_shape, gemm


def _input_grad_gemm(who, args, w, gout, dx):
    geometry, nb, pointwise, (shared, per), macs, cg, khw, fg = args
    groups = geometry[6]
    items = gout.shape[0] * groups
    threads = _threads.plan(items * cg, macs)
    # Blocks of input channels when the images are fewer than the threads.
    cc = cg if items >= 2 * threads else -(-cg // -(-2 * threads // items))
    if cc != cg:
        shared, per = _core.input_grad_scratch(cg, fg, khw, groups, cc, nb, pointwise)
    work = None if threads == 1 and shared + per <= _STACK_SCRATCH else \
        _scratch(who, per, w.dtype, threads, shared)
    _call(_INPUT_GRAD[w.dtype], macs, gout, w, dx, work, *geometry, nb, cc, threads,
          accumulates_into=None if pointwise else dx)
    return dx


def input_grad_run(plan, w, gout):
    """The gradient of sum(conv(x, w) * gout) with respect to x, by an
    :func:`input_grad_plan` made for these shapes."""
    who, how, shape, args = plan
    dtype = w.dtype
    if how is _SMALL:  # the GEMM adds into dx
        return _run_small(who, _INPUT_GRAD[dtype], shape, dtype, True, (gout, w), args)
    if how is _ZERO:
        return _result(who, shape, dtype, zero=True)
    # zeroed: the GEMM path adds into it (np.zeros takes fresh pages from the
    # system, which cost memory only where they are written)
    dx = _result(who, shape, dtype, zero=how is _GEMM)
    if how is _DIRECT:
        direct, gemm = args
        # The direct kernel multiplies the zero border of the padded output
        # gradient by every weight; 0 * inf would make NaN where the input
        # gradient has no term at all, so non-finite weights take the GEMM,
        # which sums over the output positions that exist.
        if np.isfinite(w).all():
            _direct_run(who, _core.conv_direct,
                        (gout, _direct_weights(w, direct[9], flip=True), direct[0], None, dx),
                        direct, gout.shape[0], shape[2], shape[3], dtype)
            return dx
        args = gemm
        dx[...] = 0
    return _input_grad_gemm(who, args, w, gout, dx)


def weight_grad_plan(func, x_shape, weight_shape, gout_shape, stride, pads, dilation, groups,
                     kernel_arg="param"):
    """How to run the weight gradient: ``(who, how, weight_shape, args)``."""
    who = (func, kernel_arg, weight_shape)
    check_result_size(func, weight_shape)
    f, cg, kh, kw = weight_shape
    k, fg = cg * kh * kw, f // groups
    n, c, h, wd = x_shape
    oh, ow = gout_shape[2], gout_shape[3]
    if k * f == 0 or n * oh * ow == 0:
        return who, _ZERO, weight_shape, None
    macs = n * k * f * oh * ow
    hp, wp = (oh - 1) * stride[0] + (kh - 1) * dilation[0] + 1, ow + (kw - 1) * dilation[1]
    if (_direct_pays(k, fg, stride[1], h * wd, hp * wp, weight_grad=True)
            and k * fg <= _DIRECT_MAX_BLOCK_WEIGHT_GRAD):
        off = _tap_offsets(cg, kh, kw, hp, wp, dilation[0], dilation[1])
        return who, _DIRECT, weight_shape, (off, cg, hp, wp, pads[0], pads[2], stride[0] * wp,
                                            (kh - 1) * dilation[0] + 1,
                                            (kw - 1) * dilation[1] + 1, groups, macs, fg * k)
    check_gemm_sizes(func, k, oh * ow, f)
    p = oh * ow
    pointwise = (kh == kw == 1 and stride == (1, 1) and pads == (0, 0, 0, 0)
                 and p == h * wd)
    dot = _weight_grad_by_dots(fg, k)
    ipb = 1
    if dot:
        # Blocks of the column matrix (k x positions) small enough to stay in
        # L2; several images per block when they are small (each block ends
        # with a horizontal sum per pair of taps and block of filters).
        target = max(256, min(4096, _round_up((1 << 16) // (k + fg), 64)))
        nb = min(p, target)
        if nb == p:  # but at least two items per CPU, for the threads
            ipb = max(1, min(target // p, -(-n // (2 * _threads._MAX_THREADS))))
        off = np.arange(k, dtype=np.intp) * (p if pointwise else ipb * nb)
        off.flags.writeable = False
    else:
        # up to 4 blocks of columns per item, but two items per CPU at least
        pieces = -(-2 * _threads._MAX_THREADS // (n * groups))
        nb, off = min(p, 4 * _NC, max(_KC, _round_up(-(-p // pieces), 64))), None
    geometry = _geometry(stride, pads, dilation, groups)
    per = _core.weight_grad_scratch(f, fg, k, nb, ipb, dot, pointwise)
    if _fits_small(macs, per):
        return who, _SMALL, weight_shape, geometry + (nb, ipb, off, 1, False)
    return who, _GEMM, weight_shape, (geometry, nb, ipb, off, per, macs,
                                       -(-n // ipb) * groups * -(-p // nb))


# The weight gradient's matrix product packs both operands (a transpose
# each: positions are its depth), and each packed value is used fg or k
# times; with few filters or taps packing costs more than the products, and
# blocks of dot products along the positions, which read both operands as
# they lie, are faster.
WEIGHT_GRAD_DOT = None   # None: by _weight_grad_by_dots; True / False: always (tests)


def _weight_grad_by_dots(fg, k):
    """Measured against the product, both threaded and not: 1 -> 16 channels
    k9 (1-D) 0.44-0.87 of its time, 1 -> 16 5x5 0.49-0.95; 6 -> 16 5x5 (k =
    150) 1.1-1.3 times it, 16 -> 32 3x3 1.1-1.6."""
    if WEIGHT_GRAD_DOT is not None:
        return WEIGHT_GRAD_DOT
    return k < 32 or fg * k <= 1024


def weight_grad_run(plan, x, gout):
    """The gradient of sum(conv(x, w) * gout) with respect to w, by a
    :func:`weight_grad_plan` made for these shapes."""
    who, how, shape, args = plan
    dtype = x.dtype
    if how is _SMALL:
        return _run_small(who, _WEIGHT_GRAD[dtype], shape, dtype, False, (x, gout), args)
    if how is _ZERO:
        return _result(who, shape, dtype, zero=True)
    dw = _result(who, shape, dtype)
    if how is _GEMM:
        geometry, nb, ipb, off, per, macs, items = args
        threads = _threads.plan(items, macs)
        work = None if threads == 1 and per <= _STACK_SCRATCH else \
            _scratch(who, per, dtype, threads)
        _call(_WEIGHT_GRAD[dtype], macs, x, gout, dw, work, *geometry, nb, ipb, off, threads)
        return dw
    _direct_run(who, _core.conv_weight_grad_direct, (x, gout, args[0], dw), args, x.shape[0],
                gout.shape[2], gout.shape[3], dtype, accumulator=dw.size)
    return dw


# The bias gradient sums the output gradient's values over images and
# positions.  Each item sums a chunk of one (image, channel) row; a sum runs
# at the speed of memory, so threads pay from far fewer values than
# multiply-adds (_threads._PARALLEL_MIN_MACS).  Measured, one thread's time
# over two's for a float32 (8, 16, P) gradient: 0.95 at 2**14 values, 0.85
# at 2**16, 0.67 at 2**17, 0.5-0.67 from 2**19.
_SUM_CHUNK = 1 << 15
_SUM_PARALLEL_MIN = 1 << 16


def bias_grad(func, gout):
    """The gradient of sum(out * gout) with respect to a bias added to each
    of out's channels: gout (N, C, P) summed over images and positions, as
    float64 (C,), the same bits for any thread count."""
    n, c, p = gout.shape
    if n * c * p == 0:
        return np.zeros(c)
    nch = -(-p // _SUM_CHUNK)
    who = (func, "grad_output", None)
    partial = _result(who, (n, c, nch), np.float64)
    out = np.empty(c)
    _call(_core.bias_grad, n * c * p, gout, partial, out, _SUM_CHUNK,
          _threads.plan(n * c * nch, n * c * p, _SUM_PARALLEL_MIN))
    return out


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
