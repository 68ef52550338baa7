"""Ctrl-C: a long convx call from the main thread stops within a few
milliseconds of SIGINT and raises KeyboardInterrupt, every thread stops
computing, and nothing is left behind: not the SIGINT handler convx chains in
front of Python's for the call, not a thread count, not a BLAS setting (convx
runs no BLAS, and never touches another library's thread count).

The long calls run at the baseline instruction-set level (convx._core.set_isa):
its kernels are several times slower, so a call of seconds needs little memory.
"""
import math
import os
import random
import signal
import threading
import time

import numpy as np
import pytest

import convx
import reference as ref  # tests/reference.py; see conftest.py
from conftest import optional  # (tests/conftest.py)

pytestmark = [pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt",
                                 reason="POSIX signals"),
              pytest.mark.usefixtures("default_threads")]   # (conftest.py)

LATENCY = 0.25     # seconds from SIGINT to KeyboardInterrupt (the promise)
LONG = 2.0         # seconds a call must last uninterrupted to be a "long call"


@pytest.fixture
def baseline_isa():
    level = convx._core.isa()
    convx._core.set_isa(1)
    convx._engine.PLANS.clear()
    yield
    convx._core.set_isa(level)
    convx._engine.PLANS.clear()


def _assert_clean():
    """Nothing of an interrupted call is left behind."""
    assert not convx._core.sigint_chained()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    x = np.arange(5.0).reshape(1, 1, 5)
    assert np.array_equal(convx.conv1d(x, np.ones((1, 1, 3)), padding=1),
                          [[[1.0, 3.0, 6.0, 9.0, 7.0]]])


