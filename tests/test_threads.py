"""Threads: convx's own OpenMP threads, calls from many Python threads, the GIL,
set_num_threads / get_num_threads and their bounds.  Processes (fork),
threadpoolctl and Ctrl-C have files of their own.

Every test leaves convx at its default thread count (the autouse fixture).
"""
import concurrent.futures
import ctypes
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import convx
import convx._threads
import reference as ref  # tests/reference.py; see conftest.py
from conftest import at_each_thread_count, show_config_text, thread_counts  # (tests/conftest.py)

EPS64 = np.finfo(np.float64).eps
pytestmark = pytest.mark.usefixtures("default_threads")   # (conftest.py)


# --------------------------------------------------------------------------
# (a) the thread count: the forward pass and the input gradient are the same
#     bits for every count; the weight gradient within the rounding bound
# --------------------------------------------------------------------------

X_SHAPE, W_SHAPE = (8, 8, 48, 48), (16, 8, 3, 3)


def _three_passes(x, w, b, g, stride):
    kw = dict(stride=stride, padding=1)
    return (convx.conv2d(x, w, b, **kw),
            convx.conv2d_input_grad(x.shape, w, g, **kw),
            convx.conv2d_weight_grad(x, w.shape, g, **kw))


def _data(dtype, stride, seed=0, n=X_SHAPE[0], w_shape=W_SHAPE, size=X_SHAPE[2]):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, w_shape[1], size, size)).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    oh = (size + 2 - 3) // stride + 1
    g = rng.standard_normal((n, w_shape[0], oh, oh)).astype(dtype)
    return x, w, b, g


# A batch of 8 shares out its images; one image shares out blocks of rows
# (direct kernel) or of positions and channels (im2col + GEMM).  16 -> 16
# channels take the direct kernel at stride 1, 64 -> 64 the GEMM (a block
# past _DIRECT_MAX_BLOCK), stride 2 the GEMM.
INVARIANCE_CASES = [
    pytest.param(8, (16, 8, 3, 3), 48, id="batch8-8to16"),
    pytest.param(1, (16, 8, 3, 3), 128, id="batch1-8to16"),
    pytest.param(1, (64, 64, 3, 3), 40, id="batch1-64to64"),
    pytest.param(2, (128, 128, 3, 3), 24, id="batch2-128to128"),
]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, w_shape, size", INVARIANCE_CASES)
def test_thread_counts_agree(dtype, stride, n, w_shape, size, kernel_path):
    if not convx._core.openmp_enabled() or convx._threads._MAX_THREADS < 2:
        pytest.skip("needs OpenMP and two CPUs")
    x, w, b, g = _data(dtype, stride, n=n, w_shape=w_shape, size=size)
    oh = g.shape[2]
    macs = n * w_shape[0] * w_shape[1] * 9 * oh * oh
    assert macs >= convx._threads._PARALLEL_MIN_MACS  # big enough for threads
    results = {}
    for setting in (1, None, 2):
        convx.set_num_threads(setting)
        first = _three_passes(x, w, b, g, stride)
        seen = convx._core.threads_seen()  # the weight gradient's call, the last one
        assert seen == convx.get_num_threads(), (
            f"threads={setting}: the call ran {seen} OpenMP threads")
        for _ in range(2):  # the same setting again: bit for bit the same
            again = _three_passes(x, w, b, g, stride)
            for a, b_ in zip(first, again):
                assert np.array_equal(a, b_), f"threads={setting}: repeated calls differ"
        results[setting] = first
    for setting in (None, 2):
        for name, a, b_ in zip(("forward", "input_grad"), results[1][:2], results[setting][:2]):
            assert a.dtype == b_.dtype == np.dtype(dtype) and a.shape == b_.shape
            assert np.array_equal(a, b_), (
                f"{name}: threads=1 and threads={setting} differ by "
                f"{np.abs(a.astype(np.float64) - b_).max():.3g}")
    # The weight gradient adds one partial sum per thread.  Each result is
    # within gamma_n * sum|terms| <= n*eps/2 * sum|terms| of the exact value
    # whatever the order of summation (Higham, section 3.1), so two thread
    # counts differ by at most n*eps * sum|terms|; sum|terms| per element is
    # the reference on absolute values, n the number of products summed.
    rk = dict(stride=stride, pads=(1, 1, 1, 1))
    bound = ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **rk)
    eps = np.finfo(dtype).eps
    for setting in (None, 2):
        a, b_ = results[1][2], results[setting][2]
        err = np.abs(a.astype(np.float64) - b_)
        assert np.all(err <= (n * oh * oh + 1) * eps * bound), (
            f"weight_grad: threads=1 and threads={setting} differ by {err.max():.3g}")


