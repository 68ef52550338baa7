"""The matrix product's two ways of reading its operands, which must give
the same bits.

The image and the input gradient's col2im, output row by output row.  From
x86-64-v3 on, a tap's values over several output rows are gathered with
masked vector loads (_gemm.h, cvx_tap_row_*) and col2im adds its runs in
masked vectors (cvx_add_run_*); below it, and at any level with
``_core.set_vector_runs(False)``, both go run by run, value by value.  They
move the same values, so the forward pass and the input gradient must be
the same bits both ways, at every level the CPU has, and agree with the
reference.

The input gradient's w.T: packed once a call, or read in place by the
product (one small float32 image, CVX_COLUMNS); the same values in the
same sums.
"""
import numpy as np
import pytest

import convx
import reference as ref
from convx import _core, _engine

LEVELS = [pytest.param(level, id=f"isa{level}") for level in (4, 3)]

# (x shape, w shape, stride, padding, dilation, groups): output rows
# narrower than a vector and wider (floats: 16 at x86-64-v4, 8 at v3;
# doubles 8 and 4), one row of 1, padding wider than the kernel reaches
# (whole rows and columns of zeros), a dilation, a row stride (the
# column stride of 1 that the vectors need), a column stride of 2 (run by
# run at every level), more positions than a block (_engine._NC: blocks
# that begin inside an output row), groups, a kernel as wide as the padded
# image, depths of 200 and 256 at stride 2 (one block in float64: _gemm.h,
# cvx_kc_step), and 1-D signals (whose col2im sums a kernel's runs in one
# pass: longer than a block of positions, 16 and 17 taps, dilated, a
# kernel wider than the signal).
CASES = [
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 1, 1, 1),
    ((1, 5, 14, 14), (6, 5, 3, 3), 1, 1, 1, 1),
    ((1, 2, 9, 13), (3, 2, 5, 3), 1, (2, 1), 1, 1),
    ((2, 3, 6, 5), (2, 3, 3, 3), 1, 3, 1, 1),
    ((1, 2, 11, 17), (3, 2, 3, 3), 1, 2, 2, 1),
    ((1, 3, 12, 10), (4, 3, 3, 3), (2, 1), 1, 1, 1),
    ((1, 3, 12, 12), (4, 3, 3, 3), (1, 2), 1, 1, 1),
    ((1, 3, 30, 30), (5, 3, 3, 3), 1, 1, 1, 1),
    ((1, 2, 23, 41), (3, 2, 3, 5), 1, (1, 2), (1, 2), 1),
    ((2, 4, 10, 10), (6, 2, 3, 3), 1, 1, 1, 2),
    ((1, 2, 5, 1), (3, 2, 3, 1), 1, (1, 0), 1, 1),
    ((1, 2, 4, 4), (3, 2, 6, 6), 1, 1, 1, 1),
    ((1, 1, 3, 33), (2, 1, 3, 3), 1, 1, 1, 1),
    ((1, 8, 15, 15), (5, 8, 5, 5), 2, 2, 1, 1),
    ((1, 256, 9, 9), (6, 256, 1, 1), 2, 0, 1, 1),
    ((2, 3, 500), (4, 3, 5), 1, 2, 1, 1),
    ((1, 2, 9), (3, 2, 3), 1, 4, 2, 1),
    ((1, 2, 20000), (3, 2, 9), 1, 4, 1, 1),
    ((2, 1, 300), (4, 1, 16), 1, 7, 1, 1),
    ((2, 1, 300), (4, 1, 17), 1, 8, 1, 1),
    ((1, 3, 100), (2, 3, 5), 1, 5, 3, 1),
    ((2, 2, 6), (3, 2, 5), 1, 4, 1, 1),
]


def _ids(case):
    xs, ws, s, p, d, g = case
    return f"x{'x'.join(map(str, xs))}-w{'x'.join(map(str, ws))}-s{s}-p{p}-d{d}-g{g}"