# Each long call: (name, maker); maker(rows) returns a call whose work grows
# linearly with ``rows``.  The kernel paths (Winograd too), the three passes, one image and
# a batch.
def _maker(pass_, n, c, f, k, width, stride=1, dtype=np.float32, method="auto"):
    rng = np.random.default_rng(1)

    def make(rows):
        # the values do not matter here, only the work: fill the large arrays
        # cheaply, with a little variety
        x = np.full((n, c, rows, width), 0.5, dtype)
        x[..., ::7] = -0.25
        w = rng.standard_normal((f, c, k, k)).astype(dtype)
        kw = dict(stride=stride, padding=k // 2, method=method)
        if pass_ == "forward":
            return lambda: convx.conv2d(x, w, **kw)
        oh, ow = (rows - 1) // stride + 1, (width - 1) // stride + 1
        g = np.full((n, f, oh, ow), 0.75, dtype)
        g[..., ::5] = -1.0
        if pass_ == "input_grad":
            return lambda: convx.conv2d_input_grad(x.shape, w, g, **kw)
        return lambda: convx.conv2d_weight_grad(x, w.shape, g, **kw)
    return make


def _maker1d(pass_, c, f, k):
    """One signal of c channels whose length grows (``rows`` thousand samples)."""
    rng = np.random.default_rng(1)

    def make(rows):
        x = np.full((1, c, 1000 * rows), 0.5, np.float32)
        x[..., ::7] = -0.25
        w = rng.standard_normal((f, c, k)).astype(np.float32)
        if pass_ == "forward":
            return lambda: convx.conv1d(x, w, padding=k // 2)
        g = np.full((1, f, 1000 * rows), 0.75, np.float32)
        return lambda: convx.conv1d_weight_grad(x, w.shape, g, padding=k // 2)
    return make


LONG_CALLS = [
    pytest.param(_maker("forward", 1, 64, 64, 3, 128, method="direct"),
                 id="forward-direct-one-image"),
    pytest.param(_maker("input_grad", 1, 64, 64, 3, 128, method="direct"),
                 id="input_grad-direct-one-image"),
    pytest.param(_maker("forward", 1, 64, 64, 3, 128, method="winograd"),
                 id="forward-winograd-one-image"),
    pytest.param(_maker("input_grad", 2, 64, 64, 3, 128, method="winograd"),
                 id="input_grad-winograd-batch2"),
    pytest.param(_maker("weight_grad", 1, 8, 16, 3, 256), id="weight_grad-direct-one-image"),
    pytest.param(_maker("forward", 4, 128, 128, 3, 64, stride=2), id="forward-gemm-batch4"),
    pytest.param(_maker("input_grad", 1, 128, 128, 3, 64, stride=2),
                 id="input_grad-gemm-one-image"),
    pytest.param(_maker("weight_grad", 4, 64, 128, 3, 64, stride=2),
                 id="weight_grad-gemm-batch4"),
    # one long row: a 1-D signal, whose single output row is split in columns
    pytest.param(_maker1d("forward", 32, 32, 5), id="forward-direct-1d-one-signal"),
    pytest.param(_maker1d("weight_grad", 8, 16, 5), id="weight_grad-direct-1d-one-signal"),
]
# (The weight gradient's dot products, for few taps, share the item loop of
# the GEMM weight gradient above, and an item is at most about 4M
# multiply-adds; a call of seconds of them would need gigabytes of input.)


def _long_call(make):
    """A call lasting at least LONG seconds: sized from a short one (the work
    grows linearly with the rows)."""
    rows = 32
    call = make(rows)
    call()
    t = min(_timed(call) for _ in range(2))
    return make(math.ceil(rows * 1.5 * LONG / max(t, 1e-4))), t * 1.5 * LONG / max(t, 1e-4)


def _timed(call):
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _sigint_after(delay):
    sent = {}

    def fire():
        time.sleep(delay)
        sent["at"] = time.perf_counter()
        os.kill(os.getpid(), signal.SIGINT)
    th = threading.Thread(target=fire)
    th.start()
    return th, sent


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("make", LONG_CALLS)
def test_ctrl_c_stops_a_long_call(make, threads, baseline_isa):
    if threads > convx._threads._MAX_THREADS:
        pytest.skip("one CPU")
    convx.set_num_threads(threads)
    call, estimate = _long_call(make)
    assert estimate >= LONG
    th, sent = _sigint_after(0.2)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        call()
    raised = time.perf_counter()
    th.join()
    assert raised - start < estimate / 2, "the call ran to its end"
    latency = raised - sent["at"]
    assert latency < LATENCY, f"KeyboardInterrupt came {latency:.3f} s after SIGINT"
    # and no thread goes on computing: the process is idle afterwards
    c0 = time.process_time()
    time.sleep(0.5)
    idle = time.process_time() - c0
    assert idle < 0.1, f"the process used {idle:.3f} s of CPU in the 0.5 s after the interrupt"
    _assert_clean()


def _call_with_handler(handler, call):
    """``call()`` with ``handler`` for SIGINT, and a SIGINT 50 ms into it."""
    old = signal.signal(signal.SIGINT, handler)
    try:
        th, _ = _sigint_after(0.05)
        got = call()
        th.join()
    finally:
        signal.signal(signal.SIGINT, old)
    return got


def test_a_handler_that_does_not_raise_gets_the_full_result(baseline_isa):
    """A SIGINT handler of the user's that returns: the call is interrupted,
    the handler runs, and the call starts again and runs to its end."""
    make = _maker("input_grad", 2, 32, 32, 3, 64, stride=2)   # the GEMM path, which adds into dx
    call = make(256)
    expected = call()
    seen = []
    got = _call_with_handler(lambda signum, frame: seen.append(signum), call)
    assert seen == [signal.SIGINT]
    assert np.array_equal(got, expected)
    _assert_clean()


def test_signals_faster_than_the_call_let_it_end():
    """A user's SIGINT handler that returns, and SIGINTs three times a call's
    length: the call starts again once, runs to its end, and gives the full
    result (restarted at each signal, it ran until the signals stopped)."""
    x = np.random.default_rng(2).standard_normal((4, 64, 64, 64))
    w = np.random.default_rng(3).standard_normal((64, 64, 3, 3))

    def call():
        return convx.conv2d(x, w, padding=1, method="direct")
    expected = call()
    period = min(_timed(call) for _ in range(3)) / 3
    seen, stop = [], threading.Event()
    old = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))

    def periodic():
        end = time.monotonic() + 30
        while time.monotonic() < end and not stop.wait(period):
            os.kill(os.getpid(), signal.SIGINT)
    th = threading.Thread(target=periodic)
    try:
        th.start()
        got = call()
        still_sending = th.is_alive()
        stop.set()
        th.join()
    finally:
        signal.signal(signal.SIGINT, old)
    assert still_sending, "the call ended only when the signals stopped"
    assert seen and np.array_equal(got, expected)
    _assert_clean()


_NESTED = """
import os, signal, sys, time
import numpy as np
import convx
x = np.ones((2, 32, 128, 128), np.float32)
w = np.ones((32, 32, 3, 3), np.float32)
seen = []
def on_alarm(signum, frame):   # a long call (> 2**22 multiply-adds) inside the other
    inside = convx._core.sigint_chained()
    seen.append(inside)
    convx.conv2d(x[:1, :, :64, :64], w, padding=1)
    if sys.argv[1] == "dfl" and inside:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGALRM, on_alarm)
for _ in range(50):   # until the alarm lands inside a long call
    signal.setitimer(signal.ITIMER_REAL, 0.002)
    convx.conv2d(x, w, padding=1)
    signal.setitimer(signal.ITIMER_REAL, 0)
    if seen and seen[-1]:
        break
print(seen[-1] if seen else None, convx._core.sigint_chained(), flush=True)
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)
    print("no KeyboardInterrupt", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


@pytest.mark.parametrize("then", ["call", "dfl"])
def test_a_long_call_inside_another_leaves_sigint_as_it_found_it(then):
    """A Python signal handler that runs while a long call is in progress
    (between its kernel and its end) and makes a long call of its own: the
    handler convx chains is chained once, not in front of itself (then
    every later SIGINT looped in it: the process hung), and put back by the
    outer call.  And a SIGINT handler set meanwhile (SIG_DFL) stays set:
    the process then dies of SIGINT, as Python promises."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _NESTED, then], capture_output=True, text=True,
                         timeout=120, check=False)
    inside, chained = out.stdout.split()[:2]
    assert inside == "True" and chained == "False", out.stdout   # nested; nothing left
    if then == "call":
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == "KeyboardInterrupt"
    else:
        assert out.returncode == -signal.SIGINT, (out.returncode, out.stdout, out.stderr)
        assert "no KeyboardInterrupt" not in out.stdout