# --------------------------------------------------------------------------
# (b) many Python threads at once
# --------------------------------------------------------------------------

def _shared_inputs():
    rng = np.random.default_rng(11)
    arrays = dict(
        x=rng.standard_normal((4, 4, 16, 16)),
        w=rng.standard_normal((8, 4, 3, 3)),
        b=rng.standard_normal(8),
        g1=rng.standard_normal((4, 8, 16, 16)),    # stride 1, padding 1
        g2=rng.standard_normal((4, 8, 8, 8)),      # stride 2, padding 1
        x1=rng.standard_normal((3, 4, 40)),
        w1=rng.standard_normal((6, 2, 5)),
        g1d=rng.standard_normal((3, 6, 17)),       # stride 2, padding 1, dilation 2, groups 2
        xf=rng.standard_normal((4, 4, 16, 16)).astype(np.float32),
        wf=rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
        p=rng.standard_normal((4, 8, 3, 3)),       # the notebook's (C_in, C_out, KH, KW)
        og=rng.standard_normal((4, 8, 16, 16)),
    )
    for a in arrays.values():
        a.flags.writeable = False
    return arrays


def _calls(a):
    c1d = dict(stride=2, padding=1, dilation=2, groups=2)
    return [
        lambda: convx.conv2d(a["x"], a["w"], a["b"], padding=1),
        lambda: convx.conv2d(a["x"], a["w"], None, stride=2, padding=1),
        lambda: convx.conv2d(a["xf"], a["wf"], padding="same"),
        lambda: convx.conv2d_input_grad(a["x"].shape, a["w"], a["g1"], padding=1),
        lambda: convx.conv2d_input_grad(a["x"].shape, a["w"], a["g2"], stride=2, padding=1),
        lambda: convx.conv2d_weight_grad(a["x"], a["w"].shape, a["g1"], padding=1),
        lambda: convx.conv2d_weight_grad(a["x"], a["w"].shape, a["g2"], stride=2, padding=1),
        lambda: convx.conv1d(a["x1"], a["w1"], None, **c1d),
        lambda: convx.conv1d_input_grad(a["x1"].shape, a["w1"], a["g1d"], **c1d),
        lambda: convx.conv1d_weight_grad(a["x1"], a["w1"].shape, a["g1d"], **c1d),
        lambda: convx._output(a["x"], a["p"]),
        lambda: convx._input_grad(a["x"], a["og"], a["p"]),
        lambda: convx._param_grad(a["x"], a["og"], a["p"]),
    ]


@pytest.mark.parametrize("threads", thread_counts(1, 2))
def test_concurrent_python_threads_match_serial(threads):
    # An explicit thread count, 1 and 2: a different count legitimately changes
    # the weight gradient's rounding, so each is compared with its own serial run.
    convx.set_num_threads(threads)
    arrays = _shared_inputs()
    copies = {k: v.copy() for k, v in arrays.items()}
    calls = _calls(arrays)
    serial = [call() for call in calls]

    def job(i):
        k = (i * 7) % len(calls)  # every thread gets a mix of all calls
        return k, calls[k]()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(8 * 200)))
    assert len(results) == 1600
    seen = set()
    for k, out in results:
        seen.add(k)
        assert out.dtype == serial[k].dtype and out.shape == serial[k].shape
        assert np.array_equal(out, serial[k]), f"call {k} differs from its serial result"
    assert seen == set(range(len(calls)))
    for k, v in arrays.items():
        assert np.array_equal(v, copies[k]), f"input {k} was changed"


# --------------------------------------------------------------------------
# (c) the GIL is released while the kernel runs
# --------------------------------------------------------------------------

def _long_call(pass_, n):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 16, 64, 64)).astype(np.float32)
    w = rng.standard_normal((32, 16, 5, 5)).astype(np.float32)
    if pass_ == "forward":
        return lambda: convx.conv2d(x, w)
    if pass_ == "forward-strided":
        return lambda: convx.conv2d(x, w, stride=2)
    if pass_ == "input_grad":
        g = rng.standard_normal((n, 32, 60, 60)).astype(np.float32)
        return lambda: convx.conv2d_input_grad(x.shape, w, g)
    g = rng.standard_normal((n, 32, 60, 60)).astype(np.float32)
    return lambda: convx.conv2d_weight_grad(x, w.shape, g)


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _calibrated_call(pass_, target=0.15):
    """A call on a batch sized for about ``target`` seconds (the kernels' speed varies)."""
    n = 4
    t = min(_timed(_long_call(pass_, n)) for _ in range(2))
    n = int(np.clip(round(n * target / max(t, 1e-6)), 2, 64))
    return _long_call(pass_, n)


