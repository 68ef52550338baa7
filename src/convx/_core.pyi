"""Type stub for convx._core, the compiled kernels (_core.pyx and the .pxi it includes).

The kernels do no checking: arrays must be C-contiguous, of the dtype the
call is made in, and shaped as the comments in the .pyx say; the engine
(``_engine.py``) sees to that.  A memoryview argument of Cython accepts None
unless declared ``not None``: the optional ones (a missing bias, no scratch)
are typed ``| None``; the others are None only in error.

The kernels over ``floating`` (and ``pad``, over float, double and int64) are
Cython fused functions: callable as they are (Cython dispatches on the
buffers' dtype), or indexed by a type name (``conv_forward["float"]``) for one
specialisation.  ``_Fused`` says both.
"""

from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeAlias, TypeVar

import numpy as np
from numpy.typing import NDArray

_P = ParamSpec("_P")
_R = TypeVar("_R")

class _Fused(Generic[_P, _R]):
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
    def __getitem__(self, key: str, /) -> _Fused[_P, _R]: ...

def _fused(function: Callable[_P, _R], /) -> _Fused[_P, _R]: ...

# float32 or float64, one dtype for all the float arrays of a call
_Floats: TypeAlias = NDArray[np.floating[Any]]
# an optional float array: a missing bias, or no scratch (the kernel's stack)
_MaybeFloats: TypeAlias = NDArray[np.floating[Any]] | None
_Offsets: TypeAlias = NDArray[np.intp]

STACK_SCRATCH: int

# The process-level settings of _runtime.h

def openmp_enabled() -> bool: ...
def configure_threads(default: int, maximum: int, stack_size: int) -> None: ...
def set_user_threads(n: int) -> None: ...
def user_threads() -> int: ...
def get_threads() -> int: ...
def forked() -> bool: ...
def isa() -> int: ...
def set_isa(level: int) -> int: ...
def set_vector_runs(on: bool) -> bool: ...
def cpu_id() -> tuple[str, int]: ...
def channels_wide() -> bool: ...
def direct_fast() -> bool: ...
def portable() -> bool: ...
def interrupt_begin() -> bool: ...
def interrupt_end() -> None: ...
def sigint_chained() -> bool: ...
def check_signals() -> None: ...
def threads_seen() -> int: ...
def touch_pages(b: NDArray[np.uint8], nt: int, interruptible: bool) -> bool: ...

# _gemm_passes.pxi: im2col + GEMM

def forward_scratch(Fg: int, K: int, groups: int, nb: int) -> tuple[int, int]: ...
def input_grad_scratch(
    Cg: int, Fg: int, KHW: int, groups: int, cc: int, nb: int, pointwise: bool, pack: bool
) -> tuple[int, int]: ...
def weight_grad_scratch(
    F: int, Fg: int, K: int, nb: int, ipb: int, kb: int, dot: bool, pointwise: bool,
    KW: int = 1, dw: int = 1, taps: bool = False,
) -> int: ...
def gemm_blocks() -> tuple[int, int, int, int, int]: ...
@_fused
def conv_forward(
    x: _Floats, w: _Floats, bias: _MaybeFloats, out: _Floats, work: _MaybeFloats,
    sh: int, sw: int, dh: int, dw: int, pt: int, pl: int, groups: int,
    nb: int, mb: int, nt: int, interruptible: bool,
) -> bool: ...
@_fused
def conv_input_grad(
    gout: _Floats, w: _Floats, dx: _Floats, work: _MaybeFloats,
    sh: int, sw: int, dh: int, dw: int, pt: int, pl: int, groups: int,
    nb: int, cc: int, pack: bool, nt: int, interruptible: bool,
) -> bool: ...
@_fused
def conv_weight_grad(
    x: _Floats, gout: _Floats, dw: _Floats, work: _MaybeFloats,
    sh: int, sw: int, dh: int, dw_: int, pt: int, pl: int, groups: int,
    nb: int, ipb: int, kb: int, off: _Offsets | None, taps: bool, nt: int,
    interruptible: bool,
) -> bool: ...

# _direct_passes.pxi: the direct kernels

