"""convx on dask arrays: the public API's six convolutions, lazily, chunk by chunk.

``convx.dask.conv2d(x, w)`` takes the arguments of :func:`convx.conv2d`
(dask arrays, or NumPy arrays, which are wrapped as one chunk) and returns a
lazy dask array: one task per output chunk, each a call of convx's engine on
NumPy blocks.  The same for ``conv1d``, ``conv1d_input_grad``,
``conv2d_input_grad``, ``conv1d_weight_grad`` and ``conv2d_weight_grad``.

Bad arguments raise, at graph-building time, the error the NumPy API raises
for the same call: this module checks them by running the NumPy face's own
planning (``_api._forward_plan`` / ``_api._grad_plan``) on zero-memory
stand-ins of the arrays' shapes and dtypes.  Nothing here computes a
convolution: every task asks the engine (``_engine``), which the NumPy API
calls too.

How the chunks map
------------------
Internally the arrays are 4-D, (N, C, H, W), as the engine's; a 1-D array
gets a unit H axis.  Per spatial axis, write L for the input's length, lo and
hi for its padding, k, d and s for the kernel size, dilation and stride,
span = d(k - 1) + 1 and O = (L + lo + hi - span) // s + 1 the output length.
Output position o reads input rows [o*s - lo, o*s - lo + span).

* **Channels** are merged: the input's (and ``grad_output``'s) channel axis
  is rechunked to one chunk, the weight and bias to a single chunk.
* **Batch**: block j of the result comes from batch block j (the weight
  gradient first brings input and ``grad_output`` to common batch chunks).
* **Forward**, spatial axes: an interior boundary b of the input's chunks
  becomes the output boundary clamp(ceil((b + lo) / s), 0, O), duplicates
  dropped, so that each output chunk starts where its first window starts in
  an input chunk: the chunks line up with the stride.  Output block
  [oa, ob) reads input rows [oa*s - lo, (ob - 1)*s - lo + span) (its halo),
  gathered from every input chunk they meet (a halo may span several chunks)
  and zero-filled outside [0, L); the engine runs on that region without
  padding.
* **Input gradient**: ``grad_output``'s interior boundary o becomes the input
  gradient's boundary clamp(o*s - lo, 0, L), duplicates dropped.  The
  outputs whose windows meet dx block [ra, rb) are oa = max(0, ceil((ra + lo
  - d(k - 1)) / s)) to ob = min(O - 1, floor((rb - 1 + lo) / s)); if there
  are none the block is zeros.  Otherwise the engine computes the input
  gradient of the region [oa*s - lo, ob*s - lo + span) without padding from
  ``grad_output``'s rows [oa, ob], and the block is cut out of it (the
  region's rows outside [0, L) are dropped: they were padding; the block's
  rows outside the region are zero).
* **Weight gradient**: each block of ``grad_output`` (batch, rows, columns)
  gives a partial (C_out, C_in // groups, kH, kW) from the input region its
  windows read (as the forward pass's halo); the partials are summed by a
  tree reduction.
* An axis whose result is one block (an unsplit axis) is instead run with
  its whole length and the call's own padding; when no spatial axis is
  split each block is exactly the NumPy API's call on that block, so batch
  and channel chunkings give the NumPy call's bits for the forward pass and
  the input gradient (pass a fixed ``method``: with 'auto' the engine may
  pick another algorithm for a smaller batch; and not 'fft', which
  transforms several images at once and rounds differently for another
  number: it agrees within its error bound).

``method`` is passed to every block; since a split axis runs without
padding, a method applies to a block when it applies to the whole call.

Threads
-------
A scheduler runs one task per core, so each task runs convx on one thread
by default (under ``_threads.limited``: the global ``set_num_threads`` is
never changed).  The dask config key ``convx.threads-per-task`` (an int from
1 to the CPUs; read when the graph is built) gives each task more, for a
worker that runs fewer tasks than it has cores::

    with dask.config.set({"convx.threads-per-task": 2}):
        y = convx.dask.conv2d(x, w)

:func:`threads_used` tells how many threads convx used in this process's
tasks (on a cluster: ``client.run(convx.dask.threads_used)``).
"""
from __future__ import annotations

import bisect
import collections
import itertools
import math
import threading
from typing import TYPE_CHECKING, Any, overload

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import _api, _engine, _threads
from . import _validate as v

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from dask.typing import Key
    from numpy.typing import DTypeLike

    from ._typing import Array, Geometry, Method, Padding, Shape

    # what the functions take: a dask array, or an ndarray (one chunk)
    ArrayOrDask = da.Array | Array
    # (chunk, first, last, at): rows [first, last) of a chunk go to row ``at``
    _Piece = tuple[int, int, int, int]

__all__ = [
    "conv1d",
    "conv1d_input_grad",
    "conv1d_weight_grad",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "reset_threads_used",
    "threads_used",
]

_CONFIG_KEY = "convx.threads-per-task"

# Fan-in of the weight gradient's tree of sums.
_SPLIT_EVERY = 8


# --------------------------------------------------------------------------
# What convx used in this process's tasks
# --------------------------------------------------------------------------

_USED: collections.Counter[int] = collections.Counter()
# re-entrant: a signal handler or a finalizer that runs while this thread
# holds it (in _note, or threads_used's copy) may read or reset the record
_USED_LOCK = threading.RLock()


def threads_used() -> dict[int, int]:
    """{thread count: block calls} for the convx.dask tasks run in this
    process since it started (or since :func:`reset_threads_used`): the
    count convx's own planner chose for each block (1 where it ran the block
    on the calling thread alone)."""
    with _USED_LOCK:
        return dict(_USED)


