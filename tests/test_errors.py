"""Bad input to the notebook names and the public API: one table of
(function, args, exception, argument, value).

Every case must raise an error that is an AssertionError (what the notebook's
``assert``s raised) and a ValueError (bad shapes and values) or a TypeError
(bad types and dtypes), and not the other one, and whose message names the
function that was called and the offending argument, and, where the row gives
one, shows the offending value.
"""
import math
import re

import numpy as np
import pytest

import convx
import convx._api

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


def case(func, args, exc, arg, what, value=None):
    """One row; ``value`` is a regex the message must also contain (the offending value)."""
    CASES.append(pytest.param(func, args, exc, arg, value, id=f"{func}-{arg}-{what}"))


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
if np.dtype(np.longdouble).itemsize > 8:  # where longdouble is float64, it computes exactly
    BAD_DTYPES["longdouble"] = lambda a: a.astype(np.longdouble)

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

# ---- the public API ----------------------------------------------------------
# Valid calls: groups 2, 4 input and 6 output channels, 6x5 images (length 7 in
# 1-D), 3x2 kernels (3 in 1-D), padding 1.  Arguments are passed positionally
# in signature order (see ``api``), so the table keeps its one shape.
_GEOM = ("stride", "padding", "dilation", "groups")
API_SIGNATURES = {
    "conv1d": ("input", "weight", "bias") + _GEOM + ("method",),
    "conv2d": ("input", "weight", "bias") + _GEOM + ("method",),
    "conv1d_input_grad": ("input_shape", "weight", "grad_output") + _GEOM + ("method",),
    "conv2d_input_grad": ("input_shape", "weight", "grad_output") + _GEOM + ("method",),
    "conv1d_weight_grad": ("input", "weight_shape", "grad_output") + _GEOM + ("method",),
    "conv2d_weight_grad": ("input", "weight_shape", "grad_output") + _GEOM + ("method",),
}
_X = {1: A(2, 4, 7), 2: A(2, 4, 6, 5)}
_W = {1: A(6, 2, 3), 2: A(6, 2, 3, 2)}
_G = {1: A(2, 6, 7), 2: A(2, 6, 6, 6)}       # the forward's output shapes
_GEOM_GOOD = (1, 1, 1, 2)
API_GOOD = {}
for _n in (1, 2):
    API_GOOD[f"conv{_n}d"] = (_X[_n], _W[_n], A(6)) + _GEOM_GOOD + ("auto",)
    API_GOOD[f"conv{_n}d_input_grad"] = (_X[_n].shape, _W[_n], _G[_n]) + _GEOM_GOOD + ("auto",)
    API_GOOD[f"conv{_n}d_weight_grad"] = (_X[_n], _W[_n].shape, _G[_n]) + _GEOM_GOOD + ("auto",)


def api(func, **changes):
    """API_GOOD[func] with some arguments changed, by name, as a positional tuple."""
    names = API_SIGNATURES[func]
    assert set(changes) <= set(names), changes
    return tuple(changes.get(name, good) for name, good in zip(names, API_GOOD[func]))


def _v(value):
    """A regex for the offending value as repr shows it."""
    return re.escape(repr(value))


