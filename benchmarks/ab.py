"""convx against an earlier convx, side by side in one process.

    python benchmarks/ab.py REV [--overhead] [--passes] [--threads N] [--rounds N]
                                [--filter WORDS] [--method M] [--markdown PATH]

Builds revision REV of this repository (a commit, tag or branch) into a
scratch directory as a package named ``convx_ab`` (its extension module is
compiled under that name, so the two builds load into one process), then
times the installed-or-in-tree ``convx`` against it, interleaved: every
round times one sample of each in turn, so a burst of load from another
tenant hits both alike.  The ratios use the minimum over the rounds; the
median is shown beside it.

``--overhead`` times the per-call overhead on a tiny input (1-D, length 5,
kernel 3; the cases of benchmarks/bench.py's overhead target): the median
over ``--rounds`` rounds (45 by default) of 2,000 calls per case.

``--passes`` times forward, input grad and weight grad on a set of shapes
(benchmarks/bench.py's and others: one image, strided, 1x1, depthwise,
grouped, a 7x7 stem, 256 channels) in float32 and float64, and checks that
the two builds agree (``np.allclose`` at 1e-4 / 1e-10 of the largest
magnitude).  After every sample it pauses (``--settle``, 0.25 s): builds
before convx had its own matrix product ran OpenBLAS's threads on one image,
and those threads spin after a call, slowing whatever runs next (the weight
gradient of one 64-channel image measured 0.41x with a pause of 0.05 s and
1.0x with 0.3 s).

The machine may be shared: quote the ratios, not the times.
"""
import argparse
import importlib
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import report


def build(rev, where):
    """Revision ``rev`` of the repository built in ``where`` as ``convx_ab``."""
    src = where / "src"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where / "tree"),
                    rev], check=True, capture_output=True)
    try:
        shutil.copytree(where / "tree" / "src" / "convx", src / "convx_ab")
        setup = (where / "tree" / "setup.py").read_text()
        setup = setup.replace('"convx._core"', '"convx_ab._core"')
        setup = setup.replace("src/convx", "src/convx_ab")
        (where / "setup.py").write_text(setup)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(where / "tree")], check=True, capture_output=True)
    (where / "convx_ab").mkdir(exist_ok=True)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=where,
                   check=True, capture_output=True)
    for so in (where / "convx_ab").glob("_core*"):
        shutil.move(str(so), str(src / "convx_ab" / so.name))
    return src


def overhead(a, b, rounds):
    x = np.random.rand(1, 1, 5)
    w = np.random.rand(1, 1, 3)
    g = np.random.rand(1, 1, 5)
    x1, w1 = np.random.rand(5), np.random.rand(3)

    def cases(m):
        return {"conv1d": lambda: m.conv1d(x, w, padding=1),
                "conv1d_input_grad": lambda: m.conv1d_input_grad(x.shape, w, g, padding=1),
                "conv1d_weight_grad": lambda: m.conv1d_weight_grad(x, w.shape, g, padding=1),
                "conv_1d (notebook name)": lambda: m.conv_1d(x1, w1)}
    ca, cb = cases(a), cases(b)
    times = {k: ([], []) for k in ca}
    for _ in range(rounds):
        for k in ca:
            for lst, f in ((times[k][0], ca[k]), (times[k][1], cb[k])):
                t0 = time.perf_counter()
                for _ in range(2000):
                    f()
                lst.append((time.perf_counter() - t0) / 2000)
    rows = []
    for k, (ta, tb) in times.items():
        ma, mb = statistics.median(ta), statistics.median(tb)
        rows.append([k, f"{ma * 1e6:.2f} us", f"{mb * 1e6:.2f} us", f"{(mb - ma) * 1e6:+.2f} us"])
    return ["call (1-D, length 5, kernel 3)", "REV median", "this tree median",
            "this tree - REV"], rows


