"""The forward pass and the weight gradient vectorised along the output
channels (the engine's "channels" algorithms, _direct.h's cvx_fwdt and
cvx_wgradt): right against the reference for every geometry they take (any
stride, dilation, groups, padding, filter counts that fill a vector or
not), exact where the sums are exact, the same bits run after run (the
forward pass for any thread count), the rule of non-finite values kept, and
chosen where their cost models say."""
import numpy as np
import pytest

import convx
import reference as ref
from conftest import thread_counts  # (tests/conftest.py)
from convx import _core, _engine

CASES = [  # (x shape, w shape, stride, padding (per side), dilation, groups)
    ((2, 3, 11, 12), (8, 3, 3, 3), 1, 1, 1, 1),
    ((3, 4, 9, 10), (5, 4, 3, 3), 1, 1, 1, 1),           # filters short of a vector
    ((2, 6, 14, 14), (17, 6, 5, 5), 1, 0, 1, 1),          # a vector and one
    ((2, 3, 23, 21), (24, 3, 7, 7), 2, 3, 1, 1),          # a stem, stride 2
    ((2, 8, 13, 13), (16, 8, 3, 3), 2, 1, 1, 1),
    ((1, 5, 17, 19), (13, 5, 3, 2), (2, 3), (1, 2), (2, 1), 1),
    ((2, 8, 12, 12), (32, 2, 3, 3), 1, 2, 2, 4),          # grouped, dilated
    ((2, 4, 9, 300), (20, 2, 1, 5), 1, (0, 2), (1, 3), 2),  # long rows
    ((1, 2, 1, 257), (9, 2, 1, 9), (1, 2), (0, 4), 1, 1),   # 1-D, one row
    ((3, 16, 6, 6), (40, 16, 1, 1), (2, 2), 0, 1, 1),     # 1x1 strided
    ((3, 12, 1, 100), (24, 3, 1, 1), (1, 3), 0, 1, 4),    # 1-D 1x1 strided, grouped
    ((2, 1, 20, 20), (33, 1, 3, 3), 1, 1, 1, 1),          # one channel
    ((2, 3, 10, 9), (7, 3, 3, 3), 1, 1, 1, 1),            # 7 filters, 9 wide: past the
    #                                                       gradient's 4 x 4 blocks
]


# 64-byte vectors where this CPU runs the channels kernels in them (x86-64-v4)
WIDTHS = [32, 64] if _engine._core.channels_wide() else [32]


@pytest.fixture(params=WIDTHS, ids=[f"{w}-byte" for w in WIDTHS])
def width(request, monkeypatch):
    """The channels kernels in vectors of 32 bytes, or of 64, whatever the
    filter count (the engine's own choice, _channels_vector, picks 64 only
    where the filters fill them); 64 only at an instruction-set level that
    runs them (tests lower it)."""
    bytes_ = request.param

    def vector(filters, dtype, weight_grad=False, large=False):
        wide = bytes_ == 64 and _engine._core.channels_wide()
        return (64 if wide else 32) // dtype.itemsize

    monkeypatch.setattr(_engine, "_channels_vector", vector)
    monkeypatch.setattr(_engine, "PLANS", {})
    return bytes_


@pytest.mark.parametrize("tuning", ["default", "zen4", "zen5"])
def test_the_vectors_are_ones_the_cpu_runs(tuning, monkeypatch):
    """The engine asks for 64-byte vectors only where the CPU runs them, and
    only where the filters fill two of them to 85%, or by the core's
    _WIDE_FILL: on the 'default' core wherever they fill more than half of
    whole ones, on a Zen 5 in the weight gradient where they fill 75%; the
    kernels refuse any other width (or filters not padded to whole
    vectors), naming it."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    wide = _engine._core.channels_wide()
    for f in range(1, 200):
        for dt in (np.dtype(np.float32), np.dtype(np.float64)):
            v = 64 // dt.itemsize
            full = f >= 2 * v and 100 * f >= 85 * -(-f // (2 * v)) * 2 * v
            half = 2 * f > -(-f // v) * v
            whole = 100 * f >= 75 * -(-f // v) * v
            forward = full or tuning == "default" and half
            got = _engine._channels_vector(f, dt) * dt.itemsize
            assert got == (64 if wide and forward else 32), (f, dt)
            weight_grad = forward or tuning == "zen5" and whole
            got = _engine._channels_vector(f, dt, weight_grad=True) * dt.itemsize
            assert got == (64 if wide and weight_grad else 32), (f, dt)
    x = np.zeros((1, 1, 3, 3), np.float32)
    out = np.zeros((1, 16, 3, 3), np.float32)
    call = dict(groups=1, Hr=3, Wp=3, top=0, left=0, sh=1, sw=1, span_h=1, span_w=1)
    for vl, fp, ok in ((8, 16, True), (16, 16, wide), (4, 16, False), (8, 12, False)):
        args = (x, np.zeros(fp, np.float32), np.zeros(1, np.intp), None,
                np.zeros((1, fp, 3, 3), np.float32) if fp == 16 else out[:, :fp],
                np.zeros(9, np.float32), *call.values(), fp, vl, 3, 3, 1, False)
        if ok:
            assert _engine._core.conv_forward_channels(*args)
        else:
            with pytest.raises(ValueError, match=f"{fp} filters in vectors of {vl} values"):
                _engine._core.conv_forward_channels(*args)


def _assert_same_non_finite(got, want, tol):
    """NaN and infinity exactly where the reference has them (some outputs
    finite, some not), the finite outputs within ``tol``."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert finite.any() and not finite.all()
    np.testing.assert_allclose(got[finite], want[finite], rtol=tol, atol=tol)


@pytest.fixture
def channels(monkeypatch, width):
    """Every weight gradient through the channels algorithm."""
    monkeypatch.setattr(_engine, "WEIGHT_GRAD_CHANNELS", True)
    monkeypatch.setattr(_engine, "PLANS", {})


def _plan(x, w_shape, g, stride, padding, dilation, groups):
    st = (stride, stride) if isinstance(stride, int) else stride
    dl = (dilation, dilation) if isinstance(dilation, int) else dilation
    return _engine.weight_grad_plan("t", x.shape, w_shape, g.shape, st, ref.pads4(padding), dl,
                                    groups, kernel_arg="weight", dtype=x.dtype)


