"""How many threads convx uses, and how that follows the process it runs in.

convx runs its kernels on OpenMP threads, sharing out the images of a batch,
and blocks of one image when the images are fewer than the threads
(``_core``).  It calls no BLAS: the matrix products are its own
(``_gemm.h``), so it never touches another library's thread settings.

The thread count is one number for the whole process, kept in ``_core``
(``_runtime.h``) where threadpoolctl reaches it too:

* ``set_num_threads(n)``, an int from 1 to the CPUs the process may use;
* by default ``OMP_NUM_THREADS`` if set (clamped to those CPUs), else the
  CPUs, read once at import;
* ``threadpoolctl.threadpool_limits(n)`` sets it like ``set_num_threads`` for
  the duration of its block, then puts the count it found back;
* in a child of ``fork()``, one thread whatever the setting: libgomp's
  threads do not exist in the child, and its next parallel region would wait
  for them forever.

One Python thread may use fewer for a while: under :func:`limited(n)
<limited>` its calls run on at most ``n`` threads, whatever the global
count, and other Python threads are unaffected.  convx.dask runs each task
under it, since a scheduler that runs one task per core has already shared
out the cores.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

# (what convx/__init__.py read before it loaded _core: here, not as each
# function runs, which fails once the interpreter has begun to shut down)
from . import _CPUS, _PASSIVE, __version__, _core
from ._validate import ConvxTypeError, ConvxValueError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["get_num_threads", "set_num_threads", "show_config"]

# Below this many multiply-adds (about 0.1 ms of work) a call runs on one
# thread: waking a team costs more than it saves on an idle machine, and on a
# busy one a thread that is not scheduled holds the whole team up for a
# time slice.
_PARALLEL_MIN_MACS = 1 << 22


def _cpus() -> int:
    """The CPUs this process may run on, as convx/__init__.py found them
    before the OpenMP runtime loaded (which, told to bind threads, binds the
    thread that loads it to one CPU); os.cpu_count() where the system does
    not say."""
    return _CPUS if _CPUS >= 1 else max(1, os.cpu_count() or 1)


def _env_threads(name: str) -> int:
    """The first number of an OpenMP thread variable (``"4"``, ``"4,2"``), or 0."""
    try:
        return int(os.environ.get(name, "").split(",")[0])
    except ValueError:
        return 0


def _env_stack_size() -> int:
    """OMP_STACKSIZE or GOMP_STACKSIZE in bytes, as libgomp reads them
    (a number with an optional B, K, M or G; K when there is none), or 0
    where the first one set is not such a number (libgomp warns and ignores
    it: a sign, a fraction, a size past 2**63 bytes)."""
    for name in ("OMP_STACKSIZE", "GOMP_STACKSIZE"):
        text = os.environ.get(name, "").strip().upper()
        if not text:
            continue
        unit = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1])
        digits = text[:-1].rstrip() if unit else text
        if not (digits.isascii() and digits.isdigit()):
            return 0
        size = int(digits) * (unit or 1 << 10)
        return size if size < 1 << 63 else 0
    return 0


def _configure() -> tuple[int, int]:
    """The default thread count and the most: OMP_NUM_THREADS if set, else the
    CPUs, and never more than the CPUs (or OMP_THREAD_LIMIT): libgomp ends the
    process when it cannot create a thread, so convx asks for no more than it
    can have.

    Read once, for the whole process: OpenMP's own omp_get_max_threads() is
    per thread (another library's omp_set_num_threads changes it in one
    Python thread only), and a count that differed between Python threads
    would make weight gradients differ in their last bits.
    """
    cpus = _cpus()
    limit = _env_threads("OMP_THREAD_LIMIT")
    if limit >= 1:
        cpus = min(cpus, limit)
    n = _env_threads("OMP_NUM_THREADS")
    default = min(n, cpus) if n >= 1 else cpus
    _core.configure_threads(default, cpus, _env_stack_size())
    return default, cpus


_DEFAULT_THREADS, _MAX_THREADS = _configure()


# Per Python thread: the innermost ``limited`` block's _Limit (None outside
# one), and ``last``, the count plan() last returned in this thread.
_local = threading.local()


class _Limit:
    """A ``limited(n)`` block: at most ``n`` threads per call, and ``most``,
    the highest count plan() returned in the block (0: plan() was not asked,
    every call ran on the calling thread alone)."""
    __slots__ = ("most", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.most = 0


@contextlib.contextmanager
def limited(n: int) -> Iterator[_Limit]:
    """In this Python thread, for the length of the block, run each call on
    at most ``n`` threads (``n`` >= 1).  Yields the block's record: its
    ``most`` is the highest count plan() returned in the block.

    The global count (:func:`set_num_threads`) is not touched, other Python
    threads are not affected, and blocks nest (the inner one can only lower
    the limit)."""
    outer = getattr(_local, "limit", None)
    record = _Limit(n if outer is None else min(n, outer.n))
    _local.limit = record
    try:
        yield record
    finally:
        _local.limit = outer
        if outer is not None and record.most > outer.most:
            outer.most = record.most


def get_num_threads() -> int:
    """The number of threads convx uses for one call.

    ``set_num_threads(n)`` sets it (and ``threadpoolctl.threadpool_limits``,
    for the length of its block); by default it is ``OMP_NUM_THREADS`` if set,
    else the number of CPUs this process may run on, the same in every Python
    thread.  In a child of ``fork()`` it is 1 (docs/reliability.md).  Without
    OpenMP (see :func:`show_config`) calls run on one thread whatever it says.
    Inside a task of :mod:`convx.dask` it is at most that task's limit (1 by
    default; the dask config key ``convx.threads-per-task``).

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> import convx
    >>> convx.get_num_threads() >= 1
    True
    """
    limit = getattr(_local, "limit", None)
    n = _core.get_threads()
    return n if limit is None else min(n, limit.n)


def set_num_threads(n: int | np.integer[Any] | None) -> None:
    """Use ``n`` threads per call from now on, in every Python thread.

    The forward pass and the input gradient give the same bits for every
    thread count; the weight gradient, which adds one partial sum per thread,
    the same bits for the same count.

    Parameters
    ----------
    n : int or None
        From 1 to the number of CPUs this process may use
        (``len(os.sched_getaffinity(0))``, or ``os.cpu_count()`` where that
        does not exist); ``None`` goes back to the default
        (:func:`get_num_threads`).

    Returns
    -------
    None

    Raises
    ------
    ConvxTypeError
        If ``n`` is neither an int nor None.
    ConvxValueError
        If ``n`` is below 1 or above the CPUs this process may use.

    Examples
    --------
    >>> import convx
    >>> convx.set_num_threads(1)
    >>> convx.get_num_threads()
    1
    >>> convx.set_num_threads(None)      # back to the default
    """
    if n is not None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)):
            raise ConvxTypeError(
                f"set_num_threads(): argument 'n' must be an int >= 1 or None, got {n!r}")
        if n < 1:
            raise ConvxValueError(
                f"set_num_threads(): argument 'n' must be an int >= 1 or None, got {n!r}")
        cpus = _cpus()
        if n > cpus:
            raise ConvxValueError(
                f"set_num_threads(): argument 'n' must be at most {cpus}, the CPUs this "
                f"process may use, got {int(n)}")
    _core.set_user_threads(0 if n is None else int(n))


def plan(items: int, macs: int, minimum: int | None = None) -> int:
    """The threads for a call of ``macs`` multiply-adds (or other units of
    work, of which a parallel call needs ``minimum``; default
    _PARALLEL_MIN_MACS) split into ``items`` pieces: one for a small call,
    else as many as :func:`get_num_threads` allows and the pieces can use.

    The count is kept in ``_local.last``, and as the ``most`` of an enclosing
    :func:`limited` block, so a caller can read what convx used."""
    if macs < (_PARALLEL_MIN_MACS if minimum is None else minimum) \
            or not _core.openmp_enabled():
        threads = 1
    else:
        threads = max(1, min(_core.get_threads(), items))
    limit = getattr(_local, "limit", None)
    if limit is not None:
        threads = min(threads, limit.n)
        limit.most = max(limit.most, threads)
    _local.last = threads
    return threads


# --------------------------------------------------------------------------
# threadpoolctl
# --------------------------------------------------------------------------

def _register_threadpoolctl() -> str:
    """Register a threadpoolctl controller for convx's thread count; returns
    what show_config says about it."""
    try:
        import threadpoolctl
    except ImportError:
        return "not installed"
    base = getattr(threadpoolctl, "LibController", None)
    register = getattr(threadpoolctl, "register", None)
    if base is None or register is None:
        return (f"{threadpoolctl.__version__} has no controller registry (3.5 or later has): "
                "convx's threads follow set_num_threads only")
    if any(getattr(c, "internal_api", None) == "convx"
           for c in getattr(threadpoolctl, "_ALL_CONTROLLERS", ())):
        return f"{threadpoolctl.__version__}, convx's pool registered"

    class ConvxController(threadpoolctl.LibController):
        """convx's thread count, found in convx._core by its exported symbols."""

        user_api = "openmp"
        internal_api = "convx"
        filename_prefixes = ("_core",)
        check_symbols = ("convx_get_num_threads", "convx_set_num_threads")

        def get_num_threads(self) -> int:
            n: int = self.dynlib.convx_get_num_threads()
            return n

        def set_num_threads(self, num_threads: int) -> None:
            self.dynlib.convx_set_num_threads(int(num_threads))

        def get_version(self) -> str:
            return __version__

    register(ConvxController)
    return f"{threadpoolctl.__version__}, convx's pool registered"


