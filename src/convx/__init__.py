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

__version__ = "0.1.0"

# convx's threads sleep between calls instead of spinning.  The OpenMP
# runtime reads its wait policy once: libgomp as it loads (with convx._core,
# below), LLVM's libomp (macOS wheels, clang builds) at its first call, which
# _core makes as it loads.  libgomp's default spins each thread for up to
# milliseconds after a parallel region, libomp's for 200 ms, which in a
# training loop takes the CPUs from NumPy's BLAS between convx's calls (2.7x
# slower steps measured, docs/reliability.md).  A policy the user set is
# kept, and the variable is removed again once the runtime has read it, so
# that child processes and other libraries see the environment as it was.
# An OMP_NUM_THREADS that is not a list of numbers is hidden from the
# runtime while it starts (convx reads the number it starts with itself, or
# ignores it: convx._threads): libomp 14 aborts the process on "abc",
# libgomp warns.
# The CPUs this process may use are read here, before the runtime loads:
# under OMP_PROC_BIND or OMP_PLACES libgomp binds the loading thread to its
# first place as it loads, and the process's affinity read after that is
# one CPU (convx._threads._cpus).
_CPUS = len(_os.sched_getaffinity(0)) if hasattr(_os, "sched_getaffinity") else 0
_PASSIVE = not any(k in _os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                              "KMP_BLOCKTIME"))
_NUM_THREADS = _os.environ.get("OMP_NUM_THREADS")
_HIDDEN = _NUM_THREADS is not None and not all(
    f.strip().isdigit() for f in _NUM_THREADS.split(","))
if _PASSIVE:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
if _HIDDEN:
    del _os.environ["OMP_NUM_THREADS"]
try:
    from . import _core  # noqa: F401
finally:
    if _PASSIVE:
        del _os.environ["OMP_WAIT_POLICY"]
    if _HIDDEN:
        _os.environ["OMP_NUM_THREADS"] = _NUM_THREADS or ""

from . import layers as layers  # convx.layers, not in __all__
from ._api import (
    conv1d,
    conv1d_bias_grad,
    conv1d_input_grad,
    conv1d_weight_grad,
    conv2d,
    conv2d_bias_grad,
    conv2d_input_grad,
    conv2d_weight_grad,
)
from ._notebook import *
from ._threads import get_num_threads, set_num_threads, show_config
from ._validate import ConvxMemoryError, ConvxTypeError, ConvxValueError

# The notebook's names (_notebook.__all__), the public API's (_api.__all__),
# the errors and the thread settings, spelt out so that type checkers see
# what ``from convx import *`` exports.
__all__ = [
    "ConvxMemoryError", "ConvxTypeError", "ConvxValueError", "_compute_grads_2d",
    "_compute_grads_obs", "_compute_grads_obs_2d", "_compute_output_2d", "_compute_output_2d_sum",
    "_compute_output_obs", "_compute_output_obs_2d", "_compute_output_sum", "_input_grad",
    "_input_grad_1d", "_output", "_pad_1d", "_pad_1d_batch", "_pad_2d", "_pad_2d_channel",
    "_pad_2d_obs", "_pad_conv_input", "_param_grad", "_param_grad_1d", "_param_grad_2d",
    "assert_dim", "assert_same_shape", "conv1d", "conv1d_bias_grad", "conv1d_input_grad",
    "conv1d_weight_grad", "conv2d", "conv2d_bias_grad", "conv2d_input_grad", "conv2d_weight_grad",
    "conv_1d", "conv_1d_batch", "conv_1d_batch_sum", "conv_1d_sum", "get_num_threads",
    "input_grad_1d_batch", "param_grad_1d_batch", "set_num_threads", "show_config",
]
