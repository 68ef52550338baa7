"""Memory: no leak on success or on failure, in every pass, serial and OpenMP.

For each function of each pass (pad, forward, input gradient, weight
gradient; public API and notebook names; 1-D and 2-D) a test makes
``N_OK`` successful calls and ``N_BAD`` failing calls (bad shapes and dtypes
raising ``ConvxValueError`` / ``ConvxTypeError``) after a warm-up, and then
checks, after ``gc.collect()``:

* RSS (``/proc/self/statm``) grew by less than ``RSS_LIMIT`` (1 MiB) over
  those calls, made with tracemalloc off (its own tables are resident memory
  too, and grow in steps of megabytes);
* the same calls again, with tracemalloc tracing, leave its current traced
  memory with no net growth: less than ``OK_TRACED_LIMIT`` (4 KiB) over the
  successful calls and less than ``BAD_TRACED_LIMIT`` (32 KiB) over the
  failing ones, each measured on its own.  NumPy reports its data buffers
  to tracemalloc, so a leaked array shows up with its full size; a leak of
  one object (>= 16 bytes) per call is >= 1.6 MB here.  The limits are not
  0 because CPython and NumPy keep a few small objects now and then: formatting a dtype into an error message,
  alternated with other formatting, leaves a slowly growing, decelerating
  few KiB of 56-byte strings live (about 5 KiB over 300,000 pairs, reproduced
  with NumPy alone, no convx: docs/reliability.md), hence the looser limit
  for failing calls, whose messages format dtypes.

Two call sizes:

* ``serial``: tiny inputs, far below the OpenMP threshold
  (``convx._threads._PARALLEL_MIN_MACS``, lowered to 2**17 multiply-adds here), so the batch
  runs on the calling thread;
* ``openmp``: batch 2, 1.1x to 9x the threshold (the smallest calls in
  ``OPENMP_MACS``), with ``set_num_threads(2)``, so the images are shared by
  two OpenMP threads (BLAS held to one thread; per-thread scratch and, for
  the weight gradient, per-thread accumulators).  ``N_OK_OMP`` = 10,000
  successful calls (not 100,000): each call costs several times a tiny one,
  and far more on a machine whose cores are busy with other work (OpenMP's
  barrier then waits for a descheduled thread).

The successful calls of every function but the pads take both of convx's
kernels (the direct kernel and im2col + GEMM; see ``_cases``).

Marked slow: about 3 minutes on the 2-core CI machine (the calls made twice,
untraced and traced), more when its cores are busy (docs/reliability.md has
the figures and the command).
"""
import gc
import inspect
import os
import time
import tracemalloc

import numpy as np
import pytest

import convx
from convx import _threads

pytestmark = pytest.mark.slow

N_OK = 100_000
N_BAD = 10_000
N_OK_OMP = 10_000
N_WARM = 5_000       # ok calls before measuring (a tenth of it at the openmp size)
N_WARM_BAD = 3_000   # failing calls before measuring
RSS_LIMIT = 1 << 20
OK_TRACED_LIMIT = 4 << 10
BAD_TRACED_LIMIT = 32 << 10

PAGE = os.sysconf("SC_PAGE_SIZE")

# multiply-adds of the smallest openmp-size calls (batch 2; see _cases)
OPENMP_MACS = (147_456, 196_608, 262_144)

VE, TE = convx.ConvxValueError, convx.ConvxTypeError


