"""Layers to train a network with: thin faces over the engine the functions use.

Two kinds, for two kinds of code:

* :class:`Conv2D_Op` and :class:`Conv1D_Op` are the operation of *Deep
  Learning from Scratch*'s framework (chapter 5), under the book's names and
  contract: the notebook's layout (``param`` is ``[C_in, C_out, k, k]``), its
  "same" padding (``k // 2`` zeros before, ``k - 1 - k // 2`` after), and the
  hooks ``_output``, ``_input_grad`` and ``_param_grad`` its ``ParamOperation``
  calls.  They work alone, or mixed into the book's own class::

      class Conv2D_Op(convx.layers.Conv2D_Op, ParamOperation):
          pass

  so that the book's ``Layer`` finds them among its ``ParamOperation``\\ s and
  its optimizers update ``param`` in place (the operation keeps the very array
  it was given).

* :class:`Conv2D` and :class:`Conv1D` are layers for a network of your own,
  in PyTorch's layout and with its default initialisation: ``forward(x)``,
  then ``backward(grad_out)``, which returns the input's gradient and sets
  ``weight_grad`` and ``bias_grad``.

Each layer keeps a reference to its last input for the backward pass (no
copy): change that array in place between the two and the gradients are those
of the changed input, as in the book's framework.
"""
from __future__ import annotations

import inspect
import math
import operator
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import numpy as np

from . import _api
from . import _notebook as nb
from . import _validate as v

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import DTypeLike, NDArray

    from ._typing import Array, Geometry, Padding

    # the dtype arguments that give a float32 layer, and a float64 one
    _Float32Like = type[np.float32] | np.dtype[np.float32] | Literal["float32", "f4", "single"]
    _Float64Like = (type[np.float64 | float] | np.dtype[np.float64]
                    | Literal["float64", "f8", "double", "float"])
    _Seed = int | np.integer[Any] | np.random.Generator | None

# A layer's dtype: its parameters', its inputs' and its outputs'
_F = TypeVar("_F", np.float32, np.float64)

__all__ = ["Conv1D", "Conv1D_Op", "Conv2D", "Conv2D_Op"]


# --------------------------------------------------------------------------
# The book's operation
# --------------------------------------------------------------------------

def _next_init(cls: type, obj: object) -> Callable[..., object] | None:
    """The ``__init__`` after ``cls`` in ``obj``'s class's MRO, or None when it
    is ``object``'s: a class mixed in after ours (the book's ParamOperation)
    gets to run its own."""
    mro = type(obj).__mro__
    for base in mro[mro.index(cls) + 1:]:
        if "__init__" in vars(base):
            return None if base is object else vars(base)["__init__"]
    return None


