"""The FFT algorithm: convolution as products of spectra, by overlap-save tiles.

A correlation of a plane with a kernel spanning S positions (its taps,
dilation included) is, on a tile of L positions of the plane, the inverse
transform of X * conj(K), whose first L - S + 1 values have no wrap-around.
The engine's plan (:func:`geometry`) picks the tile lengths L along each
axis from a cost model; the output is cut into tiles of T = L - S + 1
positions, and each tile reads the L positions of the (padded) input under
it: overlap-save.  A whole image is one tile when that is cheapest, a long
signal or a large image is many.

Along an axis where the kernel spans one position nothing is transformed:
a kernel one row tall (every 1-D kernel) transforms each row alone, and a
kernel one column wide is run with the two axes swapped.

The three passes are one correlation each:

- forward: the input's tiles against the kernel, channels mixed in the
  frequency domain (``_core.fft_mix``), bias added, strides taken from the
  unit-stride result;
- input gradient: the output gradient, spread out by the stride, against
  the kernel flipped and its channel axes swapped;
- weight gradient: the input's tiles against the output gradient's tiles,
  summed over tiles and images in the frequency domain
  (``_core.fft_mix_grad``) and transformed back once.

This module computes; the engine (``_engine``) decides when and checks the
values (a non-finite value would spread over a whole tile: such calls take
the direct or GEMM path instead).  The transforms are scipy.fft's, on the
call's threads (``workers``); each transform and each bin of a product is
computed by one thread in a fixed order, so the result is the same bits for
any thread count.  Working memory is a chunk of images' tiles at a time
(``_CHUNK_VALUES``): it does not grow with the batch.  Each thread keeps its
two largest working arrays for its next call (``_HOLD_BYTES``, ``_Lease``).
"""
from __future__ import annotations

import math
import os
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, cast, final

import numpy as np

from . import _core

if TYPE_CHECKING:
    from typing import Protocol

    from ._typing import Array

    Pair = tuple[int, ...]   # (rows, columns)

    class _ScipyFFT(Protocol):
        """What convx calls of scipy.fft (which has no annotations)."""

        def rfft(self, x: Array, n: int, axis: int, workers: int) -> Array: ...
        def irfft(self, x: Array, n: int, axis: int, norm: str, workers: int) -> Array: ...
        def ifft(self, x: Array, axis: int, norm: str, overwrite_x: bool,
                 workers: int) -> Array: ...
        def rfft2(self, x: Array, s: Pair, workers: int) -> Array: ...


_scipy_fft: _ScipyFFT | None = None


class Unavailable(Exception):
    """scipy.fft cannot be imported in this process: a child forked while
    another thread of its parent was importing it (the engine runs the call
    by its exact algorithm instead)."""


# Imports of scipy.fft under way (_sf), and whether this process is a child
# forked during one.  Such a child holds the import's module lock for a
# thread it does not have, and importing scipy.fft there waits forever; the
# fork itself cannot wait for the import (another library's fork handler,
# logging's, holds a lock the import may need).  So the child does without.
_importing = 0
_count_lock = threading.Lock()
_broken = False


def _after_fork_in_child() -> None:
    global _broken, _importing, _count_lock
    _broken = _broken or (_scipy_fft is None and _importing > 0)
    _importing, _count_lock = 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _sf() -> _ScipyFFT:
    """scipy.fft, imported on the first FFT call (``import convx`` stays
    light).  Raises Unavailable in a child forked during that import."""
    global _scipy_fft, _importing
    if _scipy_fft is None:
        if _broken:
            raise Unavailable
        with _count_lock:
            _importing += 1
        try:
            import scipy.fft
        finally:
            with _count_lock:
                _importing -= 1
        _scipy_fft = cast("_ScipyFFT", scipy.fft)
    return _scipy_fft


_UNCHECKED = object()
_pocket: Any = _UNCHECKED