PASSES = ["forward", "forward-strided", "input_grad", "weight_grad"]


def _during_call(call, body):
    """Run ``call`` in another thread while this one repeats ``body``; return
    how many times ``body`` finished in the middle half of the call, and the
    call's duration in seconds."""
    span, stamps = {}, []
    started = threading.Event()

    def worker():
        started.set()
        span["start"] = time.perf_counter()
        call()
        span["end"] = time.perf_counter()

    th = threading.Thread(target=worker)
    th.start()
    started.wait()
    while th.is_alive():
        body()
        stamps.append(time.perf_counter())
    th.join()
    length = span["end"] - span["start"]
    lo, hi = span["start"] + 0.25 * length, span["end"] - 0.25 * length
    return sum(lo < t < hi for t in stamps), length


@pytest.mark.parametrize("pass_", PASSES)
def test_other_python_threads_run_during_a_call(pass_):
    """While one thread is inside a long call, another keeps running Python.

    Were the GIL held by the kernel (nearly all of the call), the main thread
    could run no bytecode in the middle half of the call; this holds on a busy
    machine too, as it does not depend on how fast either thread runs.
    """
    convx.set_num_threads(1)
    inside, length = _during_call(_calibrated_call(pass_, target=0.1), lambda: sum(range(100)))
    assert inside >= 10, (f"the main thread ran {inside} iterations in the middle half of a "
                          f"{length:.3f} s call: the GIL is held")


@pytest.mark.parametrize("pass_", PASSES)
def test_two_python_threads_run_convx_calls_at_once(pass_):
    """Two Python threads are inside convx calls at the same time.

    While one thread runs a long call, the other completes whole convx calls
    (checks, allocation, kernel: each needs the GIL for its Python parts) in
    the middle half of it.  Were the GIL held by the long call's kernel, no
    call could complete there.  Like the test above, this does not depend on
    how fast either thread runs, so it holds on a busy machine; a ratio of
    wall times would not (the machines are shared).
    """
    convx.set_num_threads(1)
    call = _calibrated_call(pass_, target=0.1)
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((2, 4, 12, 12)).astype(np.float32)
    ws = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    inside, length = _during_call(call, lambda: convx.conv2d(xs, ws, padding=1))
    assert inside >= 3, (f"{inside} convx calls completed in the middle half of a "
                         f"{length:.3f} s call in another thread")


# --------------------------------------------------------------------------
# (d) set_num_threads / get_num_threads
# --------------------------------------------------------------------------

@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        (True, TypeError), (False, TypeError), ("2", TypeError),
                                        (2.0, TypeError)])
def test_set_num_threads_rejects(bad, error):
    convx.set_num_threads(1)
    with pytest.raises(error, match=r"set_num_threads\(\).*'n'") as info:
        convx.set_num_threads(bad)
    assert isinstance(info.value, AssertionError)  # convx's error classes are both
    assert convx.get_num_threads() == 1  # unchanged by the refused call


def _cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_set_num_threads_refuses_more_than_the_cpus():
    """libgomp ends the process when it cannot create a thread; convx never
    asks for more threads than the process may run on."""
    cpus = _cpus()
    convx.set_num_threads(cpus)
    for n in (cpus + 1, 200, np.int64(10**6)):
        with pytest.raises(convx.ConvxValueError,
                           match=rf"set_num_threads\(\): argument 'n' must be at most {cpus}, "
                                 rf"the CPUs this process may use, got {int(n)}"):
            convx.set_num_threads(n)
    assert convx.get_num_threads() == cpus


def test_set_num_threads_takes_numpy_ints():
    convx.set_num_threads(np.int64(1))
    assert convx.get_num_threads() == 1 and type(convx.get_num_threads()) is int


def test_get_num_threads_reflects_set_num_threads():
    default = convx.get_num_threads()
    assert isinstance(default, int) and default >= 1
    env = os.environ.get("OMP_NUM_THREADS", "")
    expected = min(int(env), _cpus()) if env.isdigit() and int(env) > 0 else _cpus()
    assert default == expected
    for n in sorted({1, _cpus()}):
        convx.set_num_threads(n)
        assert convx.get_num_threads() == n
    convx.set_num_threads(None)
    assert convx.get_num_threads() == default


@pytest.mark.parametrize("env, expected", [("64", "cpus"), ("1", 1), ("0", "cpus"), ("abc", "cpus"),
                                           ("1,2", 1), ("100000,1", "cpus"), ("4,x", 4)])
