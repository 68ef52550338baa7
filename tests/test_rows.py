"""The rows kernel (_rows.h: vectors along the output rows, source rows
outside the image no terms), which takes the input gradient of LeNet-like
layers: right against the reference on every geometry it takes (forced
through _engine.ROWS, including those 'auto' leaves to others), at every
instruction-set level, the same bits for any thread count, non-finite
weights by the GEMM, and chosen where its rule says."""
import numpy as np
import pytest

import convx
import reference as ref
from convx import _core, _engine

CASES = [  # (x shape, filters, K, padding (per side), groups)
    ((64, 6, 14, 14), 16, 5, 0, 1),        # LeNet's C3
    ((3, 4, 10, 10), 6, 5, 0, 1),           # 6 output rows: two bands, overlapping
    ((2, 3, 8, 8), 5, 5, 0, 1),             # 4 output rows of the forward pass
    ((2, 2, 4, 13), 3, 5, 2, 1),            # 4 input rows: one band
    ((3, 5, 9, 30), 7, 7, 3, 1),            # 30 wide: vectors overlapping the last
    ((2, 4, 12, 7), 4, 7, (2, 1, 5, 0), 1),  # asymmetric, a crop (padding > K - 1)
    ((2, 8, 11, 9), 6, 5, (4, 3, 1, 2), 2),  # groups
    ((4, 6, 7, 3), 9, 5, 2, 3),             # rows of 3: narrower than any vector
    ((2, 3, 6, 24), 4, 5, 0, 1),            # rows of 24 (float64's widest at x86-64-v4)
    ((1, 2, 30, 48), 3, 7, 3, 1),           # rows of 48 (float32's widest)
    ((5, 1, 12, 12), 2, 5, 0, 1),           # one channel: its filters in a pair
    ((3, 12, 9, 9), 20, 5, 2, 4),           # 5 filters a group: pairs and a single one
]


def _run(plan, w, g, threads):
    """The engine's run of ``plan`` (the public API pads both sides alike;
    the engine takes each side's own, as the notebook's even kernels do)."""
    convx.set_num_threads(threads)
    try:
        return _engine.input_grad_run(plan, w, g)
    finally:
        convx.set_num_threads(None)


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
        runs = [_run(plan, w, g, t)
                for t in range(1, min(2, convx._threads._MAX_THREADS) + 1)]
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


def test_rows_chosen_by_its_rule(monkeypatch):
    """LeNet's C3 takes the kernel where its vectors are 64 bytes (x86-64-v4)
    and not at 32; 48 filters stay with the GEMM, 3x3 kernels and a float64
    layer of 16 channels with the others."""
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
    # rows wider than the kernel takes: float64's 24 at x86-64-v4
    assert name((8, 4, 26, 26), (8, 4, 5, 5), 2) != "rows"
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
    assert _core.rows_max_width(4) in (16, 48) and _core.rows_max_width(8) in (8, 24)
