"""hypothesis fuzzes every pass of convx against an independent NumPy reference.

Passes: the six notebook pads (against ``np.pad``), and forward, input
gradient and weight gradient, 1-D and 2-D, through the public API
(``convx.conv1d`` ... ``convx.conv2d_weight_grad``) and through the notebook
names (``conv_1d`` ... ``_compute_output_sum``).  Each ``@given`` test below
is one pass or one family of passes; every example of a family test runs each
of the family's functions once, so each pass gets the profile's
``max_examples`` (tests/conftest.py: "ci" >= 300 per test, "long" >= 5,000).

Ranges: batch 0-3, channels 0-4 (in and out, with groups 1-4 dividing both;
for the public API half the cases take 0-8 channels per group instead, which
is what reaches convx's direct, non-GEMM kernels with groups), sizes 0-12,
kernels 1-5, stride and dilation 1-3, padding 0-3 (ints, tuples, 'valid' and
'same'), float32 and float64, and per array a memory layout (C
order, Fortran order, negative strides, a strided slice of a larger
NaN-filled buffer, a stride-0 broadcast), big-endian or native, writable or
read-only.  When the kernel's span exceeds the padded input, the public API
must raise ConvxValueError instead.

Every example also checks
* the adjoint identity <conv(x, w), g> = <x, dx> = <w, dw> on convx's own
  outputs (in float64 arithmetic, tolerance from the dtype);
* that a zero output gradient gives exactly zero gradients;
* that no input was modified, and no result shares memory with an input.

The reference (``ref_forward``, ``ref_input_grad``, ``ref_weight_grad``) is
written here from the definition: a sum over kernel taps of strided slices of
an ``np.pad``-ed array, with the adjoints scattering into the same slices.  It
does not import convx and never builds an im2col matrix.  test_awkward.py
loads it from this file.
"""
import math

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

import convx
from convx import ConvxValueError

EPS64 = np.finfo(np.float64).eps
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


# ==========================================================================
# The reference: N-d (1-D and 2-D here), stride, asymmetric padding,
# dilation, groups.  x is (N, C, *S), w is (F, C // groups, *K).
#
#   out[n, f, o] = bias[f] + sum_{c, t} w[f, c, t] * xpad[n, gi*Cg + c, o*s + t*d]
#
# with gi = f // (F // groups).  For one tap t the positions o*s + t*d,
# o = 0..O-1, are the strided slice t*d : t*d + (O-1)*s + 1 : s of each axis.
# ==========================================================================

def out_size(size, k, stride, dilation, lo, hi):
    """Output length along one axis, or None when the kernel does not fit."""
    padded = size + lo + hi
    span = dilation * (k - 1) + 1
    if span > padded:
        return None
    return (padded - span) // stride + 1


def out_shape(x_shape, k_shape, stride, pads, dilation):
    """The spatial output shape, or None when the kernel does not fit on some axis."""
    sizes = [out_size(s, k, st_, d, lo, hi)
             for s, k, st_, (lo, hi), d in zip(x_shape, k_shape, stride, pads, dilation)]
    return None if None in sizes else tuple(sizes)


def _taps(k_shape, o_shape, stride, dilation):
    """Each kernel tap and the index (strided slices) of xpad's spatial axes it reads."""
    for tap in np.ndindex(*k_shape):
        yield tap, tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                         for t, o, s, d in zip(tap, o_shape, stride, dilation))


def _f64(a):
    return np.asarray(a).astype(np.float64)


def ref_forward(x, w, bias, stride, pads, dilation, groups, o=None):
    """conv(x, w) + bias in float64.  ``pads`` is one (before, after) pair per spatial axis.

    ``o``, the output's spatial shape, defaults to what the geometry gives;
    the notebook's 'same' convolution of an empty signal passes its empty shape.
    """
    x, w = _f64(x), _f64(w)
    n = x.shape[0]
    f, cg = w.shape[:2]
    fg = f // groups
    if o is None:
        o = out_shape(x.shape[2:], w.shape[2:], stride, pads, dilation)
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    out = np.zeros((n, f) + tuple(o))
    for tap, sl in _taps(w.shape[2:], o, stride, dilation):
        xs = xp[(slice(None), slice(None)) + sl]                  # (N, C, *O)
        for gi in range(groups):
            fs, cs = slice(gi * fg, (gi + 1) * fg), slice(gi * cg, (gi + 1) * cg)
            out[:, fs] += np.einsum("nc...,fc->nf...", xs[:, cs], w[(fs, slice(None)) + tap])
    if bias is not None:
        out += _f64(bias).reshape((f,) + (1,) * len(o))
    return out


