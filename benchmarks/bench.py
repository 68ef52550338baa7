"""convx against PyTorch's CPU convolution and a NumPy im2col, side by side in one process.

    python benchmarks/bench.py [--suite core|classes] [--quick] [--repeat N] [--shapes NAMES]
                               [--dtypes LIST] [--no-loops] [--markdown docs/benchmarks.md]

Two suites.  ``core`` (the default, described first below) is the six shapes
convx was first tuned on.  ``classes`` is layers from well-known networks, one
or two per class the core suite lacks: depthwise 3x3 and 5x5, grouped, 3x3
stride 2, a 7x7 stride-2 stem, 1x1 at stride 1 and 2, one image, LeNet's few
channels, one channel in and out (1-D and 2-D), dilated 3x3, large 2-D kernels
(15x15, 31x31) and a long 1-D one (127 taps) on one channel, and a dilated 1-D
temporal layer (``CLASSES`` below lists them).  It is timed against torch
alone, and the large one-channel kernels also against ``scipy.signal``'s
``oaconvolve`` / ``fftconvolve``.  Its targets: torch/convx >= 1.0 on every
pass and geometric mean >= 2.0 in float64, >= 0.9 and >= 1.3 in float32;
scipy's FFT / convx >= 1.0 on the large kernels; and the roofline: at least
three quarters of the passes reach 50% of their bound, and every pass 25%.

The roofline (both suites; a target in the classes suite): the run measures
the machine's GEMM peak (the best of 3 square 4096 GEMMs of each dtype
through ``scipy.linalg.blas``) and its memory bandwidth (the best of 3
``np.copyto`` of 512 MiB, bytes read and written).  A pass's bound is
min(peak, bandwidth x arithmetic intensity), the intensity being its
direct-convolution FLOPs (2 per multiply-add) over the bytes of its input,
weight and output, each counted once; the table gives convx's GFLOP/s and the
share of the bound it reaches.

What it times, for each shape below, in float64 and float32, three passes:
forward (``convx.conv{1,2}d``), input grad (``convx.conv{1,2}d_input_grad``) and
weight grad (``convx.conv{1,2}d_weight_grad``), against

* PyTorch (when installed): ``torch.nn.functional.conv{1,2}d`` and
  ``torch.nn.grad.conv{1,2}d_input`` / ``_weight``, with ``torch.set_num_threads(2)``;
* ``benchmarks/im2col_numpy.py``: the ordinary vectorised NumPy im2col of the
  book / CS231n (whole-batch column matrix, one matmul; col2im by kernel taps);
* on the notebook CIFAR and book MNIST shapes (float64, ``--no-loops`` skips
  them), the notebook's own pure-Python loops from
  ``benchmarks/baseline/notebook_loops.py`` (``_output_fixed``, ``_input_grad``,
  ``_param_grad``, weights in the notebook's ``[C_in, C_out, k, k]`` layout),
  timed once on ONE image and multiplied by the batch size (they are linear in it).

Shapes (``--shapes`` takes a comma-separated list of these names, or parts of them):

    cifar    notebook CIFAR  (10,3,32,32)   x 16 5x5, padding 2
    mnist    book MNIST      (100,1,28,28)  x 16 5x5, padding 2
    c16      (32,16,32,32)   x 32 3x3, padding 1
    c64      (16,64,56,56)   x 64 3x3, padding 1   (the largest)
    1d-4096  1-D (64,1,4096) x 16 k9, padding 4    (C_out = 16)
    1d-1024  1-D (32,16,1024) x 32 k5, padding 2

Method.  Inputs are standard normal from ``np.random.default_rng(0)`` (float32
is the float64 data cast), C-contiguous, and torch gets the same memory through
``torch.from_numpy`` (no copy is timed).  Before any timing every
implementation's result is checked against torch (against the im2col baseline
when torch is missing; the loops against convx on their one image): same shape
and dtype and ``np.allclose(got, ref, rtol=tol, atol=tol * max|ref|)`` with tol
1e-8 for float64 and 1e-3 for float32.  A case that disagrees is not timed and
fails the run.  Timing is round-robin: each round times one sample of each
implementation in turn (so a noisy moment on a shared machine hits all of them
alike), in reverse order every other round (a call right after another
library's runs slower than right after its own: each then follows itself as
often as another); a sample is enough back-to-back calls to last about ``--min-time``
seconds and gives the time per call.  NumPy's OpenBLAS threads busy-wait for
about 0.1 s after a call, and measured here a convx or torch call right after
a NumPy matmul ran 1.5-2.2x slower; so each im2col sample is followed by a
pause of ``--settle`` seconds (0.25) before the next implementation is timed.
``--repeat`` rounds; the table shows the
minimum ("best of several") and the median, and every ratio uses the minimum:
torch/convx = torch time / convx time, im2col/convx likewise.

Targets (the run exits 1 if one fails or a result disagrees):

* float64: torch/convx >= 1.0 on every pass and geometric mean >= 2.0;
* float32: torch/convx >= 0.6 on every pass and geometric mean >= 1.0;
* Winograd, on c64 in float32, forward and input grad: convx's GFLOP/s
  (direct-convolution FLOPs) >= 1.3 times the run's measured sgemm peak (the
  roofline's), and torch/convx >= 1.2;
* per-call overhead: conv1d of a (1,1,5) input with a (1,1,3) kernel (padding 1),
  its input grad and weight grad, and the notebook name ``convx.conv_1d`` on a
  length-5 signal with a length-3 kernel: median over 45 rounds <= 0.33 times
  the median of torch's call of the same pass on the same input, each round
  timing 2000 calls of every case in turn (a burst of load from another
  tenant then hits all cases alike instead of one whole case).  A tiny call's
  cost is interpreter and dispatch time, which machines differ in, so the
  yardstick is the peer's call in the same rounds: an absolute 5 us failed at
  5.6-7.0 us on an AVX2-only machine where torch took 18-59 us (the notebook's
  own Python loop is shown for scale; benchmarks/ab.py compares builds
  directly);
* contention: each pass that takes >= 50 ms on one thread on the idle machine,
  timed again with convx's default threads while a busy-loop subprocess is
  pinned to the first CPU, takes <= 1.5 x its one-thread idle time (median of
  rounds).  Where fewer than three passes of the suite last that long (a fast
  machine), the slowest others are timed on a batch grown until they do, and
  the table says by how much;
* working memory: the peak memory traced by ``tracemalloc`` (NumPy's array
  allocations are traced) during one convx call on the largest shape, minus
  the output it returns (the inputs exist before tracing starts), must not grow
  with the batch: batch 16 <= 1.5 x batch 4 + 1 MiB.  Memory that a kernel
  takes with C ``malloc`` is not traced; the peak resident-set growth is shown
  beside it as a cross-check.

Threads: torch on 2 threads; convx on its default (``convx.get_num_threads()``,
reported); the im2col baseline on NumPy's BLAS with its default threads.

The machine may be shared: absolute numbers are noisy, the ratios less so as
every implementation runs in the same process, in turn.  If the environment
sets ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` (they change the kernels
OpenBLAS picks, for NumPy's and SciPy's BLAS alike), unset them for the
benchmark command only:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py ...``.
``--markdown PATH`` writes the tables and the run's details to PATH and a bar
plot of torch/convx (matplotlib; ``pip install matplotlib``, for this script
only) next to it with the suffix ``.png``.
"""
import argparse
import contextlib
import copy
import ctypes
import datetime
import functools
import gc
import io
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import timeit
import tracemalloc
from pathlib import Path

import numpy as np
import scipy

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import convx
import im2col_numpy
import report
from baseline import notebook_loops
from report import fmt_time, load_average, md_table, text_table

