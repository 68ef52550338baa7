"""The depthwise algorithm (one input and one output channel per group; the
forward pass at any stride, the gradients at unit width stride): chosen for
those calls, right against the reference for every geometry it takes (its
weight gradient too, channels summed in pieces of images), the same bits for
any thread count, and the rule of non-finite values kept."""
import numpy as np
import pytest

import convx
import reference as ref
from conftest import at_each_thread_count  # (tests/conftest.py)
from convx import _core, _engine

CASES = [  # (x shape, (KH, KW), stride, padding (per side), dilation)
    ((2, 6, 10, 11), (3, 3), 1, 1, 1),
    ((3, 8, 9, 9), (5, 5), 1, 2, 2),
    ((2, 4, 12, 7), (3, 3), (2, 1), (0, 1), 1),       # stride 2 along the height
    ((1, 3, 1, 40), (1, 7), 1, (0, 3), 1),            # 1-D
    ((4, 16, 8, 8), (2, 3), 1, (1, 0), (1, 2)),       # even kernel, dilated width
    ((2, 5, 6, 30), (7, 7), 1, 3, 1),
    ((1, 2, 40, 3), (3, 3), 1, 0, 1),                 # narrower than a vector
    ((9, 2, 20, 21), (3, 3), 1, 1, 1),                # two channels: the weight gradient's
    ((5, 3, 13, 40), (5, 5), (3, 1), 2, (1, 2)),      # images in pieces
    ((2, 2, 1, 9001), (1, 9), 1, (0, 4), 1),          # weight gradient: columns in tiles
    ((2, 3, 70, 300), (5, 5), 1, 2, 1),               # weight gradient: rows in tiles
    ((1, 1, 40, 200), (15, 15), 1, 7, 1),             # a large kernel, wide vectors
    # a width stride: the forward pass reads phase planes
    ((2, 6, 20, 21), (3, 3), 2, 1, 1),
    ((2, 5, 13, 37), (5, 5), (2, 3), 2, 1),
    ((1, 3, 9, 80), (3, 3), (1, 2), (0, 1), (1, 2)),  # dilated too
    ((3, 4, 20, 66), (7, 7), 3, 3, 1),
    ((2, 3, 1, 2001), (1, 9), (1, 2), (0, 4), 1),     # 1-D
    ((1, 2, 30, 400), (5, 5), (1, 4), 2, (2, 3)),
    ((2, 3, 12, 40), (2, 4), 2, (1, 2), 1),           # even kernel
    ((1, 1, 64, 300), (15, 15), 2, 7, 1),             # a large kernel, wide vectors
    # one output row narrower than a vector: one vector, its lanes past the
    # row dropped (they read into the scratch's slack)
    ((4, 6, 7, 7), (7, 7), 1, 0, 1),                  # global: one output per channel
    ((3, 5, 3, 9), (3, 3), 1, 0, 1),                  # 7 outputs
    ((2, 3, 5, 12), (5, 3), 1, 0, (1, 2)),            # dilated width
    ((2, 3, 1, 6), (1, 3), 1, 0, 1),                  # 1-D, 4 outputs
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_against_the_reference(case, dtype, monkeypatch):
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "USE_DIRECT", True)
    # the depthwise kernel itself, also where the rows kernel would take a
    # 5x5 or 7x7 layer at stride 1 (test_rows.py checks that one)
    monkeypatch.setattr(_engine, "ROWS", False)
    xs, (kh, kw), stride, padding, dilation = case
    c = xs[1]
    rng = np.random.default_rng(sum(xs))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((c, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=c)
    pads = ref.pads4(padding)
    want = ref.conv_nd(x, w, b, stride=stride, pads=pads, dilation=dilation, groups=c)
    g = rng.standard_normal(want.shape).astype(dtype)
    want_dx = ref.conv_nd_input_grad(x.shape, w, g, stride, pads, dilation, c)
    want_dw = ref.conv_nd_weight_grad(x, w.shape, g, stride, pads, dilation, c)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    runs = at_each_thread_count(lambda: (convx.conv2d(x, w, b, **geometry),
                                         convx.conv2d_input_grad(x.shape, w, g, **geometry),
                                         convx.conv2d_weight_grad(x, w.shape, g, **geometry)))
    for y, dx, dw in runs:
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())
        np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol * np.abs(want_dx).max())
        np.testing.assert_allclose(dw, want_dw, rtol=tol, atol=tol * np.abs(want_dw).max())
        for got, first in zip((y, dx, dw), runs[0]):
            assert np.array_equal(got, first)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    st, dl = (sh, sw), (dilation, dilation) if isinstance(dilation, int) else dilation
    fwd = _engine.forward_plan("t", x.shape, w.shape, st, pads, dl, c, kernel_arg="weight",
                               dtype=dtype)
    assert fwd[1].name == "depthwise"
    grad = _engine.input_grad_plan("t", x.shape, w.shape, g.shape, st, pads, dl, c,
                                   kernel_arg="weight", dtype=dtype)
    assert (grad[1].name == "depthwise") == (st == (1, 1))
    wgrad = _engine.weight_grad_plan("t", x.shape, w.shape, g.shape, st, pads, dl, c,
                                     kernel_arg="weight", dtype=dtype)
    assert (wgrad[1].name == "depthwise") == (sw == 1)