def reset_threads_used() -> None:
    """Empty the record :func:`threads_used` reads."""
    with _USED_LOCK:
        _USED.clear()


def _note(record: _threads._Limit) -> None:
    with _USED_LOCK:
        _USED[max(1, record.most)] += 1


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------

def _as_dask(func: str, name: str, a: object, layout: str) -> da.Array:
    """``a`` as a dask array of NumPy chunks: a dask array as it is, an
    ndarray as one chunk; anything else is refused naming the argument."""
    if isinstance(a, da.Array):
        meta = a._meta
        if isinstance(meta, np.ma.MaskedArray):
            v.plain(func, name, meta, layout)   # its message: the mask would be ignored
        if not isinstance(meta, np.ndarray):
            raise v.ConvxTypeError(
                f"{func}(): argument '{name}' must be a dask array of numpy.ndarray chunks, "
                f"got chunks of type {type(meta).__module__}.{type(meta).__qualname__}")
        return a
    if isinstance(a, np.ndarray):
        v.plain(func, name, a, layout)          # refuses a masked array
        return da.from_array(a, chunks=-1)
    hint = "; convert it with dask.array.asarray() first" if v._duck_hint(a) else ""
    raise v.ConvxTypeError(
        f"{func}(): argument '{name}' must be a dask.array.Array or a numpy.ndarray of shape "
        f"{layout}, got {v._describe(a)}{hint}")


def _known(func: str, name: str, a: da.Array) -> da.Array:
    """Refuse unknown (NaN) chunk sizes: the halos and the result's chunks
    follow from them."""
    for axis, sizes in enumerate(a.chunks):
        if any(math.isnan(s) for s in sizes):
            raise v.ConvxValueError(
                f"{func}(): argument '{name}' has unknown (NaN) chunk sizes along axis {axis}; "
                f"convx needs them to plan the result's chunks and halos: call "
                f"{name}.compute_chunk_sizes() first")
    return a


@overload
def _stand_in(a: da.Array) -> Array: ...


@overload
def _stand_in(a: None) -> None: ...


def _stand_in(a: da.Array | None) -> Array | None:
    """A zero-memory ndarray of ``a``'s shape and dtype, for the NumPy face's checks."""
    return None if a is None else np.broadcast_to(np.zeros((), a.dtype), a.shape)


def _threads_per_task(func: str) -> int:
    cpus = _threads._cpus()
    t = dask.config.get(_CONFIG_KEY, 1)
    expected = f"an int from 1 to {cpus} (the CPUs this process may use)"
    if not _api._is_int(t):
        raise v.ConvxTypeError(
            f"{func}(): dask config '{_CONFIG_KEY}' must be {expected}, got {t!r}")
    if not 1 <= t <= cpus:
        raise v.ConvxValueError(
            f"{func}(): dask config '{_CONFIG_KEY}' must be {expected}, got {t!r}")
    return int(t)


def _four(a: da.Array, nsp: int) -> da.Array:
    """A 1-D layout's array (N, C, L) as (N, C, 1, L)."""
    return a[:, :, None, :] if nsp == 1 else a


# --------------------------------------------------------------------------
# Chunk arithmetic, per axis
# --------------------------------------------------------------------------

def _bounds(sizes: Sequence[int]) -> list[int]:
    """Chunk sizes as boundaries: (2, 3) -> [0, 2, 5]."""
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out


def _pieces(bounds: Sequence[int], start: int, stop: int) -> tuple[_Piece, ...]:
    """Where rows [start, stop) (possibly reaching outside the array) come
    from: ``(chunk, first, last, at)`` for each chunk they meet, its rows
    [first, last) going to row ``at`` of the region."""
    out = []
    i = max(0, bisect.bisect_right(bounds, start) - 1)   # the chunk holding ``start``
    while i < len(bounds) - 1 and bounds[i] < stop:
        a, b = max(start, bounds[i]), min(stop, bounds[i + 1])
        if a < b:
            out.append((i, a - bounds[i], b - bounds[i], a - start))
        i += 1
    return tuple(out)


class _Region:
    """One axis of a block's input region: its ``length``, the padding the
    engine adds (``lo``, ``hi``: the call's own on an unsplit axis, else 0)
    and the ``pieces`` it is gathered from (_pieces)."""
    __slots__ = ("hi", "length", "lo", "pieces")

    def __init__(self, length: int, lo: int, hi: int, pieces: tuple[_Piece, ...]) -> None:
        self.length, self.lo, self.hi, self.pieces = length, lo, hi, pieces

    def __repr__(self) -> str:
        return f"_Region({self.length}, {self.lo}, {self.hi}, {self.pieces})"


def _window(bounds: Sequence[int], start: int, stop: int) -> _Region:
    """The zero-padded region [start, stop) of an axis with chunk ``bounds``."""
    return _Region(stop - start, 0, 0, _pieces(bounds, start, stop))