def _pf() -> Any:
    """scipy.fft's own transforms (its module scipy.fft._pocketfft.pypocketfft,
    which scipy.fft's functions call), whose calls take the array to write
    the result into, where it is there and gives scipy.fft's results bit for
    bit: checked once per process, on a small transform each way; else None
    (and the public functions, which return a new array at every call).
    Fresh arrays of a few MiB cost page faults on each call where the C
    library has handed the last call's back to the kernel (_HOLD_BYTES)."""
    global _pocket
    if _pocket is _UNCHECKED:
        _pocket = _checked(getattr(getattr(_sf(), "_pocketfft", None), "pypocketfft", None))
    return _pocket


def _checked(p: Any) -> Any:
    """``p`` (see _pf) where its transforms into given arrays are scipy.fft's
    own, else None."""
    if p is None:
        return None
    sf = _sf()
    try:
        for dtype in (np.float32, np.float64):
            a = np.random.default_rng(0).standard_normal((2, 6, 10)).astype(dtype)
            spec = np.empty((2, 6, 6), _spectra_dtype(np.dtype(dtype)))
            back = np.empty((2, 6, 10), dtype)
            p.r2c(a, (1, 2), True, 0, spec, 1)
            want = sf.rfft2(a, s=(6, 10), workers=1)
            p.c2r(spec, (2,), 10, False, 0, back, 1)
            if not (spec.dtype == want.dtype and np.array_equal(spec, want)
                    and np.array_equal(back, sf.irfft(spec, n=10, axis=2, norm="forward",
                                                      workers=1))):
                return None
    except (TypeError, ValueError, AttributeError, RuntimeError):
        # a scipy whose module differs: its public functions
        return None
    return p


def _smooth(lo: int, hi: int) -> list[int]:
    """The 5-smooth numbers (2**a 3**b 5**c, the transform lengths pocketfft
    is fastest on) in [lo, hi], ascending."""
    out = []
    p5 = 1
    while p5 <= hi:
        p35 = p5
        while p35 <= hi:
            n = p35
            while n < lo:
                n *= 2
            while n <= hi:
                out.append(n)
                n *= 2
            p35 *= 3
        p5 *= 5
    return sorted(set(out))


def fast_len(n: int) -> int:
    """The smallest 5-smooth number >= n."""
    return _smooth(n, 2 * n)[0]


# Cost constants, in nanoseconds, written here so that the choice is a
# function of the shapes, the dtype and the CPU: by the core (the engine's
# _tuning, which picks the entry) and the itemsize, (transform, mix, chunk):
# - transform: per real value x log2(tile size) of the transforms (forward
#   and inverse; pocketfft alone takes 0.3-0.6 forward and 0.45-1.1
#   inverse, one thread, an Intel Xeon);
# - mix: per complex multiply-add of the channel mixing (_fft.h alone:
#   0.8-1.5, bound by memory, one thread) with what else each bin costs (the
#   products' arrays);
# - chunk: per chunk of images: the Python around the transforms (a dozen
#   NumPy and scipy.fft calls), measured on its own as the time of a call
#   on one 16x16 image, any pass, either dtype.  (Fitted at 8 us on the
#   Xeon, small calls went to the FFT at up to 2.1x the direct kernel's
#   time: (4, 1, 128, 128) 35x35.)
# The engine sets them against its own rates for the other algorithms
# (_engine._NS_PER_MAC and the tables beside it, scaled by core:
# _engine._NS_SCALE), so both were measured alike: whole calls on 2
# threads, scipy 1.17's pocketfft, the transform and mix terms fitted with
# the chunk's held, by non-negative least squares on the relative error
# (`benchmarks/fft_costs.py --fit` prints them).
# - 'default': an Intel Xeon (x86-64-v4, cpuid family 6, model 167), 54
#   random layers x 3 passes x 2 dtypes (1-D and 2-D, 1 to 16 images, 1 to
#   16 channels, 1 to 64 filters, kernels 5x5 to 31x31 and 15 to 255 taps;
#   `fft_costs.py --seed 11 --layers 24` and `--seed 12 --layers 30`).
#   Fitted on one seed's calls, the choice between the FFT and the table's
#   other algorithm was within 5% of the faster on 174 of the other seed's
#   180 and 133 of 144.  A tiny call took 74-80 us.
# - 'zen4': an AMD EPYC Zen 4 (family 25, a shared 2-core VM), the same 54
#   layers, fft_costs.py's own 24, and 14 large images and long signals of
#   our own (`fft_costs.py --large fit`: 256x256 to 1024x1024 under 19x19 to
#   33x33 kernels, 32k to 100k samples under 191 to 511 taps), which the
#   random layers (images up to 256 wide) leave out and where the 'default'
#   constants were furthest off: the FFT took 0.65-0.9 of its modelled time
#   there, 1.23 (the median) on the random layers.  A tiny call takes
#   141-156 us here.  On 12 other large layers (`--large check`, 72 passes,
#   not fitted on), 'auto' was within 5% of the faster in 66 (51 with the
#   'default' constants and scales), 1.023x its time on average (1.097x),
#   1.94x at worst (1.89x); on `--seed 13 --layers 24` (144 passes, not
#   fitted on) in 137 (135), 1.009x (1.016x), 1.43x at worst (1.82x).
_NS_FFT = {"default": {4: (0.18, 0.45, 70_000.0), 8: (0.29, 0.74, 70_000.0)},
           "zen4": {4: (0.167, 0.511, 145_000.0), 8: (0.279, 0.811, 145_000.0)}}