try:
    import torch
    import torch.nn.functional
    import torch.nn.grad
except ImportError:  # the benchmark still runs, without the torch columns and targets
    torch = None

TORCH_THREADS = 2
PASSES = ("forward", "input grad", "weight grad")
TOL = {"float64": 1e-8, "float32": 1e-3}
TARGETS = {  # dtype: (every pass >=, geometric mean >=); the suite's (SUITE_TARGETS)
    "float64": (1.0, 2.0),
    "float32": (0.6, 1.0),
}
OVERHEAD_TARGET = 0.33      # median per call / torch's median per call, same input, same rounds
MEMORY_SLACK = 1 << 20      # bytes
MEMORY_GROWTH = 1.5         # batch 16 may use at most this times batch 4 (+ slack)
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
CONTENTION_MIN = 0.050      # s: the cases at least this long on one thread, idle machine
CONTENTION_TARGET = 1.5     # their time, default threads, one CPU busy / one thread, idle
CONTENTION_CASES = 3        # at least this many cases: the slowest passes, on a bigger batch


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

class Shape:
    def __init__(self, name, label, x, w, padding, loops=False, stride=1, dilation=1, groups=1,
                 fft=False):
        self.name = name
        self.label = label
        self.x = x                  # input shape, NCHW or NCL
        self.w = w                  # weight shape, torch layout
        self.padding = padding
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.nsp = len(x) - 2
        self.loops = loops          # the notebook's loops are timed on this shape
        self.fft = fft              # one channel: scipy.signal's FFT convolutions are timed too

    def geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def out_shape(self):
        spatial = tuple((s + 2 * self.padding - self.dilation * (k - 1) - 1) // self.stride + 1
                        for s, k in zip(self.x[2:], self.w[2:]))
        return (self.x[0], self.w[0]) + spatial

    def macs(self):
        return int(np.prod(self.out_shape())) * int(np.prod(self.w[1:]))

    def flops(self):
        """Direct-convolution FLOPs of one pass: a multiply and an add per MAC."""
        return 2 * self.macs()

    def bytes(self, itemsize):
        """Input, weight and output, each counted once: every pass reads two of
        them and writes the third."""
        return itemsize * sum(int(np.prod(a)) for a in (self.x, self.w, self.out_shape()))


SHAPES = [
    Shape("cifar", "notebook CIFAR (10,3,32,32) x16 5x5 p2", (10, 3, 32, 32), (16, 3, 5, 5), 2,
          loops=True),
    Shape("mnist", "book MNIST (100,1,28,28) x16 5x5 p2", (100, 1, 28, 28), (16, 1, 5, 5), 2,
          loops=True),
    Shape("c16", "(32,16,32,32) x32 3x3 p1", (32, 16, 32, 32), (32, 16, 3, 3), 1),
    Shape("c64", "(16,64,56,56) x64 3x3 p1", (16, 64, 56, 56), (64, 64, 3, 3), 1),
    Shape("1d-4096", "1-D (64,1,4096) x16 k9 p4", (64, 1, 4096), (16, 1, 9), 4),
    Shape("1d-1024", "1-D (32,16,1024) x32 k5 p2", (32, 16, 1024), (32, 16, 5), 2),
]
LARGEST = "c64"

# The classes suite (--suite classes): layers from well-known networks, one
# or two of each class the core suite does not have.
CLASSES = [
    Shape("dw3", "depthwise 3x3 (8,64,56,56) g64 p1 (MobileNetV2)", (8, 64, 56, 56),
          (64, 1, 3, 3), 1, groups=64),
    Shape("dw5", "depthwise 5x5 (8,96,28,28) g96 p2 (EfficientNet)", (8, 96, 28, 28),
          (96, 1, 5, 5), 2, groups=96),
    Shape("grouped", "grouped 3x3 (8,128,28,28) x128 g8 p1 (ResNeXt)", (8, 128, 28, 28),
          (128, 16, 3, 3), 1, groups=8),
    Shape("s2", "3x3 stride 2 (8,64,56,56) x128 p1 (ResNet)", (8, 64, 56, 56), (128, 64, 3, 3),
          1, stride=2),
    Shape("stem", "7x7 stride-2 stem (4,3,224,224) x64 p3 (ResNet)", (4, 3, 224, 224),
          (64, 3, 7, 7), 3, stride=2),
    Shape("pw", "1x1 (8,64,56,56) x256 (ResNet bottleneck)", (8, 64, 56, 56), (256, 64, 1, 1),
          0),
    Shape("pw-s2", "1x1 stride 2 (8,256,56,56) x512 (ResNet shortcut)", (8, 256, 56, 56),
          (512, 256, 1, 1), 0, stride=2),
    Shape("one", "one image 3x3 (1,128,28,28) x128 p1 (inference)", (1, 128, 28, 28),
          (128, 128, 3, 3), 1),
    Shape("lenet2", "LeNet-5 C3 (64,6,14,14) x16 5x5", (64, 6, 14, 14), (16, 6, 5, 5), 0),
    Shape("filter2d", "plain filter 2-D (16,1,256,256) x1 3x3 p1", (16, 1, 256, 256),
          (1, 1, 3, 3), 1),
    Shape("filter1d", "plain filter 1-D (64,1,16384) x1 k5 p2", (64, 1, 16384), (1, 1, 5), 2),
    Shape("dilated", "dilated 3x3 d2 (4,64,64,64) x64 p2 (DeepLab)", (4, 64, 64, 64),
          (64, 64, 3, 3), 2, dilation=2),
    Shape("big2d", "large kernel 2-D (4,1,256,256) x1 15x15 p7", (4, 1, 256, 256),
          (1, 1, 15, 15), 7, fft=True),
    Shape("big2d-31", "large kernel 2-D (2,1,512,512) x1 31x31 p15", (2, 1, 512, 512),
          (1, 1, 31, 31), 15, fft=True),
    Shape("long1d", "long kernel 1-D (16,1,16384) x1 k127 p63", (16, 1, 16384), (1, 1, 127), 63,
          fft=True),
    Shape("tcn", "dilated 1-D stack (16,64,2048) x64 k3 d4 p4 (TCN)", (16, 64, 2048),
          (64, 64, 3), 4, dilation=4),
]
SUITES = {"core": SHAPES, "classes": CLASSES}
SUITE_TARGETS = {  # suite: {dtype: (every pass >=, geometric mean >=)}
    "core": {"float64": (1.0, 2.0), "float32": (0.6, 1.0)},
    "classes": {"float64": (1.0, 2.0), "float32": (0.9, 1.3)},
}
FFT_TARGET = 1.0            # scipy.signal's best FFT time / convx time, large kernels
# Winograd: on this case, float32, forward and input gradient, GFLOP/s (direct
# convolution's FLOPs) >= this x the run's measured sgemm peak, and torch
# time / convx time >= this
WINOGRAD_TARGET = ("c64", 1.3, 1.2)
ROOFLINE_TARGETS = (0.50, 0.75, 0.25)   # >= 50% of the bound on >= 3/4 of the cases, >= 25% on all


