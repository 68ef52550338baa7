"""Argument checking and normalisation shared by every face of convx.

Each check raises an error whose message names the function, the argument,
what was expected and what came.  The notebook signalled bad input with
``assert``, so both error classes are also ``AssertionError``: code written
against the notebook (``except AssertionError``) keeps working, and code
written against NumPy (``except ValueError`` / ``except TypeError``) works too.
"""
from __future__ import annotations

import math
import operator
import reprlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._typing import Array

__all__ = ["ConvxMemoryError", "ConvxTypeError", "ConvxValueError"]


class ConvxValueError(ValueError, AssertionError):
    """A bad shape or value: catchable as ``ValueError`` and ``AssertionError``.

    The notebook signalled bad shapes with ``assert``; code that catches
    ``AssertionError`` keeps working.  The message names the function, the
    argument, what was expected and what came.

    Examples
    --------
    >>> import numpy as np, convx
    >>> try:
    ...     convx.conv2d(np.ones((1, 3, 8, 8)), np.ones((4, 2, 3, 3)))
    ... except ValueError as e:
    ...     print(type(e).__name__, isinstance(e, AssertionError))
    ...     print(e)
    ConvxValueError True
    conv2d(): argument 'weight' of shape (4, 2, 3, 3) expects 2 input channels
    (weight.shape[1] * groups), got 'input' of shape (1, 3, 8, 8)
    """


class ConvxTypeError(TypeError, AssertionError):
    """A bad type or dtype: catchable as ``TypeError`` and ``AssertionError``.

    Examples
    --------
    >>> import numpy as np, convx
    >>> try:
    ...     convx.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 3, 3)))
    ... except TypeError as e:
    ...     print(type(e).__name__, isinstance(e, AssertionError))
    ...     print(e)
    ConvxTypeError True
    conv2d(): arguments 'input' and 'weight' must have the same dtype, got float32
    and float64
    """


class ConvxMemoryError(MemoryError):
    """A valid call whose result or working memory cannot be allocated.

    A ``MemoryError``; the message gives the bytes the call needs and how to
    need fewer (split the batch or the input, or use fewer threads).
    """


def _describe(obj: object) -> str:
    """A short, human description of what the caller passed."""
    if isinstance(obj, np.ndarray):
        return f"an array of dtype {obj.dtype} and shape {obj.shape}"
    if obj is None:
        return "None"
    kind = type(obj)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    try:
        text = reprlib.repr(obj)
    # Any exception: a foreign object's repr (or reprlib's look at it) may raise
    # anything, and an error message must still be made; its type says enough.
    except Exception:  # noqa: BLE001
        return name
    return f"{name} {text}"


def _duck_hint(obj: object) -> str:
    """What to do with an array-like that is not an ndarray."""
    if hasattr(obj, "__array__") or hasattr(obj, "__array_interface__"):
        return "; convert it with numpy.asarray() first"
    return ""


_NDARRAY = np.ndarray


def plain(func: str, name: str, a: object, layout: str) -> Array:
    """``a`` if it is an ndarray, a plain ndarray view of it for a subclass
    (``np.matrix``, ``np.memmap``: the view indexes and reshapes as an ndarray
    does), else ConvxTypeError.  A masked array is refused: its mask would be
    silently ignored.  No copy is made."""
    if type(a) is np.ndarray:
        return a
    if isinstance(a, np.ma.MaskedArray):
        raise ConvxTypeError(
            f"{func}(): argument '{name}' is a masked array, whose mask convx would "
            f"ignore; pass a plain array (e.g. {name}.filled(0))")
    if not isinstance(a, np.ndarray):
        raise ConvxTypeError(
            f"{func}(): argument '{name}' must be a numpy.ndarray of shape {layout}, "
            f"got {_describe(a)}" + _duck_hint(a))
    return a.view(np.ndarray)