class _ParamOp:
    """The book's ``ParamOperation`` contract for a convolution with ``nsp``
    spatial axes; see :class:`Conv2D_Op`."""

    _nsp = 2
    # the book's attributes, set by forward() and backward()
    param: Array
    input_: Array
    output: Array
    input_grad: Array
    param_grad: Array

    def __init__(self, W: Array) -> None:
        name = type(self).__name__
        nd = self._nsp + 2
        layout = f"(in_channels, out_channels, {nb._KERNEL[self._nsp]})"
        v.array(name, "W", W, nd, layout)   # checks; a subclass view is not kept
        v.kernel_nonempty(name, "W", W.shape, range(2, nd))
        init = _next_init(_ParamOp, self)
        if init is not None:  # a mixin: the framework's class initialises too
            try:  # the book's ParamOperation(param); a plain Operation()
                inspect.signature(init).bind(self, W)
            except (TypeError, ValueError):
                init(self)
            else:
                init(self, W)
        self.param = W

    # The book's Operation.forward and ParamOperation.backward.

    def forward(self, input_: Array, inference: bool = False) -> Array:
        """Keep ``input_``, compute the output, keep it and return it.

        Parameters
        ----------
        input_ : ndarray of shape (N, C_in, H, W), or (N, C_in, L) for Conv1D_Op
            Any real dtype; kept (no copy) for :meth:`backward`.
        inference : bool, optional
            Accepted for the book's ``Operation.forward`` signature; unused.

        Returns
        -------
        ndarray of shape (N, C_out, H, W), or (N, C_out, L)
            The notebook's ``_output(input_, param)``, also kept as
            ``self.output``: float32 when ``input_`` and ``param`` are float32,
            else float64.

        Raises
        ------
        ConvxTypeError
            If ``input_`` is not a NumPy array of a real numeric dtype.
        ConvxValueError
            If ``input_`` has the wrong number of dimensions or a channel count
            other than ``param.shape[0]``.
        """
        self.input_ = input_
        self.output = self._output(inference)
        return self.output

    def backward(self, output_grad: Array) -> Array:
        """Set ``input_grad`` and ``param_grad``; return ``input_grad``.

        Parameters
        ----------
        output_grad : ndarray of the shape of ``self.output``
            The gradient of the loss with respect to the last :meth:`forward`'s
            output.

        Returns
        -------
        ndarray of the shape of ``self.input_``
            ``input_grad``, the notebook's ``_input_grad``.  ``param_grad`` (the
            notebook's ``_param_grad``, the shape of ``param``, summed over the
            batch) is set beside it.

        Raises
        ------
        ConvxValueError
            If :meth:`forward` was not called first, or ``output_grad`` does not
            have the output's shape.
        ConvxTypeError
            If ``output_grad`` is not a NumPy array.
        """
        name = f"{type(self).__name__}.backward"
        if getattr(self, "output", None) is None:
            raise v.ConvxValueError(f"{name}(): call forward() first: there is no output "
                                    f"to take the gradient of")
        _same_shape(name, "output_grad", output_grad, self.output.shape, "the output's")
        self.input_grad = self._input_grad(output_grad)
        self.param_grad = self._param_grad(output_grad)
        return self.input_grad

    # The three hooks, as the book's ParamOperation calls them.  They read
    # ``self.input_`` and ``self.param`` only, so they work whichever class
    # set those (this one or the book's).

    def _output(self, inference: bool = False) -> Array:
        return nb._forward_channels(f"{type(self).__name__}._output", self.input_, self.param,
                                    batched=True, name="input_", nsp=self._nsp)

    def _input_grad(self, output_grad: Array) -> Array:
        return nb._channels_input_grad(f"{type(self).__name__}._input_grad", self.input_,
                                       output_grad, self.param, self._nsp,
                                       ("input_", "output_grad"))

    def _param_grad(self, output_grad: Array) -> Array:
        return nb._channels_param_grad(f"{type(self).__name__}._param_grad", self.input_,
                                       output_grad, self.param, self._nsp,
                                       ("input_", "output_grad"))


def _same_shape(func: str, name: str, a: object, expected: tuple[int, ...], whose: str) -> None:
    if not isinstance(a, np.ndarray):
        raise v.ConvxTypeError(f"{func}(): argument '{name}' must be a numpy.ndarray, "
                               f"got {v._describe(a)}")
    if a.shape != tuple(expected):
        raise v.ConvxValueError(f"{func}(): argument '{name}' must have {whose} shape "
                                f"{tuple(expected)}, got shape {a.shape}")


