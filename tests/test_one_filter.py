"""One output channel in the direct kernel (_direct.h's ``block1``): a
single filter's forward pass, and the input gradient of a layer with one
input channel, run in blocks of that one channel by 8 vectors of columns
(64-byte ones on x86-64-v4 where the row is that wide) instead of blocks of
4 channels, 3 of them padding; columns whose taps lie inside the image read
it in place, the border's through the padded scratch.  Right against the
reference for rows narrower than a block, exactly one block, a block and a
few columns (the last block moved left over the one before), odd row
counts, bias or none, 1-D; the same sums in the same order as the blocks of
4, so the same bits as the first filter of a two-filter call, at every
instruction-set level this CPU has and for any thread count.  And 'auto'
takes the direct kernel for a single filter."""
import numpy as np
import pytest

import convx
import reference as ref
from conftest import thread_counts  # (tests/conftest.py)
from convx import _core, _engine

CASES = [  # (x shape, kernel (KH, KW), padding, dilation)
    ((2, 5, 7, 9), (3, 3), 1, 1),          # rows narrower than one block
    ((3, 4, 11, 16), (3, 3), (1, 0), 1),   # 14 columns: within a block or two
    ((2, 3, 9, 34), (3, 3), 1, 1),         # 34: a block and a few (float64)
    ((1, 6, 13, 70), (5, 5), 2, 1),        # several blocks, the last moved left
    ((2, 2, 12, 41), (3, 3), 2, 2),        # dilated
    ((4, 8, 1, 300), (1, 9), (0, 4), 1),   # 1-D
    ((1, 1, 15, 64), (7, 7), 3, 1),        # one channel in as well
    # rows of 64 doubles and more take x86-64-v4's 64-byte vectors; columns
    # whose reads lie inside the image read it in place, the border's
    # through the scratch
    ((2, 3, 5, 150), (3, 5), (0, 2), 1),   # no rows of border: in place, 2 rows at once
    ((2, 2, 6, 97), (3, 3), (0, 1), (1, 2)),   # dilated along the width
    ((3, 2, 1, 260), (1, 3), (0, 5), 1),   # 1-D, a border wider than the kernel
    ((2, 3, 1, 36), (1, 5), (0, 2), 1),    # 32 columns in place: the least
    ((2, 3, 1, 35), (1, 5), (0, 2), 1),    # 31: all through the scratch
]


def _levels():
    """The instruction-set levels this CPU runs: 1, and 3 and 4 where it has them."""
    before = _core.isa()
    return sorted({1, min(3, before), before})


def _check_everywhere(one, two, want, dtype):
    """At every level and on 1 and 2 threads: ``one()`` (one output channel)
    against the reference ``want``, and bit for bit channel 0 of ``two()``
    (two output channels: the blocks of 4)."""
    tol = 2e-5 if dtype == np.float32 else 1e-12
    before = _core.isa()
    try:
        for level in _levels():
            assert _core.set_isa(level) == level
            _engine.PLANS.clear()
            for threads in thread_counts(1, 2):
                convx.set_num_threads(threads)
                got = one()
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
                assert np.array_equal(got[:, 0], two()[:, 0]), (level, threads)
    finally:
        _core.set_isa(before)
        _engine.PLANS.clear()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [False, True])
