"""Bad input to the notebook names: one table of (function, args, exception, argument).

Every case must raise an error that is an AssertionError (what the notebook's
``assert``s raised) and a ValueError (bad shapes and values) or a TypeError
(bad types and dtypes), and not the other one, and whose message names the
function that was called and the offending argument.
"""
import math
import re

import numpy as np
import pytest

import convx

SIGNATURES = {
    # name: argument names, in order
    "_pad_1d": ("inp", "num"),
    "_pad_1d_batch": ("inp", "num"),
    "_pad_2d": ("inp", "num"),
    "_pad_2d_obs": ("inp", "num"),
    "_pad_2d_channel": ("inp", "num"),
    "_pad_conv_input": ("inp", "num"),
    "conv_1d": ("inp", "param"),
    "conv_1d_sum": ("inp", "param"),
    "_param_grad_1d": ("inp", "param", "output_grad"),
    "_input_grad_1d": ("inp", "param", "output_grad"),
    "conv_1d_batch": ("inp", "param"),
    "input_grad_1d_batch": ("inp", "param"),
    "param_grad_1d_batch": ("inp", "param"),
    "conv_1d_batch_sum": ("inp", "fil"),
    "_compute_output_obs_2d": ("obs", "param"),
    "_compute_output_2d": ("img_batch", "param"),
    "_compute_grads_obs_2d": ("input_obs", "output_grad_obs", "param"),
    "_compute_grads_2d": ("inp", "output_grad", "param"),
    "_param_grad_2d": ("inp", "output_grad", "param"),
    "_compute_output_2d_sum": ("img_batch", "param"),
    "_compute_output_obs": ("obs", "param"),
    "_output": ("inp", "param"),
    "_compute_grads_obs": ("input_obs", "output_grad_obs", "param"),
    "_input_grad": ("inp", "output_grad", "param"),
    "_param_grad": ("inp", "output_grad", "param"),
    "_compute_output_sum": ("imgs", "param"),
}

SUM_FUNCS = {"conv_1d_sum", "conv_1d_batch_sum", "_compute_output_2d_sum",
             "_compute_output_sum"}


def A(*shape):
    return np.arange(1.0, 1.0 + math.prod(shape)).reshape(shape)


# Valid arguments for every function: 4x5 images (non-square), 2 input and 3
# output channels, 3x2 kernels.
GOOD = {
    "_pad_1d": (A(5), 1),
    "_pad_1d_batch": (A(2, 5), 1),
    "_pad_2d": (A(2, 4, 5), 1),
    "_pad_2d_obs": (A(4, 5), 1),
    "_pad_2d_channel": (A(2, 4, 5), 1),
    "_pad_conv_input": (A(1, 2, 4, 5), 1),
    "conv_1d": (A(5), A(3)),
    "conv_1d_sum": (A(5), A(3)),
    "_param_grad_1d": (A(5), A(3), A(5)),
    "_input_grad_1d": (A(5), A(3), A(5)),
    "conv_1d_batch": (A(2, 5), A(3)),
    "input_grad_1d_batch": (A(2, 5), A(3)),
    "param_grad_1d_batch": (A(2, 5), A(3)),
    "conv_1d_batch_sum": (A(2, 5), A(3)),
    "_compute_output_obs_2d": (A(4, 5), A(3, 2)),
    "_compute_output_2d": (A(2, 4, 5), A(3, 2)),
    "_compute_grads_obs_2d": (A(4, 5), A(4, 5), A(3, 2)),
    "_compute_grads_2d": (A(2, 4, 5), A(2, 4, 5), A(3, 2)),
    "_param_grad_2d": (A(2, 4, 5), A(2, 4, 5), A(3, 2)),
    "_compute_output_2d_sum": (A(2, 4, 5), A(3, 2)),
    "_compute_output_obs": (A(2, 4, 5), A(2, 3, 3, 2)),
    "_output": (A(1, 2, 4, 5), A(2, 3, 3, 2)),
    "_compute_grads_obs": (A(2, 4, 5), A(3, 4, 5), A(2, 3, 3, 2)),
    "_input_grad": (A(1, 2, 4, 5), A(1, 3, 4, 5), A(2, 3, 3, 2)),
    "_param_grad": (A(1, 2, 4, 5), A(1, 3, 4, 5), A(2, 3, 3, 2)),
    "_compute_output_sum": (A(1, 2, 4, 5), A(2, 3, 3, 2)),
}

VALUE, TYPE = ValueError, TypeError
CASES = []


def case(func, args, exc, arg, what):
    CASES.append(pytest.param(func, args, exc, arg, id=f"{func}-{arg}-{what}"))


def replaced(func, i, value):
    args = list(GOOD[func])
    args[i] = value
    return tuple(args)


# ---- wrong rank, non-arrays, non-numeric dtypes: every array argument -----
BAD_DTYPES = {
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "bool": lambda a: a > 2,
}