def make_data(shape, dtype):
    """x, w, grad_output for ``shape``: standard normal from default_rng(0), cast to dtype."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape.x)
    w = rng.standard_normal(shape.w)
    g = rng.standard_normal(shape.out_shape())
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in (x, w, g))


def convx_calls(shape, x, w, g):
    k = shape.geometry()
    if shape.nsp == 2:
        fwd, ig, wg = convx.conv2d, convx.conv2d_input_grad, convx.conv2d_weight_grad
    else:
        fwd, ig, wg = convx.conv1d, convx.conv1d_input_grad, convx.conv1d_weight_grad
    return {"forward": lambda: fwd(x, w, **k),
            "input grad": lambda: ig(x.shape, w, g, **k),
            "weight grad": lambda: wg(x, w.shape, g, **k)}


def torch_calls(shape, x, w, g):
    k = shape.geometry()
    xt, wt, gt = (torch.from_numpy(a) for a in (x, w, g))
    if shape.nsp == 2:
        fwd = torch.nn.functional.conv2d
        ig, wg = torch.nn.grad.conv2d_input, torch.nn.grad.conv2d_weight
    else:
        fwd = torch.nn.functional.conv1d
        ig, wg = torch.nn.grad.conv1d_input, torch.nn.grad.conv1d_weight
    return {"forward": lambda: fwd(xt, wt, **k),
            "input grad": lambda: ig(x.shape, wt, gt, **k),
            "weight grad": lambda: wg(xt, w.shape, gt, **k)}


def fft_calls(shape, x, w):
    """scipy.signal's FFT convolutions of the forward pass on one channel: the
    cross-correlation is a convolution with the flipped kernel, over the
    spatial axes of the whole batch ('same' size: padding k // 2, odd k)."""
    import scipy.signal
    axes = tuple(range(1, shape.nsp + 1))
    kernel = np.ascontiguousarray(w[0, 0][(slice(None, None, -1),) * shape.nsp][None])
    images = x[:, 0]
    return {"scipy oaconvolve": lambda: scipy.signal.oaconvolve(images, kernel, mode="same",
                                                                axes=axes)[:, None],
            "scipy fftconvolve": lambda: scipy.signal.fftconvolve(images, kernel, mode="same",
                                                                  axes=axes)[:, None]}


def im2col_calls(shape, x, w, g):
    p = shape.padding
    m = im2col_numpy
    if shape.nsp == 2:
        fwd, ig, wg = m.conv2d, m.conv2d_input_grad, m.conv2d_weight_grad
    else:
        fwd, ig, wg = m.conv1d, m.conv1d_input_grad, m.conv1d_weight_grad
    return {"forward": lambda: fwd(x, w, 1, p),
            "input grad": lambda: ig(x.shape, w, g, 1, p),
            "weight grad": lambda: wg(x, w.shape, g, 1, p)}


def loop_calls(x, w, g):
    """The notebook's loops on the first image, weights in its [C_in, C_out, k, k] layout.

    Returns {pass: (loops call, convx call on the same image, convert convx's result
    to the loops' layout)}.
    """
    x1, g1 = x[:1].copy(), g[:1].copy()
    param = np.ascontiguousarray(w.transpose(1, 0, 2, 3))
    p = w.shape[2] // 2   # the notebook pads by k // 2
    nl = notebook_loops
    return {
        "forward": (lambda: nl._output_fixed(x1, param),
                    lambda: convx.conv2d(x1, w, padding=p), lambda r: r),
        "input grad": (lambda: nl._input_grad(x1, g1, param),
                       lambda: convx.conv2d_input_grad(x1.shape, w, g1, padding=p), lambda r: r),
        "weight grad": (lambda: nl._param_grad(x1, g1, param),
                        lambda: convx.conv2d_weight_grad(x1, w.shape, g1, padding=p),
                        lambda r: r.transpose(1, 0, 2, 3)),
    }


# --------------------------------------------------------------------------
# Checking and timing
# --------------------------------------------------------------------------

def as_numpy(r):
    if torch is not None and isinstance(r, torch.Tensor):
        return r.numpy()
    return np.asarray(r)


def agree(got, ref, dtype):
    """(ok, max |got - ref| / max |ref|)."""
    got, ref = as_numpy(got), as_numpy(ref)
    if got.shape != ref.shape or got.dtype != np.dtype(dtype):
        return False, float("inf")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    scale = scale or 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) / scale
    tol = TOL[dtype]
    ok = bool(np.all(np.isfinite(got))) and bool(np.allclose(got, ref, rtol=tol, atol=tol * scale))
    return ok, err


def per_call(fn, number):
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number
    finally:
        if gc_was:
            gc.enable()


ROOFLINE = None   # {"peak": {dtype: FLOP/s}, "bandwidth": bytes/s}, measured by main()
ROOFLINE_SUITE = False   # the roofline targets apply (the classes suite)