_THREADPOOLCTL = _register_threadpoolctl()

_ISA_NAMES = {4: "x86-64-v4 (AVX-512)", 3: "x86-64-v3 (AVX2, FMA)", 1: "the compiler's baseline"}


def show_config() -> None:
    """Print how this convx was built and how it runs threads.

    The version, whether OpenMP is compiled in, the thread count and where it
    comes from, how idle threads wait, the instruction set of the SIMD kernels
    chosen for this CPU, which of the engine's per-core cost constants it
    uses ('default'; 'zen5', 'zen4' on AMD Zen 5, Zen 4), and whether threadpoolctl
    can see convx's threads.

    Returns
    -------
    None

    Examples
    --------
    >>> import convx
    >>> convx.show_config()
    convx ...
      OpenMP: ...
      threads: ...
      idle threads: ...
      SIMD kernels: ...
      cost model: ...
      matrix product: convx's own (no BLAS)
      threadpoolctl: ...
    """
    print(f"convx {__version__}")
    print("  OpenMP:        " + ("yes" if _core.openmp_enabled()
                                 else "no (compiled without it: calls run on one thread)"))
    # A count set to the default's value reads "default": threadpoolctl puts
    # back the count it found through the setter, as if set_num_threads had
    # been called with it.
    setting = _core.user_threads()
    how = ("one thread in a child of fork()" if _core.forked()
           else "set_num_threads" if setting and setting != _DEFAULT_THREADS else "default")
    if _core.openmp_enabled():
        print(f"  threads:       {get_num_threads()} ({how}; at most {_MAX_THREADS})")
        print("  idle threads:  " + (
            "sleep (OMP_WAIT_POLICY=passive, convx's default)" if _PASSIVE
            else "as OMP_WAIT_POLICY / GOMP_SPINCOUNT / KMP_BLOCKTIME say (set by you)"))
    else:
        print(f"  threads:       1 (no OpenMP; get_num_threads() says {get_num_threads()})")
        print("  idle threads:  none")
    kernels = ("portable C loops (no GCC vector extensions)" if _core.portable()
               else _ISA_NAMES.get(_core.isa(), str(_core.isa())))
    print(f"  SIMD kernels:  {kernels}")
    from . import _engine
    vendor, family = _core.cpu_id()
    print(f"  cost model:    {_engine._tuning()} (the engine's constants for this CPU: "
          f"{vendor or 'no cpuid'}, family {family})")
    print("  matrix product: convx's own (no BLAS)")
    print(f"  threadpoolctl: {_THREADPOOLCTL}")