def test_an_ignored_sigint_does_not_stop_a_call(baseline_isa):
    call = _maker("forward", 1, 64, 64, 3, 128)(128)
    expected = call()
    assert np.array_equal(_call_with_handler(signal.SIG_IGN, call), expected)
    _assert_clean()


def test_ctrl_c_in_the_main_thread_leaves_calls_of_other_threads_alone(baseline_isa):
    """KeyboardInterrupt belongs to the main thread: a call in another thread
    runs to its end and gives its full result."""
    make = _maker("forward", 1, 64, 64, 3, 128, method="direct")
    call = make(256)
    expected = call()
    result = {}

    def work():
        result["out"] = call()

    worker = threading.Thread(target=work)
    worker.start()
    interrupted = False
    fire, _ = _sigint_after(0.05)
    # Poll with time.sleep, not Event.wait or Thread.join: a KeyboardInterrupt
    # raised just as one of those has taken its lock can leave the lock held
    # (the with statement's __exit__ does not run), and the next wait on it
    # blocks forever (it hung CI once, in Event.wait); and in CPython 3.11
    # one inside Thread.join can take a running thread for finished.  The
    # threads are joined once the signal has come and the result is in.
    deadline = time.monotonic() + 300
    while not (interrupted and "out" in result) and time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except KeyboardInterrupt:
            interrupted = True
    worker.join()
    fire.join()
    assert interrupted
    assert np.array_equal(result["out"], expected)
    _assert_clean()