for func, good in GOOD.items():
    names = SIGNATURES[func]
    for i, (name, a) in enumerate(zip(names, good)):
        if not isinstance(a, np.ndarray):
            continue
        case(func, replaced(func, i, a[None]), VALUE, name, "one-dim-too-many")
        if func in SUM_FUNCS:
            # The sum wrappers get one case per argument: the message must name
            # the function the user called and that function's own argument
            # ('fil', 'imgs'), not the inner function it delegates to.
            continue
        case(func, replaced(func, i, a[0, ...]), VALUE, name, "one-dim-too-few")
        case(func, replaced(func, i, a.tolist()), TYPE, name, "list")
        case(func, replaced(func, i, tuple(a.ravel())), TYPE, name, "tuple")
        case(func, replaced(func, i, np.float64(1.0)), TYPE, name, "numpy-scalar")
        if name != "output_grad" or func not in ("_param_grad_1d", "_input_grad_1d"):
            case(func, replaced(func, i, None), TYPE, name, "None")
        for what, conv in BAD_DTYPES.items():
            case(func, replaced(func, i, conv(a)), TYPE, name, f"dtype-{what}")

# ---- pads: num ------------------------------------------------------------
for func in ("_pad_1d", "_pad_1d_batch", "_pad_2d", "_pad_2d_obs", "_pad_2d_channel",
             "_pad_conv_input"):
    case(func, replaced(func, 1, -1), VALUE, "num", "negative")
    case(func, replaced(func, 1, np.int64(-3)), VALUE, "num", "negative-np-int")
    case(func, replaced(func, 1, 1.5), TYPE, "num", "float")
    case(func, replaced(func, 1, 1.0), TYPE, "num", "integral-float")
    case(func, replaced(func, 1, np.float64(2.0)), TYPE, "num", "np-float")
    case(func, replaced(func, 1, "1"), TYPE, "num", "str")
    case(func, replaced(func, 1, None), TYPE, "num", "None")
    case(func, replaced(func, 1, True), TYPE, "num", "bool")
    case(func, replaced(func, 1, [1]), TYPE, "num", "list")

# ---- zero-size kernels ----------------------------------------------------
ZERO_KERNELS = {1: [(0,)], 2: [(0, 2), (3, 0), (0, 0)], 4: [(2, 3, 0, 2), (2, 3, 3, 0)]}
for func, good in GOOD.items():
    names = SIGNATURES[func]
    if func in SUM_FUNCS or "param" not in names:
        continue
    i = names.index("param")
    for shape in ZERO_KERNELS[good[i].ndim]:
        case(func, replaced(func, i, np.zeros(shape)), VALUE, "param",
             "zero-kernel-" + "x".join(map(str, shape)))

# ---- output_grad's shape against the input's -----------------------------
for func in ("_input_grad_1d", "_param_grad_1d"):
    case(func, replaced(func, 2, A(4)), VALUE, "output_grad", "shorter")
    case(func, replaced(func, 2, A(6)), VALUE, "output_grad", "longer")
case("_compute_grads_obs_2d", replaced("_compute_grads_obs_2d", 1, A(5, 4)), VALUE,
     "output_grad_obs", "transposed")
case("_compute_grads_obs_2d", replaced("_compute_grads_obs_2d", 1, A(4, 6)), VALUE,
     "output_grad_obs", "wider")
for func in ("_compute_grads_2d", "_param_grad_2d"):
    case(func, replaced(func, 1, A(3, 4, 5)), VALUE, "output_grad", "batch")
    case(func, replaced(func, 1, A(2, 4, 4)), VALUE, "output_grad", "narrower")
    case(func, replaced(func, 1, A(2, 5, 4)), VALUE, "output_grad", "transposed")
case("_compute_grads_obs", replaced("_compute_grads_obs", 1, A(3, 4, 6)), VALUE,
     "output_grad_obs", "wider")
case("_compute_grads_obs", replaced("_compute_grads_obs", 1, A(3, 5, 5)), VALUE,
     "output_grad_obs", "taller")
for func in ("_input_grad", "_param_grad"):
    case(func, replaced(func, 1, A(2, 3, 4, 5)), VALUE, "output_grad", "batch")
    case(func, replaced(func, 1, A(1, 3, 4, 6)), VALUE, "output_grad", "wider")
    case(func, replaced(func, 1, A(1, 3, 5, 4)), VALUE, "output_grad", "transposed")

# ---- channels: param's input channels against the input's ----------------
case("_compute_output_obs", (A(2, 4, 5), A(3, 1, 3, 3)), VALUE, "param", "in-channels")
case("_compute_output_obs", (A(2, 4, 5), A(1, 2, 3, 3)), VALUE, "param", "in-out-swapped")
case("_output", (A(1, 2, 4, 5), A(3, 1, 3, 3)), VALUE, "param", "in-channels")
case("_output", (A(1, 2, 4, 5), A(1, 2, 3, 3)), VALUE, "param", "in-out-swapped")
case("_compute_grads_obs", (A(2, 4, 5), A(3, 4, 5), A(1, 3, 3, 2)), VALUE, "param",
     "in-channels")
