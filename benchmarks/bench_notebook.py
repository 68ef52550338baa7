"""Time convx against the notebook's own pure-Python loops, in one process.

    python benchmarks/bench_notebook.py [--repeat R] [--loop-images K]
                                        [--markdown PATH] [--seed S]
                                        [--threads N]

The baseline is ``benchmarks/baseline/notebook_loops.py``: the learner's notebook code,
transcribed as written.  Three examples from the notebook are timed:

* CIFAR-sized, multi-channel: input 10x3x32x32 float64 (standard normal),
  param 3x16x5x5 (standard normal), output gradient ones 10x16x32x32.
  Passes ``_output``, ``_input_grad`` and ``_param_grad``: these carry the
  target, each >= 1000x faster than the notebook loops.  The loop baseline for
  ``_output`` is ``_output_fixed`` (the notebook's forward with
  ``param.shape[2]`` as the filter size, which is what convx computes); the
  notebook's own buggy ``_output`` (a 3x3 corner of each 5x5 filter) is timed
  too, for information only.
* 2-D, one channel: images 3x28x28, filter 3x3, output gradient ones
  (``_compute_output_2d``, ``_compute_grads_2d``, ``_param_grad_2d``).
* 1-D batch: the notebook's integer 2x7 batch and filter [1, 1, 1]
  (``conv_1d_batch``, ``input_grad_1d_batch``, ``param_grad_1d_batch``).

Timing: ``time.perf_counter`` around each single call.  convx: one warm-up
call (whose result is checked against the loops), then ``--repeat`` timed calls;
the median is reported (and the minimum).  Loops: one timed call; when that
call took under 0.5 s it is repeated (up to ``--repeat`` calls, about 2 s in
all) and the median is reported.  The CIFAR loops take about 11 s per pass, so
they are timed once, on the full batch by default; ``--loop-images K`` times
them on the first K images only and multiplies by 10/K (the loops are linear
in the batch size); such times are marked "scaled" in the table.

Every timed pass is checked: convx's result must have the loops' shape and
``np.allclose`` their values (convx being called on the same inputs the loops
saw), or the pass is reported as a mismatch and the script exits 1.  The
exit status is also 1 when a target pass is under 1000x.

The machine this runs on may be shared and small (2 cores): run it on an idle
machine, and read the convx minimum beside the median.  convx runs one thread
per core by default; when another process keeps a core busy its threads wait
on each other and a millisecond-sized pass can take many times longer.  The
script prints convx's thread count and the load average before and after the
run; ``--threads N`` sets convx's thread count (``convx.set_num_threads``) for
a run on a busy machine.
"""
import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np

import convx
import report
from baseline import notebook_loops as nl
from report import fmt_time, load_average, md_table, text_table

TARGET = 1000.0
LOOP_REPEAT_BELOW = 0.5   # s: loop calls faster than this are repeated ...
LOOP_BUDGET = 2.0         # s: ... for about this long in all


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