def ref_input_grad(x_shape, w, g, stride, pads, dilation, groups):
    """d sum(conv(x, w) * g) / dx: scatter-add into the slices the forward read.

    Within one tap's slice every position is distinct, so ``+=`` on the view
    is a true scatter-add; the padding is then cut away.
    """
    w, g = _f64(w), _f64(g)
    n, c = x_shape[:2]
    f, cg = w.shape[:2]
    fg = f // groups
    o = g.shape[2:]
    dxp = np.zeros((n, c) + tuple(s + lo + hi for s, (lo, hi) in zip(x_shape[2:], pads)))
    for tap, sl in _taps(w.shape[2:], o, stride, dilation):
        view = dxp[(slice(None), slice(None)) + sl]
        for gi in range(groups):
            fs, cs = slice(gi * fg, (gi + 1) * fg), slice(gi * cg, (gi + 1) * cg)
            view[:, cs] += np.einsum("nf...,fc->nc...", g[:, fs], w[(fs, slice(None)) + tap])
    crop = tuple(slice(lo, lo + s) for s, (lo, hi) in zip(x_shape[2:], pads))
    return dxp[(slice(None), slice(None)) + crop].copy()


def ref_weight_grad(x, w_shape, g, stride, pads, dilation, groups):
    """d sum(conv(x, w) * g) / dw: each tap's slice of xpad against g."""
    x, g = _f64(x), _f64(g)
    f, cg = w_shape[:2]
    fg = f // groups
    o = g.shape[2:]
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    dw = np.zeros(tuple(w_shape))
    for tap, sl in _taps(w_shape[2:], o, stride, dilation):
        xs = xp[(slice(None), slice(None)) + sl]
        for gi in range(groups):
            fs, cs = slice(gi * fg, (gi + 1) * fg), slice(gi * cg, (gi + 1) * cg)
            xg, gg = xs[:, cs], g[:, fs]
            dw[(fs, slice(None)) + tap] = np.einsum(
                "ncp,nfp->fc", xg.reshape(xg.shape[:2] + (math.prod(o),)),
                gg.reshape(gg.shape[:2] + (math.prod(o),)))
    return dw


class Ref:
    """The three passes, their magnitude bounds and term counts, for one geometry.

    ``*_abs`` is the same pass evaluated on |x|, |w|, |g| (and |bias|): for
    each output element, the sum of the absolute values of the terms summed
    into it.  ``n_*`` is the most terms any element of that pass sums.
    """

    def __init__(self, x, w, g, bias, stride, pads, dilation, groups, o=None):
        # non-finite values: 0 * inf and inf - inf are NaN here, by definition
        with np.errstate(invalid="ignore"):
            self._compute(x, w, g, bias, stride, pads, dilation, groups, o)

    def _compute(self, x, w, g, bias, stride, pads, dilation, groups, o):
        x, w = _f64(x), _f64(w)
        g = None if g is None else _f64(g)
        b = None if bias is None else _f64(bias)
        geo = (stride, pads, dilation, groups)
        self.y = ref_forward(x, w, b, *geo, o=o)
        self.y_abs = ref_forward(abs(x), abs(w), None if b is None else abs(b), *geo, o=o)
        n, f, cg, taps = x.shape[0], w.shape[0], w.shape[1], math.prod(w.shape[2:])
        self.n_y = cg * taps + (bias is not None)
        self.n_dx = (f // groups) * taps
        self.n_dw = n * math.prod(self.y.shape[2:])
        if g is not None:
            self.dx = ref_input_grad(x.shape, w, g, *geo)
            self.dx_abs = ref_input_grad(x.shape, abs(w), abs(g), *geo)
            self.dw = ref_weight_grad(x, w.shape, g, *geo)
            self.dw_abs = ref_weight_grad(abs(x), w.shape, abs(g), *geo)
            # sum over all (x, w, g) triples of |x w g| (plus |bias g|): the
            # magnitude bound of the three inner products of the adjoint identity
            self.triple = float(np.sum(self.y_abs * abs(g)))


# ==========================================================================
# Comparisons.  Tolerances are rigorous floating-point error bounds, not
# fudge factors: an element summing n products, computed in precision
# u = eps/2 in any order (BLAS blocking, threads, FMA), is within
# gamma_n * sum|terms| <= n * eps * sum|terms| of the exact value (Higham,
# Accuracy and Stability of Numerical Algorithms, sec. 3.1).  sum|terms| per
# element is the reference evaluated on absolute values (``Ref.*_abs``), and n
# is counted per pass.  The float64 reference carries the same kind of error
# with eps64, so that is added.  An element whose terms are all exact zeros
# has a zero bound and must come out exactly 0.
# ==========================================================================

def eps(dtype):
    return float(np.finfo(dtype).eps)


def atol_for(bound, nterms, compute, result=None):
    """Per-element absolute tolerance; ``result`` (e.g. float16) is a narrower
    dtype the computed value is finally rounded to (relative error eps/2 more)."""
    atol = max(nterms, 1) * (eps(compute) + EPS64) * bound
    if result is not None and np.dtype(result) != np.dtype(compute):
        atol = atol + eps(result) * (bound + atol)
    return atol


def assert_nonfinite_match(got, want, what):
    """Where the reference is NaN or an infinity, convx gives exactly that
    (the rule of docs/reliability.md, which the reference implements by
    padding explicitly and scattering from existing positions only); returns
    the mask of the finite elements, to be compared within the tolerance.
    NaN and infinities come from the values alone (0 * inf, inf - inf), so a
    float32 result classifies as the float64 reference does."""
    got64 = got.astype(np.float64)
    nan_want, nan_got = np.isnan(want), np.isnan(got64)
    assert np.array_equal(nan_got, nan_want), (
        f"{what}: NaN at {np.argwhere(nan_got != nan_want)[:6].tolist()}: got "
        f"{got64[nan_got != nan_want][:6]}, expected {want[nan_got != nan_want][:6]}")
    inf = np.isinf(want)
    assert np.array_equal(got64[inf], want[inf]), (
        f"{what}: infinities differ: got {got64[inf][:6]}, expected {want[inf][:6]}")
    finite = np.isfinite(want)
    assert np.all(np.isfinite(got64[finite])), f"{what}: non-finite where the reference is finite"
    return finite


def assert_close(got, want, bound, nterms, dtype, what, compute=None):
    """``got`` is a fresh ndarray of ``dtype`` and shape ``want.shape`` within the tolerance."""
    assert isinstance(got, np.ndarray), f"{what}: {type(got).__name__}, expected an ndarray"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    if dtype.kind in "iu":  # integer results are exact (small integer inputs)
        assert np.array_equal(got, want), f"{what}: got {got}, expected {want}"
        return
    if not np.all(np.isfinite(want)) or not np.all(np.isfinite(got)):
        finite = assert_nonfinite_match(got, want, what)
        got, want, bound = got[finite], want[finite], bound[finite]
    atol = atol_for(bound, nterms, compute or dtype, dtype)
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= atol)  # NaN counts as bad
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} elements outside tolerance; "
        f"got {got[bad][:6]}, expected {want[bad][:6]}, atol {atol[bad][:6]}")