for func, names in API_SIGNATURES.items():
    nsp = 1 if func.startswith("conv1d") else 2
    good = dict(zip(names, API_GOOD[func]))
    w_arg = "weight" if "weight" in names else "weight_shape"

    # -- stride, padding, dilation: ints >= 1 (>= 0 for padding), or nsp-tuples
    for name, lowest in (("stride", 1), ("padding", 0), ("dilation", 1)):
        for bad in (lowest - 1, lowest - 3, (lowest,) * (nsp - 1) + (lowest - 1,)):
            case(func, api(func, **{name: bad}), VALUE, name, f"below-{lowest}-{bad}", _v(bad))
        case(func, api(func, **{name: np.int64(lowest - 1)}), VALUE, name, "np-int-too-small")
        case(func, api(func, **{name: (1,) * (nsp + 1)}), VALUE, name, "tuple-too-long",
             _v((1,) * (nsp + 1)))
        case(func, api(func, **{name: ()}), VALUE, name, "empty-tuple")
        if nsp == 2:
            case(func, api(func, **{name: (1,)}), VALUE, name, "tuple-too-short", _v((1,)))
        for what, bad in (("float", 1.5), ("integral-float", 1.0), ("bool", True),
                          ("str-digit", "1"), ("None", None), ("np-float", np.float64(2.0)),
                          ("float-in-tuple", (1, 1.5) if nsp == 2 else (1.5,))):
            if name == "padding" and what == "str-digit":
                case(func, api(func, padding=bad), VALUE, name, what, _v(bad))
                continue
            case(func, api(func, **{name: bad}), TYPE, name, what)
    for bad in ("SAME", "full", "", "Valid", " same"):
        case(func, api(func, padding=bad), VALUE, "padding", f"string-{bad!r}", _v(bad))
    # 'same' needs stride 1
    for bad in (2, (1, 2) if nsp == 2 else (3,)):
        case(func, api(func, padding="same", stride=bad), VALUE, "padding",
             f"same-with-stride-{bad}")

    # -- method: a name of the engine's, that applies to the call
    for bad in ("winograd", "", "AUTO", "FFT"):
        case(func, api(func, method=bad), VALUE, "method", f"string-{bad!r}", _v(bad))
    for what, bad in (("None", None), ("int", 1), ("bytes", b"auto")):
        case(func, api(func, method=bad), TYPE, "method", what)
    if func in ("conv1d", "conv2d"):   # (at a stride, a border far larger than the image)
        case(func, api(func, method="direct", stride=2, padding=3000), VALUE, "method",
             "direct-with-stride-2-and-a-huge-border")

    # -- groups
    for bad in (0, -2):
        case(func, api(func, groups=bad), VALUE, "groups", f"below-1-{bad}", _v(bad))
    for what, bad in (("float", 2.0), ("bool", True), ("None", None), ("str", "2")):
        case(func, api(func, groups=bad), TYPE, "groups", what)
    # 4 input channels, 6 output channels: groups 3 does not divide C_in, groups 4 not C_out
    case(func, api(func, groups=3), VALUE, "groups", "not-dividing-in-channels")
    case(func, api(func, groups=4), VALUE, "groups", "not-dividing-out-channels")

    # -- the weight against the input: in-channels * groups, kernel fitting
    wshape = good[w_arg].shape if w_arg == "weight" else good[w_arg]
    for what, shape in (("in-channels-3", (6, 3) + wshape[2:]),
                        ("in-channels-4-ignoring-groups", (6, 4) + wshape[2:]),
                        ("in-channels-1", (6, 1) + wshape[2:])):
        if w_arg == "weight":
            case(func, api(func, weight=A(*shape)), VALUE, "weight", what)
        else:
            case(func, api(func, weight_shape=shape), VALUE, "weight_shape", what)
    # the padded input is 8x7 (9 in 1-D): a 9-tall (10-long) kernel, or a dilated one
    big = (6, 2, 9, 2) if nsp == 2 else (6, 2, 10)
    case(func, api(func, **{w_arg: A(*big) if w_arg == "weight" else big}), VALUE, w_arg,
         "kernel-larger-than-padded-input")
    case(func, api(func, dilation=5), VALUE, w_arg, "dilated-kernel-larger-than-padded-input")
    case(func, api(func, padding=0, **{w_arg: A(*big) if w_arg == "weight" else big}), VALUE,
         w_arg, "kernel-larger-than-input-no-padding")

    # -- array arguments: type, dtype and rank
    for name in names[:3]:
        a = good[name]
        if not isinstance(a, np.ndarray):
            continue
        if name != "bias":  # bias=None is no bias
            case(func, api(func, **{name: None}), TYPE, name, "None")
        case(func, api(func, **{name: a.tolist()}), TYPE, name, "list")
        case(func, api(func, **{name: a.ravel()[0]}), TYPE, name, "numpy-scalar")
        for what, conv in BAD_DTYPES.items():
            case(func, api(func, **{name: conv(a)}), TYPE, name, f"dtype-{what}")
        case(func, api(func, **{name: a[None]}), VALUE, name, "one-dim-too-many")
        if name == "input" and func in ("conv1d", "conv2d"):
            # one dim fewer is an unbatched input: valid; two fewer is not
            case(func, api(func, input=a[0, 0]), VALUE, name, "two-dims-too-few")
        elif name != "bias":  # a bias of rank 0: see the bias rows
            case(func, api(func, **{name: a[0]}), VALUE, name, "one-dim-too-few")

    # -- dtypes must agree
    arrays = [n for n in names[:3] if isinstance(good[n], np.ndarray)]
    for name in arrays[1:]:
        for what, dt in (("float32", np.float32), ("int64", np.int64), ("float16", np.float16)):
            case(func, api(func, **{name: good[name].astype(dt)}), TYPE, name,
                 f"dtype-mismatch-{what}", re.escape(np.dtype(dt).name))
    case(func, api(func, **{arrays[0]: good[arrays[0]].astype(np.float32)}), TYPE,
         arrays[0], "first-dtype-mismatch")

    # -- bias (forwards)
    if "bias" in names:
        for what, bad in (("short", A(5)), ("long", A(7)), ("in-channels", A(4))):
            case(func, api(func, bias=bad), VALUE, "bias", f"length-{what}",
                 re.escape(str(bad.shape)))
        case(func, api(func, bias=A(6, 1)), VALUE, "bias", "rank-2")
        case(func, api(func, bias=A(1, 6)), VALUE, "bias", "rank-2-row")
        case(func, api(func, bias=np.array(1.0)), VALUE, "bias", "rank-0")
        case(func, api(func, bias=1.0), TYPE, "bias", "python-float")

    # -- grad_output against the forward's output shape (gradients)
    if "grad_output" in names:
        g = good["grad_output"]
        n_, f_, *sp = g.shape
        wrong = {"batch": (n_ + 1, f_, *sp), "channels": (n_, f_ - 2, *sp),
                 "in-channels": (n_, 4, *sp), "last-longer": (n_, f_, *sp[:-1], sp[-1] + 1),
                 "last-shorter": (n_, f_, *sp[:-1], sp[-1] - 1)}
        if nsp == 2:
            wrong["transposed"] = (n_, f_, sp[1], sp[0] + 1)
            wrong["taller"] = (n_, f_, sp[0] + 1, sp[1])
        for what, shape in wrong.items():
            case(func, api(func, grad_output=A(*shape)), VALUE, "grad_output",
                 f"shape-{what}", re.escape(str(tuple(shape))))
        # the stride changes the output size: a stride-1 grad_output for stride 2
        case(func, api(func, stride=2), VALUE, "grad_output", "shape-for-stride-1")

    # -- input_shape / weight_shape: tuples of nsp + 2 ints >= 0
    for name in ("input_shape", "weight_shape"):
        if name not in names:
            continue
        shape = tuple(good[name])
        case(func, api(func, **{name: None}), TYPE, name, "None")
        case(func, api(func, **{name: 5}), TYPE, name, "int")
        case(func, api(func, **{name: 5.0}), TYPE, name, "float")
        case(func, api(func, **{name: shape[:-1]}), VALUE, name, "too-short", _v(shape[:-1]))
        case(func, api(func, **{name: shape + (1,)}), VALUE, name, "too-long",
             _v(shape + (1,)))
        case(func, api(func, **{name: ()}), VALUE, name, "empty")
        neg = shape[:-1] + (-shape[-1],)
        case(func, api(func, **{name: neg}), VALUE, name, "negative", _v(neg))
        # not ints: each must be refused, not truncated or parsed
        case(func, api(func, **{name: shape[:-1] + (shape[-1] + 0.5,)}), TYPE, name,
             "float-entry")
        case(func, api(func, **{name: shape[:-1] + (float(shape[-1]),)}), TYPE, name,
             "integral-float-entry")
        case(func, api(func, **{name: shape[:-1] + (str(shape[-1]),)}), TYPE, name,
             "str-entry")
        case(func, api(func, **{name: shape[:-1] + ("x",)}), TYPE, name, "non-digit-str-entry")
        case(func, api(func, **{name: "".join(map(str, shape))}), TYPE, name, "str")
        case(func, api(func, **{name: shape[:-1] + (None,)}), TYPE, name, "None-entry")
    if "weight_shape" in names:
        ws = tuple(good["weight_shape"])
        case(func, api(func, weight_shape=ws[:2] + (0,) + ws[3:]), VALUE, "weight_shape",
             "zero-kernel")
        # a kernel size True (which int() would take for 1) must be refused like bool strides
        case(func, api(func, weight_shape=ws[:2] + (True,) + ws[3:]), TYPE, "weight_shape",
             "bool-entry")
    if "input_shape" in names:
        s_ = tuple(good["input_shape"])
        case(func, api(func, input_shape=(True,) + s_[1:], grad_output=good["grad_output"][:1]),
             TYPE, "input_shape", "bool-entry")
    if "weight" in names:
        case(func, api(func, weight=np.zeros(_W[nsp].shape[:2] + (0,) * nsp)), VALUE,
             "weight", "zero-kernel")