# A chunk of images is transformed at once, up to this many values of tiles
# (input and output channels): a bound on the working memory, whatever the
# batch.  A tile of more values than this is cut smaller.
_CHUNK_VALUES = 1 << 21
_MAX_TILE = 1 << 21


class Geometry(NamedTuple):
    """How one correlation runs: ``span`` the kernel's extent (dilated),
    ``L`` the tile (transform) lengths, ``T`` the output positions per tile
    (L - span + 1), ``tiles`` how many along each axis, ``out1`` the
    unit-stride output it computes, ``origin`` where output (0, 0)'s window
    starts in the source (negative: inside the padding), ``up`` the spacing of
    the source's values (the input gradient's stride), ``down`` the stride the
    result is sampled at, ``images`` how many are transformed at once, and
    ``swap``: the axes are exchanged (a kernel one column wide runs as one
    row tall)."""
    span: tuple[int, ...]
    L: tuple[int, ...]
    T: tuple[int, ...]
    tiles: tuple[int, ...]
    out1: tuple[int, ...]
    origin: tuple[int, ...]
    up: tuple[int, ...]
    down: tuple[int, ...]
    images: int
    swap: bool

    @property
    def region(self) -> tuple[int, ...]:
        """The (rows, columns) of source each image needs: every tile's window."""
        return tuple((t - 1) * s + n for t, s, n in zip(self.tiles, self.T, self.L))


