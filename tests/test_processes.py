"""convx inside real processes: fork, multiprocessing, ProcessPoolExecutor,
spawn, and thread creation under a memory limit.

Every case runs in a subprocess of its own, in a process group of its own,
with a timeout: a case that hangs (as every fork case did before convx marked
forked children, inside libgomp's next parallel region) is killed with its
whole group and fails, instead of hanging the suite.

The parent of each fork first makes a threaded call (8 images of 8 x 64 x 64,
16 filters 3x3: an OpenMP team), so that libgomp has a pool of threads that
the child does not inherit.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import convx
from conftest import optional  # (tests/conftest.py)

TIMEOUT = int(os.environ.get("CONVX_TEST_TIMEOUT", "120"))

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")

# The child's code starts with this: data, the expected results computed in
# the parent before any fork (the forward pass and the input gradient are the
# same bits for every thread count, so the child must match them exactly),
# and a threaded call in the parent.
PRELUDE = """
import os, sys, threading, multiprocessing, concurrent.futures
import numpy as np
import convx

rng = np.random.default_rng(0)
X = rng.standard_normal((8, 8, 64, 64))
W = rng.standard_normal((16, 8, 3, 3))
G = rng.standard_normal((8, 16, 64, 64))
X1 = rng.standard_normal((1, 8, 256, 256)).astype(np.float32)  # one image: shared out too

def passes():
    return (convx.conv2d(X, W, padding=1),
            convx.conv2d_input_grad(X.shape, W, G, padding=1),
            convx.conv2d_weight_grad(X, W.shape, G, padding=1),
            convx.conv2d(X1, W.astype(np.float32), padding=1))

# How many OpenMP threads ran convx's last call (convx._core.threads_seen;
# before convx had it, forked children hung, and these cases time out).
SEEN = getattr(convx._core, "threads_seen", lambda: 0)
EXPECTED = passes()        # a threaded call: libgomp now has a pool in this process
PARENT_THREADS = SEEN()

def check(results):
    fwd, dx, dw, fwd1 = results
    assert np.array_equal(fwd, EXPECTED[0]), "forward differs in the child"
    assert np.array_equal(dx, EXPECTED[1]), "input gradient differs in the child"
    # the weight gradient sums per-thread parts: its last bits follow the threads
    assert np.allclose(dw, EXPECTED[2], rtol=1e-12, atol=1e-9), "weight gradient differs"
    assert np.array_equal(fwd1, EXPECTED[3]), "one-image forward differs in the child"
    return True

def child_work(_=None):
    results = passes()
    return check(results), convx.get_num_threads(), SEEN()