def _passes(x, w, gout, kw):
    nd = x.ndim - 2
    fwd = convx.conv1d if nd == 1 else convx.conv2d
    ig = convx.conv1d_input_grad if nd == 1 else convx.conv2d_input_grad
    return fwd(x, w, **kw), ig(x.shape, w, gout, **kw)


def _ref_geometry(xs, stride, padding, dilation, groups):
    """The reference's keywords for the API's geometry (1-D: H = 1)."""
    def pair(v):
        return v if not isinstance(v, int) else (v, v) if len(xs) == 4 else (1, v)
    ph, pw = padding if not isinstance(padding, int) else \
        (padding, padding) if len(xs) == 4 else (0, padding)
    return dict(stride=pair(stride), pads=(ph, ph, pw, pw), dilation=pair(dilation),
                groups=groups)


@pytest.fixture
def level_and_runs(request):
    """Restores the instruction-set level and the vector runs after a test."""
    before = _core.set_isa(99)
    yield
    _core.set_vector_runs(True)
    _core.set_isa(before)
    _engine.PLANS.clear()


@pytest.mark.usefixtures("level_and_runs")
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_vector_runs_same_bits(case, dtype, level):
    if _core.set_isa(level) != level:
        pytest.skip(f"this CPU has no x86-64-v{level}")
    _engine.PLANS.clear()
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(xs) * 100 + xs[-1])
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, method="gemm")
    out = (convx.conv1d if len(xs) == 3 else convx.conv2d)(x, w, **kw)
    gout = rng.standard_normal(out.shape).astype(dtype)
    x_before, w_before, g_before = x.copy(), w.copy(), gout.copy()
    _core.set_vector_runs(True)
    vector = _passes(x, w, gout, kw)
    _core.set_vector_runs(False)
    runs = _passes(x, w, gout, kw)
    for got, want in zip(vector, runs):
        assert got.dtype == dtype
        assert np.array_equal(got, want)
    assert np.array_equal(x, x_before) and np.array_equal(w, w_before)
    assert np.array_equal(gout, g_before)
    # and right: against the float64 reference, within the rounding bound
    rk = _ref_geometry(xs, stride, padding, dilation, groups)
    x8, w8, g8 = (v.astype(np.float64) for v in (x, w, gout))
    want = ref.conv_nd(x8, w8, **rk)
    bound = ref.conv_nd(np.abs(x8), np.abs(w8), **rk)
    want_ig = ref.conv_nd_input_grad(xs, w8, g8, **rk)
    bound_ig = ref.conv_nd_input_grad(xs, np.abs(w8), np.abs(g8), **rk)
    eps, taps = np.finfo(dtype).eps, w[0].size
    assert np.all(np.abs(vector[0] - want) <= 2 * taps * eps * bound)
    assert np.all(np.abs(vector[1] - want_ig) <= 2 * ws[0] * taps * eps * bound_ig)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, padding, dilation", [
    ((2, 3, 500), (4, 3, 9), 4, 1),
    ((1, 2, 300), (3, 2, 16), 9, 1),
    ((2, 1, 120), (5, 1, 5), 6, 3),
    ((2, 2, 6), (3, 2, 5), 4, 1),
])
def test_one_pass_col2im_same_bits_as_run_by_run(xs, ws, padding, dilation, dtype):
    """A 1-D input gradient's col2im sums a kernel's runs in one pass
    (_col2im_add_1d); a 2-D one of the same kernel (one row of taps) over two
    rows adds them run by run.  Each cell gets its terms in the same order:
    row 0 of the 2-D gradient is the 1-D one, bit for bit."""
    rng = np.random.default_rng(xs[-1] + ws[-1])
    w = rng.standard_normal(ws).astype(dtype)
    ow = xs[2] + 2 * padding - dilation * (ws[2] - 1)
    gout = rng.standard_normal((xs[0], ws[0], ow)).astype(dtype)
    kw = dict(padding=padding, dilation=dilation, method="gemm")
    one = convx.conv1d_input_grad(xs, w, gout, **kw)
    g2 = np.stack([gout, rng.standard_normal(gout.shape).astype(dtype)], axis=2)
    two = convx.conv2d_input_grad((xs[0], xs[1], 2, xs[2]), w[:, :, None, :], g2,
                                  padding=(0, padding), dilation=(1, dilation), method="gemm")
    assert np.array_equal(one, two[:, :, 0])
    want = ref.conv_nd_input_grad((xs[0], xs[1], 1, xs[2]), w[:, :, None, :].astype(np.float64),
                                  gout[:, :, None, :].astype(np.float64), stride=(1, 1),
                                  pads=(0, 0, padding, padding), dilation=(1, dilation),
                                  groups=1)[:, :, 0]
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(one, want, rtol=tol, atol=tol * np.abs(want).max())


