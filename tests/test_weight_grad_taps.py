"""The weight gradient of a 1-D layer at unit stride by the matrix product
with the taps as its rows (_gemm_passes.pxi's _weight_grad_taps): the
image's channels packed once, with their padding, into panels that every tap
reads at its shift, and the output gradient packed once per block for all
the taps.  Right against the reference for channel counts that fill no
whole panel, padding wider than the image, dilation, groups, asymmetric
padding, signals split into several blocks of positions and 64 filters (two
packed panels of two vectors); the same bits as the product with the taps as
columns wherever both split the positions alike, at every instruction-set
level this CPU has and on 1 and 2 threads; and the engine takes it for 1-D
layers at unit stride only."""
import numpy as np
import pytest

import convx
import reference as ref
from conftest import thread_counts  # (tests/conftest.py)
from convx import _core, _engine

CASES = [  # (x shape (N, C, L), weight shape, padding, dilation, groups)
    ((3, 5, 50), (7, 5, 3), 1, 1, 1),           # 5 channels: a panel of 4 and one row
    ((2, 8, 40), (16, 8, 5), 4, 2, 1),          # padding and dilation
    ((2, 6, 30), (6, 3, 3), 0, 3, 2),           # groups, no padding
    ((1, 4, 9), (4, 4, 7), 6, 2, 1),            # the taps' span wider than the signal
    ((1, 8, 3000), (8, 8, 3), 1, 1, 1),         # several blocks of positions
    ((2, 8, 100), (64, 8, 3), 1, 1, 1),         # 64 filters: panels of 2 vectors
    ((2, 12, 64), (24, 12, 4), "same", 1, 1),   # asymmetric padding
    ((4, 3, 257), (33, 3, 11), 5, 3, 1),        # 3 channels, a long kernel
]


def _levels():
    """The instruction-set levels this CPU runs: 1, and 3 and 4 where it has them."""
    before = _core.isa()
    return sorted({1, min(3, before), before})


def _weight_grad(x, w_shape, g, padding, dilation, groups, taps, monkeypatch):
    monkeypatch.setattr(_engine, "WEIGHT_GRAD_DOT", False)   # the product, not the dots
    monkeypatch.setattr(_engine, "WEIGHT_GRAD_TAPS", taps)
    monkeypatch.setattr(_engine, "PLANS", {})
    return convx.conv1d_weight_grad(x, w_shape, g, padding=padding, dilation=dilation,
                                    groups=groups, method="gemm")


def _case(case, dtype):
    xs, ws, padding, dilation, groups = case
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    out = convx.conv1d(x, w, padding=padding, dilation=dilation, groups=groups)
    g = rng.standard_normal(out.shape).astype(dtype)
    k = ws[2]
    lo, hi = ((dilation * (k - 1)) // 2, dilation * (k - 1) - (dilation * (k - 1)) // 2) \
        if padding == "same" else (padding, padding)
    want = ref.conv_nd_weight_grad(x, ws, g, stride=1, pads=(0, 0, lo, hi), dilation=dilation,
                                   groups=groups)
    return x, ws, g, want


def _pads(padding, k, dilation):
    if padding == "same":
        span = dilation * (k - 1)
        return (span // 2, span - span // 2)
    return (padding, padding)


def _plan(x, ws, g, padding, dilation, groups, dtype):
    """The weight gradient's plan through the product: ((positions, images,
    taps) per item, whether the taps are its rows)."""
    _engine.PLANS.clear()
    plan = _engine.weight_grad_plan(
        "t", (x.shape[0], x.shape[1], 1, x.shape[2]), ws[:2] + (1, ws[2]),
        (g.shape[0], g.shape[1], 1, g.shape[2]), (1, 1),
        (0, 0) + _pads(padding, ws[2], dilation), (1, dilation), groups,
        method="gemm", dtype=dtype)
    args = plan[3]
    if plan[1].name == "gemm-small":   # the geometry's 7 values, then the blocks
        return args[7:10], args[11]
    assert plan[1].name == "gemm"
    return args[1:4], args[5]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_taps_as_rows_right_at_every_level(case, dtype, monkeypatch, default_threads):
    x, ws, g, want = _case(case, dtype)
    _, _, padding, dilation, groups = case
    tol = 3e-5 if dtype == np.float32 else 1e-12
    monkeypatch.setattr(_engine, "WEIGHT_GRAD_DOT", False)
    blocks = {}
    for taps in (True, False):
        monkeypatch.setattr(_engine, "WEIGHT_GRAD_TAPS", taps)
        blocks[taps], chosen = _plan(x, ws, g, padding, dilation, groups, dtype)
        assert chosen == taps
    before = _core.isa()
    try:
        for level in _levels():
            assert _core.set_isa(level) == level
            for threads in thread_counts(1, 2):
                convx.set_num_threads(threads)
                got = _weight_grad(x, ws, g, padding, dilation, groups, True, monkeypatch)
                assert got.dtype == dtype and got.shape == ws
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
                if blocks[True] == blocks[False]:   # the same items: the same sums
                    other = _weight_grad(x, ws, g, padding, dilation, groups, False,
                                         monkeypatch)
                    assert np.array_equal(got, other), (level, threads)
    finally:
        _core.set_isa(before)
        _engine.PLANS.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_same_bits_on_every_run_and_thread_count(dtype, monkeypatch, default_threads):
    x, ws, g, _ = _case(CASES[4], dtype)
    runs = []
    for threads in thread_counts(1, 2) * 2:
        convx.set_num_threads(threads)
        runs.append(_weight_grad(x, ws, g, 1, 1, 1, True, monkeypatch))
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


def _taps_chosen(xs, ws, stride=(1, 1), pads=(0, 0, 1, 1), dilation=(1, 1)):
    _engine.PLANS.clear()
    out = (xs[0], ws[0], 1 if xs[2] == 1 else xs[2] + pads[0] + pads[1] - ws[2] + 1,
           (xs[3] + pads[2] + pads[3] - dilation[1] * (ws[3] - 1) - 1) // stride[1] + 1)
    plan = _engine.weight_grad_plan("t", xs, ws, out, stride, pads, dilation, 1,
                                    method="gemm", dtype=np.float32)
    assert plan[1].name == "gemm"
    return plan[3][5]


def test_taken_for_1d_layers_at_unit_stride_only(monkeypatch):
    monkeypatch.setattr(_engine, "WEIGHT_GRAD_DOT", False)
    assert _taps_chosen((16, 64, 1, 2048), (64, 64, 1, 3))
    assert _taps_chosen((16, 64, 1, 2048), (64, 64, 1, 3), dilation=(1, 4), pads=(0, 0, 4, 4))
    assert not _taps_chosen((16, 64, 1, 2048), (64, 64, 1, 1), pads=(0, 0, 0, 0))  # 1x1
    assert not _taps_chosen((4, 16, 8, 64), (32, 16, 3, 3), pads=(1, 1, 1, 1))     # 2-D
    assert not _taps_chosen((16, 64, 1, 2048), (64, 64, 1, 3), stride=(1, 2))      # strided


def test_the_kernel_refuses_taps_as_rows_off_a_1d_layer():
    """The kernel's own guard: its packed rows hold one row of each channel."""
    x = np.zeros((1, 2, 4, 8))
    g = np.zeros((1, 3, 2, 6))
    dw = np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match="conv_weight_grad: taps as rows need a 1-D layer"):
        _core.conv_weight_grad(x, g, dw, None, 1, 1, 1, 1, 0, 0, 1, 12, 1, 18, None, True, 1,
                               False)
    assert not dw.any()