def _axis_choices(span: int, out: int) -> list[tuple[int, int, int]]:
    """(L, T, tiles) along one axis: the tile lengths worth trying, each
    longer than the last and with fewer transformed values in all (the
    others are never best).  A span of 1 is not transformed: rows are tiles
    of one."""
    if span == 1:
        return [(1, 1, out)]
    whole = fast_len(out + span - 1)
    choices, best = [], math.inf
    for L in _smooth(min(fast_len(2 * span - 1), whole), whole):
        T = L - span + 1
        tiles = -(-out // T)
        work = tiles * L
        if work < best:
            best = work
            choices.append((L, T, tiles))
    return choices


def _terms(n: int, tiles: int, size: int, bins: int, cin: int, cout: int, mixes: int,
           images: int) -> tuple[float, int, int]:
    """What the cost model counts for ``n`` images: the transforms' values x
    log2(size), the complex multiply-adds, the chunks.  The transformed
    values are the images' tiles in and out, and the kernel's ``mixes``
    spectra (the forward pass and the input gradient transform every pair
    of channels' kernel once per call; the weight gradient transforms every
    pair's product back once).  Without those, a call of few images and
    many pairs cost 2.4-3.4x what the model said: (1, 8, 64, 64) x16 9x9,
    input gradient, 1.96 ms against 0.65 ms of the model scaled to the
    machine, where the direct kernel takes 0.47 ms.  (Copying the tiles in
    and out costs per value what the transforms' figure absorbs: fitted with
    a term of its own, that term came out zero.)"""
    values = (n * tiles * (cin + cout) + mixes) * size
    return values * math.log2(max(size, 2)), n * tiles * mixes * bins, -(-n // images)


def geometry(span: Pair, out1: Pair, origin: Pair, up: Pair, down: Pair, n: int, cin: int,
             cout: int, mixes: int, costs: tuple[float, float, float],
             swap: bool = False) -> tuple[Geometry, float, tuple[float, int, int]] | None:
    """The cheapest tiling of a correlation by the cost model, and its cost in
    nanoseconds: ``(Geometry, ns, terms)`` (terms: :func:`_terms`).  ``n``
    images, ``cin`` and ``cout`` channels transformed in and out of each,
    ``mixes`` complex multiply-adds per bin and image (channels in x out per
    group, x groups); ``costs`` the core's entry of _NS_FFT for the dtype."""
    best = None
    for lh, th, nh in _axis_choices(span[0], out1[0]):
        for lw, tw, nw in _axis_choices(span[1], out1[1]):
            size = lh * lw
            if size > _MAX_TILE and best is not None:
                continue
            tiles = nh * nw
            images = max(1, min(n, _CHUNK_VALUES // ((cin + cout) * tiles * size)))
            terms = _terms(n, tiles, size, lh * (lw // 2 + 1), cin, cout, mixes, images)
            ns = sum(t * k for t, k in zip(terms, costs))
            if best is None or ns < best[1]:
                best = (Geometry(span, (lh, lw), (th, tw), (nh, nw), out1, origin, up, down,
                                 images, swap), ns, terms)
    return best


def _pow2_into(a: Array, e: Array, out: Array, norm: int = 1) -> None:
    """out[...] = (a / norm) x 2**e, ``e`` integers broadcast against ``a``,
    ``norm`` a transform's length (an inverse transform's normalisation,
    :func:`_irfft`): a / norm rounded once, as pocketfft rounds it, and the
    power of two exact where the products are normal numbers.  By one
    multiply where every 2**e / norm is a normal number of out's dtype, else
    (the largest and smallest magnitudes: rare) by ldexp.  A value that
    leaves the dtype's range does so quietly, as in the kernels' own
    arithmetic (the engine looks for one where it could happen:
    _engine._overflowed)."""
    info = np.finfo(out.dtype)
    # 1/norm as pocketfft computes its factor: in long double, then rounded
    fct = out.dtype.type(1 / np.longdouble(norm))
    with np.errstate(over="ignore", under="ignore"):
        if not e.any():
            if norm == 1:
                out[...] = a
            else:
                np.multiply(a, fct, out=out)
        elif (int(e.max()) < info.maxexp - 1
              and int(e.min()) - norm.bit_length() > info.minexp + 1):
            np.multiply(a, np.ldexp(np.full(e.shape, fct, out.dtype), e), out=out)
        else:
            np.ldexp(a * fct if norm != 1 else a, e, out=out)


def spectra(k: Array, g: Geometry, dilation: Pair, shift: Array) -> Array:
    """The kernel's conjugated spectra for a correlation: ``k`` (out, in, KH,
    KW), each out's divided by 2**shift[out], spread by ``dilation`` to the
    geometry's span and transformed at its tile lengths; (out, in, bins)
    complex, C order."""
    if g.swap:
        k = k.swapaxes(-1, -2)
        dilation = dilation[::-1]
    kd = np.zeros(k.shape[:2] + g.span, k.dtype)
    _pow2_into(k, -shift[:, None, None, None], kd[..., ::dilation[0], ::dilation[1]])
    spec = _rfft(kd, g, 1)
    spec = np.conj(spec, out=spec)
    return np.ascontiguousarray(spec.reshape(k.shape[:2] + (-1,)))


# Each thread keeps its largest working arrays of the FFT between calls, up
# to this many bytes each, three in all, each used for one thing and then
# another (correlate, weight_grad): "region" (the zero-padded source, then
# the inverse transforms, or the output gradient's tiles), "spectra" (the
# source's tiles' spectra, then the output joined from its tiles) and "mix"
# (the products' spectra).  The transforms write into them through scipy's
# own module (_pf).  Allocated afresh at every call, they cost more than
# the transforms on some machines: above a few MiB glibc hands freed memory
# back to the kernel, and the next call faults it in again page by page.
# (2, 1, 512, 512) 31x31 float64, forward, one thread on an AMD Zen 4 VM:
# 1,719 page faults and 10.7 ms a call, against none and 7.7 ms with the
# region and the products kept; its weight gradient, 2 threads, 1,036 to
# 1,830 faults and 8.3-9.5 ms, against none and 5.9 ms with the transforms'
# outputs kept too.)  Larger arrays (one chunk of a large image) are
# allocated and freed per call, as before; so is the kernel's spectra
# (one per pair of channels).
_HOLD_BYTES = 1 << 24
_ALIGN = 64


class _Held(threading.local):
    """This thread's kept arrays, by role, and whether a call uses them now."""

    def __init__(self) -> None:
        self.buffers: dict[str, Array] = {}
        self.busy = False


_held = _Held()


@final
class _Lease:
    """The kept arrays for one call (``with _Lease() as lease``).  A call
    that starts while another on the same thread holds them (from a signal
    handler or a finalizer) allocates its own instead."""

    def __enter__(self) -> _Lease:
        self.mine = not _held.busy
        _held.busy = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mine:
            _held.busy = False

    def take(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """An uninitialised array for ``role``: the thread's kept one where
        it fits and is free, else a new one."""
        need = math.prod(shape) * dtype.itemsize
        if not self.mine or need > _HOLD_BYTES:
            return np.empty(shape, dtype)
        raw = _held.buffers.get(role)
        if raw is None or raw.nbytes < need + _ALIGN:
            raw = _held.buffers[role] = np.empty(need + _ALIGN, np.uint8)
        # (not raw.ctypes, which imports a module: a call from a finalizer
        # during the interpreter's shutdown can import nothing)
        skip = -raw.__array_interface__["data"][0] % _ALIGN
        return raw[skip:skip + need].view(dtype).reshape(shape)


def _region(src: Array, g: Geometry, shift: Array, lease: _Lease) -> Array:
    """Images ``src`` (N, C, H, W), divided by 2**shift (broadcast against
    them), placed in the zero region their tiles read: value (a, b) at (a*up
    + origin, b*up + origin)."""
    rh, rw = g.region
    buf = lease.take("region", src.shape[:2] + (rh, rw), src.dtype)
    spans = []
    for axis in (0, 1):
        size, up, o = src.shape[2 + axis], g.up[axis], g.origin[axis]
        n = (rh, rw)[axis]
        a0 = max(0, -(o // up))                     # first a with a*up + o >= 0
        a1 = min(size, (n - 1 - o) // up + 1) if n - 1 - o >= 0 else 0
        if a1 <= a0:
            buf.fill(0)
            return buf
        spans.append((slice(a0, a1), slice(a0 * up + o, (a1 - 1) * up + o + 1, up)))
    if g.up == (1, 1):
        # zero only what the copy leaves: the rows above and below it, and
        # the columns beside it
        (r0, r1), (c0, c1) = ((s[1].start, s[1].stop) for s in spans)
        buf[:, :, :r0] = 0
        buf[:, :, r1:] = 0
        buf[:, :, r0:r1, :c0] = 0
        buf[:, :, r0:r1, c1:] = 0
    else:
        buf.fill(0)
    _pow2_into(src[:, :, spans[0][0], spans[1][0]], -shift, buf[:, :, spans[0][1], spans[1][1]])
    return buf


def _tiles(buf: Array, g: Geometry, threads: int, lease: _Lease) -> Array:
    """The (N, C, tiles, bins) spectra of the windows of a region, in the
    lease's "spectra" array where scipy's module allows (_pf)."""
    a = buf
    if g.tiles != (1, 1):   # (one tile: the region itself, contiguous)
        win = np.lib.stride_tricks.sliding_window_view(buf, g.L, axis=(2, 3))
        a = win[:, :, ::g.T[0], ::g.T[1]]
    out = None
    if _pf() is not None:
        out = lease.take("spectra", a.shape[:-1] + (g.L[1] // 2 + 1,), _spectra_dtype(buf.dtype))
    spec = _rfft(a, g, threads, out)
    return np.ascontiguousarray(spec.reshape(buf.shape[:2] + (g.tiles[0] * g.tiles[1], -1)))


def _spectra_dtype(dtype: np.dtype) -> np.dtype:
    """The complex dtype of a real dtype's spectra."""
    return np.dtype(np.complex64 if dtype == np.float32 else np.complex128)


def _rfft(a: Array, g: Geometry, threads: int, out: Array | None = None) -> Array:
    """The spectra of tiles ``a`` (..., Lh or less, Lw or less), zero-filled
    to the geometry's lengths: along the rows alone when Lh is 1.  Into
    ``out`` (C order, the spectra's shape and dtype) where it is given, the
    tiles are whole and scipy's module allows (_pf)."""
    one = g.L[0] == 1
    p = _pf() if out is not None and a.shape[-2 + one:] == g.L[one:] else None
    if p is not None:
        axes = (a.ndim - 1,) if one else (a.ndim - 2, a.ndim - 1)
        return cast("Array", p.r2c(a, axes, True, 0, out, threads))
    if one:
        return _sf().rfft(a, n=g.L[1], axis=-1, workers=threads)
    return _sf().rfft2(a, s=g.L, workers=threads)


def _irfft(a: Array, g: Geometry, threads: int, out: Array | None = None) -> Array:
    """The tiles (..., Lh, Lw) whose spectra are ``a`` (which it overwrites),
    times Lh x Lw: not normalised (the caller's :func:`_pow2_into` divides,
    in the multiply it makes anyway); into ``out`` (C order, real) where it
    is given and scipy's module allows (_pf).  One axis at a time, the
    columns' complex transform in place: scipy's irfft2 makes the same
    passes in the same order (so the same bits), but first copies ``a`` into
    a temporary array of its own, which with the output makes two large
    allocations a call.  Past a few MiB, glibc hands such memory back to the
    kernel and faults it in again at every call: irfft2 of 8 float64 tiles
    of 288x288 took 2.1-2.8x the time of these two passes, 10.5 ns a value
    against 5.0 (an AMD Zen 4)."""
    sf = _sf()
    if g.L[0] > 1:
        a = sf.ifft(a, axis=-2, norm="forward", overwrite_x=True, workers=threads)
    p = _pf() if out is not None else None
    if p is not None:
        return cast("Array", p.c2r(a, (a.ndim - 1,), g.L[1], False, 0, out, threads))
    return sf.irfft(a, n=g.L[1], axis=-1, norm="forward", workers=threads)


def _float_view(a: Array) -> Array:
    """A complex array's interleaved (real, imaginary) floats, last axis doubled."""
    return a.view(np.float32 if a.dtype == np.complex64 else np.float64)


def correlate(src: Array, spec: Array, out: Array, bias: Array | None, g: Geometry, groups: int,
              threads: int, shift: Array, unshift: Array) -> None:
    """out[n, o] = bias[o] + the correlation of src[n]'s channels of o's group
    with the kernel whose spectra are ``spec`` (:func:`spectra`), at the
    geometry ``g``: the forward pass (src = the input) and the input gradient
    (src = the output gradient).  src[n] enters the transforms divided by
    2**shift[n], and their result for (n, o) leaves multiplied by
    2**unshift[n, o] (src[n]'s shift and the kernel's o's: so that no sum in
    the transforms overflows, nor falls among the subnormal numbers, whatever
    the other images' and filters' magnitudes).  ``out`` is written whole."""
    if g.swap:
        src, out = src.swapaxes(2, 3), out.swapaxes(2, 3)
    (th, tw), lh, (nh, nw) = g.T, g.L[0], g.tiles
    f, (oh, ow), (sh, sw) = out.shape[1], out.shape[2:], g.down
    # Each array goes where the lease's role is free again: the region, read
    # by the transforms, then their inverse; the spectra, mixed, then the
    # output's tiles joined
    with _Lease() as lease:
        for n0 in range(0, src.shape[0], g.images):
            x = _tiles(_region(src[n0:n0 + g.images], g,
                               shift[n0:n0 + g.images, None, None, None], lease), g, threads,
                       lease)
            y = lease.take("mix", (x.shape[0], f) + x.shape[2:], x.dtype)
            _core.fft_mix(_float_view(x), _float_view(spec), _float_view(y), groups, threads)
            del x
            y = y.reshape(y.shape[:2] + (nh, nw, lh, -1))
            z = _irfft(y, g, threads, lease.take("region", y.shape[:-1] + g.L[1:], src.dtype))
            joined = lease.take("spectra", z.shape[:2] + (nh * th, nw * tw), src.dtype)
            joined.reshape(z.shape[:2] + (nh, th, nw, tw))[...] = (
                z[..., :th, :tw].transpose(0, 1, 2, 4, 3, 5))
            part = out[n0:n0 + g.images]
            _pow2_into(joined[:, :, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw],
                       unshift[n0:n0 + g.images, :, None, None], part, lh * g.L[1])
            if bias is not None:
                part += bias[:, None, None]


def weight_grad(x: Array, gout: Array, dw_shape: tuple[int, ...], dilation: Pair, g: Geometry,
                groups: int, threads: int, shift_x: Array, shift_g: Array) -> Array:
    """The weight gradient, dw[o, c, p, q] = sum over images and output
    positions of gout[n, o, i, j] * xpad[n, c, i*sh + p*dh, j*sw + q*dw], at
    the geometry ``g`` (its tiles cut the unit-stride output, ``g.down`` the
    stride); x's channel c and gout's channel o enter the transforms divided
    by 2**shift_x[c] and 2**shift_g[o], and dw[o, c] leaves multiplied by
    both.  Returns a new (F, Cg, KH, KW) array of x's dtype."""
    if g.swap:
        x, gout = x.swapaxes(2, 3), gout.swapaxes(2, 3)
        dilation = dilation[::-1]
    f, cg = dw_shape[0], dw_shape[1]
    (th, tw), lh, (nh, nw) = g.T, g.L[0], g.tiles
    (sh, sw), (oh, ow) = g.down, gout.shape[2:]
    acc = None
    # (the lease's roles as in correlate: the output gradient's tiles, zero-
    # filled to the transforms' lengths, take the region's once it is read,
    # and their spectra the products' once the tiles are copied)
    with _Lease() as lease:
        for n0 in range(0, x.shape[0], g.images):
            xs = _tiles(_region(x[n0:n0 + g.images], g, shift_x[None, :, None, None], lease), g,
                        threads, lease)
            n = xs.shape[0]
            gbuf = lease.take("mix", (n, f, nh * th, nw * tw), x.dtype)
            gbuf.fill(0)
            _pow2_into(gout[n0:n0 + g.images], -shift_g[None, :, None, None],
                       gbuf[:, :, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw])
            gt = lease.take("region", (n, f, nh, nw) + g.L, x.dtype)
            gt[..., th:, :] = 0
            gt[..., :th, tw:] = 0
            gt[..., :th, :tw] = gbuf.reshape(n, f, nh, th, nw, tw).transpose(0, 1, 2, 4, 3, 5)
            del gbuf
            out = lease.take("mix", gt.shape[:-1] + (g.L[1] // 2 + 1,), xs.dtype)
            gs = np.ascontiguousarray(_rfft(gt, g, threads, out).reshape(n, f, nh * nw, -1))
            if acc is None:
                acc = np.zeros((f, cg, xs.shape[3]), xs.dtype)
            _core.fft_mix_grad(_float_view(gs), _float_view(xs), _float_view(acc), groups,
                               threads)
    assert acc is not None   # the batch is not empty (_engine's zero plans take empty ones)
    k = _irfft(acc.reshape(f, cg, lh, -1), g, threads)
    k = k[:, :, :g.span[0]:dilation[0], :g.span[1]:dilation[1]]
    if g.swap:
        k = k.swapaxes(2, 3)
    dw = np.empty(k.shape, x.dtype)
    # dw[o, c] is x's channel (o's group) x Cg + c against gout's o
    back = shift_g[:, None] + shift_x.reshape(groups, 1, cg).repeat(f // groups, 1).reshape(f, cg)
    _pow2_into(k, back[:, :, None, None], dw, lh * g.L[1])
    return dw