def measure_roofline(dtypes, rounds=3):
    """The machine's two roofline numbers, measured in this run: the best of
    ``rounds`` square 4096 GEMMs of each dtype through scipy.linalg.blas (on
    its BLAS's default threads), and the best of ``rounds`` np.copyto of
    512 MiB, counting the bytes read and written."""
    from scipy.linalg import blas
    peak = {}
    n = 4096
    for dtype in dtypes:
        gemm = blas.sgemm if dtype == "float32" else blas.dgemm
        a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, n)), dtype=dtype)
        b = np.asfortranarray(np.random.default_rng(1).standard_normal((n, n)), dtype=dtype)
        gemm(1.0, a, b)   # warm-up
        best = min(per_call(functools.partial(gemm, 1.0, a, b), 1) for _ in range(rounds))
        peak[dtype] = 2 * n ** 3 / best
    src = np.ones(512 * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(per_call(lambda: np.copyto(dst, src), 1) for _ in range(rounds))
    return {"peak": peak, "bandwidth": 2 * src.nbytes / best}


def time_round_robin(fns, repeat, min_time, settle_after=(), settle=0.0):
    """{name: [seconds per call, one per round]} for already warmed-up callables.

    The rounds take the implementations in turn, in reverse order every other
    round, so that each follows itself as often as it follows another: a call
    right after another library's mostly ran slower than right after its own
    (one call a sample, best of 21, 2 threads, Intel Xeon, 5 layers of the
    classes suite in both dtypes: convx after torch 0.99-1.30x, 9 of 10 over
    1.02; torch after convx 0.97-1.11x, 7 of 10 over 1.02), and a fixed order
    charged that to the same one every round.

    After each sample of an implementation named in ``settle_after`` the run
    sleeps ``settle`` seconds, so that its idle worker threads stop spinning
    before the next implementation is timed.
    """
    def sample(name, fn, number):
        t = per_call(fn, number)
        if name in settle_after:
            time.sleep(settle)
        return t

    numbers = {}
    for name, fn in fns.items():
        t = sample(name, fn, 1)
        numbers[name] = max(1, min(100000, math.ceil(min_time / max(t, 1e-7))))
    samples = {name: [] for name in fns}
    order = list(fns)
    for r in range(repeat):
        for name in order if r % 2 == 0 else order[::-1]:
            samples[name].append(sample(name, fns[name], numbers[name]))
    return samples


class Row:
    def __init__(self, shape, dtype, pass_):
        self.shape, self.dtype, self.pass_ = shape, dtype, pass_
        self.t = {}             # impl -> (min, median)
        self.checks = {}        # impl -> (ok, rel err)
        self.loops = None       # seconds for the whole batch (1 image x N)
        self.loops_check = None

    @property
    def ok(self):
        return all(ok for ok, _ in self.checks.values()) and (
            self.loops_check is None or self.loops_check[0])

    def ratio(self, impl):
        if impl not in self.t or "convx" not in self.t:
            return None
        return self.t[impl][0] / self.t["convx"][0]

    def fft_ratio(self):
        """scipy.signal's faster FFT convolution's time / convx's, or None."""
        times = [t[0] for name, t in self.t.items() if name.startswith("scipy")]
        if not times or "convx" not in self.t:
            return None
        return min(times) / self.t["convx"][0]

    def gflops(self):
        return None if "convx" not in self.t else self.shape.flops() / self.t["convx"][0] / 1e9

    def bound(self):
        """min(peak, bandwidth x arithmetic intensity), in GFLOP/s, from the
        run's machine measurements (ROOFLINE), or None."""
        if ROOFLINE is None:
            return None
        itemsize = np.dtype(self.dtype).itemsize
        intensity = self.shape.flops() / self.shape.bytes(itemsize)
        return min(ROOFLINE["peak"][self.dtype], ROOFLINE["bandwidth"] * intensity) / 1e9

    def of_bound(self):
        g, b = self.gflops(), self.bound()
        return None if g is None or b is None else g / b

    def loops_ratio(self):
        if self.loops is None or "convx" not in self.t:
            return None
        return self.loops / self.t["convx"][0]


_T0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def run_case(shape, dtype, args):
    x, w, g = make_data(shape, dtype)
    impls = {"convx": convx_calls(shape, x, w, g)}
    if torch is not None:
        impls["torch"] = torch_calls(shape, x, w, g)
    if args.suite == "core":   # the baseline does no groups, stride or dilation
        impls["im2col"] = im2col_calls(shape, x, w, g)
    elif torch is None:
        raise SystemExit("the classes suite needs torch (its reference and its targets)")
    if shape.fft:
        impls.update({name: {"forward": fn} for name, fn in fft_calls(shape, x, w).items()})
    ref_impl = "torch" if torch is not None else "im2col"
    rows = []
    for pass_ in PASSES:
        row = Row(shape, dtype, pass_)
        # The first call of each is the check and the warm-up.
        results = {name: calls[pass_]() for name, calls in impls.items() if pass_ in calls}
        ref = results[ref_impl]
        for name, r in results.items():
            if name != ref_impl:
                row.checks[name] = agree(r, ref, dtype)
        del results, ref
        if not row.ok:
            log(f"  MISMATCH {shape.name} {dtype} {pass_}: {row.checks}")
            rows.append(row)
            continue
        order = [n for n in ("torch", "convx", "im2col", "scipy oaconvolve", "scipy fftconvolve")
                 if n in impls and pass_ in impls[n]]
        samples = time_round_robin({n: impls[n][pass_] for n in order},
                                   args.repeat, args.min_time, ("im2col",), args.settle)
        for name, s in samples.items():
            row.t[name] = (min(s), statistics.median(s))
        rows.append(row)
    if shape.loops and dtype == "float64" and not args.no_loops:
        for row, (pass_, (loop_fn, convx_fn, to_loops)) in zip(rows, loop_calls(x, w, g).items()):
            if not row.t:
                continue
            log(f"  notebook loops {shape.name} {pass_} on 1 image ...")
            t0 = time.perf_counter()
            ref = loop_fn()
            row.loops = (time.perf_counter() - t0) * shape.x[0]
            row.loops_check = agree(to_loops(convx_fn()), ref, dtype)
    return rows


# --------------------------------------------------------------------------
# Contention: a neighbour takes one CPU
# --------------------------------------------------------------------------

_BUSY = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@contextlib.contextmanager
def busy_cpu(cpu):
    """A subprocess spinning on ``cpu`` (pinned to it) for the block: a
    neighbour, another tenant or a data loader, that takes one core."""
    proc = subprocess.Popen([sys.executable, "-c", _BUSY, str(cpu)])
    try:
        time.sleep(0.3)   # scheduled and spinning
        yield
    finally:
        proc.kill()
        proc.wait()


def median_time(fn, rounds):
    fn()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def contention(shapes, dtypes, rounds):
    """For each pass that takes at least CONTENTION_MIN on one thread on the
    idle machine: its median time so, and its median time with convx's
    default threads while a busy loop holds the first CPU this process may
    use.  [] when convx runs one thread (nothing to balance).

    On a fast machine few or none of the suite's passes last that long, which
    would leave the target with nothing to judge.  So when fewer than
    CONTENTION_CASES qualify, the slowest of the others are timed again on a
    batch grown until one thread takes at least CONTENTION_MIN: the same layer,
    more images, marked in the table."""
    if convx.get_num_threads() < 2:
        return []
    cpu = min(os.sched_getaffinity(0))

    def one_thread(call):
        convx.set_num_threads(1)
        try:
            return median_time(call, rounds)
        finally:
            convx.set_num_threads(None)

    def measure(shape, dtype, pass_, call, idle, scale):
        log(f"  contention: {shape.name} {dtype} {pass_}"
            + (f" (batch x{scale})" if scale > 1 else "") + " ...")
        with busy_cpu(cpu):
            busy = median_time(call, rounds)
        return {"shape": shape, "dtype": dtype, "pass": pass_, "idle1": idle, "busy": busy,
                "threads": convx.get_num_threads(), "cpu": cpu, "scale": scale}

    out, short = [], []
    for shape in shapes:
        for dtype in dtypes:
            calls = convx_calls(shape, *make_data(shape, dtype))
            for pass_ in PASSES:
                idle = one_thread(calls[pass_])
                if idle >= CONTENTION_MIN:
                    out.append(measure(shape, dtype, pass_, calls[pass_], idle, 1))
                else:
                    short.append((idle, shape, dtype, pass_))
    short.sort(key=lambda t: -t[0])
    for idle, shape, dtype, pass_ in short[:max(0, CONTENTION_CASES - len(out))]:
        scale = math.ceil(1.2 * CONTENTION_MIN / idle)
        big = copy.copy(shape)
        big.x = (shape.x[0] * scale,) + tuple(shape.x[1:])
        call = convx_calls(big, *make_data(big, dtype))[pass_]
        out.append(measure(big, dtype, pass_, call, one_thread(call), scale))
    return out


def contention_table(cont):
    return [{"shape": c["shape"].label + (f" batch x{c['scale']} = {c['shape'].x[0]}"
                                          if c["scale"] > 1 else ""),
             "pass": c["pass"], "dtype": c["dtype"],
             "1 thread, idle": fmt_time(c["idle1"]),
             f"{c['threads']} threads, CPU {c['cpu']} busy": fmt_time(c["busy"]),
             "ratio": f"{c['busy'] / c['idle1']:.2f}",
             "target": f"<= {CONTENTION_TARGET:g}",
             "verdict": "PASS" if c["busy"] <= CONTENTION_TARGET * c["idle1"] else "FAIL"}
            for c in cont]


# --------------------------------------------------------------------------
# Per-call overhead and working memory
# --------------------------------------------------------------------------

def overhead(calls, rounds):
    """(name, median, min, is_target) per tiny call, in seconds per call.

    The cases are timed in turn: each round times ``calls`` calls of every
    case, and the median is over the rounds.  On a shared machine another
    tenant's burst of load then slows every case alike, and a burst shorter
    than half the run cannot move a median (back-to-back loops of one case
    put a whole case inside one burst).
    """
    x = np.random.default_rng(0).standard_normal((1, 1, 5))
    w = np.random.default_rng(1).standard_normal((1, 1, 3))
    g = np.random.default_rng(2).standard_normal((1, 1, 5))
    x1, w1 = x[0, 0].copy(), w[0, 0].copy()
    cases = [
        ("convx.conv1d", lambda: convx.conv1d(x, w, padding=1), True),
        ("convx.conv1d_input_grad", lambda: convx.conv1d_input_grad(x.shape, w, g, padding=1), True),
        ("convx.conv1d_weight_grad",
         lambda: convx.conv1d_weight_grad(x, w.shape, g, padding=1), True),
        ("convx.conv_1d (notebook name)", lambda: convx.conv_1d(x1, w1), True),
    ]
    if torch is not None:
        xt, wt, gt = (torch.from_numpy(a) for a in (x, w, g))
        cases += [
            ("torch conv1d", lambda: torch.nn.functional.conv1d(xt, wt, padding=1), False),
            ("torch conv1d_input", lambda: torch.nn.grad.conv1d_input(x.shape, wt, gt, padding=1),
             False),
            ("torch conv1d_weight",
             lambda: torch.nn.grad.conv1d_weight(xt, w.shape, gt, padding=1), False),
        ]
    cases.append(("notebook loops conv_1d", lambda: notebook_loops.conv_1d(x1, w1), False))
    numbers = []
    for name, fn, target in cases:
        fn()
        # information only: keep slow calls to about the time of the targets'
        numbers.append(calls if target else
                       max(5, min(calls, int(calls * 5e-6 / max(per_call(fn, 10), 1e-9)))))
    samples = [[] for _ in cases]
    for _ in range(rounds):
        for (name, fn, target), n, times in zip(cases, numbers, samples):
            times.append(timeit.Timer(fn).timeit(n) / n)
    return [(name, statistics.median(times), min(times), target)
            for (name, fn, target), times in zip(cases, samples)]


def _rss_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim():
    """Give free heap memory back to the system, so that the RSS peak sees new allocations."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def traced_extra(fn):
    """(tracemalloc peak minus the returned array, peak RSS growth minus it or None)."""
    gc.collect()
    _malloc_trim()
    rss0 = _rss_kib("VmRSS")
    can_rss = rss0 is not None and _reset_hwm()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        r = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    hwm = _rss_kib("VmHWM") if can_rss else None
    nbytes = as_numpy(r).nbytes
    rss = None if hwm is None else hwm * 1024 - rss0 * 1024 - nbytes
    del r
    gc.collect()
    return peak - nbytes, rss


def memory(dtypes, with_im2col):
    shape = next(s for s in SHAPES if s.name == LARGEST)
    rows = []
    for dtype in dtypes:
        per_batch = {}
        for n in (4, 16):
            sub = Shape(shape.name, shape.label, (n,) + shape.x[1:], shape.w, shape.padding)
            x, w, g = make_data(sub, dtype)
            calls = convx_calls(sub, x, w, g)
            for pass_ in PASSES:
                calls[pass_]()   # warm-up outside the trace
                per_batch[(n, pass_)] = traced_extra(calls[pass_])
            if with_im2col and n == 16:
                icalls = im2col_calls(sub, x, w, g)
                for pass_ in PASSES:
                    per_batch[("im2col", pass_)] = traced_extra(icalls[pass_])
            del x, w, g, calls
        k = int(np.prod(shape.w[1:]))
        p = int(np.prod(shape.out_shape()[2:]))
        whole = 16 * k * p * np.dtype(dtype).itemsize
        for pass_ in PASSES:
            e4, r4 = per_batch[(4, pass_)]
            e16, r16 = per_batch[(16, pass_)]
            ok = e16 <= MEMORY_GROWTH * e4 + MEMORY_SLACK
            rows.append({"dtype": dtype, "pass": pass_, "extra4": e4, "extra16": e16,
                         "rss4": r4, "rss16": r16, "ok": ok, "whole": whole,
                         "im2col": per_batch.get(("im2col", pass_), (None, None))[0]})
    return rows


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 100 else f"{r:.2f}x"


def fmt_mib(b):
    return "-" if b is None else f"{b / 2**20:.1f} MiB"


def verdict(row):
    if not row.ok:
        return "MISMATCH"
    r = row.ratio("torch")
    if r is None:
        return "n/a"
    return "PASS" if r >= TARGETS[row.dtype][0] else "FAIL"


def table_rows(rows):
    out = []
    for r in rows:
        errs = dict(r.checks)
        if r.loops_check is not None:
            errs["loops"] = r.loops_check
        out.append({
            "shape": r.shape.label,
            "pass": r.pass_,
            "dtype": r.dtype,
            "torch min": fmt_time(r.t.get("torch", (None,))[0]),
            "torch med": fmt_time(r.t.get("torch", (None, None))[1]),
            "convx min": fmt_time(r.t.get("convx", (None,))[0]),
            "convx med": fmt_time(r.t.get("convx", (None, None))[1]),
            "im2col min": fmt_time(r.t.get("im2col", (None,))[0]),
            "im2col med": fmt_time(r.t.get("im2col", (None, None))[1]),
            "loops (1 img x N)": fmt_time(r.loops),
            "torch/convx": fmt_ratio(r.ratio("torch")),
            "im2col/convx": fmt_ratio(r.ratio("im2col")),
            "loops/convx": fmt_ratio(r.loops_ratio()),
            "FFT/convx": fmt_ratio(r.fft_ratio()),
            "convx GFLOP/s": "-" if r.gflops() is None else f"{r.gflops():.1f}",
            "bound GFLOP/s": "-" if r.bound() is None else f"{r.bound():.1f}",
            "% of bound": "-" if r.of_bound() is None else f"{100 * r.of_bound():.0f}%",
            "max rel err": ", ".join(f"{k} {e:.0e}" if ok else f"{k} WRONG ({e:.0e})"
                                     for k, (ok, e) in errs.items()),
            "target": f">= {TARGETS[r.dtype][0]:g}",
            "verdict": verdict(r),
        })
    # a column with nothing in it (no im2col in the classes suite, no loops
    # but on two core shapes) is left out
    keys = [k for k in out[0] if any(row[k] != "-" for row in out)] if out else []
    return [{k: row[k] for k in keys} for row in out]


def status(ok, fail="FAIL"):
    return "SKIP" if ok is None else "PASS" if ok else fail


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summaries(rows, overhead_rows, memory_rows, cont=()):
    """[(ok, text)] for every target; ok is None for a target that could not be measured."""
    out = []
    if not all(r.ok for r in rows):
        bad = [f"{r.shape.name} {r.dtype} {r.pass_}" for r in rows if not r.ok]
        out.append((False, "correctness: results disagree on " + ", ".join(bad)))
    else:
        checked = sorted({name for r in rows for name in r.checks})
        out.append((True, f"correctness: all {len(rows)} cases agree ("
                          + (" and ".join(checked) + " against torch" if torch is not None
                             else "convx against im2col")
                          + ("; the loops against convx on one image"
                             if any(r.loops_check for r in rows) else "") + ")"))
    for dtype, (floor, gm_target) in TARGETS.items():
        rs = [r for r in rows if r.dtype == dtype and r.ok]
        if not rs:
            continue
        if torch is None:
            out.append((None, f"{dtype}: torch/convx targets skipped (torch is not installed)"))
            continue
        ratios = [(r.ratio("torch"), r) for r in rs]
        worst, wr = min(ratios, key=lambda t: t[0])
        gm = geomean([t[0] for t in ratios])
        ok = worst >= floor and gm >= gm_target
        out.append((ok,
                    (f"{dtype}: torch/convx geometric mean {gm:.2f}x (target >= {gm_target:g}), "
                     f"lowest {worst:.2f}x on {wr.shape.name} {wr.pass_} "
                     f"(target every pass >= {floor:g}), over {len(rs)} passes")))
    fft_rows = [r for r in rows if r.fft_ratio() is not None]
    for r in fft_rows:
        ratio = r.fft_ratio()
        out.append((ratio >= FFT_TARGET,
                    (f"large kernel: {r.shape.name} {r.dtype} forward, scipy.signal's FFT / convx "
                     f"{ratio:.2f}x (target >= {FFT_TARGET:g})")))
    case, of_peak, of_torch = WINOGRAD_TARGET
    for r in rows:
        if (r.shape.name, r.dtype) != (case, "float32") or r.pass_ == "weight grad" or not r.ok:
            continue
        peak = None if ROOFLINE is None else ROOFLINE["peak"]["float32"] / 1e9
        peer = r.ratio("torch")
        if peak is None or peer is None:
            out.append((None, (f"winograd: {case} float32 {r.pass_}: target skipped (no "
                               f"{'torch' if peer is None else 'peak'} measured)")))
            continue
        out.append((r.gflops() >= of_peak * peak and peer >= of_torch,
                    (f"winograd: {case} float32 {r.pass_} {r.gflops():.0f} GFLOP/s, "
                     f"{r.gflops() / peak:.2f}x the sgemm peak (target >= {of_peak:g}x), "
                     f"{peer:.2f}x torch (target >= {of_torch:g}x)")))
    bounded = [r for r in rows if r.ok and r.of_bound() is not None]
    if bounded and ROOFLINE_SUITE:
        half, share, floor = ROOFLINE_TARGETS
        above = sum(r.of_bound() >= half for r in bounded)
        worst = min(bounded, key=lambda r: r.of_bound())
        ok = above >= share * len(bounded) and worst.of_bound() >= floor
        out.append((ok,
                    (f"roofline: {above} of {len(bounded)} passes reach >= {half:.0%} of "
                     f"their bound (target >= {share:.0%} of them); the lowest "
                     f"{worst.of_bound():.0%} on {worst.shape.name} {worst.dtype} {worst.pass_} "
                     f"(target every pass >= {floor:.0%})")))
    for name, med, _, peer, peer_med in _overhead_pairs(overhead_rows):
        if peer_med is None:
            out.append((None, f"overhead: {name}: target skipped (torch is not installed)"))
            continue
        out.append((med <= OVERHEAD_TARGET * peer_med,
                    (f"overhead: {name} tiny input {med * 1e6:.2f} us per call, "
                     f"{med / peer_med:.2f} x {peer} ({peer_med * 1e6:.2f} us) "
                     f"(median; target <= {OVERHEAD_TARGET:g} x)")))
    if cont:
        worst = max(cont, key=lambda c: c["busy"] / c["idle1"])
        ratio = worst["busy"] / worst["idle1"]
        out.append((ratio <= CONTENTION_TARGET,
                    (f"contention: {len(cont)} passes take >= {CONTENTION_MIN * 1e3:.0f} ms on "
                     f"one thread ({sum(c['scale'] > 1 for c in cont)} of them on a bigger batch); "
                     f"with CPU {worst['cpu']} held by a busy loop, "
                     f"{worst['threads']} threads take at most {ratio:.2f}x their one-thread "
                     f"idle time ({worst['shape'].name} {worst['dtype']} {worst['pass']}; "
                     f"median of rounds; target <= {CONTENTION_TARGET:g}x)")))
    for m in memory_rows:
        out.append((m["ok"], (f"memory: {m['dtype']} {m['pass']} on (N,64,56,56): extra "
                              f"{fmt_mib(m['extra4'])} at N=4, {fmt_mib(m['extra16'])} at N=16 "
                              f"(target: N=16 <= {MEMORY_GROWTH:g} x N=4 + 1 MiB)")))
    return out


# Each of convx's tiny calls against torch's call of the same pass on the
# same input: the overhead targets' yardstick.
_OVERHEAD_PEERS = {"convx.conv1d": "torch conv1d",
                   "convx.conv1d_input_grad": "torch conv1d_input",
                   "convx.conv1d_weight_grad": "torch conv1d_weight",
                   "convx.conv_1d (notebook name)": "torch conv1d"}


def _loop_median(overhead_rows):
    """The notebook loop's median per call (information)."""
    return next(med for name, med, _, _ in overhead_rows if name == "notebook loops conv_1d")


def _overhead_pairs(overhead_rows):
    """(name, median, min, peer, peer's median or None) for each target row."""
    medians = {name: med for name, med, _, _ in overhead_rows}
    return [(name, med, mn, _OVERHEAD_PEERS[name], medians.get(_OVERHEAD_PEERS[name]))
            for name, med, mn, target in overhead_rows if target]


def overhead_table(overhead_rows):
    loop = _loop_median(overhead_rows)
    peers = {name: (peer, peer_med) for name, _, _, peer, peer_med in
             _overhead_pairs(overhead_rows)}
    out = []
    for name, med, mn, target in overhead_rows:
        _peer, peer_med = peers.get(name, (None, None))
        out.append({
            "call (1-D, length 5, kernel 3)": name, "median per call": f"{med * 1e6:.2f} us",
            "min per call": f"{mn * 1e6:.2f} us",
            "/ torch's": "-" if peer_med is None else f"{med / peer_med:.2f}",
            "/ notebook loop": f"{med / loop:.2f}",
            "target": (f"<= {OVERHEAD_TARGET:g} x torch's" if target else "info"),
            "verdict": ("-" if not target else "SKIP" if peer_med is None
                        else "PASS" if med <= OVERHEAD_TARGET * peer_med else "FAIL")})
    return out


def memory_table(memory_rows):
    out = []
    for m in memory_rows:
        out.append({
            "dtype": m["dtype"], "pass": m["pass"],
            "convx extra N=4": fmt_mib(m["extra4"]), "convx extra N=16": fmt_mib(m["extra16"]),
            "RSS growth N=4": fmt_mib(m["rss4"]), "RSS growth N=16": fmt_mib(m["rss16"]),
            "im2col baseline extra N=16": fmt_mib(m["im2col"]),
            "whole-batch column matrix N=16": fmt_mib(m["whole"]),
            "verdict": "PASS" if m["ok"] else "FAIL",
        })
    return out


def blas_threads():
    """{library file: threads} for the OpenBLAS copies loaded (NumPy's, SciPy's)."""
    out = {}
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f
                            if "openblas" in ln.lower() and ln.split()[-1].startswith("/")})
    except OSError:
        return out
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                    "openblas_get_num_threads64_", "openblas_get_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.restype = ctypes.c_int
                out[os.path.basename(path)] = fn()
                break
    return out


