"""How many threads convx uses, and keeping its threads and BLAS's apart.

convx parallelises over the images of a batch with OpenMP, one image at a time
per thread, with BLAS limited to one thread meanwhile; a call with a single
image runs serially and lets BLAS use the threads.  Either way one pool of
threads works at a time, never both: nested pools oversubscribe the cores (a
throwaway prototype measured 7-27x slowdowns).

BLAS's thread count is process-wide in SciPy's OpenBLAS (a pthreads build,
where even ``openblas_set_num_threads_local`` changes it for every thread), so
it is limited for the duration of a call, reference-counted across concurrent
calls: the first call in saves it, the last one out restores it.  Where
SciPy's BLAS is not an OpenBLAS convx can find, convx never runs BLAS inside
its own threads.
"""
import ctypes
import os
import threading

import numpy as np
import scipy

from . import _core
from ._validate import ConvxTypeError, ConvxValueError

__all__ = ["get_num_threads", "set_num_threads", "show_config"]

# Below this many multiply-adds (about 0.1 ms of work) a call runs on one
# thread: waking a team costs more than it saves on an idle machine, and on a
# busy one a thread that is not scheduled holds the whole team up for a
# time slice.  OpenBLAS runs products this small on one thread too.
_PARALLEL_MIN_MACS = 1 << 22

_user_threads = None
_lock = threading.Lock()
_active = 0       # calls inside a BLAS limit right now
_saved = None     # BLAS's own thread count, restored when the last call leaves


def _find_openblas():
    """(path, set_num_threads, get_num_threads) of the OpenBLAS SciPy loaded, or Nones."""
    scipy_root = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line and "openblas" in line}
    except OSError:
        return None, None, None
    for path in sorted(paths):
        if not (path.startswith(scipy_root) and "scipy" in os.path.basename(os.path.dirname(path))):
            continue
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            try:
                setter = getattr(lib, prefix + "_set_num_threads")
                getter = getattr(lib, prefix + "_get_num_threads")
            except AttributeError:
                continue
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            return path, setter, getter
    return None, None, None


_blas_path, _blas_set, _blas_get = _find_openblas()


def _default_threads():
    """OMP_NUM_THREADS if set, else the CPUs this process may run on.

    Read once, for the whole process: OpenMP's own omp_get_max_threads() is
    per thread (another library's omp_set_num_threads changes it in one
    Python thread only), and a count that differed between Python threads
    would make results differ in their last bits.
    """
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        n = 0
    if n < 1:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


_DEFAULT_THREADS = _default_threads()


def get_num_threads():
    """The number of threads convx uses for one call.

    ``set_num_threads(n)`` sets it; by default it is ``OMP_NUM_THREADS`` if
    set, else the number of CPUs this process may run on, the same in every
    Python thread.  Without OpenMP (see :func:`show_config`) batches run on one
    thread whatever it says.
    """
    return _DEFAULT_THREADS if _user_threads is None else _user_threads


def set_num_threads(n):
    """Use ``n`` threads per call from now on, in every Python thread.

    ``None`` goes back to the default (:func:`get_num_threads`).  Calls with
    the same number of threads give bit-identical results; a different number
    can change the weight gradient in its last bits (its per-thread sums are
    added in another order).
    """
    global _user_threads
    if n is not None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)):
            raise ConvxTypeError(
                f"set_num_threads(): argument 'n' must be an int >= 1 or None, got {n!r}")
        if n < 1:
            raise ConvxValueError(
                f"set_num_threads(): argument 'n' must be an int >= 1 or None, got {n!r}")
        n = int(n)
    _user_threads = n


def plan(n_images, macs, blas=True):
    """``(threads, blas_threads)`` for one call of ``macs`` multiply-adds.

    ``threads`` OpenMP threads share the images; ``blas_threads`` is the BLAS
    limit to hold during the call, or None to leave BLAS as it is.  A kernel
    that calls no BLAS (``blas=False``) only needs OpenMP.
    """
    if macs < _PARALLEL_MIN_MACS:
        return 1, None
    nt = get_num_threads()
    omp = nt > 1 and n_images >= 2 and _core.openmp_enabled()
    if not blas:
        return (min(nt, n_images) if omp else 1), None
    if _blas_set is None:
        return 1, None
    if omp:
        return min(nt, n_images), 1
    return 1, nt


def run(blas_threads, kernel, *args):
    """``kernel(*args)`` with BLAS limited to ``blas_threads`` threads (None: as it is)."""
    global _active, _saved
    if blas_threads is None or _blas_set is None:
        return kernel(*args)
    with _lock:
        if _active == 0:
            _saved = _blas_get()
            _blas_set(blas_threads)
        _active += 1
    try:
        return kernel(*args)
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _blas_set(_saved)


def show_config():
    """Print how this convx was built and how it runs threads."""
    from . import __version__
    print(f"convx {__version__}")
    print("  OpenMP:   " + ("yes" if _core.openmp_enabled()
                            else "no (compiled without it: batches run on one thread)"))
    print(f"  threads:  {get_num_threads()}"
          + (" (set_num_threads)" if _user_threads is not None else " (default)"))
    print(f"  BLAS:     scipy.linalg.cython_blas, SciPy {scipy.__version__}")
    if _blas_path:
        print(f"            OpenBLAS at {_blas_path}, limited during calls")
    else:
        print("            not an OpenBLAS convx can limit: convx runs no threads of its own")