def _forward_axis(bounds: Sequence[int], lo: int, hi: int, k: int, d: int, s: int,
                  out_len: int) -> tuple[list[int], list[_Region]]:
    """The output's boundaries along one axis, and each block's input _Region."""
    length, span = bounds[-1], d * (k - 1) + 1
    cuts = [0]
    for b in bounds[1:-1]:
        o = min(max(-(-(b + lo) // s), 0), out_len)
        if o > cuts[-1]:
            cuts.append(o)
    if cuts[-1] < out_len:
        cuts.append(out_len)
    if len(cuts) == 2:   # one block: the whole axis, with the call's padding
        return cuts, [_Region(length, lo, hi, _pieces(bounds, 0, length))]
    return cuts, [_window(bounds, oa * s - lo, (ob - 1) * s - lo + span)
                  for oa, ob in itertools.pairwise(cuts)]


class _Back:
    """One axis of an input-gradient block [ra, rb): ``gout``, the _Region of
    ``grad_output``'s rows it needs (None: no output's window touches the
    block, which is zeros), ``length``, the input region [oa*s - lo, ob*s -
    lo + span) the engine computes the gradient of (its padding:
    ``gout.lo``, ``gout.hi``), and where the block lies in it: the region's
    rows [``src``, ``src + n``) are the block's [``dst``, ``dst + n``)."""
    __slots__ = ("dst", "gout", "length", "n", "size", "src")

    def __init__(self, size: int, gout: _Region | None = None, length: int = 0, src: int = 0,
                 dst: int = 0, n: int = 0) -> None:
        self.size, self.gout, self.length = size, gout, length
        self.src, self.dst, self.n = src, dst, n

    def whole(self) -> bool:
        """Whether the block is the region itself."""
        return self.src == self.dst == 0 and self.n == self.size == self.length


def _input_grad_axis(gbounds: Sequence[int], length: int, lo: int, hi: int, k: int, d: int,
                     s: int) -> tuple[list[int], list[_Back]]:
    """The input gradient's boundaries along one axis, and each block's _Back."""
    out_len, span = gbounds[-1], d * (k - 1) + 1
    cuts = [0]
    for o in gbounds[1:-1]:
        r = min(max(o * s - lo, 0), length)
        if r > cuts[-1]:
            cuts.append(r)
    if cuts[-1] < length or length == 0:
        cuts.append(length)
    if len(cuts) == 2:   # one block: the whole axis, with the call's padding
        gout = _Region(out_len, lo, hi, _pieces(gbounds, 0, out_len))
        return cuts, [_Back(length, gout, length, 0, 0, length)]
    blocks = []
    for ra, rb in itertools.pairwise(cuts):
        oa = max(0, -(-(ra + lo - d * (k - 1)) // s))
        ob = min(out_len - 1, (rb - 1 + lo) // s)
        if oa > ob:
            blocks.append(_Back(rb - ra))
            continue
        r0, r1 = oa * s - lo, ob * s - lo + span
        a, b = max(ra, r0), min(rb, r1)
        gout = _Region(ob + 1 - oa, 0, 0, _pieces(gbounds, oa, ob + 1))
        blocks.append(_Back(rb - ra, gout, r1 - r0, a - r0, a - ra, max(0, b - a)))
    return cuts, blocks


def _weight_grad_axis(gbounds: Sequence[int], xbounds: Sequence[int], lo: int, hi: int, k: int,
                      d: int, s: int) -> list[tuple[int, int, int, _Region]]:
    """For each non-empty chunk of ``grad_output`` along one axis: its
    index, its rows [oa, ob) and the input _Region its windows read."""
    length, span = xbounds[-1], d * (k - 1) + 1
    if len(gbounds) == 2:   # one chunk: the whole axis, with the call's padding
        return [(0, 0, gbounds[1], _Region(length, lo, hi, _pieces(xbounds, 0, length)))]
    return [(i, oa, ob, _window(xbounds, oa * s - lo, (ob - 1) * s - lo + span))
            for i, (oa, ob) in enumerate(itertools.pairwise(gbounds)) if ob > oa]


# --------------------------------------------------------------------------
# The tasks
# --------------------------------------------------------------------------

class _Call:
    """What every block of one call shares: the engine's arguments.  An
    opaque object in the task tuples, so that dask does not look into it."""
    __slots__ = (
        "c",
        "compute",
        "dilation",
        "func",
        "groups",
        "method",
        "nsp",
        "result",
        "stride",
        "threads",
        "w4",
    )

    def __init__(self, func: str, stride: tuple[int, ...], dilation: tuple[int, ...], groups: int,
                 method: str, compute: np.dtype[Any], result: np.dtype[Any], threads: int, nsp: int,
                 w4: tuple[int, ...], c: int) -> None:
        self.func, self.stride, self.dilation, self.groups = func, stride, dilation, groups
        self.method, self.compute, self.result, self.threads = method, compute, result, threads
        self.nsp, self.w4, self.c = nsp, w4, c


class _Block:
    """One task's own part: its batch size and the _Region of each spatial
    axis it gathers from the input (forward pass, weight gradient), or, for
    the input gradient, its two _Back; ``cut[i][k]``: whether its input
    (i, k) is a halo already cut to size (_keys)."""
    __slots__ = ("back", "call", "cols", "cut", "n", "rows")

    def __init__(self, call: _Call, n: int, rows: Any, cols: Any, back: Any = None,
                 cut: tuple[tuple[bool, ...], ...] = ()) -> None:
        self.call, self.n, self.rows, self.cols, self.back = call, n, rows, cols, back
        self.cut = cut


def _gather(parts: Sequence[Sequence[Array]], cut: tuple[tuple[bool, ...], ...], n: int, c: int,
            rows: _Region, cols: _Region, dtype: DTypeLike) -> Array:
    """The region of a block from the chunks it meets (``parts[i][k]``, in
    the order of rows.pieces and cols.pieces; ``cut[i][k]``: already cut to
    the piece), zero where none reaches."""
    def piece(i: int, k: int, r0: int, r1: int, c0: int, c1: int) -> Array:
        return parts[i][k] if cut[i][k] else parts[i][k][:, :, r0:r1, c0:c1]

    if len(rows.pieces) == 1 and len(cols.pieces) == 1:
        (_, r0, r1, ra), (_, c0, c1, ca) = rows.pieces[0], cols.pieces[0]
        if ra == ca == 0 and r1 - r0 == rows.length and c1 - c0 == cols.length:
            return piece(0, 0, r0, r1, c0, c1)    # one chunk covers it: a view
    region = np.zeros((n, c, rows.length, cols.length), dtype)
    for i, (_, r0, r1, ra) in enumerate(rows.pieces):
        for k, (_, c0, c1, ca) in enumerate(cols.pieces):
            region[:, :, ra:ra + r1 - r0, ca:ca + c1 - c0] = piece(i, k, r0, r1, c0, c1)
    return region


def _pads(block: _Block) -> tuple[int, int, int, int]:
    return (block.rows.lo, block.rows.hi, block.cols.lo, block.cols.hi)


def _finish(call: _Call, out: Array) -> Array:
    """The engine's result in the result dtype, without the unit H axis of a 1-D call."""
    if call.result is not call.compute:
        out = out.astype(call.result)
    if call.nsp == 1:
        out = out.reshape(out.shape[:2] + out.shape[3:])
    return out


def _planned(make: Callable[..., Any], *args: Any) -> Any:
    """The engine's plan ``make(*args)``, kept per signature in the engine's
    cache (_engine.planned): blocks of one call mostly share their shapes,
    and planning (the FFT's cost model) costs milliseconds."""
    return _engine.planned(("convx.dask", make.__name__) + args, make, *args)


def _forward_task(parts: Sequence[Sequence[Array]], w: Array, bias: Array | None,
                  block: _Block) -> Array:
    call = block.call
    x = _gather(parts, block.cut, block.n, call.c, block.rows, block.cols, call.compute)
    pads = _pads(block)
    with _threads.limited(call.threads) as record:
        plan = _planned(_engine.forward_plan, call.func, x.shape, call.w4, call.stride, pads,
                        call.dilation, call.groups, None, "weight", call.method, call.compute)
        out = _engine.forward_run(plan, v.as_kernel_input(call.func, "input", x, call.compute),
                                  v.as_kernel_input(call.func, "weight", w, call.compute),
                                  None if bias is None else
                                  v.as_kernel_input(call.func, "bias", bias, call.compute))
    _note(record)
    return _finish(call, out)


def _input_grad_task(parts: Sequence[Sequence[Array]], w: Array, block: _Block) -> Array:
    call = block.call
    back_h, back_w = block.back
    g = _gather(parts, block.cut, block.n, call.w4[0], back_h.gout, back_w.gout, call.compute)
    shape = (block.n, call.c, back_h.length, back_w.length)
    pads = (back_h.gout.lo, back_h.gout.hi, back_w.gout.lo, back_w.gout.hi)
    with _threads.limited(call.threads) as record:
        plan = _planned(_engine.input_grad_plan, call.func, shape, call.w4, g.shape,
                        call.stride, pads, call.dilation, call.groups, "weight", call.method,
                        call.compute)
        dx = _engine.input_grad_run(plan, v.as_kernel_input(call.func, "weight", w, call.compute),
                                    v.as_kernel_input(call.func, "grad_output", g, call.compute))
    _note(record)
    if not (back_h.whole() and back_w.whole()):   # cut the block out of the region
        part = dx[:, :, back_h.src:back_h.src + back_h.n, back_w.src:back_w.src + back_w.n]
        dx = np.zeros((block.n, call.c, back_h.size, back_w.size), dx.dtype)
        dx[:, :, back_h.dst:back_h.dst + back_h.n, back_w.dst:back_w.dst + back_w.n] = part
    return _finish(call, dx)


def _zeros_task(block: _Block) -> Array:
    """An input-gradient block that no output's window touches."""
    call = block.call
    back_h, back_w = block.back
    shape = (block.n, call.c) + ((back_w.size,) if call.nsp == 1
                                 else (back_h.size, back_w.size))
    return np.zeros(shape, call.result)


def _weight_grad_task(parts: Sequence[Sequence[Array]], g: Array, block: _Block) -> Array:
    call = block.call
    x = _gather(parts, block.cut, block.n, call.c, block.rows, block.cols, call.compute)
    with _threads.limited(call.threads) as record:
        plan = _planned(_engine.weight_grad_plan, call.func, x.shape, call.w4, g.shape,
                        call.stride, _pads(block), call.dilation, call.groups, "weight_shape",
                        call.method, call.compute)
        dw = _engine.weight_grad_run(plan, v.as_kernel_input(call.func, "input", x, call.compute),
                                     v.as_kernel_input(call.func, "grad_output", g,
                                                       call.compute))
    _note(record)
    dw = dw[None]     # a partial: one slice of the stack the tree of sums adds up
    return dw.reshape(dw.shape[:3] + dw.shape[4:]) if call.nsp == 1 else dw


# --------------------------------------------------------------------------
# The graphs
# --------------------------------------------------------------------------

def _array(name: str, dsk: dict[Key, Any], dependencies: Sequence[Any],
           chunks: tuple[tuple[int, ...], ...], dtype: DTypeLike) -> da.Array:
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=dependencies)
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype))


def _own(region: _Region) -> int:
    """The piece of a _Region that comes from the chunk the block is built
    around: its largest (the first of equals)."""
    sizes = [last - first for _, first, last, _ in region.pieces]
    return sizes.index(max(sizes)) if sizes else -1


def _keys(dsk: dict[Key, Any], halos: str, name: str, j: int, rows: _Region, cols: _Region,
          bounds_h: Sequence[int],
          bounds_w: Sequence[int]) -> tuple[list[list[Key]], tuple[tuple[bool, ...], ...]]:
    """The inputs of a block gathering ``rows`` x ``cols`` from chunks (j, 0,
    r, c) of the 4-D array ``name``: a nested list of keys, and which of
    them are halos cut to size.

    The chunk the block is built around, and any chunk it reads whole, is
    taken as it is; a part of another chunk (a halo) comes from a task of
    its own that copies just that part (a key of the layer ``halos``, added
    to ``dsk``), so that the neighbour's chunk is not held in memory until
    this block runs."""
    own_r, own_c = _own(rows), _own(cols)
    keys: list[list[Key]] = []
    cut: list[tuple[bool, ...]] = []
    for i, (r, r0, r1, _) in enumerate(rows.pieces):
        row_keys: list[Key] = []
        row_cut: list[bool] = []
        whole_r = r1 - r0 == bounds_h[r + 1] - bounds_h[r]
        for k, (c, c0, c1, _) in enumerate(cols.pieces):
            key = (name, j, 0, r, c)
            whole = whole_r and c1 - c0 == bounds_w[c + 1] - bounds_w[c]
            if whole or (i == own_r and k == own_c):
                row_keys.append(key)
                row_cut.append(False)
            else:
                halo = (halos, j, r, c, r0, r1, c0, c1)
                dsk[halo] = (_cut, key, r0, r1, c0, c1)
                row_keys.append(halo)
                row_cut.append(True)
        keys.append(row_keys)
        cut.append(tuple(row_cut))
    return keys, tuple(cut)


def _cut(chunk: Array, r0: int, r1: int, c0: int, c1: int) -> Array:
    """A copy of a chunk's rows [r0, r1) and columns [c0, c1): a halo."""
    return chunk[:, :, r0:r1, c0:c1].copy()


def _forward(func: str, nsp: int, x: Any, weight: Any, bias: Any, stride: Any, padding: Any,
             dilation: Any, groups: Any, method: Any) -> da.Array:
    x_layout, w_layout = _api._LAYOUT[nsp]
    x = _known(func, "input", _as_dask(func, "input", x, x_layout))
    weight = _known(func, "weight", _as_dask(func, "weight", weight, w_layout))
    if bias is not None:
        bias = _known(func, "bias", _as_dask(func, "bias", bias, "(out_channels,)"))
    compute, result, _, _, _, plan = _api._forward_plan(
        func, nsp, _stand_in(x), _stand_in(weight), _stand_in(bias), stride, padding,
        dilation, groups, method)
    threads = _threads_per_task(func)
    st, pads, dil = _api._geometry(func, nsp, weight.shape[2:], stride, padding, dilation)
    unbatched = x.ndim == nsp + 1
    if unbatched:
        x = x[None]
    x = _four(x, nsp).rechunk({1: -1})
    w = _four(weight, nsp).rechunk(-1)
    b = None if bias is None else bias.rechunk(-1)
    _, f, oh, ow = plan[2]
    kh, kw = w.shape[2:]
    rows_cuts, rows = _forward_axis(_bounds(x.chunks[2]), pads[0], pads[1], kh, dil[0], st[0], oh)
    cols_cuts, cols = _forward_axis(_bounds(x.chunks[3]), pads[2], pads[3], kw, dil[1], st[1], ow)
    call = _Call(func, st, dil, int(groups), method, compute, result, threads, nsp, w.shape,
                 x.shape[1])
    name = f"convx-{func}-" + tokenize(x.name, x.chunks, w.name, None if b is None else b.name,
                                       st, pads, dil, int(groups), method, threads)
    w_key = (w.name, 0, 0, 0, 0)
    b_key = None if b is None else (b.name, 0)
    dsk: dict[Key, Any] = {}
    bounds_h, bounds_w = _bounds(x.chunks[2]), _bounds(x.chunks[3])
    for j, n in enumerate(x.chunks[0]):
        for a, rr in enumerate(rows):
            for c, cr in enumerate(cols):
                key = (name, j, 0, c) if nsp == 1 else (name, j, 0, a, c)
                keys, cut = _keys(dsk, name + "-halo", x.name, j, rr, cr, bounds_h, bounds_w)
                dsk[key] = (_forward_task, keys, w_key, b_key, _Block(call, n, rr, cr, cut=cut))
    cuts = (tuple(np.diff(cols_cuts).tolist()),) if nsp == 1 else \
        (tuple(np.diff(rows_cuts).tolist()), tuple(np.diff(cols_cuts).tolist()))
    out = _array(name, dsk, [x, w] + ([] if b is None else [b]),
                 (x.chunks[0], (f,)) + cuts, result)
    return out[0] if unbatched else out


def _input_grad(func: str, nsp: int, input_shape: Any, weight: Any, grad_output: Any, stride: Any,
                padding: Any, dilation: Any, groups: Any, method: Any) -> da.Array:
    _, w_layout = _api._LAYOUT[nsp]
    weight = _known(func, "weight", _as_dask(func, "weight", weight, w_layout))
    gout = _known(func, "grad_output", _as_dask(func, "grad_output", grad_output,
                                                "(batch, out_channels, *output_size)"))
    compute, result, _, _, _, _ = _api._grad_plan(
        func, nsp, "input", input_shape, _stand_in(weight), _stand_in(gout), stride, padding,
        dilation, groups, method)
    threads = _threads_per_task(func)
    shape = tuple(int(s) for s in input_shape)
    st, pads, dil = _api._geometry(func, nsp, weight.shape[2:], stride, padding, dilation)
    w = _four(weight, nsp).rechunk(-1)
    g = _four(gout, nsp).rechunk({1: -1})
    _, c, h, wd = _api._shape4(shape, nsp)
    kh, kw = w.shape[2:]
    rows_cuts, rows = _input_grad_axis(_bounds(g.chunks[2]), h, pads[0], pads[1], kh, dil[0],
                                       st[0])
    cols_cuts, cols = _input_grad_axis(_bounds(g.chunks[3]), wd, pads[2], pads[3], kw, dil[1],
                                       st[1])
    call = _Call(func, st, dil, int(groups), method, compute, result, threads, nsp, w.shape, c)
    name = f"convx-{func}-" + tokenize(shape, w.name, g.name, g.chunks, st, pads, dil,
                                       int(groups), method, threads)
    w_key = (w.name, 0, 0, 0, 0)
    dsk: dict[Key, Any] = {}
    bounds_h, bounds_w = _bounds(g.chunks[2]), _bounds(g.chunks[3])
    for j, n in enumerate(g.chunks[0]):
        for a, bh in enumerate(rows):
            for b, bw in enumerate(cols):
                key = (name, j, 0, b) if nsp == 1 else (name, j, 0, a, b)
                if bh.gout is None or bw.gout is None:
                    dsk[key] = (_zeros_task, _Block(call, n, None, None, (bh, bw)))
                    continue
                keys, cut = _keys(dsk, name + "-halo", g.name, j, bh.gout, bw.gout, bounds_h,
                                  bounds_w)
                dsk[key] = (_input_grad_task, keys, w_key,
                            _Block(call, n, None, None, (bh, bw), cut))
    cuts = (tuple(np.diff(cols_cuts).tolist()),) if nsp == 1 else \
        (tuple(np.diff(rows_cuts).tolist()), tuple(np.diff(cols_cuts).tolist()))
    return _array(name, dsk, [w, g], (g.chunks[0], (c,)) + cuts, result)


def _common(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """The common refinement of two chunkings of one axis."""
    cuts = sorted(set(_bounds(a)) | set(_bounds(b)))
    return tuple(np.diff(cuts).tolist()) or (0,)


def _weight_grad(func: str, nsp: int, input: Any, weight_shape: Any, grad_output: Any, stride: Any,
                 padding: Any, dilation: Any, groups: Any, method: Any) -> da.Array:
    x_layout, _ = _api._LAYOUT[nsp]
    x = _known(func, "input", _as_dask(func, "input", input, x_layout))
    gout = _known(func, "grad_output", _as_dask(func, "grad_output", grad_output,
                                                "(batch, out_channels, *output_size)"))
    compute, result, _, _, _, _ = _api._grad_plan(
        func, nsp, "weight", weight_shape, _stand_in(x), _stand_in(gout), stride, padding,
        dilation, groups, method)
    threads = _threads_per_task(func)
    shape = tuple(int(s) for s in weight_shape)
    st, pads, dil = _api._geometry(func, nsp, shape[2:], stride, padding, dilation)
    x4 = _four(x, nsp).rechunk({1: -1})
    g4 = _four(gout, nsp).rechunk({1: -1})
    batch = _common(x4.chunks[0], g4.chunks[0])
    x4, g4 = x4.rechunk({0: batch}), g4.rechunk({0: batch})
    w4 = _api._shape4(shape, nsp)
    kh, kw = w4[2:]
    rows = _weight_grad_axis(_bounds(g4.chunks[2]), _bounds(x4.chunks[2]), pads[0], pads[1], kh,
                             dil[0], st[0])
    cols = _weight_grad_axis(_bounds(g4.chunks[3]), _bounds(x4.chunks[3]), pads[2], pads[3], kw,
                             dil[1], st[1])
    call = _Call(func, st, dil, int(groups), method, compute, result, threads, nsp, w4,
                 x4.shape[1])
    blocks = [(j, n, rr, cr) for j, n in enumerate(batch) for rr in rows for cr in cols]
    blocks = [blk for blk in blocks if blk[1] > 0] or blocks[:1]   # an empty batch: one block
    name = f"convx-{func}-partials-" + tokenize(x4.name, x4.chunks, g4.name, g4.chunks, shape,
                                                st, pads, dil, int(groups), method, threads)
    dsk: dict[Key, Any] = {}
    bounds_h, bounds_w = _bounds(x4.chunks[2]), _bounds(x4.chunks[3])
    for p, (j, n, (ri, _, _, rr), (ci, _, _, cr)) in enumerate(blocks):
        keys, cut = _keys(dsk, name + "-halo", x4.name, j, rr, cr, bounds_h, bounds_w)
        dsk[(name, p) + (0,) * len(shape)] = (
            _weight_grad_task, keys, (g4.name, j, 0, ri, ci), _Block(call, n, rr, cr, cut=cut))
    stack = _array(name, dsk, [x4, g4], ((1,) * len(blocks),) + tuple((s,) for s in shape),
                   compute)
    total = stack[0] if len(blocks) == 1 else stack.sum(axis=0, split_every=_SPLIT_EVERY,
                                                        dtype=compute)
    return total if result is compute else total.astype(result)


# --------------------------------------------------------------------------
# The public face
# --------------------------------------------------------------------------

def conv2d(input: ArrayOrDask, weight: ArrayOrDask, bias: ArrayOrDask | None = None,
           stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1, groups: int = 1,
           method: Method = "auto") -> da.Array:
    """:func:`convx.conv2d` on dask arrays, lazily.

    Parameters
    ----------
    input : dask array or ndarray of shape (N, C_in, H, W) or (C_in, H, W)
        Any chunking: the batch maps block by block, the channels are
        merged, the spatial chunks get halos (see the module's docstring).
    weight : dask array or ndarray of shape (C_out, C_in // groups, kH, kW)
    bias : dask array or ndarray of shape (C_out,), optional
    stride, padding, dilation, groups, method
        As in :func:`convx.conv2d`; ``method`` is passed to every block.

    Returns
    -------
    dask array of shape (N, C_out, H_out, W_out), or (C_out, H_out, W_out)
        Chunked as the input along the batch, one chunk along the channels,
        and along H and W at the outputs whose windows start in each of the
        input's chunks.  Bad arguments raise :func:`convx.conv2d`'s errors
        here, before anything is computed.

    Raises
    ------
    ConvxTypeError, ConvxValueError
        When the graph is built, for every argument :func:`convx.conv2d`
        refuses (with its message); ``ConvxTypeError`` also for an array that
        is neither a dask nor a NumPy array, or a dask array whose chunks are
        not NumPy arrays, and ``ConvxValueError`` for unknown (NaN) chunk
        sizes or a bad ``convx.threads-per-task`` setting.

    Examples
    --------
    >>> import numpy as np, dask.array as da, convx.dask
    >>> x = da.from_array(np.arange(36.0).reshape(1, 1, 6, 6), chunks=(1, 1, 3, 3))
    >>> y = convx.dask.conv2d(x, np.ones((1, 1, 3, 3)), padding=1)
    >>> y.chunks
    ((1,), (1,), (4, 2), (4, 2))
    >>> bool((y.compute() == convx.conv2d(x.compute(), np.ones((1, 1, 3, 3)), padding=1)).all())
    True
    """
    return _forward("conv2d", 2, input, weight, bias, stride, padding, dilation, groups,
                    method)


def conv1d(input: ArrayOrDask, weight: ArrayOrDask, bias: ArrayOrDask | None = None,
           stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1, groups: int = 1,
           method: Method = "auto") -> da.Array:
    """:func:`convx.conv1d` on dask arrays, lazily: ``input`` (N, C_in, L)
    or (C_in, L), ``weight`` (C_out, C_in // groups, k), ``bias`` (C_out,);
    the rest as in :func:`conv2d`.

    Parameters
    ----------
    input : dask array or ndarray of shape (N, C_in, L) or (C_in, L)
        Any chunking, as for :func:`conv2d`.
    weight : dask array or ndarray of shape (C_out, C_in // groups, k)
    bias : dask array or ndarray of shape (C_out,), optional
    stride, padding, dilation, groups, method
        As in :func:`convx.conv1d`; ``method`` is passed to every block.

    Returns
    -------
    dask array of shape (N, C_out, L_out), or (C_out, L_out)
        Lazy, in :func:`convx.conv1d`'s dtype; chunked as :func:`conv2d`
        says, along L.

    Raises
    ------
    ConvxTypeError, ConvxValueError
        When the graph is built, for every argument :func:`convx.conv1d`
        refuses (with its message); ``ConvxTypeError`` also for an array that
        is neither a dask nor a NumPy array, or a dask array whose chunks are
        not NumPy arrays, and ``ConvxValueError`` for unknown (NaN) chunk
        sizes or a bad ``convx.threads-per-task`` setting.

    Examples
    --------
    >>> import numpy as np, dask.array as da, convx.dask
    >>> x = da.arange(10.0, chunks=4).reshape(1, 1, 10)
    >>> y = convx.dask.conv1d(x, np.ones((1, 1, 3)), stride=2)
    >>> y.chunks, y.compute()
    (((1,), (1,), (2, 2)), array([[[ 3.,  9., 15., 21.]]]))
    """
    return _forward("conv1d", 1, input, weight, bias, stride, padding, dilation, groups,
                    method)


def conv2d_input_grad(input_shape: Shape, weight: ArrayOrDask, grad_output: ArrayOrDask,
                      stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                      groups: int = 1, method: Method = "auto") -> da.Array:
    """:func:`convx.conv2d_input_grad` on dask arrays, lazily.

    ``grad_output`` (N, C_out, H_out, W_out) may be chunked any way; the
    result (``input_shape``) is chunked as ``grad_output`` along the batch,
    one chunk along the channels, and along H and W at ``o*s - lo`` for each
    interior boundary ``o`` of ``grad_output``'s chunks (clamped to the
    input, duplicates dropped): the boundaries the forward pass maps back.

    Parameters
    ----------
    input_shape : tuple (N, C_in, H, W)
        The shape of the forward pass's input.
    weight : dask array or ndarray of shape (C_out, C_in // groups, kH, kW)
    grad_output : dask array or ndarray of shape (N, C_out, H_out, W_out)
        Any chunking.
    stride, padding, dilation, groups, method
        As given to :func:`conv2d`.

    Returns
    -------
    dask array of shape ``input_shape``
        Lazy, in :func:`convx.conv2d_input_grad`'s dtype, chunked as above.

    Raises
    ------
    ConvxTypeError, ConvxValueError
        When the graph is built, for every argument :func:`convx.conv2d_input_grad`
        refuses (with its message); ``ConvxTypeError`` also for an array that
        is neither a dask nor a NumPy array, or a dask array whose chunks are
        not NumPy arrays, and ``ConvxValueError`` for unknown (NaN) chunk
        sizes or a bad ``convx.threads-per-task`` setting.

    Examples
    --------
    >>> import numpy as np, dask.array as da, convx.dask
    >>> g = da.ones((1, 1, 4, 4), chunks=(1, 1, 2, 2))
    >>> dx = convx.dask.conv2d_input_grad((1, 1, 4, 4), np.ones((1, 1, 3, 3)), g, padding=1)
    >>> dx.chunks
    ((1,), (1,), (1, 3), (1, 3))
    >>> dx.compute()[0, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    """
    return _input_grad("conv2d_input_grad", 2, input_shape, weight, grad_output, stride,
                       padding, dilation, groups, method)


def conv1d_input_grad(input_shape: Shape, weight: ArrayOrDask, grad_output: ArrayOrDask,
                      stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                      groups: int = 1, method: Method = "auto") -> da.Array:
    """:func:`convx.conv1d_input_grad` on dask arrays, lazily; chunked as
    :func:`conv2d_input_grad` says, along L.

    Parameters
    ----------
    input_shape : tuple (N, C_in, L)
    weight : dask array or ndarray of shape (C_out, C_in // groups, k)
    grad_output : dask array or ndarray of shape (N, C_out, L_out)
    stride, padding, dilation, groups, method
        As given to :func:`conv1d`.

    Returns
    -------
    dask array of shape ``input_shape``
        Lazy, in :func:`convx.conv1d_input_grad`'s dtype.

    Raises
    ------
    ConvxTypeError, ConvxValueError
        When the graph is built, for every argument :func:`convx.conv1d_input_grad`
        refuses (with its message); ``ConvxTypeError`` also for an array that
        is neither a dask nor a NumPy array, or a dask array whose chunks are
        not NumPy arrays, and ``ConvxValueError`` for unknown (NaN) chunk
        sizes or a bad ``convx.threads-per-task`` setting.

    Examples
    --------
    >>> import numpy as np, dask.array as da, convx.dask
    >>> g = da.ones((1, 1, 5), chunks=(1, 1, 2))
    >>> convx.dask.conv1d_input_grad((1, 1, 5), np.ones((1, 1, 3)), g, padding=1).compute()
    array([[[2., 3., 3., 3., 2.]]])
    """
    return _input_grad("conv1d_input_grad", 1, input_shape, weight, grad_output, stride,
                       padding, dilation, groups, method)


def conv2d_weight_grad(input: ArrayOrDask, weight_shape: Shape, grad_output: ArrayOrDask,
                       stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                       groups: int = 1, method: Method = "auto") -> da.Array:
    """:func:`convx.conv2d_weight_grad` on dask arrays, lazily.

    Each block of ``grad_output`` (after bringing the batch chunks of
    ``input`` and ``grad_output`` to common ones) gives a partial gradient
    from the input region its windows read; the partials are summed by a
    tree reduction into one chunk of shape ``weight_shape``.

    Parameters
    ----------
    input : dask array or ndarray of shape (N, C_in, H, W)
    weight_shape : tuple (C_out, C_in // groups, kH, kW)
    grad_output : dask array or ndarray of shape (N, C_out, H_out, W_out)
    stride, padding, dilation, groups, method
        As given to :func:`conv2d`.

    Returns
    -------
    dask array of shape ``weight_shape``
        Lazy, one chunk, in :func:`convx.conv2d_weight_grad`'s dtype.

    Raises
    ------
    ConvxTypeError, ConvxValueError
        When the graph is built, for every argument :func:`convx.conv2d_weight_grad`
        refuses (with its message); ``ConvxTypeError`` also for an array that
        is neither a dask nor a NumPy array, or a dask array whose chunks are
        not NumPy arrays, and ``ConvxValueError`` for unknown (NaN) chunk
        sizes or a bad ``convx.threads-per-task`` setting.

    Examples
    --------
    >>> import numpy as np, dask.array as da, convx.dask
    >>> x = da.from_array(np.arange(9.0).reshape(1, 1, 3, 3), chunks=(1, 1, 2, 2))
    >>> g = da.ones((1, 1, 2, 2), chunks=1)
    >>> convx.dask.conv2d_weight_grad(x, (1, 1, 2, 2), g).compute()
    array([[[[ 8., 12.],
             [20., 24.]]]])
    """
    return _weight_grad("conv2d_weight_grad", 2, input, weight_shape, grad_output, stride,
                        padding, dilation, groups, method)


def conv1d_weight_grad(input: ArrayOrDask, weight_shape: Shape, grad_output: ArrayOrDask,
                       stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                       groups: int = 1, method: Method = "auto") -> da.Array:
    """:func:`convx.conv1d_weight_grad` on dask arrays, lazily; summed as
    :func:`conv2d_weight_grad` says.

    Parameters
    ----------
    input : dask array or ndarray of shape (N, C_in, L)
    weight_shape : tuple (C_out, C_in // groups, k)
    grad_output : dask array or ndarray of shape (N, C_out, L_out)
    stride, padding, dilation, groups, method
        As given to :func:`conv1d`.

    Returns
    -------
    dask array of shape ``weight_shape``
        Lazy, one chunk, in :func:`convx.conv1d_weight_grad`'s dtype.

    Raises
    ------
    ConvxTypeError, ConvxValueError
        When the graph is built, for every argument :func:`convx.conv1d_weight_grad`
        refuses (with its message); ``ConvxTypeError`` also for an array that
        is neither a dask nor a NumPy array, or a dask array whose chunks are
        not NumPy arrays, and ``ConvxValueError`` for unknown (NaN) chunk
        sizes or a bad ``convx.threads-per-task`` setting.

    Examples
    --------
    >>> import numpy as np, dask.array as da, convx.dask
    >>> x = da.arange(1.0, 6.0, chunks=2).reshape(1, 1, 5)
    >>> convx.dask.conv1d_weight_grad(x, (1, 1, 3), da.ones((1, 1, 5), chunks=2),
    ...                               padding=1).compute()
    array([[[10., 15., 14.]]])
    """
    return _weight_grad("conv1d_weight_grad", 1, input, weight_shape, grad_output, stride,
                        padding, dilation, groups, method)
