"""The 28 functions of the chapter-5 notebook, with their names and signatures.

``from convx import *`` replaces the notebook's definitions with these.  Each
one checks its arguments, maps the notebook's layout onto the engine's NCHW
one, and returns what the notebook returned: the same shape, the same kind of
dtype, the same values.  The deliberate differences (docs/notebook.md):

* the multi-channel forward takes the filter size from ``param.shape[2:]``,
  not from ``param.shape[0]`` (the number of input channels);
* images need not be square;
* for even kernel sizes the gradients are the true gradients of the forward
  pass (the notebook's input gradient is shifted by one there);
* ``param_grad_1d_batch`` pads by the kernel's half-width, not by 1.

The notebook's convolution is a "same" cross-correlation: ``k // 2`` zeros
before each row and ``k - 1 - k // 2`` after it, so the output has the size of
the input for every kernel size.

Result dtypes follow the notebook: forwards that built their output with
``np.zeros(shape)`` return floats; functions that accumulated into
``np.zeros_like(arg)`` return ``arg``'s integer dtype when every array argument
is an integer array (computed exactly in float64, then rounded).  float32
arguments give float32 where the notebook would give floats.
"""
from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, Protocol, overload

import numpy as np

from . import _engine
from . import _validate as v

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ._engine import Plan
    from ._typing import Array


class _Shaped(Protocol):
    """What assert_same_shape and assert_dim take: anything with a shape."""

    @property
    def shape(self) -> tuple[int, ...]: ...


__all__ = [
    "_compute_grads_2d",
    "_compute_grads_obs",
    "_compute_grads_obs_2d",
    "_compute_output_2d",
    "_compute_output_2d_sum",
    "_compute_output_obs",
    "_compute_output_obs_2d",
    "_compute_output_sum",
    "_input_grad",
    "_input_grad_1d",
    "_output",
    "_pad_1d",
    "_pad_1d_batch",
    "_pad_2d",
    "_pad_2d_channel",
    "_pad_2d_obs",
    "_pad_conv_input",
    "_param_grad",
    "_param_grad_1d",
    "_param_grad_2d",
    "assert_dim",
    "assert_same_shape",
    "conv_1d",
    "conv_1d_batch",
    "conv_1d_batch_sum",
    "conv_1d_sum",
    "input_grad_1d_batch",
    "param_grad_1d_batch",
]

_UNIT = (1, 1)
# A padded array larger than this (2 PiB of float64) is refused before NumPy
# is asked for it: past 2**63 its size would not even be computable.
_PAD_MAX = 2**48


# --------------------------------------------------------------------------
# Helpers: every notebook name below is a few lines over these.
# --------------------------------------------------------------------------