def test_omp_num_threads_is_clamped_to_the_cpus(env, expected):
    """OMP_NUM_THREADS above the CPUs the process may use is clamped to them;
    an unusable value is ignored (and hidden from the OpenMP runtime while it
    starts: LLVM's libomp 14 aborts the process on "abc"), and left in the
    environment as it was."""
    code = ("import convx, os; cpus = len(os.sched_getaffinity(0)) if hasattr(os, "
            "'sched_getaffinity') else os.cpu_count(); "
            "print(convx.get_num_threads(), cpus); print(os.environ['OMP_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": env}, timeout=120, check=True)
    counts, seen = out.stdout.splitlines()
    got, cpus = map(int, counts.split())
    assert got == (cpus if expected == "cpus" else min(expected, cpus))
    assert seen == env


@pytest.mark.parametrize("name, value, size", [
    ("OMP_STACKSIZE", "-1", 0), ("GOMP_STACKSIZE", "-4M", 0),
    ("OMP_STACKSIZE", "20000000000000G", 0), ("OMP_STACKSIZE", "1.5M", 0),
    ("OMP_STACKSIZE", "abc", 0), ("OMP_STACKSIZE", " 16 M ", 16 << 20),
    ("OMP_STACKSIZE", "512", 512 << 10), ("GOMP_STACKSIZE", "2g", 2 << 30),
    ("OMP_STACKSIZE", "\u0661\u0662", 0),   # digits, but not ASCII ones
])
def test_stack_size_variables_as_libgomp_reads_them(name, value, size, monkeypatch):
    """OMP_STACKSIZE / GOMP_STACKSIZE: a size libgomp would take, or 0 (the
    system's) where libgomp warns and ignores the value; convx imports
    whatever the value (a negative one or one past 2**64 bytes once made the
    import fail converting it to size_t)."""
    monkeypatch.delenv("OMP_STACKSIZE", raising=False)
    monkeypatch.delenv("GOMP_STACKSIZE", raising=False)
    monkeypatch.setenv(name, value)
    assert convx._threads._env_stack_size() == size
    if size == 0:
        out = subprocess.run([sys.executable, "-c", "import convx; print(convx.get_num_threads())"],
                             capture_output=True, text=True, env={**os.environ, name: value},
                             timeout=120, check=False)
        assert out.returncode == 0 and int(out.stdout) >= 1, out.stderr


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or not convx._core.openmp_enabled(),
                    reason="CPU affinity and OpenMP")
@pytest.mark.parametrize("env", [{"OMP_PROC_BIND": "true"}, {"OMP_PROC_BIND": "spread"},
                                 {"OMP_PLACES": "cores"}])
def test_thread_binding_keeps_the_cpus(env):
    """Told to bind its threads, libgomp binds the thread that loads it to
    its first place as it loads: the process's affinity read after that is
    one CPU, and convx took it for all it had (one thread, set_num_threads(2)
    refused).  convx reads the CPUs before its runtime loads."""
    code = ("import os; cpus = len(os.sched_getaffinity(0)); import convx; "
            "convx.set_num_threads(cpus); print(cpus, convx.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    cpus, got = map(int, out.stdout.split())
    assert got == cpus == _cpus()


_IDLE_CPU = """
import os, time
import numpy as np
import convx
x = np.random.rand(8, 16, 64, 64).astype(np.float32)
w = np.random.rand(16, 16, 3, 3).astype(np.float32)
convx.conv2d(x, w, padding=1)
assert convx._core.threads_seen() == 2
start = time.process_time()
time.sleep(0.3)
print(time.process_time() - start, os.environ.get("OMP_WAIT_POLICY"))
"""


@pytest.mark.parametrize("policy", [None, "active"])
def test_threads_sleep_between_calls(policy):
    """After a threaded call convx's threads sleep (libgomp's passive policy,
    set as libgomp loads): the process uses no CPU while it sleeps, so
    NumPy's BLAS or another pool gets the cores between convx's calls.  The
    variable is gone again from the environment; a policy the user set is
    kept, and obeyed (active: the threads spin, which this measure sees)."""
    if not convx._core.openmp_enabled() or convx._threads._MAX_THREADS < 2:
        pytest.skip("needs OpenMP and two CPUs")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", _IDLE_CPU], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    cpu, seen = out.stdout.split()
    assert seen == str(policy)
    # A pool that spins through the 0.3 s sleep costs about 0.3 s of CPU per
    # thread (the active case below); a sleeping one, what the host adds: up
    # to 0.031 s in fresh venvs on a shared 2-core VM (seen for builds of
    # three different commits), so the line sits at a third of one spinning
    # thread.
    if policy is None:
        assert float(cpu) < 0.1, cpu
    else:
        assert float(cpu) > 0.1, cpu


def _openmp_runtime():
    """ctypes handle of the OpenMP runtime loaded in this process (convx's), or None."""
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps
                        if any(k in line for k in ("libgomp", "libomp", "libiomp"))})
    for path in paths:
        lib = ctypes.CDLL(path)
        if hasattr(lib, "omp_set_num_threads"):
            return lib
    return None