# --------------------------------------------------------------------------
# A page's first write can take milliseconds (a virtual machine whose free
# memory goes back to its host: 5 ms for a 2 MiB page), so a long call
# touches its fresh output's pages between checks before the kernel starts,
# and no item pays for many of them at once (docs/reliability.md, "Ctrl-C").
# --------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("offset", [0, 1, 4096, 2**21 - 1])
@pytest.mark.parametrize("size", [0, 1, 2**21 - 1, 2**21, 2**21 + 1, 9 * 2**20 + 123])
def test_touch_pages_writes_at_each_2mib_address(size, offset, threads):
    """The first byte, and each byte at an address that is a multiple of
    2 MiB, become 0; nothing else changes."""
    block = np.full(size + 2 * 2**21, 7, np.uint8)
    base = -block.ctypes.data % 2**21          # block[base] is 2 MiB aligned
    b = block[base + offset:base + offset + size]
    assert convx._core.touch_pages(b, threads, False)
    touched = np.zeros(block.size, bool)
    touched[base::2**21] = True
    touched[:base + offset] = touched[base + offset + size:] = False
    if size:
        touched[base + offset] = True
    assert (block[touched] == 0).all() and (block[~touched] == 7).all()
    assert touched.sum() == (0 if size == 0 else 1 + (offset + size - 1) // 2**21)


def _spy_touches(monkeypatch):
    seen = []
    real = convx._core.touch_pages

    def spy(b, nt, interruptible):
        seen.append((b.nbytes, interruptible))
        return real(b, nt, interruptible)
    monkeypatch.setattr(convx._core, "touch_pages", spy)
    return seen


@pytest.mark.parametrize("pass_, method", [
    (p, m) for p in ("forward", "input_grad", "weight_grad")
    for m in ("auto", "direct", "gemm", "winograd") if (p, m) != ("weight_grad", "winograd")])
def test_a_long_call_touches_its_output_first(pass_, method, monkeypatch):
    make = _maker(pass_, 2, 16, 16, 3, 64, method=method)   # 2 MiB out, 2.4e7 MACs
    call = make(256)
    expected = call()
    seen = _spy_touches(monkeypatch)
    got = call()
    assert np.array_equal(got, expected)
    if pass_ == "weight_grad":        # 9 KiB of weights: left to the kernel
        assert seen == []
    else:
        assert seen == [(got.nbytes, True)]


def test_a_call_from_another_thread_touches_nothing(monkeypatch):
    call = _maker("forward", 2, 16, 16, 3, 64)(256)
    seen = _spy_touches(monkeypatch)
    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert seen == []


# --------------------------------------------------------------------------
# Nothing leaks: SIGINTs at random points, threadpoolctl around calls in
# other threads, concurrent calls, exceptions.  SciPy's BLAS thread count is
# always what the user last set.
# --------------------------------------------------------------------------

def _blas_counts():
    threadpoolctl = optional("threadpoolctl")
    return sorted((d["filepath"], d["num_threads"]) for d in threadpoolctl.threadpool_info()
                  if d["user_api"] == "blas")


@pytest.fixture
def scipy_blas():
    """SciPy's BLAS loaded, and set by the user to a count other than its
    default (then back)."""
    threadpoolctl = optional("threadpoolctl")
    scipy_linalg = pytest.importorskip("scipy.linalg")
    scipy_linalg.blas.dgemm(1.0, np.ones((8, 8)), np.ones((8, 8)))
    limits = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    counts = _blas_counts()
    assert any("scipy" in path for path, _ in counts), counts
    yield counts
    limits.restore_original_limits()


class _Interrupt(KeyboardInterrupt):
    pass


def test_thousands_of_sigints_at_random_points(scipy_blas):
    """A thread sends SIGINT at random moments while the main thread makes
    short threaded calls (about a millisecond each).  Python's handler raises
    only while the main thread is inside a convx call (so the test's own code
    is not interrupted), at whatever point of the call it lands: in convx's
    Python code, or in a kernel, which then stops."""
    if not convx._core.openmp_enabled() or convx._threads._MAX_THREADS < 2:
        pytest.skip("needs OpenMP and two CPUs")
    threads_before = convx.get_num_threads()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 16, 48, 48)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    g = rng.standard_normal((2, 32, 48, 48)).astype(np.float32)
    calls = [lambda: convx.conv2d(x, w, padding=1),
             lambda: convx.conv2d_input_grad(x.shape, w, g, padding=1),
             lambda: convx.conv2d_weight_grad(x, w.shape, g, padding=1),
             lambda: convx.conv2d(x, w, stride=2, padding=1)]
    expected = []
    for c in calls:
        expected.append(c())
        assert convx._core.threads_seen() == 2  # threaded calls
    # Signals come at random gaps of up to three calls' time (3 ms on an
    # optimised build, where a call takes about 1 ms; far longer under the
    # sanitizers), so that some calls are hit and some complete.  The count
    # asked for shrinks with the gap, to keep the test near 8 s.
    durations = []
    for c in calls * 3:
        t0 = time.perf_counter()
        c()
        durations.append(time.perf_counter() - t0)
    gap = max(0.003, 3 * float(np.median(durations)))
    wanted = max(300, int(2000 * 0.003 / gap))
    state = {"armed": False, "raised": 0, "absorbed": 0}

    def handler(signum, frame):
        if state["armed"]:
            state["raised"] += 1
            raise _Interrupt
        state["absorbed"] += 1

    stop = threading.Event()
    sent = [0]

    def sender():
        r = random.Random(3)
        while not stop.is_set():
            time.sleep(r.uniform(0, gap))
            os.kill(os.getpid(), signal.SIGINT)
            sent[0] += 1

    old = signal.signal(signal.SIGINT, handler)
    th = threading.Thread(target=sender)
    completed = interrupted = 0
    try:
        th.start()
        deadline = time.perf_counter() + 8.0
        i = 0
        while time.perf_counter() < deadline or sent[0] < wanted:
            k = i % len(calls)
            i += 1
            try:
                state["armed"] = True
                out = calls[k]()
                state["armed"] = False
                assert np.array_equal(out, expected[k]), f"call {k} gave a different result"
                completed += 1
            except _Interrupt:
                state["armed"] = False
                interrupted += 1
    finally:
        stop.set()
        th.join()
        time.sleep(0.01)   # the last signals reach the (disarmed) handler
        signal.signal(signal.SIGINT, old)
    print(f"{sent[0]} SIGINTs: {interrupted} calls interrupted, {completed} completed, "
          f"{state['absorbed']} signals outside a call")
    assert sent[0] >= wanted
    least = wanted // 20
    assert interrupted >= least and completed >= least, (sent[0], interrupted, completed)
    _assert_clean()
    assert _blas_counts() == scipy_blas
    assert convx.get_num_threads() == threads_before
    for c, e in zip(calls, expected):  # fully usable, threaded, the same bits
        assert np.array_equal(c(), e)
        assert convx._core.threads_seen() == 2