# The bias gradients take grad_output alone: batched or one example.
BIAS_SIGNATURES = {"conv1d_bias_grad": ("grad_output",), "conv2d_bias_grad": ("grad_output",)}
BIAS_GOOD = {f"conv{_n}d_bias_grad": (_G[_n],) for _n in (1, 2)}
for func, (_g,) in BIAS_GOOD.items():
    case(func, (None,), TYPE, "grad_output", "None")
    case(func, (_g.tolist(),), TYPE, "grad_output", "list")
    case(func, (_g.ravel()[0],), TYPE, "grad_output", "numpy-scalar")
    for what, conv in BAD_DTYPES.items():
        case(func, (conv(_g),), TYPE, "grad_output", f"dtype-{what}")
    case(func, (_g[None],), VALUE, "grad_output", "one-dim-too-many")
    case(func, (_g[0, 0],), VALUE, "grad_output", "two-dims-too-few")


def message_pattern(func, arg):
    """Both the called function, as ``func()``, and the argument, quoted."""
    return rf"(?s)(?=.*(?<![\w.]){re.escape(func)}\(\))(?=.*'{re.escape(arg)}')"


@pytest.mark.parametrize("func, args, exc, arg, value", CASES)
def test_bad_input(func, args, exc, arg, value):
    f = getattr(convx, func)
    convx_exc = convx.ConvxValueError if exc is ValueError else convx.ConvxTypeError
    other = TypeError if exc is ValueError else ValueError
    with pytest.raises(exc, match=message_pattern(func, arg)) as info:
        f(*args)
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, convx_exc)
    assert not isinstance(info.value, other)
    if value is not None:
        assert re.search(value, str(info.value)), f"{value!r} not in {str(info.value)!r}"


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


