"""convx: fast convolution for NumPy.

Two faces over one Cython core:

* the public API, with ``torch.nn.functional`` semantics: :func:`conv1d`,
  :func:`conv2d` and their gradients :func:`conv1d_input_grad`,
  :func:`conv2d_input_grad`, :func:`conv1d_weight_grad`,
  :func:`conv2d_weight_grad`, :func:`conv1d_bias_grad`,
  :func:`conv2d_bias_grad`;
* the 28 functions of the chapter-5 notebook of *Deep Learning from Scratch*
  (``from convx import *`` brings them, underscore names included), see
  docs/notebook.md.

Around them, as thin: :mod:`convx.layers`, the book's ``Conv2D_Op`` /
``Conv1D_Op`` and layers (``Conv2D``, ``Conv1D``) to train a network with.
"""
import os as _os

# convx's threads sleep between calls instead of spinning.  libgomp reads its
# wait policy once, when it loads (with convx._core, below); its default spins
# each thread for up to milliseconds after a parallel region, which in a
# training loop takes the CPUs from NumPy's BLAS between convx's calls (2.7x
# slower steps measured, docs/reliability.md).  A policy the user set is
# kept, and the variable is removed again once libgomp has read it, so that
# child processes and other libraries see the environment as it was.
_PASSIVE = "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ
if _PASSIVE:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
try:
    from . import _core  # noqa: F401
finally:
    if _PASSIVE:
        del _os.environ["OMP_WAIT_POLICY"]

from ._api import (conv1d, conv1d_bias_grad, conv1d_input_grad, conv1d_weight_grad,  # noqa: F401
                   conv2d, conv2d_bias_grad, conv2d_input_grad, conv2d_weight_grad)
from ._api import __all__ as _api_all
from ._notebook import *  # noqa: F401,F403
from ._notebook import __all__ as _notebook_all
from ._threads import get_num_threads, set_num_threads, show_config  # noqa: F401
from ._validate import ConvxMemoryError, ConvxTypeError, ConvxValueError  # noqa: F401
from . import layers  # noqa: F401,E402  (convx.layers, not in __all__)

__version__ = "0.1.0"

__all__ = list(_notebook_all) + list(_api_all) + [
    "ConvxMemoryError", "ConvxTypeError", "ConvxValueError", "get_num_threads", "set_num_threads",
    "show_config"]