def _timed(fn, args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def time_loops(fn, args, max_runs):
    """Loop time: one call; more when it is fast.  Returns (median, runs, result)."""
    t, result = _timed(fn, args)
    times = [t]
    if t < LOOP_REPEAT_BELOW:
        while len(times) < max_runs and sum(times) < LOOP_BUDGET:
            times.append(_timed(fn, args)[0])
    return statistics.median(times), len(times), result


def time_convx(fn, args, repeat):
    """Warm-up call, then ``repeat`` timed calls.  Returns (median, min, warm-up result)."""
    result = fn(*args)
    times = [_timed(fn, args)[0] for _ in range(repeat)]
    return statistics.median(times), min(times), result


# --------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------

def agree(got, ref):
    """(ok, max abs difference): same shape, np.allclose with a tight tolerance."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return False, float("inf")
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    ok = bool(np.allclose(got, ref, rtol=1e-9, atol=1e-12 * scale))
    return ok, diff


# --------------------------------------------------------------------------
# The passes
# --------------------------------------------------------------------------

class Pass:
    def __init__(self, example, name, loop_name, shape, loop_fn, convx_fn, args,
                 loop_args=None, check_fn=None, check_args=None, target=False,
                 scale=1.0, note=""):
        self.example = example
        self.name = name            # convx function timed
        self.loop_name = loop_name  # notebook_loops function timed
        self.shape = shape
        self.loop_fn = loop_fn
        self.convx_fn = convx_fn
        self.args = args            # what convx is timed on
        self.loop_args = args if loop_args is None else loop_args
        self.check_fn = convx_fn if check_fn is None else check_fn
        self.check_args = check_args  # None: check the warm-up result of the timed call
        self.target = target
        self.scale = scale          # loops time on loop_args -> time on args
        self.note = note

    def run(self, repeat):
        loops_t, self.loop_runs, ref = time_loops(self.loop_fn, self.loop_args, repeat)
        self.loops = loops_t * self.scale
        self.convx_med, self.convx_min, got = time_convx(self.convx_fn, self.args, repeat)
        if self.check_args is not None or self.check_fn is not self.convx_fn:
            got = self.check_fn(*(self.args if self.check_args is None else self.check_args))
        self.ok, self.maxdiff = agree(got, ref)
        self.ratio = self.loops / self.convx_med
        return self


def build_passes(seed, loop_images):
    rng = np.random.default_rng(seed)
    passes = []

    # CIFAR-sized, multi-channel (notebook cells 65-76).
    n = 10
    x = rng.standard_normal((n, 3, 32, 32))
    w = rng.standard_normal((3, 16, 5, 5))
    g = np.ones((n, 16, 32, 32))
    k = n if loop_images is None else loop_images
    scale = n / k
    xs, gs = x[:k], g[:k]
    sub = k < n
    shape_fwd = "x 10x3x32x32, w 3x16x5x5"
    shape_bwd = "x 10x3x32x32, g 10x16x32x32, w 3x16x5x5"
    # The buggy forward is the 'same' convolution by the 3x3 corner of each filter.
    corner = np.ascontiguousarray(w[:, :, :3, :3])
    passes += [
        Pass("CIFAR", "_output", "_output_fixed", shape_fwd,
             nl._output_fixed, convx._output, (x, w), loop_args=(xs, w),
             check_args=(xs, w) if sub else None, target=True, scale=scale),
        Pass("CIFAR", "_input_grad", "_input_grad", shape_bwd,
             nl._input_grad, convx._input_grad, (x, g, w), loop_args=(xs, gs, w),
             check_args=(xs, gs, w) if sub else None, target=True, scale=scale),
        Pass("CIFAR", "_param_grad", "_param_grad", shape_bwd,
             nl._param_grad, convx._param_grad, (x, g, w), loop_args=(xs, gs, w),
             check_args=(xs, gs, w) if sub else None, target=True, scale=scale),
        Pass("CIFAR", "_output", "_output (notebook, buggy)", shape_fwd,
             nl._output, convx._output, (x, w), loop_args=(xs, w),
             check_fn=convx._output, check_args=(xs, corner), scale=scale,
             note="information only: the notebook's forward runs a 3x3 corner of "
                  "each 5x5 filter (less work than convx's 5x5); checked against "
                  "convx._output(x, w[:, :, :3, :3])"),
    ]

    # 2-D, one channel (notebook cells 38-60).
    imgs = rng.standard_normal((3, 28, 28))
    p2 = rng.standard_normal((3, 3))
    g2 = np.ones_like(imgs)
    passes += [
        Pass("2-D", "_compute_output_2d", "_compute_output_2d", "x 3x28x28, w 3x3",
             nl._compute_output_2d, convx._compute_output_2d, (imgs, p2)),
        Pass("2-D", "_compute_grads_2d", "_compute_grads_2d", "x 3x28x28, g 3x28x28, w 3x3",
             nl._compute_grads_2d, convx._compute_grads_2d, (imgs, g2, p2)),
        Pass("2-D", "_param_grad_2d", "_param_grad_2d", "x 3x28x28, g 3x28x28, w 3x3",
             nl._param_grad_2d, convx._param_grad_2d, (imgs, g2, p2)),
    ]

    # 1-D batch (notebook cells 19-37): the notebook's integer data.
    b = np.array([[0, 1, 2, 3, 4, 5, 6],
                  [1, 2, 3, 4, 5, 6, 7]])
    p1 = np.array([1, 1, 1])
    passes += [
        Pass("1-D batch", "conv_1d_batch", "conv_1d_batch", "x 2x7 int, w 3 int",
             nl.conv_1d_batch, convx.conv_1d_batch, (b, p1)),
        Pass("1-D batch", "input_grad_1d_batch", "input_grad_1d_batch", "x 2x7 int, w 3 int",
             nl.input_grad_1d_batch, convx.input_grad_1d_batch, (b, p1)),
        Pass("1-D batch", "param_grad_1d_batch", "param_grad_1d_batch", "x 2x7 int, w 3 int",
             nl.param_grad_1d_batch, convx.param_grad_1d_batch, (b, p1)),
    ]
    return passes


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def fmt_ratio(r):
    return f"{r:,.0f}x" if r >= 10 else f"{r:.2f}x"


def rows(passes, loop_images):
    out = []
    for p in passes:
        scaled = p.scale != 1.0
        loops = fmt_time(p.loops)
        if scaled:
            loops += f" (scaled: {loop_images} of 10 images, x{p.scale:g})"
        elif p.loop_runs > 1:
            loops += f" (median of {p.loop_runs})"
        if not p.ok:
            verdict = "MISMATCH"
        elif p.target:
            verdict = "PASS" if p.ratio >= TARGET else "FAIL"
        else:
            verdict = "info"
        out.append({
            "example": p.example,
            "pass": p.name,
            "loops fn": p.loop_name,
            "shape": p.shape,
            "loops": loops,
            "convx median": fmt_time(p.convx_med),
            "convx min": fmt_time(p.convx_min),
            "speed-up": fmt_ratio(p.ratio),
            "agrees (max abs diff)": f"{'yes' if p.ok else 'NO'} ({p.maxdiff:.1e})",
            f">= {TARGET:,.0f}x": verdict,
        })
    return out


def machine_info():
    threads = report.thread_env()
    return {
        "nproc": report.cpu_count(),
        "cpu": report.cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "convx": convx.__version__,
        "threads env": ", ".join(f"{k}={v}" for k, v in threads.items()) or "(unset)",
    }


def write_markdown(path, rs, info, command, args, when, targets_ok, checks_ok, elapsed):
    scaled = args.loop_images is not None and args.loop_images < 10
    lines = [
        "# convx against the notebook's loops",
        "",
        "Generated by `benchmarks/bench_notebook.py`; rerun it to refresh this page.",
        "",
        f"- date: {when}",
        f"- command: `{command}`",
        "- machine: " + f"nproc {info['nproc']}, {info['cpu']}, {info['platform']} "
        "(a shared machine: other work may have run beside the benchmark)",
        (f"- versions: Python {info['python']}, NumPy {info['numpy']}, convx {info['convx']}; "
         f"convx threads: {info['threads']} (thread variables: {info['threads env']})"),
        (f"- load average (1, 5, 15 min) before the run: {info['load before']}; "
         f"after: {info['load after']}"),
        f"- wall time of the whole run: {elapsed:.0f} s",
        "",
        ("The baseline is `benchmarks/baseline/notebook_loops.py`, the learner's notebook code "
         "transcribed as written (pure-Python loops).  convx: one warm-up call, then "
         f"{args.repeat} timed calls, median and minimum reported.  Loops: one timed call, "
         f"repeated (median) only when it took under {LOOP_REPEAT_BELOW} s.  "
         "Speed-up = loops time / convx median.  Every pass is checked: convx's result "
         "equals the loops' (same shape, `np.allclose`, rtol 1e-9) on the same inputs."),
        "",
        md_table(rs),
        "",
        "Notes:",
        "",
        "- The target (each of `_output`, `_input_grad`, `_param_grad` on the CIFAR-sized "
        f"example >= {TARGET:,.0f}x faster than the loops): "
        + ("**PASS**." if targets_ok else "**FAIL**."),
        ("- The loop baseline for `_output` is `_output_fixed`: the notebook's forward with "
         "the filter size taken from `param.shape[2]` instead of `param.shape[0]`, which is "
         "what convx computes.  The notebook's own `_output` runs a 3x3 corner of each 5x5 "
         "filter, so it does about 9/25 of the work; it is listed for information only."),
        ("- The 2-D and 1-D rows carry no target: on such small inputs convx's time is mostly "
         "the fixed cost of a Python call with argument checks."),
        ("- convx runs one thread per core by default.  When another process keeps a core "
         "busy, those threads wait on each other and a CIFAR pass can take many times longer "
         "than on an idle machine; compare the load average above, and `--threads 1` for a "
         "run on a busy machine."),
    ]
    if scaled:
        lines.append(
            f"- CIFAR loop times are **scaled**: the loops ran on the first "
            f"{args.loop_images} of the 10 images and the time was multiplied by "
            f"{10 / args.loop_images:g} (the loops are linear in the batch size).")
    else:
        lines.append("- CIFAR loop times are measured on the full batch of 10 images, once each.")
    if not checks_ok:
        lines.append("- **A result did not agree with the loops: see the agrees column.**")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=50,
                    help="timed convx calls per pass, after one warm-up (default 50)")
    ap.add_argument("--loop-images", type=int, default=None, metavar="K",
                    help="time the CIFAR loops on the first K of the 10 images and "
                         "scale by 10/K (default: all 10, no scaling)")
    ap.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    ap.add_argument("--seed", type=int, default=190220, help="random seed (default 190220)")
    ap.add_argument("--threads", type=int, default=None, metavar="N",
                    help="convx's thread count (default: convx's own, one per core unless "
                         "OMP_NUM_THREADS says otherwise)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.loop_images is not None and not 1 <= args.loop_images <= 10:
        ap.error("--loop-images must be between 1 and 10")
    if args.threads is not None:
        try:
            convx.set_num_threads(args.threads)
        except ValueError as e:
            ap.error(f"--threads: {e}")

    command = "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    info["threads"] = str(convx.get_num_threads())
    info["load before"] = load_average()
    print(f"{when}; nproc {info['nproc']}; {info['cpu']}; Python {info['python']}, "
          f"NumPy {info['numpy']}, convx {info['convx']}; "
          f"convx threads {info['threads']} (variables: {info['threads env']}); "
          f"load average {info['load before']}")
    print(f"command: {command}")

    start = time.perf_counter()
    passes = build_passes(args.seed, args.loop_images)
    for p in passes:
        print(f"  timing {p.example} {p.name} against loops {p.loop_name} ...", flush=True)
        p.run(args.repeat)
    elapsed = time.perf_counter() - start
    info["load after"] = load_average()

    rs = rows(passes, args.loop_images)
    print()
    print(text_table(rs))
    print()
    for p in passes:
        if p.note:
            print(f"note ({p.example} {p.loop_name}): {p.note}")

    checks_ok = all(p.ok for p in passes)
    targets_ok = all(p.ok and p.ratio >= TARGET for p in passes if p.target)
    for p in passes:
        if p.target:
            status = "PASS" if p.ok and p.ratio >= TARGET else "FAIL"
            print(f"{status}: {p.name} is {fmt_ratio(p.ratio)} faster than the loops "
                  f"(target >= {TARGET:,.0f}x){'' if p.ok else ' -- RESULTS DISAGREE'}")
    if not checks_ok:
        print("FAIL: convx disagrees with the loops on: "
              + ", ".join(f"{p.example} {p.name}" for p in passes if not p.ok))
    print(f"load average after the run: {info['load after']} (before: {info['load before']})")
    print("overall:", "PASS" if targets_ok and checks_ok else "FAIL")

    if args.markdown:
        write_markdown(args.markdown, rs, info, command, args, when, targets_ok, checks_ok,
                       elapsed)
        print(f"wrote {args.markdown}")
    return 0 if targets_ok and checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
