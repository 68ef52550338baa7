"""The FFT algorithm (method='fft'): every pass against the reference within
its documented error bound, its fallback on non-finite values, the same bits
for any thread count, working memory that does not grow with the batch, and
'auto' choosing it where it pays.

The bound (docs/design.md, "Accuracy"): with u the unit roundoff of the
compute dtype and Lh x Lw the transform's tile, every element of

* the forward pass, at (n, f): |error| <= 2u log2(2 Lh Lw) sum over c in f's
  group of ||x[n, c]|| ||w[f, c]||, plus u |value| for the final rounding;
* the input gradient, at (n, c): the same with g[n, f] for x[n, c];
* the weight gradient, at (f, c): 2u log2(2 Lh Lw) sqrt(overlap) sum over n
  of ||x[n, c]|| ||g[n, f]||, where overlap (the tiles an input value lies
  in) is ceil(Lh / Th) ceil(Lw / Tw);

norms being 2-norms over the image (over the unpadded values).  Unlike a
direct sum's, the error of one element is not bounded by its own terms: a
transform spreads rounding over its whole tile.
"""
import functools
import math

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import convx
import reference
from convx import ConvxValueError, _engine, _fft
from test_fuzz import EPS64, Ref

PASSES = ("forward", "input grad", "weight grad")


def _public(nsp):
    if nsp == 1:
        return convx.conv1d, convx.conv1d_input_grad, convx.conv1d_weight_grad
    return convx.conv2d, convx.conv2d_input_grad, convx.conv2d_weight_grad


def _as4(shape):
    return shape if len(shape) == 4 else shape[:2] + (1,) + shape[2:]


def _plan(pass_, x, w, y_shape, stride, pads, dilation, groups):
    """The engine's plan of this call with method='fft': (who, algorithm,
    shape, (the FFT's own arguments, the fallback plan))."""
    two = (lambda v: (1,) + tuple(v)) if x.ndim == 3 else tuple
    flat = tuple(p for pair in pads for p in pair)
    pads4 = (0, 0) + flat if x.ndim == 3 else flat
    args = ("t", _as4(x.shape), _as4(w.shape))
    if pass_ == "forward":
        return _engine.forward_plan(*args, two(stride), pads4, two(dilation), groups,
                                    method="fft", dtype=x.dtype)
    make = _engine.input_grad_plan if pass_ == "input grad" else _engine.weight_grad_plan
    return make(*args, _as4(y_shape), two(stride), pads4, two(dilation), groups,
                method="fft", dtype=x.dtype)


def _geometry(pass_, x, w, y_shape, stride, pads, dilation, groups):
    """The FFT plan's tiling for this call (convx._fft.Geometry)."""
    plan = _plan(pass_, x, w, y_shape, stride, pads, dilation, groups)
    assert plan[1].name == "fft"
    return plan[3][0][0]


