"""The 1-D weight gradient's product with the taps as rows against the product
with the taps as columns, side by side in one process.

    python benchmarks/wgrad_taps.py [--rounds N] [--dtypes float32,float64]

For each 1-D layer below (layers of our own: temporal stacks, dilated and
not, 16 to 256 channels, 3 to 11 taps, one to 32 signals), it times
``conv1d_weight_grad(..., method='gemm')`` with the engine's switch
``_engine.WEIGHT_GRAD_TAPS`` on and off (and ``WEIGHT_GRAD_DOT`` off, so that
both run the product), interleaved round by round, and prints the best time
of each and their ratio, and whether the two agree bit for bit (they do
wherever both split the positions alike: each sum runs in the same order).
The machine may be shared: quote the ratios.
"""
import argparse
import functools
import time

import numpy as np

import convx
from convx import _engine

LAYERS = [  # x shape (N, C, L), weight shape (F, C, k), padding, dilation
    ((16, 64, 2048), (64, 64, 3), 4, 4),       # TCN, benchmarks/bench.py's classes suite
    ((16, 64, 2048), (64, 64, 3), 1, 1),
    ((8, 128, 1024), (128, 128, 5), 4, 2),
    ((16, 32, 1000), (32, 32, 3), 1, 1),
    ((16, 16, 2000), (32, 16, 5), 2, 1),
    ((4, 64, 4096), (128, 64, 3), 8, 8),
    ((16, 64, 2048), (16, 64, 3), 1, 1),
    ((8, 256, 512), (256, 256, 3), 1, 1),
    ((32, 24, 800), (48, 24, 11), 5, 1),
    ((1, 96, 16000), (96, 96, 3), 2, 2),
]


def _time(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--dtypes", default="float32,float64")
    args = ap.parse_args()
    _engine.WEIGHT_GRAD_DOT = False
    print(f"{'layer':44s} {'dtype':8s} {'columns':>9s} {'rows':>9s} {'rows/columns':>13s}  same bits")
    ratios = []
    for dtype in args.dtypes.split(","):
        for xs, ws, padding, dilation in LAYERS:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(xs).astype(dtype)
            g = rng.standard_normal((xs[0], ws[0], xs[2])).astype(dtype)
            call = functools.partial(convx.conv1d_weight_grad, x, ws, g, padding=padding,
                                     dilation=dilation, method="gemm")
            best, out = {}, {}
            for _ in range(args.rounds):
                for taps in (False, True):
                    _engine.WEIGHT_GRAD_TAPS = taps
                    _engine.PLANS.clear()
                    out[taps] = call()                  # the plan, made anew
                    best[taps] = min(best.get(taps, float("inf")), _time(call))
            ratio = best[True] / best[False]
            ratios.append(ratio)
            name = f"{xs} x{ws[0]} k{ws[2]} d{dilation} p{padding}"
            print(f"{name:44s} {dtype:8s} {best[False] * 1e3:7.2f} ms {best[True] * 1e3:7.2f} ms"
                  f" {ratio:12.2f}x  {np.array_equal(out[True], out[False])}", flush=True)
    print(f"geometric mean rows/columns: {np.exp(np.mean(np.log(ratios))):.3f} "
          f"({min(ratios):.2f}-{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
