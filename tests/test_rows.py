"""The rows kernel (_rows.h: vectors along the output rows, source rows
outside the image no terms), which takes the input gradient of LeNet-like
layers and both passes of depthwise 5x5 and 7x7 layers on small images:
right against the reference on every geometry it takes (forced through
_engine.ROWS, including those 'auto' leaves to others), at every
instruction-set level, the same bits for any thread count (and, on a
depthwise layer, as the depthwise kernel), non-finite weights by the
GEMM or the depthwise kernel, and chosen where its rule says."""
import numpy as np
import pytest

import convx
import reference as ref
from conftest import at_each_thread_count  # (tests/conftest.py)
from convx import _core, _engine

CASES = [  # (x shape, filters, K, padding (per side), groups)
    ((64, 6, 14, 14), 16, 5, 0, 1),        # LeNet's C3
    ((3, 4, 10, 10), 6, 5, 0, 1),           # 6 output rows: two bands, overlapping
    ((2, 3, 8, 8), 5, 5, 0, 1),             # 4 output rows of the forward pass
    ((2, 2, 4, 13), 3, 5, 2, 1),            # 4 input rows: one band
    ((3, 5, 9, 30), 7, 7, 3, 1),            # 30 wide: 4 vectors of doubles, the last overlapping
    ((2, 3, 10, 25), 4, 5, 2, 1),           # 25 wide: 4 vectors of doubles, one lane new
    ((2, 4, 12, 7), 4, 7, (2, 1, 5, 0), 1),  # asymmetric, a crop (padding > K - 1)
    ((2, 8, 11, 9), 6, 5, (4, 3, 1, 2), 2),  # groups
    ((4, 6, 7, 3), 9, 5, 2, 3),             # rows of 3: narrower than any vector
    ((2, 3, 6, 24), 4, 5, 0, 1),            # rows of 24: 3 vectors of doubles
    ((2, 3, 8, 32), 4, 5, 2, 1),            # rows of 32 (float64's widest at x86-64-v4)
    ((2, 3, 8, 33), 4, 5, 2, 1),            # 33: wider than float64's widest
    ((1, 2, 30, 48), 3, 7, 3, 1),           # rows of 48 (float32's widest)
    ((5, 1, 12, 12), 2, 5, 0, 1),           # one channel: its filters in a pair
    ((3, 12, 9, 9), 20, 5, 2, 4),           # 5 filters a group: pairs and a single one
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", [4, 3, 1])
def test_rows_against_the_reference(case, dtype, isa, monkeypatch):
    xs, f, k, padding, groups = case
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "ROWS", True)
    level = _core.set_isa(isa)
    try:
        pads = padding if isinstance(padding, tuple) else ref.pads4(padding)
        rng = np.random.default_rng(sum(xs) + f)
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal((f, xs[1] // groups, k, k)).astype(dtype)
        oh = xs[2] + pads[0] + pads[1] - k + 1
        ow = xs[3] + pads[2] + pads[3] - k + 1
        g = rng.standard_normal((xs[0], f, oh, ow)).astype(dtype)
        plan = _engine.input_grad_plan("t", x.shape, w.shape, g.shape, (1, 1), pads, (1, 1),
                                       groups, kernel_arg="weight", dtype=dtype)
        fits = xs[3] <= _core.rows_max_width(np.dtype(dtype).itemsize)
        assert (plan[1].name == "rows") == fits, (plan[1].name, level)
        want = ref.conv_nd_input_grad(x.shape, w, g, 1, pads, 1, groups)
        tol = 2e-5 if dtype == np.float32 else 1e-12
        # the engine's run (the public API pads both sides alike; the engine
        # takes each side's own, as the notebook's even kernels do)
        runs = at_each_thread_count(lambda: _engine.input_grad_run(plan, w, g))
        for dx in runs:
            assert dx.dtype == dtype and dx.shape == x.shape
            np.testing.assert_allclose(dx, want, rtol=tol, atol=tol * np.abs(want).max())
            assert np.array_equal(dx, runs[0])
    finally:
        _core.set_isa(4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_bits_do_not_depend_on_the_pieces(dtype, monkeypatch):
    """Each value sums bias, then the channels, tap rows and tap columns in
    order, whatever the band or the piece of the filters it is computed in:
    a batch of 1 (16 pieces of the filters) and of 40 (one piece) give the
    same bits for the same image."""
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "ROWS", True)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 6, 5, 5)).astype(dtype)
    g = rng.standard_normal((40, 32, 10, 10)).astype(dtype)
    whole = convx.conv2d_input_grad((40, 6, 14, 14), w, g)
    one = convx.conv2d_input_grad((1, 6, 14, 14), w, g[7:8])
    assert np.array_equal(one[0], whole[7])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_rows_nonfinite_weights_take_the_gemm(bad, monkeypatch):
    """The kernel multiplies grad_output's zero columns by every weight:
    a non-finite weight goes to the GEMM, which meets only real values
    (docs/reliability.md, section 8)."""
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "ROWS", True)
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 6, 5, 5))
    w[3, 2, 4, 0] = bad
    g = rng.standard_normal((2, 16, 10, 10))
    got = convx.conv2d_input_grad((2, 6, 14, 14), w, g)
    want = ref.conv_nd_input_grad((2, 6, 14, 14), w, g)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)
    # the same weights with the bad value made finite take the kernel: its
    # zero columns times the weight would have made every row of channel 2 NaN
    assert np.isnan(want[:, 2]).sum() < want[:, 2].size


