"""Allocate outputs and call the core: the one path every face of convx takes.

Callers (the notebook names in ``_notebook.py``, the public API) have already
checked their arguments and brought arrays to one float dtype, C order.  Here
the output sizes are computed, outputs and scratch are allocated (``np.empty``
where the kernel writes every cell, ``np.zeros`` for accumulators), the
degenerate sizes the kernels are not asked to handle are answered directly,
and the kernel in ``_core`` is called.

Each pass is split in two: ``*_plan`` looks only at shapes, dtype and
geometry and picks an algorithm from one table (``ALGORITHMS``: the
degenerate sizes, the FFT, Winograd, the direct kernels, im2col + GEMM), with the output
shape and the kernel's arguments; ``*_run`` picks the threads, allocates and
calls the kernel.  A plan can be kept for calls with the same signature (``planned``):
both faces keep theirs, the public API beside its own argument checks, since
planning and checking are most of what a call on a tiny input costs.

Every kernel call goes through :func:`_call`, which makes a long call from the
main thread interruptible: Ctrl-C stops the kernel's threads between pieces
of work and raises ``KeyboardInterrupt`` (docs/reliability.md).

Geometry is always 2-D: ``stride=(sh, sw)``, ``dilation=(dh, dw)`` and
``pads=(top, bottom, left, right)``.  1-D callers pass H = 1.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

import numpy as np

from . import _core, _fft, _threads
from ._validate import ConvxMemoryError, ConvxValueError

if TYPE_CHECKING:
    from typing import TypeAlias

    from numpy.typing import DTypeLike, NDArray

    from ._typing import Array

    Shape: TypeAlias = tuple[int, ...]
    # a plan's (func, kernel_arg, w_shape), for messages (w_shape None: no weight)
    Who: TypeAlias = tuple[str, str, Any]
    # what each algorithm's plan gives its run: a tuple whose items the
    # algorithm defines, or None where it does not apply
    PlanFn: TypeAlias = Callable[["Call", bool], Any]
    RunFn: TypeAlias = Callable[..., Array]
    # a pass's plan (_select): (who, algorithm, result shape, the plan's arguments)
    Plan: TypeAlias = tuple[Who, "Algorithm", Shape, Any]

_T = TypeVar("_T")

# The GEMM's sizes are 64-bit, but the engine keeps them below 2**31 so that
# the arithmetic on products of them (positions x taps, the scratch) stays far
# from overflowing.
_GEMM_MAX = 2**31 - 1


def check_gemm_sizes(func: str, k: int, p: int, f: int, kernel_arg: str = "weight",
                     input_arg: str = "input") -> None:
    """Taps K, output positions P and filters F must each be below 2**31."""
    if max(k, p, f) > _GEMM_MAX:
        culprit = (f"argument '{input_arg}' with this padding, stride and dilation gives"
                   if p > _GEMM_MAX else f"argument '{kernel_arg}' has")
        raise ConvxValueError(
            f"{func}(): {culprit} a GEMM dimension past 2**31 - 1 (kernel taps {k}, output "
            f"positions {p}, filters {f}); split the input into smaller pieces")


def sizes(func: str, kernel_arg: str, in_hw: Shape, w_shape: Shape, stride: Shape, pads: Shape,
          dilation: Shape, input_arg: str = "input") -> tuple[int, ...]:
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

def _nbytes(shape: Shape, dtype: DTypeLike) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


# NumPy refuses an array of more than this many bytes ("array is too big").
_NUMPY_MAX_BYTES = 2**63 - 1


def check_result_size(func: str, shape: Shape) -> None:
    """A result shape NumPy could not even represent (in float64) is refused
    here, at planning, before any argument is copied: its size is known from
    the shapes alone (a zero-size input may have a huge result)."""
    n = math.prod(shape)
    if n * 8 > _NUMPY_MAX_BYTES:
        raise ConvxMemoryError(
            f"{func}(): the result would have {n} elements ({n * 4} bytes in float32, "
            f"{n * 8} in float64), more than an array can hold; split the batch "
            f"(of {shape[0]}), or the input, into smaller pieces")


def _result(who: Who, shape: Shape, dtype: DTypeLike, zero: bool = False) -> Array:
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


def _scratch(who: Who, size: int, dtype: DTypeLike, threads: int, shared: int = 0) -> Array:
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
# An output this large is touched before such a call (_call); a smaller one
# spans at most two 2 MiB pages.  From _TOUCH_PARALLEL_BYTES on, on the
# call's threads: glibc maps an allocation that large afresh each time (its
# largest mmap threshold), so the touches zero every page, and two threads do
# that in about half the time; below it the memory is mostly backed already,
# and a second thread would cost more to wake (30-40 us) than it saves.
_TOUCH_MIN_BYTES = 1 << 21
_TOUCH_PARALLEL_BYTES = 32 << 20


def _call(kernel: Callable[..., bool | None], macs: int, *args: Any,
          fresh: Array | None = None, accumulates_into: Array | None = None,
          scratch: Array | None = None) -> None:
    """``kernel(*args, interruptible)``, which returns False when interrupted.

    A call from the main thread of at least _INTERRUPT_MIN_MACS chains a
    SIGINT handler in front of Python's for its duration: a Ctrl-C then
    stops the kernel's threads at their next check (between items of at most
    _ITEM_MACS, and between a matrix product's blocks) and Python's own
    handler raises KeyboardInterrupt here.  If
    that handler returns instead of raising (a user's handler), the call is
    made again from the start, after zeroing ``accumulates_into`` (the output
    of a kernel that adds into it; the others overwrite theirs), and this time
    to its end: SIGINTs that come during it are handled after it, as they
    are during a call too short to watch for them (restarted at each, a call
    under signals more frequent than itself never ended).

    Such a call first touches ``fresh``, the output the caller has just
    allocated, once per 2 MiB between checks (_core.touch_pages): a page's first write makes the operating system
    zero it, 2 MiB at once where NumPy asks for huge pages, and in a virtual
    machine whose free memory goes back to its host that takes 5 ms.  An
    item writing into many channels' planes of a fresh output would
    otherwise pay it for each of them before its next check
    (docs/reliability.md, "Ctrl-C").  So is ``scratch``, the kernel's
    working memory, just allocated (every run passes its own): the direct
    kernels' holds each thread's padded rows, 27 MiB a thread for one
    (850, 128) image of 64 channels, and after a few seconds idle the first
    items paid 150-400 ms for it before their first check
    (tests/test_interrupt.py's direct one-image calls on 2 threads,
    0.25-0.43 s from SIGINT to KeyboardInterrupt).
    """
    if macs < _INTERRUPT_MIN_MACS or threading.get_ident() != threading.main_thread().ident:
        kernel(*args, False)
        return
    touch = [(a.reshape(-1).view(np.uint8),
              _threads.get_num_threads() if a.nbytes >= _TOUCH_PARALLEL_BYTES else 1)
             for a in (fresh, scratch)
             if a is not None and a.nbytes >= _TOUCH_MIN_BYTES and a.flags.c_contiguous]
    installed = _core.interrupt_begin()
    try:
        done = (all(_core.touch_pages(b, nt, installed) for b, nt in touch)
                and kernel(*args, installed))
    finally:
        _core.interrupt_end()
    if not done:
        _core.check_signals()  # runs Python's handler: KeyboardInterrupt
        if accumulates_into is not None:
            accumulates_into[...] = 0
        kernel(*args, False)


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

# Cost constants that differ between cores running the same instruction
# set are kept per core (_tuning): 'zen5' where they were measured on an AMD
# Zen 5 (cpuid family 26: two 512-bit FMA pipes, four loads a cycle) running
# its x86-64-v4 kernels; 'zen4' on an AMD Zen 4 (family 25 with AVX-512:
# its 512-bit instructions run as two halves on 256-bit pipes, so a
# multiply-add costs twice a Zen 5's per cycle); 'default' elsewhere
# (measured on an Intel Xeon with AVX-512).  All are pure functions of the
# CPU.  A table without an entry for a core gives it the default's
# (_per_core).
_CPU = _core.cpu_id()


def _tuning() -> str:
    """Which cost constants this CPU's calls use: 'zen5', 'zen4' or
    'default'.  It depends on the instruction-set level in force
    (_core.isa), so whoever lowers it empties PLANS, as for the level
    itself.  (A family-25 CPU without AVX-512 is a Zen 3: 'default'.)"""
    if _core.isa() < 4 or _CPU[0] != "AuthenticAMD":
        return "default"
    return {26: "zen5", 25: "zen4"}.get(_CPU[1], "default")


def _per_core(table: Mapping[str, _T]) -> _T:
    """This CPU's entry of a per-core table of constants: the 'default'
    entry where the table has none for its core (_tuning)."""
    return table.get(_tuning(), table["default"])


# Work is split into items of about this many multiply-adds at most: the
# granularity at which threads share one image and at which a call notices
# Ctrl-C (a third of a millisecond on AVX2 at 50 GFLOP/s, some 20 ms on the
# baseline kernels).
_ITEM_MACS = 1 << 24


# _direct_pays's rules for few filters or few channels, where the GEMM's
# product is thin: the forward pass of fewer filters per group than a block
# (_DIRECT_FB) from _FEW_FILTERS_MIN_TAPS taps; the input gradient (whose
# product contracts over the filters) from _IG_DIRECT_MIN_TAPS taps or
# _IG_DIRECT_MIN_COLS channels per group, and at any count of either with
# at most _IG_SHALLOW filters per group.
_FEW_FILTERS_MIN_TAPS = 12
# ... and of at most _THIN_MAX_FILTERS filters per group from _THIN_MIN_TAPS
# taps (a 3x3 kernel over one or two channels a group), whatever the block.
_THIN_MIN_TAPS = 9
_THIN_MAX_FILTERS = 16
_IG_DIRECT_MIN_TAPS = 9
_IG_DIRECT_MIN_COLS = 8
_IG_SHALLOW = 2
# ... from this many multiply-adds: below, the Python around the direct
# kernel (its threads, scratch and zero border) costs more than the thin
# product saves.  The core suite's tiny input gradient (a length-5 signal, a
# length-3 kernel) took 9.8 us per call in the direct kernel, 3.1 in the
# small GEMM; 1-D layers of 3 channels and 29k to 147k multiply-adds 0.8-1.5x
# the GEMM's time, of 4 channels and 96k 0.6x.
_THIN_MIN_MACS = 1 << 16


def _direct_pays(taps: int, cols: int, sw: int, image: int, scratch: int, weight_grad: bool = False,
                 single: bool = False, ig_filters: int = 0, padding_ok: bool = False,
                 macs: int = 0) -> bool:
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
    does not grow with either.

    ``single``: the forward pass, where one output channel has blocks of its
    own (_direct.h: 8 vectors of columns, no padding); the GEMM's product
    then has one row.  Measured, 2 threads, one filter over 3 to 256
    channels, 3x3 to 7x7 and a 1-D k9, 14x14 to 200x200, old build against
    new: 0.15-0.48x the time 'auto' took before (the GEMM), 1.5-48x torch's
    speed.  The input gradient of one input channel keeps the rule: there
    the GEMM's product has a row per tap, and the direct kernel, its padded
    output gradient past the L1 cache, took 1.2-1.7x its time on 28x28.

    Where the GEMM's product is thin the rules above were too strict
    (measured, 2 threads, x86-64-v4, interleaved, direct time over the
    GEMM's).  The forward pass with fewer filters per group than a block
    (``single``, ``cols`` < _DIRECT_FB: the product has 1 to 3 rows) pays
    from _FEW_FILTERS_MIN_TAPS taps, its padding whatever it is: 0.21-0.89
    on 22 passes of 11 layers (1 or 2 filters, 1-D and 2-D, 12 to 27 taps,
    256 to 10000 positions); with 9 taps on 200 positions, 1.03-1.18.  The
    input gradient (``ig_filters``: the layer's filters per group, over
    which the GEMM's product contracts) pays from _IG_DIRECT_MIN_TAPS taps
    or _IG_DIRECT_MIN_COLS channels per group: 0.05-0.6 on 48 passes of 24
    layers (1 to 8 filters, 3 to 128 channels, 1-D k3 to 2-D 5x5, one image
    to 16; (1, 512, 28, 28) -> 8 3x3 in 8 groups 0.08); and with at most
    _IG_SHALLOW filters per group at any count of either, its padding
    whatever it is: 0.23-0.59 on 18 passes from 784 positions (1-D and 2-D,
    2 to 5 channels), 0.8-1.3 on 4 of 200 to 256 (about 10 us).  Both from
    _THIN_MIN_MACS multiply-adds (``macs``).  Left: 8 filters on 2
    channels, 1-D (1.7-1.9).

    The forward pass of at most _THIN_MAX_FILTERS filters per group pays
    from _THIN_MIN_TAPS taps (the rule above asked 24: a 3x3 kernel over
    one or two channels a group, grouped or not, the GEMM's product 4 to 16
    rows deep 9 or 18).  Measured, 2 threads, interleaved, direct time
    over the GEMM's: 0.25-0.94 in float32 and 0.28-1.00 in float64 on 108
    passes of 54 such 2-D layers at x86-64-v4 (4, 8 and 16 filters:
    medians 0.43, 0.58 and 0.82; 1, 4 and 16 groups; 14x14 to 56x56, batch
    8 to 32), 0.27-0.80 on 48 passes at x86-64-v3 (to 112x112); 1-D layers
    of 10 to 20 taps, 0.49-1.00 on 36 passes.  With 32 filters, 0.75-1.24
    on 36 passes: left to the GEMM; below 9 taps (1-D k3 to k7 over one or
    two channels), 0.64-1.16 on 44, left too.  Held out (30 layers of
    shapes not tuned on: 3x3 over one or two channels a group and 1-D k9
    and k11, 6, 12 and 16 filters, 1 to 32 groups), 'auto' within 5% of
    the faster on 52 of 60 passes, against 15 with the GEMM alone (geomean
    1.027 against 1.196, worst 1.25 against 1.83); the misses, 1.09-1.25,
    were 1-D layers of 9 and 11 taps."""
    padded = cols if single and cols == 1 else -(-cols // _DIRECT_FB) * _DIRECT_FB
    enough = weight_grad or taps >= 32 or (taps >= 24 and cols <= 16)
    thin = macs >= _THIN_MIN_MACS
    if thin and single and cols < _DIRECT_FB and taps >= _FEW_FILTERS_MIN_TAPS:
        enough = padding_ok = True
    if thin and single and cols <= _THIN_MAX_FILTERS and taps >= _THIN_MIN_TAPS:
        enough = True
    if thin and ig_filters and (taps >= _IG_DIRECT_MIN_TAPS or cols >= _IG_DIRECT_MIN_COLS
                                or ig_filters <= _IG_SHALLOW):
        enough = True
        padding_ok = padding_ok or ig_filters <= _IG_SHALLOW
    return (USE_DIRECT and sw == 1 and enough and (padding_ok or padded <= 1.5 * cols)
            and _border_fits(scratch, image))


def _tap_offsets(cs: int, kh: int, kw: int, hp: int, wp: int, dh: int, dw: int) -> NDArray[np.intp]:
    """Where each tap (c, p, q) reads in a padded (cs, hp, wp) image, relative to
    the output position: c*hp*wp + p*dh*wp + q*dw, in (c, p, q) order.
    Read-only: plans that hold it are shared between calls and threads."""
    off = (np.arange(cs)[:, None, None] * (hp * wp) + np.arange(kh)[None, :, None] * (dh * wp)
           + np.arange(kw)[None, None, :] * dw).ravel().astype(np.intp)
    off.flags.writeable = False
    return off


def _direct_weights(w: Array, groups: int, flip: bool) -> Array:
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


def _item_blocks(rows: int, cols: int, col_macs: int) -> tuple[int, int]:
    """(rows, columns) of output per item of the direct kernels before
    :func:`_blocks` shares images between threads: at most _ITEM_MACS of
    work (whole rows when a row is less; else part of one row, a long 1-D
    signal's say)."""
    row_macs = cols * col_macs
    if row_macs > _ITEM_MACS:
        return 1, min(cols, max(64, _ITEM_MACS // max(col_macs, 1)))
    return max(1, min(rows, _ITEM_MACS // max(row_macs, 1))), cols


def _blocks(rows: int, cols: int, col_macs: int, images: int, threads: int) -> tuple[int, int]:
    """:func:`_item_blocks`, with enough items for every thread when there
    are fewer images than threads."""
    rb, cb = _item_blocks(rows, cols, col_macs)
    if cb == cols and images < 2 * threads:
        rb = max(1, min(rb, -(-rows // -(-2 * threads // images))))
    return rb, cb


def _strip(rows: int, cols: int, wp: int, row_step: int, slack: int) -> int:
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


def _direct_run(who: Who, kernel: Callable[..., bool | None], arrays: tuple[Any, ...],
                d: tuple[Any, ...], n: int, rows: int, cols: int, dtype: np.dtype[Any],
                accumulator: int = 0) -> None:
    """Run a direct kernel (_core.conv_direct or conv_weight_grad_direct) on
    ``arrays`` over a batch of ``n`` images whose output is rows x cols.
    ``d`` is a plan's ``(off, cs, hp, wp, top, left, row_step, span_h, span_w,
    groups, macs, col_macs)``; each thread's scratch is ``accumulator`` values
    (the weight gradient's) and a padded image, and for conv_direct's strip
    (:func:`_strip`) its output."""
    _, cs, hp, wp, top, left, row_step, span_h, span_w, groups, macs, col_macs = d
    threads = _threads.plan(n * groups * rows * cols, macs)
    slack = _DIRECT_JB[dtype]
    rb, cb = _blocks(rows, cols, col_macs, n * groups, threads)
    extra: tuple[int, ...] = ()
    strip_out = 0
    if kernel is _core.conv_direct:
        strip = _strip(rb, cols, wp, row_step, slack) if cb == cols else 0
        extra = (strip,)
        strip_out = arrays[4].shape[1] // groups * strip   # out: arrays[4]
    work = _scratch(who, accumulator + strip_out + cs * hp * wp + slack, dtype, threads)
    _call(kernel, macs, *arrays, work, groups, hp, wp, top, left, row_step, span_h, span_w,
          slack, rb, cb, *extra, threads, fresh=arrays[-1], scratch=work)


# --------------------------------------------------------------------------
# The GEMM kernels
# --------------------------------------------------------------------------

_MR, _KC, _MC, _NC, _NR_MAX = _core.gemm_blocks()
_FORWARD_MIN_BLOCK = 96     # output positions: see _forward_gemm_sizes
_STACK_SCRATCH = _core.STACK_SCRATCH


def _specialised(kernel: _core._Fused[..., bool]) -> dict[np.dtype[Any], _core._Fused[..., bool]]:
    """The float32 and float64 versions of a fused kernel, by dtype: calling one
    directly skips Cython's run-time dispatch on the buffers' types."""
    return {np.dtype(np.float32): kernel["float"], np.dtype(np.float64): kernel["double"]}


_FORWARD = _specialised(_core.conv_forward)
_INPUT_GRAD = _specialised(_core.conv_input_grad)
_WEIGHT_GRAD = _specialised(_core.conv_weight_grad)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _input_grad_positions(k: int) -> int:
    """Output positions per block of the GEMM input gradient, whose column
    matrix block (k x positions) each thread keeps: about 2**17 values, from
    shapes alone (the order in which dx sums its terms depends on it, and must
    not depend on the threads)."""
    return min(_NC, max(4 * _NR_MAX, _round_up((1 << 17) // k, _NR_MAX)))


# --------------------------------------------------------------------------
# The table of algorithms
# --------------------------------------------------------------------------

class Call(NamedTuple):
    """What a plan may look at: the call's function and shapes, its geometry
    in 2-D form (``stride=(sh, sw)``, ``pads=(top, bottom, left, right)``,
    ``dilation=(dh, dw)``), and what follows from them.  Never the arrays'
    values, so a plan may be kept for calls with the same signature."""
    func: str
    kernel_arg: str
    x: tuple[int, ...]          # (N, C, H, W): the input's shape
    w: tuple[int, ...]          # (F, C // groups, KH, KW): the weight's
    out: tuple[int, ...]        # (N, F, OH, OW): the forward pass's output's
    stride: tuple[int, ...]
    pads: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    dtype: np.dtype[Any] = np.dtype(np.float64)   # the compute dtype

    @property
    def k(self) -> int:       # taps per filter: C // groups x KH x KW
        return self.w[1] * self.w[2] * self.w[3]

    @property
    def fg(self) -> int:      # filters per group
        return self.w[0] // self.groups

    @property
    def p(self) -> int:       # output positions per image
        return self.out[2] * self.out[3]

    @property
    def macs(self) -> int:    # multiply-adds of any of the three passes
        return self.x[0] * self.k * self.w[0] * self.p

    def geometry(self) -> tuple[int, int, int, int, int, int, int]:
        """The kernels' geometry arguments: sh, sw, dh, dw, pt, pl, groups."""
        return (self.stride[0], self.stride[1], self.dilation[0], self.dilation[1],
                self.pads[0], self.pads[2], self.groups)


class Algorithm(NamedTuple):
    """One way to run a pass.  ``plan(call, forced)`` gives the arguments its
    run needs, or None where it does not apply or (unless ``forced``: the
    caller asked for this method) where its cost model, the measured
    constants beside each plan, says another is faster; ``run(who, shape,
    args, *arrays)`` allocates the result and calls the kernel.  ``method`` is
    the name a caller forces it by (None: a degenerate size, always tried);
    ``needs`` says, for messages, what a call must be for it to apply."""
    name: str
    method: str | None
    plan: PlanFn
    run: RunFn
    needs: str = ""


# The methods a caller may force (the public API's ``method=``).
METHODS = ("auto", "direct", "gemm", "fft", "winograd")


def _select(table: Sequence[Algorithm], call: Call, shape: Shape, method: str = "auto") -> Plan:
    """A pass's plan, ``(who, algorithm, result shape, args)``: the first
    algorithm of ``table`` whose plan applies, among those of ``method``
    ("auto": all of them, by their cost models; "exact", which no public
    function takes: those of "auto" that do not spread a rounding error over
    a tile, _SPREADING).  A pure function of the call's shapes, geometry and
    the CPU (USE_DIRECT): never of the thread count or of timings."""
    for algorithm in table:
        if method == "auto" or algorithm.method in (None, method) or (
                method == "exact" and algorithm.method not in _SPREADING):
            args = algorithm.plan(call, algorithm.method == method)
            if args is not None:
                return (call.func, call.kernel_arg, call.w), algorithm, shape, args
    needs = next((a.needs for a in table if a.method == method), "")
    raise ConvxValueError(
        f"{call.func}(): argument 'method'={method!r} does not apply to this call: the "
        f"{method} algorithm needs {needs}; method='auto' picks one that does")


def _fits_small(macs: int, scratch: int) -> bool:
    """A GEMM call too small for threads or Ctrl-C, whose scratch fits on the
    kernel's stack: its plan holds the kernel's arguments ready, since on a
    tiny input the Python around the kernel is most of the cost."""
    return macs < _threads._PARALLEL_MIN_MACS and scratch <= _STACK_SCRATCH


def _small_result(who: Who, shape: Shape, dtype: DTypeLike, zero: bool = False) -> Array:
    """A small GEMM's result: the allocation, and nothing else on the way
    (a tiny call's time is mostly the Python around its kernel)."""
    try:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    except MemoryError:
        return _result(who, shape, dtype, zero)


def _empty_result(who: Who, shape: Shape, args: Any, *arrays: Array) -> Array:
    """A result with no elements (or with nothing summed into it, zeroed)."""
    return _result(who, shape, arrays[0].dtype, zero=True)


# Checking the arguments, and planning the engine's path, cost more than
# convolving a small input.  Both depend only on the shapes, dtypes and
# geometry arguments, so the faces keep them per call signature: a call like
# an earlier valid one skips them (an invalid call is never stored, and fails
# again in full).  A plan holds the path chosen with USE_DIRECT and the
# instruction-set level (_core.set_isa) as they were; whoever changes either
# empties PLANS.
PLANS: dict[Hashable, Any] = {}
_PLANS_MAX = 256


def planned(key: Hashable | None, make: Callable[..., Any], *args: Any) -> Any:
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


def _direct_geometry(c: int, hp: int, wp: int, top: int, left: int, row_step: int, kh: int, kw: int,
                     dilation: Shape, groups: int, macs: int, col_macs: int) -> tuple[Any, ...]:
    """A direct plan's arguments (_direct_run's ``d``)."""
    return (_tap_offsets(c, kh, kw, hp, wp, dilation[0], dilation[1]), c, hp, wp, top, left,
            row_step, (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1, groups, macs,
            col_macs)


# ---- forward --------------------------------------------------------------

def _forward_empty(c: Call, forced: bool = False) -> Any:
    return () if c.out[0] * c.out[1] * c.p == 0 else None


def _forward_empty_run(who: Who, shape: Shape, args: Any, x: Array, w: Array,
                       bias: Array | None) -> Array:
    return _result(who, shape, x.dtype)


def _forward_zero(c: Call, forced: bool = False) -> Any:
    return () if c.k == 0 else None   # no input channels: the sum is empty


def _forward_zero_run(who: Who, shape: Shape, args: Any, x: Array, w: Array,
                      bias: Array | None) -> Array:
    out = _result(who, shape, x.dtype)
    out[...] = 0 if bias is None else bias[:, None, None]
    return out


def _forward_padded(c: Call) -> tuple[int, int]:
    """(Hp, Wp): the padded input the forward pass reads."""
    (sh, sw), (dh, dw), (kh, kw) = c.stride, c.dilation, c.w[2:]
    return (c.out[2] - 1) * sh + (kh - 1) * dh + 1, (c.out[3] - 1) * sw + (kw - 1) * dw + 1


def _pointwise(c: Call) -> bool:
    """A 1x1 kernel at stride 1 without padding: the GEMM reads the image as
    its own column matrix, with no im2col to save."""
    return c.w[2:] == (1, 1) and c.stride == (1, 1) and c.pads == (0, 0, 0, 0)


def _forward_direct(c: Call, forced: bool = False) -> Any:
    """The direct kernel where _direct_pays says, but never on a pointwise
    kernel (nor in its input gradient): measured on 12 such layers (16 -> 32
    to 256 -> 256 channels, one image to 32, 14x14 to 56x56), 2 threads,
    direct / GEMM time 0.85-2.2, median 1.41, in float32; 0.98-2.3, median
    1.60, in float64.  The input gradient: 1.03-2.3, median 1.62; 1.08-1.68,
    median 1.28.

    Nor (nor the channels kernel in its place) on a 1-D layer of 3 to 5
    taps with 32 filters or more (:func:`_short_1d`), whose im2col is
    short: measured, 2 threads, x86-64-v4, 16 such layers (16 to 256
    channels, 256 to 8000 long), channels kernel time over the GEMM's
    0.95-1.99 (median 1.33) in float64, 0.98-1.76 (median 1.31) in float32."""
    hp, wp = _forward_padded(c)
    if c.stride[1] != 1:
        return None
    if not forced and (_pointwise(c) or _short_1d(c, 32) or not (
            _direct_pays(c.k, c.fg, c.stride[1], c.x[2] * c.x[3], hp * wp, single=True,
                         macs=c.macs)
            and c.k * c.fg <= _DIRECT_MAX_BLOCK)):
        return None
    return _direct_geometry(c.x[1] // c.groups, hp, wp, c.pads[0], c.pads[2], c.stride[0] * wp,
                            c.w[2], c.w[3], c.dilation, c.groups, c.macs, c.fg * c.k)


def _forward_direct_run(who: Who, shape: Shape, args: Any, x: Array, w: Array,
                        bias: Array | None) -> Array:
    out = _result(who, shape, x.dtype)
    _direct_run(who, _core.conv_direct,
                (x, _direct_weights(w, args[9], flip=False), args[0], bias, out), args,
                x.shape[0], shape[2], shape[3], x.dtype)
    return out


FORWARD_CHANNELS = None   # None: by _forward_channels_pay; True / False: always (tests)


def _forward_channels(c: Call, forced: bool = False) -> Any:
    """The forward pass vectorised along the output channels (_direct.h's
    cvx_fwdt), at any stride: no im2col.  Where it pays:
    :func:`_forward_channels_pay`; forced (method='direct'), where the
    direct kernel does not apply (a width stride)."""
    return _channels_plan(c, forced, _forward_channels_pay)


def _forward_channels_pay(c: Call) -> bool:
    """At a width stride (where the direct kernel does not apply), up to 64
    filters: measured against im2col + GEMM, 2 threads,
    time over the GEMM's, on 10 strided layers (3 -> 16 to 256 -> 512
    channels, 3x3 to 7x7): float32 0.64-0.92 x86-64-v4 and 0.67-0.98 -v3 up
    to 64 filters (a 7x7 stem: 0.92 and 0.92-0.98), float64 0.60-0.99; but
    0.98-1.09 at 128 filters, 1.15-1.5 at 256 and 512, where the GEMM's
    packing is a small part of its time (since then, float32 to 128
    filters: _STRIDED_MAX_FILTERS).  Fewer filters than two vectors
    (1 to 12 in float32, 1 to 4 in float64), where the GEMM's product has
    few rows: 0.22-0.99 in float32, 0.50-0.76 in float64, on 16 layers of
    our own (3x3 to 7x7, 3 to 256 channels, grouped, 1-D, stride 2 and 3),
    x86-64-v4 (a Zen 5) and -v3 alike.  But 1.07-1.64 on 1x1 kernels at
    stride 2 (32 to 256 channels -> 32 or 64), whose rows the GEMM gathers
    while this kernel pads every row of the image.  A depthwise layer (one
    filter per group) at a width stride that the depthwise kernel leaves
    (:func:`_forward_depthwise`: rows narrower than a vector) takes it too,
    though a vector holds its one filter and padding: the GEMM's product has
    one row per group there.  Measured, 2 threads, x86-64-v4, kernel time
    over the GEMM's on 9 depthwise layers (16 to 672 channels, 14x14 to
    112x112, 3x3 to 7x7, stride 2 and 3): 0.34-0.81 in float64, 0.31-0.98
    in float32.  At unit stride, in place of the direct kernel:
    :func:`_channels_replace_direct`.

    Few taps per filter (the layers above had 27 or more) leave the kernel
    little to do per padded row: measured, 2 threads, x86-64-v4, stride 2,
    time over the GEMM's, on 12 layers of 3 to 7 taps (1-D k3 to k7 of 1 to
    4 channels a group, grouped or not, 8 to 64 filters) 1.14-3.74 (median
    1.9 in float32, 1.6 in float64); with 9 to 12 taps and 8 filters a
    group or more (3x3 of one channel, 1-D k3 of 3 and 4 channels, k9 of
    one; 24 to 32 filters; 5 layers) 1.16-2.31, but with 1 to 4 filters a
    group 0.63-0.95 on 3 grouped 3x3 layers of 8 to 32 groups (the GEMM's
    product has 2 to 4 rows a group), 0.53-1.30 on 3 others.  From 18 taps
    0.59-1.2.
    A layer of one channel in and out per group keeps it whatever its taps
    (:func:`_forward_depthwise` leaves it only narrow rows)."""
    if FORWARD_CHANNELS is not None:
        return FORWARD_CHANNELS
    if c.stride[1] == 1:
        return ((_channels_replace_direct(c.fg, c.dtype, c.k) and c.k >= _CHANNELS_REPLACE_MIN_TAPS
                 or _channels_narrow_rows(c) or _channels_one_vector_rows(c))
                and _forward_direct(c) is not None) or _channels_large_kernel(c)
    if c.w[2] * c.w[3] == 1:
        return False
    if not _one_to_one(c) and (c.k < _STRIDED_FEW_TAPS or c.k < _STRIDED_MIN_TAPS
                               and c.fg > _STRIDED_FEW_FILTERS):
        return False
    return c.fg <= _STRIDED_MAX_FILTERS[c.dtype.itemsize]


# _forward_channels_pay at a width stride: below _STRIDED_FEW_TAPS taps per
# filter the GEMM; below _STRIDED_MIN_TAPS, the GEMM unless the filters per
# group are at most _STRIDED_FEW_FILTERS.
_STRIDED_FEW_TAPS = 9
_STRIDED_MIN_TAPS = 16
_STRIDED_FEW_FILTERS = 4
# ... and above _STRIDED_MAX_FILTERS filters per group (by itemsize), the
# GEMM.  Float32 from 65 to 128 filters, measured later than the docstring's
# layers (2 threads, best of 7 interleaved rounds, time over the GEMM's, 12
# 3x3 stride-2 layers of our own, 32 to 160 channels, 80 to 160 filters,
# 20x20 to 112x112; 6 more: 5x5 and 7x7, 1-D k3 and k5, grouped): x86-64-v4
# 0.78-0.90 on 10 of the 3x3 layers, 0.99 at 160 filters and on 2 images of
# 112x112; 0.76-0.99 on the 6 others (`choices.py --set strided-filters`);
# x86-64-v3 0.82-0.99 on the 3x3 layers, 1.00 at 160.  In float64 the gain
# is small and mixed (0.78-1.05, median 0.96, at x86-64-v4; 0.92-1.07 at
# -v3): it stays at 64.
_STRIDED_MAX_FILTERS = {4: 128, 8: 64}


# The channels kernels' 64-byte vectors (_channels_vector) by core: the
# fill of whole ones, in percent, from which the filters per group take
# them, for the forward kernel (which the input gradient's transposed pass
# runs too) and for the weight gradient's; None: only where they fill
# chunks of two (:func:`_fills_chunks`).  The 'default' core (an Intel Xeon
# with two 512-bit FMA units, where this was measured) takes them wherever
# the filters fill more than half of them (51%: no filter count fills whole
# vectors to between 50% and 53%; :func:`_channels_vector`).  A Zen 5 took them in the weight
# gradient from 75%: measured there, 2 threads, time in 64-byte vectors
# over 32-byte ones, on 30 layers of our own (each filter count on a grouped
# 3x3 layer at 28x28, a 3x3 layer of 32 channels at 20x20 and a 1-D k5
# layer of 64 channels, 1024 long): float32 with 12, 16, 24, 48 and 80
# filters 0.60-0.78, float64 with 6, 8, 12, 24 and 40 filters 0.59-0.86;
# but 1.2-1.4 with 8 float32 filters (half a vector).  Its forward kernel,
# and a Zen 4's (whose 512-bit operations take two passes through 256-bit
# pipes) kernels, were not measured at partial fills.
_WIDE_FILL: dict[str, tuple[int | None, int | None]] = {
    "default": (51, 51), "zen4": (None, None), "zen5": (None, 75)}


def _fills_chunks(filters: int, dtype: np.dtype[Any]) -> bool:
    """Whether the channels kernels run in 64-byte vectors on every core at
    x86-64-v4 (_core.channels_wide): where the filters fill chunks of two
    of them (32 floats, 16 doubles) to 85% or more.  The rules measured
    before the per-core fills of :data:`_WIDE_FILL` (:func:`_rows_pay`,
    :func:`_reads_border`, :func:`_many_filters`,
    :func:`_channels_narrow_rows`) ask this, not the width a plan takes."""
    wide = 64 // dtype.itemsize
    return (_core.channels_wide() and filters >= 2 * wide
            and 100 * filters >= 85 * _round_up(filters, 2 * wide))


def _channels_vector(filters: int, dtype: np.dtype[Any], weight_grad: bool = False,
                     large: bool = False) -> int:
    """The values per vector the channels kernels run a call with, by its
    filters per group (a pure function of the shapes and the CPU): 64 bytes
    at x86-64-v4 (_core.channels_wide) where the filters fill chunks of two
    such vectors to 85% (:func:`_fills_chunks`), or whole ones to this
    core's :data:`_WIDE_FILL` for the pass; else 32 bytes.  ``large``: a
    forward pass that :func:`_channels_large_kernel` gives the kernel, or
    whose filters fill one 64-byte vector (:func:`_channels_one_vector`), 64
    bytes whatever the rules above say.

    Measured, 'default' (an Intel Xeon with AVX-512 and AMX, two 512-bit FMA
    units), 2 threads, interleaved in one process, time with this rule's
    width over the time with the other (`benchmarks/vector_width.py`: 22
    layers of our own, 5 to 40 filters per group: grouped 3x3 at 14x14 and
    28x28, a 7x7 stride-2 stem, LeNet-like 5x5, 3x3 at stride 2, dense 3x3,
    one image, 1-D k3 to k9; geomean 0.76 on 98 passes; ranges over two
    runs).  Where it takes 64 bytes: the weight gradient 0.60-1.01 (median
    0.77-0.80, 36 passes); the forward pass and the input gradient in place
    of the direct kernel (:func:`_channels_replace_direct`) 0.50-1.02
    (median 0.72-0.76, 42), and where the channels kernel ran in either
    width 0.60-0.91 (14).  Where it keeps 32 bytes (half a vector or less:
    5, 6 and 8 float32 filters), 64 bytes took 1.18-1.79x the time of the
    weight gradient, and 1.09-1.47x in place of the direct kernel.  (The
    figures behind the chunks' 85% rule, measured on the same kind of CPU
    on older kernels, had the weight gradient of 16 float32 filters per
    group take 1.17x the time in one 64-byte vector; a layer like it now
    takes 0.81-0.90x.)  Plans hold the width: whoever changes the
    instruction-set level empties PLANS."""
    size = dtype.itemsize
    wide = 64 // size
    fill = _per_core(_WIDE_FILL)[weight_grad]
    if _core.channels_wide() and (
            large or _fills_chunks(filters, dtype)
            or fill is not None and 100 * filters >= fill * _round_up(filters, wide)):
        return wide
    return 32 // size


# The forward pass replaces the direct kernel with the channels one
# (_channels_replace_direct) from this many taps per filter.  Below it the
# direct kernel runs only by _direct_pays's rule for thin products (at most
# _THIN_MAX_FILTERS filters, from _THIN_MIN_TAPS taps: counts that
# _channels_replace_direct shares where _WIDE_FILL gives them 64-byte
# vectors, such as float64 16 filters), and the
# channels kernel gained nothing there: 0.86-1.25x the direct kernel's
# time on 13 float64 passes of 16 filters and 9 to 20 taps (geomean 1.02;
# the core suite's 1-D (64, 1, 4096) x16 k9: 1.25x).
_CHANNELS_REPLACE_MIN_TAPS = 24


# _channels_replace_direct, where the filters take 64-byte vectors by the
# core's _WIDE_FILL but fill no chunks of two: the fewest taps per filter,
# by the size of a value.  Measured on the 'default' core, 2 threads,
# interleaved, the forward pass in those vectors over the direct kernel's
# time, float32, 9 to 24 filters: 1.00-1.22 on 11 3x3 and 5x5 layers of 25
# to 45 taps (1 to 5 channels, 32x32 and 64x64 images), 0.95-1.15 on 4 of
# 54 and 63 (12 filters: 1.13 and 1.15), 0.83-0.93 on 1-D k7 layers of 56,
# and 0.71-0.96 on 9 layers of 72 to 288; float64, 8 to 16 filters,
# 0.86-0.99 from 27 taps (5 layers) (`benchmarks/vector_width.py`).
_WIDE_REPLACE_MIN_TAPS = {4: 64, 8: _CHANNELS_REPLACE_MIN_TAPS}


def _channels_replace_direct(filters: int, dtype: np.dtype[Any], taps: int) -> bool:
    """Where the direct kernel would run (unit width stride), the channels
    kernel instead where it runs in 64-byte vectors (:func:`_channels_vector`,
    x86-64-v4), from _WIDE_REPLACE_MIN_TAPS ``taps`` per filter where the
    filters fill no chunks of two (:func:`_fills_chunks`): the direct
    kernel's vectors run along a row, and in 64-byte vectors their
    unaligned loads gained nothing there.

    Measured, 2 threads, x86-64-v4 with two 512-bit FMA units, channels /
    direct time of the forward pass and the input gradient (the same
    kernel) on 48 layers, in one process: 24 to 96 filters on 30x30 and
    56x56 3x3, 40x40 3x3 dilated 2, and a 1-D row of 2000 with k7.  Where
    this rule picks the channels kernel (float32: 32, 64 and 96 filters;
    float64: 32, 48, 64, 96): 0.67-0.95 in float32, 0.57-1.00 in float64.
    Where it leaves the direct one (float32: 24, 40, 48; float64: 24, 40):
    0.80-1.34, 0.82-1.19.  Fewer filters than two vectors took 1.1-1.7x the
    direct kernel's time.  Those were 32-byte vectors where the filters did
    not fill chunks of two 64-byte ones: where a core's :data:`_WIDE_FILL`
    now gives them 64-byte vectors, the channels kernel took 0.50-1.02x the
    direct kernel's time ('default', 5 to 40 filters per group, 42 passes;
    :func:`_channels_vector`).  At x86-64-v3 the direct kernel stays."""
    return _fills_chunks(filters, dtype) or (
        taps >= _WIDE_REPLACE_MIN_TAPS[dtype.itemsize]
        and _channels_vector(filters, dtype) * dtype.itemsize == 64)


# _channels_large_kernel's most filters per group, by the size of a value,
# and fewest channels per group.
_LARGE_KERNEL_FILTERS = {4: 96, 8: 64}
_LARGE_KERNEL_MIN_CHANNELS = 4
# _input_grad_channels leaves to the GEMM a layer with this many times as
# many filters as channels per group, or more (its transposed pass's taps).
_LARGE_KERNEL_IG_FILTERS = 4


def _channels_large_kernel(c: Call) -> bool:
    """A forward pass at unit stride with a kernel of 5x5 or more, at
    x86-64-v4 (_core.channels_wide), with 4 channels per group or more and
    filters per group that fill whole 64-byte vectors to 75% or more, from one vector (16 float32, 8
    float64) to _LARGE_KERNEL_FILTERS: the channels kernel in 64-byte
    vectors (:func:`_channels_vector`) whatever _channels_replace_direct
    says and past _DIRECT_MAX_BLOCK, where the direct kernel or the GEMM
    ran.  With 25 to 49 taps per channel, each broadcast of the image
    feeds whole vectors of filters for long enough that the rules measured
    on 3x3 kernels (chunks of two vectors filled to 85%) were too strict.
    The input gradient (:func:`_input_grad_channels`) asks it of its
    transposed pass, whose filters are the layer's input channels.

    Measured, 2 threads, on a Zen 5 (two 512-bit FMA pipes), interleaved in
    one process, the time the rule takes over the time of what ran before,
    on layers of our own (`benchmarks/choices.py --set large-kernel` and
    others: 6 to 128 channels, 8 to 96 filters, 5x5 and 7x7, 12x12 to
    56x56, one image to 16, grouped): 0.45-1.09 (median 0.64) on 19
    float32 passes, 0.59-1.10 (median 0.87) on 6 float64 ones; on 16
    passes with one vector to a vector and a half of filters, against the
    direct kernel, 0.67-0.88.  Left: more filters (float32 128 to 256,
    0.91-1.12x the GEMM's time; float64 96 to 256, 0.95-1.33x), filters
    that fill the vectors less (20 float32 filters: 62%), 3x3 kernels
    (Winograd's, or the rules above), and fewer than
    _LARGE_KERNEL_MIN_CHANNELS channels per group (an image's first layer,
    whose 25 to 75 terms per output do not amortise the kernel's per-row
    work: the book's MNIST layer, (100, 1, 28, 28) x16 5x5, took 1.16x the
    time of the direct kernel (median of 15 interleaved rounds,
    `benchmarks/ab.py`), CIFAR's 3 channels 1.0x)."""
    wide = 64 // c.dtype.itemsize
    return (c.stride == (1, 1) and min(c.w[2:]) >= 5 and _core.channels_wide()
            and c.w[1] >= _LARGE_KERNEL_MIN_CHANNELS
            and wide <= c.fg <= _LARGE_KERNEL_FILTERS[c.dtype.itemsize]
            and 100 * c.fg >= 75 * _round_up(c.fg, wide))


# The forward channels kernel's tiles at x86-64-v4 (64-byte vectors), in
# output positions along a row (_direct.h: cvx_fwdt4_*'s MRC).
_CHANNELS_WIDE_TILE = 12
# _channels_one_vector_rows: how many times the direct kernel's share of
# the row its blocks compute the channels kernel's tiles' share must be;
# and the fewest taps per filter.
_ONE_VECTOR_GAIN = 1.25
_ONE_VECTOR_MIN_TAPS = 32


def _channels_one_vector(c: Call) -> bool:
    """The forward channels kernel in 64-byte vectors (_channels_vector's
    ``large``) where a group's float32 filters fill exactly one (16), at a
    unit width stride, at x86-64-v4 (_core.channels_wide): each broadcast
    of the image feeds one vector of filters, where in 32-byte vectors it
    feeds the same filters in two, at half the width.  Measured, 2 threads,
    an Intel Xeon with two 512-bit FMA units, interleaved in one process,
    time over that of 32-byte vectors where the channels kernel ran before
    (rows of 7 to 20): 0.74-0.97 on 5 passes.  At a 2-D stride of 2 it
    took 1.03-1.08 (3 layers), and float64's 8 filters
    0.94-1.09 in place of the direct kernel (12 passes).  Those were
    measured on older kernels: on the 'default' core :data:`_WIDE_FILL` now
    gives both 64-byte vectors (0.74-0.84x the time at stride 2 on 4
    layers, 0.68-0.81x in place of the direct kernel on 4)."""
    return (_core.channels_wide() and c.dtype.itemsize == 4 and c.fg == 16
            and c.stride[1] == 1)


def _channels_one_vector_rows(c: Call) -> bool:
    """Where the direct kernel would run, the channels kernel in one 64-byte
    vector of filters (:func:`_channels_one_vector`), with at least
    _ONE_VECTOR_MIN_TAPS taps per filter, where its tiles of
    _CHANNELS_WIDE_TILE positions cover the output rows at least
    1/_ONE_VECTOR_GAIN as well as the direct kernel's blocks of _DIRECT_JB
    columns do: a row of 14 fills two tiles to 58% and one block to 88%,
    a row of 28 three tiles to 78% and two blocks to 88%.  Where the direct
    kernel runs an image's rows as one strip (:func:`_strip`), that strip's
    share: 10 rows of 10 padded to 12, 78%.  The input gradient
    (:func:`_input_grad_channels`) asks it of its transposed pass.

    Measured as above, time over the direct kernel's, the forward pass and
    the input gradient: 0.74-0.97 (median 0.83) on 23 passes of layers of
    our own where the rule takes it (grouped 3x3 with 8 to 16 channels a
    group on 10x10 to 56x56 rows, one image, dilated 2, 16 -> 16 channels,
    1-D k3 to k9); on rows of 14, where it does not, 1.10-1.22 (4 passes).
    With 27 taps (CIFAR's first layer: 3 channels, 3x3) it took 1.10; with
    72 (8 channels) 0.75-0.92 on 3 layers, and 0.92-1.06 in five runs on
    one, (8, 8, 28, 28) -> 16."""
    if not _channels_one_vector(c) or c.k < _ONE_VECTOR_MIN_TAPS:
        return False
    oh, ow = c.out[2:]
    jb = _DIRECT_JB[c.dtype]
    tiles = ow / _round_up(ow, _CHANNELS_WIDE_TILE)
    row = ow / _round_up(ow, jb)
    wp = ow + (c.w[3] - 1) * c.dilation[1]
    strip = _strip(oh, ow, wp, c.stride[0] * wp, jb)
    if strip:
        row = oh * ow / _round_up(strip, jb)
    return _ONE_VECTOR_GAIN * tiles >= row


# _channels_narrow_rows: how many times the direct kernel's share of useful
# lanes the channels kernel's must be.
_NARROW_ROWS_GAIN = 1.3


def _channels_narrow_rows(c: Call) -> bool:
    """Where the direct kernel would run, the channels kernel instead where
    its vectors hold the filters _NARROW_ROWS_GAIN times better than the
    direct kernel's hold a row: the direct kernel's vectors run along the
    output rows in blocks of _DIRECT_JB columns (16 floats, 8 doubles),
    which a row of 10 fills to 62%; the channels kernel's along the filters
    in chunks of two vectors (_channels_vector), which 16 float32 filters
    fill.  Measured, 2 threads, x86-64-v4, channels / direct time of the
    forward pass on 14 LeNet-like layers of our own (3 to 16 channels, 12 to
    32 filters, output rows 8 to 24 wide: `benchmarks/choices.py --set
    narrow-rows`, two runs): where the rule picks the channels kernel,
    float32 with 16 filters on rows of 8 to 20, 0.82-0.94 on 8 layers
    (LeNet's C3: 0.83-0.85), and float64 with 8 filters on rows of 10,
    0.83-0.93 on 2; where it leaves the direct one, 12 float32 filters
    (0.75 of a chunk) 1.03, 20 and 24 on rows of 14 and 18 (a chunk and a
    half) 1.32-1.59, 8 on rows of 16 1.27.  At x86-64-v3 (forced on the
    same CPU) 0.73-0.92 on the 8 float32 layers and 1.40 on the 20-filter
    one."""
    vl = (64 if _fills_chunks(c.fg, c.dtype) else 32) // c.dtype.itemsize
    jb = _DIRECT_JB[c.dtype]
    ow = c.out[3]
    filters = c.fg / _round_up(c.fg, 2 * vl)
    row = ow / _round_up(ow, jb)
    return filters >= _NARROW_ROWS_GAIN * row


def _channels_weights(w: Array, groups: int, fp: int, vl: int) -> Array:
    """The forward channels kernel's weights: per group, chunks of 2*vl
    output channels (the last may be vl), each (K, width), zero past the
    group's channels; chunk c at c*2*vl*K.  ``vl``: the values per vector
    the plan asks the kernel for (:func:`_channels_vector`)."""
    f, cg, kh, kw = w.shape
    fg, k = f // groups, cg * kh * kw
    wg = np.zeros((groups, fp, k), w.dtype)
    wg[:, :fg] = w.reshape(groups, fg, k)
    chunks = [wg[:, c0:c0 + 2 * vl].transpose(0, 2, 1).reshape(groups, -1)
              for c0 in range(0, fp, 2 * vl)]
    return np.ascontiguousarray(np.concatenate(chunks, axis=1)).ravel()


def _transposed(c: Call) -> Call:
    """The input gradient at stride 1 as a forward pass: grad_output
    correlated with the flipped kernel (:func:`_flipped_kernel`) over
    grad_output padded by span - 1 - padding on each side (a negative
    padding crops)."""
    _, cg, kh, kw = c.w
    span_h, span_w = (kh - 1) * c.dilation[0] + 1, (kw - 1) * c.dilation[1] + 1
    pt, pb, pl, pr = c.pads
    return c._replace(x=c.out, w=(c.groups * cg, c.fg, kh, kw), out=c.x,
                      pads=(span_h - 1 - pt, span_h - 1 - pb, span_w - 1 - pl, span_w - 1 - pr))


def _flipped_kernel(w: Array, groups: int) -> Array:
    """The kernel of the input gradient as a forward pass: (groups x Cg, Fg,
    KH, KW), each group's input and output channels swapped, flipped along
    both spatial axes."""
    f, cg, kh, kw = w.shape
    k = w.reshape(groups, f // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)
    flipped: Array = k.reshape(groups * cg, f // groups, kh, kw)[..., ::-1, ::-1]
    return flipped


def _input_grad_channels(c: Call, forced: bool = False) -> Any:
    """The input gradient at stride 1 by the forward channels kernel, on
    :func:`_transposed`: where the direct kernel would run and
    :func:`_channels_replace_direct` says, forced or not; and where
    :func:`_input_grad_large_kernel` says.  Each input gradient value is the
    same sum in the same order as the direct kernel's (tap (f, p, q) by
    tap), so the bits are the same."""
    if c.stride != (1, 1):
        return None
    t = _transposed(c)
    large = _input_grad_large_kernel(c, t)
    direct = _input_grad_direct(c, forced=large)
    if direct is None or not (large or _channels_replace_direct(c.w[1], c.dtype, t.k)
                              or _channels_one_vector_rows(t)):
        return None
    plan = _channels_plan(t, True, lambda _: True)
    return None if plan is None else (plan, direct[1])


def _input_grad_large_kernel(c: Call, t: Call | None = None) -> bool:
    """Whether _input_grad_channels takes a unit-stride call by
    :func:`_channels_large_kernel`, asked of its transposed pass ``t``
    (:func:`_transposed`), unless the layer reads a wide zero border
    (:func:`_reads_border`) or has _LARGE_KERNEL_IG_FILTERS times as many
    filters as channels per group or more: the transposed pass then has one
    vector or two of outputs over many taps, and the GEMM, which contracts
    over the filters, took 0.62-1.03x its time (geomean 0.81) on 15 passes
    of 5x5 and 7x7 layers of 16 to 32 channels and 64 to 256 filters, one
    image to 8, 14x14 to 40x40 (Zen 5, 2 threads, interleaved); with 3
    times as many, 1.03-1.17x."""
    return (c.fg < _LARGE_KERNEL_IG_FILTERS * c.w[1]
            and _channels_large_kernel(_transposed(c) if t is None else t)
            and not _reads_border(c))


def _if_nonfinite(fallback: Callable[[], RunFn], weights: int) -> Callable[[RunFn], RunFn]:
    """A decorator for the run of a plan ``(own, other)``: the run calls
    ``compute(who, shape, own, *arrays)``, but ``fallback()(who, shape,
    other, *arrays)`` where the weights, ``arrays[weights]``, hold a NaN or
    an infinity.  For kernels that skip terms the others multiply by every
    weight: the two then differ, as 0 * inf is NaN (docs/reliability.md,
    section 8).  (:func:`_finite_run` is the rule of the algorithms that
    spread such a value over a tile.)"""
    def decorate(compute: RunFn) -> RunFn:
        def run(who: Who, shape: Shape, args: Any, *arrays: Array) -> Array:
            own, other = args
            if not np.isfinite(arrays[weights]).all():
                return fallback()(who, shape, other, *arrays)
            return compute(who, shape, own, *arrays)
        return run
    return decorate


# The direct, channels, depthwise and rows kernels compute the input gradient
# as a forward pass over the output gradient in a zero border, which they
# multiply by every weight, where the GEMM sums over the output positions
# that exist: their plans are (own, the GEMM's).
_gemm_if_nonfinite = _if_nonfinite(lambda: _input_grad_gemm_run, weights=0)


@_gemm_if_nonfinite
def _input_grad_channels_run(who: Who, shape: Shape, plan: Any, w: Array, gout: Array) -> Array:
    return _forward_channels_run(who, shape, plan, gout, _flipped_kernel(w, plan[10]), None)


def _forward_channels_run(who: Who, shape: Shape, args: Any, x: Array, w: Array,
                          bias: Array | None) -> Array:
    off, cs, hr, wp, top, left, sh, sw, span_h, span_w, groups, fp, _, macs, vl = args
    n, _, oh, ow = shape
    out = _result(who, shape, x.dtype)
    threads = _threads.plan(n * groups * oh * ow, macs)
    rb, cb = _blocks(oh, ow, fp * off.shape[0], n * groups, threads)
    work = _scratch(who, cs * hr * wp, x.dtype, threads)
    _call(_core.conv_forward_channels, macs, x,
          _channels_weights(w, groups, fp, vl), off, bias, out, work, groups, hr, wp, top, left,
          sh, sw, span_h, span_w, fp, vl, rb, cb, threads, fresh=out, scratch=work)
    return out


def _border_fits(padded: int, image: int) -> bool:
    """A padded plane a thread copies at most this much larger than the
    plane itself: a huge padding or dilation is left to im2col, whose
    scratch does not grow with either (as _direct_pays)."""
    return padded <= 4 * image + 4096


def _one_to_one(c: Call) -> bool:
    """One input and one output channel per group: a depthwise layer, or a
    plain filter (one channel in and out)."""
    return c.w[1] == 1 and c.fg == 1


def _depthwise(c: Call) -> bool:
    """:func:`_one_to_one` at unit horizontal stride (the forward pass takes
    any: :func:`_forward_depthwise`)."""
    return _one_to_one(c) and c.stride[1] == 1


def _column_offsets(kw: int, dw: int, sw: int, hp: int, wp: int) -> NDArray[np.intp]:
    """Where conv_depthwise's kernel reads tap column q at width stride sw:
    place q*dw // sw of phase plane q*dw % sw, the planes (hp, ceil(wp / sw))
    apart.  Empty at unit width stride, where it reads q*dw."""
    q = np.arange(kw if sw > 1 else 0, dtype=np.intp) * dw
    return (q % sw) * (hp * -(-wp // sw)) + q // sw


def _forward_depthwise(c: Call, forced: bool = False) -> Any:
    """Wherever it applies it pays (where the direct kernels do: USE_DIRECT).
    Measured against what the table chose before it (the direct kernel, whose
    blocks of 4 output channels are 3/4 padding here), 2 threads, time of
    new / old, forward and input gradient: (8,64,56,56) 3x3 float32 0.33 and
    0.41, float64 0.29 and 0.33; (8,96,28,28) 5x5 0.30 / 0.49, 0.26 / 0.33;
    (16,32,112,112) 3x3 0.35 / 0.39, 0.40 / 0.70; (4,256,14,14) 3x3 0.41 /
    0.53, 0.39 / 0.49; (32,144,7,7) 5x5 0.42 / 0.43, 0.32 / 0.51;
    (8,24,64,64) 7x7 0.31 / 0.38, 0.24 / 0.28; 1-D (64,16,1024) k9 0.38 /
    0.39, 0.39 / 0.39.  One channel in all (groups 1, a plain filter): the
    same with 24 taps or more (15x15: 0.24 float64, 0.31 float32; 31x31:
    0.18, 0.32; 1-D k127: 0.34, 0.33, against the GEMM), and with fewer taps
    too, since a row's last outputs take independent vectors (one vector at
    a time, as before, was a single chain of multiply-adds and the GEMM was
    ahead): direct / GEMM time, 2 threads, x86-64-v4 and -v3, float32 and
    float64, 0.12-0.5 on 7 plain filters (3x3 on 28x28 to 256x256, 4x4,
    5x5 on 512x512, 1-D k5 and k9).

    At a width stride each item pads its rows into phase planes, one per
    column phase (conv_depthwise), and the same kernel runs along them,
    where an output row is at least a 32-byte vector wide (narrower ones it
    sums tap by tap, and the channels kernel takes them).  Measured against
    the channels kernel (what 'auto' took before, itself 0.3-1.0x the
    GEMM's time there), 2 threads, x86-64-v4, 9 layers (16 to 672 channels,
    3x3 to 7x7, stride 2 and 3): 0.54-0.94x its time in float64, 0.47-0.77x
    in float32, 0.13-0.65x the GEMM's; but 1.35-1.96x in float32 on 7-wide
    output rows (14x14 at stride 2), which the rule leaves to the channels
    kernel, and 1.10-1.16x at stride 3 on 10-wide rows.  A 1x1 kernel at a
    width stride is left to the GEMM, which gathers only the columns it
    reads (the phase planes took 1.2-1.65x its time), and so is a channel
    whose phase planes would pass _CHANNELS_MAX_PAD values (a thread's
    scratch holds them whole), even forced."""
    if not _one_to_one(c) or not (forced or USE_DIRECT):
        return None
    hp, wp = _forward_padded(c)
    if not forced and (not _border_fits(hp * wp, c.x[2] * c.x[3])
                       or c.groups == 1 and c.macs < _DEPTHWISE_MIN_MACS
                       and _forward_small(c) is not None
                       or c.stride[1] > 1 and (c.out[3] < 32 // c.dtype.itemsize
                                               or c.w[2] * c.w[3] == 1)):
        return None
    if c.stride[1] > 1 and _core.depthwise_scratch(hp, wp, c.stride[1], 0, 0) > _CHANNELS_MAX_PAD:
        return None   # each thread pads a whole channel's phase planes
    (sh, sw), (dh, dw), (kh, kw) = c.stride, c.dilation, c.w[2:]
    return (_direct_geometry(1, hp, wp, c.pads[0], c.pads[2], sh * wp, kh, kw, c.dilation,
                             c.groups, c.macs, c.k)
            + (kh, kw, dh, dw, sw, _column_offsets(kw, dw, sw, hp, wp)))


# Below this many multiply-adds the forward pass leaves a plain filter (one
# channel in and out) to the small GEMM, whose Python around its kernel is
# less (the input gradient does the same, in _input_grad_depthwise).  Per
# call, 1-D plain filters, x86-64-v4, depthwise against the small GEMM:
# length 5 k3 (9 multiply-adds) 7.7 us against 4.0; 64 k5 (300)
# 7.8 against 4.3; 256 k9 (2232) 8.0 against 8.0; 1024 k9 (9144) 8.6
# against 9.9, where the GEMM's one row costs it 1.9 ns per multiply-add.
_DEPTHWISE_MIN_MACS = 1024


def _depthwise_run(who: Who, arrays: tuple[Any, ...], d: tuple[Any, ...], shape: Shape,
                   dtype: np.dtype[Any]) -> None:
    """conv_depthwise over ``arrays`` (src, taps, bias, out), ``shape`` the
    output's, by a depthwise plan's ``d``."""
    (_, _, hp, wp, top, left, row_step, span_h, span_w, groups, macs, col_macs,
     kh, kw, dh, dw, sw, qoff) = d
    n, _, rows, cols = shape
    threads = _threads.plan(n * groups * rows * cols, macs)
    slack = _DIRECT_JB[dtype]
    rb, cb = _blocks(rows, cols, col_macs, n * groups, threads)
    strip = _depthwise_strip(rb, cols, wp, row_step, dtype) if cb == cols and sw == 1 else 0
    work = _scratch(who, _core.depthwise_scratch(hp, wp, sw, slack, strip), dtype, threads)
    _call(_core.conv_depthwise, macs, *arrays, work, hp, wp, top, left, row_step, span_h,
          span_w, slack, rb, cb, kh, kw, dh, dw, sw, qoff, strip, threads, fresh=arrays[-1],
          scratch=work)


# The depthwise kernel's strip: for rows of at most _DEPTHWISE_STRIP_COLS
# outputs, in strips of at most this many columns (their sums stay in L1
# while every tap adds into them).  0 turns it off (tests compare the bits).
DEPTHWISE_STRIP_MAX = 4096
_DEPTHWISE_STRIP_COLS = 32


def _depthwise_strip(rows: int, cols: int, wp: int, row_step: int, dtype: np.dtype[Any]) -> int:
    """The columns of conv_depthwise's strip for items of ``rows`` whole
    rows of ``cols`` outputs (the padded image ``wp`` wide), or 0 for row by
    row.  Row by row, a row narrower than a vector is summed tap by tap, and
    a wider one in whole vectors (the last overlapping); the strip computes
    the wp - cols columns between rows and copies its result out, and
    cannot pair rows as x86-64-v4 does.  The strip where a row is narrower
    than a vector, or where whole vectors would compute a quarter more
    columns than the strip, in the vectors the rows run in: 64 bytes where
    the kernels have x86-64-v4's (_core.channels_wide), else 32.  Measured,
    2 threads, time row by row over the strip, forward and input gradient,
    x86-64-v4 / -v3, 8 depthwise layers
    of 7x7 to 28x28 images, with 32-byte vectors at both levels: float32
    7x7 5x5 4.2 / 3.4, 10x10 3x3 1.09 / 1.07; elsewhere 0.78-1.04 /
    0.92-1.03, but float64 14x14 3x3 0.97 / 1.17.  With 64-byte vectors at
    x86-64-v4 (Zen 5, 2 threads, interleaved, forward and input gradient),
    time over the earlier rule's on the 12 depthwise 3x3 layers of our own
    whose choice they change (float32 rows of 11 to 21, float64 rows of 7
    to 17; 32 to 960 channels, one image to 32): 0.75-0.97, geomean 0.88.
    Left to row by row, the strip took 0.85-1.09x the time on float64 rows
    of 11 to 14, 1.11-1.12x on float64 rows of 21, and 0.90-1.02x on
    float32 rows of 28."""
    strip = (rows - 1) * wp + cols
    if (row_step != wp or rows < 2 or cols > _DEPTHWISE_STRIP_COLS
            or strip > DEPTHWISE_STRIP_MAX):
        return 0
    vl = _VECTOR[np.dtype(dtype)] * (2 if _core.channels_wide() else 1)
    return strip if cols < vl or _round_up(cols, vl) >= 1.25 * wp else 0


def _forward_depthwise_run(who: Who, shape: Shape, args: Any, x: Array, w: Array,
                           bias: Array | None) -> Array:
    out = _result(who, shape, x.dtype)
    _depthwise_run(who, (x, w.reshape(w.shape[0], -1), bias, out), args, shape, x.dtype)
    return out


def _forward_gemm_sizes(c: Call, threaded: bool = True) -> tuple[int, tuple[int, int]]:
    """(nb, scratch): the output positions of an item and the scratch
    sizes.  Blocks of _NC positions (whole panels), except where the images
    (times the groups) give the CPUs fewer than two items each: then an
    image's positions go in equal blocks, as few as make the items a
    multiple of the CPUs, each at least _FORWARD_MIN_BLOCK.  One image whose
    positions fit one block stays whole, and the run shares its filters
    among the threads instead (:func:`_forward_filter_block`): each block of
    filters packs the same columns, but a block of positions reads every
    filter's weights again and ends in a ragged panel of its own.

    Intel Xeon (AVX-512), 2 threads, interleaved against the earlier rule
    (blocks for two items a CPU, then blocks of filters), the same bits:
    one image of 7x7 to 24x24 (P of 49 to 576; 48 to 1024 channels, 3x3,
    5x5 and 1x1), 0.66-0.99x the time in float32 and 0.74-0.94x in float64;
    two images of 7x7 and 14x14 (256 and 512 channels), 0.77-0.98x; three
    images of 14x14 keep two blocks of positions an image (64 -> 128
    channels: their filters in halves took 1.09-1.15x).
    One CPU (or ``threaded=False``, a call run on this thread): blocks of
    _NC.  The plan depends on the machine's CPUs, not on the thread count of
    the call; no block changes a sum's order."""
    check_gemm_sizes(c.func, c.k, c.p, c.w[0])
    nb, nblk = min(c.p, _NC), -(-c.p // _NC)
    cpus = _threads._MAX_THREADS if threaded else 1
    images = c.x[0] * c.groups
    if cpus > 1 and images * nblk < 2 * cpus and (images > 1 or nblk > 1):
        blocks = nblk
        while images * blocks % cpus:
            blocks += 1
        if blocks > nblk and -(-c.p // blocks) < _FORWARD_MIN_BLOCK:
            blocks = nblk   # (the run shares the filters instead)
        nb = -(-c.p // blocks)
    return nb, _core.forward_scratch(c.fg, c.k, c.groups, nb)


def _forward_filter_block(items: int, fg: int, threads: int) -> int:
    """The filters of an item of the forward GEMM: all of the group's, or,
    where the ``items`` (blocks of positions of every image and group) do
    not share evenly among the ``threads`` and are fewer than two each, an
    equal part of them (in whole micro-tiles of 8 rows), as few parts as
    make the items a multiple of the threads."""
    if items >= 2 * threads or items % threads == 0:
        return fg
    parts = threads // math.gcd(items, threads)
    return min(fg, _round_up(-(-fg // parts), 2 * _MR))


def _forward_small(c: Call, forced: bool = False) -> Any:
    nb, (shared, per) = _forward_gemm_sizes(c, threaded=False)
    return c.geometry() + (nb, c.fg, 1, False) if _fits_small(c.macs, shared + per) else None


def _forward_small_run(who: Who, shape: Shape, args: Any, x: Array, w: Array,
                       bias: Array | None) -> Array:
    out = _small_result(who, shape, x.dtype)
    _FORWARD[x.dtype](x, w, bias, out, None, *args)   # on this thread, scratch on its stack
    return out


def _forward_gemm(c: Call, forced: bool = False) -> Any:
    nb, (shared, per) = _forward_gemm_sizes(c)
    return (c.geometry(), nb, shared, per, c.macs, c.x[0] * c.groups * -(-c.p // nb), c.fg)


def _forward_gemm_run(who: Who, shape: Shape, args: Any, x: Array, w: Array,
                      bias: Array | None) -> Array:
    geometry, nb, shared, per, macs, items, fg = args
    dtype = x.dtype
    out = _result(who, shape, dtype)
    threads = _threads.plan(items * fg, macs)
    mb = _forward_filter_block(items, fg, threads)
    work = None if threads == 1 and shared + per <= _STACK_SCRATCH else \
        _scratch(who, per, dtype, threads, shared)
    _call(_FORWARD[dtype], macs, x, w, bias, out, work, *geometry, nb, mb, threads, fresh=out,
          scratch=work)
    return out


# ---- input gradient ---------------------------------------------------------

def _input_grad_zero(c: Call, forced: bool = False) -> Any:
    n, ch, h, wd = c.x
    empty = n * ch * h * wd == 0 or n * c.w[0] * c.p == 0 or c.k == 0
    return () if empty else None


def _input_grad_gemm(c: Call, forced: bool = False) -> Any:
    """The GEMM's arguments (also the direct plan's fallback)."""
    check_gemm_sizes(c.func, c.k, c.p, c.w[0])
    _, cg, kh, kw = c.w
    pointwise = _pointwise(c)
    nb = min(c.p if pointwise else _input_grad_positions(c.k), c.p)
    pack = _input_grad_packs(c.x[0], c.p, c.dtype.itemsize)
    scratch = _core.input_grad_scratch(cg, c.fg, kh * kw, c.groups, cg, nb, pointwise, pack)
    return (c.geometry(), nb, pointwise, scratch, c.macs, cg, kh * kw, c.fg, pack)


def _input_grad_direct(c: Call, forced: bool = False) -> Any:
    gemm = _input_grad_gemm(c)   # checks the GEMM's sizes, as before any path
    _, _, h, wd = c.x
    _, cg, kh, kw = c.w
    hp, wp = h + (kh - 1) * c.dilation[0], wd + (kw - 1) * c.dilation[1]
    taps = c.fg * kh * kw  # the flipped kernel's: output channels x KH x KW
    if c.stride != (1, 1):
        return None
    if not forced and (_pointwise(c) or _reads_border(c) or _many_filters(c) or not (
            _direct_pays(taps, cg, c.stride[1], c.p, hp * wp, ig_filters=c.fg, macs=c.macs)
            and taps * cg <= _DIRECT_MAX_BLOCK)):
        return None   # (a 1x1 kernel: as _forward_direct; direct / GEMM 1.03-2.3)
    return (_direct_geometry(c.fg, hp, wp, (kh - 1) * c.dilation[0] - c.pads[0],
                             (kw - 1) * c.dilation[1] - c.pads[2], wp, kh, kw, c.dilation,
                             c.groups, c.macs, cg * taps), gemm)


# _reads_border's limits: input positions per output position, and filters.
_BORDER_SHARE = 1.5
_BORDER_MIN_FILTERS = 48
_BORDER_SHARE_DOUBLE = 1.75   # float64, 16 to 47 filters


def _reads_border(c: Call) -> bool:
    """An input gradient the direct kernels leave to the GEMM: where the
    input has at least _BORDER_SHARE times as many positions as the output
    (a layer without padding, on small images), and the layer has at least
    _BORDER_MIN_FILTERS filters per group.  The direct kernels compute it
    as a forward pass over grad_output in a zero border of span - 1 on
    each side, so that share of their multiply-adds is zeros, while the
    GEMM's product sums over the output positions that exist (its
    contraction is the filters, which its blocks want many of).  Measured,
    2 threads, x86-64-v4, 18 unpadded 3x3 to 7x7 layers on 8x8 to 20x20
    images, GEMM time over the time 'auto' took before: where this rule
    sends them, 0.33-0.87 in float64 and 0.43-0.86 in float32 (48 to 128
    filters; 1.5 to 2.25 times the positions); left, from 16 to 32
    filters, 0.59-1.35 and 0.80-1.36.

    In float64 the direct kernel (4 filters a block, where the channels kernel
    does not take its place: :func:`_fills_chunks`) gains less than the GEMM
    from the filters: from 16 filters and _BORDER_SHARE_DOUBLE times the
    positions (5x5 kernels on 12x12 to 16x16 images) it goes too, GEMM time
    0.59-0.99 of its own on 4 such layers (LeNet's C3, (64, 6, 14, 14) -> 16
    5x5: 0.64, 0.87 and 0.97 in three runs), but 1.19-1.33 on (64, 8, 10, 10)
    -> 16 3x3 (1.56 times), which stays; the channels kernel stays too
    (0.86-1.35).  (benchmarks/choices.py --set valid-ig.)"""
    share = c.x[2] * c.x[3] / max(c.p, 1)
    if share < _BORDER_SHARE:
        return False
    return c.fg >= _BORDER_MIN_FILTERS or (c.dtype.itemsize == 8 and c.fg >= 16
                                           and share >= _BORDER_SHARE_DOUBLE
                                           and not _fills_chunks(c.w[1], c.dtype))


def _many_filters(c: Call) -> bool:
    """An input gradient the direct kernel leaves to the GEMM: at least
    _BORDER_MIN_FILTERS filters per group, an input at least as large as the
    output, and few channels per group, where the channels kernel would not
    take the direct kernel's place in chunks of two 64-byte vectors
    (:func:`_fills_chunks`, :func:`_input_grad_large_kernel`).  The direct
    kernel computes it as a forward pass whose output channels are the layer's
    few input channels (blocks of 4, some of them padding) and whose taps are
    the many filters x KH x KW; the GEMM's product contracts over the filters,
    which its blocks want many of.  Measured, 2 threads, on a Zen 5,
    interleaved, GEMM time over the direct kernel's on the layers of our own
    the rule sends to it (3 to 14 channels, 48 to 128 filters, 3x3 to 7x7 and a
    1-D k15, 'same' and unpadded, 12x12 to 64x64 images): at x86-64-v4
    0.45-1.19 on 26 passes (geomean 0.65; 1.19 on (16, 4, 56, 56) -> 64 3x3
    float64, 0.90 in another run); at x86-64-v3 (its AVX2 code, where the rule
    also takes 16 and 32 float64 channels) 0.58-1.28 on 30 (geomean 0.86; above
    1.05: that layer, 1.28, and the 1-D (8, 4, 2000) -> 64 k15 float64,
    1.12).  Unpadded layers with more channels go to the GEMM by
    :func:`_reads_border`."""
    return (c.fg >= _BORDER_MIN_FILTERS and c.x[2] * c.x[3] >= c.p
            and not _fills_chunks(c.w[1], c.dtype)
            and not _input_grad_large_kernel(c))


@_gemm_if_nonfinite
def _input_grad_direct_run(who: Who, shape: Shape, direct: Any, w: Array, gout: Array) -> Array:
    dx = _result(who, shape, w.dtype)
    _direct_run(who, _core.conv_direct,
                (gout, _direct_weights(w, direct[9], flip=True), direct[0], None, dx),
                direct, gout.shape[0], shape[2], shape[3], w.dtype)
    return dx


def _input_grad_depthwise(c: Call, forced: bool = False) -> Any:
    gemm = _input_grad_gemm(c)   # checks the GEMM's sizes, as before any path
    if not (_depthwise(c) and c.stride == (1, 1) and (forced or USE_DIRECT)):
        return None   # (its cost: _forward_depthwise's figures)
    _, _, h, wd = c.x
    _, _, kh, kw = c.w
    (dh, dw) = c.dilation
    hp, wp = h + (kh - 1) * dh, wd + (kw - 1) * dw
    if not forced and (not _border_fits(hp * wp, c.p)
                       or c.groups == 1 and _input_grad_small(c) is not None):
        # a tiny plain filter takes the small GEMM, whose Python around its
        # kernel is less: 1-D length 5 k3, 6 us per call against 17
        return None
    d = _direct_geometry(1, hp, wp, (kh - 1) * dh - c.pads[0], (kw - 1) * dw - c.pads[2], wp,
                         kh, kw, c.dilation, c.groups, c.macs, c.k)
    return d + (kh, kw, dh, dw, 1, _column_offsets(kw, dw, 1, hp, wp)), gemm


@_gemm_if_nonfinite
def _input_grad_depthwise_run(who: Who, shape: Shape, depthwise: Any, w: Array,
                              gout: Array) -> Array:
    dx = _result(who, shape, w.dtype)
    taps = np.ascontiguousarray(w[:, 0, ::-1, ::-1]).reshape(w.shape[0], -1)
    _depthwise_run(who, (gout, taps, None, dx), depthwise, shape, w.dtype)
    return dx


def _input_grad_small(c: Call, forced: bool = False) -> Any:
    geometry, nb, pointwise, _, macs, cg, khw, fg, _ = _input_grad_gemm(c)
    # (w.T packed, on this thread's stack)
    shared, per = _core.input_grad_scratch(cg, fg, khw, c.groups, cg, nb, pointwise, True)
    return geometry + (nb, cg, True, 1, False) if _fits_small(macs, shared + per) else None


def _input_grad_small_run(who: Who, shape: Shape, args: Any, w: Array, gout: Array) -> Array:
    dx = _small_result(who, shape, w.dtype, zero=True)   # the GEMM adds into dx
    _INPUT_GRAD[w.dtype](gout, w, dx, None, *args)
    return dx


ROWS = None   # None: by _rows_pay; True / False: always (tests)
_ROWS_KERNELS = (5, 7)
# The rows kernel's items: about this many (the images x groups x pieces of
# their filters), fixed by the shapes (the bits do not depend on them).
_ROWS_ITEMS = 16


def _rows_geometry(t: Call) -> Any:
    """conv_rows's arguments for the forward-form call ``t``: (K, top, left,
    groups, pieces of the filters, scratch per thread), or None where the
    kernel does not apply: a square kernel of 5 or 7 taps at unit stride
    and dilation, at least 4 output rows, rows at most rows_max_width wide,
    one filter's plane at most _ITEM_MACS (an item's work, between checks
    for Ctrl-C) and a group's padded channels at most _CHANNELS_MAX_PAD."""
    n, _, hs, _ = t.x
    k = t.w[2]
    oh, ow = t.out[2:]
    if not (t.stride == (1, 1) and t.dilation == (1, 1) and t.w[3] == k
            and k in _ROWS_KERNELS and oh >= 4
            and ow <= _core.rows_max_width(t.dtype.itemsize)
            and t.w[1] * k * k * oh * ow <= _ITEM_MACS):
        return None
    per = _core.rows_scratch(t.w[1], hs, ow + k - 1)
    if per > _CHANNELS_MAX_PAD:
        return None
    chunks = min(t.fg, max(1, -(-_ROWS_ITEMS // max(n * t.groups, 1)),
                           -(-t.fg * t.w[1] * k * k * oh * ow // _ITEM_MACS)))
    return k, t.pads[0], t.pads[2], t.groups, chunks, per


def _rows_run(who: Who, src: Array, wt: Array, bias: Array | None, out: Array, d: Any,
              macs: int) -> None:
    """conv_rows over ``src`` into ``out`` by a rows plan's ``d``; ``wt`` in
    the forward layout (F, C // groups, K, K)."""
    k, top, left, groups, chunks, per = d
    threads = _threads.plan(src.shape[0] * groups * chunks, macs)
    work = _scratch(who, per, src.dtype, threads)
    _call(_core.conv_rows, macs, src, np.ascontiguousarray(wt).reshape(wt.shape[0], -1), bias,
          out, work, k, top, left, groups, chunks, threads, fresh=out, scratch=work)


def _input_grad_rows(c: Call, forced: bool = False) -> Any:
    """The input gradient at stride 1 by the rows kernel (_rows.h) on
    :func:`_transposed`: grad_output's rows outside it are no terms, so the
    zero border of an unpadded layer's transposed pass costs nothing along
    the height, and its vectors run along the rows, not the channels (which
    a LeNet-like layer has few of).  Where :func:`_rows_pay` says, and on
    every depthwise layer it applies to (:func:`_forward_rows`), forced or
    not (method='direct' takes the kernel 'auto' would)."""
    gemm = _input_grad_gemm(c)   # checks the GEMM's sizes, as before any path
    if c.stride != (1, 1) or ROWS is False:
        return None
    t = _transposed(c)
    d = _rows_geometry(t)
    if _depthwise(c):   # where the depthwise kernel would run (_forward_rows)
        pays = _input_grad_depthwise(c, forced) is not None
    else:
        pays = USE_DIRECT and _rows_pay(c)
    if d is None or not (ROWS or pays):
        return None
    return d, gemm


def _rows_pay(c: Call) -> bool:
    """The rows kernel takes an input gradient it applies to (5x5 and 7x7
    kernels, rows at most rows_max_width wide) at x86-64-v4, unless the
    layer has _BORDER_MIN_FILTERS filters per group or more (the GEMM's, by
    :func:`_reads_border`) or the layer's channels fill the channels
    kernel's chunks of two 64-byte vectors (:func:`_fills_chunks`: float64
    LeNet-like layers of 6 channels, which fill whole 64-byte vectors to
    75%, took 1.35-1.42x the rows kernel's time in the channels kernel).

    Measured, 2 threads, x86-64-v4, kernel time over the fastest of the
    others (`benchmarks/choices.py --set valid-ig,rows-ig`), on the 8
    layers of 1 to 16 channels and 6 to 32 filters, 12x12 to 32x32, padded
    and not, that the rule gives it: 0.56-0.88 in float32, and 0.56-0.80
    in float64 on the 4 whose rows fit (LeNet's C3, (64, 6, 14, 14) -> 16
    5x5: 0.79 and 0.75).  Float64 rows of 25 to 32 (4 vectors, since):
    0.42-0.86 on 10 of 12 layers of 1 to 8 channels and 6 to 32 filters,
    26x26 to 32x32 (the book's MNIST layer 0.74), 1.02 and 1.05 on two
    (`choices.py --set rows-f64`).  Left to the others: 48 filters and more
    (0.88-1.67), float64 with 16 channels (1.15, against the channels
    kernel), and 3x3 kernels, where a vector of a source row serves 3 rows
    of a band, not 4 (the kernel is not compiled for them: up to 1.74 on 9
    layers of 3 to 32 channels).  At x86-64-v3 (32-byte vectors, rows of
    at most 16 floats or 8 doubles) it took 1.03-1.15 the time of the
    fastest on the 3 layers whose rows fit."""
    return (_core.channels_wide() and c.fg < _BORDER_MIN_FILTERS
            and not _fills_chunks(c.w[1], c.dtype))


def _forward_rows(c: Call, forced: bool = False) -> Any:
    """The forward pass of a depthwise layer (one channel in and out per
    group) by the rows kernel, wherever it applies (forced or not:
    method='direct' takes the kernel 'auto' would).  The input gradient
    does the same (:func:`_input_grad_rows`).  Its plan holds the depthwise
    kernel's too, which runs where the weights are not finite: the rows
    kernel skips the padding's rows, the depthwise kernel (and the GEMM)
    multiply them by every weight, and 0 * inf is NaN.  The two sum every
    output in the same order (bias, then the taps in (p, q) order), so on
    finite weights they give the same bits.

    Measured against the depthwise kernel, 2 threads, time of rows /
    depthwise (`benchmarks/choices.py --set dw-rows`: 15 depthwise layers
    of 24 to 768 channels, 5x5 and 7x7, 7x7 to 48x48 images, batch 4 to
    32), forward and input gradient: x86-64-v4 0.63-0.98 in float32 (15
    layers), 0.64-1.00 in float64 (the 10 whose rows fit); forced to
    x86-64-v3 (rows of at most 16 floats, 8 doubles; 8 layers of these
    and 3 others) 0.33-1.01, and to the baseline 0.16-0.83.  Its bands of
    rows share each loaded vector among up to 4 rows (8 for a single
    filter on rows one vector wide) and keep 8 chains of multiply-adds
    going, where the depthwise kernel's rows of 7 to 48 take 1 or 2
    vectors a row and two rows at most."""
    if c.stride != (1, 1) or ROWS is False or not _one_to_one(c):
        return None
    d = _rows_geometry(c)
    # where the depthwise kernel would not run (a huge padding, a tiny plain
    # filter: the small GEMM), nor does this one
    depthwise = _forward_depthwise(c, forced or bool(ROWS))
    return None if d is None or depthwise is None else (d, depthwise)


@_if_nonfinite(lambda: _forward_depthwise_run, weights=1)
def _forward_rows_run(who: Who, shape: Shape, d: Any, x: Array, w: Array,
                      bias: Array | None) -> Array:
    out = _result(who, shape, x.dtype)
    _rows_run(who, x, w, bias, out, d, x.shape[0] * w.shape[0] * w.shape[2] * w.shape[3]
              * shape[2] * shape[3])
    return out


@_gemm_if_nonfinite
def _input_grad_rows_run(who: Who, shape: Shape, d: Any, w: Array, gout: Array) -> Array:
    dx = _result(who, shape, w.dtype)
    _rows_run(who, gout, _flipped_kernel(w, d[3]), None, dx, d,
              gout.shape[0] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
              * gout.shape[2] * gout.shape[3])
    return dx


IG_PACK = None   # None: by _input_grad_packs; True / False: always (tests; read
#                  when a call is planned: clear PLANS after setting it)
# One float32 image of at most this many output positions reads w.T in place.
_IG_IN_PLACE_POSITIONS = 400


def _input_grad_packs(images: int, positions: int, itemsize: int) -> bool:
    """Whether the GEMM input gradient packs w.T once a call, for every
    item to read, or its product reads w.T in place (CVX_COLUMNS: a
    micro-tile's rows side by side in each depth step's line): one float32
    image of at most _IG_IN_PLACE_POSITIONS output positions, where the
    packing, which reads w a row apart, is a large share of the call (40% of
    one 7x7 image's at 512 channels, by perf).  Measured, 2 threads, the
    same bits, in place over packed: float32, one image of 7x7 to 20x20
    (144 to 1024 channels, 3x3 and 1x1) 0.77-0.94; from 28x28 0.96-1.04.
    float64 mixed (0.83-1.12 on the same layers): packed."""
    if IG_PACK is not None:
        return IG_PACK
    return not (images == 1 and positions <= _IG_IN_PLACE_POSITIONS and itemsize == 4)


def _input_grad_gemm_run(who: Who, shape: Shape, args: Any, w: Array, gout: Array) -> Array:
    geometry, nb, pointwise, (shared, per), macs, cg, khw, fg, pack = args
    # zeroed: the GEMM adds into it (np.zeros takes fresh pages from the
    # system, which cost memory only where they are written)
    dx = _result(who, shape, w.dtype, zero=True)
    groups = geometry[6]
    items = gout.shape[0] * groups
    threads = _threads.plan(items * cg, macs)
    # Blocks of input channels when the images are fewer than the threads.
    cc = cg if items >= 2 * threads else -(-cg // -(-2 * threads // items))
    if cc != cg:
        shared, per = _core.input_grad_scratch(cg, fg, khw, groups, cc, nb, pointwise, pack)
    work = None if threads == 1 and shared + per <= _STACK_SCRATCH else \
        _scratch(who, per, w.dtype, threads, shared)
    _call(_INPUT_GRAD[w.dtype], macs, gout, w, dx, work, *geometry, nb, cc, pack, threads,
          fresh=dx, accumulates_into=None if pointwise else dx, scratch=work)
    return dx


# ---- weight gradient --------------------------------------------------------

def _weight_grad_zero(c: Call, forced: bool = False) -> Any:
    return () if c.k * c.w[0] == 0 or c.x[0] * c.p == 0 else None


def _weight_grad_depthwise(c: Call, forced: bool = False) -> Any:
    """One channel in and out per group, unit width stride (any row stride,
    dilation and padding): each channel's taps summed along its output rows
    in vector registers.  Wherever it applies it pays (where the direct
    kernels do: USE_DIRECT).  Measured against what the table chose before
    (the direct weight-gradient kernel, whose blocks of 4 filters are 3/4
    padding here, or the GEMM's dot products), 2 threads: see
    docs/design.md's table.  Kernels of 2 rows and 3 columns or more at unit
    stride may go by whole columns of vectors instead of tap by tap
    (:func:`_dw_columns`), and 1-D ones folded into rows (:func:`_dw_fold`)."""
    if not _depthwise(c) or not (forced or USE_DIRECT):
        return None
    hp, wp = _forward_padded(c)
    if not forced and not _border_fits(hp * wp, c.x[2] * c.x[3]):
        return None
    return (_direct_geometry(1, hp, wp, c.pads[0], c.pads[2], c.stride[0] * wp, c.w[2], c.w[3],
                             c.dilation, c.groups, c.macs, c.k) + (c.w[2], c.w[3]) + c.dilation
            + (_core.depthwise_weight_grad_chunks(c.x[0], c.x[1]), _dw_columns(c), _dw_fold(c)))


DW_COLUMNS = None   # None: by _dw_columns; True / False: always where it applies (tests)


def _dw_columns(c: Call) -> bool:
    """Whether the depthwise weight gradient runs by whole columns of vectors
    (_depthwise.h's cvx_dwr: each loaded vector of a padded row serves a
    block of tap rows, up to 25 sums in registers) rather than tap by tap.
    It applies at unit stride and dilation to kernels of 3 columns or more
    on output rows at least a vector wide.  It pays where the kernel has two
    rows or more (one row gives it nothing to share): at x86-64-v4, and at
    x86-64-v3 from 4 columns.

    Measured, time of columns / tap by tap, 2 threads, best of 7
    interleaved rounds, on depthwise layers and plain filters of our own
    (`python benchmarks/choices.py --set dw-wg-columns --skip
    fft,gemm,channels,dots`: 1 to 384 channels, 20x20 to 512x512), on an
    Intel Xeon:
    - x86-64-v4, 4 columns or more: 0.39-0.85 in float32 and 0.47-0.80 in
      float64 on 27 passes of 14 layers (4x4 to 15x15, 5x21, 21x5, 7x11,
      2x23 kernels; 31x31 on 14x14 in float64); 31x31 on 512x512 0.62 and
      0.96 (the FFT takes it);
    - x86-64-v4, 3x3: 0.73-1.0 in float32, 0.85-1.05 in float64 (7 layers);
    - x86-64-v3 (``--isa 3``), 4 columns or more: 0.76-0.95 in float32 and
      0.79-1.07 in float64 on 11 layers; 3x3, 0.74-1.66, left tap by tap;
    - one tap row (1x7, 1x15): 0.79-1.15 at either level, left tap by tap.
    Those were measured with each column's lanes added at its end; the
    vectors of sums kept over an item's images then took 0.74-0.95x that
    time in float32 and 0.76-1.00x in float64 (6 layers, 3x3 to 15x15)."""
    if DW_COLUMNS is False or not (c.stride == (1, 1) and c.dilation == (1, 1)
                                   and c.w[3] >= 3
                                   and c.out[3] >= _core.depthwise_weight_grad_rows_width(
                                       c.dtype.itemsize)):
        return False
    return bool(DW_COLUMNS) or (c.w[2] >= 2 and (_core.isa() >= 4
                                                 or _core.isa() == 3 and c.w[3] >= 4))


DW_FOLD = None   # None: by _dw_fold; True / False: always where it applies (tests)


def _dw_fold(c: Call) -> int:
    """The width of the rows the depthwise weight gradient folds a 1-D
    signal into, or 0: 64 bytes' values, the taps then a ceil(kw / width) x
    width 2-D kernel that goes by columns (cvx_dwr), each loaded vector
    serving a block of tap rows.  It applies to one output row and one tap
    row at unit stride and dilation, on an output at least a row long.  It
    pays at x86-64-v4 on more than one and a half rows of taps (25 floats,
    13 doubles); at x86-64-v3, whose blocks are 4 tap columns by 2 rows, it
    does not.

    Measured, time folded / tap by tap, 2 threads, best of 7 interleaved
    rounds, on 22 1-D depthwise layers and plain filters of our own (1 to 32
    channels, 1 to 64 signals of 1024 to 262144 values, 9 to 511 taps), on
    an Intel Xeon (`python benchmarks/choices.py --set dw-wg-fold --skip
    fft,gemm,channels,dots,columns`):
    - x86-64-v4, float32: 0.40-0.64 from 63 taps, 0.62-0.82 at 25 to 48,
      0.87-1.16 at 13 to 24 (0.87 at 24 the only gain), 1.38-1.52 at 9 and 12;
    - x86-64-v4, float64: 0.42-0.64 from 63 taps, 0.50-0.89 at 13 to 48,
      1.01-1.11 at 9 and 12;
    - x86-64-v3 (``--isa 3``): 0.84-1.30 from 63 taps, 0.92-2.05 below.
    """
    width = _core.depthwise_weight_grad_fold(c.dtype.itemsize)
    if DW_FOLD is False or not (c.out[2] == 1 and c.w[2] == 1 and c.stride == (1, 1)
                                and c.dilation == (1, 1) and c.out[3] >= width):
        return 0
    return width if DW_FOLD or (_core.isa() >= 4 and 2 * c.w[3] > 3 * width) else 0


def _weight_grad_depthwise_run(who: Who, shape: Shape, args: Any, x: Array, gout: Array) -> Array:
    (_, _, hp, wp, top, left, row_step, span_h, span_w, _, macs, _, kh, kw, dh, dw,
     chunks, columns, fold) = args
    dtype = x.dtype
    dwt = _result(who, shape, dtype)
    c = x.shape[1]
    threads = _threads.plan(c * chunks, macs)
    slack = _DIRECT_JB[dtype]
    if fold:
        slack = max(slack, _core.depthwise_weight_grad_fold_slack(wp, gout.shape[3], kw, fold))
    per = _core.depthwise_weight_grad_scratch(hp, wp, slack, kh, kw, dtype.itemsize, columns,
                                              fold)
    work = _scratch(who, per, dtype, threads, shared=c * chunks * kh * kw)
    _call(_core.conv_depthwise_weight_grad, macs, x, gout, dwt.reshape(c, kh * kw), work, hp,
          wp, top, left, row_step, span_h, span_w, slack, kh, kw, dh, dw, chunks, columns,
          fold, threads, fresh=dwt, scratch=work)
    return dwt


_VECTOR = {np.dtype(np.float32): 8, np.dtype(np.float64): 4}   # values per 32-byte vector
# Each thread of the channels algorithm pads the rows one item reads (of one
# image and group): at most this many values (64 channels of 512 rows of
# 512), beyond which (a huge dilation, say) the product runs, whose scratch
# does not grow with the image.
_CHANNELS_MAX_PAD = 1 << 24


def _weight_grad_channels(c: Call, forced: bool = False) -> Any:
    """The weight gradient vectorised along the output channels (_direct.h's
    cvx_wgradt), at any stride: no im2col, no packing.  Where it pays:
    :func:`_channels_pay`; forced (method='direct'), wherever the other
    direct kernel would not run instead."""
    return _channels_plan(c, forced, _channels_pay, weight_grad=True)


def _channels_plan(c: Call, forced: bool, pays: Callable[[Call], bool],
                   weight_grad: bool = False) -> Any:
    """The channels kernels' plan (forward and weight gradient): where
    ``pays(c)``, or forced (method='direct') where the other direct kernels
    need a unit width stride; None where a thread's padded rows would not
    fit _CHANNELS_MAX_PAD.  The filters are padded to whole vectors of
    :func:`_channels_vector`'s width."""
    if not (pays(c) or forced and c.stride[1] != 1) or not (forced or USE_DIRECT):
        return None
    (sh, sw), (dh, dw), (kh, kw) = c.stride, c.dilation, c.w[2:]
    oh, ow = c.out[2:]
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    vl = _channels_vector(c.fg, c.dtype, weight_grad,
                          large=not weight_grad and (_channels_large_kernel(c)
                                                     or _channels_one_vector(c)))
    fp = _round_up(c.fg, vl)
    # each thread pads the rows of one item at a time: at most rb_max output
    # rows (_blocks and _even_blocks never give more), hr rows of the padded
    # image
    rb_max = min(oh, max(1, _ITEM_MACS // max(ow * fp * c.k, 1)))
    hp, hr, wp = (oh - 1) * sh + span_h, (rb_max - 1) * sh + span_h, (ow - 1) * sw + span_w
    if not _border_fits(hp * wp, c.x[2] * c.x[3]) or c.w[1] * hr * wp > _CHANNELS_MAX_PAD:
        return None
    return (_tap_offsets(c.w[1], kh, kw, hr, wp, dh, dw), c.w[1], hr, wp, c.pads[0], c.pads[2],
            sh, sw, span_h, span_w, c.groups, fp, rb_max, c.macs, vl)


def _weight_grad_channels_run(who: Who, shape: Shape, args: Any, x: Array, gout: Array) -> Array:
    off, cs, hr, wp, top, left, sh, sw, span_h, span_w, groups, fp, rb_max, macs, vl = args
    n, _, oh, ow = gout.shape
    dwt = _result(who, shape, x.dtype)
    threads = _threads.plan(n * groups * oh * ow, macs)
    rb, cb = _even_blocks(oh, ow, fp * off.shape[0], n * groups, threads)
    assert rb <= rb_max
    size = groups * off.shape[0] * fp
    work = _scratch(who, size + cs * hr * wp + rb * cb * fp, x.dtype, threads)
    _call(_core.conv_weight_grad_channels, macs, x, gout, off, dwt, work, groups, hr, wp, top,
          left, sh, sw, span_h, span_w, fp, vl, rb, cb, threads, fresh=dwt, scratch=work)
    return dwt


def _even_blocks(rows: int, cols: int, col_macs: int, images: int, threads: int) -> tuple[int, int]:
    """:func:`_blocks` for a static split (the weight gradient's): where
    there are few items, equal blocks of rows that make the items a multiple
    of the threads, so that none waits for another (one 28-row image on 2
    threads, at most 4 rows an item: 14 items of 2 rows, not 7 of 4)."""
    rb, cb = _blocks(rows, cols, col_macs, images, threads)
    if images * rows < threads:      # a long 1-D signal, say: rows in blocks of columns
        return 1, min(cb, -(-cols // -(-threads // (images * rows))))
    if cb < cols or threads == 1 or images * -(-rows // rb) >= 8 * threads:
        return rb, cb
    for even in range(min(rows, max(1, _ITEM_MACS // max(cols * col_macs, 1))), 0, -1):
        items = images * (rows // even)
        if rows % even == 0 and items >= threads and items % threads == 0:
            return even, cb
    return rb, cb


WEIGHT_GRAD_CHANNELS = None   # None: by _channels_pay; True / False: always (tests)


def _channels_pay(c: Call) -> bool:
    """Measured against the product (2 threads float32 on x86-64-v4, 1
    thread float64 on x86-64-v3; 77 layers each: 1 to 256 input channels per
    group, 4 to 256 filters, 1x1 to 7x7, 14x14 to 56x56, stride 1 and 2),
    time over the product's: 0.2-0.5 below 16 filters, 0.3-0.8 from 16 to
    64, 0.7-1.0 at 128 and 256; but 0.94-1.39 on 1x1 kernels with 128 or
    more filters, whose product packs nothing it would not read anyway.
    Against the dot products along the rows (the other direct kernel, whose
    vectors run along a row), float32, 2 threads, 162 layers of 1 to 32
    filters: 0.16-0.6 from 8 filters on (0.6-1.1 on 64-wide rows), but
    1.0-1.9 with fewer filters than a vector holds on rows 64 wide (0.9-1.3
    at 28, 0.4-0.95 at 14), where most of its lanes are padding.

    A 1-D layer (one row) of 3 to 5 taps with 48 filters or more takes the
    product, whose im2col is then short: measured, 2 threads, x86-64-v4, 14
    layers (32 to 256 channels, 48 to 128 filters, 256 to 8192 long),
    kernel time over the product's 1.0-1.4 in float64 and 0.93-1.53 in
    float32; with 7 or 9 taps, or 32 filters, 0.9-1.04.  Not on a Zen 5
    (_tuning), where the channels kernel runs such layers in 64-byte vectors
    faster than the product: 0.78-0.94 in float32 and 0.77-0.98 in float64
    on 5 of those layers (48 to 128 filters, 500 to 8192 long;
    `benchmarks/choices.py --set wg-1d`).  A 2-D kernel of at most 9 taps
    in all takes the product too: :func:`_few_taps`; and any 1x1 kernel,
    and a 1-D one of at most _ONE_ROW_MAX_TAPS taps (:func:`_one_row_few_taps`).

    Fewer filters than a vector holds on rows 32 or more wide go to the dot
    products only where they take the call (:func:`_weight_grad_dots_pay`:
    not past their block, _DIRECT_MAX_BLOCK_WEIGHT_GRAD taps x filters, nor
    where their blocks of filters are mostly padding,
    :func:`_few_filters_wide_rows`); the product, where both left it, took
    2.7-3.4x the channels kernel's time on 3x3 layers of 2 to 8 filters and
    64 to 256 channels (56x56 and 32x32, 2 threads, x86-64-v4)."""
    if WEIGHT_GRAD_CHANNELS is not None:
        return WEIGHT_GRAD_CHANNELS
    if _pointwise_strided_few(c):
        return not _channels_streams(c)
    if (c.w[2:] == (1, 1) or _channels_streams(c) or _channels_one_image(c) or _rows_product(c)
            or _short_1d(c, 48) and _tuning() != "zen5" or _few_taps(c) or _one_row_few_taps(c)):
        return False
    return (c.stride[1] != 1 or c.fg >= _VECTOR[c.dtype] or c.out[3] < 32
            or not _weight_grad_dots_pay(c))


# The weight gradient's channels kernel loads and stores its whole (taps,
# filters) accumulator once per item; where that is larger than this, it
# streams from L3, and an item of fewer output positions than
# _CHANNELS_MIN_POSITIONS pays more for that than for its multiply-adds.
# By core (_tuning): 1.5 MiB on the Xeon (L2 1.25 MiB a core); 1 MiB on the
# Zen 5 (L2 1 MiB), where one image of 128 channels at 28x28 -> 256 at
# stride 2, float32 (1.1 MiB, 49 positions an item), took 2.1x the
# product's time in the channels kernel; 128 -> 128 at stride 1 (0.6 MiB)
# 0.95-1.0x.  1 MiB and items of fewer than 128 positions on the Zen 4 (L2
# 1 MiB), once the product's accumulators were zeroed and added by the team
# (2 threads, one process, against method='gemm'): the channels kernel took
# 1.38-1.85x its time on 1.1-1.3 MiB float32 accumulators of 42-56
# positions an item (0.98x at batch 8), and at 112 positions 1.39-1.41x
# (float32, 1.1-1.3 MiB, stride 2) and 1.03-1.80x (float64; 0.85x on 256 ->
# 128 at stride 2).
_CHANNELS_MAX_ACCUMULATOR = {"default": 3 << 19, "zen5": 1 << 20, "zen4": 1 << 20}
_CHANNELS_MIN_POSITIONS = {"default": 64, "zen4": 128}


def _channels_streams(c: Call) -> bool:
    """Where the weight gradient's channels kernel is bound by its
    accumulator, not its multiply-adds: an accumulator (taps x filters)
    larger than a core's L2 (_CHANNELS_MAX_ACCUMULATOR) summed over
    items of fewer output positions than _CHANNELS_MIN_POSITIONS (64; 128 on
    the Zen 4).  The positions per item are
    :func:`_item_blocks`'s, before images are split between threads, so
    the rule does not depend on the thread count.  Measured, 2 threads,
    x86-64-v4, time over the product's (im2col + GEMM): 3x3 layers of 256
    to 512 channels at 7x7 to 14x14 and 192 at 14x14 to 17x17, batch 1 to
    32, stride 1 and 2 (items of 7 to 56 positions): 1.16-4.4 in float64
    and 1.3-3.4 in float32 (192 channels in float32, 1.3 MiB: 0.92); but
    0.8-1.1 at 128 channels (1.2 MiB in float64) from 49 positions an item,
    and 0.6-1.0 from 112 positions (64 to 192 channels, 12x12 to 56x56)."""
    fp, positions = _channels_item_positions(c)
    return (positions < _per_core(_CHANNELS_MIN_POSITIONS)
            and c.k * fp * c.dtype.itemsize > _per_core(_CHANNELS_MAX_ACCUMULATOR))


def _channels_item_positions(c: Call) -> tuple[int, int]:
    """The weight gradient's channels kernel: its filters padded to whole
    vectors, and the output positions of an item (:func:`_item_blocks`'s,
    before images are split between threads)."""
    fp = _round_up(c.fg, _channels_vector(c.fg, c.dtype, weight_grad=True))
    rb, cb = _item_blocks(c.out[2], c.out[3], fp * c.k)
    return fp, rb * cb


# _channels_one_image: the fewest output positions of the image per filter
# with which the channels kernel keeps one image's weight gradient from the
# product.
_ONE_IMAGE_POSITIONS_PER_FILTER = 4


def _channels_one_image(c: Call) -> bool:
    """One image of one group whose product takes every position in one
    block (at most 4 x _NC): conv_weight_grad then has each item sum its own
    block of taps straight into the result, with no accumulators.  What
    each kernel pays once for the image, besides its multiply-adds (taps x
    filters x positions): the channels kernel zeroes, adds and transposes
    the threads' accumulators (taps x filters), about 1 / positions of its
    work; the product packs the columns (taps x positions), about 1 /
    filters of its.  So the product takes the call where the image has
    fewer than _ONE_IMAGE_POSITIONS_PER_FILTER output positions per filter.
    The count is the whole image's, which does not depend on the thread
    count.  Not on a Zen 5 (_tuning), not measured there.

    Measured, 2 threads, interleaved, the channels kernel's time over the
    product's (`python benchmarks/choices.py --set wg-one-image --skip
    fft,dots`: 20 one-image layers of our own, 3x3 and 5x5, 32 to 512
    channels, 7x7 to 64x64, stride 1 and 2; and 14 held-out layers chosen
    around the bound, ``--set wg-one-image-2``), on an Intel Xeon (AVX-512, the 'default' constants):
    - 0.76-0.97 in float32 and 0.90-1.00 in float64 on the 5 layers of 4
      to 6.1 positions per filter that the rule's former count (at most 2
      positions per filter in an item) sent to the product: 128 -> 128 at
      28x28, 112 at 26x26, 128 at 24x24, 96 -> 192 at 30x30, 72 -> 144 at
      48x48 stride 2; at x86-64-v3 (``choices.py --isa 3``), 0.83-1.00 and
      0.73-0.99;
    - from 3 to 3.6 positions per filter (5 layers), 0.85-1.03 in float32
      but 0.93-1.21 in float64; 144 -> 144 at 22x22 (3.4), 1.13 and 1.35
      (x86-64-v3: 1.23 and 1.25); so the bound is 4;
    - 0.97-2.0 in float32 and 1.07-2.1 in float64 on 11 layers of 0.77 to
      2.3 positions per filter (3x3 and 5x5, stride 1 and 2).
    Before the channels kernel's threads added their accumulators as a team
    (and its 3x3 taps shared their loads), 128 -> 128 at 28x28 took 1.0x the
    product's time.  On the Zen 4, (1, 64, 28, 28) -> 256 at stride 2 and
    (1, 144, 14, 14) -> 160 in float32 (0.77 and 1.2 positions per filter)
    took 1.16-1.19x the product's time."""
    if (c.x[0] != 1 or c.groups != 1 or c.p > 4 * _NC or _tuning() == "zen5"
            or _weight_grad_by_dots(c.fg, c.k) or _weight_grad_by_taps(c)):
        return False
    return c.p < _ONE_IMAGE_POSITIONS_PER_FILTER * c.fg


def _short_1d(c: Call, filters: int) -> bool:
    """A 1-D layer (one row, a kernel one row tall) of 3 to 5 taps with at
    least ``filters`` filters per group: the GEMM's ground."""
    return c.x[2] == c.w[2] == 1 and 3 <= c.w[3] <= 5 and c.fg >= filters


# _rows_product: the fewest filters per group it sends to the product, and
# the fewest channels per group with which it takes them from the dot
# products along the rows too.
_ROWS_PRODUCT_MIN_FILTERS = 16
_ROWS_PRODUCT_MIN_CHANNELS = 16


def _rows_product(c: Call, min_channels: int = 1) -> bool:
    """A 1-D weight gradient at unit stride with at least
    _ROWS_PRODUCT_MIN_FILTERS filters per group goes to the product, whose
    taps as rows (:func:`_taps_as_rows`) run it faster than the channels
    kernel.  Measured, 2 threads, x86-64-v4, interleaved, channels kernel
    time over the product's on 14 layers of our own (16 to 128 channels, 16
    to 64 filters, 3 to 31 taps, 500 to 8192 long; `benchmarks/choices.py
    --set wg-1d,wg-1d-taps`): 1.07-1.74 in float32 and 1.02-1.58 in float64,
    but 0.98-1.02 at 31 taps; with 4 filters, 1.05 and 0.61 (the dot
    products took it).  The dot products along the rows (their time over
    the product's): 1.23-1.87 with 16 and 32 channels (48 and 96 taps in
    all), where the channels kernel had left them; 0.95-1.05 with 1 to 8
    channels, whose product has as many rows, so they keep those
    (``min_channels``: :func:`_weight_grad_dots_pay`).  Not on a Zen 5
    (_tuning), not measured there: it keeps the choices measured against
    the taps as columns (:func:`_channels_pay`)."""
    return (_taps_as_rows(c) and c.fg >= _ROWS_PRODUCT_MIN_FILTERS
            and c.w[1] >= min_channels and _tuning() != "zen5")


def _few_taps(c: Call) -> bool:
    """A 2-D weight gradient of at most 9 taps in all (one input channel per
    group, 3x3: an MNIST network's first layer) goes to the product: the
    channels kernel fills its 6-tap register blocks one and a half times,
    and the dot products along the rows waste most of a narrow row's
    vectors.  Measured, 2 threads, x86-64-v4, 8 layers (8 to 64 filters,
    14x14 to 100x100, batch 8 to 128), time over the product's: channels
    1.2-2.2 in float32, 0.9-1.8 in float64; dot products 0.88-2.9 and
    0.83-1.84 (median 1.0).  With 18 taps (two channels), the channels
    kernel took 0.69 of the product's time."""
    return c.k <= 9 and c.w[2] > 1 and c.w[3] > 1


# _pointwise_strided_few: the most bytes of a group's channels of one image;
# the most output positions an image and filters per group with which the
# channels kernel keeps any such call; and, up to twice as many positions,
# the most filters, the largest stride (height x width) and the fewest
# multiply-adds per input value with which it keeps the others.
_POINTWISE_STRIDED_FILTERS = 32
_POINTWISE_STRIDED_POSITIONS = 128
_POINTWISE_STRIDED_MACS_PER_VALUE = 4
_POINTWISE_STRIDED_BYTES = 1 << 20
_POINTWISE_STRIDED_STEP = 4
_POINTWISE_STRIDED_SHORT = 64
_POINTWISE_STRIDED_SHORT_FILTERS = 64


def _pointwise_strided_few(c: Call) -> bool:
    """A 1x1 weight gradient (1-D or 2-D) at a width stride that the
    channels kernel keeps (:func:`_channels_pay` leaves 1x1 kernels to the
    product otherwise): one of few output positions an image.  The
    product's depth is then the positions of one image, so that each of its
    tiles loads and stores its sums for a few multiply-adds, while the
    channels kernel reads the strided rows in place.  But it pads the whole
    rows it reads, every value of the image, where the product packs only
    the strided ones: past 1 MiB of a group's channels of one image, or at
    fewer than 4 multiply-adds per input value (filters / the stride's
    area: 16 filters at stride 2), the copy costs more than the product
    loses.  Not on a Zen 5 (_tuning), not measured there.

    Measured, 2 threads, x86-64-v4, interleaved, the channels kernel's time
    over the product's:
    - on the layers that informed the bounds: 80 random layers (the draws
      of `benchmarks/regret.py --family pw-strided`, seeds 5 and 17),
      0.41-0.99 on 37 of the 44 passes inside them, 1.01-1.14 on seven;
      'auto' within 5% of the faster on 120 of 160 passes, against 89
      with the product alone (geomean 1.048 against 1.126);
    - on 21 layers of our own (`benchmarks/choices.py --set
      wg-pw-strided`), 'auto' within 5% of the fastest on 40 of 42 passes
      (23 with the product alone), geomean 1.012 (1.181), worst 1.31
      (2.48).  Outside the bounds there: 1.3-2.0 with 8 and 16 channels a
      group on 784 and 1000 positions, 1.4-1.8 in float64 at stride 3 on
      28x28 images, 1.06-1.20 in float64 past 1 MiB;
    - held out (seed 53, drawn after the bounds were set): on its first 40
      layers, 0.46-1.01 on 13 of the 16 passes it takes, 1.16-1.33 on
      three; `regret.py --family pw-strided --seed 53 --layers 60 --over
      1.05` (56 layers): 'auto' more than 5% slower than the fastest on 24
      of 112 passes, against 49 with the product alone."""
    hw, positions = c.x[2] * c.x[3], c.out[2] * c.out[3]
    if (c.w[2:] != (1, 1) or c.stride[1] == 1
            or c.w[1] * hw * c.dtype.itemsize > _POINTWISE_STRIDED_BYTES or _tuning() == "zen5"):
        return False
    if positions <= _POINTWISE_STRIDED_SHORT and c.fg <= _POINTWISE_STRIDED_SHORT_FILTERS:
        return True
    return (c.stride[0] * c.stride[1] <= _POINTWISE_STRIDED_STEP
            and c.fg <= _POINTWISE_STRIDED_FILTERS and positions <= _POINTWISE_STRIDED_POSITIONS
            and c.fg * positions >= _POINTWISE_STRIDED_MACS_PER_VALUE * hw)


# _one_row_few_taps: the most taps per filter it sends to the product; at a
# width stride, the most filters per group and the fewest multiply-adds with
# which the channels kernel keeps them.
_ONE_ROW_MAX_TAPS = 31
_ONE_ROW_STRIDED_FILTERS = 8
_ONE_ROW_STRIDED_MIN_MACS = 1 << 18


def _one_row_few_taps(c: Call) -> bool:
    """A weight gradient whose kernel is one row tall (1-D, or 1x1) with at
    most _ONE_ROW_MAX_TAPS taps per filter in all, which the channels
    kernel leaves: its register blocks of taps are then mostly empty.
    Measured, 2 threads, x86-64-v4, interleaved, its time over the
    product's on such layers of our own (1 to 16 channels, 16 to 256
    filters, 1-D k1 to k9 of 200 to 4000 and 1x1 on 10x10 to 56x56, grouped
    and strided among them): 1.5-5.9 on 26 passes of k <= 24 (1x1 at k =
    16: 1.08-1.12).  The dot products (:func:`_weight_grad_direct`) take
    the 1-D ones at unit stride, at 0.81-1.00x the product's time; 1x1
    kernels, where they lost too (1.6-3.1), go to the product.  Every 1x1
    kernel does (:func:`_channels_pay`): the channels kernel took 1.09-1.53x
    the product's time on 19 of 20 passes of 1x1 layers of 24 to 96
    filters and 32 to 256 channels, 0.92 on one.

    But at a width stride, with at most _ONE_ROW_STRIDED_FILTERS filters
    per group (where the dot products cannot run and the product's tiles
    are mostly empty) and at least _ONE_ROW_STRIDED_MIN_MACS multiply-adds,
    the channels kernel keeps them.  Measured, 2 threads, x86-64-v4,
    channels kernel time over the product's: 0.48-0.90 on 8 such layers of
    our own (1 to 8 channels and 2 to 8 filters a group, 1 to 16 groups, 3
    to 15 taps, stride 2), 1.45 on one (float32, one channel a group, 4
    filters); on 28 layers of random draws at stride 2 and 3, 0.47-0.86 on
    17 of the 20 with at most 8 filters (1.28-2.04 on three calls of 64 to
    160 thousand multiply-adds, where the product runs alone on the calling
    thread), 0.79-4.4 with 12."""
    return (c.w[2] == 1 and c.k <= _ONE_ROW_MAX_TAPS
            and not (c.stride[1] > 1 and c.fg <= _ONE_ROW_STRIDED_FILTERS
                     and c.macs >= _ONE_ROW_STRIDED_MIN_MACS))


def _few_filters_wide_rows(c: Call) -> bool:
    """A float32 weight gradient of one to three filters per group on
    output rows at least 64 wide: the dot products along the rows run it in
    blocks of _DIRECT_FB filters, most of them padding, and still faster
    than the channels kernel (whose chunks are padding too) and the
    product.  Measured, 2 threads, x86-64-v4, interleaved: 0.56-0.82x the
    channels kernel's time and 0.37-0.70x the product's on 5 layers (1-D
    of 1 and 2 filters, 2000 and 4000 long; 2-D 64x64, 1 and 2 filters).
    In float64 the channels kernel was faster (0.85-0.98x the dots')."""
    return c.dtype.itemsize == 4 and c.fg < _DIRECT_FB and c.out[3] >= 64


def _weight_grad_dots_pay(c: Call) -> bool:
    """Whether the dot products along the rows (:func:`_weight_grad_direct`)
    take a call at unit width stride, unforced."""
    hp, wp = _forward_padded(c)
    return (not (_few_taps(c) or c.w[2:] == (1, 1))
            and _direct_pays(c.k, c.fg, c.stride[1], c.x[2] * c.x[3], hp * wp,
                             weight_grad=True, padding_ok=_few_filters_wide_rows(c))
            and c.k * c.fg <= _DIRECT_MAX_BLOCK_WEIGHT_GRAD
            and not _rows_product(c, _ROWS_PRODUCT_MIN_CHANNELS))


def _weight_grad_direct(c: Call, forced: bool = False) -> Any:
    if c.stride[1] != 1 or not forced and not _weight_grad_dots_pay(c):
        return None
    hp, wp = _forward_padded(c)
    return _direct_geometry(c.w[1], hp, wp, c.pads[0], c.pads[2], c.stride[0] * wp, c.w[2],
                            c.w[3], c.dilation, c.groups, c.macs, c.fg * c.k)


def _weight_grad_direct_run(who: Who, shape: Shape, args: Any, x: Array, gout: Array) -> Array:
    dw = _result(who, shape, x.dtype)
    _direct_run(who, _core.conv_weight_grad_direct, (x, gout, args[0], dw), args, x.shape[0],
                gout.shape[2], gout.shape[3], x.dtype, accumulator=dw.size)
    return dw


# The weight gradient's matrix product packs both operands (a transpose
# each: positions are its depth), and each packed value is used fg or k
# times; with few filters or taps packing costs more than the products, and
# blocks of dot products along the positions, which read both operands as
# they lie, are faster.
WEIGHT_GRAD_DOT = None   # None: by _weight_grad_by_dots; True / False: always (tests)


def _weight_grad_by_dots(fg: int, k: int) -> bool:
    """Measured against the product, both threaded and not: 1 -> 16 channels
    k9 (1-D) 0.44-0.87 of its time, 1 -> 16 5x5 0.49-0.95; 6 -> 16 5x5 (k =
    150) 1.1-1.3 times it, 16 -> 32 3x3 1.1-1.6."""
    if WEIGHT_GRAD_DOT is not None:
        return WEIGHT_GRAD_DOT
    return k < 32 or fg * k <= 1024


WEIGHT_GRAD_TAPS = None  # None: by _weight_grad_by_taps; True / False: always (tests)


def _taps_as_rows(c: Call) -> bool:
    """A 1-D layer at unit stride of more than one tap: its weight
    gradient's product can take the taps as its rows (the image's channels
    packed once, read at each tap's shift; the output gradient packed once
    for every tap).  Measured against the taps as columns, 2 threads,
    x86-64-v4, 10 layers of our own (16 to 256 channels, 3 to 11 taps, one
    to 32 signals; `benchmarks/wgrad_taps.py`): 0.49-1.00x the time in
    float32 and 0.61-1.02x in float64, geomean 0.80, the same bits."""
    return c.x[2] == c.w[2] == c.out[2] == 1 and c.stride[1] == 1 and c.w[3] > 1


def _weight_grad_by_taps(c: Call) -> bool:
    """Whether the product takes the taps as its rows: wherever it can."""
    if not _taps_as_rows(c):
        return False
    return True if WEIGHT_GRAD_TAPS is None else WEIGHT_GRAD_TAPS


def _weight_grad_split(items: int, k: int, p: int, t: int,
                       taps: bool = False) -> tuple[int, int]:
    """(kb, nb): the taps and the positions of an item of the weight
    gradient's product, given ``items`` (images x groups) of ``k`` taps and
    ``p`` positions, for ``t`` CPUs (one: no split).

    Positions go in equal blocks of at most 4 x _NC.  The items must be at
    least two per CPU and a multiple of the CPUs, which share them in
    contiguous runs (the accumulators' static split).  To get there, in this
    order: a few more blocks of positions, while each stays at least one
    depth block (_KC) long; else blocks of taps, whole panels of _NR_MAX,
    the last at most 1/8 short (an item then sums every position of its own
    columns of the accumulator); else smaller blocks of positions.  Unequal
    blocks cost: on one image of 784 positions, blocks of 256 gave one
    thread 512 positions and the other 272 (128 -> 128 3x3 float64, 6.4 ms;
    in taps, 5.1).  With ``taps`` (the taps as the product's rows, every
    tap in each item) the positions alone are split.  A function of the
    shapes and the machine's CPUs only, as every plan is."""
    def shared(blocks: int) -> bool:
        return blocks >= 2 * t and blocks % t == 0

    def positions(blocks: int) -> int:   # positions per block, for about that many blocks
        return -(-p // blocks)

    nblk = -(-p // (4 * _NC))
    for more in range(nblk, nblk + t):
        nb = positions(more)
        if t == 1 or shared(items * -(-p // nb)) and (more == nblk or nb >= _KC):
            return k, nb
    for nkb in range(2, 1 if taps else k // _NR_MAX + 1):
        kb = _round_up(-(-k // nkb), _NR_MAX)
        if shared(items * nblk * -(-k // kb)) and 8 * (kb * nkb - k) <= k:
            return kb, positions(nblk)
    least = max(nblk, -(-2 * t // items))
    for more in range(least, min(p, least + 4 * t) + 1):
        if shared(items * -(-p // positions(more))):
            return k, positions(more)
    return k, positions(least)


def _weight_grad_blocks(c: Call, threaded: bool = True) -> Any:
    """(nb, ipb, kb, off, taps, per): positions per block, images per block,
    taps per block, the dot path's tap offsets (None: the packed product),
    whether the product takes the taps as its rows, and each thread's
    scratch."""
    check_gemm_sizes(c.func, c.k, c.p, c.w[0])
    n, f = c.x[0], c.w[0]
    k, fg, p = c.k, c.fg, c.p
    pointwise = _pointwise(c)
    dot = _weight_grad_by_dots(fg, k)
    ipb, kb, taps = 1, k, False
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
        cpus = _threads._MAX_THREADS if threaded else 1
        taps = _weight_grad_by_taps(c)
        (kb, nb), off = _weight_grad_split(n * c.groups, k, p, cpus, taps), None
    return nb, ipb, kb, off, taps, _core.weight_grad_scratch(
        f, fg, k, nb, ipb, kb, dot, pointwise, c.w[3], c.dilation[1], taps)


def _weight_grad_small(c: Call, forced: bool = False) -> Any:
    nb, ipb, kb, off, taps, per = _weight_grad_blocks(c, threaded=False)   # on this thread
    return c.geometry() + (nb, ipb, kb, off, taps, 1, False) if _fits_small(c.macs, per) else None


def _weight_grad_small_run(who: Who, shape: Shape, args: Any, x: Array, gout: Array) -> Array:
    dw = _small_result(who, shape, x.dtype)
    _WEIGHT_GRAD[x.dtype](x, gout, dw, None, *args)
    return dw


def _weight_grad_gemm(c: Call, forced: bool = False) -> Any:
    nb, ipb, kb, off, taps, per = _weight_grad_blocks(c)
    return (c.geometry(), nb, ipb, kb, off, taps, per, c.macs,
            -(-c.x[0] // ipb) * c.groups * -(-c.p // nb) * -(-c.k // kb))


def _weight_grad_gemm_run(who: Who, shape: Shape, args: Any, x: Array, gout: Array) -> Array:
    geometry, nb, ipb, kb, off, taps, per, macs, items = args
    dtype = x.dtype
    dw = _result(who, shape, dtype)
    threads = _threads.plan(items, macs)
    work = None if threads == 1 and per <= _STACK_SCRATCH else _scratch(who, per, dtype, threads)
    _call(_WEIGHT_GRAD[dtype], macs, x, gout, dw, work, *geometry, nb, ipb, kb, off, taps, threads,
          fresh=dw, scratch=work)
    return dw


# ---- the FFT ------------------------------------------------------------------

# What the other algorithms cost, in nanoseconds per multiply-add, for the
# FFT's cost model to compare with (convx._fft's constants), by the pass
# ("weight grad", or "forward" for the forward pass and the input gradient)
# and the itemsize.  Measured as the FFT's were, on the same calls (2
# threads, an Intel Xeon, x86-64-v4; `benchmarks/fft_costs.py --seed 11
# --layers 24 --fit` and `--seed 12 --layers 30`).  The direct kernel runs
# blocks of 4 filters (the input gradient's are the layer's channels): its
# rate is the median over the calls that fill them (float32 0.0083-0.024,
# forward and input gradient, 24 calls), per filled lane; 1 or 2 filters
# took 0.009-0.042 (29 calls), one filter alone about twice the full rate
# forward, where it runs in blocks of its own.  The channels kernel's rate
# is per filled lane of its vectors (along the filters); it got 64-byte
# vectors and blocks of 12 positions after the first fit (on an x86-64-v3
# machine, one rate for both kernels), which had sent (4, 3, 128, 128) x16
# 15x15 to the FFT at 2.9x and 3.3x the channels kernel's time (forward),
# and (2, 3, 96, 96) x32 13x13 at 7.0x and 10.4x (forward, weight
# gradient).  The others: the first fit's rates times the median of the
# time measured over the time they gave (the GEMM 0.63 and 0.68 on 27 input
# gradients; _NS_DEPTHWISE below).  On those 324 calls, timed again with
# these constants, the choice between the FFT and the other was within 5%
# of the faster on 305 (with _FFT_MARGIN); on calls not fitted on, see
# docs/design.md ("The FFT algorithm").
_NS_PER_MAC = {"direct": {"forward": {4: 0.0104, 8: 0.020},
                          "weight grad": {4: 0.015, 8: 0.03}},
               "channels": {"forward": {4: 0.0069, 8: 0.012},
                            "weight grad": {4: 0.0117, 8: 0.0242}}}
# The channels kernel where _channels_large_kernel gives it a layer: many
# channels and filters, 25 to 49 taps, 64-byte vectors, at a rate the
# medians of the first fit (on layers of 1 to 16 channels) missed 4- to
# 6-fold, so that the FFT took 7x7 float64 layers of 16 to 128 channels at
# 6.4 to 11 times the time.  First measured on a Zen 5 (9 layers of 16 to
# 128 channels and 32 to 96 filters, 5x5 and 7x7: float32 0.0061-0.0086,
# float64 0.0104-0.0116); scaled as above (medians 0.76 and 1.12 forward,
# 0.96 and 1.19 weight gradient, 23 calls).
_NS_PER_MAC_LARGE = {"forward": {4: 0.0068, 8: 0.0135}, "weight grad": {4: 0.0087, 8: 0.0143}}
# The GEMM's rate falls with the rows of its product, m (the filters per
# group; in the input gradient, the taps of a group's input channels, or
# the filters, its depth, where they are fewer: a product one deep is an
# outer product): a + b / m.  (The input gradient's m was its channels per
# group until the book's MNIST layer, (100, 1, 28, 28) x16 5x5, one
# channel: m = 1 sent its float32 input gradient to the FFT, 8.2 ms, where
# the GEMM takes 2.0; m = min(25 taps, 16 filters) now.)
_NS_PER_MAC_GEMM = {4: (0.0031, 0.22), 8: (0.0068, 0.41)}
# The depthwise kernel (a plain filter is one too) costs a per output, b
# per multiply-add and r per multiply-add over the output's width: a kernel
# of few taps is bound by memory, one of many by the multiply-adds, which a
# kernel one row tall (every 1-D one) runs at a rate of its own (b1 against
# b2), and each output row pays a fixed cost per tap (r: 64-wide rows took
# 1.5-2.5x the time per multiply-add of 512-wide ones).  By the pass and the
# itemsize, (a, b1, b2, r) in ns; a, b2 and r fitted by non-negative least
# squares on the relative error to 54 random 2-D depthwise layers and plain
# filters (1 to 16 channels, 1 to 8 images, 5x5 to 41x41, rows 32 to 512
# wide; 2 threads, an Intel Xeon, x86-64-v4); b1 first fitted on 1-D
# filters of 21 to 301 taps and scaled to the same machine as the FFT's
# constants (the median, 0.61 and 0.51 forward, 0.49 and 0.48 weight
# gradient), then forward by a further 0.68 (one-row kernels of 255 taps:
# 0.60-0.77 of the time scaled, 12 calls; `fft_costs.py --seed S --fit`
# reports the model's median error where the depthwise kernel is the FFT's
# rival).  Fitted on one seed's 30 layers, the model gave 0.52-1.31 of the
# times of the other seed's 24 (0.51-1.48 without r).  Where it mattered: (2, 1, 512, 512) 31x31 float32 would have
# gone to the FFT at 1.4x the depthwise kernel's time, and (2, 1, 44100) k511
# went to it at 2.0-2.2x.
_NS_DEPTHWISE = {"forward": {4: (0.27, 0.0087, 0.0069, 0.31), 8: (0.52, 0.0134, 0.0131, 0.29)},
                 "weight grad": {4: (0.10, 0.0123, 0.0158, 0.16),
                                 8: (0.29, 0.0209, 0.0299, 0.12)}}


# The rates above, measured on the Xeon, times these by core for the FFT's
# comparison: (the algorithm, the pass the rates are keyed by) -> factor,
# 1 where the core's entry has none.  'zen4': the median, over both dtypes,
# of the time measured over the time the rates give, on the passes where
# that algorithm was the FFT's rival in the calls _fft._NS_FFT's 'zen4'
# entry was fitted on (14 to 148 passes each; the rows kernel counts as the
# kernel whose rate it is costed at).  The depthwise kernel's 1.31 matters
# most: (2, 1, 512, 512) 31x31, forward, took 9.3 ms in it against 7.2
# modelled, and 5.3-7.0 ms in the FFT.
_NS_SCALE: dict[str, dict[tuple[str, str], float]] = {
    "default": {},
    "zen4": {("depthwise", "forward"): 1.31, ("depthwise", "weight grad"): 1.41,
             ("channels", "forward"): 1.59, ("channels", "weight grad"): 1.11,
             ("direct", "forward"): 1.04, ("direct", "weight grad"): 1.37,
             ("gemm", "forward"): 1.33, ("gemm", "weight grad"): 1.21}}


def _cost_pass(pass_: str) -> str:
    """The pass the cost tables above are keyed by: the weight gradient's
    own, or the forward pass's, which the input gradient shares."""
    return "weight grad" if pass_ == "weight grad" else "forward"


def _depthwise_ns(c: Call, pass_: str) -> float:
    """The depthwise kernel's cost model for a pass of ``c``, in ns."""
    a, b1, b2, r = _NS_DEPTHWISE[_cost_pass(pass_)][c.dtype.itemsize]
    outputs = math.prod(c.x if pass_ == "input grad" else c.out)
    return a * outputs + (b1 if c.w[2] == 1 else b2) * c.macs + r * c.macs / max(c.out[3], 1)


def _ns_per_mac(name: str, c: Call, pass_: str) -> float:
    """What algorithm ``name`` takes per multiply-add on a pass of ``c``, in
    ns, on this core (_NS_SCALE)."""
    scale = _per_core(_NS_SCALE).get((_costed_as(name, c), _cost_pass(pass_)), 1.0)
    return scale * _xeon_ns_per_mac(name, c, pass_)


def _costed_as(name: str, c: Call) -> str:
    """The algorithm whose rates cost ``name`` on ``c``: the rows kernel is
    costed as the depthwise kernel where it takes a depthwise layer (it took
    0.16-1.0x that kernel's time there: _forward_rows), and as the direct
    kernel elsewhere (0.56-0.88x the fastest of the others: _rows_pay)."""
    if name == "rows":
        return "depthwise" if _one_to_one(c) else "direct"
    return name


def _xeon_ns_per_mac(name: str, c: Call, pass_: str) -> float:
    """_ns_per_mac as the tables above give it (the Xeon's rates)."""
    rates = _cost_pass(pass_)
    f = c.w[1] if pass_ == "input grad" else c.fg   # the filters of the pass the kernel runs
    if name == "channels" and (_input_grad_large_kernel(c) if pass_ == "input grad"
                               else _channels_large_kernel(c)):
        return _NS_PER_MAC_LARGE[rates][c.dtype.itemsize]
    if name == "channels":
        return _NS_PER_MAC["channels"][rates][c.dtype.itemsize] * _round_up(
            f, _VECTOR[c.dtype]) / f
    costed = _costed_as(name, c)
    if costed == "depthwise":
        return _depthwise_ns(c, pass_) / max(c.macs, 1)
    if costed == "direct":
        # blocks of _DIRECT_FB filters (the transposed pass's: the layer's
        # channels); one filter alone runs in blocks of its own, at half the
        # rate forward, and a quarter in the weight gradient's dot products
        waste = 2 if f == 1 and rates == "forward" else _round_up(f, _DIRECT_FB) / f
        return _NS_PER_MAC["direct"][rates][c.dtype.itemsize] * waste
    a, b = _NS_PER_MAC_GEMM[c.dtype.itemsize]
    return a + b / max(min(c.k, c.fg) if pass_ == "input grad" else c.fg, 1)


def _fft_geometry(c: Call, pass_: str) -> Any:
    """The FFT's tiling for a pass and its cost in ns (convx._fft.geometry),
    or None where the kernel spans one position along both axes."""
    _, cg, kh, kw = c.w
    span: tuple[int, ...] = ((kh - 1) * c.dilation[0] + 1, (kw - 1) * c.dilation[1] + 1)
    if span == (1, 1):
        return None
    pads = (c.pads[0], c.pads[2])
    out1: tuple[int, ...]
    origin: tuple[int, ...]
    up: tuple[int, ...]
    down: tuple[int, ...]
    if pass_ == "input grad":
        out1, up, down, cin, cout = c.x[2:], c.stride, (1, 1), c.fg, cg
        origin = (span[0] - 1 - pads[0], span[1] - 1 - pads[1])
    else:
        out1 = tuple((o - 1) * s + 1 for o, s in zip(c.out[2:], c.stride))
        origin, up, down, cin, cout = pads, (1, 1), c.stride, cg, c.fg
    swap = span[1] == 1
    if swap:
        span, out1, origin, up, down = (v[::-1] for v in (span, out1, origin, up, down))
    return _fft.geometry(span, out1, origin, up, down, c.x[0], cin * c.groups, cout * c.groups,
                         c.groups * cin * cout, _per_core(_fft._NS_FFT)[c.dtype.itemsize], swap)


# 'auto' takes the FFT where its model says it takes at most 1/_FFT_MARGIN
# of the other's time: near a tie the exact algorithm is worth more (the
# FFT's error grows with its transforms, docs/design.md), and the FFT's own
# time varies more (one 512x512 31x31 float64 call: 6.8-8.8 ms, where the
# depthwise kernel took 7.3-7.7).  On the 324 calls its constants were
# fitted on, the choice took 1.017x the faster's time on average (1.020x
# without the margin), 1.91x at worst (2.23x).
_FFT_MARGIN = 1.1


def _fft_plan(pass_: str, shape: Callable[[Call], Shape]) -> PlanFn:
    """The plan of the FFT for ``pass_``: its geometry and the plan that runs a
    call whose values are not all finite (the best of the other algorithms)."""
    def plan(c: Call, forced: bool = False) -> Any:
        found = _fft_geometry(c, pass_)
        if found is None:
            return None
        fallback = _exact_plan(pass_, c, shape(c))
        if not forced and found[1] * _FFT_MARGIN >= c.macs * _ns_per_mac(fallback[1].name, c,
                                                                          pass_):
            return None
        return (found[0], c.dilation, c.macs), fallback
    return plan


# The FFT and Winograd transform whole tiles: one NaN or infinity in what
# they transform would spread over its tile's outputs.
_SPREADING = ("fft", "winograd")


def _exact_plan(pass_: str, c: Call, shape: Shape) -> Plan:
    """The plan the table makes for ``c`` without the algorithms that spread
    a non-finite value: the one that runs a call whose values are not all
    finite."""
    return _select(ALGORITHMS[pass_], c, shape, "exact")


# _largest reads this many values at a time, twice (their largest, their
# smallest): 256 KiB of float64, which the second read finds in L2.  No
# temporary grows with the input, and Python runs a Ctrl-C's handler between
# slabs (800 MB looked at in one NumPy call took 0.14-0.18 s, beyond the
# interrupt latency's budget on its own).
_SLAB = 1 << 15


def _largest(a: Array) -> float:
    """The largest magnitude among the values of the C-contiguous array
    ``a`` (0 where it has none): NaN or infinite where one of them is not
    finite."""
    flat = a.reshape(-1)
    top = 0.0
    for i in range(0, flat.size, _SLAB):
        part = flat[i:i + _SLAB]
        hi, lo = float(part.max()), float(part.min())
        if not (math.isfinite(hi) and math.isfinite(lo)):
            return hi if not math.isfinite(hi) else lo
        top = max(top, hi, -lo)
    return top


def _all_finite(a: Array) -> bool:
    """Whether every value of the C-contiguous array ``a`` is finite."""
    return math.isfinite(_largest(a))


def _transforms_memory_error(who: Who, e: MemoryError) -> ConvxMemoryError:
    """The error of a transform's working memory that NumPy could not
    allocate (the FFT's arrays grow with the kernel's span and the tiles),
    naming the call and what to do."""
    func, kernel_arg, (f, cg, kh, kw) = who
    return ConvxMemoryError(
        f"{func}(): with argument '{kernel_arg}' of {f} filters of {cg} channels and {kh}x{kw} "
        f"taps, the transforms of this method need working memory that could not be allocated "
        f"({e}); use method='direct' or method='gemm', or split the input into smaller pieces")


def _finite_run(compute: Callable[..., Array | None], looked: tuple[int, ...]) -> RunFn:
    """A run of an algorithm that spreads a non-finite value, whose plan is
    ``(own, fallback)``: ``compute(who, shape, own, *arrays)``, unless one of
    the arrays at the indices ``looked`` (among the first two, those it
    transforms: the bias is only added) holds a NaN or an infinity, or
    ``compute`` returns None; then the fallback plan runs the call.
    ``compute`` looks at the arrays not looked at here as it reads them, and
    returns None when it finds such a value, or when its own arithmetic
    overflowed; the fallback also runs where the FFT cannot import scipy.fft
    (_fft.Unavailable)."""
    def run(who: Who, shape: Shape, args: Any, *arrays: Array) -> Array:
        fallback: Plan
        own, fallback = args
        seen = all(_all_finite(arrays[i]) for i in looked)
        try:
            out = compute(who, shape, own, *arrays) if seen else None
        except ConvxMemoryError:
            raise
        except MemoryError as e:   # NumPy's, from the FFT's transforms
            raise _transforms_memory_error(who, e) from None
        except _fft.Unavailable:   # no scipy.fft in a child forked as it was imported
            out = None
        if out is None:
            fwho, algorithm, fshape, fargs = fallback
            return algorithm.run(fwho, fshape, fargs, *arrays)
        return out
    return run


def _shifts(a: Array, axis: int) -> Array | None:
    """The powers of two the FFT divides the values of ``a`` (N, C, ...) by
    on their way into its transforms, one for each image (``axis`` 0) or
    each channel (1), so that no sum in them overflows, nor falls among the
    subnormal numbers: e where the slice's largest magnitude is f x 2**e
    (0.5 <= f < 1), 0 where it is zero; None where a value of ``a`` is not
    finite.  The transforms see the same values whatever power of two scaled
    a slice, so the result scales with it bit for bit (where the values are
    normal numbers), and no image's or filter's magnitude changes another's
    result (one shift for the whole batch turned an image 1e-15 times
    another's into zeros and subnormal numbers: 3000 times the error bound).
    The FFT's own look at its arrays: one pass, a slab of images at a time
    (as _largest)."""
    flat = a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))
    top = np.zeros(a.shape[axis])
    if flat.size:
        per = max(1, _SLAB // (flat.shape[1] * flat.shape[2]))   # images a slab
        red = (1, 2) if axis == 0 else (0, 2)
        for i in range(0, flat.shape[0], per):
            part = flat[i:i + per]
            m = np.maximum(part.max(axis=red), -part.min(axis=red))
            if axis == 0:
                top[i:i + per] = m
            else:
                np.maximum(top, m, out=top)
    if not np.isfinite(top).all():
        return None
    return np.frexp(top)[1].astype(np.int64)


def _overflowed(a: Array, shift: int, terms: int) -> bool:
    """Whether the FFT's result ``a``, scaled back by at most 2**shift, holds
    a value that overflowed: each of its values sums ``terms`` products of
    values below 1 (scaled), so it is looked at only where 2 x terms x
    2**shift could reach the dtype's largest number."""
    if shift + terms.bit_length() + 1 < np.finfo(a.dtype).maxexp:
        return False
    return not _all_finite(a)


def _fft_own(own: Any) -> tuple[Any, Shape, int]:
    """A plan's FFT geometry, dilation and the threads to run it on now."""
    g, dilation, macs = own
    return g, dilation, _threads.plan(g.images * g.tiles[0] * g.tiles[1], macs)


def _forward_fft(who: Who, shape: Shape, own: Any, x: Array, w: Array,
                 bias: Array | None) -> Array | None:
    sx, sw = _shifts(x, 0), _shifts(w, 0)
    if sx is None or sw is None:
        return None
    g, dilation, threads = _fft_own(own)
    out = _result(who, shape, x.dtype)
    _fft.correlate(x, _fft.spectra(w, g, dilation, sw), out, bias, g, x.shape[1] // w.shape[1],
                   threads, sx, sx[:, None] + sw[None, :])
    return None if _overflowed(out, int(sx.max() + sw.max()), math.prod(w.shape[1:])) else out


def _input_grad_fft(who: Who, shape: Shape, own: Any, w: Array, gout: Array) -> Array | None:
    groups = shape[1] // w.shape[1]
    k = _flipped_kernel(w, groups)
    sk, sg = _shifts(k, 0), _shifts(gout, 0)
    if sk is None or sg is None:
        return None
    g, dilation, threads = _fft_own(own)
    dx = _result(who, shape, w.dtype)
    _fft.correlate(gout, _fft.spectra(k, g, dilation, sk), dx, None, g, groups, threads, sg,
                   sg[:, None] + sk[None, :])
    return None if _overflowed(dx, int(sk.max() + sg.max()), math.prod(k.shape[1:])) else dx


def _weight_grad_fft(who: Who, shape: Shape, own: Any, x: Array, gout: Array) -> Array | None:
    sx, sg = _shifts(x, 1), _shifts(gout, 1)
    if sx is None or sg is None:
        return None
    g, dilation, threads = _fft_own(own)
    dw = _fft.weight_grad(x, gout, shape, dilation, g, x.shape[1] // shape[1], threads, sx, sg)
    terms = gout.shape[0] * gout.shape[2] * gout.shape[3]
    return None if _overflowed(dw, int(sx.max() + sg.max()), terms) else dw


# ---- Winograd -------------------------------------------------------------------

_WINO_LANES = _core.winograd_lanes()
# A block of tiles whose V and M take about this much: on four layers (32 to
# 256 channels, float32, one thread), 512 KiB and 1 MiB were within the
# noise of each other, 2 MiB and 4 MiB up to 1.35x slower, 256 KiB slower
# on 32 channels.  The cost model below was fitted with 1 MiB.
_WINO_BLOCK_BYTES = 1 << 20
# Where the tiles are few, at least this many items a CPU (the threads take
# them one at a time: with one each, a thread that falls behind holds the
# call); and where one image's tiles make fewer blocks of that size, its
# threads share the filters instead (_winograd_parts_block).
_WINO_ITEMS_PER_CPU = 2

# Winograd's cost in nanoseconds, float32, 2 threads, fitted (non-negative
# least squares on relative error) to whole calls by `benchmarks/fft_costs.py
# --method winograd --fit`: per value of the input and output transforms (36
# per tile and channel), per multiply-add of the 36 products (36 per tile,
# input and output channel of a group), per product row (the same / the
# rows: short products waste their micro-tiles), per value of the
# transformed kernel (transformed into its packed form once per call) and
# per value of it read by each block of tiles (_winograd_terms); by
# _tuning().  'default': on an Intel Xeon with AVX-512 and AMX (cpuid family
# 6, model 207), fft_costs.py's 50 layers x 2 passes, after the kernel
# transform took two channels a vector at x86-64-v4; the model's median
# error 12%.  With them 'auto' was within 5% of the faster on 118 of the
# fitted layers' 124 passes (geomean 1.005), against 111 (1.022) with those
# fitted before on a Xeon of cpuid model 167, (0.243, 0, 0.0851, 1.29,
# 0.145) and per multiply-add 0.0104 (3x3) and 0.009 (5x5); on 85 float32
# passes of choices.py's sets grouped, one-image, valid-ig, rows-ig and
# mixed, not fitted on, 69-71 (geomean 1.044-1.047) against 67-70
# (1.044-1.050).  (Older constants still, fitted on 32 layers before the
# kernel transform was vectorised, took Winograd to cost 1.2-1.6x what the
# model 167 measured.)  'zen5':
# on an AMD EPYC (Zen 5), 50 layers (the 32 first and 18 more: grouped, 8
# to 48 channels a group; one or two images of 96 to 256 channels; 6x6 to
# 14x14 images) x 2 passes, after Winograd's kernel transform was
# vectorised; the model's median error 13%.  'zen4': on an AMD EPYC (Zen 4,
# cpuid family 25 with AVX-512), the same 50 layers x 2 passes; the model's
# median error 14%.
_NS_WINO = {"default": (0.217, 0.00338, 0.0343, 0.844, 0.016),
            "zen5": (0.219, 0.00291, 0.0827, 1.15, 0.00493),
            "zen4": (0.372, 0.0037, 0.166, 2.28, 0.154)}
# What the direct kernels and the GEMM take on such layers, float32, 2
# threads, per multiply-add, the median over the same layers: 'default'
# 0.0053-0.043, median 0.0074 (on the model 167: 0.0057-0.035, median
# 0.0104; by the algorithm there, the channels kernel 0.0076, the GEMM
# 0.0087-0.0091, the direct kernel 0.0129; taken apart, those medians had
# 'auto' within 5% on 82 of the 100 passes, as the Winograd model's errors
# follow them); 'zen5' 0.0052-0.037, median 0.0113, with which 'auto' was
# within 5% of the faster of Winograd and the rest on 89 of 100 float32
# passes on the Zen 5.  'zen4' 0.0118-0.060, median
# 0.0191 (its 512-bit multiply-adds run as two halves: per cycle, half a
# Zen 5's).  There 'auto' was within 5% of the faster on 113-117 of the
# fitted layers' 124 passes with these and 112-117 with the default's; on
# 130 float32 passes of choices.py's sets, not fitted on, 76-91 (geomean
# 1.031-1.054) against 71-86 (1.036-1.057), three runs of each.
_NS_PER_MAC_3X3 = {"default": 0.0074, "zen5": 0.0113, "zen4": 0.0191}
# The same for 5x5 kernels, which run F(2x2, 5x5) (_NS_WINO's terms count
# its 36-value tiles just as well: its model time was 0.89-1.15x the time
# measured on 11 of 12 float32 layers of 16 to 256 channels on the Zen 5,
# 1.94x on one of 8 channels, which it leaves): 'zen5' the median over 24
# passes of those layers of what the channels kernel, the rows kernel and
# the GEMM take per multiply-add (0.0065-0.025); 'default' the same on the
# Xeon of model 207, 24 passes of 12 layers of 6 to 256 channels
# (0.0049-0.0109; 0.0056-0.020, median 0.009, on the model 167); 'zen4'
# the same over fft_costs.py's 12 5x5 layers (6 to 256 channels), 24
# passes (0.0119-0.041).
_NS_PER_MAC_5X5 = {"default": 0.0060, "zen5": 0.0081, "zen4": 0.0189}
# A dilated call's phase images (winograd_split, winograd_merge) are cut for
# about this many bytes of input and output at a time, one image at least,
# so that they do not grow with the batch; and what cutting out or putting
# back a value costs, in nanoseconds (float32, 2 threads: see
# docs/design.md, "The Winograd algorithm").
_WINO_SPLIT_BYTES = 16 << 20
_NS_WINO_SPLIT = 0.4
# The input transform reads a tile's rows 8 values at a time where the image
# (or phase image) it reads is at least 8 wide, else value by value, which
# costs this much more per value it transforms, in nanoseconds: measured on
# the Zen 5, float32, 2 threads, 5 layers (32 to 256 channels, 5x5 to 7x7
# images padded by 2 against the same tiles from 8x8 images padded by 1):
# 0.50-0.77.  (The input gradient of an unpadded 3x3 layer on an 8x8 image
# reads a 6x6 output gradient: 1.4x the GEMM's time, against 0.75x at 10x10.)
_NS_WINO_NARROW = 0.55


def _winograd_terms(groups: int, cin: int, cout: int, tiles: int,
                    tb: int) -> tuple[int, int, int, int, int]:
    """What _NS_WINO's five constants multiply: the transforms' values, the
    products' multiply-adds and rows, the transformed kernel's values and
    their reads by the blocks of tiles."""
    ig, og = cin // groups, cout // groups
    weights = 36 * groups * ig * og
    return (36 * tiles * (cin + cout), 36 * tiles * groups * ig * og, 36 * tiles * groups * ig,
            weights, weights * -(-tiles // tb))


def _winograd_pays(c: Call, cin: int, cout: int, tiles: int, tb: int, copied: int,
                   narrow: int) -> bool:
    """float32 only: in float64 'auto' keeps the direct sums, whose error
    bound is an element's own terms (docs/design.md, "Accuracy"); forced, the
    method runs in both.  And only where the direct kernels are vectorised
    (USE_DIRECT: AVX2), as Winograd's transforms are.  ``copied``: the
    values a dilated call cuts into phase images and puts back; ``narrow``:
    the input transform's values where the rows it reads are narrower than
    a vector (_NS_WINO_NARROW).  A 5x5 kernel (F(2x2, 5x5)) is weighed
    against _NS_PER_MAC_5X5."""
    if not USE_DIRECT or c.dtype.itemsize != 4:
        return False
    terms = _winograd_terms(c.groups, cin, cout, tiles, tb)
    cost = (sum(t * k for t, k in zip(terms, _per_core(_NS_WINO))) + _NS_WINO_SPLIT * copied
            + _NS_WINO_NARROW * narrow)
    return cost < c.macs * _per_core(_NS_PER_MAC_5X5 if c.w[2] == 5 else _NS_PER_MAC_3X3)


def _winograd_sides(c: Call, pass_: str) -> Any:
    """(channels in, channels out, output height, width, pads top, left) of
    the correlation Winograd computes for ``pass_``: the input gradient is the
    forward sum over the output gradient, the kernel turned and its channel
    axes exchanged, padded by (R - 1) d - p at dilation d for an R x R kernel
    (a negative pad crops)."""
    if pass_ == "input grad":
        r = c.w[2] - 1
        return (c.w[0], c.x[1], c.x[2], c.x[3], r * c.dilation[0] - c.pads[0],
                r * c.dilation[1] - c.pads[2])
    return c.x[1], c.w[0], c.out[2], c.out[3], c.pads[0], c.pads[2]


# A block's fewest and most tiles (_winograd_block).
_WINO_MIN_TILES = 48
_WINO_MAX_TILES = 768


def _winograd_cap(cin: int, cout: int, itemsize: int) -> int:
    """The most tiles of a block whose V and M (36 x (cin + cout) values a
    tile, and a cache line per matrix between matrices: cvx_wino_stride)
    stay within about _WINO_BLOCK_BYTES, in whole rows of _WINO_LANES, but
    _WINO_MIN_TILES at least and _WINO_MAX_TILES at most."""
    fit = (_WINO_BLOCK_BYTES - 72 * 64) // (36 * (cin + cout) * itemsize)
    return max(_WINO_MIN_TILES, min(fit // _WINO_LANES * _WINO_LANES, _WINO_MAX_TILES))


def _winograd_block(cin: int, cout: int, tiles: int, itemsize: int) -> int:
    """Tiles per item, the items as equal as they can be: as few as keep
    each one within :func:`_winograd_cap`, and at least _WINO_ITEMS_PER_CPU
    per CPU when the batch has few tiles (at least _WINO_LANES each)."""
    items = max(-(-tiles // _winograd_cap(cin, cout, itemsize)),
                min(_WINO_ITEMS_PER_CPU * _threads._MAX_THREADS, -(-tiles // _WINO_LANES)))
    return -(-tiles // items)


# The fewest micro-panels of filters (CVX_MR each) of a part, where the
# threads share one image's filters (_winograd_parts_block).
_WINO_PART_PANELS = 4


def _winograd_parts_block(c: Call, cin: int, cout: int, tiles: int) -> int:
    """Tiles per item where the threads share the filters of one image
    (conv_winograd's ``parts``), or 0 where they share its tiles.  Where
    :func:`_winograd_block` cut the tiles into smaller blocks than its cap
    to give every CPU items, each of those blocks multiplied the whole
    transformed kernel, which both threads had written (a 128 -> 128 3x3
    layer's is 2.4 MB in float32); with the filters cut instead, thread t
    transforms its part of the kernel and multiplies only that, at the cost
    of transforming every tile's input on every thread.  One image of one
    group and _WINO_PART_PANELS micro-panels of filters or more for each
    CPU, not on phase images (dilated).  Measured, 2 threads, float32,
    interleaved, conv_winograd's time with parts over without, on an
    Intel Xeon (AVX-512): 0.52-0.88 on 7 one-image layers of 64 to 512
    channels of 4 to 49 tiles (7x7 to 28x28); 1.03 and 1.13 on 196 and
    784 tiles (64 channels at 56x56 and 32 at 112x112), which this leaves
    to the tiles."""
    cap = _winograd_cap(cin, cout, c.dtype.itemsize)
    blocks, cpus = -(-tiles // cap), _threads._MAX_THREADS
    if (c.x[0] != 1 or c.groups != 1 or c.dilation != (1, 1) or cpus < 2
            or blocks >= _WINO_ITEMS_PER_CPU * cpus
            or -(-cout // _MR) < _WINO_PART_PANELS * cpus):
        return 0
    return -(-tiles // blocks)


def _winograd_plan(pass_: str, shape: Callable[[Call], Shape]) -> PlanFn:
    """Winograd's F(4x4, 3x3) for a 3x3 kernel and F(2x2, 5x5) for a 5x5
    one, at unit stride, the forward pass and the input gradient; with the
    plan that runs a call whose values are not all finite.  At a dilation
    (dh, dw) other than 1 the call runs on phase images (winograd_split),
    ``nb`` images at a time: the plan's ``split`` is (dh, dw, nb, phase
    height, width, phase output height, width), else None."""
    def plan(c: Call, forced: bool = False) -> Any:
        if c.w[2:] not in ((3, 3), (5, 5)) or c.stride != (1, 1):
            return None
        cin, cout, oh, ow, pt, pl = _winograd_sides(c, pass_)
        (dh, dw), n, nb, split, copied = c.dilation, c.x[0], c.x[0], None, 0
        r, step = c.w[2] - 1, 7 - c.w[2]   # the kernel's span - 1, outputs per tile side
        ohp, owp = -(-oh // dh), -(-ow // dw)
        per_image = dh * dw * -(-ohp // step) * -(-owp // step)
        if (dh, dw) != (1, 1):
            values = dh * dw * (cin * (ohp + r) * (owp + r) + cout * ohp * owp)
            nb = max(1, min(n, _WINO_SPLIT_BYTES // (values * c.dtype.itemsize)))
            split, copied = (dh, dw, nb, ohp + r, owp + r, ohp, owp), n * values
        tiles = nb * per_image   # one run of conv_winograd's
        tb = _winograd_block(cin, cout, tiles, c.dtype.itemsize)
        parts_tb = _winograd_parts_block(c, cin, cout, tiles)
        # the width of what the input transform reads: the phase images', the
        # input's, or the output gradient's
        width = owp + r if split else c.out[3] if pass_ == "input grad" else c.x[3]
        narrow = 36 * n * per_image * cin if width < 8 else 0
        if not forced and not _winograd_pays(c, cin, cout, n * per_image, parts_tb or tb, copied,
                                             narrow):
            return None
        fallback = _exact_plan(pass_, c, shape(c))
        # (the items the threads can share: with parts, each block of tiles
        # once per CPU)
        items = -(-tiles // parts_tb) * _threads._MAX_THREADS if parts_tb else -(-tiles // tb)
        return (tb, pt, pl, c.groups, items, c.macs * nb // n, pass_ == "input grad", split,
                parts_tb), fallback
    return plan


def _winograd_compute(who: Who, shape: Shape, own: Any, src: Array, w: Array,
                      bias: Array | None) -> Array | None:
    """The forward pass (src the input), or with the plan's ``flip`` the
    input gradient (src the output gradient, no bias); None where src or w
    holds a value that is not finite (the kernel finds it as it transforms
    them: in NumPy, a look at the weights took 3% of a one-image call),
    where a value of the output's transform is not finite (the kernel finds
    it too: finite products can overflow where the direct sums do not), or
    where the kernel's transform could underflow (the kernel finds that as
    it transforms the weights: a (filter, channel) kernel below 2**12 times
    the dtype's smallest normal number; in NumPy, a pass over the weights
    took 4-12% of a one-image call's time).  A dilated call runs on the
    phase images of ``nb`` images at a time."""
    tb, pt, pl, groups, items, macs, flip, split, parts_tb = own
    out = _result(who, shape, src.dtype)
    cin, cout = src.shape[1], shape[1]
    threads = _threads.plan(items, macs)
    # the threads share the filters of one image where the plan has them do
    # so (_winograd_parts_block), whatever their number now: the same bits
    parts = threads if parts_tb and threads > 1 else 1
    if parts > 1:
        tb = parts_tb
    shared, per = _core.winograd_scratch(cin, cout, groups, tb, src.dtype.itemsize)
    work = _scratch(who, per, src.dtype, threads, shared)
    found = np.zeros(1, np.intc)
    if split is None:
        _call(_core.conv_winograd, macs, src, w, bias, out, work, found, pt, pl, groups, flip,
              tb, False, threads, parts, fresh=out, scratch=work)
        return None if found[0] else out
    dh, dw, nb, hp, wp, ohp, owp = split
    sizes = (nb * dh * dw * cin * hp * wp, nb * dh * dw * cout * ohp * owp)
    phases = _scratch(who, 0, src.dtype, 1, sum(sizes))
    xs = phases[:sizes[0]].reshape(nb * dh * dw, cin, hp, wp)
    ys = phases[sizes[0]:].reshape(nb * dh * dw, cout, ohp, owp)
    for n0 in range(0, src.shape[0], nb):
        k = min(nb, src.shape[0] - n0) * dh * dw
        _core.winograd_split(src, xs[:k], n0, dh, dw, pt, pl, threads)
        _call(_core.conv_winograd, macs, xs[:k], w, bias, ys[:k], work, found, 0, 0, groups,
              flip, tb, n0 > 0, threads, 1, fresh=ys[:k], scratch=work)
        if found[0]:
            return None
        _core.winograd_merge(ys[:k], out, n0, dh, dw, threads)
    return out


def _input_grad_winograd(who: Who, shape: Shape, own: Any, w: Array, gout: Array) -> Array | None:
    return _winograd_compute(who, shape, own, gout, w, None)


def _weight_grad_winograd(c: Call, forced: bool = False) -> None:
    """The weight gradient has no Winograd form here: its entry is in the
    table so that method='winograd' is refused there naming what it needs."""


def _never_run(who: Who, shape: Shape, args: Any, *arrays: Array) -> NoReturn:
    """The run of an entry whose plan never applies (_weight_grad_winograd's)."""
    raise AssertionError(f"{who[0]}(): the engine ran an algorithm it cannot plan")


# ---- the table --------------------------------------------------------------

# For each pass, its algorithms in the order the engine tries them: the
# degenerate sizes first, then the FFT where its cost model says it beats
# what the rest of the table would choose, then Winograd where its model says
# it beats the direct kernels and the GEMM, then the direct kernels where
# theirs says they pay (_direct_pays), then the GEMM (small calls on the
# stack).  The first whose plan applies runs the call.
_DIRECT_NEEDS = "stride 1 along the width"
# (the forward pass's and the weight gradient's direct kernels run at any stride)
_BORDER_NEEDS = ("a padding and dilation that leave the padded image at most 4 times the "
                 "input's size, and the rows of an item at most 2**24 values")
_FFT_NEEDS = "a kernel that spans more than one position along an axis"
_WINO_NEEDS = "a 3x3 or 5x5 kernel at stride 1, in the forward pass or the input gradient"
ALGORITHMS = {
    "forward": (
        Algorithm("empty", None, _forward_empty, _forward_empty_run),
        Algorithm("zero", None, _forward_zero, _forward_zero_run),
        Algorithm("fft", "fft", _fft_plan("forward", lambda c: c.out),
                  _finite_run(_forward_fft, ()), _FFT_NEEDS),
        Algorithm("winograd", "winograd", _winograd_plan("forward", lambda c: c.out),
                  _finite_run(_winograd_compute, ()), _WINO_NEEDS),
        Algorithm("rows", "direct", _forward_rows, _forward_rows_run,
                  _BORDER_NEEDS),   # (where it does not apply, depthwise and the others may)
        Algorithm("depthwise", "direct", _forward_depthwise, _forward_depthwise_run,
                  _BORDER_NEEDS),
        Algorithm("channels", "direct", _forward_channels, _forward_channels_run,
                  _BORDER_NEEDS),
        Algorithm("direct", "direct", _forward_direct, _forward_direct_run, _DIRECT_NEEDS),
        Algorithm("gemm-small", "gemm", _forward_small, _forward_small_run),
        Algorithm("gemm", "gemm", _forward_gemm, _forward_gemm_run),
    ),
    "input grad": (
        Algorithm("zero", None, _input_grad_zero, _empty_result),
        Algorithm("fft", "fft", _fft_plan("input grad", lambda c: c.x),
                  _finite_run(_input_grad_fft, ()), _FFT_NEEDS),
        Algorithm("winograd", "winograd", _winograd_plan("input grad", lambda c: c.x),
                  _finite_run(_input_grad_winograd, ()), _WINO_NEEDS),
        Algorithm("rows", "direct", _input_grad_rows, _input_grad_rows_run,
                  "stride 1 along both axes"),
        Algorithm("depthwise", "direct", _input_grad_depthwise, _input_grad_depthwise_run,
                  "stride 1 along both axes"),
        Algorithm("channels", "direct", _input_grad_channels, _input_grad_channels_run,
                  "stride 1 along both axes"),
        Algorithm("direct", "direct", _input_grad_direct, _input_grad_direct_run,
                  "stride 1 along both axes"),
        Algorithm("gemm-small", "gemm", _input_grad_small, _input_grad_small_run),
        Algorithm("gemm", "gemm", _input_grad_gemm, _input_grad_gemm_run),
    ),
    "weight grad": (
        Algorithm("zero", None, _weight_grad_zero, _empty_result),
        Algorithm("fft", "fft", _fft_plan("weight grad", lambda c: c.w),
                  _finite_run(_weight_grad_fft, ()), _FFT_NEEDS),
        Algorithm("winograd", "winograd", _weight_grad_winograd, _never_run, _WINO_NEEDS),
        Algorithm("depthwise", "direct", _weight_grad_depthwise, _weight_grad_depthwise_run,
                  _BORDER_NEEDS),
        Algorithm("channels", "direct", _weight_grad_channels, _weight_grad_channels_run,
                  _BORDER_NEEDS),
        Algorithm("direct", "direct", _weight_grad_direct, _weight_grad_direct_run,
                  _DIRECT_NEEDS),
        Algorithm("gemm-small", "gemm", _weight_grad_small, _weight_grad_small_run),
        Algorithm("gemm", "gemm", _weight_grad_gemm, _weight_grad_gemm_run),
    ),
}


# ---- the passes -------------------------------------------------------------

def forward_plan(func: str, x_shape: Shape, w_shape: Shape, stride: Shape, pads: Shape,
                 dilation: Shape, groups: int, out_hw: tuple[int, ...] | None = None,
                 kernel_arg: str = "param", method: str = "auto",
                 dtype: DTypeLike = np.float64) -> Plan:
    """How to run conv(x, w): ``(who, algorithm, out_shape, args)``, ``who``
    naming the function and its kernel argument for messages.

    ``out_hw``: (OH, OW) when the caller has checked the geometry already
    (else :func:`sizes` checks it, naming the notebook's arguments).
    """
    n, _, h, wd = x_shape
    oh, ow = out_hw or sizes(func, "param", (h, wd), w_shape, stride, pads, dilation, "inp")
    out_shape = (n, w_shape[0], oh, ow)
    check_result_size(func, out_shape)
    call = Call(func, kernel_arg, x_shape, w_shape, out_shape, stride, pads, dilation, groups,
                np.dtype(dtype))
    return _select(ALGORITHMS["forward"], call, out_shape, method)


def forward_run(plan: Plan, x: Array, w: Array, bias: Array | None) -> Array:
    """conv(x, w) + bias by a :func:`forward_plan` made for these shapes."""
    who, algorithm, shape, args = plan
    return algorithm.run(who, shape, args, x, w, bias)


def input_grad_run(plan: Plan, w: Array, gout: Array) -> Array:
    """The gradient of sum(conv(x, w) * gout) with respect to x, by an
    :func:`input_grad_plan` made for these shapes."""
    who, algorithm, shape, args = plan
    return algorithm.run(who, shape, args, w, gout)


def weight_grad_run(plan: Plan, x: Array, gout: Array) -> Array:
    """The gradient of sum(conv(x, w) * gout) with respect to w, by a
    :func:`weight_grad_plan` made for these shapes."""
    who, algorithm, shape, args = plan
    return algorithm.run(who, shape, args, x, gout)


def _grad_plan(pass_: str, func: str, x_shape: Shape, w_shape: Shape, gout_shape: Shape,
               stride: Shape, pads: Shape, dilation: Shape, groups: int, kernel_arg: str,
               shape: Shape, method: str, dtype: DTypeLike) -> Plan:
    check_result_size(func, shape)
    call = Call(func, kernel_arg, x_shape, w_shape, gout_shape, stride, pads, dilation, groups,
                np.dtype(dtype))
    return _select(ALGORITHMS[pass_], call, shape, method)


def input_grad_plan(func: str, input_shape: Shape, w_shape: Shape, gout_shape: Shape, stride: Shape,
                    pads: Shape, dilation: Shape, groups: int, kernel_arg: str = "param",
                    method: str = "auto", dtype: DTypeLike = np.float64) -> Plan:
    """How to run the input gradient: ``(who, algorithm, input_shape, args)``."""
    return _grad_plan("input grad", func, input_shape, w_shape, gout_shape, stride, pads,
                      dilation, groups, kernel_arg, input_shape, method, dtype)


def weight_grad_plan(func: str, x_shape: Shape, weight_shape: Shape, gout_shape: Shape,
                     stride: Shape, pads: Shape, dilation: Shape, groups: int,
                     kernel_arg: str = "param", method: str = "auto",
                     dtype: DTypeLike = np.float64) -> Plan:
    """How to run the weight gradient: ``(who, algorithm, weight_shape, args)``."""
    return _grad_plan("weight grad", func, x_shape, weight_shape, gout_shape, stride, pads,
                      dilation, groups, kernel_arg, weight_shape, method, dtype)


# The bias gradient sums the output gradient's values over images and
# positions.  Each item sums a chunk of one (image, channel) row; a sum runs
# at the speed of memory, so threads pay from far fewer values than
# multiply-adds (_threads._PARALLEL_MIN_MACS).  Measured, one thread's time
# over two's for a float32 (8, 16, P) gradient: 0.95 at 2**14 values, 0.85
# at 2**16, 0.67 at 2**17, 0.5-0.67 from 2**19.
_SUM_CHUNK = 1 << 15
_SUM_PARALLEL_MIN = 1 << 16


def bias_grad(func: str, gout: Array) -> Array:
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


def pad(x: Array, pads: Shape) -> Array:
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