for func in ("_input_grad", "_param_grad"):
    case(func, (A(1, 2, 4, 5), A(1, 3, 4, 5), A(4, 3, 3, 2)), VALUE, "param", "in-channels")
    # the notebook's ``param`` is [in, out, kh, kw]; an [out, in, kh, kw] one must fail
    case(func, (A(1, 2, 4, 5), A(1, 3, 4, 5), A(3, 2, 3, 2)), VALUE, "param",
         "in-out-swapped")

# ---- output channels of output_grad against param's ----------------------
case("_compute_grads_obs", (A(2, 4, 5), A(4, 4, 5), A(2, 3, 3, 2)), VALUE,
     "output_grad_obs", "out-channels")
case("_compute_grads_obs", (A(2, 4, 5), A(2, 4, 5), A(2, 3, 3, 2)), VALUE,
     "output_grad_obs", "in-channels-as-out")
for func in ("_input_grad", "_param_grad"):
    case(func, (A(1, 2, 4, 5), A(1, 4, 4, 5), A(2, 3, 3, 2)), VALUE, "output_grad",
         "out-channels")
    case(func, (A(1, 2, 4, 5), A(1, 1, 4, 5), A(2, 3, 3, 2)), VALUE, "output_grad",
         "fewer-out-channels")


def message_pattern(func, arg):
    """Both the called function, as ``func()``, and the argument, quoted."""
    return rf"(?s)(?=.*(?<![\w.]){re.escape(func)}\(\))(?=.*'{re.escape(arg)}')"


@pytest.mark.parametrize("func, args, exc, arg", CASES)
def test_bad_input(func, args, exc, arg):
    f = getattr(convx, func)
    convx_exc = convx.ConvxValueError if exc is ValueError else convx.ConvxTypeError
    other = TypeError if exc is ValueError else ValueError
    with pytest.raises(exc, match=message_pattern(func, arg)) as info:
        f(*args)
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, convx_exc)
    assert not isinstance(info.value, other)


def test_table_is_complete():
    """Every notebook name (but the two helpers) is in the table, and every
    case's call is valid apart from the one bad argument (GOOD runs clean)."""
    notebook_names = set(SIGNATURES) | {"assert_same_shape", "assert_dim"}
    assert len(notebook_names) == 28
    assert notebook_names <= set(convx.__all__)
    assert set(GOOD) == set(SIGNATURES)
    assert len(CASES) > 300
    for func, args in GOOD.items():
        getattr(convx, func)(*args)


def test_error_classes():
    assert issubclass(convx.ConvxValueError, ValueError)
    assert issubclass(convx.ConvxValueError, AssertionError)
    assert issubclass(convx.ConvxTypeError, TypeError)
    assert issubclass(convx.ConvxTypeError, AssertionError)
    assert not issubclass(convx.ConvxValueError, TypeError)
    assert not issubclass(convx.ConvxTypeError, ValueError)


# ---- the two helpers ------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    (np.zeros(3), np.ones(3)),
    (np.zeros((2, 3)), np.zeros((2, 3), dtype=np.int8)),
    (np.zeros(()), np.zeros(())),
    (np.zeros((0, 4)), np.zeros((0, 4))),
])
def test_assert_same_shape_ok(a, b):
    assert convx.assert_same_shape(a, b) is None


@pytest.mark.parametrize("a, b", [
    (np.zeros(3), np.zeros(4)),
    (np.zeros((2, 3)), np.zeros((3, 2))),
    (np.zeros((2, 3)), np.zeros((2, 3, 1))),
    (np.zeros(()), np.zeros(1)),
])
def test_assert_same_shape_fails(a, b):
    pattern = (rf"(?s)(?=.*assert_same_shape)(?=.*{re.escape(str(a.shape))})"
               rf"(?=.*{re.escape(str(b.shape))})")
    with pytest.raises(AssertionError, match=pattern) as info:
        convx.assert_same_shape(a, b)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("i, bad", [(0, [1, 2]), (1, None), (0, 3.0)])
def test_assert_same_shape_non_array(i, bad):
    args = [np.zeros(2), np.zeros(2)]
    args[i] = bad
    name = ("output", "output_grad")[i]
    with pytest.raises(AssertionError, match=rf"(?s)assert_same_shape.*'{name}'") as info:
        convx.assert_same_shape(*args)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("shape, dim", [((3,), 1), ((2, 3), 2), ((), 0), ((1, 2, 3, 4), 4)])
def test_assert_dim_ok(shape, dim):
    assert convx.assert_dim(np.zeros(shape), dim) is None


@pytest.mark.parametrize("shape, dim", [((3,), 2), ((2, 3), 1), ((), 1), ((1, 2, 3, 4), 3)])
def test_assert_dim_fails(shape, dim):
    # informative: names the helper, the expected and the actual dimension
    pattern = (rf"(?s)(?=.*assert_dim)(?=.*\b{dim}\b)(?=.*\b{len(shape)}\b)")
    with pytest.raises(AssertionError, match=pattern) as info:
        convx.assert_dim(np.zeros(shape), dim)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [[1, 2, 3], None, 3])
def test_assert_dim_non_array(bad):
    with pytest.raises(AssertionError, match=r"(?s)assert_dim.*'t'") as info:
        convx.assert_dim(bad, 1)
    assert isinstance(info.value, TypeError)