class Conv2D_Op(_ParamOp):
    """The book's 2-D convolution operation, fast and right.

    Parameters
    ----------
    W : ndarray of shape (C_in, C_out, k_h, k_w)
        The book's layout; any real dtype.  Kept as ``self.param``, the very
        array (no copy): an optimizer that updates ``param`` in place updates
        the operation.

    Raises
    ------
    ConvxTypeError
        If ``W`` is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If ``W`` is not 4-D or has an empty kernel.

    Notes
    -----
    ``forward(input_)`` takes ``(N, C_in, H, W)`` and returns
    ``(N, C_out, H, W)``: the notebook's ``_output(input_, param)``.
    ``backward(output_grad)`` sets ``input_grad`` (the notebook's
    ``_input_grad``) and ``param_grad`` (``_param_grad``) and returns
    ``input_grad``.  Both gradients are the true gradients of the forward
    pass, for any batch and for even kernels (:doc:`/notebook` says what the
    book's vectorised operation got wrong).

    Mixed into the book's ``ParamOperation`` (``class Conv2D_Op(
    convx.layers.Conv2D_Op, ParamOperation)``), the book's ``__init__`` runs
    too, and its ``Layer`` and optimizers use the operation as their own.

    Examples
    --------
    >>> import numpy as np
    >>> from convx.layers import Conv2D_Op
    >>> op = Conv2D_Op(np.ones((1, 2, 3, 3)))
    >>> op.forward(np.ones((4, 1, 5, 5))).shape
    (4, 2, 5, 5)
    >>> op.backward(np.ones((4, 2, 5, 5))).shape, op.param_grad.shape
    ((4, 1, 5, 5), (1, 2, 3, 3))
    """
    _nsp = 2


class Conv1D_Op(_ParamOp):
    """The book's operation in 1-D: :class:`Conv2D_Op` with one spatial axis.

    Parameters
    ----------
    W : ndarray of shape (C_in, C_out, k)
        Kept as ``self.param``, the very array (no copy).

    Raises
    ------
    ConvxTypeError
        If ``W`` is not a NumPy array of a real numeric dtype.
    ConvxValueError
        If ``W`` is not 3-D or has an empty kernel.

    Notes
    -----
    ``forward(input_)`` takes ``(N, C_in, L)`` and returns ``(N, C_out, L)``
    with the notebook's "same" padding (``k // 2`` zeros before,
    ``k - 1 - k // 2`` after); ``backward(output_grad)`` sets ``input_grad``
    and ``param_grad``, as :class:`Conv2D_Op`.

    Examples
    --------
    >>> import numpy as np
    >>> from convx.layers import Conv1D_Op
    >>> Conv1D_Op(np.ones((1, 1, 3))).forward(np.array([[[1., 2., 3., 4.]]]))
    array([[[3., 6., 9., 7.]]])
    """
    _nsp = 1


# --------------------------------------------------------------------------
# Layers in PyTorch's layout
# --------------------------------------------------------------------------

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _rng(func: str, rng: object) -> np.random.Generator:
    if rng is None or _api._is_int(rng):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise v.ConvxTypeError(f"{func}(): argument 'rng' must be None, an int seed or a "
                           f"numpy.random.Generator, got {v._describe(rng)}")


def _positive(func: str, name: str, value: object) -> int:
    if not _api._is_int(value):
        raise v.ConvxTypeError(f"{func}(): argument '{name}' must be an int >= 1, "
                               f"got {v._describe(value)}")
    value = operator.index(value)
    if value < 1:
        raise v.ConvxValueError(f"{func}(): argument '{name}' must be an int >= 1, got {value}")
    return value


def _plain_geometry(value: Any) -> Any:
    """A checked stride, padding or dilation as plain Python values: an int,
    a tuple of ints, or the padding's str."""
    if isinstance(value, str):
        return value
    if _api._is_int(value):
        return int(value)
    return tuple(int(v) for v in value)