def test_one_filter_right_and_the_bits_of_two(case, dtype, bias, default_threads):
    xs, (kh, kw), padding, dilation = case
    rng = np.random.default_rng(len(str(case)) + bias)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((1, xs[1], kh, kw)).astype(dtype)
    b = rng.standard_normal(1).astype(dtype) if bias else None
    w2 = np.concatenate([w, rng.standard_normal(w.shape).astype(dtype)])
    b2 = None if b is None else np.concatenate([b, b])
    geometry = dict(padding=padding, dilation=dilation)
    want = ref.conv_nd(x, w, stride=1, pads=ref.pads4(padding), dilation=dilation, groups=1)
    if b is not None:
        want = want + b.astype(np.float64)[None, :, None, None]
    _check_everywhere(lambda: convx.conv2d(x, w, b, method="direct", **geometry),
                      lambda: convx.conv2d(x, w2, b2, method="direct", **geometry), want, dtype)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_grad_of_one_input_channel(case, dtype, default_threads):
    """The input gradient at stride 1 runs the forward kernel over the output
    gradient: with one input channel, it has one output channel."""
    xs, (kh, kw), padding, dilation = case
    xs = (xs[0], 1) + xs[2:]
    rng = np.random.default_rng(len(str(case)))
    w = rng.standard_normal((5, 1, kh, kw)).astype(dtype)
    x = rng.standard_normal(xs).astype(dtype)
    geometry = dict(padding=padding, dilation=dilation)
    g = rng.standard_normal(convx.conv2d(x, w, **geometry).shape).astype(dtype)
    want = ref.conv_nd_input_grad(xs, w, g, 1, ref.pads4(padding), dilation, 1)
    w2 = np.concatenate([w, rng.standard_normal(w.shape).astype(dtype)], axis=1)
    _check_everywhere(
        lambda: convx.conv2d_input_grad(xs, w, g, method="direct", **geometry),
        lambda: convx.conv2d_input_grad((xs[0], 2) + xs[2:], w2, g, method="direct", **geometry),
        want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, kernel, padding", [
    ((2, 3, 1, 300), (1, 9), (0, 4)),
    ((2, 2, 9, 130), (3, 5), (1, 2)),
    ((1, 1, 7, 70), (3, 3), (1, 1)),
    ((2, 2, 1, 120), (1, 3), (0, 5)),   # the input gradient crops the gradient
])
def test_in_place_reads_give_the_bits_of_the_scratch(x_shape, kernel, padding, dtype,
                                                     default_threads):
    """Columns whose reads lie inside the image (or the output gradient) are
    read in place; those that read the border, through the padded scratch.
    The same sums in the same order: padding given as ``padding=`` (border
    through the scratch) and as explicit zeros (everything in place) give the
    same bits, one filter and two, forward and input gradient."""
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    ph, pw = padding
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for f in (1, 2):
        w = rng.standard_normal((f, x_shape[1]) + kernel).astype(dtype)
        assert np.array_equal(convx.conv2d(x, w, padding=padding, method="direct"),
                              convx.conv2d(xpad, w, method="direct"))
        # the input gradient of one input channel: the gradient padded by the
        # kernel's extent less the padding (cropped where that is negative)
        w1 = rng.standard_normal((f, 1) + kernel).astype(dtype)
        x1 = x[:, :1]
        g = rng.standard_normal(convx.conv2d(x1, w1, padding=padding).shape).astype(dtype)
        got = convx.conv2d_input_grad(x1.shape, w1, g, padding=padding, method="direct")
        want = ref.conv_nd_input_grad(x1.shape, w1, g, 1, ref.pads4(padding), 1, 1)
        tol = 2e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
        # the same sums with the kernel's whole extent as padding, over the
        # gradient padded (or cropped) by the difference: every read in place
        a = [k - 1 - p for k, p in zip(kernel, padding)]
        gpad = g[:, :, max(0, -a[0]):g.shape[2] - max(0, -a[0]),
                 max(0, -a[1]):g.shape[3] - max(0, -a[1])]
        gpad = np.pad(gpad, ((0, 0), (0, 0), (max(0, a[0]),) * 2, (max(0, a[1]),) * 2))
        assert np.array_equal(got, convx.conv2d_input_grad(
            x1.shape, w1, gpad, padding=(kernel[0] - 1, kernel[1] - 1), method="direct"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape", [
    ((8, 16, 64, 64), (1, 16, 3, 3)),
    ((16, 32, 28, 28), (1, 32, 5, 5)),
    ((4, 256, 14, 14), (1, 256, 3, 3)),
])
def test_auto_takes_the_direct_kernel_for_one_filter(x_shape, w_shape, dtype):
    """The GEMM's product would have one row: 2-6x the direct kernel's time.
    (Where the direct kernels are not vectorised, USE_DIRECT, never.)"""
    p = (w_shape[2] - 1) // 2
    plan = _engine.forward_plan("t", x_shape, w_shape, (1, 1), (p,) * 4, (1, 1), 1,
                                dtype=dtype)
    assert (plan[1].name == "direct") == _engine.USE_DIRECT, plan[1].name