@pytest.mark.parametrize("order", ["enter-call-leave-end", "call-enter-end-leave"])
def test_threadpoolctl_around_a_call_in_another_thread(order, scipy_blas):
    """threadpoolctl entered and left, in both orders, around a convx call in
    another thread: BLAS ends as the user last set it."""
    threadpoolctl = optional("threadpoolctl")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 32, 96, 96)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    started, go_on = threading.Event(), threading.Event()

    def worker():
        started.set()
        for _ in range(3):
            convx.conv2d(x, w, padding=1)
        go_on.wait(5)

    th = threading.Thread(target=worker)
    if order == "enter-call-leave-end":
        with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
            th.start()
            started.wait()
        go_on.set()
        th.join()
    else:
        th.start()
        started.wait()
        with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
            go_on.set()
            th.join()
    assert _blas_counts() == scipy_blas


def test_concurrent_calls_and_exceptions_leave_blas_alone(scipy_blas):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 16, 48, 48))
    w = rng.standard_normal((16, 16, 3, 3))

    def good():
        for _ in range(20):
            convx.conv2d(x, w, padding=1)
            convx.conv2d_weight_grad(x, w.shape, np.ones((4, 16, 48, 48)), padding=1)

    def bad():
        for _ in range(20):
            with pytest.raises(convx.ConvxValueError):
                convx.conv2d(x, w[:, :3])
            with pytest.raises(convx.ConvxTypeError):
                convx.conv2d(x.astype(np.longdouble), w)

    threads = [threading.Thread(target=f) for f in (good, good, bad, good, bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _blas_counts() == scipy_blas
    _assert_clean()


def test_the_direct_kernels_scratch_is_touched_between_checks(monkeypatch, baseline_isa):
    """A long call's working memory, just allocated, is touched once per 2 MiB
    between checks before the kernel starts, as its output is (_engine._call):
    the direct kernels' holds each thread's padded rows (at the baseline
    level, all of them: 27 MiB a thread for a (1, 64, 850, 128) image), and after a few seconds idle, on a virtual
    machine whose free memory goes back to its host, their first items paid
    150-400 ms for it before their first check (this file's direct one-image
    calls on 2 threads, 0.25-0.43 s from SIGINT to KeyboardInterrupt)."""
    touched = []
    touch = convx._engine._core.touch_pages

    def spy(b, nt, interruptible):
        touched.append(b.nbytes)
        return touch(b, nt, interruptible)

    monkeypatch.setattr(convx._engine._core, "touch_pages", spy)
    x = np.full((1, 64, 200, 128), 0.5, np.float32)
    w = np.full((64, 64, 3, 3), 0.25, np.float32)
    got = convx.conv2d(x, w, padding=1, method="direct")
    np.testing.assert_allclose(got[0, :, 100, 64], 64 * 9 * 0.125, rtol=1e-6)
    assert touched[0] == got.nbytes                      # the output
    assert len(touched) == 2 and touched[1] >= 64 * 200 * 128 * 4   # the padded rows


# Layers whose 'auto' paths span the kernel families that take working memory
# (_engine._scratch): (x shape, weight shape, stride, padding, groups).
_SCRATCH_LAYERS = {
    "depthwise": ((2, 32, 96, 96), (32, 1, 3, 3), 1, 1, 32),
    "stem": ((2, 3, 160, 160), (32, 3, 7, 7), 2, 3, 1),
    "gemm": ((4, 64, 28, 28), (128, 64, 3, 3), 2, 1, 1),
    "winograd": ((4, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    "lenet": ((64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    "pointwise": ((4, 128, 28, 28), (256, 128, 1, 1), 1, 0, 1),
}


@pytest.mark.parametrize("pass_", ["forward", "input grad", "weight grad"])
@pytest.mark.parametrize("layer", sorted(_SCRATCH_LAYERS))
def test_every_kernels_scratch_is_touched_between_checks(monkeypatch, layer, pass_):
    """Every kernel's working memory, not only the direct kernels', is handed
    to _engine._call, which touches it between checks as it does the output
    (the test above says why): with the threshold lowered to one page, each
    array _engine._scratch allocates for a long call is touched before its
    kernel runs.  The results are checked against the reference."""
    xs, ws, stride, padding, groups = _SCRATCH_LAYERS[layer]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    geometry = dict(stride=stride, padding=padding, groups=groups)
    g = rng.standard_normal(convx.conv2d(x, w, **geometry).shape).astype(np.float32)
    allocated, touched = [], []
    scratch, touch = convx._engine._scratch, convx._engine._core.touch_pages

    def spy_scratch(*args, **kwargs):
        a = scratch(*args, **kwargs)
        allocated.append((a.__array_interface__["data"][0], a.nbytes))
        return a

    def spy_touch(b, nt, interruptible):
        touched.append((b.__array_interface__["data"][0], b.nbytes))
        return touch(b, nt, interruptible)

    monkeypatch.setattr(convx._engine, "_scratch", spy_scratch)
    monkeypatch.setattr(convx._engine._core, "touch_pages", spy_touch)
    monkeypatch.setattr(convx._engine, "_TOUCH_MIN_BYTES", 4096)
    monkeypatch.setattr(convx._engine, "_INTERRUPT_MIN_MACS", 1)
    convx._engine.PLANS.clear()
    ref_geometry = dict(stride=stride, pads=(padding,) * 4, groups=groups)
    if pass_ == "forward":
        got, want = convx.conv2d(x, w, **geometry), ref.conv_nd(x, w, **ref_geometry)
    elif pass_ == "input grad":
        got = convx.conv2d_input_grad(x.shape, w, g, **geometry)
        want = ref.conv_nd_input_grad(x.shape, w, g, **ref_geometry)
    else:
        got = convx.conv2d_weight_grad(x, w.shape, g, **geometry)
        want = ref.conv_nd_weight_grad(x, w.shape, g, **ref_geometry)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)
    big = [a for a in allocated if a[1] >= 4096]
    assert big, "this layer's pass takes no working memory: pick another"
    assert all(a in touched for a in big), (big, touched)