def test_default_thread_count_is_the_same_in_every_python_thread():
    """convx's default must not depend on which Python thread calls.

    omp_get_max_threads() reads the *calling* thread's OpenMP ICV, which
    torch.set_num_threads, threadpoolctl or any library's omp_set_num_threads
    change for that thread only.  If the default follows it, the main thread
    and a worker thread run one call with different thread counts, and (the
    weight gradient sums per-thread partial results) get different bits.
    """
    if not convx._core.openmp_enabled():
        assert convx.get_num_threads() >= 1
        return
    omp = _openmp_runtime()
    assert omp is not None, "convx is built with OpenMP but no OpenMP runtime is loaded"
    omp.omp_get_max_threads.restype = ctypes.c_int
    saved = omp.omp_get_max_threads()
    try:
        omp.omp_set_num_threads(1)  # what torch.set_num_threads(1) does, in this thread only
        here = convx.get_num_threads()
        there = {}
        th = threading.Thread(target=lambda: there.setdefault("n", convx.get_num_threads()))
        th.start()
        th.join()
        assert here == there["n"], (
            f"get_num_threads() is {here} in the main thread and {there['n']} in another")
    finally:
        omp.omp_set_num_threads(saved)


def test_set_num_threads_changes_the_plan():
    big = 1 << 30
    convx.set_num_threads(1)
    assert convx._threads.plan(8, big) == 1
    convx.set_num_threads(min(2, _cpus()))
    expected = min(2, _cpus()) if convx._core.openmp_enabled() else 1
    assert convx._threads.plan(8, big) == expected
    assert convx._threads.plan(1, big) == 1               # one piece of work: serial
    assert convx._threads.plan(8, 100) == 1               # tiny call: serial


def test_limited_lowers_the_count_in_one_python_thread_only():
    """_threads.limited(n): plan() and get_num_threads() give at most n in
    this Python thread for the block (and record the count plan() chose),
    nest, and leave other Python threads and the global setting alone."""
    if not convx._core.openmp_enabled() or _cpus() < 2:
        pytest.skip("needs OpenMP and 2 CPUs to tell one thread from several")
    big, cpus = 1 << 30, _cpus()
    other = {}

    def elsewhere():
        other["counts"] = (convx.get_num_threads(), convx._threads.plan(8, big))

    with convx._threads.limited(1) as record:
        assert record.most == 0                       # plan() not asked yet
        assert convx.get_num_threads() == 1
        assert convx._threads.plan(8, big) == 1 == record.most == convx._threads._local.last
        th = threading.Thread(target=elsewhere)
        th.start()
        th.join()
        with convx._threads.limited(cpus) as inner:   # an inner block cannot raise it
            assert inner.n == 1 and convx.get_num_threads() == 1
    assert other["counts"] == (cpus, min(cpus, 8))
    with convx._threads.limited(2) as record:
        assert convx._threads.plan(8, big) == 2 == record.most
        assert convx._threads.plan(8, 100) == 1 and record.most == 2   # the highest is kept
        with convx._threads.limited(1):
            convx._threads.plan(8, big)
        assert record.most == 2
    convx.set_num_threads(1)                          # the global count still caps it
    with convx._threads.limited(2):
        assert convx.get_num_threads() == 1 and convx._threads.plan(8, big) == 1
    convx.set_num_threads(None)
    assert convx.get_num_threads() == cpus and convx._threads.plan(8, big) == min(cpus, 8)
    assert convx._threads._local.last == min(cpus, 8)
    assert convx._core.user_threads() == 0
    with pytest.raises(RuntimeError), convx._threads.limited(1):   # left on an exception too
        raise RuntimeError
    assert convx.get_num_threads() == cpus


def test_limited_calls_give_the_same_bits():
    """A call under limited(1) gives the forward pass's and the input
    gradient's bits of the default count."""
    x, w, b, g = _data(np.float32, 1)
    want = _three_passes(x, w, b, g, 1)
    with convx._threads.limited(1):
        got = _three_passes(x, w, b, g, 1)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    np.testing.assert_allclose(got[2], want[2], rtol=1e-4, atol=1e-3)