def rss():
    """Resident set size in bytes (second field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def rng_arrays(seed, *shapes, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# --------------------------------------------------------------------------
# The calls.  Each case: a list of successful calls (cycled) and a list of
# (exception class, failing call) pairs (cycled).
# --------------------------------------------------------------------------

def _cases(size):
    """{name: (ok_calls, bad_calls)} for the ``serial`` or ``openmp`` size.

    The successful calls of each function take both of convx's kernels, as
    the engine dispatches today (``_engine._direct_pays``): the direct kernel
    (unit horizontal stride, >= 32 taps: 4 channels x 3x3, or 4 x 9 in 1-D)
    and im2col + GEMM (stride 2, or few taps: 1x1, 2 channels x 3x3, 4 x 3).
    """
    if size == "serial":
        n, c, h, w, f, L, hs, h1 = 1, 4, 5, 6, 4, 9, 5, 5
    else:
        # every call at or above the threshold, the smallest just above it
        # (OPENMP_MACS): 2 * (4*3*3) * (16*16) * 8 = 147,456 multiply-adds for
        # the 3x3 passes (stride 2 on a 32x32 image gives the same), 2 * (2*3*3)
        # * (16*16) * 16 for the 2-channel one, 2 * (4*3) * 1024 * 8 = 196,608
        # for 1-D at stride 2, 2 * 4 * (64*64) * 8 = 262,144 for the 1x1 kernel.
        n, c, h, w, f, L, hs, h1 = 2, 4, 16, 16, 8, 2048, 32, 64
    x, wt, b, x1, w1, w1k9 = rng_arrays(0, (n, c, h, w), (f, c, 3, 3), (f,), (n, c, L),
                                        (f, c, 3), (f, c, 9))
    xs, x11 = rng_arrays(1, (n, c, hs, hs), (n, c, h1, h1))
    x2, wt2 = rng_arrays(2, (n, 2, h, w), (2 * f, 2, 3, 3), dtype=np.float32)
    go = rng_arrays(3, (n, f, h, w))[0]                        # padding 1, stride 1: same size
    gos = rng_arrays(4, (n, f, (hs - 1) // 2 + 1, (hs - 1) // 2 + 1))[0]  # padding 1, stride 2
    go1 = rng_arrays(5, (n, f, L))[0]                          # k=3 padding 1, k=9 padding 4
    go1s = rng_arrays(6, (n, f, (L - 1) // 2 + 1))[0]
    param = np.ascontiguousarray(wt.transpose(1, 0, 2, 3))     # notebook layout (C_in, C_out, kh, kw)
    param11 = rng_arrays(7, (c, f, 1, 1))[0]
    nb_go, nb_go11 = rng_arrays(8, (n, f, h, w), (n, f, h1, h1))  # notebook output grads ('same')
    a1 = rng_arrays(9, (L,))[0]

    # bad arrays made once: the loops time convx, not astype
    x32, go32 = x.astype(np.float32), go.astype(np.float32)
    bad_rank = x[0, 0]
    cplx, a1c, wt_c, nb_go_c = (a.astype(np.complex128) for a in (x, a1, wt, nb_go))
    x_obj, x_str, x1_bool = x.astype(object), x.astype(str), x1.astype(bool)

    cases = {
        "_pad_1d": (
            [lambda: convx._pad_1d(a1, 2)],
            [(VE, lambda: convx._pad_1d(x1, 2)),                 # wrong rank
             (VE, lambda: convx._pad_1d(a1, -1)),                # negative num
             (TE, lambda: convx._pad_1d(a1c, 1)),                 # complex
             (TE, lambda: convx._pad_1d(list(a1), 1))]),          # a list
        "_pad_conv_input": (
            [lambda: convx._pad_conv_input(x, 1)],
            [(VE, lambda: convx._pad_conv_input(bad_rank, 1)),
             (TE, lambda: convx._pad_conv_input(x, 1.5)),
             (TE, lambda: convx._pad_conv_input(cplx, 1)),
             (TE, lambda: convx._pad_conv_input(x_obj, 1))]),
        "conv2d": (
            [lambda: convx.conv2d(x, wt, b, padding=1),
             lambda: convx.conv2d(xs, wt, stride=2, padding=1),
             lambda: convx.conv2d(x2, wt2, padding="same")],
            [(VE, lambda: convx.conv2d(bad_rank, wt)),
             (VE, lambda: convx.conv2d(x[:, :1], wt)),           # channels mismatch
             (VE, lambda: convx.conv2d(x, wt, b[:-1])),          # bias length
             (VE, lambda: convx.conv2d(x[:, :, :1, :1], wt)),    # kernel larger than input
             (TE, lambda: convx.conv2d(x32, wt)),                # mixed dtypes
             (TE, lambda: convx.conv2d(cplx, wt))]),
        "conv1d": (
            [lambda: convx.conv1d(x1, w1, b, padding=1),
             lambda: convx.conv1d(x1, w1, stride=2, padding=1),
             lambda: convx.conv1d(x1, w1k9, padding=4)],
            [(VE, lambda: convx.conv1d(x, w1)),
             (VE, lambda: convx.conv1d(x1, w1, padding=-1)),
             (VE, lambda: convx.conv1d(x1, w1, padding="full")),
             (TE, lambda: convx.conv1d(x1_bool, w1))]),
        "_output": (
            [lambda: convx._output(x, param),
             lambda: convx._output(x11, param11)],
            [(VE, lambda: convx._output(bad_rank, param)),
             (VE, lambda: convx._output(x, param[:1])),         # in-channels mismatch
             (TE, lambda: convx._output(cplx, param)),
             (TE, lambda: convx._output(None, param))]),
        "conv2d_input_grad": (
            [lambda: convx.conv2d_input_grad(x.shape, wt, go, padding=1),
             lambda: convx.conv2d_input_grad(xs.shape, wt, gos, stride=2, padding=1)],
            [(VE, lambda: convx.conv2d_input_grad(x.shape, wt, go)),   # grad_output shape
             (VE, lambda: convx.conv2d_input_grad(x.shape[:3], wt, go, padding=1)),
             (TE, lambda: convx.conv2d_input_grad(x.shape, wt, go32, padding=1)),
             (TE, lambda: convx.conv2d_input_grad(x.shape, wt_c, go, padding=1))]),
        "conv1d_input_grad": (
            [lambda: convx.conv1d_input_grad(x1.shape, w1, go1, padding=1),
             lambda: convx.conv1d_input_grad(x1.shape, w1, go1s, stride=2, padding=1),
             lambda: convx.conv1d_input_grad(x1.shape, w1k9, go1, padding=4)],
            [(VE, lambda: convx.conv1d_input_grad(x1.shape, w1, go1)),
             (VE, lambda: convx.conv1d_input_grad(x1.shape, w1, go1, padding=1, dilation=0)),
             (TE, lambda: convx.conv1d_input_grad(x1.shape, w1, go1, padding=1, stride=1.0))]),
        "_input_grad": (
            [lambda: convx._input_grad(x, nb_go, param),
             lambda: convx._input_grad(x11, nb_go11, param11)],
            [(VE, lambda: convx._input_grad(x, nb_go[:, :1], param)),
             (VE, lambda: convx._input_grad(bad_rank, nb_go, param)),
             (TE, lambda: convx._input_grad(x, nb_go_c, param))]),
        "conv2d_weight_grad": (
            [lambda: convx.conv2d_weight_grad(x, wt.shape, go, padding=1),
             lambda: convx.conv2d_weight_grad(xs, wt.shape, gos, stride=2, padding=1)],
            [(VE, lambda: convx.conv2d_weight_grad(x, wt.shape, go)),
             (VE, lambda: convx.conv2d_weight_grad(x, (f, c + 1, 3, 3), go, padding=1)),
             (TE, lambda: convx.conv2d_weight_grad(x, wt.shape, go, padding=1, groups=1.0)),
             (TE, lambda: convx.conv2d_weight_grad(x_str, wt.shape, go, padding=1))]),
        "conv1d_weight_grad": (
            [lambda: convx.conv1d_weight_grad(x1, w1.shape, go1, padding=1),
             lambda: convx.conv1d_weight_grad(x1, w1.shape, go1s, stride=2, padding=1),
             lambda: convx.conv1d_weight_grad(x1, w1k9.shape, go1, padding=4)],
            [(VE, lambda: convx.conv1d_weight_grad(x1, w1.shape, go1s, padding=1)),
             (VE, lambda: convx.conv1d_weight_grad(x1, (f, c, 0), go1, padding=1)),
             (TE, lambda: convx.conv1d_weight_grad(x1, w1.shape, list(go1s[0, 0, :4]), padding=1))]),
        "_param_grad": (
            [lambda: convx._param_grad(x, nb_go, param),
             lambda: convx._param_grad(x11, nb_go11, param11)],
            [(VE, lambda: convx._param_grad(x, nb_go[:, :, :-1], param)),
             (VE, lambda: convx._param_grad(x, nb_go, param[..., :0])),   # empty kernel
             (TE, lambda: convx._param_grad(x, nb_go, cplx))]),
    }
    return cases


PASSES = {
    "pad": ["_pad_1d", "_pad_conv_input"],
    "forward": ["conv2d", "conv1d", "_output"],
    "input_grad": ["conv2d_input_grad", "conv1d_input_grad", "_input_grad"],
    "weight_grad": ["conv2d_weight_grad", "conv1d_weight_grad", "_param_grad"],
}
PARAMS = [pytest.param(size, p, name, id=f"{size}-{p}-{name}")
          for size in ("serial", "openmp")
          for p, names in PASSES.items() if not (size == "openmp" and p == "pad")
          for name in names]


@pytest.fixture
def two_threads(monkeypatch):
    """convx uses 2 threads (whatever OMP_NUM_THREADS says); restored afterwards.

    The threshold below which a call stays on one thread is lowered to 2**17
    multiply-adds, the size of the ``openmp`` cases, so that 10,000 calls on
    the threaded path stay quick.
    """
    if not convx._core.openmp_enabled() or _threads._MAX_THREADS < 2:
        pytest.skip("convx was built without OpenMP, or this process may use one CPU: "
                    "there is no OpenMP path to check")
    monkeypatch.setattr(_threads, "_PARALLEL_MIN_MACS", 1 << 17)
    convx.set_num_threads(2)
    yield
    convx.set_num_threads(None)


def _run(ok_calls, bad_calls, n_ok, n_bad):
    for i in range(n_ok):
        ok_calls[i % len(ok_calls)]()
    nb = len(bad_calls)
    for i in range(n_bad):
        exc, call = bad_calls[i % nb]
        try:
            got = call()
        except exc:
            continue
        raise AssertionError(
            f"failing call #{i % nb} ({inspect.getsource(call).strip()}) did not raise "
            f"{exc.__name__} (try {i // nb + 1}, after {n_ok} successful calls): it "
            f"returned {type(got).__name__} {getattr(got, 'shape', '')}")


def _traced_growth(run, n_ok, n_bad):
    """Bytes of traced memory that ``run(n_ok, n_bad)`` left behind, after gc."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    run(n_ok, n_bad)
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def _where_it_grows(run, n_ok, n_bad):
    """The top lines of traced growth over one more window (for a failure message)."""
    gc.collect()
    snap = tracemalloc.take_snapshot()
    run(n_ok, n_bad)
    gc.collect()
    return "\n".join(str(s) for s in tracemalloc.take_snapshot().compare_to(snap, "lineno")[:10])