def fork_and_wait(child):
    # child() in a forked child, which prints what it finds; the parent
    # waits for it, and fails if the child failed
    pid = os.fork()
    if pid == 0:
        try:
            child()
            os._exit(0)
        except BaseException as e:
            print("child failed:", repr(e), flush=True)
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
"""


def run_case(body, timeout=TIMEOUT, env=None, prelude=PRELUDE):
    """Run prelude + body in a fresh interpreter in its own process group;
    return its stdout.  On timeout the whole group is killed and the test
    fails saying so."""
    code = prelude + textwrap.dedent(body)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the case hung for {timeout} s and was killed; its output:\n{out}\n{err}")
    assert proc.returncode == 0, f"exit status {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def _two_threads():
    if not convx._core.openmp_enabled():
        pytest.skip("convx was built without OpenMP: there is no thread pool to lose")
    if convx.get_num_threads() < 2:
        pytest.skip("one thread (one CPU, or OMP_NUM_THREADS=1): convx never starts a team")


@needs_fork
def test_os_fork_after_a_threaded_call():
    _two_threads()
    out = run_case("""
        fork_and_wait(lambda: print("child", *child_work(), flush=True))
        child_work()      # the parent still runs threads
        print("parent", PARENT_THREADS, SEEN())
    """)
    # a forked child runs one thread: libgomp's pool did not come with it
    assert "child True 1 1" in out
    assert "parent 2 2" in out


@needs_fork
def test_multiprocessing_pool_with_fork():
    _two_threads()
    out = run_case("""
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            results = pool.map(child_work, range(4))
        assert all(ok for ok, _, _ in results), results
        print("pool", sorted({(t, s) for _, t, s in results}))
    """)
    assert "pool [(1, 1)]" in out


@needs_fork
def test_process_pool_executor_with_fork():
    _two_threads()
    out = run_case("""
        ctx = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            results = list(ex.map(child_work, range(4)))
        assert all(ok for ok, _, _ in results), results
        print("executor", sorted({(t, s) for _, t, s in results}))
    """)
    assert "executor [(1, 1)]" in out


@needs_fork
def test_fork_while_another_thread_is_inside_a_call():
    """The child must not inherit anything from the call in flight: no lock,
    no count of active calls, and SciPy's BLAS thread count as the user set it
    (convx runs no BLAS, so it never changes it)."""
    _two_threads()
    optional("threadpoolctl")
    pytest.importorskip("scipy")
    out = run_case("""
        import time
        import scipy.linalg
        from threadpoolctl import threadpool_info, threadpool_limits
        scipy.linalg.blas.dgemm(1.0, np.ones((64, 64)), np.ones((64, 64)))
        def blas():
            return sorted((d["filepath"], d["num_threads"]) for d in threadpool_info()
                          if d["user_api"] == "blas")
        limit = threadpool_limits(1, user_api="blas")   # what the user last set
        before = blas()
        XB = rng.standard_normal((16, 64, 128, 128)).astype(np.float32)
        WB = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
        inside = threading.Event()
        def long_call():
            inside.set()
            for _ in range(3):
                convx.conv2d(XB, WB, padding=1)
        th = threading.Thread(target=long_call)
        th.start()
        inside.wait()
        time.sleep(0.05)
        def child():
            assert blas() == before, (blas(), before)
            print("child", *child_work(), blas() == before, flush=True)
        fork_and_wait(child)
        th.join()
        assert blas() == before
        print("parent", blas() == before)
    """)
    assert "child True 1 1 True" in out and "parent True" in out


@needs_fork
def test_child_that_sets_two_threads():
    """set_num_threads(2) in a forked child is accepted, and the child still
    runs one thread (libgomp cannot start a team there) and gets the right
    results."""
    _two_threads()
    out = run_case("""
        def child():
            convx.set_num_threads(2)
            print("child", *child_work(), convx._core.forked(), flush=True)
        fork_and_wait(child)
    """)
    assert "child True 1 1 True" in out


@needs_fork
def test_fork_of_a_fork():
    _two_threads()
    out = run_case("""
        fork_and_wait(lambda: fork_and_wait(
            lambda: print("grandchild", *child_work()[:2], flush=True)))
    """)
    assert "grandchild True 1" in out


def test_spawned_children_run_threads():
    """spawn (and forkserver) start a fresh interpreter: its children run
    convx's full thread count."""
    _two_threads()
    out = run_case("""
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            print("spawn", pool.apply(convx.get_num_threads), convx.get_num_threads())
    """)
    got, parent = out.split()[1:3]
    assert got == parent


def test_show_config_in_a_forked_child():
    _two_threads()
    if not hasattr(os, "fork"):
        pytest.skip("no fork()")
    out = run_case("""
        import io, contextlib
        def child():
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                convx.show_config()
            print("config", "one thread in a child of fork()" in buf.getvalue(), flush=True)
        fork_and_wait(child)
    """)
    assert "config True" in out


# --------------------------------------------------------------------------
# Thread creation under a memory limit: libgomp ends the process when
# pthread_create fails; convx must end with a result or a Python exception.
# --------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX resource limits")
@pytest.mark.parametrize("headroom_mib", [0, 1, 4, 8, 16, 64])
def test_batch_call_under_an_address_space_limit(headroom_mib):
    """The process's address space is limited (as ``ulimit -v`` does) to what
    it uses now plus a little: a thread's stack (8 MiB by default) may not fit.
    A batch of 200 after asking for 200 threads (refused: more than the CPUs)
    must give the right result or raise MemoryError, never end the process.
    (convx used to accept 200 threads, and libgomp ended the process with
    "Thread creation failed".)"""
    resource = pytest.importorskip("resource")
    del resource
    out = run_case(f"""
        import resource
        X2 = rng.standard_normal((200, 8, 24, 24))
        W2 = rng.standard_normal((16, 8, 3, 3))
        expected = [convx.conv2d(X2[i:i + 1], W2, padding=1) for i in range(len(X2))]
        try:
            convx.set_num_threads(200)   # more threads than CPUs: refused
        except ValueError:
            convx.set_num_threads(len(os.sched_getaffinity(0)))
        with open("/proc/self/statm") as fh:
            vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vm + {headroom_mib} * 2**20,) * 2)
        try:
            got = convx.conv2d(X2, W2, padding=1)
        except MemoryError as e:
            print("outcome MemoryError", type(e).__name__, flush=True)
        else:
            assert all(np.array_equal(got[i:i + 1], e) for i, e in enumerate(expected))
            print("outcome result", SEEN(), flush=True)
    """)
    assert "outcome " in out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX resource limits")
