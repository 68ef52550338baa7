"""Layers of many channels on small images, against torch, in one process.

The later stages of a ResNet: 3x3 layers of 256 and 512 channels on 14x14
and 7x7 images, their stride-2 entries, the 1x1 layers of the bottleneck
blocks, at batch 1 (inference) and a few images (training).  Neither suite
of bench.py has them; their weights, not their images, are the large
operand (a 3x3 layer of 512 -> 512 channels holds 2.4 million weights and
one 7x7 image 25 thousand values), so a pass over the weights costs what
the multiply-adds of a small image do.

Each pass (forward, input gradient, weight gradient) of each layer is timed
for convx's 'auto' and for torch, interleaved, ``--rounds`` rounds of about
20 ms each; the table shows the best round of each and torch's time over
convx's (above 1: convx is faster).  Both libraries run on their default
threads.

    python benchmarks/deep.py [--dtypes float32 float64] [--rounds 7]
"""
import argparse
import time

import numpy as np

import convx
import report  # benchmarks/report.py

# (N, C, H, W, filters, kernel, stride, padding)
LAYERS = [
    (1, 256, 14, 14, 256, 3, 1, 1), (1, 512, 7, 7, 512, 3, 1, 1),
    (1, 128, 28, 28, 256, 3, 2, 1), (1, 256, 14, 14, 512, 3, 2, 1),
    (1, 1024, 14, 14, 256, 1, 1, 0), (1, 2048, 7, 7, 512, 1, 1, 0),
    (1, 512, 7, 7, 2048, 1, 1, 0),
    (4, 256, 14, 14, 256, 3, 1, 1), (4, 512, 7, 7, 512, 3, 1, 1),
    (8, 512, 7, 7, 512, 3, 1, 1),
]


def per_call(fn, seconds=0.02):
    """Seconds per call over about ``seconds`` of back-to-back calls."""
    fn()
    t = time.perf_counter()
    fn()
    reps = max(1, int(seconds / max(time.perf_counter() - t, 1e-6)))
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def passes(layer, dtype, torch, rng):
    """{pass: (convx call, torch call)} for one layer."""
    n, c, h, w_, f, k, s, p = layer
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((f, c, k, k)).astype(dtype)
    g = rng.standard_normal(convx.conv2d(x, w, stride=s, padding=p).shape).astype(dtype)
    xt, wt, gt = (torch.from_numpy(a) for a in (x, w, g))
    kw = dict(stride=s, padding=p)
    return {
        "forward": (lambda: convx.conv2d(x, w, **kw),
                    lambda: torch.nn.functional.conv2d(xt, wt, **kw)),
        "input grad": (lambda: convx.conv2d_input_grad(x.shape, w, g, **kw),
                       lambda: torch.nn.grad.conv2d_input(xt.shape, wt, gt, **kw)),
        "weight grad": (lambda: convx.conv2d_weight_grad(x, w.shape, g, **kw),
                        lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, gt, **kw)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    report.require_fresh_build(convx)
    import torch
    rng = np.random.default_rng(0)
    print(f"{report.cpu_model()}, {convx.get_num_threads()} convx threads, "
          f"{torch.get_num_threads()} torch threads, best of {args.rounds} interleaved rounds")
    ratios = {}
    rows = []
    for dtype in args.dtypes:
        for layer in LAYERS:
            for name, (ours, theirs) in passes(layer, np.dtype(dtype), torch, rng).items():
                a, b = [], []
                for _ in range(args.rounds):
                    a.append(per_call(ours))
                    b.append(per_call(theirs))
                ratio = min(b) / min(a)
                ratios.setdefault(dtype, []).append(ratio)
                n, c, h, w_, f, k, s, _ = layer
                rows.append({"layer": f"({n}, {c}, {h}, {w_}) -> {f}, {k}x{k}, stride {s}",
                             "dtype": dtype, "pass": name, "convx": report.fmt_time(min(a)),
                             "torch": report.fmt_time(min(b)), "torch / convx": f"{ratio:.2f}x"})
    print(report.text_table(rows))
    for dtype, r in ratios.items():
        print(f"{dtype}: geomean {np.exp(np.mean(np.log(r))):.2f}x, lowest {min(r):.2f}x, "
              f"{sum(x >= 1.0 for x in r)} of {len(r)} passes at 1.0x or more")


if __name__ == "__main__":
    main()