# (x shape, w shape, stride, padding, dilation, groups) for w.T read in
# place: one image (the rule's case) and a batch; groups, a stride, a
# dilation, a 1x1 kernel, 1-D; channels that are no multiple of the 8-row
# micro-tile, and more filters than a depth block (_engine._KC)
IN_PLACE = [
    ((1, 64, 7, 7), (160, 64, 3, 3), 1, 1, 1, 1),
    ((2, 30, 13, 13), (20, 30, 5, 5), 2, 2, 1, 1),
    ((1, 16, 9, 9), (24, 4, 3, 3), 1, 1, 1, 4),
    ((1, 8, 11, 11), (12, 4, 3, 3), 1, 2, 2, 2),
    ((1, 33, 10, 10), (7, 33, 1, 1), 1, 0, 1, 1),
    ((1, 5, 40), (300, 5, 3), 1, 1, 1, 1),
]


@pytest.mark.usefixtures("level_and_runs")
@pytest.mark.parametrize("level", [pytest.param(v, id=f"isa{v}") for v in (4, 3, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", IN_PLACE, ids=_ids)
def test_weights_in_place_same_bits(case, dtype, level, monkeypatch):
    if _core.set_isa(level) != level:
        pytest.skip(f"this CPU has no x86-64-v{level}")
    _engine.PLANS.clear()
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(xs[1] * 10 + ws[0])
    w = rng.standard_normal(ws).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, method="gemm")
    fwd, ig = (convx.conv1d, convx.conv1d_input_grad) if len(xs) == 3 else \
        (convx.conv2d, convx.conv2d_input_grad)
    gout = rng.standard_normal(fwd(np.zeros(xs, dtype), w, **kw).shape).astype(dtype)
    w_before = w.copy()
    got = {}
    for pack in (True, False):
        monkeypatch.setattr(_engine, "IG_PACK", pack)
        _engine.PLANS.clear()   # (the plan holds the choice)
        got[pack] = ig(xs, w, gout, **kw)
    assert np.array_equal(got[True], got[False])
    assert np.array_equal(w, w_before)
    eps = np.finfo(dtype).eps
    want = ref.conv_nd_input_grad(xs, w.astype(np.float64), gout.astype(np.float64),
                                  **_ref_geometry(xs, stride, padding, dilation, groups))
    bound = ref.conv_nd_input_grad(xs, np.abs(w).astype(np.float64),
                                   np.abs(gout).astype(np.float64),
                                   **_ref_geometry(xs, stride, padding, dilation, groups))
    assert np.all(np.abs(got[False] - want) <= 2 * ws[0] * w[0].size * eps * bound)


def test_weights_in_place_for_one_small_float32_image():
    packs, most = _engine._input_grad_packs, _engine._IG_IN_PLACE_POSITIONS
    assert not packs(1, 49, 4) and not packs(1, most, 4)
    assert packs(1, most + 1, 4) and packs(2, 49, 4) and packs(1, 49, 8)
