"""Type aliases of convx's annotations, for type checkers.

convx imports this module only under ``typing.TYPE_CHECKING`` (its other
modules use ``from __future__ import annotations``), so it costs nothing at
run time; a user may import it to annotate code of their own::

    from convx._typing import Padding
"""
from __future__ import annotations

from typing import Any, Literal, TypeAlias

from numpy.typing import NDArray

__all__ = ["Array", "Geometry", "Method", "Padding", "Shape"]

# stride and dilation: an int, or a tuple of one int per spatial axis
Geometry: TypeAlias = int | tuple[int, ...]
# padding: the same, or one of the two names
Padding: TypeAlias = int | tuple[int, ...] | Literal["valid", "same"]
# the algorithm (convx._engine.METHODS)
Method: TypeAlias = Literal["auto", "direct", "gemm", "fft", "winograd"]
# input_shape and weight_shape of the gradients (a list is taken too)
Shape: TypeAlias = tuple[int, ...] | list[int]

# an array of any dtype convx takes (an integer, float16, float32 or float64);
# the functions' overloads say which dtypes come back for which
Array: TypeAlias = NDArray[Any]