@pytest.mark.parametrize("cpu, isa, tuning", [
    (("AuthenticAMD", 26), 4, "zen5"), (("AuthenticAMD", 25), 4, "zen4"),
    (("AuthenticAMD", 25), 3, "default"),   # a Zen 3 (no AVX-512), or a Zen 4 held to AVX2
    (("AuthenticAMD", 26), 3, "default"), (("AuthenticAMD", 23), 3, "default"),
    (("GenuineIntel", 6), 4, "default"), (("GenuineIntel", 25), 4, "default"), (("", 0), 1, "default"),
])
def test_each_core_gets_its_constants(cpu, isa, tuning, monkeypatch):
    """_tuning names the core from the cpuid vendor and family and the
    instruction-set level in force; a table without the core's entry gives
    it the default's (_per_core)."""
    monkeypatch.setattr(_engine, "_CPU", cpu)
    monkeypatch.setattr(_engine._core, "isa", lambda: isa)
    assert _engine._tuning() == tuning
    assert _engine._per_core({"default": 1, tuning: 2}) == 2
    assert _engine._per_core({"default": 1, "elsewhere": 2}) == 1
    for table in (_engine._NS_WINO, _engine._NS_PER_MAC_3X3, _engine._NS_PER_MAC_5X5,
                  _engine._CHANNELS_MAX_ACCUMULATOR, _engine._CHANNELS_MIN_POSITIONS):
        assert _engine._per_core(table) == table.get(tuning, table["default"])


@pytest.mark.parametrize("tuning", ["default", "zen4", "zen5"])
def test_each_cores_constants_choose_right_answers(tuning, monkeypatch):
    """The engine's choices under each core's cost constants (_tuning: the
    weight gradient in 64-byte vectors of 16 float32 filters on a Zen 5 and
    on the 'default' core, a Zen 5's Winograd constants on a grouped layer)
    give the reference's results,
    on whatever CPU runs the test."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    monkeypatch.setattr(_engine, "PLANS", {})
    assert _engine._core.cpu_id()[1] >= 0 and isinstance(_engine._core.cpu_id()[0], str)
    wide = _engine._core.channels_wide() and tuning in ("default", "zen5")
    for fg, dtype, vl in ((16, np.float32, 16), (8, np.float64, 8), (24, np.float32, 16)):
        got = _engine._channels_vector(fg, np.dtype(dtype), weight_grad=True)
        assert got == (vl if wide else 32 // np.dtype(dtype).itemsize)
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((4, 64, 14, 14)).astype(dtype)
        w = rng.standard_normal((64, 16, 3, 3)).astype(dtype)
        pads = ref.pads4(1)
        y = ref.conv_nd(x, w, pads=pads, groups=4)
        g = rng.standard_normal(y.shape).astype(dtype)
        tol = 2e-5 if dtype == np.float32 else 1e-12
        for got, want in ((convx.conv2d(x, w, padding=1, groups=4), y),
                          (convx.conv2d_input_grad(x.shape, w, g, padding=1, groups=4),
                           ref.conv_nd_input_grad(x.shape, w, g, pads=pads, groups=4)),
                          (convx.conv2d_weight_grad(x, w.shape, g, padding=1, groups=4),
                           ref.conv_nd_weight_grad(x, w.shape, g, (1, 1), pads, (1, 1), 4))):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_the_reference(case, dtype, channels, default_threads):
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(str(case)))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    out = ref.conv_nd(x, w, stride=stride, pads=ref.pads4(padding), dilation=dilation,
                      groups=groups)
    g = rng.standard_normal(out.shape).astype(dtype)
    assert _plan(x, ws, g, **geometry)[1].name == "channels"
    want = ref.conv_nd_weight_grad(x, ws, g, stride, ref.pads4(padding), dilation, groups)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    runs = []
    for threads in thread_counts(1, 2):
        convx.set_num_threads(threads)
        for _ in range(2):
            got = convx.conv2d_weight_grad(x, ws, g, **geometry)
            assert got.shape == ws and got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
            runs.append(got)
    # the same bits on every run at one thread count
    assert all(np.array_equal(runs[i], runs[i + 1]) for i in range(0, len(runs), 2))


@pytest.mark.parametrize("case", CASES)
def test_exact_where_the_sums_are(case, channels, default_threads):
    """Small integers: every product and partial sum is exact in float64, so
    the gradient equals the reference's to the last bit, on any split."""
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(7)
    x = rng.integers(-3, 4, xs).astype(np.float64)
    out = ref.conv_nd(x, np.ones(ws), stride=stride, pads=ref.pads4(padding), dilation=dilation,
                      groups=groups)
    g = rng.integers(-3, 4, out.shape).astype(np.float64)
    want = ref.conv_nd_weight_grad(x, ws, g, stride, ref.pads4(padding), dilation, groups)
    for threads in thread_counts(1, 2):
        convx.set_num_threads(threads)
        got = convx.conv2d_weight_grad(x, ws, g, stride=stride, padding=padding,
                                       dilation=dilation, groups=groups)
        assert np.array_equal(got, want), threads


# Weight gradients whose tap blocks are kernel rows of 3 unit-spaced taps (a
# 3x3 or 1x3 kernel at stride 1, undilated: _direct.h's rows3 blocks), in
# chunks of one and of two vectors at each width, rows that end in 1 to 3
# positions past a block of 4, and taps that end in a short block.
ROWS3 = [
    ((2, 6, 9, 11), (16, 3, 3, 3), 1, 1, 2),          # 27 taps: 12 + 12 + 3
    ((2, 8, 7, 13), (40, 8, 3, 3), (1, 2), 1, 1),     # 40 filters: 2 + 2 + 1 vectors
    ((3, 4, 1, 50), (24, 4, 1, 3), (0, 1), 1, 1),     # 1-D
    ((1, 32, 6, 6), (32, 16, 3, 3), 1, 1, 2),         # 144 taps, 16 filters a group
    ((2, 4, 10, 10), (16, 4, 3, 3), 2, 2, 1),         # dilated: not rows of 3
]


@pytest.mark.parametrize("case", ROWS3)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_of_three_taps_give_the_same_bits_at_each_level(case, dtype, channels,
                                                              default_threads):
    """The rows-of-3 blocks take the same products in the same order as
    the other blocks, which the 32-byte chunks of two vectors keep (and the
    64-byte ones do not): the same bits at x86-64-v3 and v4, at 1 and 2
    threads, and the reference's values at every level this CPU (and the
    build) has."""
    xs, ws, padding, dilation, groups = case
    rng = np.random.default_rng(len(str(case)))
    x = rng.standard_normal(xs).astype(dtype)
    geometry = dict(padding=padding, dilation=dilation, groups=groups)
    pads = ref.pads4(padding)
    out = ref.conv_nd(x, np.ones(ws, dtype), pads=pads, dilation=dilation, groups=groups)
    g = rng.standard_normal(out.shape).astype(dtype)
    want = ref.conv_nd_weight_grad(x, ws, g, (1, 1), pads, (dilation,) * 2, groups)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    before = _engine._core.isa()
    fused = {}
    try:
        for level in sorted({1, 3, before}):
            if _engine._core.set_isa(level) != level:
                continue
            _engine.PLANS.clear()
            assert _plan(x, ws, g, 1, **geometry)[1].name == "channels"
            for threads in thread_counts(1, 2):
                convx.set_num_threads(threads)
                got = convx.conv2d_weight_grad(x, ws, g, **geometry)
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
                if level >= 3:
                    fused[level, threads] = got
    finally:
        _engine._core.set_isa(before)
    runs = list(fused.values())   # none on a build without x86-64-v3 (portable)
    assert all(np.array_equal(got, runs[0]) for got in runs[1:])


