"""What 'auto' costs on layers nobody tuned on: its time over the fastest method's.

Draws random layers (1-D and 2-D; 1 to 16 images; 1 to 64 channels and
filters per group, up to 8 groups; kernels of 1 to 7 taps a side, or 1 to
31 taps in 1-D; stride 1 or 2; dilation 1 or 2; 'same' padding) from a seed,
keeps those of 1e5 to 3e8 multiply-adds, and times each pass (forward,
input gradient, weight gradient) in both dtypes with ``method='auto'`` and
with every method that applies ('direct', 'gemm', 'fft', 'winograd'), best
of ``--rounds`` samples of about 10 ms each, in one process.  Prints the
passes where 'auto' took more than ``--over`` times the fastest, and how
many of all.  The engine's rules are fitted on layers of our own; this is
how to check them on layers that are not (a seed not used while tuning).

``--family pw-strided`` draws 1x1 layers at stride 2 and 3 instead (1-D and
2-D, 8 to 256 channels and filters per group, up to 8 groups) and times
their weight gradients only (_engine._pointwise_strided_few).

    python benchmarks/regret.py [--seed S] [--layers N] [--over X] [--rounds R]
                                [--family all|pw-strided]
"""
import argparse
import functools
import time

import numpy as np

import convx
from convx import ConvxValueError

METHODS = ("direct", "gemm", "fft", "winograd")


def best_time(fn, rounds):
    """The best of ``rounds`` samples of back-to-back calls, each about 10 ms."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.01:
            fn()
            calls += 1
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def draw_layer(rng):
    """(x shape, weight shape, stride, padding, dilation, groups), or None
    where the layer is too small or too large to time usefully."""
    nd = int(rng.choice([1, 2], p=[0.3, 0.7]))
    n = int(rng.choice([1, 2, 4, 8, 16]))
    groups = int(rng.choice([1, 1, 1, 2, 4, 8]))
    cg = int(rng.choice([1, 3, 4, 8, 16, 24, 32, 64]))
    fg = int(rng.choice([1, 4, 8, 16, 24, 32, 64]))
    k = int(rng.choice([1, 3, 3, 3, 5, 7] if nd == 2 else [1, 3, 5, 7, 15, 31]))
    stride = int(rng.choice([1, 1, 1, 2]))
    dilation = int(rng.choice([1, 1, 1, 2])) if k > 1 else 1
    size = int(rng.choice([7, 10, 14, 20, 28, 32, 56] if nd == 2 else [64, 200, 1000, 4000]))
    xs = (n, cg * groups) + (size,) * nd
    ws = (fg * groups, cg) + (k,) * nd
    macs = n * size ** nd * fg * groups * cg * k ** nd
    if not 1e5 <= macs <= 3e8:
        return None
    return xs, ws, stride, (k // 2) * dilation, dilation, groups


def draw_pw_strided(rng):
    """A 1x1 layer at a width stride, as draw_layer's tuple, or None."""
    nd = int(rng.choice([1, 2]))
    n = int(rng.choice([1, 2, 4, 8, 16, 32]))
    groups = int(rng.choice([1, 1, 1, 2, 4, 8]))
    cg = int(rng.choice([8, 16, 24, 32, 64, 128, 256]))
    fg = int(rng.choice([8, 16, 24, 32, 64, 128, 256]))
    stride = int(rng.choice([2, 2, 3]))
    size = int(rng.choice([7, 14, 17, 28, 35, 56] if nd == 2 else [100, 300, 1000, 3000]))
    macs = n * (-(-size // stride)) ** nd * fg * groups * cg
    if not 1e5 <= macs <= 4e8:
        return None
    return (n, cg * groups) + (size,) * nd, (fg * groups, cg) + (1,) * nd, stride, 0, 1, groups


DRAWS = {"all": (draw_layer, ("forward", "input grad", "weight grad")),
         "pw-strided": (draw_pw_strided, ("weight grad",))}


def passes(layer, dtype, rng):
    """{pass name: function of the method} for one layer and dtype."""
    xs, ws, stride, padding, dilation, groups = layer
    nd = len(xs) - 2
    f, ig, wg = ((convx.conv1d, convx.conv1d_input_grad, convx.conv1d_weight_grad) if nd == 1
                 else (convx.conv2d, convx.conv2d_input_grad, convx.conv2d_weight_grad))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = rng.standard_normal(f(x, w, **geometry).shape).astype(dtype)
    return {"forward": lambda m: f(x, w, method=m, **geometry),
            "input grad": lambda m: ig(xs, w, g, method=m, **geometry),
            "weight grad": lambda m: wg(x, ws, g, method=m, **geometry)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--layers", type=int, default=40, help="layers drawn (some are skipped)")
    ap.add_argument("--over", type=float, default=1.25)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--family", choices=sorted(DRAWS), default="all")
    args = ap.parse_args()
    draw, timed = DRAWS[args.family]
    rng = np.random.default_rng(args.seed)
    print(f"threads: {convx.get_num_threads()}; seed {args.seed}; family {args.family}; "
          f"best of {args.rounds}")
    total, over, worst = 0, 0, 1.0
    for _ in range(args.layers):
        layer = draw(rng)
        if layer is None:
            continue
        xs, ws, stride, _, dilation, groups = layer
        for dtype in (np.float32, np.float64):
            for name, call in passes(layer, dtype, rng).items():
                if name not in timed:
                    continue
                times = {}
                for method in ("auto",) + METHODS:
                    try:
                        call(method)
                    except ConvxValueError:   # the method does not apply
                        continue
                    times[method] = best_time(functools.partial(call, method), args.rounds)
                fastest = min((t, m) for m, t in times.items() if m != "auto")
                ratio = times["auto"] / fastest[0]
                total += 1
                worst = max(worst, ratio)
                if ratio > args.over:
                    over += 1
                    print(f"{xs!s:20} {ws!s:18} stride {stride} dilation {dilation} "
                          f"groups {groups} {np.dtype(dtype).name} {name:11} auto "
                          f"{times['auto'] * 1e3:8.3f} ms, {fastest[1]} {fastest[0] * 1e3:8.3f} ms:"
                          f" {ratio:.2f}x", flush=True)
    print(f"{total} passes; 'auto' took more than {args.over:g}x the fastest method's time on "
          f"{over}; worst {worst:.2f}x")


if __name__ == "__main__":
    main()