SHAPES = [  # name, x shape, w shape, stride, padding, groups
    ("cifar", (10, 3, 32, 32), (16, 3, 5, 5), 1, 2, 1),
    ("mnist", (100, 1, 28, 28), (16, 1, 5, 5), 1, 2, 1),
    ("c16", (32, 16, 32, 32), (32, 16, 3, 3), 1, 1, 1),
    ("c64", (16, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ("1d-4096", (64, 1, 4096), (16, 1, 9), 1, 4, 1),
    ("1d-1024", (32, 16, 1024), (32, 16, 5), 1, 2, 1),
    ("one image 64ch", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ("stride 2 128ch", (8, 128, 28, 28), (128, 128, 3, 3), 2, 1, 1),
    ("256ch 14x14", (8, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1),
    ("1x1", (16, 64, 28, 28), (128, 64, 1, 1), 1, 0, 1),
    ("stem 7x7/2", (8, 3, 64, 64), (32, 3, 7, 7), 2, 3, 1),
    ("lenet-2", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    ("depthwise", (8, 64, 56, 56), (64, 1, 3, 3), 1, 1, 64),
    ("depthwise 5x5", (8, 96, 28, 28), (96, 1, 5, 5), 1, 2, 96),
    ("depthwise 7x7 images", (32, 144, 7, 7), (144, 1, 5, 5), 1, 2, 144),
    ("depthwise 14x14 images", (4, 256, 14, 14), (256, 1, 3, 3), 1, 1, 256),
    ("depthwise 7x7 kernel", (8, 24, 64, 64), (24, 1, 7, 7), 1, 3, 24),
    ("depthwise stride 2", (8, 96, 56, 56), (96, 1, 3, 3), 2, 1, 96),
    ("depthwise 28x28 3x3", (16, 72, 28, 28), (72, 1, 3, 3), 1, 1, 72),
    ("depthwise 14x14 5x5", (16, 240, 14, 14), (240, 1, 5, 5), 1, 2, 240),
    ("depthwise 40x40 5x5", (8, 48, 40, 40), (48, 1, 5, 5), 1, 2, 48),
    ("plain 3x3", (16, 1, 256, 256), (1, 1, 3, 3), 1, 1, 1),
    ("plain 1-D k5", (64, 1, 16384), (1, 1, 5), 1, 2, 1),
    ("plain 11x11", (8, 1, 128, 128), (1, 1, 11, 11), 1, 5, 1),
    ("plain 15x15", (4, 1, 256, 256), (1, 1, 15, 15), 1, 7, 1),
    ("plain 1-D k127", (16, 1, 16384), (1, 1, 127), 1, 63, 1),
    ("plain 1-D k255", (8, 1, 32768), (1, 1, 255), 1, 127, 1),
    ("4 groups", (8, 64, 28, 28), (64, 16, 3, 3), 1, 1, 4),
]


def pass_calls(m, x, w, g, kw):
    """Module ``m``'s three passes on ``x``, ``w`` and the output gradient
    ``g`` (None until the forward pass has given its shape), as calls
    without arguments."""
    nd = x.ndim - 2
    f = m.conv2d if nd == 2 else m.conv1d
    fi = m.conv2d_input_grad if nd == 2 else m.conv1d_input_grad
    fw = m.conv2d_weight_grad if nd == 2 else m.conv1d_weight_grad
    return {"forward": lambda: f(x, w, **kw),
            "input grad": lambda: fi(x.shape, w, g, **kw),
            "weight grad": lambda: fw(x, w.shape, g, **kw)}


def passes(a, b, rounds, filt, settle, method="auto"):
    rng = np.random.default_rng(0)
    rows, ratios = [], []
    for name, xs, ws, st, pd, gr in SHAPES:
        for dt in ("float32", "float64"):
            x = rng.standard_normal(xs).astype(dt)
            w = rng.standard_normal(ws).astype(dt)
            kw = dict(stride=st, padding=pd, groups=gr, method=method)
            shape = pass_calls(b, x, w, None, dict(kw, method="auto"))["forward"]().shape
            g = rng.standard_normal(shape).astype(dt)
            fa, fb = pass_calls(a, x, w, g, kw), pass_calls(b, x, w, g, kw)
            for p in ("forward", "input grad", "weight grad"):
                key = f"{name} {p} {dt}"
                if filt and not any(all(word in key for word in alt.split(","))
                                    for alt in filt.split("|")):
                    continue
                try:
                    ra, rb = fa[p](), fb[p]()
                except ValueError:   # ConvxValueError: method= does not apply here
                    continue
                tol = 1e-4 if dt == "float32" else 1e-10
                agree = np.allclose(ra, rb, rtol=tol, atol=tol * float(np.abs(ra).max()))
                t = _sample(fb[p], 1)
                reps = max(1, int(0.02 / max(t, 1e-7)))
                ta, tb = [], []
                for _ in range(rounds):
                    ta.append(_sample(fa[p], reps))
                    time.sleep(settle)
                    tb.append(_sample(fb[p], reps))
                    time.sleep(settle)
                q = min(ta) / min(tb)
                ratios.append(q)
                rows.append([name, p, dt, report.fmt_time(min(ta)), report.fmt_time(min(tb)),
                             f"{q:.2f}x", f"{statistics.median(ta) / statistics.median(tb):.2f}x",
                             "yes" if agree else "NO"])
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else float("nan")
    return (["shape", "pass", "dtype", "REV min", "this tree min", "REV/this (min)",
             "REV/this (median)", "agree"], rows, geo)


def _dicts(head, rows):
    return [dict(zip(head, r)) for r in rows]


def _sample(fn, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the revision to compare with (e.g. HEAD~3, a tag)")
    ap.add_argument("--overhead", action="store_true", help="time the per-call overhead")
    ap.add_argument("--passes", action="store_true", help="time the three passes on shapes")
    ap.add_argument("--threads", type=int, default=None, help="threads for both builds")
    ap.add_argument("--rounds", type=int, default=None, metavar="N")
    ap.add_argument("--filter", default="", metavar="WORDS",
                    help="only the pass cases whose name has all these comma-separated "
                         "words (alternatives separated by |)")
    ap.add_argument("--method", default="auto",
                    help="the method= both builds are called with (default auto)")
    ap.add_argument("--settle", type=float, default=0.25, metavar="S",
                    help="pause after each pass sample (OpenBLAS's threads spin after calls)")
    ap.add_argument("--markdown", metavar="PATH", help="also write the tables to PATH")
    args = ap.parse_args()
    if not (args.overhead or args.passes):
        args.overhead = args.passes = True
    scratch = Path(tempfile.mkdtemp(prefix="convx-ab-"))
    try:
        sys.path.insert(0, str(build(args.rev, scratch)))
        a = importlib.import_module("convx_ab")
        import convx as b
        report.require_fresh_build(b)
        if args.threads:
            a.set_num_threads(args.threads)
            b.set_num_threads(args.threads)
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev],
                             capture_output=True, text=True, check=True).stdout.strip()
        here = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
        lines = [f"# convx {here}{' (with uncommitted changes)' if dirty else ''} against {rev}",
                 "", "Generated by `benchmarks/ab.py` (one process, interleaved rounds).", "",
                 f"- command: `python benchmarks/ab.py {' '.join(sys.argv[1:])}`",
                 (f"- machine: nproc {report.cpu_count()}, {report.cpu_model()}, "
                  f"{platform.platform()}; "
                  f"convx SIMD level {getattr(b._core, 'isa', lambda: '?')()}"),
                 f"- load average before: {report.load_average()}",
                 f"- threads: REV {a.get_num_threads()}, this tree {b.get_num_threads()}", ""]
        if args.overhead:
            head, rows = overhead(a, b, args.rounds or 45)
            print(report.text_table(_dicts(head, rows)))
            lines += ["## Per-call overhead", "",
                      f"Median over {args.rounds or 45} rounds of 2,000 calls of each case.", "",
                      report.md_table(_dicts(head, rows)), ""]
        if args.passes:
            head, rows, geo = passes(a, b, args.rounds or 7, args.filter, args.settle,
                                     args.method)
            print(report.text_table(_dicts(head, rows)))
            print(f"geometric mean REV/this: {geo:.3f}")
            lines += ["## Passes", "",
                      (f"Best of {args.rounds or 7} interleaved rounds; "
                       f"REV/this > 1 means this tree is faster.  Geometric mean of the minimum "
                       f"ratios: **{geo:.3f}**."),
                      "", report.md_table(_dicts(head, rows)), ""]
        lines.append(f"- load average after: {report.load_average()}")
        if args.markdown:
            Path(args.markdown).write_text("\n".join(lines) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