def test_the_caller_arrays_are_not_written(channels):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 10, 10)).astype(np.float32)
    g = rng.standard_normal((2, 12, 5, 5)).astype(np.float32)
    x0, g0 = x.copy(), g.copy()
    convx.conv2d_weight_grad(x, (12, 4, 3, 3), g, stride=2, padding=1)
    assert np.array_equal(x, x0) and np.array_equal(g, g0)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_values_follow_the_rule(value, dtype, channels):
    """An input value reaches exactly the taps and filters that read it (the
    filters past a vector's last, and taps past the last block, are summed
    and dropped): the pattern of inf and NaN is the reference's."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 9, 9)).astype(dtype)
    x[1, 2, 4, 0] = value
    ws = (5, 3, 3, 3)
    g = rng.standard_normal((2, 5, 5, 5)).astype(dtype)
    got = convx.conv2d_weight_grad(x, ws, g, stride=2, padding=1)
    want = ref.conv_nd_weight_grad(x.astype(np.float64), ws, g.astype(np.float64), 2,
                                   (1, 1, 1, 1), 1, 1)
    _assert_same_non_finite(got, want, 1e-5)


def test_even_blocks_share_the_rows_evenly():
    """A static split: where there are few items, they are equal and a
    multiple of the threads, within the item's size limit."""
    for rows in range(1, 70):
        for cols in (1, 7, 28, 300):
            for col_macs in (9, 1000, 150_000, 3_000_000):
                for images in (1, 2, 3, 5):
                    for threads in (1, 2, 3, 4):
                        rb, cb = _engine._even_blocks(rows, cols, col_macs, images, threads)
                        assert 1 <= rb <= rows and 1 <= cb <= cols
                        items = images * -(-rows // rb) * -(-cols // cb)
                        assert items >= min(threads, images * rows * cols) or \
                            images * rows >= threads, (rows, cols, images, threads)
                        base = _engine._blocks(rows, cols, col_macs, images, threads)
                        if rb != base[0] and cb == cols:
                            assert rows % rb == 0 and items % threads == 0
                            assert rb * cols * col_macs <= max(_engine._ITEM_MACS,
                                                              cols * col_macs)


# the weight gradient's choices that differ by core (_engine._tuning): the
# accumulator's L2 bound (1.5 MiB, 1 MiB on a Zen 4 and a Zen 5) and the
# positions an item below which it counts (64, 128 on a Zen 4), and 1-D layers
# of few taps (a Zen 4 takes the default's rules there)
BY_CORE_L2 = {"default": "channels", "zen4": "gemm", "zen5": "gemm"}
BY_CORE_112 = {"default": "channels", "zen4": "gemm", "zen5": "channels"}  # items of 64-127
BY_CORE_1D = {"default": "gemm", "zen4": "gemm", "zen5": "channels"}
BY_CORE_PW = {"default": "channels", "zen4": "channels", "zen5": "gemm"}  # _pointwise_strided_few
BY_CORE_HALF = {"default": "channels", "zen4": "direct", "zen5": "direct"}  # _WIDE_FILL's forward


@pytest.mark.parametrize("xs, ws, stride, groups, dtype, name", [
    ((8, 128, 28, 28), (128, 16, 3, 3), 1, 8, np.float32, "channels"),   # grouped
    ((64, 6, 14, 14), (16, 6, 5, 5), 1, 1, np.float32, "channels"),       # LeNet's C3
    ((4, 3, 224, 224), (64, 3, 7, 7), 2, 1, np.float64, "channels"),      # a stem
    ((8, 64, 56, 56), (128, 64, 3, 3), 2, 1, np.float32, "channels"),
    ((8, 64, 56, 56), (256, 64, 1, 1), 1, 1, np.float32, "gemm"),         # 1x1, many filters
    ((8, 256, 56, 56), (512, 256, 1, 1), 2, 1, np.float64, "gemm"),
    ((4, 1, 64, 64), (4, 1, 5, 5), 1, 1, np.float32, "direct"),          # few filters, wide
    ((16, 1, 14, 14), (4, 1, 5, 5), 1, 1, np.float32, "channels"),       # few, narrow
    # an accumulator past L2 summed over items of few positions: the product
    ((4, 512, 7, 7), (512, 512, 3, 3), 1, 1, np.float32, "gemm"),
    ((8, 256, 14, 14), (256, 256, 3, 3), 1, 1, np.float64, "gemm"),
    ((2, 128, 28, 28), (256, 128, 3, 3), 2, 1, np.float64, "gemm"),
    ((8, 192, 14, 14), (192, 192, 3, 3), 1, 1, np.float64, "gemm"),
    # 1.3 and 1.2 MiB: inside the Xeon's bound, past the Zen 4's and Zen 5's (L2 1 MiB)
    ((8, 192, 14, 14), (192, 192, 3, 3), 1, 1, np.float32, BY_CORE_L2),
    ((16, 128, 7, 7), (128, 128, 3, 3), 1, 1, np.float64, BY_CORE_L2),
    ((2, 128, 28, 28), (256, 128, 3, 3), 2, 1, np.float32, BY_CORE_L2),  # 1.1 MiB
    ((2, 128, 28, 28), (128, 128, 3, 3), 1, 1, np.float64, BY_CORE_112),  # 112 positions
    # one image of fewer than 4 positions per filter: the product, which
    # writes into the result (_channels_one_image; not on a Zen 5)
    ((1, 128, 28, 28), (256, 128, 3, 3), 2, 1, np.float32, "gemm"),       # (and 1.1 MiB)
    ((1, 128, 28, 28), (128, 128, 3, 3), 1, 1, np.float64, BY_CORE_112),  # 6.1 a filter
    ((1, 64, 30, 30), (64, 64, 5, 5), 1, 1, np.float32, "channels"),      # 14 a filter
    # 1-D at unit stride, 16 filters or more: the product, taps as rows (not
    # on a Zen 5); at a stride, 3 to 5 taps and 48 filters or more
    ((16, 64, 1, 2048), (64, 64, 1, 3), 1, 1, np.float64, BY_CORE_1D),
    ((4, 48, 1, 8192), (48, 48, 1, 5), 1, 1, np.float32, BY_CORE_1D),
    ((16, 64, 1, 2048), (64, 64, 1, 7), 1, 1, np.float64, BY_CORE_1D),
    ((64, 16, 1, 1024), (32, 16, 1, 3), 1, 1, np.float32, BY_CORE_1D),
    ((8, 64, 1, 2048), (24, 64, 1, 7), 1, 1, np.float32, BY_CORE_1D),
    ((16, 64, 1, 2048), (8, 64, 1, 3), 1, 1, np.float32, "channels"),    # 8 filters
    ((16, 64, 1, 2048), (64, 64, 1, 3), 2, 1, np.float32, BY_CORE_1D),
    ((16, 64, 1, 2048), (32, 64, 1, 3), 2, 1, np.float32, "channels"),
    # one channel 3x3 (9 taps in all): the product
    ((64, 1, 28, 28), (32, 1, 3, 3), 1, 1, np.float32, "gemm"),
    ((8, 1, 100, 100), (48, 1, 3, 3), 1, 1, np.float64, "gemm"),
    ((64, 2, 28, 28), (32, 2, 3, 3), 1, 1, np.float32, "channels"),     # 18 taps
    # 1x1: the product
    ((8, 32, 28, 28), (64, 32, 1, 1), 1, 1, np.float32, "gemm"),
    ((4, 64, 1, 1000), (64, 64, 1, 1), 2, 1, np.float64, "gemm"),
    # but at a width stride with few positions an image, the channels kernel
    # (not on a Zen 5)
    ((8, 192, 14, 14), (256, 24, 1, 1), 2, 8, np.float32, BY_CORE_PW),   # 49 positions
    ((16, 128, 1, 100), (16, 128, 1, 1), 2, 1, np.float64, BY_CORE_PW),  # 1-D, 50
    ((32, 24, 7, 7), (64, 24, 1, 1), 3, 1, np.float32, BY_CORE_PW),      # 9, 64 filters
    ((4, 128, 20, 20), (16, 128, 1, 1), 2, 1, np.float64, BY_CORE_PW),   # 100, 16 filters
    ((32, 24, 7, 7), (128, 24, 1, 1), 3, 1, np.float32, "gemm"),         # 128 filters
    ((8, 64, 1, 300), (64, 64, 1, 1), 2, 1, np.float32, "gemm"),         # 150, 64 filters
    ((4, 128, 20, 20), (8, 128, 1, 1), 2, 1, np.float32, "gemm"),        # 2 per value
    ((4, 128, 28, 28), (32, 128, 1, 1), 3, 1, np.float32, "gemm"),       # 100, stride 3
    ((4, 512, 20, 20), (16, 512, 1, 1), 2, 1, np.float64, "gemm"),       # 1.6 MiB
    ((64, 1, 14, 14), (32, 1, 3, 3), 2, 1, np.float32, "gemm"),          # not 1x1: _few_taps
    ((16, 4, 1, 100), (64, 4, 1, 5), 2, 1, np.float64, "gemm"),          # _one_row_few_taps
    # 1-D of at most 31 taps at a width stride: the channels kernel with at most 8
    # filters a group, the product with more or on tiny calls
    ((16, 32, 1, 200), (32, 4, 1, 7), 2, 8, np.float32, "channels"),
    ((32, 16, 1, 2000), (16, 2, 1, 15), 2, 8, np.float64, "channels"),
    ((8, 4, 1, 2000), (24, 2, 1, 3), 2, 2, np.float32, "gemm"),          # 12 filters
    ((8, 4, 1, 1000), (8, 1, 1, 3), 3, 4, np.float32, "gemm"),           # 64 thousand
    # 1-D of at most 31 taps: the dot products along the rows, not the channels kernel
    ((8, 4, 1, 2000), (32, 4, 1, 3), 1, 1, np.float32, "direct"),
    ((8, 1, 1, 2000), (32, 1, 1, 9), 1, 1, np.float64, "direct"),
    # few filters on wide rows, past the dot products' block: the channels kernel
    ((8, 64, 56, 56), (4, 64, 3, 3), 1, 1, np.float32, "channels"),
    ((4, 128, 32, 32), (8, 64, 3, 3), 1, 2, np.float64, "channels"),
    # one float32 filter on rows of 4000: the dot products, though 3 of 4 are padding
    ((4, 24, 1, 4000), (1, 24, 1, 5), 1, 1, np.float32, "direct"),
])
@pytest.mark.parametrize("tuning", ["default", "zen4", "zen5"])
def test_chosen_where_it_pays(xs, ws, stride, groups, dtype, name, tuning, monkeypatch):
    """Under either core's constants (_engine._tuning), on any CPU; ``name``
    a dict where the choice is by core."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    if isinstance(name, dict):
        name = name[tuning]
    assert _chosen("weight grad", xs, ws, stride, groups, dtype, monkeypatch).name == name


@pytest.mark.parametrize("xs, ws, dtype, name", [
    # rows of 10 fill the direct kernel's 16 float32 columns to 62%; 16
    # filters fill the channels kernel's chunk of two 32-byte vectors
    ((64, 6, 14, 14), (16, 6, 5, 5), np.float32, "channels"),        # LeNet's C3
    ((32, 8, 12, 12), (16, 8, 3, 3), np.float32, "channels"),
    ((64, 6, 14, 14), (8, 6, 5, 5), np.float64, "channels"),
    # too few taps for _channels_replace_direct's fills (27 and 18): the
    # rule is the chunks' on every core (_engine._fills_chunks)
    ((32, 3, 12, 12), (16, 3, 3, 3), np.float32, "channels"),
    ((32, 2, 12, 12), (8, 2, 3, 3), np.float64, "channels"),
    # a chunk and a half of filters, or rows that fill the direct kernel's:
    # the direct kernel, but on the core whose _WIDE_FILL gives filters that
    # fill more than half a 64-byte vector those vectors, where they have 64
    # taps or more (float32; float64 24), the channels kernel in its place
    ((32, 10, 18, 18), (20, 10, 5, 5), np.float32, BY_CORE_HALF),
    ((64, 6, 14, 14), (12, 6, 5, 5), np.float32, BY_CORE_HALF),
    ((64, 3, 20, 20), (8, 3, 5, 5), np.float64, BY_CORE_HALF),
    ((16, 3, 32, 32), (12, 3, 3, 3), np.float32, "direct"),          # 27 taps
    ((16, 6, 32, 32), (12, 6, 3, 3), np.float32, "direct"),          # 54 taps
])
@pytest.mark.parametrize("tuning", ["default", "zen4", "zen5"])
def test_forward_of_narrow_rows(xs, ws, dtype, name, tuning, monkeypatch):
    """_engine._channels_narrow_rows: the forward pass of a layer whose
    output rows are narrow takes the channels kernel where its filters fill
    its vectors 1.3 times better than the rows fill the direct kernel's;
    and where _channels_replace_direct says."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    monkeypatch.setattr(_engine, "_winograd_pays", lambda *args: False)
    if isinstance(name, dict):
        name = name[tuning] if _core.channels_wide() else "direct"
    algorithm = _chosen("forward", xs, ws, 1, 1, dtype, monkeypatch, pad=0)
    assert algorithm.name == name


@pytest.mark.parametrize("xs, ws, groups, stride, name, vector", [
    # 16 float32 filters a group, rows that three tiles of 12 positions
    # cover at least 1/1.25 as well as two blocks of 16 columns: the
    # channels kernel in one 64-byte vector, where the CPU runs those
    ((8, 128, 28, 28), (128, 16, 3, 3), 8, 1, "channels", 16),   # ResNeXt-like
    ((4, 64, 56, 56), (128, 8, 3, 3), 8, 1, "channels", 16),
    ((3, 128, 40, 40), (128, 16, 3, 3), 8, 1, "channels", 16),
    # rows of 14: two tiles fill 58%, one block 88% (but with 144 taps, the
    # channels kernel where _WIDE_FILL takes one whole vector)
    ((32, 128, 14, 14), (128, 16, 3, 3), 8, 1, BY_CORE_HALF, None),
    # 27 taps (3 channels, 3x3): too few
    ((16, 3, 32, 32), (16, 3, 3, 3), 1, 1, "direct", None),
    # stride 2: the channels kernel, in 32-byte vectors (in 64-byte ones
    # where _WIDE_FILL takes one whole vector)
    ((8, 128, 56, 56), (128, 16, 3, 3), 8, 2, "channels", {"default": 16, "zen4": 8, "zen5": 8}),
])
@pytest.mark.parametrize("tuning", ["default", "zen4", "zen5"])
def test_forward_in_one_wide_vector(xs, ws, groups, stride, name, vector, tuning, monkeypatch):
    """_engine._channels_one_vector_rows: where a group's 16 float32 filters
    fill one 64-byte vector, the forward pass takes the channels kernel in
    it, at x86-64-v4, in place of the direct kernel where its tiles cover
    the rows well enough; elsewhere the rules before stand, and on a core
    whose _WIDE_FILL takes whole vectors, _channels_replace_direct."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    monkeypatch.setattr(_engine, "_winograd_pays", lambda *args: False)
    name = name[tuning] if isinstance(name, dict) else name
    vector = vector[tuning] if isinstance(vector, dict) else vector
    wide = _core.channels_wide()
    if not wide and stride == 1:
        name, vector = "direct", None
    if not wide and vector is not None:
        vector = 8
    algorithm = _chosen("forward", xs, ws, stride, groups, np.float32, monkeypatch, pad=1)
    assert algorithm.name == name
    if vector is not None:
        plan = _engine.forward_plan("t", xs, ws, (stride, stride), (1,) * 4, (1, 1), groups,
                                    kernel_arg="weight", dtype=np.float32)
        assert plan[3][-1] == vector
    if stride == 1 and ws[1] == 16:
        # the input gradient asks it of its transposed pass, whose filters
        # are the layer's 16 channels a group
        algorithm = _chosen("input grad", xs, ws, 1, groups, np.float32, monkeypatch, pad=1)
        assert algorithm.name == name


@pytest.mark.parametrize("xs, ws, dtype, name", [
    # unpadded, the input at least 1.5 times the output's positions, 48
    # filters or more: the GEMM
    ((32, 20, 12, 12), (50, 20, 5, 5), np.float64, "gemm"),
    ((16, 24, 12, 12), (96, 24, 5, 5), np.float32, "gemm"),
    ((32, 32, 8, 8), (128, 32, 3, 3), np.float32, "gemm"),
    ((32, 16, 10, 10), (64, 16, 3, 3), np.float64, "gemm"),
    # float64, 16 filters or more, where the direct kernel would run: at
    # x86-64-v4 the rows kernel (5x5, rows of at most 24 doubles), else the GEMM
    ((64, 6, 14, 14), (16, 6, 5, 5), np.float64, "rows"),            # LeNet's C3
    ((32, 8, 12, 12), (32, 8, 5, 5), np.float64, "rows"),
    # fewer filters, or less border: the direct kernels stay
    ((64, 6, 14, 14), (16, 6, 5, 5), np.float32, "direct"),
    ((64, 6, 14, 14), (8, 6, 5, 5), np.float64, "direct"),
    ((64, 8, 10, 10), (16, 8, 3, 3), np.float64, "direct"),          # 1.56 times
    ((32, 16, 12, 12), (32, 16, 5, 5), np.float32, "direct"),
    # float64, 32 channels and 64 filters, 1.11 times: the channels kernel
    # where its 64-byte vectors take the direct kernel's place, else the GEMM
    # (_many_filters: the direct kernel's outputs would be the 32 channels)
    ((4, 32, 40, 40), (64, 32, 3, 3), np.float64, "channels"),
    # float64, 16 filters: the channels kernel stays where it would replace
    # the direct one (x86-64-v4's wide vectors), else the GEMM
    ((32, 16, 12, 12), (32, 16, 5, 5), np.float64, "channels"),
])
def test_input_grad_of_unpadded_layers(xs, ws, dtype, name, monkeypatch):
    """_engine._reads_border: an input gradient whose transposed pass would
    read mostly zero border goes to the GEMM, where its filters are many."""
    if name == "channels":
        taps = ws[0] * ws[2] * ws[3]   # the transposed pass's (one group)
        name = "direct" if _engine._channels_replace_direct(ws[1], np.dtype(dtype), taps) else "gemm"
    if name == "rows" and not _core.channels_wide():
        name = "gemm"
    algorithm = _chosen("input grad", xs, ws, 1, 1, dtype, monkeypatch, pad=0)
    assert name in (algorithm.name, algorithm.method), algorithm.name


@pytest.mark.parametrize("xs, ws, pad, dtype", [
    ((32, 6, 12, 12), (64, 6, 3, 3), 1, np.float32),       # 'same'
    ((32, 6, 12, 12), (64, 6, 3, 3), 1, np.float64),
    ((16, 3, 28, 28), (64, 3, 5, 5), 0, np.float32),       # unpadded, under _BORDER_SHARE
    ((8, 6, 40, 40), (96, 6, 7, 7), 3, np.float64),
    ((8, 4, 1, 200), (64, 4, 1, 15), 7, np.float64),       # 1-D
])
def test_input_grad_of_few_channels_and_many_filters(xs, ws, pad, dtype, monkeypatch):
    """_engine._many_filters: the input gradient of a layer of few channels
    and _BORDER_MIN_FILTERS filters or more goes to the GEMM, padded or not;
    with 32 filters the direct kernels keep it."""
    def chosen(filters):
        w = (filters,) + ws[1:]
        ph = pad if ws[2] > 1 else 0
        oh, ow = xs[2] + 2 * ph - ws[2] + 1, xs[3] + 2 * pad - ws[3] + 1
        monkeypatch.setattr(_engine, "USE_DIRECT", True)
        return _engine.input_grad_plan("t", xs, w, (xs[0], filters, oh, ow), (1, 1),
                                       (ph, ph, pad, pad), (1, 1), 1, dtype=dtype)[1]

    assert chosen(ws[0]).method == "gemm", chosen(ws[0]).name
    assert chosen(32).method == "direct", chosen(32).name


def _chosen(pass_, xs, ws, stride, groups, dtype, monkeypatch, pad=None):
    """The algorithm the engine plans for a pass of a layer padded by
    ``pad`` on every side (default: half its kernel height), where the
    direct kernels are fast."""
    monkeypatch.setattr(_engine, "USE_DIRECT", True)
    pad = ws[2] // 2 if pad is None else pad
    if pass_ == "forward":
        return _engine.forward_plan("t", xs, ws, (stride, stride), (pad,) * 4, (1, 1), groups,
                                    kernel_arg="weight", dtype=dtype)[1]
    oh, ow = [(n + 2 * pad - k) // stride + 1 for n, k in zip(xs[2:], ws[2:])]
    plan = _engine.input_grad_plan if pass_ == "input grad" else _engine.weight_grad_plan
    return plan("t", xs, ws, (xs[0], ws[0], oh, ow), (stride, stride), (pad,) * 4, (1, 1),
                groups, kernel_arg="weight", dtype=dtype)[1]


@pytest.fixture
def forward_channels(monkeypatch, width):
    """Every forward pass through the channels algorithm."""
    monkeypatch.setattr(_engine, "FORWARD_CHANNELS", True)
    monkeypatch.setattr(_engine, "PLANS", {})


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_against_the_reference(case, dtype, forward_channels, default_threads):
    """Each output sums bias, then its taps in order, in one item: the same
    bits for any thread count; exact on small integers in float64."""
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(str(case)) + 1)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    st = (stride, stride) if isinstance(stride, int) else stride
    dl = (dilation, dilation) if isinstance(dilation, int) else dilation
    plan = _engine.forward_plan("t", xs, ws, st, ref.pads4(padding), dl, groups,
                                kernel_arg="weight", dtype=dtype)
    assert plan[1].name == "channels"
    want = ref.conv_nd(x, w, b, stride=stride, pads=ref.pads4(padding), dilation=dilation,
                       groups=groups)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    runs = []
    for threads in thread_counts(1, 2):
        convx.set_num_threads(threads)
        got = convx.conv2d(x, w, b, **geometry)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
        runs.append(got)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])   # for any thread count
    if dtype == np.float64:
        xi = rng.integers(-3, 4, xs).astype(dtype)
        wi = rng.integers(-3, 4, ws).astype(dtype)
        assert np.array_equal(convx.conv2d(xi, wi, **geometry),
                              ref.conv_nd(xi, wi, stride=stride, pads=ref.pads4(padding),
                                          dilation=dilation, groups=groups))


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_forward_non_finite_values_follow_the_rule(value, forward_channels):
    """A non-finite input value reaches exactly the outputs that read it (as
    if the input were zero-padded: 0 * inf = NaN in the border stays out,
    since the border holds zeros and the weights are finite)."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 11, 11))
    x[1, 1, 5, 6] = value
    w = rng.standard_normal((20, 3, 3, 3))
    got = convx.conv2d(x, w, stride=2, padding=1)
    want = ref.conv_nd(x, w, stride=2, pads=(1, 1, 1, 1))
    _assert_same_non_finite(got, want, 1e-12)


# Output widths around the tiles (6 or 12 positions): a tile that spans 2 or
# 3 rows, ends exactly at a row's end, or leaves a short tile at the item's
# end; rows over 64 wide, which a small _ITEM_MACS cuts into items of 64
# columns and a rest
RUNS = [((2, 3, 9, 9), (24, 3, 3, 3), 2, 1),       # 5 wide: a tile spans 2-3 rows
        ((1, 4, 15, 27), (32, 4, 3, 3), 2, 1),     # 14 wide
        ((2, 3, 24, 47), (40, 3, 7, 7), 2, 3),     # 24 wide: tiles end at rows' ends
        ((1, 2, 11, 25), (16, 2, 3, 3), 2, 0),     # 12 wide
        ((2, 5, 10, 13), (20, 5, 3, 3), 1, 1),     # stride 1, 13 wide
        ((1, 6, 9, 7), (16, 6, 3, 3), 1, 1),       # stride 1, 7 wide
        ((1, 3, 8, 141), (24, 3, 3, 3), 2, 1),     # 71 wide: 64 + 7 columns an item
        ((2, 4, 5, 79), (16, 4, 3, 3), 1, 1)]      # stride 1, 79 wide: 64 + 15


@pytest.mark.parametrize("case", RUNS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_tiles_run_across_rows(case, dtype, forward_channels, monkeypatch,
                                       default_threads):
    """An item of whole rows is one run of tiles across its rows; an item of
    part of a row (here forced by a small _ITEM_MACS) keeps each tile to its
    row.  Both sum each output's terms in the same order, so they give the
    same bits, right against the reference."""
    xs, ws, stride, pad = case
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    want = ref.conv_nd(x, w, b, stride=stride, pads=(pad,) * 4)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    runs = []
    for item_macs in (_engine._ITEM_MACS, 1):    # whole rows; then a few columns an item
        monkeypatch.setattr(_engine, "_ITEM_MACS", item_macs)
        monkeypatch.setattr(_engine, "PLANS", {})
        for threads in thread_counts(1, 2):
            convx.set_num_threads(threads)
            got = convx.conv2d(x, w, b, stride=stride, padding=pad)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
            runs.append(got)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


STRIDE1 = [  # (x shape, w shape, padding, dilation, groups): stride 1, where the
    # channels kernel may replace the direct one (x86-64-v4)
    ((2, 8, 13, 29), (32, 8, 3, 3), 1, 1, 1),
    ((3, 6, 14, 14), (16, 6, 5, 5), 0, 1, 1),            # LeNet-like, one vector
    ((2, 16, 12, 40), (24, 16, 3, 3), 2, 2, 1),          # dilated, a vector and a half
    ((2, 32, 9, 9), (64, 8, 3, 3), 1, 1, 4),             # grouped
    ((2, 16, 1, 300), (48, 16, 1, 7), (0, 6), (1, 2), 1),  # 1-D, long rows (7 taps:
                                                           # 3 to 5 take the GEMM)
    ((1, 12, 7, 5), (20, 12, 3, 3), (3, 0), 1, 1),       # rows shorter than a tile
]


def _stride1_case(case, dtype, seed):
    xs, ws, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    geometry = dict(padding=padding, dilation=dilation, groups=groups)
    pads = ref.pads4(padding)
    want = ref.conv_nd(x, w, b, pads=pads, dilation=dilation, groups=groups)
    g = rng.standard_normal(want.shape).astype(dtype)
    want_dx = ref.conv_nd_input_grad(xs, w, g, pads=pads, dilation=dilation, groups=groups)
    return x, w, b, g, geometry, want, want_dx


def _both_passes(x, w, b, g, geometry):
    return (convx.conv2d(x, w, b, method="direct", **geometry),
            convx.conv2d_input_grad(x.shape, w, g, method="direct", **geometry))


@pytest.mark.parametrize("case", STRIDE1)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stride_1_same_bits_as_the_direct_kernel(case, dtype, width, monkeypatch,
                                                  default_threads):
    """At stride 1 the channels kernel (the forward pass, and the input
    gradient as a forward pass over grad_output) sums each output's terms in
    the direct kernel's order, so it gives its bits, at every
    instruction-set level this CPU has, and for 1 and 2 threads."""
    x, w, b, g, geometry, want, want_dx = _stride1_case(case, dtype, len(str(case)))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    before = _engine._core.isa()
    try:
        for level in sorted({1, 3, before}):
            if _engine._core.set_isa(level) != level:
                continue
            runs = {}
            for channels in (True, False):
                for rule in ("_channels_replace_direct", "_channels_narrow_rows",
                             "_channels_large_kernel", "_channels_one_vector_rows"):
                    monkeypatch.setattr(_engine, rule, lambda *args, on=channels: on)
                monkeypatch.setattr(_engine, "ROWS", False)   # (its own order of sums)
                monkeypatch.setattr(_engine, "PLANS", {})
                dl = geometry["dilation"]
                fplan = _engine.forward_plan("t", x.shape, w.shape, (1, 1),
                                             ref.pads4(geometry["padding"]),
                                             (dl, dl) if isinstance(dl, int) else dl,
                                             geometry["groups"], kernel_arg="weight",
                                             method="direct", dtype=dtype)
                assert fplan[1].name == ("channels" if channels else "direct")
                for threads in thread_counts(1, 2):
                    convx.set_num_threads(threads)
                    runs[channels, threads] = _both_passes(x, w, b, g, geometry)
            for got in runs.values():
                for a, e, first in zip(got, (want, want_dx), runs[False, 1]):
                    np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
                    assert np.array_equal(a, first)
    finally:
        _engine._core.set_isa(before)


def test_stride_1_input_grad_with_non_finite_weights(width, monkeypatch):
    """The channels kernel multiplies grad_output's zero border by every
    weight; a non-finite weight takes the GEMM, as the direct kernel's does,
    so the input gradient holds NaN and infinity only where the reference
    does."""
    monkeypatch.setattr(_engine, "_channels_replace_direct", lambda *args: True)
    monkeypatch.setattr(_engine, "PLANS", {})
    rng = np.random.default_rng(5)
    xs, ws = (2, 16, 9, 9), (16, 16, 3, 3)
    w = rng.standard_normal(ws)
    w[3, 2, 0, 1] = np.inf
    g = rng.standard_normal((2, 16, 9, 9))
    plan = _engine.input_grad_plan("t", xs, ws, g.shape, (1, 1), (1,) * 4, (1, 1), 1,
                                   kernel_arg="weight")
    assert plan[1].name == "channels"
    got = convx.conv2d_input_grad(xs, w, g, padding=1)
    want = ref.conv_nd_input_grad(xs, w, g, pads=(1,) * 4)
    _assert_same_non_finite(got, want, 1e-12)


@pytest.mark.parametrize("xs, ws, stride, groups, dtype, name", [
    # depthwise at a width stride, output rows narrower than a vector
    ((16, 672, 14, 14), (672, 1, 5, 5), 2, 672, np.float32, "channels"),
    ((8, 32, 14, 14), (32, 1, 3, 3), 2, 32, np.float32, "channels"),
    ((8, 32, 14, 14), (32, 1, 3, 3), 2, 32, np.float64, "depthwise"),     # 7 doubles: wider
    ((8, 32, 56, 56), (32, 1, 1, 1), 2, 32, np.float64, "gemm"),          # one tap
    ((8, 32, 56, 56), (64, 1, 3, 3), 2, 32, np.float32, "channels"),      # two filters a group
    ((16, 128, 12, 12), (8, 128, 3, 3), 2, 1, np.float32, "channels"),    # fewer than 2 vectors
    ((16, 32, 32, 32), (4, 32, 3, 3), 2, 1, np.float64, "channels"),
    # filters per group: float32 to 128, float64 to 64 (_STRIDED_MAX_FILTERS)
    ((8, 64, 56, 56), (128, 64, 3, 3), 2, 1, np.float32, "channels"),
    ((8, 64, 56, 56), (160, 64, 3, 3), 2, 1, np.float32, "gemm"),
    ((8, 64, 56, 56), (128, 64, 3, 3), 2, 1, np.float64, "gemm"),
    ((8, 64, 56, 56), (64, 64, 3, 3), 2, 1, np.float64, "channels"),
    ((8, 128, 28, 28), (256, 64, 3, 3), 2, 2, np.float32, "channels"),   # 128 a group
    ((4, 3, 224, 224), (64, 3, 7, 7), 2, 1, np.float64, "channels"),      # a stem
    # strided, few taps per filter: the GEMM (the channels kernel took
    # 1.6-2.5x its time), but not with 1 to 4 filters a group from 9 taps
    ((16, 1, 1, 1000), (24, 1, 1, 3), 2, 1, np.float32, "gemm"),
    ((8, 3, 1, 4000), (12, 1, 1, 3), 2, 3, np.float32, "gemm"),
    ((8, 1, 64, 64), (24, 1, 3, 3), 2, 1, np.float32, "gemm"),
    ((16, 3, 1, 1000), (24, 3, 1, 3), 2, 1, np.float64, "gemm"),
    ((8, 16, 28, 28), (32, 1, 3, 3), 2, 16, np.float32, "channels"),
    ((8, 32, 56, 56), (64, 2, 3, 3), 2, 16, np.float64, "channels"),     # 18 taps
    # 1-D, 3 to 5 taps, 32 filters or more: the GEMM
    ((16, 64, 1, 2048), (64, 64, 1, 3), 1, 1, np.float32, "gemm"),
    ((32, 16, 1, 1024), (32, 16, 1, 5), 1, 1, np.float64, "gemm"),
    ((64, 16, 1, 1024), (32, 16, 1, 9), 1, 1, np.float64, "direct"),      # 9 taps
])
def test_forward_chosen_where_it_pays(xs, ws, stride, groups, dtype, name, monkeypatch):
    algorithm = _chosen("forward", xs, ws, stride, groups, dtype, monkeypatch)
    assert name in (algorithm.name, algorithm.method), algorithm.name


LARGE = [  # (x shape, w shape, groups): 5x5 and 7x7 kernels, one vector of filters to 96
    ((2, 20, 11, 11), (48, 20, 5, 5), 1),     # a chunk and a half (float32)
    ((1, 70, 9, 9), (16, 70, 5, 5), 1),       # past _DIRECT_MAX_BLOCK's channels x taps
    ((2, 24, 10, 13), (96, 12, 7, 7), 2),     # grouped, 48 filters a group
    ((3, 9, 12, 8), (24, 9, 5, 7), 1),        # a 5x7 kernel, one vector and a half
    ((2, 9, 12, 12), (20, 9, 5, 5), 1),       # 20 filters: 62% of two float32 vectors
]


@pytest.mark.parametrize("xs, ws, groups", LARGE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_kernels_take_wide_vectors(xs, ws, groups, dtype, monkeypatch, default_threads):
    """A 5x5 or larger kernel at unit stride whose filters per group fill
    64-byte vectors to 75%, from one vector to _LARGE_KERNEL_FILTERS, runs
    the channels kernel in 64-byte vectors at x86-64-v4
    (_channels_large_kernel), with the reference's values in the forward
    pass and the input gradient (whose filters are the input channels);
    below one vector, past the limit, at 62%, at a stride, on a 3x3
    kernel, or with fewer than 4 channels per group the rule does not
    apply."""
    monkeypatch.setattr(_engine, "USE_DIRECT", True)
    monkeypatch.setattr(_engine, "PLANS", {})
    dt = np.dtype(dtype)
    wide = _core.channels_wide()
    limit = _engine._LARGE_KERNEL_FILTERS[dt.itemsize]
    call = _engine.Call("t", "weight", xs, ws, (xs[0], ws[0], xs[2], xs[3]), (1, 1),
                        (ws[2] // 2,) * 2 + (ws[3] // 2,) * 2, (1, 1), groups, dt)
    fg = ws[0] // groups
    v = 64 // dt.itemsize
    applies = wide and v <= fg <= limit and 100 * fg >= 75 * -(-fg // v) * v and ws[1] >= 4
    assert _engine._channels_large_kernel(call) == applies
    pads = (ws[2] // 2, ws[2] // 2, ws[3] // 2, ws[3] // 2)
    plan = _engine.forward_plan("t", xs, ws, (1, 1), pads, (1, 1), groups, kernel_arg="weight",
                                dtype=dt)
    if applies:
        assert plan[1].name == "channels"
        assert plan[3][-1] == 64 // dt.itemsize     # the plan's vector
    for other in (call._replace(stride=(2, 2)), call._replace(w=ws[:2] + (3, 3)),
                  call._replace(w=(groups * (limit + 1),) + ws[1:]),
                  call._replace(w=(groups * (v - 1),) + ws[1:]),
                  call._replace(w=(groups * (v + v // 4),) + ws[1:]),    # 62% of 2 vectors
                  call._replace(w=ws[:1] + (3,) + ws[2:])):             # 3 channels a group
        assert not _engine._channels_large_kernel(other)
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    want = ref.conv_nd(x, w, b, pads=pads, groups=groups)
    g = rng.standard_normal(want.shape).astype(dtype)
    want_dx = ref.conv_nd_input_grad(xs, w, g, pads=pads, groups=groups)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    padding = (ws[2] // 2, ws[3] // 2)
    got = convx.conv2d(x, w, b, padding=padding, groups=groups)
    got_dx = convx.conv2d_input_grad(xs, w, g, padding=padding, groups=groups)
    for a, e in ((got, want), (got_dx, want_dx)):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("filters, large", [(48, True), (64, False), (128, False)])
def test_input_grad_of_many_filters_leaves_the_large_kernel_rule(filters, large, dtype,
                                                                 monkeypatch):
    """_engine._input_grad_large_kernel: the input gradient takes the channels
    kernel by _channels_large_kernel (on its transposed pass, 16 channels: a
    float32 vector) only below _LARGE_KERNEL_IG_FILTERS times as many filters
    as channels; from there the GEMM (float32), or the channels kernel where
    _channels_replace_direct says (float64 channels fill its vectors)."""
    monkeypatch.setattr(_engine, "USE_DIRECT", True)
    dt = np.dtype(dtype)
    xs, ws = (2, 16, 28, 28), (filters, 16, 7, 7)
    call = _engine.Call("t", "weight", xs, ws, (2, filters, 28, 28), (1, 1), (3,) * 4, (1, 1),
                        1, dt)
    wide = _core.channels_wide()
    assert _engine._input_grad_large_kernel(call) == (wide and large)
    name = _engine.input_grad_plan("t", xs, ws, (2, filters, 28, 28), (1, 1), (3,) * 4, (1, 1),
                                   1, dtype=dt)[1].name
    if wide and large:
        assert name == "channels"
    elif wide and dtype == np.float32:
        assert name == "gemm"


@pytest.mark.parametrize("tuning", ["default", "zen4", "zen5"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_image_of_few_positions_per_filter_takes_the_product(tuning, dtype, monkeypatch):
    """_engine._channels_one_image: one image of fewer than four output
    positions per filter takes the product, which writes its blocks of taps
    into the result; more positions per filter (counted over the image, not
    an item of the channels kernel), a batch, or groups keep the channels
    kernel; a Zen 5 keeps its own bounds.  The choice does not change with the thread count, and
    each choice gives the reference's gradient."""
    monkeypatch.setattr(_engine, "_tuning", lambda: tuning)
    monkeypatch.setattr(_engine, "PLANS", {})
    cases = [  # (x, w, stride, groups, the product's where the rule applies)
        ((1, 64, 28, 28), (256, 64, 3, 3), 2, 1, True),     # 0.77 positions per filter
        ((1, 112, 18, 18), (112, 112, 3, 3), 1, 1, True),   # 2.9
        ((1, 144, 22, 22), (144, 144, 3, 3), 1, 1, True),   # 3.4
        ((1, 72, 48, 48), (144, 72, 3, 3), 2, 1, False),    # 4: the bound
        ((1, 128, 28, 28), (128, 128, 3, 3), 1, 1, False),  # 6.1 (0.88 in an item)
        ((1, 64, 30, 30), (64, 64, 5, 5), 1, 1, False),     # 14
        ((2, 64, 28, 28), (256, 64, 3, 3), 2, 1, False),    # a batch: not one block
        ((1, 64, 28, 28), (256, 16, 3, 3), 2, 4, False),    # groups
    ]
    def chosen(rule=True):
        names = set()
        with monkeypatch.context() as m:
            if not rule:
                m.setattr(_engine, "_channels_one_image", lambda c: False)
            for threads in thread_counts(1, 2):
                convx.set_num_threads(threads)
                _engine.PLANS.clear()
                names.add(_chosen("weight grad", xs, ws, stride, groups, np.dtype(dtype),
                                  monkeypatch).name)
        _engine.PLANS.clear()
        assert len(names) == 1, (xs, ws, names)
        return names.pop()

    rng = np.random.default_rng(11)
    for xs, ws, stride, groups, product in cases:
        if product and tuning != "zen5":
            assert chosen() == "gemm", (xs, ws, tuning)
        else:   # as the other rules have it
            assert chosen() == chosen(rule=False), (xs, ws, tuning)
        x = rng.standard_normal(xs).astype(dtype)
        y = ref.conv_nd(x, np.ones(ws, dtype), stride=stride, pads=ref.pads4(ws[2] // 2),
                        groups=groups)
        g = rng.standard_normal(y.shape).astype(dtype)
        want = ref.conv_nd_weight_grad(x, ws, g, (stride, stride), ref.pads4(ws[2] // 2),
                                       (1, 1), groups)
        tol = 2e-5 if dtype == np.float32 else 1e-12
        got = convx.conv2d_weight_grad(x, ws, g, stride=stride, padding=ws[2] // 2,
                                       groups=groups)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