def assert_sum_close(got, want, bound, nterms, dtype, what):
    """``got`` is ``out.sum()``: the elements' tolerance plus np.sum's own
    rounding (at most (M - 1) * eps times the sum of |elements|)."""
    assert np.ndim(got) == 0 and isinstance(got, np.generic), f"{what}: {got!r}"
    got_dtype = np.asarray(got).dtype
    assert got_dtype == dtype, f"{what}: dtype {got_dtype}, expected {dtype}"
    with np.errstate(invalid="ignore"):
        total = float(want.sum())
    if not math.isfinite(total):  # NaN, or the infinity of the elements' sum
        assert (math.isnan(total) and math.isnan(float(got))) or float(got) == total, (
            f"{what}: got {got}, expected {total}")
        return
    elem = atol_for(bound, nterms, dtype)
    atol = float(elem.sum()) + want.size * (eps(dtype) + EPS64) * float((bound + elem).sum())
    assert abs(float(got) - float(want.sum())) <= atol, (
        f"{what}: got {got}, expected {want.sum()}, atol {atol}")


def dot64(a, b):
    """<a, b> in float64."""
    return float(np.dot(_f64(a).ravel(), _f64(b).ravel()))


def assert_adjoint(y, g, x, dx, w, dw, ref, dtype, bias=None):
    """<conv(x, w), g> = <x, dx> = <w, dw>, all three from convx's outputs.

    Each inner product approximates S = sum over all (x, w, g) triples of
    x*w*g.  Summing the per-element bounds above against |g| (or |x|, |w|)
    gives |<y, g> - S| <= n_y * eps * T, where T = sum |x w g| over the
    triples (``ref.triple``), and likewise for the other two; the float64 dot
    adds at most (number of elements) * eps64 * T.  A bias adds <bias, sum g>
    to the forward, which is taken off first.
    """
    yg = dot64(y, g)
    if bias is not None:
        yg -= dot64(bias, _f64(g).sum(axis=(0,) + tuple(range(2, g.ndim))))
    xdx, wdw = dot64(x, dx), dot64(w, dw)
    nmax = max(ref.n_y, ref.n_dx, ref.n_dw, 1)
    nelem = max(np.size(y), np.size(x), np.size(w), 1)
    tol = 2 * (nmax * eps(dtype) + nelem * EPS64) * ref.triple
    assert abs(yg - xdx) <= tol and abs(yg - wdw) <= tol and abs(xdx - wdw) <= tol, (
        f"adjoint identity: <y,g>={yg!r} <x,dx>={xdx!r} <w,dw>={wdw!r} tol={tol!r}")


def assert_zero(got, shape, dtype, what):
    """A zero output gradient gives exactly zero gradients."""
    assert isinstance(got, np.ndarray) and got.shape == tuple(shape) and got.dtype == dtype, (
        f"{what}: {type(got).__name__} {getattr(got, 'shape', None)} "
        f"{getattr(got, 'dtype', None)}, expected {tuple(shape)} {dtype}")
    assert np.all(got == 0), f"{what}: nonzero gradient from a zero output gradient: {got}"