def array(func: str, name: str, a: object, ndim: int, layout: str) -> Array:
    """Check that ``a`` is a real numeric ndarray of rank ``ndim``.

    ``layout`` is how the shape reads in words, e.g. ``"(batch, length)"``.
    Returns ``a`` as :func:`plain` gives it: callers use what it returns.
    """
    if type(a) is not _NDARRAY:
        a = plain(func, name, a, layout)
    kind = a.dtype.kind
    if kind not in "iuf" or kind == "f" and a.dtype.itemsize > 8:  # longdouble: no silent rounding
        raise ConvxTypeError(
            f"{func}(): argument '{name}' must have a real numeric dtype: an integer, "
            f"float16, float32 or float64 (convx computes in float32 and float64), "
            f"got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ConvxValueError(
            f"{func}(): argument '{name}' must be {ndim}-D with shape {layout}, "
            f"got a {a.ndim}-D array of shape {a.shape}")
    return a


def same_shape(func: str, name: str, a: Array, expected: Iterable[int], why: str) -> None:
    """Check ``a.shape == expected``; ``why`` says where ``expected`` comes from."""
    if a.shape != tuple(expected):
        raise ConvxValueError(
            f"{func}(): argument '{name}' must have shape {tuple(expected)} ({why}), "
            f"got shape {a.shape}")


def nonneg_int(func: str, name: str, value: Any) -> int:
    """An int >= 0 (Python or NumPy integer, not bool)."""
    if isinstance(value, (bool, np.bool_)):
        raise ConvxTypeError(f"{func}(): argument '{name}' must be an int >= 0, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ConvxTypeError(
            f"{func}(): argument '{name}' must be an int >= 0, got {_describe(value)}") from None
    if v < 0:
        raise ConvxValueError(f"{func}(): argument '{name}' must be an int >= 0, got {v}")
    return v


def kernel_nonempty(func: str, name: str, shape: tuple[int, ...], axes: Iterable[int]) -> None:
    """Each kernel size in ``shape[axes]`` must be at least 1."""
    for ax in axes:
        if shape[ax] < 1:
            raise ConvxValueError(
                f"{func}(): argument '{name}' must have kernel sizes >= 1, got shape {shape}")


FLOAT32, FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)
_F32, _F64 = np.float32, np.float64


def float_dtype(*arrays: Array) -> np.dtype[Any]:
    """The dtype convx computes in: float32 when the arguments promote to
    float32, float64 otherwise (ints and float16 compute in float64)."""
    first = arrays[0].dtype.type
    if first is _F64 or first is _F32:  # the common cases, without NumPy's promotion
        for a in arrays:
            if a.dtype.type is not first:
                break
        else:
            return FLOAT64 if first is _F64 else FLOAT32
    return FLOAT32 if np.result_type(*arrays) == np.float32 else FLOAT64


def as_kernel_input(func: str, name: str, a: Array, dtype: np.dtype[Any],
                    shape: tuple[int, ...] | None = None) -> Array:
    """``a`` as a C-contiguous, native-byte-order array of ``dtype``, viewed
    with ``shape`` if given (a shape of the same size, e.g. with unit axes added).

    Copies only when it must (wrong dtype, byte order or layout, or values
    not aligned to their size: an array over a buffer at an odd offset, as
    ``np.frombuffer`` or a deserialised dask chunk may give, which the
    kernels would load misaligned).  The core reads through ``const``
    memoryviews, so read-only arrays are passed as is.  A copy that cannot be
    allocated raises ConvxMemoryError naming ``func`` and the argument ``name``.
    """
    flags = a.flags
    if a.dtype is not dtype or not (flags.c_contiguous and flags.aligned):  # else skip NumPy's
        try:
            a = np.ascontiguousarray(a, dtype=dtype)
            if not a.flags.aligned:     # (ascontiguousarray keeps a C-contiguous array as is)
                a = a.copy()
        except (MemoryError, ValueError):  # ValueError: NumPy's "array is too big"
            need = math.prod(a.shape) * np.dtype(dtype).itemsize
            raise ConvxMemoryError(
                f"{func}(): argument '{name}', an array of shape {a.shape} and dtype {a.dtype}, "
                f"needs a copy in {np.dtype(dtype)} and C order of {need} bytes, which could "
                f"not be allocated; pass float32 or float64 in C order, or split it into "
                f"smaller pieces") from None
    return a if shape is None else a.reshape(shape)