def test_api_table_is_complete():
    """Every public API function is in the table with rows for each of its
    arguments, and every case's call is valid apart from the one bad argument
    (API_GOOD runs clean, and gives the shapes the grad_output rows assume)."""
    assert set(API_SIGNATURES) | set(BIAS_SIGNATURES) == set(convx._api.__all__)
    assert set(convx._api.__all__) <= set(convx.__all__)
    for func, names in {**API_SIGNATURES, **BIAS_SIGNATURES}.items():
        rows = {p.values[3] for p in CASES if p.values[0] == func}
        assert set(names) <= rows, set(names) - rows
        result = getattr(convx, func)(*{**API_GOOD, **BIAS_GOOD}[func])
        assert isinstance(result, np.ndarray)
    for n in (1, 2):
        assert convx.conv2d(_X[2], _W[2], None, *_GEOM_GOOD).shape == _G[2].shape
        assert convx.conv1d(_X[1], _W[1], None, *_GEOM_GOOD).shape == _G[1].shape
    assert sum(p.values[0] in API_SIGNATURES for p in CASES) > 400


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


@pytest.mark.parametrize("dim, shown", [("2", "str '2'"), (2.0, "float"), (None, "None")])
def test_assert_dim_names_a_dim_that_is_not_an_integer(dim, shown):
    """A dim of '2' read "expected to have dimension 2, instead has
    dimension 2"; it now names the argument and what came."""
    with pytest.raises(AssertionError, match=rf"assert_dim\(\): argument 'dim' must be an "
                                             rf"integer, got .*{shown}") as info:
        convx.assert_dim(np.zeros((2, 3)), dim)
    assert isinstance(info.value, TypeError)
    convx.assert_dim(np.zeros((2, 3)), np.int64(2))   # any integer type