class Unchanged:
    """Snapshots the array arguments of a call; ``check`` asserts none was
    modified (values, dtype, shape, strides, writeable flag) and that no
    result shares memory with any of them."""

    def __init__(self, *arrays):
        self.items = [(a, a.copy(), a.dtype, a.shape, a.strides, a.flags.writeable)
                      for a in arrays if isinstance(a, np.ndarray)]

    def check(self, *results):
        for a, copy, dtype, shape, strides, writeable in self.items:
            assert a.dtype == dtype and a.shape == shape and a.strides == strides
            assert a.flags.writeable == writeable
            assert np.array_equal(a, copy, equal_nan=a.dtype.kind == "f"), "an input was modified"
            for r in results:
                if isinstance(r, np.ndarray):
                    assert not np.shares_memory(r, a), "a result shares memory with an input"


# ==========================================================================
# Arrays with awkward memory layouts
# ==========================================================================

LAYOUTS = ("C", "F", "neg", "slice", "bcast")


NONFINITE = np.array([np.inf, -np.inf, np.nan, 0.0])


def values(rng, shape, kind):
    """float64 test values: 'normal', small 'int'egers (-3..3), small natural
    numbers ('nat', 0..3), 'wide' magnitudes (1e-4 .. 1e4), or 'nonfinite':
    normal values of which, in one array in two, about one in eight is an
    infinity, a NaN or a zero (zeros so that 0 * inf happens)."""
    if kind in ("int", "nat"):
        return rng.integers(-3 if kind == "int" else 0, 4, size=shape).astype(np.float64)
    v = rng.standard_normal(shape)
    if kind == "wide":
        v *= 10.0 ** rng.uniform(-4, 4, size=shape)
    if kind == "nonfinite" and rng.random() < 0.5:
        hit = rng.random(shape) < 0.125
        v[hit] = rng.choice(NONFINITE, size=int(hit.sum()))
    return v


def all_finite(*arrays):
    return all(a is None or np.all(np.isfinite(a)) for a in arrays)


def make_array(rng, shape, dtype, layout="C", big_endian=False, read_only=False, kind="normal"):
    """An array of ``shape`` and ``dtype`` (byte order aside) laid out as ``layout``:

    * ``C``: C order; ``F``: Fortran order;
    * ``neg``: negative strides on every axis (the reversed view of a reversed copy);
    * ``slice``: every other element of a larger buffer whose other elements
      are NaN (or a sentinel integer), so reading outside the view shows;
    * ``bcast``: ``np.broadcast_to`` of an array with size 1 on some axes
      (stride 0 there; read-only, as NumPy makes broadcasts).
    """
    shape = tuple(shape)
    dtype = np.dtype(dtype)
    base_shape = shape
    if layout == "bcast":
        axes = [ax for ax in range(len(shape)) if shape[ax] > 1]
        keep = rng.random(len(axes)) < 0.5
        if axes and not keep.any():
            keep[rng.integers(len(axes))] = True  # broadcast at least one real axis
        collapse = {ax for ax, k in zip(axes, keep) if k}
        base_shape = tuple(1 if ax in collapse else s for ax, s in enumerate(shape))
    a = values(rng, base_shape, kind).astype(dtype)
    if big_endian and dtype.itemsize > 1:
        a = a.astype(dtype.newbyteorder(">"))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "neg":
        a = np.flip(np.flip(a).copy())
    elif layout == "slice":
        fill = np.nan if dtype.kind == "f" else -7777
        big = np.full(tuple(2 * s + 1 for s in shape), fill, a.dtype)
        view = big[tuple(slice(1, 1 + 2 * s, 2) for s in shape)]
        view[...] = a
        a = view
    elif layout == "bcast":
        a = np.broadcast_to(a, shape)
    if read_only:
        a.setflags(write=False)
    return a


@st.composite
def array_styles(draw, per_array_byte_order=True):
    """How to lay out one array: (layout, big_endian, read_only)."""
    return (draw(st.sampled_from(LAYOUTS)),
            draw(st.booleans()) if per_array_byte_order else None,
            draw(st.booleans()))


def build(rng, shape, dtype, style, kind, big_endian=None):
    layout, be, ro = style
    be = be if big_endian is None else big_endian
    return make_array(rng, shape, dtype, layout, be, ro, kind)


# ==========================================================================
# Pads: the six notebook pads against np.pad
# ==========================================================================

PADS = {  # name: (shape of inp as axis names, number of padded trailing axes)
    "_pad_1d": ("L", 1),
    "_pad_1d_batch": ("NL", 1),
    "_pad_2d": ("NHW", 2),
    "_pad_2d_obs": ("HW", 2),
    "_pad_2d_channel": ("CHW", 2),
    "_pad_conv_input": ("NCHW", 2),
}


def pad_result_dtype(name, dtype):
    """docs/notebook.md 'Result dtypes': the 1-D pads keep integers as int64,
    the 2-D pads return floats; float32 stays float32."""
    if PADS[name][1] == 1 and dtype.kind in "iu":
        return np.dtype(np.int64)
    return F32 if dtype == F32 else F64