@pytest.mark.parametrize("xs, k, stride, dilation", [
    ((2, 4, 3, 7), (3, 3), (1, 2), 1),      # 3 outputs a row
    ((3, 3, 5, 7), (3, 3), 2, 1),           # 2 rows
    ((2, 5, 4, 13), (2, 3), (1, 3), (1, 2)),
    ((1, 2, 1, 7), (1, 3), (1, 2), 1),      # 1-D
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_narrow_rows_at_a_width_stride(xs, k, stride, dilation, dtype, monkeypatch):
    """Output rows narrower than a vector at a width stride, which 'auto'
    leaves to the channels kernel: forced (method='direct'), the depthwise
    kernel runs them on its phase planes, each row one vector with the lanes
    past it dropped, right against the reference."""
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "USE_DIRECT", True)
    monkeypatch.setattr(_engine, "ROWS", False)
    c = xs[1]
    rng = np.random.default_rng(sum(xs))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((c, 1) + k).astype(dtype)
    geometry = dict(stride=stride, padding=0, dilation=dilation, groups=c)
    want = ref.conv_nd(x, w, None, stride=stride, pads=(0, 0, 0, 0), dilation=dilation,
                       groups=c)
    assert want.shape[3] < 32 // np.dtype(dtype).itemsize
    st = (stride, stride) if isinstance(stride, int) else stride
    dl = (dilation, dilation) if isinstance(dilation, int) else dilation
    plan = _engine.forward_plan("t", x.shape, w.shape, st, (0, 0, 0, 0), dl, c,
                                kernel_arg="weight", method="direct", dtype=dtype)
    assert plan[1].name == "depthwise"
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for y in at_each_thread_count(lambda: convx.conv2d(x, w, method="direct", **geometry)):
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())


def test_not_depthwise_is_not_taken():
    """Two channels per group, or a channel multiplier, or a width stride
    with output rows narrower than a vector: the other algorithms."""
    for x, w, groups, stride in [((2, 8, 9, 9), (8, 2, 3, 3), 4, (1, 1)),
                                 ((2, 4, 9, 9), (8, 1, 3, 3), 4, (1, 1)),
                                 ((2, 4, 9, 5), (4, 1, 3, 3), 4, (1, 2))]:
        plan = _engine.forward_plan("t", x, w, stride, (1, 1, 1, 1), (1, 1), groups,
                                    kernel_arg="weight")
        assert plan[1].name != "depthwise"