class _ConvLayer(Generic[_F]):
    """A convolution layer with ``nsp`` spatial axes; see :class:`Conv2D`."""

    _nsp = 2
    weight: NDArray[_F]
    bias: NDArray[_F] | None
    weight_grad: NDArray[_F] | None
    bias_grad: NDArray[_F] | None
    kernel_size: tuple[int, ...]
    stride: Geometry
    padding: Padding
    dilation: Geometry
    _x: NDArray[_F] | None
    _out_shape: tuple[int, ...]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...],
                 stride: Geometry = 1, padding: Padding = 0, dilation: Geometry = 1,
                 groups: int = 1, bias: bool = True, dtype: DTypeLike | None = np.float32,
                 rng: _Seed = None) -> None:
        func = type(self).__name__
        nsp = self._nsp
        in_channels = _positive(func, "in_channels", in_channels)
        out_channels = _positive(func, "out_channels", out_channels)
        kernel = _api._pair(func, "kernel_size", kernel_size, nsp, 1)
        groups = _positive(func, "groups", groups)
        _api._groups(func, groups, in_channels, out_channels)
        try:
            dtype = np.dtype(np.float32 if dtype is None else dtype)   # None: the default
        except TypeError:
            dtype = None
        if dtype not in _FLOATS:
            raise v.ConvxTypeError(f"{func}(): argument 'dtype' must be float32 or float64, "
                                   f"got {v._describe(dtype)}")
        if not isinstance(bias, (bool, np.bool_)):
            raise v.ConvxTypeError(f"{func}(): argument 'bias' must be True or False, "
                                   f"got {v._describe(bias)}")
        gen = _rng(func, rng)
        # A bad stride, padding or dilation fails here, at construction, with
        # the message conv2d / conv1d would give.
        _api._geometry(func, nsp, kernel, stride, padding, dilation)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = kernel
        # kept as plain ints, a tuple of them or a str: NumPy integers or
        # lists (from a config file) would be checked and planned again at
        # every call (convx._api._plain), 7-8x the time of a small step
        self.stride, self.padding, self.dilation = (
            _plain_geometry(value) for value in (stride, padding, dilation))
        # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both (its
        # kaiming_uniform_ with a = sqrt(5) gives that bound for the weight).
        fan_in = in_channels // groups * math.prod(kernel)
        bound = 1 / math.sqrt(fan_in)
        shape = (out_channels, in_channels // groups) + kernel
        self.weight = gen.uniform(-bound, bound, shape).astype(dtype)
        self.bias = gen.uniform(-bound, bound, out_channels).astype(dtype) if bias else None
        self.weight_grad = None
        self.bias_grad = None
        self._x = None

    @property
    def dtype(self) -> np.dtype[_F]:
        return self.weight.dtype

    def _conv_args(self) -> tuple[Geometry, Padding, Geometry, int, Literal["auto"]]:
        return self.stride, self.padding, self.dilation, self.groups, "auto"

    def forward(self, x: NDArray[_F]) -> NDArray[_F]:
        """The layer's output for a batch, or for one unbatched example.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W) or (C_in, H, W); (N, C_in, L) or (C_in, L) for Conv1D
            Of the layer's dtype (``self.weight.dtype``).  Kept (no copy) for
            :meth:`backward`.

        Returns
        -------
        ndarray of shape (N, C_out, H_out, W_out), or without the batch axis
            ``conv2d(x, weight, bias, stride, padding, dilation, groups)`` (or
            ``conv1d``), in the layer's dtype.

        Raises
        ------
        ConvxTypeError
            If ``x`` is not a NumPy array of the layer's dtype.
        ConvxValueError
            If ``x`` has the wrong number of dimensions or channels, or is too
            small for the kernel.
        """
        func = f"{type(self).__name__}.forward"
        nsp = self._nsp
        self._check_parameters(func)
        if not isinstance(x, np.ndarray) or x.dtype.type is not self.weight.dtype.type:
            raise v.ConvxTypeError(
                f"{func}(): argument 'x' must be a numpy.ndarray of the layer's dtype "
                f"{self.weight.dtype}, got {v._describe(x)}; convert it with "
                f"x.astype(np.{self.weight.dtype})")
        if x.ndim not in (nsp + 1, nsp + 2) or x.shape[-1 - nsp] != self.in_channels:
            size = "length" if nsp == 1 else "height, width"
            raise v.ConvxValueError(
                f"{func}(): argument 'x' must have shape (batch, {self.in_channels}, {size}) "
                f"or ({self.in_channels}, {size}), for the layer's {self.in_channels} input "
                f"channels, got shape {x.shape}")
        out = _api._forward(func, nsp, x, self.weight, self.bias, *self._conv_args())
        self._x, self._out_shape, self._weight_shape = x, out.shape, self.weight.shape
        return out

    def _check_parameters(self, func: str, backward: bool = False) -> None:
        """The layer's weight and bias, which the user may have replaced, as
        its calls need them: one float dtype for both (an update by a
        float64 learning rate makes a float32 weight float64), and with
        ``backward`` the weight's shape that forward() ran with."""
        w, b = self.weight, self.bias
        if not isinstance(w, np.ndarray) or w.dtype not in _FLOATS:
            raise v.ConvxTypeError(f"{func}(): the layer's weight must be a numpy.ndarray of "
                                   f"float32 or float64, got {v._describe(w)}")
        if b is not None and (not isinstance(b, np.ndarray) or b.dtype != w.dtype):
            raise v.ConvxTypeError(
                f"{func}(): the layer's bias must have its weight's dtype {w.dtype}, got "
                f"{v._describe(b)}; an update in another dtype changes a parameter's (a float64 "
                f"learning rate times a float32 gradient is float64): cast it back, e.g. "
                f"layer.bias = layer.bias.astype(np.{w.dtype})")
        if backward and w.shape != self._weight_shape:
            raise v.ConvxValueError(
                f"{func}(): the layer's weight has shape {w.shape}, but forward() ran with a "
                f"weight of shape {self._weight_shape}; call forward() again")

    def __getstate__(self) -> dict[str, Any]:
        """What pickle and copy keep: the layer without its last input (kept
        for backward(), it would be saved with the weights: a 140 MiB pickle
        of a 41 KB model after one forward pass).  A copy takes backward()
        only after a forward() of its own."""
        state = dict(self.__dict__)
        state["_x"] = None
        return state

    __call__ = forward

    @overload
    def backward(self, grad_out: NDArray[_F], input_grad: Literal[True] = ...) -> NDArray[_F]: ...

    @overload
    def backward(self, grad_out: NDArray[_F], input_grad: Literal[False]) -> None: ...

    @overload
    def backward(self, grad_out: NDArray[_F], input_grad: bool = ...) -> NDArray[_F] | None: ...

    def backward(self, grad_out: NDArray[_F], input_grad: bool = True) -> NDArray[_F] | None:
        """Set ``weight_grad`` and ``bias_grad`` from dL/d(output); return dL/dx.

        Parameters
        ----------
        grad_out : ndarray of the shape of the last output
            Of the layer's dtype.
        input_grad : bool, optional
            ``False`` skips dL/dx and returns None: a network's first layer needs
            no gradient for its input (PyTorch skips it too).

        Returns
        -------
        ndarray of the shape of the last input, or None
            dL/dx.  ``weight_grad`` (the shape of ``weight``) and ``bias_grad``
            (``(out_channels,)``, or None without a bias) are overwritten, not
            accumulated.

        Raises
        ------
        ConvxValueError
            If :meth:`forward` was not called first, or ``grad_out`` does not
            have the last output's shape.
        ConvxTypeError
            If ``grad_out`` is not a NumPy array of the layer's dtype.
        """
        func = f"{type(self).__name__}.backward"
        nsp = self._nsp
        if self._x is None:
            raise v.ConvxValueError(f"{func}(): call forward() first: there is no input to "
                                    f"take the gradient at")
        self._check_parameters(func, backward=True)
        _same_shape(func, "grad_out", grad_out, self._out_shape, "the last output's")
        if grad_out.dtype.type is not self.weight.dtype.type:
            raise v.ConvxTypeError(
                f"{func}(): argument 'grad_out' must have the layer's dtype "
                f"{self.weight.dtype}, got dtype {grad_out.dtype}")
        x, g = self._x, grad_out
        unbatched = x.ndim == nsp + 1
        if unbatched:
            x, g = x[None], g[None]
        args = self._conv_args()
        dx = _api._grad(func, nsp, "input", x.shape, self.weight, g, *args) if input_grad \
            else None
        self.weight_grad = _api._grad(func, nsp, "weight", self.weight.shape, x, g, *args)
        self.bias_grad = None if self.bias is None else _api._bias_grad(func, nsp, g)
        return dx[0] if unbatched and dx is not None else dx

    def parameters(self) -> list[tuple[NDArray[_F], NDArray[_F] | None]]:
        """The arrays an optimizer updates, each with its gradient.

        Returns
        -------
        list of (ndarray, ndarray or None)
            ``[(weight, weight_grad), (bias, bias_grad)]``, without the bias when
            there is none.  The parameters are the layer's own arrays, to be
            updated in place; the gradients are those of the last
            :meth:`backward` (None before the first).

        Examples
        --------
        >>> import numpy as np
        >>> from convx.layers import Conv2D
        >>> layer = Conv2D(1, 2, 3, rng=0)
        >>> _ = layer.backward(np.ones_like(layer.forward(np.ones((1, 1, 5, 5), np.float32))))
        >>> for param, grad in layer.parameters():
        ...     param -= 0.1 * grad
        >>> [p.shape for p, g in layer.parameters()]
        [(2, 1, 3, 3), (2,)]
        """
        pairs = [(self.weight, self.weight_grad)]
        if self.bias is not None:
            pairs.append((self.bias, self.bias_grad))
        return pairs

    def __repr__(self) -> str:
        size = self.kernel_size if self._nsp == 2 else self.kernel_size[0]
        extra = "".join(f", {name}={value!r}" for name, value, default in (
            ("stride", self.stride, 1), ("padding", self.padding, 0),
            ("dilation", self.dilation, 1), ("groups", self.groups, 1)) if value != default)
        if self.bias is None:
            extra += ", bias=False"
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={size}{extra}, dtype={self.weight.dtype})")


