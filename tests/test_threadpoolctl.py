"""convx's threads follow threadpoolctl, the scientific Python ecosystem's way
to limit every native thread pool (scikit-learn's, NumPy's BLAS...).

convx registers a controller (convx._threads): threadpool_info() lists its
pool, and threadpool_limits(n) sets convx's thread count for the length of
its block, as it does libgomp's and OpenBLAS's, then puts the count it found
back.

Single-threaded execution is proved by CPU time, not wall time: during a call
of a few hundred milliseconds, the CPU time of every thread of the process
but the calling one must stay near zero (and with two threads, it must not).
"""
import os
import time

import numpy as np
import pytest

import convx
from conftest import optional, show_config_text  # (tests/conftest.py)

threadpoolctl = optional("threadpoolctl")
pytestmark = pytest.mark.usefixtures("default_threads")   # (conftest.py)


def _convx_info():
    entries = [d for d in threadpoolctl.threadpool_info() if d["internal_api"] == "convx"]
    assert len(entries) == 1, entries
    return entries[0]


def test_threadpool_info_lists_convx():
    info = _convx_info()
    assert info["user_api"] == "openmp"
    assert info["num_threads"] == convx.get_num_threads()
    assert os.path.samefile(info["filepath"], convx._core.__file__)
    assert info["version"] == convx.__version__
    convx.set_num_threads(1)
    assert _convx_info()["num_threads"] == 1


# A call of a few hundred ms that runs threaded when allowed: a batch of 8.
_RNG = np.random.default_rng(0)
_X = _RNG.standard_normal((8, 32, 96, 96)).astype(np.float32)
_W = _RNG.standard_normal((32, 32, 3, 3)).astype(np.float32)


def _call():
    return convx.conv2d(_X, _W, padding=1)


def _other_threads_cpu(call, cpu=0.3):
    """CPU seconds used by threads other than this one while ``call`` runs
    again and again until this thread has used ``cpu`` seconds, and this
    thread's.  Threads of other libraries that spin after their own calls
    (OpenBLAS's, libgomp's) are given time to stop first."""
    time.sleep(0.3)
    p0, t0 = time.process_time(), time.thread_time()
    while time.thread_time() - t0 < cpu:
        call()
    p1, t1 = time.process_time(), time.thread_time()
    return (p1 - p0) - (t1 - t0), t1 - t0


def _two_threads():
    if not convx._core.openmp_enabled() or convx._threads._MAX_THREADS < 2:
        pytest.skip("needs OpenMP and two CPUs")


@pytest.mark.parametrize("user_api", [None, "openmp"])
def test_threadpool_limits_one_runs_one_thread(user_api):
    _two_threads()
    expected = _call()
    before = convx.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api=user_api):
        assert convx.get_num_threads() == 1
        assert _convx_info()["num_threads"] == 1
        others, mine = _other_threads_cpu(_call)
        assert convx._core.threads_seen() == 1
        got = _call()
    assert others <= 0.02 * mine + 0.01, (
        f"other threads used {others:.3f} s of CPU beside the caller's {mine:.3f} s "
        "inside threadpool_limits(1)")
    assert np.array_equal(got, expected)  # the same bits on one thread
    assert convx.get_num_threads() == before  # convx's own setting is back


def test_without_limits_the_call_runs_threads():
    """The CPU-time measure above does see a second thread when there is one."""
    _two_threads()
    convx.set_num_threads(2)
    others, mine = _other_threads_cpu(_call)
    assert convx._core.threads_seen() == 2
    assert others >= 0.25 * mine, (
        f"other threads used {others:.3f} s beside the caller's {mine:.3f} s with 2 threads")


def test_limits_on_blas_leave_convx_alone():
    _two_threads()
    convx.set_num_threads(2)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert convx.get_num_threads() == 2
        _call()
        assert convx._core.threads_seen() == 2


def test_leaving_puts_convx_setting_back():
    _two_threads()
    convx.set_num_threads(1)
    with threadpoolctl.threadpool_limits(limits=2):
        assert convx.get_num_threads() == 2
        _call()
        assert convx._core.threads_seen() == 2
    assert convx.get_num_threads() == 1
    convx.set_num_threads(None)
    default = convx.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        with threadpoolctl.threadpool_limits(limits=2):
            assert convx.get_num_threads() == 2
        assert convx.get_num_threads() == 1
    assert convx.get_num_threads() == default


def _threads_line():
    return next(line for line in show_config_text().splitlines() if "threads:  " in line)


def test_show_config_still_says_default_after_a_block():
    """threadpoolctl puts back the count it found through convx's setter:
    show_config() still calls the default count "default" after the block
    (empty or not), and a count set by set_num_threads what it is."""
    if not convx._core.openmp_enabled():
        pytest.skip("one thread without OpenMP: no count to label")
    convx.set_num_threads(None)
    assert "(default;" in _threads_line()
    with threadpoolctl.threadpool_limits(limits=1):
        assert "(set_num_threads;" in _threads_line() or convx._threads._DEFAULT_THREADS == 1
    assert "(default;" in _threads_line(), _threads_line()
    with threadpoolctl.threadpool_limits(limits=1):
        _call()
    assert "(default;" in _threads_line(), _threads_line()
    if convx._threads._DEFAULT_THREADS > 1:
        convx.set_num_threads(1)
        assert "1 (set_num_threads;" in _threads_line()
        with threadpoolctl.threadpool_limits(limits=2):
            pass
        assert "1 (set_num_threads;" in _threads_line()


def test_threadpool_limits_above_the_cpus_is_clamped():
    """threadpoolctl may ask for any count; convx takes at most its CPUs (it
    must never ask libgomp for threads it cannot have)."""
    cpus = convx._threads._MAX_THREADS
    with threadpoolctl.threadpool_limits(limits=cpus + 7):
        assert convx.get_num_threads() == cpus


def test_controller_object_api():
    before = convx.get_num_threads()
    controller = threadpoolctl.ThreadpoolController().select(internal_api="convx")
    assert len(controller.lib_controllers) == 1
    with controller.limit(limits=1):
        assert convx.get_num_threads() == 1
    assert convx.get_num_threads() == before