def test_show_config_says_how_convx_runs():
    text = show_config_text()
    if convx._core.openmp_enabled():
        assert f"threads:       {convx.get_num_threads()} (default; at most {_cpus()})" in text
    else:
        assert f"threads:       1 (no OpenMP; get_num_threads() says {convx.get_num_threads()})" \
            in text
    assert "matrix product: convx's own (no BLAS)" in text
    assert "OpenMP:        " + ("yes" if convx._core.openmp_enabled() else "no") in text


# --------------------------------------------------------------------------
# (e) items: blocks of rows, columns, positions, filters and channels give
#     the same bits as whole images
# --------------------------------------------------------------------------

ITEM_CASES = [
    pytest.param((2, 8, 12, 40), (16, 8, 3, 3), 1, id="direct"),          # rows and columns
    pytest.param((1, 16, 1, 700), (16, 16, 1, 5), 1, id="direct-1d"),      # one long row
    pytest.param((2, 8, 12, 40), (16, 8, 3, 3), 2, id="gemm-stride2"),
    pytest.param((1, 64, 10, 10), (64, 64, 3, 3), 1, id="gemm-one-image"),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("x_shape, w_shape, stride", ITEM_CASES)
def test_small_items_give_the_same_bits(x_shape, w_shape, stride, threads, kernel_path,
                                        monkeypatch):
    """With items of 1,024 multiply-adds (a handful of columns, the smallest
    blocks of positions and channels), every pass agrees with the reference,
    and the forward pass and the input gradient are the same bits as with
    whole images."""
    if threads > convx._threads._MAX_THREADS:
        pytest.skip("one CPU")
    convx.set_num_threads(threads)
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    pad = (w_shape[2] // 2, w_shape[3] // 2)
    kw = dict(stride=stride, padding=pad)
    g = rng.standard_normal(convx.conv2d(x, w, **kw).shape)
    whole = _three_passes_kw(x, w, g, kw)
    monkeypatch.setattr(convx._engine, "_ITEM_MACS", 1024)
    monkeypatch.setattr(convx._threads, "_PARALLEL_MIN_MACS", 1)  # threads on any size
    convx._engine.PLANS.clear()
    small = _three_passes_kw(x, w, g, kw)
    assert np.array_equal(small[0], whole[0]) and np.array_equal(small[1], whole[1])
    rk = dict(stride=stride, pads=(pad[0], pad[0], pad[1], pad[1]))
    eps = np.finfo(np.float64).eps
    for got, want, bound, n in (
            (small[0], ref.conv_nd(x, w, **rk), ref.conv_nd(np.abs(x), np.abs(w), **rk),
             w_shape[1] * w_shape[2] * w_shape[3]),
            (small[1], ref.conv_nd_input_grad(x.shape, w, g, **rk),
             ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **rk),
             w_shape[0] * w_shape[2] * w_shape[3]),
            (small[2], ref.conv_nd_weight_grad(x, w.shape, g, **rk),
             ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **rk), g.size)):
        assert np.all(np.abs(got - want) <= 2 * n * eps * bound)


def _three_passes_kw(x, w, g, kw):
    return (convx.conv2d(x, w, **kw), convx.conv2d_input_grad(x.shape, w, g, **kw),
            convx.conv2d_weight_grad(x, w.shape, g, **kw))


# --------------------------------------------------------------------------
# (f) the weight gradient's matrix product shares its items evenly: blocks of
#     positions or of taps, at least two per CPU and a multiple of the CPUs
# --------------------------------------------------------------------------