def _same_pads(kh: int, kw: int) -> tuple[int, int, int, int]:
    """The notebook's padding: k // 2 before, k - 1 - k // 2 after."""
    return (kh // 2, kh - 1 - kh // 2, kw // 2, kw - 1 - kw // 2)


def _int_result(result: Array, like: Array, *arrays: Array) -> Array:
    """The notebook accumulated into ``np.zeros_like(like)``: when every array
    argument is an integer array the answer is an integer array of that dtype."""
    if like.dtype.kind in "iu" and all(a.dtype.kind in "iu" for a in arrays):
        return np.rint(result).astype(like.dtype)
    return result


# The engine's plans for the notebook's geometry ('same' padding, stride 1),
# made from shapes alone, so that _engine.planned can keep them.

def _method(*arrays: Array) -> str:
    """The engine's choice among all its algorithms ("auto"), or where every
    array is an integer array among the exact ones ("exact": not the FFT,
    whose rounding error spreads over its tiles), so that integer results
    below 2**53 are the exact integers (docs/notebook.md, "Result dtypes")."""
    return "exact" if all(a.dtype.kind in "iub" for a in arrays) else "auto"


def _forward_plan(func: str, dtype: np.dtype[Any], x_shape: tuple[int, ...],
                  w_shape: tuple[int, ...], method: str) -> Plan:
    # 'same' keeps the size, even an empty one: the plan is told it, not asked.
    return _engine.forward_plan(func, x_shape, w_shape, _UNIT, _same_pads(*w_shape[2:]), _UNIT,
                                1, x_shape[2:], method=method, dtype=dtype)


def _input_grad_plan(func: str, dtype: np.dtype[Any], x_shape: tuple[int, ...],
                     w_shape: tuple[int, ...], gout_shape: tuple[int, ...], method: str) -> Plan:
    return _engine.input_grad_plan(func, x_shape, w_shape, gout_shape, _UNIT,
                                   _same_pads(*w_shape[2:]), _UNIT, 1, method=method, dtype=dtype)


def _weight_grad_plan(func: str, dtype: np.dtype[Any], x_shape: tuple[int, ...],
                      w_shape: tuple[int, ...], gout_shape: tuple[int, ...], method: str) -> Plan:
    return _engine.weight_grad_plan(func, x_shape, w_shape, gout_shape, _UNIT,
                                    _same_pads(*w_shape[2:]), _UNIT, 1, method=method,
                                    dtype=dtype)


def _conv(func: str, x: Array, w: Array, names: tuple[str, str] = ("inp", "param")) -> Array:
    """'same' forward: x (N, C, H, W), w (F, C, KH, KW), any real dtypes;
    ``names`` are the arguments they came from."""
    dt, m = v.float_dtype(x, w), _method(x, w)
    xs, ws = x.shape, w.shape
    key = (_forward_plan, func, dt, xs, ws, m)
    plan = _engine.PLANS.get(key) or _engine.planned(key, _forward_plan, func, dt, xs, ws, m)
    return _engine.forward_run(plan, v.as_kernel_input(func, names[0], x, dt),
                               v.as_kernel_input(func, names[1], w, dt), None)


def _conv_input_grad(func: str, x: Array, w: Array, gout: Array,
                     names: tuple[str, str] = ("param", "output_grad")) -> Array:
    """'same' input gradient; the result has x's shape; ``names`` are the
    arguments w and gout came from."""
    dt, m = v.float_dtype(x, w, gout), _method(w, gout)
    shapes = (x.shape, w.shape, gout.shape)
    key = (_input_grad_plan, func, dt) + shapes + (m,)
    plan = _engine.PLANS.get(key) or _engine.planned(key, _input_grad_plan, func, dt, *shapes, m)
    return _engine.input_grad_run(plan, v.as_kernel_input(func, names[0], w, dt),
                                  v.as_kernel_input(func, names[1], gout, dt))


def _conv_weight_grad(func: str, x: Array, w: Array, gout: Array,
                      names: tuple[str, str] = ("inp", "output_grad")) -> Array:
    """'same' weight gradient; the result has w's shape; ``names`` are the
    arguments x and gout came from."""
    dt, m = v.float_dtype(x, w, gout), _method(x, gout)
    shapes = (x.shape, w.shape, gout.shape)
    key = (_weight_grad_plan, func, dt) + shapes + (m,)
    plan = _engine.PLANS.get(key) or _engine.planned(key, _weight_grad_plan, func, dt, *shapes, m)
    return _engine.weight_grad_run(plan, v.as_kernel_input(func, names[0], x, dt),
                                   v.as_kernel_input(func, names[1], gout, dt))


def _pad(func: str, inp: Array, num: int, ndim: int, layout: str, spatial: int) -> Array:
    """Zero-pad the last ``spatial`` axes (1 or 2) of ``inp`` by ``num`` on each side.

    The 1-D pads concatenated an int64 zero array, so integer input stays
    integer (int64); the 2-D pads stacked float zeros, so they return floats.
    """
    inp = v.array(func, "inp", inp, ndim, layout)
    num = v.nonneg_int(func, "num", num)
    if spatial == 1 and inp.dtype.kind in "iu" and inp.dtype != np.uint64:
        dt = np.dtype(np.int64)
    else:
        dt = v.float_dtype(inp)
    lead = math.prod(inp.shape[:ndim - spatial])
    hw = (1,) * (2 - spatial) + inp.shape[ndim - spatial:]
    padded = lead * math.prod(n + 2 * num for n in inp.shape[ndim - spatial:])
    if padded > _PAD_MAX:
        raise v.ConvxValueError(
            f"{func}(): argument 'num' ({num}) would make an array of {padded} elements, "
            f"more than 2**48")
    pads = (0, 0, num, num) if spatial == 1 else (num, num, num, num)
    out = _engine.pad(v.as_kernel_input(func, "inp", inp, dt, (lead, 1) + hw), pads)
    return out.reshape(inp.shape[:ndim - spatial] + out.shape[4 - spatial:])


# --------------------------------------------------------------------------
# Helper objects
# --------------------------------------------------------------------------

def assert_same_shape(output: _Shaped, output_grad: _Shaped) -> None:
    """Check that two arrays have the same shape, as the notebook's helper did.

    Parameters
    ----------
    output : ndarray
        Any array (anything with a ``shape``).
    output_grad : ndarray
        Any array (anything with a ``shape``).

    Returns
    -------
    None

    Raises
    ------
    ConvxValueError
        If the shapes differ (also an ``AssertionError``, as the notebook's
        ``assert`` raised).
    ConvxTypeError
        If either argument has no ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import assert_same_shape
    >>> assert_same_shape(np.zeros((2, 3)), np.ones((2, 3)))
    >>> try:
    ...     assert_same_shape(np.zeros((2, 3)), np.ones((3, 2)))
    ... except AssertionError as e:      # the notebook's assert raised AssertionError too
    ...     print(e)
    assert_same_shape(): 'output' and 'output_grad' must have the same shape,
    got (2, 3) and (3, 2)
    """
    shapes = []
    for name, a in (("output", output), ("output_grad", output_grad)):
        try:
            shapes.append(tuple(a.shape))
        except AttributeError:
            raise v.ConvxTypeError(
                f"assert_same_shape(): argument '{name}' must be an array, "
                f"got {v._describe(a)}") from None
    if shapes[0] != shapes[1]:
        raise v.ConvxValueError(
            f"assert_same_shape(): 'output' and 'output_grad' must have the same shape, "
            f"got {shapes[0]} and {shapes[1]}")


def assert_dim(t: _Shaped, dim: int) -> None:
    """Check that an array has ``dim`` dimensions, as the notebook's helper did.

    Parameters
    ----------
    t : ndarray
        Any array (anything with a ``shape``).
    dim : int
        The number of dimensions ``t`` must have.

    Returns
    -------
    None

    Raises
    ------
    ConvxValueError
        If ``t.ndim != dim`` (also an ``AssertionError``).
    ConvxTypeError
        If ``t`` has no ``shape``, or ``dim`` is not an integer.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import assert_dim
    >>> assert_dim(np.zeros((2, 3)), 2)
    >>> try:
    ...     assert_dim(np.zeros((2, 3)), 3)
    ... except AssertionError as e:
    ...     print(e)
    assert_dim(): tensor expected to have dimension 3, instead has dimension 2
    (shape (2, 3))
    """
    try:
        nd = len(t.shape)
    except AttributeError:
        raise v.ConvxTypeError(
            f"assert_dim(): argument 't' must be an array, got {v._describe(t)}") from None
    try:
        dim = operator.index(dim)
    except TypeError:
        # (else a dim of '2' read: expected dimension 2, instead has 2)
        raise v.ConvxTypeError(
            f"assert_dim(): argument 'dim' must be an integer, got {v._describe(dim)}"
        ) from None
    if nd != dim:
        raise v.ConvxValueError(
            f"assert_dim(): tensor expected to have dimension {dim}, "
            f"instead has dimension {nd} (shape {tuple(t.shape)})")


# --------------------------------------------------------------------------
# 1-D, one observation
# --------------------------------------------------------------------------

@overload
def _pad_1d(inp: NDArray[np.float32], num: int) -> NDArray[np.float32]: ...


@overload
def _pad_1d(inp: NDArray[np.float64], num: int) -> NDArray[np.float64]: ...


@overload
def _pad_1d(inp: Array, num: int) -> Array: ...


def _pad_1d(inp: Array, num: int) -> Array:
    """Pad a 1-D array with ``num`` zeros on each side.

    Parameters
    ----------
    inp : ndarray of shape (L,)
        Any real dtype.
    num : int
        The zeros added before and after, ``num >= 0``.

    Returns
    -------
    ndarray of shape (L + 2*num,)
        Integer input gives int64 (the notebook concatenated an int64 zero
        array; uint64 gives float64), float32 stays float32, other inputs give
        float64.

    Raises
    ------
    ConvxTypeError
        If ``inp`` is not a NumPy array of a real numeric dtype, or ``num`` is
        not an int.
    ConvxValueError
        If ``inp`` has the wrong number of dimensions, ``num`` is negative, or
        the padded array would exceed 2**48 elements.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _pad_1d
    >>> _pad_1d(np.array([1, 2, 3]), 1)
    array([0, 1, 2, 3, 0])
    """
    return _pad("_pad_1d", inp, num, 1, "(length,)", spatial=1)


def _conv_1d(f: str, inp: Array, param: Array) -> Array:
    inp = v.array(f, "inp", inp, 1, "(length,)")
    param = v.array(f, "param", param, 1, "(kernel_size,)")
    v.kernel_nonempty(f, "param", param.shape, (0,))
    out: Array = _conv(f, inp[None, None, None], param[None, None, None])[0, 0, 0]
    return out


@overload
def conv_1d(inp: NDArray[np.float32], param: NDArray[np.float32]) -> NDArray[np.float32]: ...


@overload
def conv_1d(inp: NDArray[np.float64], param: NDArray[np.float64]) -> NDArray[np.float64]: ...


@overload
def conv_1d(inp: Array, param: Array) -> Array: ...


def conv_1d(inp: Array, param: Array) -> Array:
    """'Same' 1-D cross-correlation of one sequence with one kernel.

    The notebook's convolution: ``K // 2`` zeros before the sequence and
    ``K - 1 - K // 2`` after it, so the output has the input's length.

    Parameters
    ----------
    inp : ndarray of shape (L,)
        Any real dtype.
    param : ndarray of shape (K,)
        The kernel, ``K >= 1``; any real dtype.

    Returns
    -------
    ndarray of shape (L,)
        ``out[o] = sum(param[k] * inp[o + k - K // 2])`` over the ``k`` that
        land inside ``inp``.  float32 when both arguments are float32, else
        float64 (integer input gives floats, as the notebook's
        ``np.zeros(shape)`` did).

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import conv_1d
    >>> conv_1d(np.array([1, 2, 3, 4, 5]), np.array([1, 1, 1]))
    array([ 3.,  6.,  9., 12.,  9.])
    """
    return _conv_1d("conv_1d", inp, param)


@overload
def conv_1d_sum(inp: NDArray[np.float32], param: NDArray[np.float32]) -> np.float32: ...


@overload
def conv_1d_sum(inp: NDArray[np.float64], param: NDArray[np.float64]) -> np.float64: ...


@overload
def conv_1d_sum(inp: Array, param: Array) -> np.floating[Any]: ...


def conv_1d_sum(inp: Array, param: Array) -> np.floating[Any]:
    """The sum of :func:`conv_1d`'s output: the loss of the notebook's 1-D checks.

    Parameters
    ----------
    inp : ndarray of shape (L,)
        Any real dtype.
    param : ndarray of shape (K,)
        The kernel, ``K >= 1``; any real dtype.

    Returns
    -------
    numpy float
        ``conv_1d(inp, param).sum()``: a float32 or float64 scalar, as
        :func:`conv_1d`'s dtype.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import conv_1d_sum
    >>> float(conv_1d_sum(np.array([1, 2, 3, 4, 5]), np.array([1, 1, 1])))
    39.0
    """
    return np.sum(_conv_1d("conv_1d_sum", inp, param))


def _grad_1d_args(f: str, inp: Array, param: Array,
                  output_grad: Array | None) -> tuple[Array, Array, Array]:
    inp = v.array(f, "inp", inp, 1, "(length,)")
    param = v.array(f, "param", param, 1, "(kernel_size,)")
    v.kernel_nonempty(f, "param", param.shape, (0,))
    if output_grad is None:
        output_grad = np.ones_like(inp)
    else:
        output_grad = v.array(f, "output_grad", output_grad, 1, "(length,)")
        v.same_shape(f, "output_grad", output_grad, inp.shape, "the shape of 'inp'")
    return inp, param, output_grad


@overload
def _param_grad_1d(
    inp: NDArray[np.float32], param: NDArray[np.float32],
    output_grad: NDArray[np.float32] | None = ...,
) -> NDArray[np.float32]: ...


@overload
def _param_grad_1d(
    inp: NDArray[np.float64], param: NDArray[np.float64],
    output_grad: NDArray[np.float64] | None = ...,
) -> NDArray[np.float64]: ...


@overload
def _param_grad_1d(inp: Array, param: Array, output_grad: Array | None = ...) -> Array: ...


def _param_grad_1d(inp: Array, param: Array, output_grad: Array | None = None) -> Array:
    """Gradient of :func:`conv_1d` with respect to its kernel.

    The gradient of ``sum(conv_1d(inp, param) * output_grad)`` with respect to
    ``param``.

    Parameters
    ----------
    inp : ndarray of shape (L,)
        The forward pass's input.
    param : ndarray of shape (K,)
        The kernel, ``K >= 1``.
    output_grad : ndarray of shape (L,), optional
        The gradient of the loss with respect to the output; ones by default
        (the gradient of :func:`conv_1d_sum`).

    Returns
    -------
    ndarray of shape (K,)
        ``param``'s integer dtype when every array argument is an integer array
        (the notebook accumulated into ``np.zeros_like(param)``; computed
        exactly, then rounded), else float32 or float64 as for :func:`conv_1d`.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _param_grad_1d
    >>> _param_grad_1d(np.array([1, 2, 3, 4, 5]), np.array([1, 1, 1]))
    array([10, 15, 14])
    """
    f = "_param_grad_1d"
    inp, param, output_grad = _grad_1d_args(f, inp, param, output_grad)
    g = _conv_weight_grad(f, inp[None, None, None], param[None, None, None],
                          output_grad[None, None, None])
    return _int_result(g[0, 0, 0], param, inp, param, output_grad)


@overload
def _input_grad_1d(
    inp: NDArray[np.float32], param: NDArray[np.float32],
    output_grad: NDArray[np.float32] | None = ...,
) -> NDArray[np.float32]: ...


@overload
def _input_grad_1d(
    inp: NDArray[np.float64], param: NDArray[np.float64],
    output_grad: NDArray[np.float64] | None = ...,
) -> NDArray[np.float64]: ...


@overload
def _input_grad_1d(inp: Array, param: Array, output_grad: Array | None = ...) -> Array: ...


def _input_grad_1d(inp: Array, param: Array, output_grad: Array | None = None) -> Array:
    """Gradient of :func:`conv_1d` with respect to its input.

    The gradient of ``sum(conv_1d(inp, param) * output_grad)`` with respect to
    ``inp``.

    Parameters
    ----------
    inp : ndarray of shape (L,)
        The forward pass's input.
    param : ndarray of shape (K,)
        The kernel, ``K >= 1``.
    output_grad : ndarray of shape (L,), optional
        The gradient of the loss with respect to the output; ones by default.

    Returns
    -------
    ndarray of shape (L,)
        ``inp``'s integer dtype when every array argument is an integer array,
        else float32 or float64 as for :func:`conv_1d`.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _input_grad_1d
    >>> _input_grad_1d(np.array([1, 2, 3, 4, 5]), np.array([1, 1, 1]))
    array([2, 3, 3, 3, 2])
    """
    f = "_input_grad_1d"
    inp, param, output_grad = _grad_1d_args(f, inp, param, output_grad)
    g = _conv_input_grad(f, inp[None, None, None], param[None, None, None],
                         output_grad[None, None, None])
    return _int_result(g[0, 0, 0], inp, inp, param, output_grad)


# --------------------------------------------------------------------------
# 1-D, a batch
# --------------------------------------------------------------------------

@overload
def _pad_1d_batch(inp: NDArray[np.float32], num: int) -> NDArray[np.float32]: ...


@overload
def _pad_1d_batch(inp: NDArray[np.float64], num: int) -> NDArray[np.float64]: ...


@overload
def _pad_1d_batch(inp: Array, num: int) -> Array: ...


def _pad_1d_batch(inp: Array, num: int) -> Array:
    """Pad each row of a batch of sequences with ``num`` zeros on each side.

    Parameters
    ----------
    inp : ndarray of shape (N, L)
        Any real dtype.
    num : int
        The zeros added before and after each row, ``num >= 0``.

    Returns
    -------
    ndarray of shape (N, L + 2*num)
        Integer input gives int64, float32 stays float32, other inputs give
        float64, as :func:`_pad_1d`.

    Raises
    ------
    ConvxTypeError
        If ``inp`` is not a NumPy array of a real numeric dtype, or ``num`` is
        not an int.
    ConvxValueError
        If ``inp`` has the wrong number of dimensions, ``num`` is negative, or
        the padded array would exceed 2**48 elements.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _pad_1d_batch
    >>> _pad_1d_batch(np.array([[1, 2], [3, 4]]), 1)
    array([[0, 1, 2, 0],
           [0, 3, 4, 0]])
    """
    return _pad("_pad_1d_batch", inp, num, 2, "(batch, length)", spatial=1)


def _batch_1d_args(f: str, inp: Array, param: Array,
                   param_name: str = "param") -> tuple[Array, Array, Array]:
    """The notebook's (N, L) batch and (K,) kernel as NCHW and OIHW views, and
    ``inp`` as a plain ndarray."""
    inp = v.array(f, "inp", inp, 2, "(batch, length)")
    param = v.array(f, param_name, param, 1, "(kernel_size,)")
    v.kernel_nonempty(f, param_name, param.shape, (0,))
    return inp, inp[:, None, None], param[None, None, None]


def _conv_1d_batch(f: str, inp: Array, param: Array, param_name: str) -> Array:
    _, x, w = _batch_1d_args(f, inp, param, param_name)
    return _conv(f, x, w, ("inp", param_name))[:, 0, 0]


@overload
def conv_1d_batch(inp: NDArray[np.float32], param: NDArray[np.float32]) -> NDArray[np.float32]: ...


@overload
def conv_1d_batch(inp: NDArray[np.float64], param: NDArray[np.float64]) -> NDArray[np.float64]: ...


@overload
def conv_1d_batch(inp: Array, param: Array) -> Array: ...


def conv_1d_batch(inp: Array, param: Array) -> Array:
    """:func:`conv_1d` of each row of a batch, with one kernel.

    Parameters
    ----------
    inp : ndarray of shape (N, L)
        A batch of sequences; any real dtype.
    param : ndarray of shape (K,)
        The kernel, ``K >= 1``; any real dtype.

    Returns
    -------
    ndarray of shape (N, L)
        float32 when both arguments are float32, else float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import conv_1d_batch
    >>> conv_1d_batch(np.array([[1, 2, 3], [0, 1, 0]]), np.array([1, 1, 1]))
    array([[3., 6., 5.],
           [1., 1., 1.]])
    """
    return _conv_1d_batch("conv_1d_batch", inp, param, "param")


@overload
def input_grad_1d_batch(
    inp: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def input_grad_1d_batch(
    inp: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def input_grad_1d_batch(inp: Array, param: Array) -> Array: ...


def input_grad_1d_batch(inp: Array, param: Array) -> Array:
    """Gradient of :func:`conv_1d_batch_sum` with respect to the batch.

    Parameters
    ----------
    inp : ndarray of shape (N, L)
        The forward pass's batch.
    param : ndarray of shape (K,)
        The kernel, ``K >= 1``.

    Returns
    -------
    ndarray of shape (N, L)
        ``inp``'s integer dtype when both arguments are integer arrays, else
        float32 or float64 as for :func:`conv_1d_batch`.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import input_grad_1d_batch
    >>> input_grad_1d_batch(np.array([[1, 2, 3, 4, 5]]), np.array([1, 1, 1]))
    array([[2, 3, 3, 3, 2]])
    """
    f = "input_grad_1d_batch"
    inp, x, w = _batch_1d_args(f, inp, param)
    g = _conv_input_grad(f, x, w, np.ones(x.shape, inp.dtype))
    return _int_result(g[:, 0, 0], inp, inp, param)


@overload
def param_grad_1d_batch(
    inp: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def param_grad_1d_batch(
    inp: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def param_grad_1d_batch(inp: Array, param: Array) -> Array: ...


def param_grad_1d_batch(inp: Array, param: Array) -> Array:
    """Gradient of :func:`conv_1d_batch_sum` with respect to the kernel.

    The notebook padded by 1 whatever the kernel size (a kernel of size 5
    raised an ``IndexError``); convx pads by the kernel's half-width, as
    :func:`conv_1d` does, and gives the true gradient for every size.

    Parameters
    ----------
    inp : ndarray of shape (N, L)
        The forward pass's batch.
    param : ndarray of shape (K,)
        The kernel, ``K >= 1``.

    Returns
    -------
    ndarray of shape (K,)
        Summed over the batch.  ``param``'s integer dtype when both arguments
        are integer arrays, else float32 or float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import param_grad_1d_batch
    >>> param_grad_1d_batch(np.array([[1, 2, 3, 4, 5], [1, 1, 1, 1, 1]]), np.array([1, 1, 1]))
    array([14, 20, 18])
    """
    f = "param_grad_1d_batch"
    inp, x, w = _batch_1d_args(f, inp, param)
    g = _conv_weight_grad(f, x, w, np.ones(x.shape, inp.dtype))
    return _int_result(g[0, 0, 0], param, inp, param)


@overload
def conv_1d_batch_sum(inp: NDArray[np.float32], fil: NDArray[np.float32]) -> np.float32: ...


@overload
def conv_1d_batch_sum(inp: NDArray[np.float64], fil: NDArray[np.float64]) -> np.float64: ...


@overload
def conv_1d_batch_sum(inp: Array, fil: Array) -> np.floating[Any]: ...


def conv_1d_batch_sum(inp: Array, fil: Array) -> np.floating[Any]:
    """The sum of :func:`conv_1d_batch`'s output: the loss of the notebook's batch checks.

    Parameters
    ----------
    inp : ndarray of shape (N, L)
        A batch of sequences.
    fil : ndarray of shape (K,)
        The kernel, ``K >= 1`` (the notebook's name for it here).

    Returns
    -------
    numpy float
        ``conv_1d_batch(inp, fil).sum()``, float32 or float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or a shape does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import conv_1d_batch_sum
    >>> float(conv_1d_batch_sum(np.array([[1, 2, 3], [0, 1, 0]]), np.array([1, 1, 1])))
    17.0
    """
    return np.sum(_conv_1d_batch("conv_1d_batch_sum", inp, fil, "fil"))


# --------------------------------------------------------------------------
# 2-D, one channel
# --------------------------------------------------------------------------

@overload
def _pad_2d(inp: NDArray[np.float32], num: int) -> NDArray[np.float32]: ...


@overload
def _pad_2d(inp: NDArray[np.float64], num: int) -> NDArray[np.float64]: ...


@overload
def _pad_2d(inp: Array, num: int) -> Array: ...


def _pad_2d(inp: Array, num: int) -> Array:
    """Pad each image of a batch with a border of ``num`` zeros.

    Parameters
    ----------
    inp : ndarray of shape (N, H, W)
        Any real dtype.
    num : int
        The width of the border, ``num >= 0``.

    Returns
    -------
    ndarray of shape (N, H + 2*num, W + 2*num)
        Floats, as the notebook's stacked float zeros gave: float32 for float32
        input, float64 otherwise.

    Raises
    ------
    ConvxTypeError
        If ``inp`` is not a NumPy array of a real numeric dtype, or ``num`` is
        not an int.
    ConvxValueError
        If ``inp`` has the wrong number of dimensions, ``num`` is negative, or
        the padded array would exceed 2**48 elements.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _pad_2d
    >>> _pad_2d(np.ones((2, 1, 2)), 1).shape
    (2, 3, 4)
    """
    return _pad("_pad_2d", inp, num, 3, "(batch, height, width)", spatial=2)


@overload
def _pad_2d_obs(inp: NDArray[np.float32], num: int) -> NDArray[np.float32]: ...


@overload
def _pad_2d_obs(inp: NDArray[np.float64], num: int) -> NDArray[np.float64]: ...


@overload
def _pad_2d_obs(inp: Array, num: int) -> Array: ...


def _pad_2d_obs(inp: Array, num: int) -> Array:
    """Pad one image with a border of ``num`` zeros.

    The notebook's version was right for square images only; this one pads any
    ``H x W``.

    Parameters
    ----------
    inp : ndarray of shape (H, W)
        Any real dtype.
    num : int
        The width of the border, ``num >= 0``.

    Returns
    -------
    ndarray of shape (H + 2*num, W + 2*num)
        float32 for float32 input, float64 otherwise.

    Raises
    ------
    ConvxTypeError
        If ``inp`` is not a NumPy array of a real numeric dtype, or ``num`` is
        not an int.
    ConvxValueError
        If ``inp`` has the wrong number of dimensions, ``num`` is negative, or
        the padded array would exceed 2**48 elements.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _pad_2d_obs
    >>> _pad_2d_obs(np.array([[1, 2]]), 1)
    array([[0., 0., 0., 0.],
           [0., 1., 2., 0.],
           [0., 0., 0., 0.]])
    """
    return _pad("_pad_2d_obs", inp, num, 2, "(height, width)", spatial=2)


def _check_2d(f: str, inp: Array, param: Array, ndim: int,
              layout: str) -> tuple[Array, Array]:
    inp = v.array(f, "inp" if ndim == 3 else "obs", inp, ndim, layout)
    param = v.array(f, "param", param, 2, "(kernel_height, kernel_width)")
    v.kernel_nonempty(f, "param", param.shape, (0, 1))
    return inp, param


@overload
def _compute_output_obs_2d(
    obs: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _compute_output_obs_2d(
    obs: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _compute_output_obs_2d(obs: Array, param: Array) -> Array: ...


def _compute_output_obs_2d(obs: Array, param: Array) -> Array:
    """'Same' 2-D cross-correlation of one image with one kernel.

    ``KH // 2`` rows of zeros above and ``KH - 1 - KH // 2`` below, and the same
    for the columns, so the output has the image's size for every kernel
    size.

    Parameters
    ----------
    obs : ndarray of shape (H, W)
        One image; any real dtype.  Need not be square.
    param : ndarray of shape (KH, KW)
        The kernel, each size >= 1; any real dtype.

    Returns
    -------
    ndarray of shape (H, W)
        ``obs``'s integer dtype when both arguments are integer arrays (the
        notebook's output was ``np.zeros_like(obs)``), else float32 when both
        are float32, else float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or ``output_grad`` does not have the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_output_obs_2d
    >>> _compute_output_obs_2d(np.arange(9.0).reshape(3, 3), np.ones((3, 3)))
    array([[ 8., 15., 12.],
           [21., 36., 27.],
           [20., 33., 24.]])
    """
    f = "_compute_output_obs_2d"
    obs, param = _check_2d(f, obs, param, 2, "(height, width)")
    out = _conv(f, obs[None, None], param[None, None], ("obs", "param"))[0, 0]
    return _int_result(out, obs, obs, param)


@overload
def _compute_output_2d(
    img_batch: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _compute_output_2d(
    img_batch: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _compute_output_2d(img_batch: Array, param: Array) -> Array: ...


def _compute_output_2d(img_batch: Array, param: Array) -> Array:
    """:func:`_compute_output_obs_2d` of each image of a batch.

    Parameters
    ----------
    img_batch : ndarray of shape (N, H, W)
        A batch of single-channel images; any real dtype.
    param : ndarray of shape (KH, KW)
        The kernel, each size >= 1.

    Returns
    -------
    ndarray of shape (N, H, W)
        ``img_batch``'s integer dtype when both arguments are integer arrays,
        else float32 or float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or ``output_grad`` does not have the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_output_2d
    >>> _compute_output_2d(np.ones((2, 3, 3)), np.ones((3, 3)))[0]
    array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]])
    """
    return _output_2d("_compute_output_2d", img_batch, param)


def _output_2d(f: str, img_batch: Array, param: Array) -> Array:
    img_batch = v.array(f, "img_batch", img_batch, 3, "(batch, height, width)")
    param = v.array(f, "param", param, 2, "(kernel_height, kernel_width)")
    v.kernel_nonempty(f, "param", param.shape, (0, 1))
    out = _conv(f, img_batch[:, None], param[None, None], ("img_batch", "param"))[:, 0]
    return _int_result(out, img_batch, img_batch, param)


def _grads_2d_args(f: str, inp: Array, output_grad: Array, param: Array,
                   batched: bool) -> tuple[Array, Array, Array]:
    names = ("inp", "output_grad") if batched else ("input_obs", "output_grad_obs")
    layout = "(batch, height, width)" if batched else "(height, width)"
    nd = 3 if batched else 2
    inp = v.array(f, names[0], inp, nd, layout)
    output_grad = v.array(f, names[1], output_grad, nd, layout)
    param = v.array(f, "param", param, 2, "(kernel_height, kernel_width)")
    v.kernel_nonempty(f, "param", param.shape, (0, 1))
    v.same_shape(f, names[1], output_grad, inp.shape, f"the shape of '{names[0]}'")
    if not batched:
        inp, output_grad = inp[None], output_grad[None]
    return inp[:, None], output_grad[:, None], param[None, None]


@overload
def _compute_grads_obs_2d(
    input_obs: NDArray[np.float32], output_grad_obs: NDArray[np.float32],
    param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _compute_grads_obs_2d(
    input_obs: NDArray[np.float64], output_grad_obs: NDArray[np.float64],
    param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _compute_grads_obs_2d(input_obs: Array, output_grad_obs: Array, param: Array) -> Array: ...


def _compute_grads_obs_2d(input_obs: Array, output_grad_obs: Array, param: Array) -> Array:
    """Gradient of :func:`_compute_output_obs_2d` with respect to its image.

    Parameters
    ----------
    input_obs : ndarray of shape (H, W)
        The forward pass's image.
    output_grad_obs : ndarray of shape (H, W)
        The gradient of the loss with respect to the output.
    param : ndarray of shape (KH, KW)
        The kernel, each size >= 1.

    Returns
    -------
    ndarray of shape (H, W)
        ``input_obs``'s integer dtype when every array argument is an integer
        array, else float32 or float64.  The true gradient for every kernel
        size (the notebook's was shifted by one for even sizes).

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or ``output_grad`` does not have the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_grads_obs_2d
    >>> _compute_grads_obs_2d(np.zeros((3, 3)), np.ones((3, 3)), np.ones((3, 3)))
    array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]])
    """
    f = "_compute_grads_obs_2d"
    x, g, w = _grads_2d_args(f, input_obs, output_grad_obs, param, batched=False)
    out = _conv_input_grad(f, x, w, g, ("param", "output_grad_obs"))[0, 0]
    return _int_result(out, input_obs, input_obs, output_grad_obs, param)


@overload
def _compute_grads_2d(
    inp: NDArray[np.float32], output_grad: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _compute_grads_2d(
    inp: NDArray[np.float64], output_grad: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _compute_grads_2d(inp: Array, output_grad: Array, param: Array) -> Array: ...


def _compute_grads_2d(inp: Array, output_grad: Array, param: Array) -> Array:
    """Gradient of :func:`_compute_output_2d` with respect to its batch.

    Parameters
    ----------
    inp : ndarray of shape (N, H, W)
        The forward pass's batch.
    output_grad : ndarray of shape (N, H, W)
        The gradient of the loss with respect to the output.
    param : ndarray of shape (KH, KW)
        The kernel, each size >= 1.

    Returns
    -------
    ndarray of shape (N, H, W)
        ``inp``'s integer dtype when every array argument is an integer array,
        else float32 or float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or ``output_grad`` does not have the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_grads_2d
    >>> _compute_grads_2d(np.zeros((2, 2, 2)), np.ones((2, 2, 2)), np.ones((3, 3)))[1]
    array([[4., 4.],
           [4., 4.]])
    """
    f = "_compute_grads_2d"
    x, g, w = _grads_2d_args(f, inp, output_grad, param, batched=True)
    out = _conv_input_grad(f, x, w, g)[:, 0]
    return _int_result(out, inp, inp, output_grad, param)


@overload
def _param_grad_2d(
    inp: NDArray[np.float32], output_grad: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _param_grad_2d(
    inp: NDArray[np.float64], output_grad: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _param_grad_2d(inp: Array, output_grad: Array, param: Array) -> Array: ...


def _param_grad_2d(inp: Array, output_grad: Array, param: Array) -> Array:
    """Gradient of :func:`_compute_output_2d` with respect to its kernel.

    Parameters
    ----------
    inp : ndarray of shape (N, H, W)
        The forward pass's batch.
    output_grad : ndarray of shape (N, H, W)
        The gradient of the loss with respect to the output.
    param : ndarray of shape (KH, KW)
        The kernel, each size >= 1.

    Returns
    -------
    ndarray of shape (KH, KW)
        Summed over the batch.  ``param``'s integer dtype when every array
        argument is an integer array, else float32 or float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or ``output_grad`` does not have the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _param_grad_2d
    >>> _param_grad_2d(np.ones((2, 3, 3)), np.ones((2, 3, 3)), np.ones((3, 3)))
    array([[ 8., 12.,  8.],
           [12., 18., 12.],
           [ 8., 12.,  8.]])
    """
    f = "_param_grad_2d"
    x, g, w = _grads_2d_args(f, inp, output_grad, param, batched=True)
    out = _conv_weight_grad(f, x, w, g)[0, 0]
    return _int_result(out, param, inp, output_grad, param)


@overload
def _compute_output_2d_sum(
    img_batch: NDArray[np.float32], param: NDArray[np.float32],
) -> np.float32: ...


@overload
def _compute_output_2d_sum(
    img_batch: NDArray[np.float64], param: NDArray[np.float64],
) -> np.float64: ...


@overload
def _compute_output_2d_sum(img_batch: Array, param: Array) -> np.number[Any]: ...


def _compute_output_2d_sum(img_batch: Array, param: Array) -> np.number[Any]:
    """The sum of :func:`_compute_output_2d`'s output: the loss of the notebook's 2-D checks.

    Parameters
    ----------
    img_batch : ndarray of shape (N, H, W)
        A batch of single-channel images.
    param : ndarray of shape (KH, KW)
        The kernel, each size >= 1.

    Returns
    -------
    numpy scalar
        ``_compute_output_2d(img_batch, param).sum()``, in its dtype.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, the kernel is
        empty, or ``output_grad`` does not have the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_output_2d_sum
    >>> float(_compute_output_2d_sum(np.ones((2, 3, 3)), np.ones((3, 3))))
    98.0
    """
    total: np.number[Any] = _output_2d("_compute_output_2d_sum", img_batch, param).sum()
    return total


# --------------------------------------------------------------------------
# Channels and a batch.  The notebook's param is [in_channels, out_channels,
# kernel_height, kernel_width]; the engine's weight is (out, in, kh, kw).
# --------------------------------------------------------------------------

@overload
def _pad_2d_channel(inp: NDArray[np.float32], num: int) -> NDArray[np.float32]: ...


@overload
def _pad_2d_channel(inp: NDArray[np.float64], num: int) -> NDArray[np.float64]: ...


@overload
def _pad_2d_channel(inp: Array, num: int) -> Array: ...


def _pad_2d_channel(inp: Array, num: int) -> Array:
    """Pad each channel of one image with a border of ``num`` zeros.

    Parameters
    ----------
    inp : ndarray of shape (C, H, W)
        Any real dtype.
    num : int
        The width of the border, ``num >= 0``.

    Returns
    -------
    ndarray of shape (C, H + 2*num, W + 2*num)
        float32 for float32 input, float64 otherwise.

    Raises
    ------
    ConvxTypeError
        If ``inp`` is not a NumPy array of a real numeric dtype, or ``num`` is
        not an int.
    ConvxValueError
        If ``inp`` has the wrong number of dimensions, ``num`` is negative, or
        the padded array would exceed 2**48 elements.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _pad_2d_channel
    >>> _pad_2d_channel(np.ones((3, 2, 2)), 2).shape
    (3, 6, 6)
    """
    return _pad("_pad_2d_channel", inp, num, 3, "(channels, height, width)", spatial=2)


@overload
def _pad_conv_input(inp: NDArray[np.float32], num: int) -> NDArray[np.float32]: ...


@overload
def _pad_conv_input(inp: NDArray[np.float64], num: int) -> NDArray[np.float64]: ...


@overload
def _pad_conv_input(inp: Array, num: int) -> Array: ...


def _pad_conv_input(inp: Array, num: int) -> Array:
    """Pad each channel of each image of a batch with a border of ``num`` zeros.

    Parameters
    ----------
    inp : ndarray of shape (N, C, H, W)
        Any real dtype.
    num : int
        The width of the border, ``num >= 0``.

    Returns
    -------
    ndarray of shape (N, C, H + 2*num, W + 2*num)
        float32 for float32 input, float64 otherwise.

    Raises
    ------
    ConvxTypeError
        If ``inp`` is not a NumPy array of a real numeric dtype, or ``num`` is
        not an int.
    ConvxValueError
        If ``inp`` has the wrong number of dimensions, ``num`` is negative, or
        the padded array would exceed 2**48 elements.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _pad_conv_input
    >>> _pad_conv_input(np.ones((10, 3, 32, 32), np.float32), 2).shape
    (10, 3, 36, 36)
    """
    return _pad("_pad_conv_input", inp, num, 4, "(batch, channels, height, width)", spatial=2)


# The same passes serve convx.layers' Conv2D_Op and Conv1D_Op, the book's
# operations: ``nsp`` spatial axes (1-D is run as 2-D with a unit height) and
# ``names`` for the arguments their messages name.
_SPATIAL = {1: "length", 2: "height, width"}
_KERNEL = {1: "kernel_size", 2: "kernel_height, kernel_width"}


def _as_2d(a: Array, nsp: int) -> Array:
    """A 1-D pass's array viewed with a unit height axis before its last."""
    return a if nsp == 2 else a[..., None, :]


def _check_param(f: str, param: Array, in_channels: int, in_name: str, nsp: int = 2) -> Array:
    param = v.array(f, "param", param, nsp + 2,
                    f"(in_channels, out_channels, {_KERNEL[nsp]})")
    v.kernel_nonempty(f, "param", param.shape, range(2, nsp + 2))
    if param.shape[0] != in_channels:
        raise v.ConvxValueError(
            f"{f}(): argument 'param' must have {in_channels} input channels in its first axis "
            f"(the channels of '{in_name}'), got param of shape {param.shape}")
    return param


def _forward_channels(f: str, inp: Array, param: Array, batched: bool, name: str | None = None,
                      nsp: int = 2) -> Array:
    name = name or ("inp" if batched else "obs")
    layout = f"({'batch, ' if batched else ''}channels, {_SPATIAL[nsp]})"
    nd = nsp + 1 + batched
    inp = v.array(f, name, inp, nd, layout)
    param = _check_param(f, param, inp.shape[-1 - nsp], name, nsp)
    x = _as_2d(inp if batched else inp[None], nsp)
    out = _conv(f, x, _as_2d(param, nsp).transpose(1, 0, 2, 3), (name, "param"))
    out = out if nsp == 2 else out[:, :, 0]
    return out if batched else out[0]


def _grads_channels_args(f: str, inp: Array, output_grad: Array, param: Array, batched: bool,
                         nsp: int = 2, names: tuple[str, str] | None = None
                         ) -> tuple[Array, Array, Array]:
    """The arrays of a gradient as the engine's 4-D views (x, g, w)."""
    names = names or (("inp", "output_grad") if batched else ("input_obs", "output_grad_obs"))
    nd = nsp + 1 + batched
    lead = "batch, " if batched else ""
    inp = v.array(f, names[0], inp, nd, f"({lead}in_channels, {_SPATIAL[nsp]})")
    output_grad = v.array(f, names[1], output_grad, nd,
                          f"({lead}out_channels, {_SPATIAL[nsp]})")
    param = _check_param(f, param, inp.shape[-1 - nsp], names[0], nsp)
    expected = inp.shape[:-1 - nsp] + (param.shape[1],) + inp.shape[-nsp:]
    v.same_shape(f, names[1], output_grad, expected,
                 f"'{names[0]}' with param's {param.shape[1]} output channels")
    if not batched:
        inp, output_grad = inp[None], output_grad[None]
    return (_as_2d(inp, nsp), _as_2d(output_grad, nsp),
            _as_2d(param, nsp).transpose(1, 0, 2, 3))


def _channels_input_grad(f: str, inp: Array, output_grad: Array, param: Array, nsp: int = 2,
                         names: tuple[str, str] = ("inp", "output_grad")) -> Array:
    """The batched input gradient: (N, C_in, *size), in ``inp``'s dtype kind."""
    x, g, w = _grads_channels_args(f, inp, output_grad, param, True, nsp, names)
    out = _conv_input_grad(f, x, w, g, ("param", names[1]))
    out = out if nsp == 2 else out[:, :, 0]
    return _int_result(out, inp, inp, output_grad, param)


def _channels_param_grad(f: str, inp: Array, output_grad: Array, param: Array, nsp: int = 2,
                         names: tuple[str, str] = ("inp", "output_grad")) -> Array:
    """The batched parameter gradient: (C_in, C_out, *kernel), in ``param``'s dtype kind."""
    x, g, w = _grads_channels_args(f, inp, output_grad, param, True, nsp, names)
    out = _conv_weight_grad(f, x, w, g, names).transpose(1, 0, 2, 3)
    out = np.ascontiguousarray(out if nsp == 2 else out[:, :, 0])
    return _int_result(out, param, inp, output_grad, param)


@overload
def _compute_output_obs(
    obs: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _compute_output_obs(
    obs: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _compute_output_obs(obs: Array, param: Array) -> Array: ...


def _compute_output_obs(obs: Array, param: Array) -> Array:
    """Multi-channel 'same' convolution of one image.

    ``param`` is in the book's layout, ``[in_channels, out_channels, KH, KW]``
    (PyTorch's weight is ``param.transpose(1, 0, 2, 3)``).

    The filter size is ``param.shape[2:]``: the notebook read it from
    ``param.shape[0]``, the number of input channels, which is the bug that
    made its CIFAR gradient check fail (see :doc:`/notebook`).

    Parameters
    ----------
    obs : ndarray of shape (C_in, H, W)
        One image; any real dtype.
    param : ndarray of shape (C_in, C_out, KH, KW)
        The filters, each size >= 1.

    Returns
    -------
    ndarray of shape (C_out, H, W)
        ``out[f] = sum over c of the 'same' cross-correlation of obs[c] with
        param[c, f]``.  float32 when both arguments are float32, else float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, ``param.shape[0]``
        is not the input's channel count, the kernel is empty, or
        ``output_grad`` does not have the output's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_output_obs
    >>> out = _compute_output_obs(np.ones((3, 4, 4)), np.ones((3, 2, 3, 3)))
    >>> out.shape, float(out[0, 1, 1])
    ((2, 4, 4), 27.0)
    """
    return _forward_channels("_compute_output_obs", obs, param, batched=False)


@overload
def _output(inp: NDArray[np.float32], param: NDArray[np.float32]) -> NDArray[np.float32]: ...


@overload
def _output(inp: NDArray[np.float64], param: NDArray[np.float64]) -> NDArray[np.float64]: ...


@overload
def _output(inp: Array, param: Array) -> Array: ...


def _output(inp: Array, param: Array) -> Array:
    """Multi-channel 'same' convolution of a batch: the forward pass of the notebook's last section.

    ``param`` is in the book's layout, ``[in_channels, out_channels, KH, KW]``
    (PyTorch's weight is ``param.transpose(1, 0, 2, 3)``).

    The filter size is ``param.shape[2:]`` (the notebook read
    ``param.shape[0]``: see :doc:`/notebook`).

    Parameters
    ----------
    inp : ndarray of shape (N, C_in, H, W)
        A batch of images; any real dtype.
    param : ndarray of shape (C_in, C_out, KH, KW)
        The filters, each size >= 1.

    Returns
    -------
    ndarray of shape (N, C_out, H, W)
        float32 when both arguments are float32, else float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, ``param.shape[0]``
        is not the input's channel count, the kernel is empty, or
        ``output_grad`` does not have the output's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _output
    >>> imgs = np.ones((10, 3, 32, 32), np.float32)
    >>> param = np.ones((3, 16, 5, 5), np.float32)
    >>> out = _output(imgs, param)
    >>> out.shape, out.dtype, float(out[0, 0, 16, 16])
    ((10, 16, 32, 32), dtype('float32'), 75.0)
    """
    return _forward_channels("_output", inp, param, batched=True)


@overload
def _compute_grads_obs(
    input_obs: NDArray[np.float32], output_grad_obs: NDArray[np.float32],
    param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _compute_grads_obs(
    input_obs: NDArray[np.float64], output_grad_obs: NDArray[np.float64],
    param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _compute_grads_obs(input_obs: Array, output_grad_obs: Array, param: Array) -> Array: ...


def _compute_grads_obs(input_obs: Array, output_grad_obs: Array, param: Array) -> Array:
    """Gradient of :func:`_compute_output_obs` with respect to its image.

    ``param`` is in the book's layout, ``[in_channels, out_channels, KH, KW]``
    (PyTorch's weight is ``param.transpose(1, 0, 2, 3)``).

    Parameters
    ----------
    input_obs : ndarray of shape (C_in, H, W)
        The forward pass's image.
    output_grad_obs : ndarray of shape (C_out, H, W)
        The gradient of the loss with respect to the output.
    param : ndarray of shape (C_in, C_out, KH, KW)
        The filters, each size >= 1.

    Returns
    -------
    ndarray of shape (C_in, H, W)
        ``input_obs``'s integer dtype when every array argument is an integer
        array, else float32 or float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, ``param.shape[0]``
        is not the input's channel count, the kernel is empty, or
        ``output_grad`` does not have the output's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_grads_obs
    >>> dx = _compute_grads_obs(np.zeros((1, 3, 3)), np.ones((2, 3, 3)), np.ones((1, 2, 3, 3)))
    >>> dx[0]
    array([[ 8., 12.,  8.],
           [12., 18., 12.],
           [ 8., 12.,  8.]])
    """
    f = "_compute_grads_obs"
    x, g, w = _grads_channels_args(f, input_obs, output_grad_obs, param, batched=False)
    out = _conv_input_grad(f, x, w, g, ("param", "output_grad_obs"))[0]
    return _int_result(out, input_obs, input_obs, output_grad_obs, param)


@overload
def _input_grad(
    inp: NDArray[np.float32], output_grad: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _input_grad(
    inp: NDArray[np.float64], output_grad: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _input_grad(inp: Array, output_grad: Array, param: Array) -> Array: ...


def _input_grad(inp: Array, output_grad: Array, param: Array) -> Array:
    """Gradient of :func:`_output` with respect to its batch.

    ``param`` is in the book's layout, ``[in_channels, out_channels, KH, KW]``
    (PyTorch's weight is ``param.transpose(1, 0, 2, 3)``).

    Parameters
    ----------
    inp : ndarray of shape (N, C_in, H, W)
        The forward pass's batch.
    output_grad : ndarray of shape (N, C_out, H, W)
        The gradient of the loss with respect to the output.
    param : ndarray of shape (C_in, C_out, KH, KW)
        The filters, each size >= 1.

    Returns
    -------
    ndarray of shape (N, C_in, H, W)
        ``inp``'s integer dtype when every array argument is an integer array,
        else float32 when all are float32, else float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, ``param.shape[0]``
        is not the input's channel count, the kernel is empty, or
        ``output_grad`` does not have the output's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _input_grad
    >>> imgs = np.ones((10, 3, 32, 32), np.float32)
    >>> param = np.ones((3, 16, 5, 5), np.float32)
    >>> d_imgs = _input_grad(imgs, np.ones((10, 16, 32, 32), np.float32), param)
    >>> d_imgs.shape, d_imgs.dtype, float(d_imgs[0, 0, 16, 16])
    ((10, 3, 32, 32), dtype('float32'), 400.0)
    """
    return _channels_input_grad("_input_grad", inp, output_grad, param)


@overload
def _param_grad(
    inp: NDArray[np.float32], output_grad: NDArray[np.float32], param: NDArray[np.float32],
) -> NDArray[np.float32]: ...


@overload
def _param_grad(
    inp: NDArray[np.float64], output_grad: NDArray[np.float64], param: NDArray[np.float64],
) -> NDArray[np.float64]: ...


@overload
def _param_grad(inp: Array, output_grad: Array, param: Array) -> Array: ...


def _param_grad(inp: Array, output_grad: Array, param: Array) -> Array:
    """Gradient of :func:`_output` with respect to its filters.

    ``param`` is in the book's layout, ``[in_channels, out_channels, KH, KW]``
    (PyTorch's weight is ``param.transpose(1, 0, 2, 3)``).

    Parameters
    ----------
    inp : ndarray of shape (N, C_in, H, W)
        The forward pass's batch.
    output_grad : ndarray of shape (N, C_out, H, W)
        The gradient of the loss with respect to the output.
    param : ndarray of shape (C_in, C_out, KH, KW)
        The filters, each size >= 1.

    Returns
    -------
    ndarray of shape (C_in, C_out, KH, KW)
        Summed over the batch.  ``param``'s integer dtype when every array
        argument is an integer array, else float32 when all are float32, else
        float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, ``param.shape[0]``
        is not the input's channel count, the kernel is empty, or
        ``output_grad`` does not have the output's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _param_grad
    >>> d_param = _param_grad(np.ones((2, 1, 3, 3)), np.ones((2, 2, 3, 3)), np.ones((1, 2, 3, 3)))
    >>> d_param.shape
    (1, 2, 3, 3)
    >>> d_param[0, 0]
    array([[ 8., 12.,  8.],
           [12., 18., 12.],
           [ 8., 12.,  8.]])
    """
    return _channels_param_grad("_param_grad", inp, output_grad, param)


@overload
def _compute_output_sum(imgs: NDArray[np.float32], param: NDArray[np.float32]) -> np.float32: ...


@overload
def _compute_output_sum(imgs: NDArray[np.float64], param: NDArray[np.float64]) -> np.float64: ...


@overload
def _compute_output_sum(imgs: Array, param: Array) -> np.floating[Any]: ...


def _compute_output_sum(imgs: Array, param: Array) -> np.floating[Any]:
    """The sum of :func:`_output`'s output: the loss of the notebook's CIFAR gradient check.

    Parameters
    ----------
    imgs : ndarray of shape (N, C_in, H, W)
        A batch of images.
    param : ndarray of shape (C_in, C_out, KH, KW)
        The filters in the book's layout, each size >= 1.

    Returns
    -------
    numpy float
        ``_output(imgs, param).sum()``, float32 or float64.

    Raises
    ------
    ConvxTypeError
        If an argument is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If an argument has the wrong number of dimensions, ``param.shape[0]``
        is not the input's channel count, the kernel is empty, or
        ``output_grad`` does not have the output's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convx import _compute_output_sum
    >>> float(_compute_output_sum(np.ones((2, 1, 3, 3)), np.ones((1, 2, 3, 3))))
    196.0
    """
    total: np.floating[Any] = _forward_channels("_compute_output_sum", imgs, param, batched=True,
                                                name="imgs").sum()
    return total