class Conv2D(_ConvLayer[_F]):
    """A 2-D convolution layer for NumPy networks, in PyTorch's layout.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, dilation, groups
        As for :func:`convx.conv2d` (``padding`` may be 'same' or 'valid').
    bias : bool
    dtype : float32 (default) or float64
        The layer's parameters; inputs must have this dtype.
    rng : None, int or numpy.random.Generator
        Draws the initial weights: a seed reproduces them.

    Attributes
    ----------
    weight : ndarray (out_channels, in_channels // groups, kH, kW)
    bias : ndarray (out_channels,), or None
        Drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), ``fan_in =
        in_channels // groups * kH * kW``, as PyTorch's ``nn.Conv2d`` does.
    weight_grad, bias_grad : ndarray, or None before the first backward

    Raises
    ------
    ConvxTypeError
        If an argument has the wrong type (a float kernel size, a dtype other
        than float32 and float64, ...).
    ConvxValueError
        If an argument has a bad value (a size below 1, ``groups`` not dividing
        the channels, ``padding='same'`` with a stride, ...).

    Notes
    -----
    :meth:`forward` keeps its input (no copy) for :meth:`backward`, until the
    next forward; pickle and copy leave it out.  A layer holds that one
    forward's state, so threads that train at once each need their own layer.

    Examples
    --------
    >>> import numpy as np
    >>> from convx.layers import Conv2D
    >>> layer = Conv2D(3, 8, 3, padding=1, rng=0)
    >>> y = layer.forward(np.ones((2, 3, 16, 16), np.float32))
    >>> dx = layer.backward(np.ones_like(y))
    >>> y.shape, dx.shape, layer.weight_grad.shape, layer.bias_grad.shape
    ((2, 8, 16, 16), (2, 3, 16, 16), (8, 3, 3, 3), (8,))
    """
    _nsp = 2

    if TYPE_CHECKING:  # the layer's dtype from its ``dtype`` argument, for type checkers
        @overload
        def __init__(
            self: Conv2D[np.float32], in_channels: int, out_channels: int,
            kernel_size: int | tuple[int, ...], stride: Geometry = ..., padding: Padding = ...,
            dilation: Geometry = ..., groups: int = ..., bias: bool = ...,
            dtype: _Float32Like = ..., rng: _Seed = ...,
        ) -> None: ...

        @overload
        def __init__(
            self: Conv2D[np.float64], in_channels: int, out_channels: int,
            kernel_size: int | tuple[int, ...], stride: Geometry = ..., padding: Padding = ...,
            dilation: Geometry = ..., groups: int = ..., bias: bool = ...,
            *, dtype: _Float64Like, rng: _Seed = ...,
        ) -> None: ...

        @overload
        def __init__(
            self: Conv2D[Any], in_channels: int, out_channels: int,
            kernel_size: int | tuple[int, ...], stride: Geometry = ..., padding: Padding = ...,
            dilation: Geometry = ..., groups: int = ..., bias: bool = ...,
            dtype: DTypeLike = ..., rng: _Seed = ...,
        ) -> None: ...

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...