@pytest.mark.parametrize("bad", [[1, 2, 3], None, 3])
def test_assert_dim_non_array(bad):
    with pytest.raises(AssertionError, match=r"(?s)assert_dim.*'t'") as info:
        convx.assert_dim(bad, 1)
    assert isinstance(info.value, TypeError)


# ---- the plan cache never skips a check ----------------------------------

class Duck:
    """An array-like with an ndarray's shape, dtype, ndim and __array__, as a
    dask array has: not an ndarray, so convx refuses it, whether or not a
    NumPy call with the same shape and dtype came before."""

    def __init__(self, a):
        self._a = a
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim
        self.size, self.flags = a.size, None

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._a, dtype)


ALL_FUNCS = [(f, SIGNATURES[f], GOOD[f]) for f in SIGNATURES] + \
    [(f, API_SIGNATURES[f], API_GOOD[f]) for f in API_SIGNATURES] + \
    [(f, BIAS_SIGNATURES[f], BIAS_GOOD[f]) for f in BIAS_SIGNATURES]


@pytest.mark.parametrize("func, names, good", ALL_FUNCS, ids=[f for f, _, _ in ALL_FUNCS])
def test_a_duck_array_after_a_valid_call_is_refused(func, names, good):
    f = getattr(convx, func)
    for i, (name, a) in enumerate(zip(names, good)):
        if not isinstance(a, np.ndarray):
            continue
        f(*good)  # valid: its plan is cached now
        args = list(good)
        args[i] = Duck(a)
        with pytest.raises(convx.ConvxTypeError, match=message_pattern(func, name)) as info:
            f(*args)
        assert "numpy.asarray" in str(info.value) and "Duck" in str(info.value)
        f(*good)  # and the cache still serves the valid call


@pytest.mark.parametrize("func, names, good", ALL_FUNCS, ids=[f for f, _, _ in ALL_FUNCS])
def test_longdouble_is_refused_naming_the_dtypes_convx_computes_in(func, names, good):
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("longdouble is float64 here")
    f = getattr(convx, func)
    i, name = next((i, n) for i, (n, a) in enumerate(zip(names, good))
                   if isinstance(a, np.ndarray))
    args = list(good)
    args[i] = good[i].astype(np.longdouble)
    with pytest.raises(convx.ConvxTypeError, match=message_pattern(func, name)) as info:
        f(*args)
    assert "float32" in str(info.value) and "float64" in str(info.value)
    assert "longdouble" in str(info.value) or "float128" in str(info.value)


