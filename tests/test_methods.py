"""``method=``: every pass through every algorithm that applies to it, against
the reference; 'auto' is one of them bit for bit; a method that does not apply,
or is not a method, is refused naming the argument."""
import numpy as np
import pytest

import convx
import reference as ref
from convx import ConvxTypeError, ConvxValueError, _engine

CASES = [  # (x shape, w shape, stride, padding (per side), dilation, groups)
    ((3, 4, 9, 8), (6, 4, 3, 3), 1, 1, 1, 1),
    ((2, 16, 12, 12), (32, 16, 3, 3), 1, 1, 1, 1),
    ((2, 6, 10, 11), (6, 1, 3, 3), 1, 1, 1, 6),          # depthwise
    ((2, 8, 9, 9), (8, 4, 2, 3), 1, (1, 0), (2, 1), 2),   # even kernel, dilated, grouped
    ((3, 3, 13, 13), (8, 3, 5, 5), 2, 2, 1, 1),          # strided: no direct input grad
    ((2, 4, 11, 12), (10, 2, 3, 2), (2, 3), (1, 0), (1, 2), 2),  # strided, grouped, dilated
    ((2, 4, 7, 7), (5, 4, 1, 1), 1, 0, 1, 1),            # 1x1
    ((4, 2, 1, 33), (3, 2, 1, 7), 1, (0, 3), 1, 1),      # 1-D as 2-D
    ((1, 3, 8, 8), (4, 3, 3, 3), (2, 1), 1, 1, 1),       # stride 2 along the height only
    ((2, 50, 6, 7), (30, 50, 1, 1), 1, 0, 1, 1),         # 1x1: three GEMM panels, one ragged
    ((2, 5, 9, 10), (7, 5, 1, 1), 2, 1, 1, 1),           # 1x1 stride 2 (every other column)
    ((2, 6, 13, 12), (4, 6, 3, 3), 1, (2, 1), (2, 3), 1),  # dilated 3x3: Winograd's phases
]


def _applies(method, pass_, stride, w_shape, dilation):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    if method == "fft":
        return w_shape[2:] != (1, 1)   # (dilation never makes a 1x1 kernel span more)
    if method == "winograd":
        return w_shape[2:] == (3, 3) and stride == 1 and pass_ != "weight grad"
    if method != "direct" or pass_ != "input grad":   # (their direct kernels: any stride)
        return True
    return sw == 1 and (pass_ != "input grad" or sh == 1)


NEEDS = {"direct": "stride 1", "fft": "a kernel that spans more than one position",
         "winograd": "a 3x3 or 5x5 kernel at stride 1, in the forward pass or the input "
                     "gradient"}


def _calls(x, w, g, geometry, method):
    return {"forward": lambda: convx.conv2d(x, w, **geometry, method=method),
            "input grad": lambda: convx.conv2d_input_grad(x.shape, w, g, **geometry,
                                                          method=method),
            "weight grad": lambda: convx.conv2d_weight_grad(x, w.shape, g, **geometry,
                                                            method=method)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_method_that_applies(case, dtype):
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(str(case)))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    pads = ref.pads4(padding)
    want_out = ref.conv_nd(x, w, stride=stride, pads=pads, dilation=dilation, groups=groups)
    g = rng.standard_normal(want_out.shape).astype(dtype)
    want = {"forward": want_out,
            "input grad": ref.conv_nd_input_grad(x.shape, w, g, stride, pads, dilation, groups),
            "weight grad": ref.conv_nd_weight_grad(x, w.shape, g, stride, pads, dilation,
                                                   groups)}
    tol = 2e-5 if dtype == np.float32 else 1e-12
    got = {m: _calls(x, w, g, geometry, m) for m in _engine.METHODS}
    for pass_, e in want.items():
        results = {}
        for method in _engine.METHODS[1:]:
            if not _applies(method, pass_, stride, ws, dilation):
                with pytest.raises(ConvxValueError, match=rf"argument 'method'='{method}' does "
                                                          rf"not apply to this call: the "
                                                          rf"{method} algorithm needs "
                                                          rf"{NEEDS[method]}"):
                    got[method][pass_]()
                continue
            r = got[method][pass_]()
            np.testing.assert_allclose(r, e, rtol=tol, atol=tol * max(1.0, np.abs(e).max()),
                                       err_msg=f"{pass_} by {method}")
            results[method] = r
        auto = got["auto"][pass_]()
        assert any(np.array_equal(auto, r) for r in results.values()), pass_


def test_forced_direct_runs_where_auto_would_not():
    """A call 'auto' sends to the GEMM (few taps) still runs direct when asked,
    and the two differ only by rounding."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 20, 20))
    w = rng.standard_normal((4, 1, 3, 3))
    auto_plan = _engine.forward_plan("t", x.shape, w.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1,
                                     kernel_arg="weight")
    direct_plan = _engine.forward_plan("t", x.shape, w.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1,
                                       kernel_arg="weight", method="direct")
    assert auto_plan[1].method == "gemm" and direct_plan[1].name == "direct"
    a = convx.conv2d(x, w, padding=1)
    d = convx.conv2d(x, w, padding=1, method="direct")
    np.testing.assert_allclose(d, a, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("func, args", [
    ("conv1d", lambda: (np.ones((1, 1, 5)), np.ones((1, 1, 3)))),
    ("conv2d", lambda: (np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)))),
    ("conv1d_input_grad", lambda: ((1, 1, 5), np.ones((1, 1, 3)), np.ones((1, 1, 3)))),
    ("conv2d_input_grad", lambda: ((1, 1, 5, 5), np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)))),
    ("conv1d_weight_grad", lambda: (np.ones((1, 1, 5)), (1, 1, 3), np.ones((1, 1, 3)))),
    ("conv2d_weight_grad", lambda: (np.ones((1, 1, 5, 5)), (1, 1, 3, 3), np.ones((1, 1, 3, 3)))),
])
def test_bad_methods_are_refused(func, args):
    f = getattr(convx, func)
    for method in ("auto", "direct", "gemm", "fft"):
        f(*args(), method=method)
    for bad in ("Winograd", "FFT", "", "Direct", " auto"):
        with pytest.raises(ConvxValueError, match=rf"{func}\(\): argument 'method' must be one "
                                                  rf"of 'auto', 'direct', 'gemm', 'fft', "
                                                  rf"'winograd', got "):
            f(*args(), method=bad)
    for bad in (None, 1, b"auto", ("auto",)):
        with pytest.raises(ConvxTypeError, match=rf"{func}\(\): argument 'method' must be one"):
            f(*args(), method=bad)
    # a valid call is cached; a bad method after it is still checked
    f(*args(), method="gemm")
    with pytest.raises(ConvxValueError):
        f(*args(), method="Winograd")


def test_the_table_names_every_method():
    for pass_, table in _engine.ALGORITHMS.items():
        methods = {a.method for a in table} - {None}
        assert methods == set(_engine.METHODS) - {"auto"}, pass_
        assert table[-1].method == "gemm"   # the last entry applies to every call
        direct = next(a for a in table if a.method == "direct")
        assert ("stride 1" in direct.needs) == (pass_ == "input grad"), pass_