class Conv1D(_ConvLayer[_F]):
    """A 1-D convolution layer for NumPy networks, in PyTorch's layout.

    :class:`Conv2D` with one spatial axis: inputs ``(N, C_in, L)`` or
    ``(C_in, L)``, ``weight`` of shape ``(out_channels, in_channels // groups,
    k)``, as PyTorch's ``nn.Conv1d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int,)
    stride, padding, dilation, groups
        As for :func:`convx.conv1d` (``padding`` may be 'same' or 'valid').
    bias : bool
    dtype : float32 (default) or float64
        The layer's parameters; inputs must have this dtype.
    rng : None, int or numpy.random.Generator
        Draws the initial weights: a seed reproduces them.

    Raises
    ------
    ConvxTypeError
        If an argument has the wrong type (a float kernel size, a dtype other
        than float32 and float64, ...).
    ConvxValueError
        If an argument has a bad value (a size below 1, ``groups`` not dividing
        the channels, ``padding='same'`` with a stride, ...).

    Notes
    -----
    :meth:`forward` keeps its input (no copy) for :meth:`backward`, until the
    next forward; pickle and copy leave it out.  A layer holds that one
    forward's state, so threads that train at once each need their own layer.

    Examples
    --------
    >>> import numpy as np
    >>> from convx.layers import Conv1D
    >>> layer = Conv1D(1, 4, 5, stride=2, rng=0)
    >>> layer.forward(np.ones((2, 1, 40), np.float32)).shape
    (2, 4, 18)
    """
    _nsp = 1

    if TYPE_CHECKING:  # the layer's dtype from its ``dtype`` argument, for type checkers
        @overload
        def __init__(
            self: Conv1D[np.float32], in_channels: int, out_channels: int,
            kernel_size: int | tuple[int, ...], stride: Geometry = ..., padding: Padding = ...,
            dilation: Geometry = ..., groups: int = ..., bias: bool = ...,
            dtype: _Float32Like = ..., rng: _Seed = ...,
        ) -> None: ...

        @overload
        def __init__(
            self: Conv1D[np.float64], in_channels: int, out_channels: int,
            kernel_size: int | tuple[int, ...], stride: Geometry = ..., padding: Padding = ...,
            dilation: Geometry = ..., groups: int = ..., bias: bool = ...,
            *, dtype: _Float64Like, rng: _Seed = ...,
        ) -> None: ...

        @overload
        def __init__(
            self: Conv1D[Any], in_channels: int, out_channels: int,
            kernel_size: int | tuple[int, ...], stride: Geometry = ..., padding: Padding = ...,
            dilation: Geometry = ..., groups: int = ..., bias: bool = ...,
            dtype: DTypeLike = ..., rng: _Seed = ...,
        ) -> None: ...

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...