def fft_bound(pass_, x, w, g, geometry, groups):
    """The documented bound in units of u (``_check`` multiplies by the
    dtype's u), broadcastable against the pass's result."""
    x, w, g = (a.astype(np.float64) for a in (x, w, g))
    nsp = x.ndim - 2
    axes = tuple(range(2, 2 + nsp))
    xn, wn, gn = (np.sqrt((a * a).sum(axis=axes)) for a in (x, w, g))
    f, cg = w.shape[:2]
    fg = f // groups
    lh, lw = geometry.L
    scale = 2 * math.log2(2 * lh * lw)
    if pass_ == "forward":
        s = np.concatenate([xn[:, i * cg:(i + 1) * cg] @ wn[i * fg:(i + 1) * fg].T
                            for i in range(groups)], axis=1)
    elif pass_ == "input grad":
        s = np.concatenate([gn[:, i * fg:(i + 1) * fg] @ wn[i * fg:(i + 1) * fg]
                            for i in range(groups)], axis=1)
    else:
        overlap = math.prod(-(-L // T) for L, T in zip(geometry.L, geometry.T))
        s = np.concatenate([gn[:, i * fg:(i + 1) * fg].T @ xn[:, i * cg:(i + 1) * cg]
                            for i in range(groups)], axis=0) * math.sqrt(overlap)
    return scale * s.reshape(s.shape + (1,) * nsp)


def _check(pass_, got, want, bound, ref_bound, dtype, algorithm="FFT"):
    """``want`` is the float64 reference, whose own error is at most
    ``ref_bound`` (n eps64 sum|terms|, as test_fuzz.py counts it); ``bound``
    the algorithm's, in units of u.  Returns the worst error / tolerance."""
    u = float(np.finfo(dtype).eps) / 2
    atol = bound * u + u * np.abs(want) + ref_bound + 1e-300
    err = np.abs(got.astype(np.float64) - want)
    assert got.dtype == dtype and got.shape == want.shape, pass_
    bad = ~(err <= atol)
    assert not bad.any(), (f"{pass_}: {bad.sum()} of {bad.size} beyond the {algorithm} bound; "
                           f"worst error / bound {np.max(err / atol):.3g}")
    return float(np.max(err / atol))


def run_case(nsp, n, cg, fg, groups, size, kernel, stride, pads, dilation, dtype, seed,
             scale=1.0):
    rng = np.random.default_rng(seed)
    conv, conv_dx, conv_dw = _public(nsp)
    x = (rng.standard_normal((n, cg * groups) + size) * scale).astype(dtype)
    w = rng.standard_normal((fg * groups, cg) + kernel).astype(dtype)
    b = rng.standard_normal(fg * groups).astype(dtype)
    kw = dict(stride=stride, padding=tuple(p for p, _ in pads), dilation=dilation,
              groups=groups, method="fft")
    y = conv(x, w, b, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = conv_dx(x.shape, w, g, **kw)
    dw = conv_dw(x, w.shape, g, **kw)
    ref = Ref(x, w, g, b, stride, list(pads), dilation, groups)
    want = {"forward": (ref.y, ref.y_abs, ref.n_y), "input grad": (ref.dx, ref.dx_abs, ref.n_dx),
            "weight grad": (ref.dw, ref.dw_abs, ref.n_dw)}
    worst = 0.0
    for pass_, got in zip(PASSES, (y, dx, dw)):
        geometry = _geometry(pass_, x, w, y.shape, stride, pads, dilation, groups)
        bound = fft_bound(pass_, x, w, g, geometry, groups)
        value, magnitude, nterms = want[pass_]
        worst = max(worst, _check(pass_, got, value, bound, nterms * EPS64 * magnitude,
                                  np.dtype(dtype)))
    return worst


@st.composite
def fft_cases(draw):
    nsp = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kernel = tuple(draw(st.integers(1, 9)) for _ in range(nsp))
    if max(kernel) == 1:   # the FFT needs a kernel spanning more than one position
        kernel = kernel[:-1] + (draw(st.integers(2, 9)),)
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    stride = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(nsp))
    pads = tuple((p, p) for p in (draw(st.integers(0, 6)) for _ in range(nsp)))
    top = 40 if nsp == 2 else 300
    size = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p[0]), top))
                 for k, d, p in zip(kernel, dilation, pads))
    return dict(nsp=nsp, n=draw(st.integers(1, 3)), cg=draw(st.integers(1, 3)),
                fg=draw(st.integers(1, 3)), groups=groups, size=size, kernel=kernel,
                stride=stride, pads=pads, dilation=dilation,
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**32 - 1)),
                scale=draw(st.sampled_from([1e-3, 1.0, 1e3])))


@given(case=fft_cases())
def test_every_pass_within_the_bound(case):
    """hypothesis: strides, dilation, groups, padding wider than the kernel,
    kernels one row tall or one column wide, images cut into tiles."""
    note(repr(case))
    run_case(**case)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    # (n, cg, fg, groups, size, kernel, stride, pads, dilation)
    (2, 1, 1, 1, (300, 280), (31, 31), (1, 1), ((15, 15), (15, 15)), (1, 1)),  # tiles
    (3, 1, 1, 1, (20000,), (255,), (1,), ((127, 127),), (1,)),                 # overlap-save
    (2, 3, 4, 1, (64, 64), (11, 11), (1, 1), ((5, 5), (5, 5)), (1, 1)),        # channel mixing
    (2, 2, 2, 4, (50, 47), (9, 1), (2, 1), ((4, 4), (0, 0)), (1, 1)),          # one column wide
    (1, 2, 3, 1, (4000,), (63,), (3,), ((0, 0),), (2,)),                       # strided, dilated
])
def test_large_kernels_within_the_bound(case, dtype):
    run_case(len(case[4]), *case, dtype, seed=7)