def test_non_finite_weights_keep_the_rule():
    """The input gradient sums over the output positions that exist: an
    infinite weight makes no NaN where there is no term (the depthwise kernel
    would multiply the zero border by it, so such weights take the GEMM)."""
    rng = np.random.default_rng(5)
    x_shape = (2, 4, 6, 6)
    w = rng.standard_normal((4, 1, 3, 3))
    w[1, 0, 0, 0] = np.inf
    g = rng.standard_normal((2, 4, 6, 6))
    got = convx.conv2d_input_grad(x_shape, w, g, padding=1, groups=4)
    gemm = convx.conv2d_input_grad(x_shape, w, g, padding=1, groups=4, method="gemm")
    assert np.array_equal(np.isnan(got), np.isnan(gemm))
    assert np.array_equal(got[np.isfinite(gemm)], gemm[np.isfinite(gemm)])
    assert np.isfinite(got[:, 0]).all()   # channels without the infinite weight


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, k, padding, dilation", [
    ((3, 12, 9, 2), 3, 1, 1),
    ((2, 8, 7, 3), 5, 2, 1),
    ((2, 6, 20, 3), 3, 2, 2),
    ((1, 4, 30, 5), 3, (1, 0), 1),
])
def test_strip_gives_the_bits_of_row_by_row(x_shape, k, padding, dilation, dtype, monkeypatch):
    """Narrow rows go through the depthwise kernel as one strip per item
    (_engine._depthwise_strip); every value is the same sum in the same order
    as row by row (and wider rows, which go row by row, keep their bits in
    any block: test_every_output_has_the_same_bits_in_any_block)."""
    rng = np.random.default_rng(5)
    c = x_shape[1]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((c, 1, k, k)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    kw = dict(padding=padding, dilation=dilation, groups=c)
    y = convx.conv2d(x, w, b, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = convx.conv2d_input_grad(x.shape, w, g, **kw)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    wp = x_shape[3] + 2 * pw
    assert _engine._depthwise_strip(2, y.shape[3], wp, wp, dtype) > 0   # the strip is taken
    monkeypatch.setattr(_engine, "DEPTHWISE_STRIP_MAX", 0)
    monkeypatch.setattr(_engine, "PLANS", {})
    np.testing.assert_array_equal(convx.conv2d(x, w, b, **kw), y)
    np.testing.assert_array_equal(convx.conv2d_input_grad(x.shape, w, g, **kw), dx)
    want = ref.conv_nd(x, w, b, stride=1, pads=(ph, ph, pw, pw), dilation=dilation, groups=c)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("level", [4, 3, 1])
def test_strip_rule_follows_the_instruction_set(level, monkeypatch):
    """_engine._depthwise_strip at each instruction-set level (the level
    faked: the rule is a function of it, and the bits do not depend on the
    choice, test_strip_gives_the_bits_of_row_by_row): the strip where a row
    is narrower than the rows' vectors (64 bytes at x86-64-v4, else 32), or
    where whole vectors would compute a quarter more than the strip."""
    monkeypatch.setattr(_engine._core, "channels_wide", lambda: level >= 4)
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    v4 = level >= 4

    def strip(cols, pad, dtype, rows=8):
        return _engine._depthwise_strip(rows, cols, cols + 2 * pad, cols + 2 * pad, dtype) > 0

    assert strip(14, 1, f32) == v4     # under one 64-byte vector, two 32-byte ones
    assert strip(7, 1, f64) == v4
    assert strip(18, 1, f32) == v4     # two 64-byte vectors (32 columns) for 20 of the strip
    assert strip(9, 1, f64) == v4
    assert strip(7, 1, f32) and strip(6, 2, f32) and strip(3, 1, f64)   # under a 32-byte one
    assert strip(10, 1, f32)           # 16 columns in 32-byte vectors for 12 of the strip
    assert not strip(16, 1, f32) and not strip(8, 1, f64)   # whole vectors at every level
    assert not strip(14, 1, f64) and not strip(28, 1, f32)
    assert not strip(40, 1, f32)       # past _DEPTHWISE_STRIP_COLS
    assert not strip(14, 1, f32, rows=1)   # one row: nothing to join


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, dilation, stride", [(3, 1, 1), (5, 1, 1), (3, 2, 1), (3, 1, 2),
                                                 (2, 1, 1)])
