"""The public API: ``torch.nn.functional.conv1d/conv2d`` semantics for NumPy arrays.

Layouts are NCL / NCHW for data and ``(C_out, C_in // groups, k)`` /
``(C_out, C_in // groups, kH, kW)`` for weights, as in PyTorch, CS231n and d2l.
Every function checks its arguments here, brings the arrays to one float dtype
in C order, and calls the engine: the same core the notebook names use.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from typing import TypeGuard

import numpy as np

from . import _engine
from . import _validate as v

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ._engine import Plan
    from ._typing import Array, Geometry, Method, Padding, Shape

    # What a face keeps per call signature (see _forward_plan)
    _Face = tuple[np.dtype[Any], np.dtype[Any], tuple[int, ...] | None, tuple[int, ...] | None,
                  tuple[int, ...] | None, Plan]

__all__ = [
    "conv1d",
    "conv1d_bias_grad",
    "conv1d_input_grad",
    "conv1d_weight_grad",
    "conv2d",
    "conv2d_bias_grad",
    "conv2d_input_grad",
    "conv2d_weight_grad",
]


# Strides, dilations and paddings index 64-bit memory: past this they could
# overflow the kernels' index arithmetic, and they mean nothing real anyway.
_GEOMETRY_MAX = 2**62


def _is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _pair(func: str, name: str, value: Any, nsp: int, minimum: int) -> tuple[int, ...]:
    """An int or a tuple of ``nsp`` ints, each >= ``minimum``, as a tuple."""
    if type(value) is int and minimum <= value <= _GEOMETRY_MAX:  # the common case, first
        return (value,) * nsp
    items = value if isinstance(value, (tuple, list)) else (value,) * nsp
    if not all(_is_int(item) for item in items):
        raise v.ConvxTypeError(
            f"{func}(): argument '{name}' must be an int or a tuple of {nsp} ints, got {value!r}")
    if len(items) != nsp:
        raise v.ConvxValueError(
            f"{func}(): argument '{name}' must be an int or a tuple of {nsp} ints, got {value!r}")
    if any(item < minimum for item in items):
        raise v.ConvxValueError(f"{func}(): argument '{name}' must be >= {minimum}, got {value!r}")
    if any(item > _GEOMETRY_MAX for item in items):
        raise v.ConvxValueError(
            f"{func}(): argument '{name}' must be at most 2**62, got {value!r}")
    return tuple(int(item) for item in items)


def _geometry(func: str, nsp: int, kernel: Sequence[int], stride: object, padding: object,
              dilation: object) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Normalise stride, padding and dilation to the engine's 2-D form.

    Returns ``(stride, pads, dilation)``: ``(sh, sw)``, ``(top, bottom, left,
    right)`` and ``(dh, dw)``.  For 1-D (``nsp == 1``) the height axis is the
    trivial one.
    """
    stride = _pair(func, "stride", stride, nsp, 1)
    dilation = _pair(func, "dilation", dilation, nsp, 1)
    if type(padding) is int and 0 <= padding <= _GEOMETRY_MAX:
        lohi = (padding, padding) * nsp
    elif isinstance(padding, str):
        if padding == "valid":
            lohi = (0, 0) * nsp
        elif padding == "same":
            if stride != (1,) * nsp:
                raise v.ConvxValueError(
                    f"{func}(): argument 'padding'='same' needs stride 1, got stride={stride}")
            lohi = ()
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                lohi += (total // 2, total - total // 2)
        else:
            raise v.ConvxValueError(
                f"{func}(): argument 'padding' must be an int, a tuple of {nsp} ints, "
                f"'valid' or 'same', got {padding!r}")
    else:
        lohi = ()
        for p in _pair(func, "padding", padding, nsp, 0):
            lohi += (p, p)
    if nsp == 1:
        return (1,) + stride, (0, 0) + lohi, (1,) + dilation
    return stride, lohi, dilation


def _groups(func: str, groups: Any, c_in: int, c_out: int) -> int:
    if not _is_int(groups):
        raise v.ConvxTypeError(f"{func}(): argument 'groups' must be an int >= 1, got {groups!r}")
    if groups < 1:
        raise v.ConvxValueError(f"{func}(): argument 'groups' must be >= 1, got {groups}")
    if c_in % groups or c_out % groups:
        raise v.ConvxValueError(
            f"{func}(): argument 'groups' ({groups}) must divide the input channels ({c_in}) "
            f"and the output channels ({c_out})")
    return int(groups)


def _dtype(func: str, *named: tuple[str, Array]) -> tuple[np.dtype[Any], np.dtype[Any]]:
    """The compute dtype of same-dtype float or integer arrays, and the result dtype.

    "Same dtype" ignores byte order: a big-endian float64 array goes with a
    native one.
    """
    first_name, first = named[0]
    kind = first.dtype.type
    for name, a in named[1:]:
        if a.dtype.type is not kind:
            raise v.ConvxTypeError(
                f"{func}(): arguments '{first_name}' and '{name}' must have the same dtype, "
                f"got {first.dtype} and {a.dtype}")
    if kind is np.float16:
        return v.FLOAT32, np.dtype(np.float16)
    compute = v.float_dtype(first)
    return compute, compute


_LAYOUT = {1: ("(batch, channels, length)", "(out_channels, in_channels // groups, kernel_size)"),
           2: ("(batch, channels, height, width)",
               "(out_channels, in_channels // groups, kernel_height, kernel_width)")}


def _shape_arg(func: str, name: str, shape: Any, ndim: int, layout: str) -> tuple[int, ...]:
    """A tuple or list of ``ndim`` ints >= 0 (Python or NumPy ints, not bools)."""
    if not isinstance(shape, (tuple, list)) or not all(_is_int(s) for s in shape):
        raise v.ConvxTypeError(
            f"{func}(): argument '{name}' must be a tuple of {ndim} ints {layout}, "
            f"got {shape!r}")
    if len(shape) != ndim or any(s < 0 for s in shape):
        raise v.ConvxValueError(
            f"{func}(): argument '{name}' must be a tuple of {ndim} ints >= 0 {layout}, "
            f"got {shape!r}")
    return tuple(int(s) for s in shape)


def _shape4(shape: tuple[int, ...], nsp: int) -> tuple[int, ...]:
    """An NCL / OIK shape as NCHW / OIHW with H = 1."""
    return (shape[0], shape[1], 1, shape[2]) if nsp == 1 else shape


def _plan(func: str, nsp: int, x_shape: tuple[int, ...], x_name: str, w_shape: tuple[int, ...],
          w_name: str, stride: object, padding: object, dilation: object, groups: object,
          shown_shape: tuple[int, ...] | None = None
          ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int, tuple[int, ...]]:
    """Check how input and weight fit together; return the engine's geometry.

    Returns ``(stride, pads, dilation, groups, (OH, OW))`` in 2-D form.
    ``shown_shape`` is the input's shape as the caller gave it, for messages.
    """
    g = _groups(func, groups, x_shape[1], w_shape[0])
    if w_shape[1] * g != x_shape[1]:
        raise v.ConvxValueError(
            f"{func}(): argument '{w_name}' of shape {w_shape} expects {w_shape[1] * g} input "
            f"channels ({w_name}.shape[1] * groups), got '{x_name}' of shape "
            f"{shown_shape or x_shape}")
    v.kernel_nonempty(func, w_name, w_shape, range(2, nsp + 2))
    st, pads, dil = _geometry(func, nsp, w_shape[2:], stride, padding, dilation)
    out_hw = _engine.sizes(func, w_name, _shape4(x_shape, nsp)[2:], _shape4(w_shape, nsp),
                           st, pads, dil, x_name)
    return st, pads, dil, g, out_hw


def _check_gout(func: str, gout: Array, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                out_hw: tuple[int, ...], nsp: int) -> None:
    expected = (x_shape[0], w_shape[0]) + (out_hw[1:] if nsp == 1 else out_hw)
    v.same_shape(func, "grad_output", gout, expected,
                 "the output shape of the forward pass with these arguments")


_INT_STR = (int, str)


def _plain(stride: Any, padding: Any, dilation: Any, groups: Any) -> tuple[Any, ...] | None:
    """The geometry arguments as a tuple if each is a plain int, str or tuple
    of plain ints, else None: part of a key for the plan cache
    (``_engine.planned``).

    The cache may only see arguments whose equality means "same argument":
    1 == 1.0 == True, but only the first is a valid stride.
    """
    if (type(stride) is int and type(dilation) is int and type(groups) is int
            and type(padding) in _INT_STR):  # the common case, first
        return stride, padding, dilation, groups
    values: tuple[Any, ...] = (stride, padding, dilation, groups)
    for value in values:
        kind = type(value)
        if kind is int or kind is str:
            continue
        if kind is not tuple or [item for item in value if type(item) is not int]:
            return None
    return values


def _method(func: str, method: object) -> str:
    """``method`` if it names one of the engine's methods (_engine.METHODS)."""
    names = ", ".join(repr(m) for m in _engine.METHODS)
    if not isinstance(method, str):
        raise v.ConvxTypeError(f"{func}(): argument 'method' must be one of {names}, "
                               f"got {v._describe(method)}")
    if method not in _engine.METHODS:
        raise v.ConvxValueError(f"{func}(): argument 'method' must be one of {names}, "
                                f"got {method!r}")
    return method


# What a face keeps per call signature (``_engine.planned``): the compute and
# result dtypes, the 4-D shapes the arrays are viewed as (None: already 4-D),
# the shape the result is given back as (None: as the engine made it), and
# the engine's plan.

def _forward_plan(func: str, nsp: int, x: Array, weight: Array, bias: Array | None,
                  stride: object, padding: object, dilation: object, groups: object,
                  method: object) -> _Face:
    x_layout, w_layout = _LAYOUT[nsp]
    shown = None
    if isinstance(x, np.ndarray) and x.ndim == nsp + 1:  # unbatched
        shown, x = x.shape, x[None]
    v.array(func, "input", x, nsp + 2, x_layout)
    v.array(func, "weight", weight, nsp + 2, w_layout)
    if bias is None:
        compute, result = _dtype(func, ("input", x), ("weight", weight))
    else:
        v.array(func, "bias", bias, 1, "(out_channels,)")
        if bias.shape[0] != weight.shape[0]:
            raise v.ConvxValueError(
                f"{func}(): argument 'bias' must have shape ({weight.shape[0]},) "
                f"(weight's out_channels), got shape {bias.shape}")
        compute, result = _dtype(func, ("input", x), ("weight", weight), ("bias", bias))
    st, pads, dil, g, out_hw = _plan(func, nsp, x.shape, "input", weight.shape, "weight",
                                     stride, padding, dilation, groups, shown)
    x4, w4 = _shape4(x.shape, nsp), _shape4(weight.shape, nsp)
    plan = _engine.forward_plan(func, x4, w4, st, pads, dil, g, out_hw, "weight",
                                _method(func, method), compute)
    out_shape = plan[2][:2] + (out_hw[1:] if nsp == 1 else out_hw)
    if shown is not None:
        out_shape = out_shape[1:]
    return (compute, result, None if x4 == x.shape and shown is None else x4,
            None if nsp == 2 else w4, None if out_shape == plan[2] else out_shape, plan)


_NDARRAY = np.ndarray


def _forward(func: str, nsp: int, x: Array, weight: Array, bias: Array | None, stride: object,
             padding: object, dilation: object, groups: object, method: object = "auto") -> Array:
    # Only plain ndarrays are looked up in the cache: anything else (a duck
    # array, a subclass) is checked in full on every call.
    key = None
    if type(x) is _NDARRAY and type(weight) is _NDARRAY and (bias is None
                                                              or type(bias) is _NDARRAY):
        geometry = _plain(stride, padding, dilation, groups)
        if geometry and type(method) is str:
            key = ("forward", func, x.shape, x.dtype, weight.shape, weight.dtype,
                   None if bias is None else (bias.shape, bias.dtype), geometry, method)
    else:
        x_layout, w_layout = _LAYOUT[nsp]
        x = v.plain(func, "input", x, x_layout)
        weight = v.plain(func, "weight", weight, w_layout)
        if bias is not None:
            bias = v.plain(func, "bias", bias, "(out_channels,)")
    compute, result, x4, w4, shape, plan = _engine.PLANS.get(key) or _engine.planned(
        key, _forward_plan, func, nsp, x, weight, bias, stride, padding, dilation, groups,
        method)
    out = _engine.forward_run(plan, v.as_kernel_input(func, "input", x, compute, x4),
                              v.as_kernel_input(func, "weight", weight, compute, w4),
                              None if bias is None else
                              v.as_kernel_input(func, "bias", bias, compute))
    if shape is not None:
        out = out.reshape(shape)
    return out if result is compute else out.astype(result)


def _grad_plan(func: str, nsp: int, which: str, shape: object, array: Array, grad_output: Array,
               stride: object, padding: object, dilation: object, groups: object,
               method: object) -> _Face:
    """The checks of the two gradients: ``which`` is "input" (``shape`` is the
    input's, ``array`` the weight) or "weight" (``shape`` is the weight's,
    ``array`` the input)."""
    x_layout, w_layout = _LAYOUT[nsp]
    if which == "input":
        shape = _shape_arg(func, "input_shape", shape, nsp + 2, x_layout)
        v.array(func, "weight", array, nsp + 2, w_layout)
        x_shape, x_name, w_shape, w_name = shape, "input_shape", array.shape, "weight"
        array_name = "weight"
    else:
        v.array(func, "input", array, nsp + 2, x_layout)
        shape = _shape_arg(func, "weight_shape", shape, nsp + 2, w_layout)
        x_shape, x_name, w_shape, w_name = array.shape, "input", shape, "weight_shape"
        array_name = "input"
    v.array(func, "grad_output", grad_output, nsp + 2, "(batch, out_channels, *output_size)")
    compute, result = _dtype(func, (array_name, array), ("grad_output", grad_output))
    st, pads, dil, g, out_hw = _plan(func, nsp, x_shape, x_name, w_shape, w_name, stride,
                                     padding, dilation, groups)
    _check_gout(func, grad_output, x_shape, w_shape, out_hw, nsp)
    make = _engine.input_grad_plan if which == "input" else _engine.weight_grad_plan
    x4, w4, g4 = _shape4(x_shape, nsp), _shape4(w_shape, nsp), _shape4(grad_output.shape, nsp)
    plan = make(func, x4, w4, g4, st, pads, dil, g, w_name, _method(func, method), compute)
    if nsp == 2:
        return compute, result, None, None, None, plan
    return compute, result, w4 if which == "input" else x4, g4, shape, plan


def _grad_key(func: str, which: str, shape: object, array: Array, grad_output: Array,
              stride: object, padding: object, dilation: object, groups: object,
              method: object) -> tuple[object, ...] | None:
    """The plan cache's key of a gradient call, or None where its arguments
    are not plain enough to key on.  ``which`` is in it: a caller may name
    both of its gradients alike (a layer's backward), and where the input's
    shape is the weight's, their other fields are the same."""
    plain = _plain(stride, padding, dilation, groups)
    if not plain or type(shape) is not tuple or type(array) is not _NDARRAY \
            or type(grad_output) is not _NDARRAY or type(method) is not str:
        return None
    for item in shape:
        if type(item) is not int:
            return None
    return (which, func, shape, array.shape, array.dtype, grad_output.shape, grad_output.dtype,
            plain, method)


def _grad(func: str, nsp: int, which: str, shape: object, array: Array, grad_output: Array,
          stride: object, padding: object, dilation: object, groups: object,
          method: object = "auto") -> Array:
    """The two gradients (``which``, ``shape`` and ``array`` as in _grad_plan)."""
    key = _grad_key(func, which, shape, array, grad_output, stride, padding, dilation, groups,
                    method)
    if key is None:  # checked in full: bring subclasses to plain ndarrays first
        x_layout, w_layout = _LAYOUT[nsp]
        if which == "input":
            array = v.plain(func, "weight", array, w_layout)
        else:
            array = v.plain(func, "input", array, x_layout)
        grad_output = v.plain(func, "grad_output", grad_output,
                              "(batch, out_channels, *output_size)")
    compute, result, a4, g4, out_shape, plan = _engine.PLANS.get(key) or _engine.planned(
        key, _grad_plan, func, nsp, which, shape, array, grad_output,
        stride, padding, dilation, groups, method)
    run = _engine.input_grad_run if which == "input" else _engine.weight_grad_run
    d = run(plan, v.as_kernel_input(func, "weight" if which == "input" else "input", array,
                                    compute, a4),
            v.as_kernel_input(func, "grad_output", grad_output, compute, g4))
    if out_shape is not None:
        d = d.reshape(out_shape)
    return d if result is compute else d.astype(result)


@overload
def conv2d(
    input: NDArray[np.float32], weight: NDArray[np.float32],
    bias: NDArray[np.float32] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float32]: ...


@overload
def conv2d(
    input: NDArray[np.float64], weight: NDArray[np.float64],
    bias: NDArray[np.float64] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv2d(
    input: NDArray[np.float16], weight: NDArray[np.float16],
    bias: NDArray[np.float16] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float16]: ...


@overload
def conv2d(
    input: NDArray[np.integer[Any]], weight: NDArray[np.integer[Any]],
    bias: NDArray[np.integer[Any]] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv2d(
    input: Array, weight: Array, bias: Array | None = ..., stride: Geometry = ...,
    padding: Padding = ..., dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> Array: ...


def conv2d(input: Array, weight: Array, bias: Array | None = None, stride: Geometry = 1,
           padding: Padding = 0, dilation: Geometry = 1, groups: int = 1,
           method: Method = "auto") -> Array:
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    input : ndarray of shape (N, C_in, H, W) or (C_in, H, W)
    weight : ndarray of shape (C_out, C_in // groups, kH, kW)
    bias : ndarray of shape (C_out,), optional
    stride : int or (int, int), each >= 1
    padding : int, (int, int), 'valid' or 'same'
        Zeros added on both sides of each spatial axis.  'same' (stride 1 only)
        keeps the size; for an even total padding the extra zero goes after,
        as in PyTorch.
    dilation : int or (int, int), each >= 1
    groups : int >= 1, dividing C_in and C_out
    method : 'auto' (default), 'direct', 'gemm', 'fft' or 'winograd'
        The algorithm.  'auto' lets the engine choose by its cost models (a
        pure function of the shapes, dtype and geometry: the same call gives
        the same bits on every run); 'direct' (the SIMD direct kernels, which
        read the image in place, at any stride), 'gemm' (im2col + convx's matrix product, any
        geometry), 'fft' (products of scipy.fft spectra, overlap-save; a
        kernel spanning more than one position) or 'winograd' (F(4x4, 3x3)
        for a 3x3 kernel, F(2x2, 5x5) for a 5x5 one, at stride 1, at any
        dilation, the forward pass and the input gradient; 'auto' takes it
        in float32 only) force one, for tests
        or to get one algorithm's bits.  The FFT's and Winograd's error
        bounds are in docs/design.md, and a call with a non-finite value
        takes the other algorithms.  A method that does not apply to the call
        raises ConvxValueError.  The same argument is taken by the gradients
        (the input gradient's direct kernel needs stride 1 along both axes).

    Returns
    -------
    ndarray of shape (N, C_out, H_out, W_out), or (C_out, H_out, W_out)
        ``H_out = (H + 2*padding - dilation*(kH - 1) - 1) // stride + 1``.
        The dtype of ``input``: float32 and float64 compute in their own
        precision, float16 computes in float32, integers compute and return
        float64.  ``input``, ``weight`` and ``bias`` must share one dtype.

    Raises
    ------
    ConvxTypeError
        If an array argument is not a NumPy array of a real numeric dtype, the
        arrays' dtypes differ, or a geometry argument has the wrong type.
    ConvxValueError
        If an array has the wrong number of dimensions, the channels do not
        match (``input.shape[1] != weight.shape[1] * groups``), ``groups`` does
        not divide the channels, ``padding='same'`` comes with a stride, the
        (dilated) kernel is larger than the padded input, or ``method`` does
        not apply to the call.
    ConvxMemoryError
        If the result or the working memory cannot be allocated.

    Examples
    --------
    >>> import numpy as np, convx
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 3, 3))
    >>> convx.conv2d(x, w)
    array([[[[45., 54.],
             [81., 90.]]]])
    >>> convx.conv2d(x, w, padding='same').shape
    (1, 1, 4, 4)
    """
    return _forward("conv2d", 2, input, weight, bias, stride, padding, dilation, groups,
                    method)


@overload
def conv1d(
    input: NDArray[np.float32], weight: NDArray[np.float32],
    bias: NDArray[np.float32] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float32]: ...


@overload
def conv1d(
    input: NDArray[np.float64], weight: NDArray[np.float64],
    bias: NDArray[np.float64] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv1d(
    input: NDArray[np.float16], weight: NDArray[np.float16],
    bias: NDArray[np.float16] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float16]: ...


@overload
def conv1d(
    input: NDArray[np.integer[Any]], weight: NDArray[np.integer[Any]],
    bias: NDArray[np.integer[Any]] | None = ..., stride: Geometry = ..., padding: Padding = ...,
    dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv1d(
    input: Array, weight: Array, bias: Array | None = ..., stride: Geometry = ...,
    padding: Padding = ..., dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> Array: ...


def conv1d(input: Array, weight: Array, bias: Array | None = None, stride: Geometry = 1,
           padding: Padding = 0, dilation: Geometry = 1, groups: int = 1,
           method: Method = "auto") -> Array:
    """1-D convolution (cross-correlation), as ``torch.nn.functional.conv1d``.

    Parameters
    ----------
    input : ndarray of shape (N, C_in, L) or (C_in, L)
    weight : ndarray of shape (C_out, C_in // groups, k)
    bias : ndarray of shape (C_out,), optional
    stride, padding, dilation, groups, method
        As in :func:`conv2d`, with ints or 1-tuples.

    Returns
    -------
    ndarray of shape (N, C_out, L_out), or (C_out, L_out)
        ``L_out = (L + 2*padding - dilation*(k - 1) - 1) // stride + 1``, in
        the dtype of ``input`` (the rule of :func:`conv2d`).

    Raises
    ------
    ConvxTypeError
        If an array argument is not a NumPy array of a real numeric dtype, the
        arrays' dtypes differ, or a geometry argument has the wrong type.
    ConvxValueError
        If an array has the wrong number of dimensions, the channels do not
        match (``input.shape[1] != weight.shape[1] * groups``), ``groups`` does
        not divide the channels, ``padding='same'`` comes with a stride, the
        (dilated) kernel is larger than the padded input, or ``method`` does
        not apply to the call.
    ConvxMemoryError
        If the result or the working memory cannot be allocated.

    Examples
    --------
    >>> import numpy as np, convx
    >>> convx.conv1d(np.array([[[1., 2., 3., 4., 5.]]]), np.array([[[1., 1., 1.]]]), padding=1)
    array([[[ 3.,  6.,  9., 12.,  9.]]])
    """
    return _forward("conv1d", 1, input, weight, bias, stride, padding, dilation, groups,
                    method)


@overload
def conv2d_input_grad(
    input_shape: Shape, weight: NDArray[np.float32], grad_output: NDArray[np.float32],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float32]: ...


@overload
def conv2d_input_grad(
    input_shape: Shape, weight: NDArray[np.float64], grad_output: NDArray[np.float64],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv2d_input_grad(
    input_shape: Shape, weight: NDArray[np.float16], grad_output: NDArray[np.float16],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float16]: ...


@overload
def conv2d_input_grad(
    input_shape: Shape, weight: NDArray[np.integer[Any]], grad_output: NDArray[np.integer[Any]],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv2d_input_grad(
    input_shape: Shape, weight: Array, grad_output: Array, stride: Geometry = ...,
    padding: Padding = ..., dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> Array: ...


def conv2d_input_grad(input_shape: Shape, weight: Array, grad_output: Array,
                      stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                      groups: int = 1, method: Method = "auto") -> Array:
    """Gradient of a :func:`conv2d` with respect to its input, as ``torch.nn.grad.conv2d_input``.

    Parameters
    ----------
    input_shape : tuple (N, C_in, H, W)
        The shape of the forward pass's input (it fixes H and W when a
        stride > 1 makes several sizes give the same output).
    weight : ndarray of shape (C_out, C_in // groups, kH, kW)
    grad_output : ndarray of shape (N, C_out, H_out, W_out)
        The gradient of the loss with respect to the forward pass's output.
    stride, padding, dilation, groups, method
        As given to :func:`conv2d`.

    Returns
    -------
    ndarray of shape ``input_shape``

    Raises
    ------
    ConvxTypeError
        If an array argument is not a NumPy array of a real numeric dtype, the
        arrays' dtypes differ, the shape argument is not a tuple of ints, or a
        geometry argument has the wrong type.
    ConvxValueError
        If the shapes do not fit together (as for the forward pass), or
        ``grad_output`` does not have the forward pass's output shape, or
        ``method`` does not apply to the call.
    ConvxMemoryError
        If the result or the working memory cannot be allocated.

    Examples
    --------
    >>> import numpy as np, convx
    >>> convx.conv2d_input_grad((1, 1, 3, 3), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
    array([[[[1., 2., 1.],
             [2., 4., 2.],
             [1., 2., 1.]]]])
    """
    return _grad("conv2d_input_grad", 2, "input", input_shape, weight, grad_output,
                 stride, padding, dilation, groups, method)


@overload
def conv1d_input_grad(
    input_shape: Shape, weight: NDArray[np.float32], grad_output: NDArray[np.float32],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float32]: ...


@overload
def conv1d_input_grad(
    input_shape: Shape, weight: NDArray[np.float64], grad_output: NDArray[np.float64],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv1d_input_grad(
    input_shape: Shape, weight: NDArray[np.float16], grad_output: NDArray[np.float16],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float16]: ...


@overload
def conv1d_input_grad(
    input_shape: Shape, weight: NDArray[np.integer[Any]], grad_output: NDArray[np.integer[Any]],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv1d_input_grad(
    input_shape: Shape, weight: Array, grad_output: Array, stride: Geometry = ...,
    padding: Padding = ..., dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> Array: ...


def conv1d_input_grad(input_shape: Shape, weight: Array, grad_output: Array,
                      stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                      groups: int = 1, method: Method = "auto") -> Array:
    """Gradient of a :func:`conv1d` with respect to its input, as ``torch.nn.grad.conv1d_input``.

    Parameters
    ----------
    input_shape : tuple (N, C_in, L)
        The shape of the forward pass's input.
    weight : ndarray of shape (C_out, C_in // groups, k)
    grad_output : ndarray of shape (N, C_out, L_out)
        The gradient of the loss with respect to the forward pass's output.
    stride, padding, dilation, groups, method
        As given to :func:`conv1d`.

    Returns
    -------
    ndarray of shape ``input_shape``
        In the dtype of ``weight`` and ``grad_output`` (the rule of
        :func:`conv2d`).

    Raises
    ------
    ConvxTypeError
        If an array argument is not a NumPy array of a real numeric dtype, the
        arrays' dtypes differ, the shape argument is not a tuple of ints, or a
        geometry argument has the wrong type.
    ConvxValueError
        If the shapes do not fit together (as for the forward pass), or
        ``grad_output`` does not have the forward pass's output shape, or
        ``method`` does not apply to the call.
    ConvxMemoryError
        If the result or the working memory cannot be allocated.

    Examples
    --------
    >>> import numpy as np, convx
    >>> convx.conv1d_input_grad((1, 1, 5), np.ones((1, 1, 3)), np.ones((1, 1, 5)), padding=1)
    array([[[2., 3., 3., 3., 2.]]])
    """
    return _grad("conv1d_input_grad", 1, "input", input_shape, weight, grad_output,
                 stride, padding, dilation, groups, method)


@overload
def conv2d_weight_grad(
    input: NDArray[np.float32], weight_shape: Shape, grad_output: NDArray[np.float32],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float32]: ...


@overload
def conv2d_weight_grad(
    input: NDArray[np.float64], weight_shape: Shape, grad_output: NDArray[np.float64],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv2d_weight_grad(
    input: NDArray[np.float16], weight_shape: Shape, grad_output: NDArray[np.float16],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float16]: ...


@overload
def conv2d_weight_grad(
    input: NDArray[np.integer[Any]], weight_shape: Shape, grad_output: NDArray[np.integer[Any]],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv2d_weight_grad(
    input: Array, weight_shape: Shape, grad_output: Array, stride: Geometry = ...,
    padding: Padding = ..., dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> Array: ...


def conv2d_weight_grad(input: Array, weight_shape: Shape, grad_output: Array,
                       stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                       groups: int = 1, method: Method = "auto") -> Array:
    """Gradient of a :func:`conv2d` with respect to its weight, as ``torch.nn.grad.conv2d_weight``.

    Parameters
    ----------
    input : ndarray of shape (N, C_in, H, W)
    weight_shape : tuple (C_out, C_in // groups, kH, kW)
    grad_output : ndarray of shape (N, C_out, H_out, W_out)
    stride, padding, dilation, groups, method
        As given to :func:`conv2d`.

    Returns
    -------
    ndarray of shape ``weight_shape``, summed over the batch

    Raises
    ------
    ConvxTypeError
        If an array argument is not a NumPy array of a real numeric dtype, the
        arrays' dtypes differ, the shape argument is not a tuple of ints, or a
        geometry argument has the wrong type.
    ConvxValueError
        If the shapes do not fit together (as for the forward pass), or
        ``grad_output`` does not have the forward pass's output shape, or
        ``method`` does not apply to the call.
    ConvxMemoryError
        If the result or the working memory cannot be allocated.

    Examples
    --------
    >>> import numpy as np, convx
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> convx.conv2d_weight_grad(x, (1, 1, 2, 2), np.ones((1, 1, 2, 2)))
    array([[[[ 8., 12.],
             [20., 24.]]]])
    """
    return _grad("conv2d_weight_grad", 2, "weight", weight_shape, input, grad_output,
                 stride, padding, dilation, groups, method)


@overload
def conv1d_weight_grad(
    input: NDArray[np.float32], weight_shape: Shape, grad_output: NDArray[np.float32],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float32]: ...


@overload
def conv1d_weight_grad(
    input: NDArray[np.float64], weight_shape: Shape, grad_output: NDArray[np.float64],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv1d_weight_grad(
    input: NDArray[np.float16], weight_shape: Shape, grad_output: NDArray[np.float16],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float16]: ...


@overload
def conv1d_weight_grad(
    input: NDArray[np.integer[Any]], weight_shape: Shape, grad_output: NDArray[np.integer[Any]],
    stride: Geometry = ..., padding: Padding = ..., dilation: Geometry = ..., groups: int = ...,
    method: Method = ...,
) -> NDArray[np.float64]: ...


@overload
def conv1d_weight_grad(
    input: Array, weight_shape: Shape, grad_output: Array, stride: Geometry = ...,
    padding: Padding = ..., dilation: Geometry = ..., groups: int = ..., method: Method = ...,
) -> Array: ...


def conv1d_weight_grad(input: Array, weight_shape: Shape, grad_output: Array,
                       stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                       groups: int = 1, method: Method = "auto") -> Array:
    """Gradient of a :func:`conv1d` with respect to its weight, as ``torch.nn.grad.conv1d_weight``.

    Parameters
    ----------
    input : ndarray of shape (N, C_in, L)
    weight_shape : tuple (C_out, C_in // groups, k)
    grad_output : ndarray of shape (N, C_out, L_out)
    stride, padding, dilation, groups, method
        As given to :func:`conv1d`.

    Returns
    -------
    ndarray of shape ``weight_shape``, summed over the batch
        In the dtype of ``input`` and ``grad_output`` (the rule of
        :func:`conv2d`).

    Raises
    ------
    ConvxTypeError
        If an array argument is not a NumPy array of a real numeric dtype, the
        arrays' dtypes differ, the shape argument is not a tuple of ints, or a
        geometry argument has the wrong type.
    ConvxValueError
        If the shapes do not fit together (as for the forward pass), or
        ``grad_output`` does not have the forward pass's output shape, or
        ``method`` does not apply to the call.
    ConvxMemoryError
        If the result or the working memory cannot be allocated.

    Examples
    --------
    >>> import numpy as np, convx
    >>> convx.conv1d_weight_grad(np.array([[[1., 2., 3., 4., 5.]]]), (1, 1, 3), np.ones((1, 1, 5)),
    ...                          padding=1)
    array([[[10., 15., 14.]]])
    """
    return _grad("conv1d_weight_grad", 1, "weight", weight_shape, input, grad_output,
                 stride, padding, dilation, groups, method)


def _bias_grad(func: str, nsp: int, grad_output: Array) -> Array:
    layout = "(batch, out_channels, *output_size)"
    if type(grad_output) is not _NDARRAY:
        grad_output = v.plain(func, "grad_output", grad_output, layout)
    unbatched = isinstance(grad_output, np.ndarray) and grad_output.ndim == nsp + 1
    g = v.array(func, "grad_output", grad_output[None] if unbatched else grad_output, nsp + 2,
                layout)
    compute, result = _dtype(func, ("grad_output", g))
    n, c = g.shape[:2]
    g3 = v.as_kernel_input(func, "grad_output", g, compute, (n, c, g[0, 0].size if n * c else 0))
    return _engine.bias_grad(func, g3).astype(result, copy=False)


@overload
def conv2d_bias_grad(grad_output: NDArray[np.float32]) -> NDArray[np.float32]: ...


@overload
def conv2d_bias_grad(grad_output: NDArray[np.float64]) -> NDArray[np.float64]: ...


@overload
def conv2d_bias_grad(grad_output: NDArray[np.float16]) -> NDArray[np.float16]: ...


@overload
def conv2d_bias_grad(grad_output: NDArray[np.integer[Any]]) -> NDArray[np.float64]: ...


@overload
def conv2d_bias_grad(grad_output: Array) -> Array: ...


def conv2d_bias_grad(grad_output: Array) -> Array:
    """Gradient of a :func:`conv2d` with respect to its bias: ``grad_output``
    summed over the batch and the positions, ``grad_output.sum(axis=(0, 2, 3))``.

    Parameters
    ----------
    grad_output : ndarray of shape (N, C_out, H_out, W_out), or (C_out, H_out, W_out)
        The gradient of the loss with respect to the forward pass's output.

    Returns
    -------
    ndarray of shape (C_out,)
        Summed in float64 whatever the dtype, then given back in the dtype
        the other gradients have (``grad_output``'s; float64 for integers).

    Raises
    ------
    ConvxTypeError
        If ``grad_output`` is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If ``grad_output`` has the wrong number of dimensions.

    Examples
    --------
    >>> import numpy as np, convx
    >>> convx.conv2d_bias_grad(np.ones((2, 3, 4, 5)))
    array([40., 40., 40.])
    """
    return _bias_grad("conv2d_bias_grad", 2, grad_output)


@overload
def conv1d_bias_grad(grad_output: NDArray[np.float32]) -> NDArray[np.float32]: ...


@overload
def conv1d_bias_grad(grad_output: NDArray[np.float64]) -> NDArray[np.float64]: ...


@overload
def conv1d_bias_grad(grad_output: NDArray[np.float16]) -> NDArray[np.float16]: ...


@overload
def conv1d_bias_grad(grad_output: NDArray[np.integer[Any]]) -> NDArray[np.float64]: ...


@overload
def conv1d_bias_grad(grad_output: Array) -> Array: ...


def conv1d_bias_grad(grad_output: Array) -> Array:
    """Gradient of a :func:`conv1d` with respect to its bias.

    ``grad_output`` summed over the batch and the positions:
    ``grad_output.sum(axis=(0, 2))``, or ``grad_output.sum(axis=1)`` for one
    unbatched example.

    Parameters
    ----------
    grad_output : ndarray of shape (N, C_out, L_out), or (C_out, L_out)
        The gradient of the loss with respect to the forward pass's output.

    Returns
    -------
    ndarray of shape (C_out,)
        Summed in float64 whatever the dtype, then given back in the dtype
        the other gradients have (``grad_output``'s; float64 for integers).

    Raises
    ------
    ConvxTypeError
        If ``grad_output`` is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If ``grad_output`` has the wrong number of dimensions.

    Examples
    --------
    >>> import numpy as np, convx
    >>> convx.conv1d_bias_grad(np.arange(12.0).reshape(2, 2, 3))
    array([24., 42.])
    """
    return _bias_grad("conv1d_bias_grad", 1, grad_output)
