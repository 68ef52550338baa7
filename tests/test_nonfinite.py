"""Non-finite values (NaN, +inf, -inf) give one defined answer on every
kernel path, the rule of docs/reliability.md:

* the forward pass and the weight gradient compute as if the input were
  explicitly zero-padded: in the border, 0 * inf = NaN (torch's float64 does
  the same);
* the input gradient sums over the output positions that exist: a border
  cell of the padded output gradient is no term at all.

The oracle is the pure-NumPy reference of tests/test_fuzz.py, which pads
explicitly and scatters from existing positions only; tests/test_fuzz.py
draws non-finite values at random, this file holds the cases worth naming.
"""
import numpy as np
import pytest

import convx
from test_fuzz import Ref, assert_close, assert_nonfinite_match


def _ref(x, w, g, b=None, stride=(1,), pads=((0, 0),), dilation=(1,), groups=1):
    return Ref(x, w, g, b, stride, list(pads), dilation, groups)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_issue_case(dtype, kernel_path):
    """An inf in the weight and padding 2: the input gradient's first cells
    have terms only from existing output positions, which never meet the
    infinite tap: they are finite (the direct kernel, which multiplies the
    zero border by every weight, gave NaN there)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 40)).astype(dtype)
    w = rng.standard_normal((8, 8, 5)).astype(dtype)
    w[2, 1, 4] = np.inf
    g = rng.standard_normal((2, 8, 40)).astype(dtype)
    dx = convx.conv1d_input_grad(x.shape, w, g, padding=2)
    assert np.all(np.isfinite(dx[0, 1, :2])), dx[0, 1, :4]
    ref = _ref(x, w, g, pads=[(2, 2)])
    assert_close(dx, ref.dx, ref.dx_abs, ref.n_dx, np.dtype(dtype), "input grad")
    assert np.isnan(dx[0, 1]).sum() == 0 and np.isinf(dx[0, 1]).sum() == 38  # one tap, inf * g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["weight", "input", "grad_output", "bias"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("stride, channels", [(1, (4, 8)), (1, (16, 32)), (2, (16, 32)),
                                              (1, (1, 16))])
def test_every_pass_follows_the_rule(dtype, where, value, stride, channels, kernel_path):
    """One non-finite value in one array, every pass, both kernel paths,
    against the reference; 16 -> 32 channels take the direct kernel at unit
    stride (and the GEMM otherwise)."""
    c_in, c_out = channels
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, c_in, 9, 11)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    oh, ow = (9 + 2 - 3) // stride + 1, (11 + 2 - 3) // stride + 1
    g = rng.standard_normal((2, c_out, oh, ow)).astype(dtype)
    target = {"weight": w, "input": x, "grad_output": g, "bias": b}[where]
    target.flat[target.size // 3] = value
    target.flat[0] = value        # a corner: its taps meet the border
    kw = dict(stride=stride, padding=1)
    y = convx.conv2d(x, w, b, **kw)
    dx = convx.conv2d_input_grad(x.shape, w, g, **kw)
    dw = convx.conv2d_weight_grad(x, w.shape, g, **kw)
    ref = Ref(x, w, g, b, (stride, stride), [(1, 1), (1, 1)], (1, 1), 1)
    dt = np.dtype(dtype)
    assert_close(y, ref.y, ref.y_abs, ref.n_y, dt, "forward")
    assert_close(dx, ref.dx, ref.dx_abs, ref.n_dx, dt, "input grad")
    assert_close(dw, ref.dw, ref.dw_abs, ref.n_dw, dt, "weight grad")
    if where == "weight" and not np.isnan(value):
        # 0 * inf in the border: the forward's border outputs are NaN
        assert np.isnan(y).any()


def test_zero_padding_times_inf_in_the_forward_and_weight_gradient():
    """The border is zeros that multiply: an infinite weight's tap over the
    border gives NaN in the forward pass; an infinite output gradient over
    the border gives NaN in the weight gradient."""
    x = np.ones((1, 1, 4))
    w = np.array([[[np.inf, 1.0, 1.0]]])
    y = convx.conv1d(x, w, padding=1)
    # out[0] = inf * 0 (border) + 1 + 1: NaN; the others have inf * 1
    assert np.isnan(y[0, 0, 0]) and np.all(y[0, 0, 1:] == np.inf)
    g = np.array([[[np.inf, 0.0, 0.0, 0.0]]])
    dw = convx.conv1d_weight_grad(x, (1, 1, 3), g, padding=1)
    # tap 0 reads the border at output 0: inf * 0 = NaN; taps 1, 2 read x = 1
    assert np.isnan(dw[0, 0, 0]) and np.all(dw[0, 0, 1:] == np.inf)
    # the input gradient has no border terms: dx[j] = sum of existing g * w
    dx = convx.conv1d_input_grad(x.shape, np.array([[[1.0, 2.0, np.inf]]]),
                                 np.array([[[1.0, 0.0, 0.0, 0.0]]]), padding=1)
    # dx[0] = g[0]*w[1] + g[1]*w[0] = 2; dx[1] = g[0]*w[2] + g[1]*w[1] + g[2]*w[0] = inf;
    # dx[2] = g[1]*w[2] + ... = 0 * inf = NaN; dx[3]: g[2]*w[2] + g[3]*w[1] = NaN
    got = dx[0, 0]
    assert got[0] == 2.0 and got[1] == np.inf and np.isnan(got[2]) and np.isnan(got[3])


@pytest.mark.parametrize("threads", [1, 2])
def test_the_rule_holds_on_every_thread_count(threads):
    if threads > convx._threads._MAX_THREADS:
        pytest.skip("one CPU")
    convx.set_num_threads(threads)
    try:
        rng = np.random.default_rng(2)
        x = rng.standard_normal((1, 32, 64, 64))
        w = rng.standard_normal((32, 32, 3, 3))
        w[3, 5, 0, 0] = np.inf
        x[0, 7, 0, :] = np.nan
        g = rng.standard_normal((1, 32, 64, 64))
        dx = convx.conv2d_input_grad(x.shape, w, g, padding=1)
        y = convx.conv2d(x, w, padding=1)
        ref = Ref(x, w, g, None, (1, 1), [(1, 1), (1, 1)], (1, 1), 1)
        assert_nonfinite_match(y, ref.y, "forward")
        assert_nonfinite_match(dx, ref.dx, "input grad")
    finally:
        convx.set_num_threads(None)