def test_first_team_under_an_address_space_limit():
    """No team has been started yet, and the address space left cannot hold a
    thread's stack: convx finds out before libgomp does, and runs the call on
    the threads it could create (here, the calling thread alone)."""
    pytest.importorskip("resource")
    _two_threads()
    out = run_case("""
        import os, resource
        import numpy as np
        import convx
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 8, 32, 32))
        w = rng.standard_normal((16, 8, 3, 3))
        expected = [convx.conv2d(x[i:i + 1], w, padding=1) for i in range(len(x))]  # serial
        with open("/proc/self/statm") as fh:
            vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        # room for the result (8 MiB) and scratch, not for a thread's 8 MiB stack too
        resource.setrlimit(resource.RLIMIT_AS, (vm + 8 * 2**20 + 6 * 2**20,) * 2)
        got = convx.conv2d(x, w, padding=1)
        assert all(np.array_equal(got[i:i + 1], e) for i, e in enumerate(expected))
        print("threads", convx._core.threads_seen(), "of", convx.get_num_threads(), flush=True)
    """, prelude="")
    assert "threads 1 of" in out


@needs_fork
def test_fork_while_another_thread_imports_scipy_fft():
    """convx imports scipy.fft on its first FFT call.  A fork while another
    thread is inside that import leaves the child the import's lock, held by
    a thread the child does not have: the child's FFT calls then waited on it
    forever.  They now run by the exact algorithm.  The import is held open
    by a finder that waits (before the fix: 5 hangs in 5 runs)."""
    pytest.importorskip("scipy")
    out = run_case("""
        import threading, time
        assert "scipy.fft" not in sys.modules
        XF, WF = np.ones((1, 1, 64, 64)), np.ones((1, 1, 15, 15))
        inside = threading.Event()
        class Slow:
            def find_spec(self, name, path=None, target=None):
                if name == "scipy.fft":      # the module's import lock is held here
                    inside.set()
                    time.sleep(1.0)
                return None
        sys.meta_path.insert(0, Slow())
        th = threading.Thread(target=lambda: convx.conv2d(XF, WF, method="fft"))
        th.start()
        inside.wait()
        def child():
            y = convx.conv2d(XF, WF, method="fft")     # the corner sums 8 x 8 ones
            z = convx.conv2d(XF, WF)
            print("child", y[0, 0, 0, 0], z[0, 0, 0, 0], y.shape, flush=True)
        fork_and_wait(child)
        th.join()
        print("parent", convx.conv2d(XF, WF, method="fft")[0, 0, 0, 0])
    """, prelude="import os, sys, numpy as np, convx\n" + PRELUDE[PRELUDE.index("def fork_and_wait"):])
    assert "child 225.0 225.0 (1, 1, 50, 50)" in out and "parent 225.0" in out


def test_set_num_threads_while_the_interpreter_shuts_down():
    """A finalizer that runs as the interpreter shuts down (a gc callback
    after atexit) may set the thread count: convx read the CPUs it may use at
    import, not with an import as it runs (which raised ModuleNotFoundError
    once sys.modules was being emptied)."""
    out = run_case("""
        import atexit, gc
        state = {"exiting": False, "done": 0}
        atexit.register(lambda: state.update(exiting=True))
        ones = (np.ones((1, 1, 40, 40)), np.ones((1, 1, 11, 11)))
        def cb(phase, info, state=state, convx=convx, print=print, BaseException=BaseException,
               ones=ones):
            if phase != "start" or not state["exiting"] or state["done"] >= 4:
                return
            state["done"] += 1
            for what in ("set_num_threads", "conv2d"):
                try:
                    if what == "set_num_threads":
                        convx.set_num_threads(1)
                    else:
                        convx.conv2d(ones[0], ones[1], method="fft")
                    print(what, "ok", flush=True)
                except BaseException as e:
                    print(what, "raised", repr(e), flush=True)
        gc.callbacks.append(cb)
    """, prelude="import numpy as np, convx\n")
    assert out.count("set_num_threads ok") >= 2 and "raised" not in out, out