def test_weight_grad_split_shares_evenly():
    split = convx._engine._weight_grad_split
    nr, kc = convx._engine._NR_MAX, convx._engine._KC
    for t in (1, 2, 3, 4, 8):
        for items in (1, 2, 3, 5, 8, 16):
            for k in (9, 27, 147, 150, 576, 1152, 4608):
                for p in (1, 49, 100, 784, 3136, 12544):
                    kb, nb = split(items, k, p, t)
                    assert 1 <= kb <= k and 1 <= nb <= p
                    assert kb == k or kb % nr == 0
                    nkb, nblk = -(-k // kb), -(-p // nb)
                    assert nb * (nblk - 1) < p   # no empty block
                    if t == 1:   # one CPU: whole depth blocks, no split of the taps
                        assert kb == k and nblk == -(-p // (4 * convx._engine._NC))
                        continue
                    blocks = items * nkb * nblk
                    if items * p >= 4 * t * t:  # room to split: shared evenly
                        assert blocks >= 2 * t and blocks % t == 0, (t, items, k, p, kb, nb)
                    if nkb > 1:   # taps only when positions would make blocks < KC
                        assert 8 * (kb * nkb - k) <= k
                        assert p < 2 * kc or items * -(-p // (4 * convx._engine._NC)) < 2 * t


# One image or two: blocks of taps (a pointwise kernel, whose column matrix
# is the image read transposed; a 3x3 kernel; two groups).
SPLIT_CASES = [
    pytest.param((1, 192, 10, 10), (64, 192, 1, 1), 1, 0, id="pointwise"),
    pytest.param((1, 64, 10, 10), (64, 64, 3, 3), 1, 1, id="3x3"),
    pytest.param((1, 192, 9, 9), (64, 96, 3, 3), 2, 1, id="groups2"),
    pytest.param((2, 128, 7, 7), (96, 128, 3, 3), 1, 1, id="batch2"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, groups, pad", SPLIT_CASES)
def test_weight_grad_in_blocks_of_taps(x_shape, w_shape, groups, pad, dtype, monkeypatch):
    """Each tap's gradient is summed by one item, whole: the same bits on
    one thread and two, and within the rounding bound of the reference."""
    cpus = convx._threads._MAX_THREADS
    monkeypatch.setattr(convx._threads, "_MAX_THREADS", 2)   # plans for two CPUs anywhere
    convx._engine.PLANS.clear()
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    kw = dict(padding=pad, groups=groups, method="gemm")
    g = rng.standard_normal(convx.conv2d(x, w, **kw).shape).astype(dtype)
    _, algorithm, _, args = convx._engine.weight_grad_plan(
        "t", x.shape, w.shape, g.shape, (1, 1), (pad,) * 4, (1, 1), groups, method="gemm",
        dtype=dtype)
    k = w_shape[1] * w_shape[2] * w_shape[3]
    assert algorithm.name == "gemm" and args[3] < k   # kb: the taps are split
    got = []
    for threads in (1, min(2, cpus)):
        convx.set_num_threads(threads)
        got.append(convx.conv2d_weight_grad(x, w.shape, g, **kw))
    assert np.array_equal(got[0], got[1])
    rk = dict(pads=(pad,) * 4, groups=groups)
    want = ref.conv_nd_weight_grad(x.astype(np.float64), w.shape, g.astype(np.float64), **rk)
    bound = ref.conv_nd_weight_grad(np.abs(x).astype(np.float64), w.shape,
                                    np.abs(g).astype(np.float64), **rk)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(got[0] - want) <= 2 * g[0, 0].size * x.shape[0] * eps * bound)


# --------------------------------------------------------------------------
# (g) the GEMM forward pass of few images: blocks of positions, a multiple
#     of the CPUs in number, or one image's filters shared; the same bits
#     whatever the blocks
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_image_forward_in_blocks_of_positions(dtype, monkeypatch):
    engine = convx._engine

    def block(x_shape, w_shape, cpus):
        monkeypatch.setattr(convx._threads, "_MAX_THREADS", cpus)
        n, _, h, wd = x_shape
        call = engine.Call("t", "param", x_shape, w_shape, (n, w_shape[0], h, wd), (1, 1),
                           (1, 1, 1, 1), (1, 1), 1, np.dtype(dtype))
        return engine._forward_gemm_sizes(call)[0]

    nc, least = engine._NC, engine._FORWARD_MIN_BLOCK
    for cpus in (1, 2, 3, 4, 8):
        for n in (1, 2, 3):
            for hw in (7, 10, 14, 20, 28, 40, 56):
                x_shape, w_shape = (n, 64, hw, hw), (64, 64, 3, 3)
                p, nb = hw * hw, block(x_shape, w_shape, cpus)
                blocks, nblk = -(-p // nb), -(-p // nc)
                assert 1 <= nb <= min(p, nc) and nb * (blocks - 1) < p
                if cpus == 1 or n * nblk >= 2 * cpus:   # nothing to share, or enough
                    assert nb == min(p, nc)
                    continue
                assert nb == -(-p // blocks)   # equal blocks
                if n == 1 and nblk == 1:   # whole: the run shares the filters
                    assert nb == p
                elif n * blocks % cpus == 0:   # the fewest blocks that share evenly
                    assert all(n * b % cpus for b in range(nblk, blocks))
                    assert blocks == nblk or nb >= least
                else:   # too small to cut for that: the run shares the filters
                    even = next(b for b in range(nblk, nblk + cpus + 1) if n * b % cpus == 0)
                    assert blocks == nblk and -(-p // even) < least
    assert block((1, 128, 28, 28), (128, 128, 3, 3), 2) == 196   # 4 blocks, not 3
    assert block((1, 256, 14, 14), (256, 256, 3, 3), 2) == 196   # whole, not 2 blocks
    assert block((2, 256, 14, 14), (256, 256, 3, 3), 2) == 196   # one an image
    assert block((3, 64, 14, 14), (128, 64, 3, 3), 2) == 98      # two an image
    assert block((1, 160, 20, 20), (160, 160, 3, 3), 2) == 200   # two, not 384 and 16
    mb = engine._forward_filter_block
    assert [mb(items, 256, 2) for items in (1, 2, 3, 4, 5, 6)] == [128, 256, 128, 256, 256, 256]
    assert mb(1, 100, 2) == 56 and mb(3, 100, 2) == 56 and mb(1, 4, 2) == 4   # whole tiles
    assert mb(2, 96, 3) == 32 and mb(3, 96, 3) == 96 and mb(4, 96, 3) == 32   # 12 items
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 128, 28, 28)).astype(dtype)
    w = rng.standard_normal((96, 128, 3, 3)).astype(dtype)
    got = {}
    for cpus in (1, 2):   # blocks of 384 positions and of 196
        monkeypatch.setattr(convx._threads, "_MAX_THREADS", cpus)
        engine.PLANS.clear()
        got[cpus] = convx.conv2d(x, w, padding=1, method="gemm")
    monkeypatch.undo()
    engine.PLANS.clear()
    assert np.array_equal(got[1], got[2])
    want = ref.conv_nd(x.astype(np.float64), w.astype(np.float64), stride=(1, 1), pads=(1, 1, 1, 1))
    bound = ref.conv_nd(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                        stride=(1, 1), pads=(1, 1, 1, 1))
    assert np.all(np.abs(got[1] - want) <= 2 * 128 * 9 * np.finfo(dtype).eps * bound)


# --------------------------------------------------------------------------
# (h) layers of many channels on small images: the team packs the input
#     gradient's transposed weights and zeroes and adds the weight gradient's
#     accumulators (one image's goes straight into its result); the forward
#     pass reads the weights in place.  Every pass agrees with the reference;
#     the forward pass and the input gradient are the same bits on every
#     thread count, the weight gradient on repeated calls.
# --------------------------------------------------------------------------

# w.T of 256 x 2304 and 96 x 2880 values (team-packed from 2**18), in parts
# of 256 rows, the last part short; accumulators of 589,824 and 276,480
# values (team-summed from 2**16), the last part short.
DEEP_CASES = [
    pytest.param((1, 256, 7, 7), (256, 256, 3, 3), 1, id="one-image-7x7"),
    pytest.param((2, 96, 9, 9), (320, 96, 3, 3), 2, id="two-images-stride2"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride", DEEP_CASES)
def test_deep_layers_share_packing_and_sums(x_shape, w_shape, stride, dtype, monkeypatch):
    scratch, result = convx._engine._scratch, convx._engine._result

    def poisoned(*args, **kwargs):   # what a kernel reads before it writes: NaN
        work = scratch(*args, **kwargs)
        work.fill(np.nan)
        return work

    def poisoned_result(who, shape, dtype, zero=False):   # (a zeroed one is added into)
        out = result(who, shape, dtype, zero)
        if not zero:
            out.fill(np.nan)
        return out

    monkeypatch.setattr(convx._engine, "_scratch", poisoned)
    monkeypatch.setattr(convx._engine, "_result", poisoned_result)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    kw = dict(stride=stride, padding=1, method="gemm")
    g = rng.standard_normal(convx.conv2d(x, w, **kw).shape).astype(dtype)

    def passes():
        return (convx.conv2d(x, w, **kw), convx.conv2d_input_grad(x.shape, w, g, **kw),
                convx.conv2d_weight_grad(x, w.shape, g, **kw))

    runs = at_each_thread_count(lambda: (passes(), passes()))
    for first, again in runs:
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
    for a, b in zip(runs[0][0][:2], runs[-1][0][:2]):
        assert np.array_equal(a, b)
    x64, w64, g64 = (v.astype(np.float64) for v in (x, w, g))
    rk = dict(stride=(stride, stride), pads=(1, 1, 1, 1))
    eps = np.finfo(dtype).eps
    for first, _ in runs:
        for got, want, bound, n in (
                (first[0], ref.conv_nd(x64, w64, **rk),
                 ref.conv_nd(np.abs(x64), np.abs(w64), **rk), w[0].size),
                (first[1], ref.conv_nd_input_grad(x.shape, w64, g64, **rk),
                 ref.conv_nd_input_grad(x.shape, np.abs(w64), np.abs(g64), **rk),
                 w_shape[0] * 9),
                (first[2], ref.conv_nd_weight_grad(x64, w.shape, g64, **rk),
                 ref.conv_nd_weight_grad(np.abs(x64), w.shape, np.abs(g64), **rk),
                 g[:, 0].size)):
            assert got.dtype == np.dtype(dtype)
            assert np.all(np.abs(got - want) <= 2 * n * eps * bound)