def machine_info():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        convx.show_config()
    return {
        "nproc": report.cpu_count(), "cpu": report.cpu_model(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__,
        "scipy": scipy.__version__, "torch": torch.__version__ if torch is not None else "not installed",
        "convx": convx.__version__, "show_config": buf.getvalue().rstrip(),
        "convx threads": convx.get_num_threads(),
        "torch threads": torch.get_num_threads() if torch is not None else None,
        "openblas env": {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ},
        "thread env": report.thread_env(),
        "free page reporting": report.free_page_reporting(),
    }


def busy_note(load, nproc):
    """A warning when the 1-minute load average says other work shares the cores."""
    try:
        one = float(load.split()[0])
    except (ValueError, IndexError):
        return None
    if one <= 0.5 * nproc:
        return None
    return (f"the 1-minute load average ({one:.2f}) shows other work on these {nproc} cores: "
            "the threads of every implementation wait for cores, absolute times are "
            "inflated and the ratios are noisier than on an idle machine")


def openblas_note(info):
    cmd = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py ..."
    if info["openblas env"]:
        set_ = ", ".join(f"{k}={v}" for k, v in info["openblas env"].items())
        return (f"**This run's environment set {set_}**: these force OpenBLAS's kernel choice "
                f"(NumPy's and SciPy's, so convx's and the im2col baseline's) away from what a "
                f"user gets.  Unset them for the benchmark command only: `{cmd}`.")
    return ("`OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` were unset in this run.  Where an "
            "environment sets them (they force OpenBLAS's kernel choice), unset them for the "
            f"benchmark command only: `{cmd}`.")


def plot(path, rows, info, when):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (`pip install matplotlib`): no plot written"
    timed = [r for r in rows if r.ratio("torch") is not None]
    if not timed:
        return "no torch ratios to plot"
    groups = []
    for r in timed:
        key = (r.shape.name, r.pass_)
        if key not in groups:
            groups.append(key)
    dtypes = [d for d in TARGETS if any(r.dtype == d for r in timed)]
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(groups) + 2), 5.5))
    width = 0.8 / len(dtypes)
    colors = {"float64": "#1f77b4", "float32": "#ff7f0e"}
    for i, dtype in enumerate(dtypes):
        xs, ys = [], []
        for j, key in enumerate(groups):
            r = next((r for r in timed if (r.shape.name, r.pass_) == key and r.dtype == dtype),
                     None)
            if r is not None:
                xs.append(j + (i - (len(dtypes) - 1) / 2) * width)
                ys.append(r.ratio("torch"))
        bars = ax.bar(xs, ys, width, label=dtype, color=colors.get(dtype))
        ax.bar_label(bars, labels=[f"{y:.2g}" for y in ys], fontsize=6, padding=1)
    ax.set_yscale("log")
    ax.axhline(TARGETS["float64"][0], color="black", lw=1,
               label=f"{TARGETS['float64'][0]:g} (float64: every pass)")
    ax.axhline(TARGETS["float32"][0], color="red", lw=1, ls="--",
               label=f"{TARGETS['float32'][0]:g} (float32: every pass)")
    short = {"forward": "fwd", "input grad": "dx", "weight grad": "dw"}
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{s}\n{short[p]}" for s, p in groups], fontsize=8)
    ax.set_ylabel("torch time / convx time (log scale; > 1: convx faster)")
    ax.set_title(f"convx vs torch {info['torch']} CPU, {TORCH_THREADS} threads, best of several "
                 f"({when}; nproc {info['nproc']}, {info['cpu']})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_markdown(path, png, plot_error, rs, rows, ov, mem, sums, info, args, command, when,
                   elapsed, cont=()):
    overall = all(ok is not False for ok, _ in sums)
    partial = args.shapes or args.dtypes != "float64,float32"
    core = args.suite == "core"
    roof = info["roofline"]
    lines = [
        "# convx against PyTorch and a NumPy im2col" if core else
        "# convx against PyTorch on layers of well-known networks (the classes suite)",
        "",
        "Generated by `benchmarks/bench.py`; rerun it to refresh this page and its plot.",
        "",
        f"- date: {when}",
        f"- command: `{command}`" + (" (a partial run)" if partial else ""),
        f"- wall time of the run: {elapsed:.0f} s",
        (f"- machine: nproc {info['nproc']}, {info['cpu']}, {info['platform']}; load average "
         f"(1, 5, 15 min) {info['load before']} before, {info['load after']} after"),
        (f"- versions: Python {info['python']}, NumPy {info['numpy']}, SciPy {info['scipy']}, "
         f"torch {info['torch']}, convx {info['convx']}"),
        (f"- threads: torch {info['torch threads']} (`torch.set_num_threads({TORCH_THREADS})`), "
         if torch is not None else "- threads: torch not installed, ")
        + f"convx {info['convx threads']} (`convx.get_num_threads()`, its default), "
        "im2col baseline: NumPy's BLAS, default threads; OpenBLAS copies loaded and their "
        "thread counts after the run: "
        + (", ".join(f"{k} {v}" for k, v in info["blas threads"].items()) or "unknown")
        + "; thread variables: "
        + (", ".join(f"{k}={v}" for k, v in info["thread env"].items()) or "unset"),
        f"- {openblas_note(info)}",
        "- roofline, measured in this run: GEMM peak "
        + ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in roof["peak"].items())
        + " (the best of 3 square 4096 `scipy.linalg.blas` GEMMs, its BLAS's default threads); "
        f"memory bandwidth {roof['bandwidth'] / 1e9:.1f} GB/s (the best of 3 `np.copyto` of "
        "512 MiB, bytes read and written).  A pass's bound is min(peak, bandwidth x its "
        "FLOPs / the bytes of its input, weight and output, each counted once); its GFLOP/s "
        "count direct-convolution FLOPs (2 per multiply-add), whatever the algorithm.",
    ]
    busy = busy_note(info["load before"], info["nproc"])
    if busy:
        lines.append(f"- **Busy machine at the start of this run**: {busy}.")
    if info.get("free page reporting"):
        lines.append("- **A virtual machine whose balloon reports free pages to the host**: "
                     "memory left free for a few seconds is faulted in again by the host "
                     "when next written, unseen by the guest, so a pass that writes a large "
                     "fresh result can take several times its time in one run and not in "
                     "the next (docs/performance.md, `benchmarks/fresh_memory.py`).")
    lines += [
        "",
        "`convx.show_config()`:",
        "",
        "```",
        info["show_config"],
        "```",
        "",
        "**The machine is shared**: other work may have run beside the benchmark, so absolute "
        "times are noisy.  The ratios are measured side by side in one process: every round "
        "times torch, convx and the im2col baseline in turn on the same arrays, in reverse "
        "order every other round (a call right after another library's ran up to 1.3x "
        "slower than right after its own), "
        f"{args.repeat} rounds, each sample about {args.min_time * 1e3:g} ms of back-to-back "
        f"calls, with a {args.settle:g} s pause after each im2col sample while NumPy's BLAS "
        "threads stop spinning (they slow whatever runs next by up to 2x).  Ratios use the minimum over the rounds (best of several); the median is shown "
        "beside it.  Before timing, every result is checked against torch "
        + ("" if torch is not None else "(not installed here: against the im2col baseline) ")
        + "(`np.allclose`, rtol = atol / max|ref| = 1e-8 in float64, 1e-3 in float32); the "
        "max rel err column is max|got - ref| / max|ref|.",
        "",
        "## Targets: " + ("**PASS**" if overall else "**FAIL**"),
        "",
    ]
    lines += [f"- {status(ok, '**FAIL**')}: {text}" for ok, text in sums]
    lines += ["", "## Time per call", "", md_table(rs), ""]
    if png is not None:
        lines += [f"![torch time / convx time per pass]({png.name})", ""]
    elif plot_error:
        lines += [f"(Plot: {plot_error}.)", ""]
    if cont:
        lines += [
            "## Contention",
            "",
            (f"Every pass of the run that takes at least {CONTENTION_MIN * 1e3:.0f} ms on one "
             "thread on the idle machine (`convx.set_num_threads(1)`), timed again with "
             "convx's default threads while a subprocess of the benchmark's own spins on one "
             "CPU (pinned there with `sched_setaffinity`): a neighbour that takes a core.  "
             "Medians of the rounds.  A static split of the work among the threads would wait "
             "for the one that shares its CPU."),
            "",
            md_table(contention_table(cont)),
            "",
        ]
    lines += [
        "Notes:",
        "",
        ("- Inputs: standard normal from `np.random.default_rng(0)` (float32: the float64 "
         "data cast), weights in PyTorch's layout `(C_out, C_in // groups, k[, k])`.  torch "
         "gets the same memory through `torch.from_numpy`."),
        ("- torch calls: `torch.nn.functional.conv{1,2}d`, `torch.nn.grad.conv{1,2}d_input`, "
         "`torch.nn.grad.conv{1,2}d_weight`, with the same stride, padding, dilation and "
         "groups."),
    ]
    if core:
        lines += [
            "- The 1-D (64,1,4096) k9 case has 16 output channels.",
            ("- im2col: `benchmarks/im2col_numpy.py`, the book's / CS231n's vectorised NumPy "
             "(a whole-batch column matrix and one matmul; col2im by a loop over kernel taps)."),
            ("- loops: the notebook's pure-Python loops (`benchmarks/baseline/notebook_loops.py`: "
             "`_output_fixed`, `_input_grad`, `_param_grad`, weights as `[C_in, C_out, k, k]`), "
             "float64 only, **timed once on one image and multiplied by the batch size** "
             "(10 for CIFAR, 100 for MNIST); checked against convx on that image."),
            "",
        ]
    else:
        lines += [
            ("- Every shape is timed against torch only (the im2col baseline does no groups, "
             "stride or dilation); the large one-channel kernels also against "
             "`scipy.signal.oaconvolve` and `fftconvolve` (forward: the correlation as a "
             "convolution with the flipped kernel, 'same' size, over the batch), whose faster "
             "is the FFT/convx ratio."),
            "",
        ]
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return
    lines += [
        "## Per-call overhead",
        "",
        (f"Median (and minimum) over {args.overhead_rounds} rounds; each round times "
         f"{args.overhead_calls} calls of every row in turn, so that a burst of load from "
         "another tenant slows all rows alike.  float64, padding 1 (the notebook name: its "
         "'same' convolution of a length-5 signal).  The target is a ratio to torch's call "
         "of the same pass on the same input, timed in the same rounds: a tiny call costs "
         "mostly interpreter and dispatch time, which machines differ in (an absolute 5 us "
         "failed at 5.6-7.0 us on an AVX2-only machine where torch took 18-59 us).  The "
         "notebook's own Python loop is shown for scale."),
        "",
        md_table(overhead_table(ov)),
        "",
        "## Working memory on the largest shape, (N,64,56,56) x64 3x3 p1",
        "",
        ("Extra = the peak memory `tracemalloc` traced during one convx call (NumPy's array "
         "allocations are traced) minus the output it returns; the inputs exist before "
         "tracing starts.  RSS growth (peak resident set during the call minus the resident "
         "set before and the output) is a cross-check that also sees memory a kernel takes "
         "with C `malloc`; it can read low when freed memory is reused.  convx's extra should "
         "be per-thread scratch, the same for N = 4 and N = 16, unlike the baseline's "
         "whole-batch column matrix."),
        "",
        md_table(memory_table(mem)),
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="fewer rounds and shorter samples (a smoke run, noisier)")
    ap.add_argument("--repeat", type=int, default=None, metavar="N",
                    help="timing rounds per case (default 7, --quick 3)")
    ap.add_argument("--min-time", type=float, default=None, metavar="S",
                    help="seconds of back-to-back calls per sample (default 0.02, --quick 0.005)")
    ap.add_argument("--settle", type=float, default=0.25, metavar="S",
                    help="seconds to pause after each im2col sample, while NumPy's BLAS "
                         "threads stop spinning (default 0.25)")
    ap.add_argument("--suite", choices=sorted(SUITES), default="core",
                    help="core: the six shapes convx was first tuned on (default); classes: "
                         "layers of well-known networks, one or two per class")
    ap.add_argument("--shapes", default="", metavar="NAMES",
                    help="comma-separated shape names or parts of them: core: "
                         + ", ".join(s.name for s in SHAPES) + "; classes: "
                         + ", ".join(s.name for s in CLASSES) + " (default: all)")
    ap.add_argument("--dtypes", default="float64,float32",
                    help="comma-separated, from float64,float32 (default: both)")
    ap.add_argument("--no-loops", action="store_true", help="skip the notebook's loops")
    ap.add_argument("--no-contention", action="store_true",
                    help="skip the contention target (a busy loop pinned to one CPU)")
    ap.add_argument("--markdown", metavar="PATH",
                    help="write the report to PATH and the plot to PATH with suffix .png")
    args = ap.parse_args(argv)
    report.require_fresh_build(convx)
    args.repeat = args.repeat if args.repeat is not None else (3 if args.quick else 7)
    args.min_time = args.min_time if args.min_time is not None else (0.005 if args.quick else 0.02)
    args.overhead_calls = 1000 if args.quick else 2000
    args.overhead_rounds = 9 if args.quick else 45
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.min_time <= 0:
        ap.error("--min-time must be > 0")
    if args.settle < 0:
        ap.error("--settle must be >= 0")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtypes or any(d not in TARGETS for d in dtypes):
        ap.error("--dtypes takes float64 and/or float32")
    wanted = [w.strip().lower() for w in args.shapes.split(",") if w.strip()]
    suite = SUITES[args.suite]
    shapes = [s for s in suite if not wanted or any(w in s.name for w in wanted)]
    if not shapes:
        ap.error(f"--shapes {args.shapes!r} matches none of "
                 + ", ".join(s.name for s in suite))
    global TARGETS, ROOFLINE, ROOFLINE_SUITE
    TARGETS = SUITE_TARGETS[args.suite]
    ROOFLINE_SUITE = args.suite == "classes"

    if torch is not None:
        torch.set_num_threads(TORCH_THREADS)
    command = "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    info["load before"] = load_average()
    print(f"{when}; nproc {info['nproc']}; {info['cpu']}; Python {info['python']}, NumPy "
          f"{info['numpy']}, SciPy {info['scipy']}, torch {info['torch']}, convx {info['convx']}")
    print(f"threads: torch {info['torch threads'] or '-'}, convx {info['convx threads']}; "
          f"load average {info['load before']}")
    print(f"command: {command}")
    if info["openblas env"]:
        print("WARNING: " + openblas_note(info).replace("**", ""))
    busy = busy_note(info["load before"], info["nproc"])
    if busy:
        print("WARNING: " + busy)
    if torch is None:
        print("WARNING: torch is not installed: no torch columns, torch targets skipped")
    if info["convx threads"] != TORCH_THREADS:
        print(f"WARNING: convx runs {info['convx threads']} threads, torch {TORCH_THREADS}")

    start = time.perf_counter()
    log("the roofline: GEMM peak and memory bandwidth ...")
    ROOFLINE = measure_roofline(dtypes)
    info["roofline"] = ROOFLINE
    print("roofline: " + ", ".join(f"{d} GEMM peak {p / 1e9:.1f} GFLOP/s"
                                   for d, p in ROOFLINE["peak"].items())
          + f", copy bandwidth {ROOFLINE['bandwidth'] / 1e9:.1f} GB/s")
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            log(f"timing {shape.name} {dtype} ...")
            rows += run_case(shape, dtype, args)
    ov, mem = [], []
    if args.suite == "core":   # the overhead and memory targets belong to the core suite
        log("per-call overhead ...")
        ov = overhead(args.overhead_calls, args.overhead_rounds)
        log("working memory ...")
        mem = memory(dtypes, with_im2col=True)
    cont = []
    if not args.no_contention:
        log("contention: a busy loop on one CPU ...")
        cont = contention(shapes, dtypes, max(3, args.repeat))
    elapsed = time.perf_counter() - start
    info["load after"] = load_average()
    info["blas threads"] = blas_threads()

    rs = table_rows(rows)
    sums = summaries(rows, ov, mem, cont)
    print()
    print(text_table(rs))
    print()
    if ov:
        print(text_table(overhead_table(ov)))
        print()
    if mem:
        print(text_table(memory_table(mem)))
        print()
    if cont:
        print(text_table(contention_table(cont)))
        print()
    for ok, text in sums:
        print(f"{status(ok)}: {text}")
    overall = all(ok is not False for ok, _ in sums)
    print(f"load average after: {info['load after']} (before: {info['load before']}); "
          f"wall time {elapsed:.0f} s")
    print("overall:", "PASS" if overall else "FAIL")

    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        png = md.with_suffix(".png")
        err = plot(png, rows, info, when)
        if err:
            print(f"plot: {err}")
            png = None
        write_markdown(md, png, err, rs, rows, ov, mem, sums, info, args, command, when, elapsed,
                       cont)
        print(f"wrote {md}" + (f" and {png}" if png else ""))
    return 0 if overall else 1


if __name__ == "__main__":
    sys.exit(main())
