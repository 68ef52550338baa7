"""convx: fast convolution for NumPy.

``from convx import *`` brings the 28 functions of the chapter-5 notebook of
*Deep Learning from Scratch* (underscore names included), computed by a
Cython core.  See docs/notebook.md for the switch and docs/design.md for the
layers.
"""
from ._notebook import *  # noqa: F401,F403
from ._notebook import __all__ as _notebook_all
from ._validate import ConvxTypeError, ConvxValueError

__version__ = "0.1.0"

__all__ = list(_notebook_all)