def test_every_output_has_the_same_bits_in_any_block(k, dilation, stride, dtype):
    """Each output sums bias, then its taps in (p, q) order, whether it lies
    in a block of vectors, in the vectors after it (the last moved left to
    end at the row's end, overlapping), in a pair of rows that share their
    loads (unit vertical stride and dilation) or alone, or tap by tap in a
    row narrower than a vector: cropping the image, which moves every
    output into other blocks, changes no bit of the outputs that remain."""
    rng = np.random.default_rng(k * 10 + dilation + 100 * stride)
    x = rng.standard_normal((2, 3, 15, 150)).astype(dtype)
    w = rng.standard_normal((3, 1, k, k)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    geometry = dict(stride=(stride, 1), dilation=dilation, groups=3)
    plan = _engine.forward_plan("t", x.shape, w.shape, (stride, 1), (0, 0, 0, 0),
                                (dilation, dilation), 3, kernel_arg="weight", dtype=dtype)
    assert plan[1].name == "depthwise"
    whole = convx.conv2d(x, w, b, **geometry)
    span = (k - 1) * dilation + 1
    # up to past a block of 8 wide vectors (x86-64-v4: 64 doubles, 128 floats)
    for width in list(range(span, span + 18)) + [40, 41, 47, 63, 69, 129, 140, 150]:
        for height in (span, span + 1, span + 2, 12, 15):
            got = convx.conv2d(np.ascontiguousarray(x[:, :, :height, :width]), w, b, **geometry)
            assert np.array_equal(got, whole[:, :, :got.shape[2], :got.shape[3]]), (width, height)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_grad_row_ends_keep_the_rule(dtype):
    """A row's last columns (fewer than a vector) are summed as one vector
    ending at the row's end, its lanes before them zeroed in the gradient
    and in the image alike: a non-finite value there reaches exactly the
    taps that read it, at every width."""
    rng = np.random.default_rng(9)
    for width in list(range(3, 40, 3)) + [47, 64, 71, 100]:   # the wide vectors too
        for k in (3, 5):
            x = rng.standard_normal((2, 3, 6, width)).astype(dtype)
            where = (rng.integers(2), rng.integers(3), rng.integers(6), rng.integers(width))
            x[where] = (np.inf, -np.inf, np.nan)[width % 3]
            g = rng.standard_normal((2, 3, 6, width)).astype(dtype)
            ws = (3, 1, k, k)
            got = convx.conv2d_weight_grad(x, ws, g, padding=k // 2, groups=3)
            want = ref.conv_nd_weight_grad(x.astype(np.float64), ws, g.astype(np.float64), 1,
                                           (k // 2,) * 4, 1, 3)
            assert np.array_equal(np.isnan(got), np.isnan(want)), (width, k)
            assert np.array_equal(np.isinf(got), np.isinf(want)), (width, k)
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kh, kw, stride", [(1, 49, 1), (1, 97, 1), (1, 130, 1), (3, 100, 2)])
def test_many_taps_give_the_same_bits_in_any_block(kh, kw, stride, dtype):
    """A kernel of many taps along a row runs, on x86-64-v4, one row at a
    time in blocks of 4 x 4 wide vectors that share their loads: each output
    still sums bias, then its taps in (p, q) order, so cropping the image
    (which moves outputs between those blocks, the ordinary ones and the
    row's last vectors) changes no bit of the outputs that remain; and the
    values agree with the reference, non-finite inputs reaching exactly the
    outputs that read them."""
    rng = np.random.default_rng(kw + 7 * kh)
    x = rng.standard_normal((2, 2, kh + 2 * stride, 900)).astype(dtype)
    x[0, 1, 0, 450] = np.inf
    x[1, 0, kh - 1, 20] = np.nan
    w = rng.standard_normal((2, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    geometry = dict(stride=(stride, 1), groups=2)
    plan = _engine.forward_plan("t", x.shape, w.shape, (stride, 1), (0, 0, 0, 0), (1, 1), 2,
                                kernel_arg="weight", dtype=dtype)
    assert plan[1].name == "depthwise"
    whole = convx.conv2d(x, w, b, **geometry)
    want = ref.conv_nd(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                       stride=(stride, 1), pads=(0, 0, 0, 0), dilation=1, groups=2)
    assert np.array_equal(np.isnan(whole), np.isnan(want))
    assert np.array_equal(np.isinf(whole), np.isinf(want))
    finite = np.isfinite(want)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(whole[finite], want[finite], rtol=tol,
                               atol=tol * np.abs(want[finite]).max())
    for width in (kw, kw + 1, kw + 127, kw + 128, kw + 255, kw + 256, kw + 300, 700, 899):
        got = convx.conv2d(np.ascontiguousarray(x[..., :width]), w, b, **geometry)
        assert np.array_equal(got, whole[..., :got.shape[-1]], equal_nan=True), width


def _weight_grad_as_reference(plan, x, g, pads):
    """A depthwise weight-gradient plan gives the reference's values, and the
    same bits at 1 and 2 threads."""
    c, kh, kw = x.shape[1], plan[3][-7], plan[3][-6]
    want = ref.conv_nd_weight_grad(x, (c, 1, kh, kw), g, 1, pads, 1, c)
    tol = 2e-5 if x.dtype == np.float32 else 1e-12
    runs = at_each_thread_count(lambda: _engine.weight_grad_run(plan, x, g))
    for dw in runs:
        np.testing.assert_allclose(dw, want, rtol=tol, atol=tol * np.abs(want).max())
        assert np.array_equal(dw, runs[0])


COLUMNS = [  # (x shape, K or (KH, KW), padding (per side)): where _depthwise.h's cvx_dwr applies
    ((3, 10, 28, 28), 5, 2),              # 28 wide: the last vector overlaps the one before
    ((2, 7, 24, 24), 7, 3),
    ((2, 4, 9, 40), 7, 3),
    ((2, 6, 12, 17), 5, (1, 3, 0, 4)),    # asymmetric: 16 + 4 - 5 + 1 = 16 wide
    ((2, 3, 11, 20), 5, (2, 2, 6, 0)),    # a crop of columns (padding > K - 1)
    ((1, 3, 20, 64), 5, 0),               # whole vectors only
    ((2, 2, 3, 50), 7, (2, 2, 3, 3)),     # one output row: fewer than the taps
    ((7, 2, 16, 33), 5, 2),               # images in pieces; 33 wide: one lane new
    # kernels past 7x7 and not square, the blocks at x86-64-v4: 4 to 7 tap
    # columns by 1 to 5 rows
    ((1, 1, 40, 50), 15, 7),              # 3 blocks of 5 columns, 3 of 5 rows
    ((2, 2, 30, 36), (11, 4), (5, 5, 2, 1)),   # 4 columns: rows in blocks of 5, 5 and 1
    ((1, 3, 21, 40), (13, 8), 0),         # 4 and 4 columns; rows in blocks of 5, 5 and 3
    ((2, 1, 18, 47), (9, 13), 4),         # 6 and 7 columns: 4 or 3 rows a block
    ((1, 2, 25, 44), (6, 9), (2, 3, 4, 4)),    # 4 and 5 columns; 6 rows
    ((3, 1, 1, 300), (1, 31), (0, 0, 15, 15)),  # one tap row, 5 blocks of 6 and 7
    ((1, 1, 3, 70), (2, 23), 0),          # one output row, 2 tap rows
]


@pytest.mark.parametrize("case", COLUMNS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", [4, 3, 1])
def test_weight_grad_by_columns(case, dtype, isa, monkeypatch):
    """The weight gradient by whole columns of vectors (cvx_dwr, kernels of 3
    columns or more at unit stride, in blocks of tap rows and columns): the
    reference's values at every level, forced where its rule would not take
    it, the same bits at 1 and 2 threads, and taken only where the rows are
    at least a vector wide."""
    xs, k, _ = case
    kh, kw = ref.kernel_hw(k)
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "DW_COLUMNS", True)
    monkeypatch.setattr(_engine, "DW_FOLD", False)
    level = _core.set_isa(isa)
    try:
        pads, x, g, _ = ref.depthwise_case(case, dtype)
        c, ow = xs[1], g.shape[3]
        plan = _engine.weight_grad_plan("t", x.shape, (c, 1, kh, kw), g.shape, (1, 1), pads,
                                        (1, 1), c, kernel_arg="weight", dtype=dtype)
        assert plan[1].name == "depthwise"
        wide = _core.depthwise_weight_grad_rows_width(np.dtype(dtype).itemsize)
        assert plan[3][-2] == (ow >= wide), (level, ow, wide)
        _weight_grad_as_reference(plan, x, g, pads)
    finally:
        _core.set_isa(4)


@pytest.mark.parametrize("where", ["x", "g"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_weight_grad_by_columns_non_finite(where, bad, monkeypatch):
    """A non-finite value in the image or the output gradient makes the
    NaNs and infinities the GEMM makes (it multiplies the zero padding by
    the output gradient too), and no other: the columns a vector repeats
    are left out of its sums, not multiplied by zero."""
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "DW_COLUMNS", True)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 20, 20))
    g = rng.standard_normal((2, 3, 20, 20))
    if where == "x":
        x[1, 1, 7, 14] = bad     # read by the lanes the last vector repeats (float64, v4)
    else:
        g[0, 2, 0, 10] = bad     # the first row: its taps p > 0 read the padding
    got = convx.conv2d_weight_grad(x, (3, 1, 5, 5), g, padding=2, groups=3)
    gemm = convx.conv2d_weight_grad(x, (3, 1, 5, 5), g, padding=2, groups=3, method="gemm")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(gemm))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(gemm))
    finite = np.isfinite(gemm)
    np.testing.assert_allclose(got[finite], gemm[finite], rtol=1e-12, atol=1e-12)
    assert not finite.all() and finite.any()


def test_weight_grad_by_columns_rule(monkeypatch):
    """By columns where the kernel has two rows or more: at x86-64-v4 from 3
    columns, at -v3 from 4, never at the baseline; tap by tap on one tap
    row, on rows narrower than a vector (64 bytes at -v4, 32 at -v3), and at
    a stride or dilation (the stride along the height: the depthwise weight
    gradient takes none along the width)."""
    monkeypatch.setattr(_engine, "USE_DIRECT", True)

    def columns(xs, k, dtype=np.float32, stride=1, dilation=1):
        monkeypatch.setattr(_engine, "PLANS", {})
        n, c, h, wd = xs
        kh, kw = ref.kernel_hw(k)
        span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
        pads = (span_h // 2, span_h // 2, span_w // 2, span_w // 2)
        oh = (h + 2 * pads[0] - span_h) // stride + 1
        ow = wd + 2 * pads[2] - span_w + 1
        plan = _engine.weight_grad_plan("t", xs, (c, 1, kh, kw), (n, c, oh, ow), (stride, 1),
                                        pads, (dilation, dilation), c,
                                        kernel_arg="weight", dtype=np.dtype(dtype))
        assert plan[1].name == "depthwise"
        return plan[3][-2]

    try:
        for isa in (4, 3, 1):
            level = _core.set_isa(isa)
            assert columns((8, 96, 28, 28), 5) == (level >= 3)
            assert columns((8, 64, 40, 40), 7) == (level >= 3)
            assert columns((8, 96, 28, 28), 5, np.float64) == (level >= 3)
            assert columns((4, 1, 256, 256), 15) == (level >= 3)
            assert columns((8, 16, 64, 64), (2, 23), np.float64) == (level >= 3)
            assert columns((8, 32, 48, 48), 4) == (level >= 3)
            assert columns((8, 96, 28, 28), 3) == (level == 4)
            assert columns((8, 96, 28, 28), 3, np.float64) == (level == 4)
            assert not columns((4, 3, 64, 64), (1, 15))     # one tap row
            assert not columns((8, 3, 64, 64), (5, 2))      # two columns
            assert columns((8, 144, 14, 14), 5) == (level == 3)   # 14 wide: under 16 floats
            assert columns((8, 144, 7, 7), 5, np.float64) == (level == 3)   # under 8 doubles
            assert not columns((8, 96, 56, 28), 5, stride=2)   # along the height
            assert not columns((8, 96, 28, 28), 5, dilation=2)
    finally:
        _core.set_isa(4)


FOLDED = [  # (x shape, (1, K), padding (per side)): 1-D, where the fold applies
    ((2, 3, 1, 100), (1, 33), (0, 0, 16, 16)),     # 3 rows of taps, the last one tap
    ((3, 2, 1, 300), (1, 127), (0, 0, 63, 63)),    # a tail of 12 (float32) or 4 positions
    ((1, 1, 1, 47), (1, 32), 0),                   # 16 outputs: one whole row of floats
    ((2, 1, 1, 500), (1, 511), (0, 0, 255, 255)),  # a kernel longer than the signal
    ((5, 2, 1, 80), (1, 16), (0, 0, 3, 12)),       # one row of taps of floats, asymmetric
    ((2, 1, 1, 40), (1, 9), (0, 0, 4, 4)),         # fewer taps than a row
    ((7, 1, 1, 64), (1, 40), (0, 0, 20, 19)),      # images in pieces
    ((1, 1, 1, 5000), (1, 63), (0, 0, 31, 31)),
    ((2, 1, 1, 50), (1, 20), (0, 0, 25, 0)),       # padding past K - 1: a crop
    ((2, 2, 1, 30), (1, 24), 0),                   # 7 outputs: under a row, tap by tap
]


@pytest.mark.parametrize("case", FOLDED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", [4, 3, 1])
def test_weight_grad_folded(case, dtype, isa, monkeypatch):
    """A 1-D weight gradient folded into rows of 64 bytes, its taps a 2-D
    kernel taken by columns (cvx_dwr) and the positions past the last whole
    row tap by tap: the reference's values at every level, forced where the
    rule would not take it, the same bits at 1 and 2 threads, and taken
    only where the output is at least a row long."""
    xs, (_, kw), _ = case
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "DW_FOLD", True)
    _core.set_isa(isa)
    try:
        pads, x, g, _ = ref.depthwise_case(case, dtype)
        c, ow = xs[1], g.shape[3]
        plan = _engine.weight_grad_plan("t", x.shape, (c, 1, 1, kw), g.shape, (1, 1), pads,
                                        (1, 1), c, kernel_arg="weight", dtype=dtype)
        assert plan[1].name == "depthwise"
        width = 64 // np.dtype(dtype).itemsize
        assert plan[3][-1] == (width if ow >= width else 0), (ow, width)
        _weight_grad_as_reference(plan, x, g, pads)
    finally:
        _core.set_isa(4)


@pytest.mark.parametrize("where", ["x first", "x last", "g last"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_grad_folded_non_finite(where, bad, dtype, monkeypatch):
    """A non-finite value in the signal or the output gradient makes the
    NaNs and infinities the GEMM makes, and no other: the fold's unused taps
    and the positions past the last whole row (tap by tap) add nothing, not
    zeros times it."""
    monkeypatch.setattr(_engine, "PLANS", {})
    monkeypatch.setattr(_engine, "DW_FOLD", True)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 2, 70)).astype(dtype)
    g = rng.standard_normal((2, 2, 70 + 2 * 17 - 35 + 1)).astype(dtype)
    if where == "x first":
        x[1, 0, 0] = bad
    elif where == "x last":
        x[0, 1, -1] = bad      # read by the last positions' taps, and the unused ones past 35
    else:
        g[1, 1, -1] = bad      # a position past the last whole row
    got = convx.conv1d_weight_grad(x, (2, 1, 35), g, padding=17, groups=2)
    gemm = convx.conv1d_weight_grad(x, (2, 1, 35), g, padding=17, groups=2, method="gemm")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(gemm))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(gemm))
    finite = np.isfinite(gemm)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got[finite], gemm[finite], rtol=tol, atol=tol)
    assert not finite.all() and finite.any()


def test_weight_grad_folded_rule(monkeypatch):
    """Folded at x86-64-v4 on 1-D calls of more than one and a half rows of
    taps (25 floats, 13 doubles) whose output is at least a row long; never
    at -v3 or the baseline, on 2-D calls, at a stride or a dilation."""
    monkeypatch.setattr(_engine, "USE_DIRECT", True)

    def fold(xs, kw, dtype=np.float32, stride=1, dilation=1, kh=1):
        monkeypatch.setattr(_engine, "PLANS", {})
        n, c, h, length = xs
        span = (kw - 1) * dilation + 1
        oh, ow = h - kh + 1, (length + 2 * (span // 2) - span) // stride + 1
        plan = _engine.weight_grad_plan("t", xs, (c, 1, kh, kw), (n, c, oh, ow), (1, stride),
                                        (0, 0, span // 2, span // 2), (1, dilation), c,
                                        kernel_arg="weight", dtype=np.dtype(dtype))
        return plan[3][-1] if plan[1].name == "depthwise" else None

    try:
        for isa in (4, 3, 1):
            level = _core.set_isa(isa)
            assert fold((16, 1, 1, 16384), 127) == (16 if level == 4 else 0)
            assert fold((16, 1, 1, 16384), 127, np.float64) == (8 if level == 4 else 0)
            assert fold((8, 4, 1, 8192), 25) == (16 if level == 4 else 0)
            assert fold((8, 4, 1, 8192), 24) == 0
            assert fold((8, 4, 1, 8192), 13, np.float64) == (8 if level == 4 else 0)
            assert fold((8, 4, 1, 8192), 12, np.float64) == 0
            assert fold((8, 4, 1, 10), 33) == 0                # 10 outputs: under a row
            assert fold((8, 4, 1, 8192), 63, dilation=2) == 0
            assert fold((8, 4, 1, 8192), 63, stride=2) in (0, None)
            assert fold((8, 4, 8, 8192), 63) == 0              # 8 rows of 1 x 63 taps
            assert fold((8, 4, 2, 8192), 63, kh=2) == 0        # one row of 2 x 63 taps
    finally:
        _core.set_isa(4)