@st.composite
def pad_cases(draw, name):
    axes, _ = PADS[name]
    return dict(
        shape=tuple(draw(st.integers(0, 3 if a in "NC" else 12)) for a in axes),
        num=draw(st.integers(0, 3)),
        num_type=draw(st.sampled_from([int, np.int64, np.int32])),
        dtype=draw(st.sampled_from(["float32", "float64", "int64", "int32"])),
        style=draw(array_styles()),
        kind=draw(st.sampled_from(["normal", "wide", "int"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@pytest.mark.parametrize("name", list(PADS))
@given(data=st.data())
def test_pad(name, data):
    case = data.draw(pad_cases(name), label="case")
    dtype = np.dtype(case["dtype"])
    x = build(np.random.default_rng(case["seed"]), case["shape"], dtype, case["style"],
              case["kind"])
    num, spatial = case["num"], PADS[name][1]
    keep = Unchanged(x)
    got = getattr(convx, name)(x, case["num_type"](num))
    keep.check(got)
    want = np.pad(np.asarray(x), [(0, 0)] * (x.ndim - spatial) + [(num, num)] * spatial)
    want_dtype = pad_result_dtype(name, dtype)
    assert isinstance(got, np.ndarray) and got.dtype == want_dtype, (got.dtype, want_dtype)
    assert got.shape == want.shape
    assert np.array_equal(got, want.astype(want_dtype))  # exact: padding only copies
    assert got.flags.writeable


# ==========================================================================
# Public API: conv1d / conv2d and their gradients
# ==========================================================================

PUBLIC = {1: (convx.conv1d, convx.conv1d_input_grad, convx.conv1d_weight_grad),
          2: (convx.conv2d, convx.conv2d_input_grad, convx.conv2d_weight_grad)}


def _int_or_tuple(draw, values):
    """An int when all axes agree and the draw says so, else a tuple."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return tuple(values)


def rarely_zero(hi):
    """An int in 0..hi, 0 in about one draw of ten, the others equally likely.

    hypothesis's integers() favours the bounds, and a zero batch, channel count
    or size makes a whole result empty, which tests little.  Shrinks towards 1
    (the first choice), then 0.
    """
    choices = [1 + i % hi for i in range(max(hi, 9))] if hi > 0 else []
    return st.sampled_from(choices + [0])


@st.composite
def public_cases(draw, nsp):
    if draw(st.booleans()):
        # the range: 0-4 channels in all
        groups = draw(st.integers(1, 4))
        c_in = groups * draw(rarely_zero(4 // groups))
        c_out = groups * draw(rarely_zero(4 // groups))
    else:
        # 0-8 channels per group (up to 24 in all): enough taps per group and
        # filters per group to reach convx's direct (non-GEMM) kernels, grouped
        # ones included, which 4 channels in all never do
        groups = draw(st.sampled_from([2, 3, 1]))
        c_in = groups * draw(rarely_zero(8))
        c_out = groups * draw(rarely_zero(8))
    n = draw(rarely_zero(3))
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(nsp))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    mode = draw(st.sampled_from(["int", "tuple", "tuple", "valid", "same"]))
    if mode == "same":
        stride = (1,) * nsp
        padding = "same"
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in zip(kernel, dilation)]
    else:
        # stride 1 half the time: some kernel paths need a unit stride
        stride = tuple(draw(st.sampled_from([1, 2, 1, 3])) for _ in range(nsp))
        if mode == "valid":
            padding, pads = "valid", [(0, 0)] * nsp
        elif mode == "int":
            p = draw(st.integers(0, 3))
            padding, pads = p, [(p, p)] * nsp
        else:
            ps = tuple(draw(st.integers(0, 3)) for _ in range(nsp))
            padding, pads = ps, [(p, p) for p in ps]
    # Sizes 0..12.  Three draws in four aim at sizes the kernel fits (where
    # such a size exists); the rest are free, so kernels larger than the padded
    # input (an error) stay common too.
    fit = draw(st.sampled_from([True, True, True, False]))
    size = []
    for k, d, (lo, hi) in zip(kernel, dilation, pads):
        least = max(0, d * (k - 1) + 1 - lo - hi)
        size.append(draw(st.integers(least, 12) if fit and least <= 12 else st.integers(0, 12)))
    size = tuple(size)
    return dict(
        n=n, c_in=c_in, c_out=c_out, groups=groups, size=size, kernel=kernel,
        stride=stride, stride_arg=_int_or_tuple(draw, stride),
        dilation=dilation, dilation_arg=_int_or_tuple(draw, dilation),
        padding=padding, pads=pads,
        bias=draw(st.booleans()),
        unbatched=n == 1 and draw(st.booleans()),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        # the public API wants one dtype for every array, so one byte order per call
        # (mixing byte orders: test_awkward.py)
        big_endian=draw(st.booleans()),
        styles={a: draw(array_styles(per_array_byte_order=False))
                for a in ("x", "w", "b", "g")},
        kind=draw(st.sampled_from(["normal", "wide", "int", "nonfinite"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_public(nsp, case):
    conv, conv_dx, conv_dw = PUBLIC[nsp]
    dtype = np.dtype(case["dtype"])
    rng = np.random.default_rng(case["seed"])
    sty, be, kind = case["styles"], case["big_endian"], case["kind"]
    x_shape = (case["n"], case["c_in"]) + case["size"]
    w_shape = (case["c_out"], case["c_in"] // case["groups"]) + case["kernel"]
    x = build(rng, x_shape, dtype, sty["x"], kind, be)
    w = build(rng, w_shape, dtype, sty["w"], kind, be)
    b = build(rng, (case["c_out"],), dtype, sty["b"], kind, be) if case["bias"] else None
    kw = dict(stride=case["stride_arg"], padding=case["padding"],
              dilation=case["dilation_arg"], groups=case["groups"])
    geo = (case["stride"], case["pads"], case["dilation"], case["groups"])
    o = out_shape(case["size"], case["kernel"], case["stride"], case["pads"], case["dilation"])

    if o is None:
        event("kernel span exceeds the padded input: ConvxValueError")
        g = np.zeros((case["n"], case["c_out"]) + (1,) * nsp, w.dtype)  # w's byte order
        for call in (lambda: conv(x, w, b, **kw), lambda: conv_dx(x_shape, w, g, **kw),
                     lambda: conv_dw(x, w_shape, g, **kw)):
            with pytest.raises(ConvxValueError, match="kernel spans"):
                call()
        return
    y_shape = (case["n"], case["c_out"]) + o
    event("valid geometry" + (", empty result" if math.prod(y_shape) == 0 else ""))
    g = build(rng, y_shape, dtype, sty["g"], kind, be)
    keep = Unchanged(x, w, b, g)

    if case["unbatched"]:
        y = conv(x[0], w, b, **kw)
        assert y.shape == y_shape[1:]
        y = y[None]
    else:
        y = conv(x, w, b, **kw)
    dx = conv_dx(x_shape, w, g, **kw)
    dw = conv_dw(x, w_shape, g, **kw)
    g0 = np.zeros(y_shape, w.dtype)
    dx0 = conv_dx(x_shape, w, g0, **kw)
    dw0 = conv_dw(x, w_shape, g0, **kw)
    keep.check(y, dx, dw, dx0, dw0)

    ref = Ref(x, w, g, b, *geo)
    assert_close(y, ref.y, ref.y_abs, ref.n_y, dtype, "forward")
    assert_close(dx, ref.dx, ref.dx_abs, ref.n_dx, dtype, "input grad")
    assert_close(dw, ref.dw, ref.dw_abs, ref.n_dw, dtype, "weight grad")
    if all_finite(x, w, b, g):
        assert_adjoint(y, g, x, dx, w, dw, ref, dtype, bias=b)
        assert_zero(dx0, x_shape, dtype, "input grad of zero")
        assert_zero(dw0, w_shape, dtype, "weight grad of zero")
    else:
        # 0 * inf: a zero output gradient gives NaN where an infinite weight
        # (input) meets an existing output position (a padded or real input)
        event("non-finite values")
        ref0 = Ref(x, w, g0, b, *geo)
        assert_close(dx0, ref0.dx, ref0.dx_abs, ref0.n_dx, dtype, "input grad of zero")
        assert_close(dw0, ref0.dw, ref0.dw_abs, ref0.n_dw, dtype, "weight grad of zero")


@given(case=public_cases(1))
def test_public_conv1d_forward_input_grad_weight_grad(case):
    run_public(1, case)


@given(case=public_cases(2))
def test_public_conv2d_forward_input_grad_weight_grad(case):
    run_public(2, case)


# ==========================================================================
# Notebook names.  Their convolution is the notebook's 'same' cross-correlation:
# stride 1, no dilation, one group, k // 2 zeros before and k - 1 - k // 2
# after along each axis.  Each family of names maps onto the canonical
# (N, C, *S) / (F, C, *K) layout; the tables below are shared with
# test_awkward.py.
# ==========================================================================

# kind: (axes of the input, axes of the param, spatial dims)
NB_KINDS = {
    "1d": ("L", "K", 1),
    "1d_batch": ("NL", "K", 1),
    "2d_obs": ("HW", "KK", 2),
    "2d": ("NHW", "KK", 2),
    "ch_obs": ("CHW", "IOKK", 2),
    "ch": ("NCHW", "IOKK", 2),
}

# name: (kind, pass); pass is fwd, sum, dx or dw
NB_NAMES = {
    "conv_1d": ("1d", "fwd"), "conv_1d_sum": ("1d", "sum"),
    "_input_grad_1d": ("1d", "dx"), "_param_grad_1d": ("1d", "dw"),
    "conv_1d_batch": ("1d_batch", "fwd"), "conv_1d_batch_sum": ("1d_batch", "sum"),
    "input_grad_1d_batch": ("1d_batch", "dx"), "param_grad_1d_batch": ("1d_batch", "dw"),
    "_compute_output_obs_2d": ("2d_obs", "fwd"), "_compute_grads_obs_2d": ("2d_obs", "dx"),
    "_compute_output_2d": ("2d", "fwd"), "_compute_output_2d_sum": ("2d", "sum"),
    "_compute_grads_2d": ("2d", "dx"), "_param_grad_2d": ("2d", "dw"),
    "_compute_output_obs": ("ch_obs", "fwd"), "_compute_grads_obs": ("ch_obs", "dx"),
    "_output": ("ch", "fwd"), "_compute_output_sum": ("ch", "sum"),
    "_input_grad": ("ch", "dx"), "_param_grad": ("ch", "dw"),
}
NB_FAMILY = {kind: {p: name for name, (k, p) in NB_NAMES.items() if k == kind}
             for kind in NB_KINDS}
# the one-image kinds have no weight gradient of their own: the batched name
# on a batch of one stands in
NB_FAMILY["2d_obs"]["dw"] = "_param_grad_2d"
NB_FAMILY["ch_obs"]["dw"] = "_param_grad"


def nb_shapes(kind, n, c_in, c_out, size, kernel):
    """Notebook shapes of (input, param, output) for one kind."""
    ax, pax, _ = NB_KINDS[kind]
    dims = dict(N=n, C=c_in, L=size[0], H=size[0], W=size[-1])
    x = tuple(dims[a] for a in ax)
    y = tuple(c_out if a == "C" else dims[a] for a in ax)
    p = kernel if pax in ("K", "KK") else (c_in, c_out) + kernel
    return x, tuple(p), y


def nb_to_canonical(kind, a, what):
    """A notebook input/output (``what`` 'x') or param ('w') as (N, C, *S) / (F, C, *K)."""
    if what == "w":
        return a.transpose(1, 0, 2, 3) if kind.startswith("ch") else a[None, None]
    return {"1d": lambda: a[None, None], "1d_batch": lambda: a[:, None],
            "2d_obs": lambda: a[None, None], "2d": lambda: a[:, None],
            "ch_obs": lambda: a[None], "ch": lambda: a}[kind]()


def nb_from_canonical(kind, a, what):
    """Inverse of nb_to_canonical, for reference results."""
    if what == "w":
        return a.transpose(1, 0, 2, 3) if kind.startswith("ch") else a[0, 0]
    return {"1d": lambda: a[0, 0], "1d_batch": lambda: a[:, 0], "2d_obs": lambda: a[0, 0],
            "2d": lambda: a[:, 0], "ch_obs": lambda: a[0], "ch": lambda: a}[kind]()


def nb_geometry(kernel):
    """(stride, pads, dilation, groups) of the notebook's 'same' convolution."""
    nsp = len(kernel)
    return (1,) * nsp, [(k // 2, k - 1 - k // 2) for k in kernel], (1,) * nsp, 1


def nb_call(name, x, p, g=None):
    """Call a notebook name with the notebook's argument order.

    ``g`` is the output gradient; the 1-D batch gradients take none (the
    notebook differentiates ``conv_1d_batch_sum``, so it is all ones), and
    ``_input_grad_1d`` / ``_param_grad_1d`` treat None as ones.  The one-image
    kinds' weight gradient is the batched name on a batch of one.
    """
    kind, pass_ = NB_NAMES[name]
    f = getattr(convx, name)
    if pass_ in ("fwd", "sum"):
        return f(x, p)
    if kind == "1d":
        return f(x, p) if g is None else f(x, p, g)
    if kind == "1d_batch":
        return f(x, p)
    return f(x, g, p)


def nb_dw_call(kind, x, p, g=None):
    name = NB_FAMILY[kind]["dw"]
    if kind in ("2d_obs", "ch_obs"):
        return getattr(convx, name)(x[None], g[None], p)
    return nb_call(name, x, p, g)


def nb_reference(kind, x, p, g):
    """Ref for notebook arrays (g=None: ones, as the notebook's defaults)."""
    _, pax, _ = NB_KINDS[kind]
    kernel = p.shape if pax in ("K", "KK") else p.shape[2:]
    xc, wc = nb_to_canonical(kind, x, "x"), nb_to_canonical(kind, p, "w")
    gc = None if g is None else nb_to_canonical(kind, g, "x")
    # 'same': the output has the input's size, an empty one included
    return Ref(xc, wc, gc, None, *nb_geometry(tuple(kernel)), o=xc.shape[2:])


@st.composite
def nb_cases(draw, kind):
    nsp = NB_KINDS[kind][2]
    arrays = ("x", "p", "g")
    return dict(
        n=draw(rarely_zero(3)), c_in=draw(rarely_zero(4)), c_out=draw(rarely_zero(4)),
        size=tuple(draw(rarely_zero(12)) for _ in range(nsp)),
        kernel=tuple(draw(st.integers(1, 5)) for _ in range(nsp)),
        # _input_grad_1d / _param_grad_1d: output_grad given, or the default (ones)
        explicit_g=kind != "1d" or draw(st.booleans()),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        styles={a: draw(array_styles()) for a in arrays},
        kind=draw(st.sampled_from(["normal", "wide", "int", "nonfinite"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_notebook(kind, case):
    fam = NB_FAMILY[kind]
    dtype = np.dtype(case["dtype"])
    rng = np.random.default_rng(case["seed"])
    x_shape, p_shape, y_shape = nb_shapes(kind, case["n"], case["c_in"], case["c_out"],
                                          case["size"], case["kernel"])
    sty, vk = case["styles"], case["kind"]
    x = build(rng, x_shape, dtype, sty["x"], vk)
    p = build(rng, p_shape, dtype, sty["p"], vk)
    if kind == "1d_batch":
        g = None  # its gradients differentiate conv_1d_batch_sum: g is all ones
    else:
        g = build(rng, y_shape, dtype, sty["g"], vk)
    g_call = g if case["explicit_g"] else None
    g_used = np.ones(y_shape, dtype) if g_call is None else g
    event("empty result" if math.prod(y_shape) == 0 else "non-empty result")
    keep = Unchanged(x, p, g)

    y = nb_call(fam["fwd"], x, p)
    with np.errstate(invalid="ignore"):  # np.sum of inf and -inf warns, as in the notebook
        s = nb_call(fam["sum"], x, p) if "sum" in fam else None
    dx = nb_call(fam["dx"], x, p, g_call)
    dp = nb_dw_call(kind, x, p, g_call)
    zeros = []
    if kind != "1d_batch":  # the 1-D batch gradients have no output-gradient argument
        g0 = np.zeros(y_shape, dtype)
        zeros = [(nb_call(fam["dx"], x, p, g0), x_shape, "input grad of zero"),
                 (nb_dw_call(kind, x, p, g0), p_shape, "param grad of zero")]
    keep.check(y, dx, dp, *[z[0] for z in zeros])

    ref = nb_reference(kind, x, p, g_used)

    def back(a, what="x"):
        return nb_from_canonical(kind, a, what)

    assert_close(y, back(ref.y), back(ref.y_abs), ref.n_y, dtype, fam["fwd"])
    if s is not None:
        assert_sum_close(s, ref.y, ref.y_abs, ref.n_y, dtype, fam["sum"])
    assert_close(dx, back(ref.dx), back(ref.dx_abs), ref.n_dx, dtype, fam["dx"])
    assert_close(dp, back(ref.dw, "w"), back(ref.dw_abs, "w"), ref.n_dw, dtype, fam["dw"])
    if all_finite(x, p, g):
        assert_adjoint(y, g_used, x, dx, p, dp, ref, dtype)
        for got, shape, what in zeros:
            assert_zero(got, shape, dtype, what)
    elif zeros:
        event("non-finite values")
        ref0 = nb_reference(kind, x, p, np.zeros(y_shape))
        (dx0, _, _), (dp0, _, _) = zeros
        assert_close(dx0, back(ref0.dx), back(ref0.dx_abs), ref0.n_dx, dtype, "input grad of 0")
        assert_close(dp0, back(ref0.dw, "w"), back(ref0.dw_abs, "w"), ref0.n_dw, dtype,
                     "param grad of 0")


@pytest.mark.parametrize("kind", list(NB_KINDS))
@given(data=st.data())
def test_notebook_family(kind, data):
    """One example runs the forward, the sum (if any), the input gradient and
    the parameter gradient of one family of notebook names."""
    case = data.draw(nb_cases(kind), label="case")
    note(f"functions: {NB_FAMILY[kind]}")
    run_notebook(kind, case)


# ==========================================================================
# The reference itself, against the notebook-only reference in tests/reference.py
# (an independent implementation of the 'same' convolution)
# ==========================================================================

def test_reference_agrees_with_the_notebook_reference():
    import reference as nbref  # tests/reference.py (conftest.py puts tests/ on sys.path)
    rng = np.random.default_rng(4)
    for _ in range(40):
        n, ci, co = rng.integers(0, 3), rng.integers(0, 4), rng.integers(0, 4)
        h, w = rng.integers(1, 8, size=2)
        kh, kw = rng.integers(1, 6, size=2)
        x = rng.standard_normal((n, ci, h, w))
        p = rng.standard_normal((ci, co, kh, kw))
        g = rng.standard_normal((n, co, h, w))
        ref = nb_reference("ch", x, p, g)
        np.testing.assert_allclose(ref.y, nbref.forward(x, p), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ref.dx, nbref.input_grad(x.shape, p, g), rtol=1e-12,
                                   atol=1e-12)
        np.testing.assert_allclose(ref.dw.transpose(1, 0, 2, 3), nbref.param_grad(x, g, p.shape),
                                   rtol=1e-12, atol=1e-12)