@_fused
def conv_direct(
    src: _Floats, wt: _Floats, off: _Offsets, bias: _MaybeFloats, out: _Floats,
    work: _MaybeFloats, groups: int, Hp: int, Wp: int, top: int, left: int, row_step: int,
    span_h: int, span_w: int, slack: int, rb: int, cb: int, flat: int, nt: int,
    interruptible: bool,
) -> bool: ...
@_fused
def conv_weight_grad_direct(
    x: _Floats, gout: _Floats, off: _Offsets, dw: _Floats, work: _MaybeFloats,
    groups: int, Hp: int, Wp: int, top: int, left: int, row_step: int,
    span_h: int, span_w: int, slack: int, rb: int, cb: int, nt: int, interruptible: bool,
) -> bool: ...
@_fused
def conv_weight_grad_channels(
    x: _Floats, gout: _Floats, off: _Offsets, dw: _Floats, work: _MaybeFloats,
    groups: int, Hr: int, Wp: int, top: int, left: int, sh: int, sw: int,
    span_h: int, span_w: int, FP: int, VL: int, rb: int, cb: int, nt: int,
    interruptible: bool,
) -> bool: ...
@_fused
def conv_forward_channels(
    x: _Floats, wt: _Floats, off: _Offsets, bias: _MaybeFloats, out: _Floats,
    work: _MaybeFloats, groups: int, Hr: int, Wp: int, top: int, left: int, sh: int, sw: int,
    span_h: int, span_w: int, FP: int, VL: int, rb: int, cb: int, nt: int,
    interruptible: bool,
) -> bool: ...

# _depthwise_passes.pxi: one channel per group

@_fused
def conv_depthwise(
    src: _Floats, wt: _Floats, bias: _MaybeFloats, out: _Floats, work: _MaybeFloats,
    Hp: int, Wp: int, top: int, left: int, row_step: int, span_h: int, span_w: int,
    slack: int, rb: int, cb: int, KH: int, KW: int, dh: int, dw: int, sw: int,
    qoff: _Offsets, flat: int, nt: int, interruptible: bool,
) -> bool: ...
def depthwise_scratch(Hp: int, Wp: int, sw: int, slack: int, flat: int) -> int: ...
def depthwise_weight_grad_chunks(N: int, C: int) -> int: ...
@_fused
def conv_depthwise_weight_grad(
    x: _Floats, g: _Floats, dwt: _Floats, work: _MaybeFloats,
    Hp: int, Wp: int, top: int, left: int, row_step: int, span_h: int, span_w: int,
    slack: int, KH: int, KW: int, dh: int, dw: int, chunks: int, columns: bool, fold: int,
    nt: int, interruptible: bool,
) -> bool: ...
def depthwise_weight_grad_scratch(Hp: int, Wp: int, slack: int, KH: int, KW: int, itemsize: int,
                                  columns: bool, fold: int) -> int: ...
def depthwise_weight_grad_fold(itemsize: int) -> int: ...
def depthwise_weight_grad_fold_slack(Wp: int, OW: int, KW: int, fold: int) -> int: ...
def depthwise_weight_grad_rows_width(itemsize: int) -> int: ...

# _rows_passes.pxi: vectors along the rows, rows outside the source no terms

def rows_max_width(itemsize: int) -> int: ...
def rows_scratch(Cg: int, Hs: int, Wp: int) -> int: ...
@_fused
def conv_rows(
    src: _Floats, wt: _Floats, bias: _MaybeFloats, out: _Floats, work: _MaybeFloats,
    K: int, top: int, left: int, groups: int, chunks: int, nt: int, interruptible: bool,
) -> bool: ...

# _sum_passes.pxi: the bias gradient

@_fused
def bias_grad(
    g: _Floats, partial: NDArray[np.float64], out: NDArray[np.float64],
    chunk: int, nt: int, interruptible: bool,
) -> bool: ...

# _fft_passes.pxi: products of spectra

@_fused
def fft_mix(x: _Floats, w: _Floats, y: _Floats, groups: int, nt: int) -> None: ...
@_fused
def fft_mix_grad(g: _Floats, x: _Floats, acc: _Floats, groups: int, nt: int) -> None: ...

# _winograd_passes.pxi: F(4x4, 3x3)

def winograd_scratch(C: int, Co: int, groups: int, tb: int, itemsize: int) -> tuple[int, int]: ...
def winograd_lanes() -> int: ...
@_fused
def conv_winograd(
    x: _Floats, w: _Floats, bias: _MaybeFloats, out: _Floats, work: _MaybeFloats,
    found: NDArray[np.intc], pt: int, pl: int, groups: int, flip: bool, tb: int,
    transformed: bool, nt: int, parts: int, interruptible: bool,
) -> bool: ...
@_fused
def winograd_split(
    x: _Floats, xs: _Floats, n0: int, dh: int, dw: int, pt: int, pl: int, nt: int
) -> None: ...
@_fused
def winograd_merge(ys: _Floats, out: _Floats, n0: int, dh: int, dw: int, nt: int) -> None: ...

# Padding, for the notebook names

@_fused
def pad(
    x: NDArray[np.float32 | np.float64 | np.int64],
    out: NDArray[np.float32 | np.float64 | np.int64],
    pt: int,
    pl: int,
) -> None: ...