def _check_no_leak(name, ok_calls, bad_calls, n_ok, n_bad, n_warm):
    def run(k_ok, k_bad):
        _run(ok_calls, bad_calls, k_ok, k_bad)

    # warm-up: caches, free lists, OpenMP's thread team, BLAS buffers
    run(n_warm, N_WARM_BAD)
    # RSS, with tracemalloc off: its own tables (a raw malloc per traced
    # allocation, rehashed in steps of megabytes) are in RSS and churn the C
    # heap, so a window with tracing on measures tracemalloc as well as convx
    gc.collect()
    rss0 = rss()
    t0 = time.perf_counter()
    run(n_ok, n_bad)
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss_grown = rss() - rss0
    tracemalloc.start()
    try:
        run(n_warm // 10, N_WARM_BAD // 10)    # tracemalloc's own tables
        ok_grown = _traced_growth(run, n_ok, 0)
        bad_grown = _traced_growth(run, 0, n_bad)
        ok_detail = bad_detail = ""
        if ok_grown >= OK_TRACED_LIMIT:
            ok_detail = _where_it_grows(run, n_ok // 10, 0)
        if bad_grown >= BAD_TRACED_LIMIT:
            bad_detail = _where_it_grows(run, 0, n_bad)
    finally:
        tracemalloc.stop()
    print(f"{name}: {n_ok} ok + {n_bad} failing calls in {elapsed:.1f} s untraced; traced "
          f"{ok_grown:+d} B (ok), {bad_grown:+d} B (failing); RSS {rss_grown:+d} B")
    assert ok_grown < OK_TRACED_LIMIT, (
        f"{name}: tracemalloc's traced memory grew by {ok_grown} B over {n_ok} successful "
        f"calls (limit {OK_TRACED_LIMIT} B); growth over {n_ok // 10} more, by line:\n"
        f"{ok_detail}")
    assert bad_grown < BAD_TRACED_LIMIT, (
        f"{name}: tracemalloc's traced memory grew by {bad_grown} B over {n_bad} failing "
        f"calls (limit {BAD_TRACED_LIMIT} B); growth over {n_bad} more, by line:\n{bad_detail}")
    assert rss_grown < RSS_LIMIT, (
        f"{name}: RSS grew by {rss_grown / 2**20:.2f} MiB over {n_ok} ok + {n_bad} "
        f"failing calls, tracemalloc off (limit {RSS_LIMIT / 2**20:.0f} MiB)")


@pytest.mark.parametrize("size, pass_, name", PARAMS)
def test_no_leak(size, pass_, name, request):
    if size == "openmp":
        request.getfixturevalue("two_threads")
    ok_calls, bad_calls = _cases(size)[name]
    n_ok, n_warm = (N_OK, N_WARM) if size == "serial" else (N_OK_OMP, N_WARM // 10)
    _check_no_leak(f"{size}/{name}", ok_calls, bad_calls, n_ok, N_BAD, n_warm)


def test_openmp_size_really_runs_threads(two_threads):
    """The ``openmp`` inputs above are big enough for convx to share the batch
    among 2 OpenMP threads (so the leak tests cover the threaded path)."""
    for macs in OPENMP_MACS:
        assert macs >= _threads._PARALLEL_MIN_MACS
        assert _threads.plan(2, macs) == 2