@pytest.mark.parametrize("tuning", ["default", "zen4", "zen5"])
def test_rows_chosen_by_its_rule(tuning, monkeypatch):
    """LeNet's C3 takes the kernel where its vectors are 64 bytes (x86-64-v4)
    and not at 32, on every core (its 6 float64 channels fill more than half
    a 64-byte vector, but no chunk of two: _engine._fills_chunks); 48
    filters stay with the GEMM, 3x3 kernels and a float64 layer of 16
    channels with the others."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "USE_DIRECT", True)

    def name(xs, ws, pad=0, dtype=np.float64):
        n, _, h, wd = xs
        oh, ow = h + 2 * pad - ws[2] + 1, wd + 2 * pad - ws[3] + 1
        return _engine.input_grad_plan("t", xs, ws, (n, ws[0], oh, ow), (1, 1),
                                       (pad,) * 4, (1, 1), 1, kernel_arg="weight",
                                       dtype=np.dtype(dtype))[1].name

    wide = _core.channels_wide()
    for dtype in (np.float32, np.float64):
        assert (name((64, 6, 14, 14), (16, 6, 5, 5), dtype=dtype) == "rows") == wide
        assert (name((32, 8, 24, 24), (16, 8, 5, 5), 2, dtype) == "rows") == wide
        assert name((32, 20, 12, 12), (50, 20, 5, 5), dtype=dtype) != "rows"
        assert name((64, 8, 10, 10), (16, 8, 3, 3), dtype=dtype) != "rows"
    assert name((32, 16, 12, 12), (32, 16, 5, 5)) != "rows"
    assert (name((32, 16, 12, 12), (32, 16, 5, 5), dtype=np.float32) == "rows") == wide
    # float64's rows of 25 to 32 at x86-64-v4 (4 vectors), and wider than
    # the kernel takes
    assert (name((8, 4, 26, 26), (8, 4, 5, 5), 2) == "rows") == wide
    assert name((8, 4, 34, 34), (8, 4, 5, 5), 2) != "rows"
    if not wide:
        return
    # method='direct' runs what 'auto' runs
    monkeypatch.setattr(_engine, "PLANS", {})
    rng = np.random.default_rng(5)
    w = rng.standard_normal((16, 6, 5, 5))
    g = rng.standard_normal((3, 16, 10, 10))
    assert np.array_equal(convx.conv2d_input_grad((3, 6, 14, 14), w, g, method="direct"),
                          convx.conv2d_input_grad((3, 6, 14, 14), w, g))


def test_rows_scratch_and_width():
    assert _core.rows_scratch(3, 10, 18) >= 3 * 10 * 18 + 16
    assert _core.rows_max_width(4) in (16, 48) and _core.rows_max_width(8) in (8, 32)


DEPTHWISE = [  # (x shape, K, padding (per side))
    ((8, 12, 14, 14), 5, 2),               # 5x5 "same"
    ((3, 10, 28, 28), 5, 2),               # rows of 28: two vectors in float32 at v4
    ((2, 7, 24, 24), 7, 3),                # 7x7 "same"
    ((4, 5, 9, 40), 7, 3),                 # rows of 40
    ((2, 6, 7, 7), 5, (1, 3, 0, 4)),       # asymmetric
    ((3, 4, 12, 11), 5, (2, 2, 6, 0)),     # a crop of columns (padding > K - 1)
    ((2, 3, 5, 6), 7, 3),                  # fewer rows than the kernel
    ((1, 1, 16, 16), 5, 0),                # a plain filter (groups 1)
]


@pytest.mark.parametrize("case", DEPTHWISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", [4, 3, 1])
def test_rows_depthwise_against_the_reference(case, dtype, isa, monkeypatch):
    """Both passes of a depthwise layer by the rows kernel: the reference's
    values, and the depthwise kernel's bits (both sum bias, then the taps in
    (p, q) order; the rows kernel leaves out the padding's rows, whose
    products are zeros), at 1 and 2 threads."""
    xs, k, _ = case
    monkeypatch.setattr(_engine, "PLANS", {})
    level = _core.set_isa(isa)
    try:
        pads, x, g, rng = ref.depthwise_case(case, dtype)
        c, (oh, ow) = xs[1], g.shape[2:]
        w = rng.standard_normal((c, 1, k, k)).astype(dtype)
        b = rng.standard_normal(c).astype(dtype)
        fits = oh >= 4 and ow <= _core.rows_max_width(np.dtype(dtype).itemsize)
        got = {}
        for rows in (True, False):
            monkeypatch.setattr(_engine, "ROWS", rows)
            monkeypatch.setattr(_engine, "PLANS", {})
            fplan = _engine.forward_plan("t", x.shape, w.shape, (1, 1), pads, (1, 1), c,
                                         kernel_arg="weight", dtype=dtype)
            iplan = _engine.input_grad_plan("t", x.shape, w.shape, g.shape, (1, 1), pads,
                                            (1, 1), c, kernel_arg="weight", dtype=dtype)
            assert (fplan[1].name == "rows") == (rows and fits), (fplan[1].name, level)
            assert (iplan[1].name == "rows") == (rows and fits), (iplan[1].name, level)
            def passes(fplan=fplan, iplan=iplan):
                return _engine.forward_run(fplan, x, w, b), _engine.input_grad_run(iplan, w, g)
            for y, dx in at_each_thread_count(passes):
                got.setdefault(rows, (y, dx))
                assert np.array_equal(y, got[rows][0]) and np.array_equal(dx, got[rows][1])
        tol = 2e-5 if dtype == np.float32 else 1e-12
        want_y = ref.conv_nd(x, w, b, 1, pads, 1, c)
        want_dx = ref.conv_nd_input_grad(x.shape, w, g, 1, pads, 1, c)
        y, dx = got[True]
        np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol * np.abs(want_y).max())
        np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol * np.abs(want_dx).max())
        assert np.array_equal(y, got[False][0]) and np.array_equal(dx, got[False][1])
    finally:
        _core.set_isa(4)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_rows_depthwise_nonfinite_weights(bad, monkeypatch):
    """The rows kernel leaves out the padding's rows, which the depthwise
    kernel and the GEMM multiply by every weight: a non-finite weight sends
    the forward pass to the depthwise kernel (and the input gradient to the
    GEMM), so that 0 * inf makes the NaN it makes on every other path."""
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "ROWS", True)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 12, 12))
    w = rng.standard_normal((4, 1, 5, 5))
    w[1, 0, 0, 2] = bad
    g = rng.standard_normal((2, 4, 12, 12))
    for got, want in [
            (convx.conv2d(x, w, padding=2, groups=4), ref.conv_nd(x, w, None, 1, ref.pads4(2), 1, 4)),
            (convx.conv2d_input_grad(x.shape, w, g, padding=2, groups=4),
             ref.conv_nd_input_grad(x.shape, w, g, 1, ref.pads4(2), 1, 4))]:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)
    # the padding's top rows times the bad weight: NaN in the first output rows
    assert np.isnan(ref.conv_nd(x, w, None, 1, ref.pads4(2), 1, 4)[:, 1, :2]).all()


def test_rows_takes_depthwise_layers_at_every_level(monkeypatch):
    """A depthwise 5x5 or 7x7 layer at stride 1 takes the rows kernel in
    both passes wherever its rows fit (at every level: 0.16-1.0x the
    depthwise kernel's time), and the depthwise kernel elsewhere: 3x3, a
    stride, rows too wide, a channel multiplier (two filters a group)."""
    monkeypatch.setattr(_engine, "USE_DIRECT", True)

    def names(xs, ws, groups, pad, stride=1, dtype=np.float32):
        n, _, h, wd = xs
        oh = (h + 2 * pad - ws[2]) // stride + 1
        ow = (wd + 2 * pad - ws[3]) // stride + 1
        geometry = ((stride, stride), (pad,) * 4, (1, 1), groups)
        fwd = _engine.forward_plan("t", xs, ws, *geometry, kernel_arg="weight",
                                   dtype=np.dtype(dtype))
        ig = _engine.input_grad_plan("t", xs, ws, (n, ws[0], oh, ow), *geometry,
                                     kernel_arg="weight", dtype=np.dtype(dtype))
        return fwd[1].name, ig[1].name

    try:
        for isa in (4, 3, 1):
            level = _core.set_isa(isa)
            monkeypatch.setattr(_engine, "PLANS", {})
            assert names((8, 96, 14, 14), (96, 1, 5, 5), 96, 2) == ("rows", "rows"), level
            assert names((8, 32, 7, 7), (32, 1, 7, 7), 32, 3, dtype=np.float64) == (
                "rows", "rows"), level
            wide = 48 if level == 4 else 16
            assert names((4, 16, wide, wide), (16, 1, 5, 5), 16, 2) == ("rows", "rows")
            assert "rows" not in names((4, 16, wide + 1, wide + 1), (16, 1, 5, 5), 16, 2)
            assert "rows" not in names((8, 96, 14, 14), (96, 1, 3, 3), 96, 1)
            assert names((8, 96, 28, 28), (96, 1, 5, 5), 96, 2, stride=2)[0] != "rows"
            assert "rows" not in names((8, 32, 14, 14), (64, 1, 5, 5), 32, 2)[:1]
    finally:
        _core.set_isa(4)