def test_tiles_are_cut():
    """The first case above is cut into several tiles (the bound is tested
    where overlap-save actually happens), the 1-D one along its length."""
    x = np.zeros((2, 1, 300, 280))
    w = np.zeros((1, 1, 31, 31))
    g = _geometry("forward", x, w, (2, 1, 300, 280), (1, 1), ((15, 15), (15, 15)), (1, 1), 1)
    assert g.tiles[0] * g.tiles[1] > 1, g
    x1 = np.zeros((3, 1, 20000))
    g1 = _geometry("forward", x1, np.zeros((1, 1, 255)), (3, 1, 20000), (1,), ((127, 127),),
                   (1,), 1)
    assert g1.L[0] == 1 and g1.tiles[1] > 1, g1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_take_the_other_algorithm(dtype, where, value):
    """A non-finite value would spread over its whole tile through the
    transform: such a call runs the algorithm 'auto' would take without the
    FFT, bit for bit, and so follows the rule of docs/reliability.md."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 40, 40)).astype(dtype)
    w = rng.standard_normal((1, 1, 15, 15)).astype(dtype)
    g = rng.standard_normal((2, 1, 40, 40)).astype(dtype)
    {"input": x, "weight": w, "grad_output": g}[where][0, 0, 3, 4] = value
    calls = {
        "forward": lambda m: convx.conv2d(x, w, padding=7, method=m),
        "input grad": lambda m: convx.conv2d_input_grad(x.shape, w, g, padding=7, method=m),
        "weight grad": lambda m: convx.conv2d_weight_grad(x, w.shape, g, padding=7, method=m),
    }
    uses = {"forward": ("input", "weight"), "input grad": ("weight", "grad_output"),
            "weight grad": ("input", "grad_output")}
    for pass_, call in calls.items():
        got = call("fft")
        if where in uses[pass_]:
            fallback = _plan(pass_, x, w, g.shape, (1, 1), ((7, 7), (7, 7)), (1, 1), 1)[3][1][1]
            assert fallback.name != "fft"
            want = call(fallback.method)
            np.testing.assert_array_equal(got, want, err_msg=pass_)
            assert not np.isfinite(got).all(), pass_
        else:
            assert np.isfinite(got).all(), pass_   # this pass never reads the value


def _fft_passes(x, w, g, padding):
    return (convx.conv2d(x, w, padding=padding, method="fft"),
            convx.conv2d_input_grad(x.shape, w, g, padding=padding, method="fft"),
            convx.conv2d_weight_grad(x, w.shape, g, padding=padding, method="fft"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_magnitudes_near_the_largest_and_smallest_scale_exactly(dtype):
    """The transforms' sums grow with the tile: values far below the dtype's
    largest once overflowed in them, and every output came back NaN, where
    the true result was finite.  Each array now enters the transforms scaled
    by a power of two, exact: scaling the inputs by 2**k scales each pass's
    result by 2**k bit for bit, near the largest and the smallest normal
    numbers alike, so the bound tested above holds at every magnitude."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 2, 48, 40)).astype(dtype)
    w = rng.standard_normal((3, 2, 13, 11)).astype(dtype)
    g = rng.standard_normal((2, 3, 48, 40)).astype(dtype)
    y, dx, dw = _fft_passes(x, w, g, (6, 5))
    info = np.finfo(dtype)
    top = info.maxexp - 14   # the results stay below the largest number
    low = info.minexp + 24   # and their values above the smallest normal one
    for kx, kw, kg in ((top, 0, 0), (0, top, 0), (0, 0, top), (top, -top, 0), (low, 0, 0),
                       (0, low, low // 2)):
        xs, ws, gs = (np.ldexp(a, k).astype(dtype) for a, k in ((x, kx), (w, kw), (g, kg)))
        got = _fft_passes(xs, ws, gs, (6, 5))
        for name, a, b, k in (("forward", got[0], y, kx + kw), ("input grad", got[1], dx, kw + kg),
                              ("weight grad", got[2], dw, kx + kg)):
            assert np.isfinite(a).all(), (name, kx, kw, kg)
            np.testing.assert_array_equal(a, np.ldexp(b, k).astype(dtype),
                                          err_msg=f"{name} at 2**{(kx, kw, kg)}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auto_answers_large_finite_values(dtype):
    """A large kernel, whose 'auto' is the FFT, on finite values whose sum of
    |w| is 1, the largest near the dtype's largest: the result is finite and
    within the bound of the values scaled down (the exact algorithms give
    the same)."""
    rng = np.random.default_rng(0)
    shape, k = ((1, 1, 256, 256), 41) if dtype == np.float64 else ((1, 1, 512, 512), 63)
    w = rng.standard_normal((1, 1, k, k))
    w = (w / np.abs(w).sum()).astype(dtype)
    plan = _engine.forward_plan("t", shape, w.shape, (1, 1), (0,) * 4, (1, 1), 1,
                                dtype=np.dtype(dtype))
    assert plan[1].name == "fft"
    big = 2.0 ** (np.finfo(dtype).maxexp - 3)
    x = (rng.uniform(-1, 1, shape) * big).astype(dtype)
    got = convx.conv2d(x, w)
    want = convx.conv2d(x, w, method="gemm")
    assert np.isfinite(got).all() and np.isfinite(want).all()
    scaled = convx.conv2d((x / big).astype(dtype), w, method="fft")
    np.testing.assert_array_equal(got, (scaled.astype(np.float64) * big).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_that_overflow_take_the_other_algorithm(dtype):
    """Where the true result overflows, the FFT's does too: such a call runs
    the table's other choice, bit for bit, as a non-finite input does."""
    big = float(np.finfo(dtype).max) / 4
    x = np.full((1, 1, 40, 40), big, dtype)
    x[0, 0, :20] = 1.0
    w = np.ones((1, 1, 15, 15), dtype)
    g = np.full((1, 1, 40, 40), big, dtype)
    got = _fft_passes(x, w, g, 7)
    methods = [_plan(pass_, x, w, g.shape, (1, 1), ((7, 7), (7, 7)), (1, 1), 1)[3][1][1].method
               for pass_ in PASSES]   # each fallback's
    assert "fft" not in methods
    want = (convx.conv2d(x, w, padding=7, method=methods[0]),
            convx.conv2d_input_grad(x.shape, w, g, padding=7, method=methods[1]),
            convx.conv2d_weight_grad(x, w.shape, g, padding=7, method=methods[2]))
    for name, a, b in zip(PASSES, got, want):
        assert not np.isfinite(a).all(), name
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("pass_", PASSES)
def test_transforms_out_of_memory_name_the_call(pass_, monkeypatch):
    """Working memory of the transforms that NumPy cannot allocate (their
    arrays grow with the kernel's span: a forced FFT at dilation 2**31 asked
    for 96 GiB) is ConvxMemoryError naming the function and the kernel's
    argument, and what to do, not NumPy's bare MemoryError."""
    def refuse(*args, **kwargs):
        raise MemoryError("Unable to allocate 96.0 GiB for an array")
    monkeypatch.setattr(_fft, "_rfft", refuse)
    x, w = np.ones((1, 2, 40)), np.ones((3, 2, 9))
    g = np.ones((1, 3, 40))
    call = {"forward": lambda: convx.conv1d(x, w, padding=4, method="fft"),
            "input grad": lambda: convx.conv1d_input_grad(x.shape, w, g, padding=4,
                                                          method="fft"),
            "weight grad": lambda: convx.conv1d_weight_grad(x, w.shape, g, padding=4,
                                                            method="fft")}[pass_]
    with pytest.raises(convx.ConvxMemoryError, match=r"^conv1d(_input_grad|_weight_grad)?\(\): "
                       r"with argument '(weight|weight_shape)' .*96\.0 GiB.*method='direct'"):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_for_any_thread_count(dtype, default_threads):
    """Each transform and each bin of a product is computed by one thread."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 70, 65)).astype(dtype)
    w = rng.standard_normal((4, 2, 13, 13)).astype(dtype)
    g = rng.standard_normal((3, 4, 70, 65)).astype(dtype)
    results = []
    for threads in range(1, convx._threads._MAX_THREADS + 1):
        convx.set_num_threads(threads)
        results.append((convx.conv2d(x, w, padding=6, method="fft"),
                        convx.conv2d_input_grad(x.shape, w, g, padding=6, method="fft"),
                        convx.conv2d_weight_grad(x, w.shape, g, padding=6, method="fft")))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_working_memory_does_not_grow_with_the_batch():
    """Images are transformed in chunks of a size fixed by the shapes of one
    image: a batch of 100,000 plans the same chunk as a batch of 1,000."""
    chunks = []
    for n in (1000, 100_000):
        plan = _engine.forward_plan("t", (n, 1, 64, 64), (1, 1, 15, 15), (1, 1), (7,) * 4,
                                    (1, 1), 1, method="fft", dtype=np.float32)
        g = plan[3][0][0]
        chunks.append(g.images)
        assert g.images * 2 * g.tiles[0] * g.tiles[1] * g.L[0] * g.L[1] <= _fft._CHUNK_VALUES
    assert chunks[0] == chunks[1] < 1000


@pytest.mark.parametrize("x_shape, w_shape, padding, fft", [
    ((2, 1, 512, 512), (1, 1, 63, 63), 31, True),     # a large 2-D filter
    ((4, 1, 30000), (1, 1, 2047), 1023, True),        # a long 1-D filter (x86-64-v4's
    #                                                   depthwise kernel wins at 511 taps)
    ((8, 16, 32, 32), (16, 16, 3, 3), 1, False),      # a 3x3 layer
    ((8, 4, 1000), (8, 4, 5), 2, False),              # a short 1-D filter
    # few images, channels mixed, 9x9: the direct and channels kernels took
    # 0.24-0.35x the FFT's time in the input gradient (2 threads, x86-64-v4),
    # where the FFT's model had left out the kernel's spectra
    ((1, 8, 64, 64), (16, 8, 9, 9), 4, False),
    ((2, 8, 32, 32), (32, 8, 9, 9), 4, False),
])
@pytest.mark.parametrize("tuning", ["default", "zen4"])
def test_auto_takes_the_fft_where_it_pays(x_shape, w_shape, padding, fft, tuning, monkeypatch):
    """Under each core's cost constants (_engine._tuning), whatever CPU runs
    the test."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    monkeypatch.setattr(_engine, "PLANS", {})
    nsp = len(x_shape) - 2
    st_, pads, dl = (1, 1), (padding,) * 4, (1, 1)
    if nsp == 1:
        pads = (0, 0, padding, padding)
    for dtype in (np.float32, np.float64):
        for pass_, make in (("forward", _engine.forward_plan),
                            ("input grad", _engine.input_grad_plan),
                            ("weight grad", _engine.weight_grad_plan)):
            x4, w4 = _as4(x_shape), _as4(w_shape)
            args = (x4, w4) if pass_ == "forward" else (x4, w4, x4[:1] + w4[:1] + x4[2:])
            plan = make("t", *args, st_, pads, dl, 1, dtype=dtype)
            assert (plan[1].name == "fft") == fft, (pass_, dtype, plan[1].name)


@pytest.mark.parametrize("tuning, fft", [("default", False), ("zen4", True)])
def test_a_cores_constants_move_the_threshold(tuning, fft, monkeypatch):
    """Where the FFT starts to pay depends on the core (_fft._NS_FFT,
    _engine._NS_SCALE): on a Zen 4, (2, 1, 512, 512) 31x31 took 0.53-0.76x
    the depthwise kernel's time in the FFT, forward, where on the Xeon the
    'default' constants come from a 33x33 kernel took 1.07x."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    monkeypatch.setattr(_engine, "PLANS", {})
    for dtype in (np.float32, np.float64):
        plan = _engine.forward_plan("t", (2, 1, 512, 512), (1, 1, 31, 31), (1, 1), (15,) * 4,
                                    (1, 1), 1, dtype=dtype)
        assert (plan[1].name == "fft") == fft, (dtype, plan[1].name)


def test_method_fft_needs_a_kernel_wider_than_one_tap():
    x = np.ones((1, 2, 5, 5))
    w = np.ones((3, 2, 1, 1))
    for call in (lambda: convx.conv2d(x, w, method="fft"),
                 lambda: convx.conv2d_input_grad(x.shape, w, np.ones((1, 3, 5, 5)),
                                                 method="fft"),
                 lambda: convx.conv2d_weight_grad(x, w.shape, np.ones((1, 3, 5, 5)),
                                                  method="fft")):
        with pytest.raises(ConvxValueError, match=r"conv2d\w*\(\): argument 'method'='fft' "
                                                  r"does not apply to this call: the fft "
                                                  r"algorithm needs a kernel that spans more "
                                                  r"than one position"):
            call()
    # a dilated 1x1 kernel still spans one position; a 1x2 kernel spans two
    y = convx.conv2d(x, np.ones((3, 2, 1, 2)), method="fft")
    np.testing.assert_allclose(y, convx.conv2d(x, np.ones((3, 2, 1, 2)), method="gemm"),
                               rtol=1e-12, atol=1e-12)


def test_the_notebook_names_keep_integer_results_exact():
    """The notebook's integer results are exact below 2**53
    (docs/notebook.md): where every array is an integer array, the engine
    chooses among its exact algorithms only.  The same call in float64 takes
    the FFT, whose rounding error reached whole units here (1914 of 36864
    integers off by one, before)."""
    rng = np.random.default_rng(12)
    img = rng.integers(-2**24, 2**24, (160, 160))
    k = rng.integers(-2**21, 2**21, (51, 51))
    plan = _engine.forward_plan("t", (1, 1, 160, 160), (1, 1, 51, 51), (1, 1), (25,) * 4,
                                (1, 1), 1, dtype=np.float64)
    assert plan[1].method == "fft"      # what 'auto' takes for floats
    got = convx._compute_output_obs_2d(img, k)
    assert got.dtype == img.dtype
    padded = np.pad(img, 25)
    want = np.einsum("ijpq,pq->ij", np.lib.stride_tricks.sliding_window_view(padded, (51, 51)),
                     k)                 # int64 sums: exact (below 2**62 here)
    assert np.abs(want).max() < 2**53
    np.testing.assert_array_equal(got, want)
    # and floats still take the FFT, within its bound
    np.testing.assert_allclose(convx._compute_output_obs_2d(img.astype(float), k.astype(float)),
                               want, rtol=0, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups", [1, 2])
def test_each_image_and_filter_is_scaled_alone(dtype, groups):
    """Each image, filter and channel enters the transforms scaled by its
    own power of two: a slice 2**-120 times another (float32; 2**-1000 in
    float64) keeps its relative accuracy.  With one shift for the whole
    array such a slice became zeros and subnormal numbers in the transforms
    (3000 times the error bound, under 'auto'); its result depended on the
    other images in the batch."""
    rng = np.random.default_rng(21)
    e = 60 if dtype == np.float32 else 500
    c = 2 * groups                                  # channels in and out
    big_small = np.tile([2.0 ** e, 2.0 ** -e], c // 2)
    x = rng.standard_normal((2, c, 40, 40))
    w = rng.standard_normal((c, 2, 15, 15))
    g = rng.standard_normal((2, c, 40, 40))
    along = {axis: big_small[:n].reshape((1,) * axis + (n,) + (1,) * (3 - axis))
             for axis, n in ((0, 2), (1, 2))}
    along_c = big_small.reshape(1, c, 1, 1)
    cases = {   # pass: (arrays scaled along the axes the pass keeps apart)
        "forward": (x * along[0], w * along_c.reshape(c, 1, 1, 1) / 2**8, g),
        "input grad": (x, w * along[1] / 2**8, g * along[0]),
        "weight grad": (x * along_c, w, g * along_c / 2**8),
    }
    for pass_, (xs, ws, gs) in cases.items():
        xs, ws, gs = (a.astype(dtype) for a in (xs, ws, gs))
        if pass_ == "forward":
            got = convx.conv2d(xs, ws, padding=7, groups=groups, method="fft")
            want = reference.conv_nd(xs, ws, None, 1, (7,) * 4, 1, groups)
        elif pass_ == "input grad":
            got = convx.conv2d_input_grad(xs.shape, ws, gs, padding=7, groups=groups,
                                          method="fft")
            want = reference.conv_nd_input_grad(xs.shape, ws, gs, 1, (7,) * 4, 1, groups)
        else:
            got = convx.conv2d_weight_grad(xs, ws.shape, gs, padding=7, groups=groups,
                                           method="fft")
            want = reference.conv_nd_weight_grad(xs, ws.shape, gs, 1, (7,) * 4, 1, groups)
        for i in np.ndindex(got.shape[:2]):   # each slice against its own magnitude
            top = np.abs(want[i]).max()
            assert top > 0 and np.abs(got[i] - want[i]).max() <= 1e-4 * top, (pass_, i)


def _varied_calls(rng):
    """FFT calls of every pass whose regions differ in size, padding, stride
    (the input gradient's spread source) and dilation, 1-D and 2-D: each
    writes the kept arrays in a different place."""
    calls = []
    for nsp, size, k, pad, stride, dil, groups in [
            (2, (37, 41), 7, 3, 1, 1, 1), (2, (20, 23), 5, 0, 2, 1, 2),
            (2, (64, 30), 9, 6, 1, 2, 1), (1, (300,), 31, 15, 3, 1, 1),
            (1, (257,), 15, 0, 1, 2, 2), (2, (11, 13), 3, 2, 1, 1, 1)]:
        conv, conv_dx, conv_dw = _public(nsp)
        x = rng.standard_normal((2, 2) + size)
        w = rng.standard_normal((4, 2 // groups) + (k,) * nsp)
        kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups, method="fft")
        g = rng.standard_normal(conv(x, w, **kw).shape)
        calls += [lambda x=x, w=w, kw=kw, conv=conv: conv(x, w, **kw),
                  lambda x=x, w=w, g=g, kw=kw, f=conv_dx: f(x.shape, w, g, **kw),
                  lambda x=x, w=w, g=g, kw=kw, f=conv_dw: f(x, w.shape, g, **kw)]
    return calls


def test_kept_arrays_give_the_bits_of_fresh_ones(monkeypatch):
    """Each thread keeps the FFT's three largest working arrays between calls
    (_fft._HOLD_BYTES).  Filled with NaN before every call, so that a value
    a call forgot to zero would show, they give the bits of arrays allocated
    afresh."""
    calls = _varied_calls(np.random.default_rng(8))
    kept = []
    for call in calls:
        for raw in _fft._held.buffers.values():
            raw.fill(0xFF)            # every float a NaN
        kept.append(call())
    assert _fft._held.buffers, "no array was kept"
    monkeypatch.setattr(_fft, "_HOLD_BYTES", 0)
    for call, got in zip(calls, kept):
        np.testing.assert_array_equal(got, call())


def test_scipys_module_gives_the_bits_of_its_public_functions(monkeypatch):
    """The transforms write into the kept arrays through scipy.fft's own
    module (_fft._pf) where it is there; without it, through scipy.fft's
    public functions, which return new arrays: the same bits."""
    calls = _varied_calls(np.random.default_rng(10))
    assert _fft._pf() is not None   # (scipy 1.9 to 1.17 have it)
    into = [call() for call in calls]
    monkeypatch.setattr(_fft, "_pocket", None)
    for call, got in zip(calls, into):
        np.testing.assert_array_equal(got, call())


class _Module:
    """A stand-in for scipy's transform module whose r2c gives ``r2c``'s
    result."""

    def __init__(self, r2c):
        self.r2c_fn = r2c

    def r2c(self, a, axes, forward, inorm, out, nthreads):
        return self.r2c_fn(a, axes, forward, inorm, out, nthreads)

    def c2r(self, a, axes, lastsize, forward, inorm, out, nthreads):
        out[...] = np.fft.irfftn(a, s=(lastsize,), axes=axes) * lastsize
        return out


def test_a_module_that_differs_is_not_used():
    """_fft._checked takes scipy's module only where its transforms into a
    given array run and give scipy.fft's bits."""
    real = _fft._pf()
    assert _fft._checked(real) is real
    assert _fft._checked(None) is None
    assert _fft._checked(object()) is None                       # no r2c

    def wrong_signature(a, axes, forward, inorm, out, nthreads):
        raise TypeError("r2c(): incompatible function arguments")

    def off_by_one_ulp(a, axes, forward, inorm, out, nthreads):
        real.r2c(a, axes, forward, inorm, out, nthreads)
        out.real[0, 0, 0] = np.nextafter(out.real[0, 0, 0], np.inf)
        return out

    def not_into_out(a, axes, forward, inorm, out, nthreads):
        return real.r2c(a, axes, forward, inorm, None, nthreads)

    for r2c in (wrong_signature, off_by_one_ulp, not_into_out):
        assert _fft._checked(_Module(r2c)) is None, r2c.__name__


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((2, 1, 256, 256), (1, 1, 31, 31), 15),
    ((3, 2, 96, 96), (2, 2, 15, 15), 7),
    ((4, 1, 8000), (2, 1, 255), 127),
])
def test_a_call_allocates_its_result_and_the_kernels_spectra(x_shape, w_shape, padding):
    """After its first call, a thread's FFT works in its kept arrays: a call
    allocates its result, the kernel's spectra (one per pair of channels)
    and small arrays, not the images' transforms.  Fresh arrays of a few MiB
    are faulted in page by page wherever the C library has handed the last
    call's back to the kernel: (2, 1, 512, 512) 31x31, float64 weight
    gradient, 1,036 to 1,830 page faults a call and 1.4-1.7x the time,
    before (AMD Zen 4).  Measured by tracemalloc, which sees NumPy's data."""
    import tracemalloc
    nsp = len(x_shape) - 2
    conv, conv_dx, conv_dw = _public(nsp)
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        g = conv(x, w, padding=padding, method="fft")
        pairs = w.shape[0] * w.shape[1]
        kw = dict(padding=padding, method="fft")
        for call in (functools.partial(conv, x, w, **kw),
                     functools.partial(conv_dx, x.shape, w, g, **kw),
                     functools.partial(conv_dw, x, w.shape, g, **kw)):
            call()
            tracemalloc.start()
            try:
                got = call()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            plan = _plan("forward", x, w, g.shape, (1,) * nsp,
                         ((padding, padding),) * nsp, (1,) * nsp, 1)
            L = plan[3][0][0].L
            spectra = pairs * L[0] * (L[1] // 2 + 1) * 2 * x.itemsize
            # the images' transforms would take (before: 3.3-5.2x x's size)
            assert peak <= got.nbytes + 2 * spectra + (64 << 10), (dtype, peak, got.nbytes)


def test_a_call_from_inside_a_call_uses_arrays_of_its_own(monkeypatch):
    """A call that starts while another holds the thread's kept arrays (from
    a signal handler or a finalizer) does not write into them."""
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((2, 3, 50, 50)), rng.standard_normal((4, 3, 9, 9))
    x2, w2 = rng.standard_normal((2, 3, 60, 50)), rng.standard_normal((4, 3, 9, 9))
    want = convx.conv2d(x, w, padding=4, method="fft")
    want2 = convx.conv2d(x2, w2, padding=4, method="fft")
    inner = []
    irfft = _fft._irfft

    def interrupted(a, g, threads, out=None):
        if not inner:   # once, between the products and their inverse transform
            inner.append(None)
            inner[0] = convx.conv2d(x2, w2, padding=4, method="fft")
        return irfft(a, g, threads, out)
    monkeypatch.setattr(_fft, "_irfft", interrupted)
    got = convx.conv2d(x, w, padding=4, method="fft")
    np.testing.assert_array_equal(inner[0], want2)
    np.testing.assert_array_equal(got, want)


def test_kept_arrays_are_bounded_and_per_thread(monkeypatch):
    """An array larger than _HOLD_BYTES is not kept; threads keep their own."""
    import threading
    monkeypatch.setattr(_fft, "_HOLD_BYTES", 1 << 16)
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((2, 2, 200, 200)), rng.standard_normal((2, 2, 15, 15))
    want = convx.conv2d(x, w, padding=7, method="fft")
    results, kept = {}, {}

    def work(i):
        results[i] = convx.conv2d(x, w, padding=7, method="fft")
        kept[i] = dict(_fft._held.buffers)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_array_equal(results[i], want)
        assert all(raw.nbytes <= (1 << 16) + _fft._ALIGN for raw in kept[i].values())
    ids = [id(raw) for i in range(4) for raw in kept[i].values()]
    assert len(ids) == len(set(ids)), "two threads share a kept array"