def _same_plan(pass_, x_shape, w_shape, groups, dtype):
    """The engine's plan for a pass of a 'same'-padded layer at unit stride
    (a 1-D layer as (N, C, 1, W), padded along the width only)."""
    if x_shape[2] == 1:
        pads = (0, 0) + ((w_shape[3] - 1) // 2,) * 2
    else:
        pads = ((w_shape[2] - 1) // 2,) * 4
    if pass_ == "forward":
        return _engine.forward_plan("t", x_shape, w_shape, (1, 1), pads, (1, 1), groups,
                                    dtype=dtype)
    return _engine.input_grad_plan("t", x_shape, w_shape, (x_shape[0], w_shape[0]) + x_shape[2:],
                                   (1, 1), pads, (1, 1), groups, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pass_, x_shape, w_shape, groups", [
    # the forward pass of 1 or 2 filters a group, 12 taps or more
    ("forward", (8, 6, 1, 4000), (2, 3, 1, 5), 2),
    ("forward", (16, 2, 28, 28), (1, 2, 3, 3), 1),
    ("forward", (4, 3, 100, 100), (2, 3, 3, 3), 1),
    # the forward pass of at most 16 filters a group from 9 taps: a 3x3
    # kernel over one or two channels a group, grouped or not
    ("forward", (16, 4, 56, 56), (32, 1, 3, 3), 4),
    ("forward", (64, 1, 28, 28), (8, 1, 3, 3), 1),
    ("forward", (8, 32, 28, 28), (256, 2, 3, 3), 16),
    ("forward", (8, 8, 1, 4000), (64, 2, 1, 7), 4),
    # the input gradient of few filters a group, over which the product would
    # contract: from 9 taps, or 8 channels a group, or at most 2 filters
    ("input grad", (1, 512, 28, 28), (8, 64, 3, 3), 8),
    ("input grad", (4, 32, 1, 784), (1, 32, 1, 3), 1),
    ("input grad", (8, 3, 64, 64), (1, 3, 3, 3), 1),
    ("input grad", (8, 5, 1, 3000), (1, 5, 1, 3), 1),
    ("input grad", (16, 2, 28, 28), (1, 2, 3, 3), 1),
])
def test_auto_takes_a_direct_kernel_where_the_product_is_thin(pass_, x_shape, w_shape, groups,
                                                               dtype, monkeypatch):
    """The GEMM's product would have 1 to 3 rows, or contract over 1 to 8
    filters: 0.05-0.9x the direct kernels' time.  (Where the direct kernels
    are not vectorised, USE_DIRECT, never.)"""
    monkeypatch.setattr(_engine, "PLANS", {})
    plan = _same_plan(pass_, x_shape, w_shape, groups, dtype)
    assert (plan[1].method == "direct") == _engine.USE_DIRECT, plan[1].name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, groups", [
    ((16, 4, 56, 56), (128, 1, 3, 3), 4),     # 32 filters a group
    ((8, 1, 28, 28), (32, 1, 3, 3), 1),       # MNIST's first layer
    ((32, 2, 1, 1000), (16, 2, 1, 3), 1),     # 6 taps
])
def test_the_gemm_keeps_9_to_23_taps_past_16_filters_and_fewer_taps(x_shape, w_shape, groups,
                                                                  dtype, monkeypatch):
    """From 32 filters a group the direct kernel took 0.75-1.24x the GEMM's
    time at 9 to 18 taps, and 0.64-1.16x below 9: the GEMM keeps them."""
    monkeypatch.setattr(_engine, "PLANS", {})
    plan = _same_plan("forward", x_shape, w_shape, groups, dtype)
    assert plan[1].method == "gemm", plan[1].name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pass_, x_shape, w_shape", [
    ("input grad", (1, 1, 1, 5), (1, 1, 1, 3)),        # the core suite's tiny call
    ("input grad", (8, 3, 1, 200), (2, 3, 1, 3)),      # 29k multiply-adds
    ("forward", (2, 3, 1, 64), (1, 3, 1, 5)),
    ("forward", (2, 1, 12, 12), (8, 1, 3, 3)),          # 20k
])
def test_tiny_thin_products_stay_with_the_small_gemm(pass_, x_shape, w_shape, dtype,
                                                      monkeypatch):
    """Below _THIN_MIN_MACS the Python around the direct kernel costs more
    than the thin product saves (the tiny input gradient took 9.8 us a call
    there, 3.1 in the small GEMM): the rules for thin products leave it."""
    monkeypatch.setattr(_engine, "PLANS", {})
    plan = _same_plan(pass_, x_shape, w_shape, 1, dtype)
    assert plan[1].method == "gemm", plan[1].name