def test_masked_arrays_are_refused():
    x = np.ma.masked_array(A(1, 2, 7), mask=A(1, 2, 7) > 5)
    with pytest.raises(convx.ConvxTypeError, match=r"conv1d\(\): argument 'input' is a masked"):
        convx.conv1d(x, A(3, 2, 3))
    with pytest.raises(convx.ConvxTypeError, match=r"_pad_1d\(\): argument 'inp' is a masked"):
        convx._pad_1d(np.ma.masked_array(A(5)), 1)


# ---- memory: a valid call whose result or working memory cannot be had ----

def test_an_empty_input_with_a_huge_batch():
    """A zero-size input whose result would be huge: ConvxMemoryError (also a
    MemoryError) naming the function and the bytes, not NumPy's 'array is too
    big', before anything is copied; a representable result that does not fit
    in memory: the same class, after NumPy refused to allocate it."""
    x = np.empty((2**62, 0, 1), np.int8)     # (NumPy refuses wider empty arrays)
    w = np.empty((4, 0, 3), np.int8)
    with pytest.raises(convx.ConvxMemoryError, match=r"conv1d\(\): the result would have "
                       r"18446744073709551616 elements \(73786976294838206464 bytes in float32, "
                       r"147573952589676412928 in float64\).*batch \(of 4611686018427387904\)"):
        convx.conv1d(x, w, padding=1)
    assert issubclass(convx.ConvxMemoryError, MemoryError)
    x = np.empty((2**62, 1, 0), np.int8)
    with pytest.raises(convx.ConvxMemoryError, match=r"conv1d\(\): the result"):
        convx.conv1d(x, np.ones((1, 1, 3), np.int8), padding=2)
    with pytest.raises(convx.ConvxMemoryError, match=r"conv1d_weight_grad\(\): the result"):
        big = 2**31 - 1      # the most filters and taps a GEMM takes
        convx.conv1d_weight_grad(np.empty((0, big, 5)), (big, big, 1), np.empty((0, big, 5)))
    # representable, but far past any machine's memory (12 PiB): NumPy's
    # MemoryError, as a ConvxMemoryError naming the bytes
    with pytest.raises(convx.ConvxMemoryError, match=r"conv1d\(\): the result, 13194139533312 "
                       r"elements of float64, needs 105553116266496 bytes \(96.0 TiB\), which "
                       r"could not be allocated; split the batch \(of 1099511627776\)"):
        convx.conv1d(np.empty((2**40, 0, 5), np.int8), np.empty((4, 0, 3), np.int8))


def test_working_memory_that_cannot_be_had(monkeypatch):
    """The scratch a kernel needs cannot be allocated: ConvxMemoryError giving
    the bytes needed and how to need fewer."""
    real_empty = np.empty

    def scarce_empty(shape, dtype=float, *args, **kwargs):
        if isinstance(shape, int) and shape > 1000:  # the engine's 1-D scratch
            raise MemoryError("no")
        return real_empty(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(convx._engine.np, "empty", scarce_empty)
    convx._engine.PLANS.clear()
    x = np.ones((4, 64, 64, 64))
    w = np.ones((128, 64, 3, 3))
    for call, name in [(lambda: convx.conv2d(x, w, padding=1), "conv2d"),
                       (lambda: convx.conv2d_input_grad(x.shape, w, np.ones((4, 128, 64, 64)),
                                                        padding=1), "conv2d_input_grad"),
                       (lambda: convx.conv2d_weight_grad(x, w.shape, np.ones((4, 128, 64, 64)),
                                                         padding=1), "conv2d_weight_grad"),
                       (lambda: convx._output(x, np.ones((64, 128, 3, 3))), "_output")]:
        with pytest.raises(convx.ConvxMemoryError) as info:
            call()
        text = str(info.value)
        assert text.startswith(f"{name}(): ")
        assert re.search(r"needs \d+ bytes \([\d.]+ (KiB|MiB|GiB)\) of working memory", text)
        assert "argument '" in text and "set_num_threads" in text and "smaller pieces" in text
    convx._engine.PLANS.clear()
