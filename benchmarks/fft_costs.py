"""How well the engine chooses between the FFT (or Winograd) and the other algorithms.

For each shape and pass, times the method (``--method fft``, the default, or
``winograd``) and the algorithm the table picks without the FFT and Winograd
(forced by its method), interleaved in one process, best of ``--rounds``,
and reports which one 'auto' takes and what the choice costs against the
faster of the two.  The shapes are the ones the cost constants were fitted
on (the FFT's in src/convx/_fft.py and src/convx/_engine.py's _NS_PER_MAC,
Winograd's in _engine.py's _NS_WINO); a choice within 5% of the faster
counts as right.  ('auto' takes Winograd in float32 only: its float64 lines
are shown and not counted.)

With ``--large fit`` or ``--large check`` (the FFT) it times large
one-channel images and long signals of our own instead, the ones the
'zen4' constants were fitted on or the ones they were checked on: the
random layers' images are at most 256 wide.

With ``--seed S`` (the FFT) it times random layers drawn from that seed
instead (``--layers`` of them: 1-D and 2-D, 1 to 16 images, 1 to 16
channels, 1 to 64 filters, some depthwise, kernels 5x5 to 31x31 or 15 to
255 taps): the check on layers the constants were not fitted on.  With
``--fit`` (the FFT) it prints, for the FFT and for each algorithm the table
takes instead, by pass and dtype, the median over the cases of the time
measured over the time the engine's model gives: the factors to scale those
constants by on this machine (src/convx/_fft.py's, and _engine.py's
_NS_PER_MAC, _NS_PER_MAC_LARGE, _NS_PER_MAC_GEMM, _NS_DEPTHWISE).

With ``--method winograd --fit`` it also fits Winograd's constants to the
float32 times it measured: _NS_WINO by non-negative least squares on the
relative error (_NS_WINO_SPLIT, the dilated calls' copies, and
_NS_WINO_NARROW, narrow rows, measured apart and held), and _NS_PER_MAC_3X3
as the median over the layers of what the table's other choice takes per
multiply-add (_NS_PER_MAC_5X5 the same over the 5x5 layers, which the
_NS_WINO fit leaves out).  It prints them, for this CPU's entry of those tables
(_engine._tuning()), to be written into src/convx/_engine.py and checked by
a run without ``--fit``.

    python benchmarks/fft_costs.py [--method fft|winograd] [--fit] [--seed S] [--layers N]
                                   [--large fit|check] [--threads N] [--rounds R]
"""
import argparse
import functools
import math
import time

import numpy as np

import convx
import report  # benchmarks/report.py
from convx import _engine

SHAPES = [  # (input, weight): 'same' padding, groups = channels when the weight has one
    ((8, 1, 128, 128), (1, 1, 5, 5)), ((8, 1, 128, 128), (1, 1, 7, 7)),
    ((8, 1, 128, 128), (1, 1, 11, 11)), ((4, 1, 256, 256), (1, 1, 15, 15)),
    ((2, 1, 300, 300), (1, 1, 21, 21)), ((1, 1, 512, 512), (1, 1, 63, 63)),
    ((16, 1, 64, 64), (1, 1, 9, 9)), ((32, 1, 28, 28), (1, 1, 13, 13)),
    ((16, 1, 1, 16000), (1, 1, 1, 15)), ((16, 1, 1, 16000), (1, 1, 1, 31)),
    ((16, 1, 1, 16000), (1, 1, 1, 63)), ((16, 1, 1, 16000), (1, 1, 1, 127)),
    ((2, 1, 1, 44100), (1, 1, 1, 511)), ((8, 4, 1, 4096), (8, 4, 1, 63)),
    ((8, 2, 1, 8000), (4, 2, 1, 127)), ((4, 3, 128, 128), (8, 3, 11, 11)),
    ((4, 3, 128, 128), (16, 3, 15, 15)), ((8, 16, 64, 64), (16, 16, 7, 7)),
    ((8, 32, 56, 56), (32, 1, 7, 7)), ((4, 16, 64, 64), (16, 1, 13, 13)),
    ((8, 8, 32, 32), (8, 8, 9, 9)), ((2, 3, 224, 224), (64, 3, 7, 7)),
    ((4, 1, 128, 128), (4, 1, 17, 17)), ((4, 1, 200, 200), (1, 1, 31, 1)),
]

# Winograd's: 3x3, padding 1, float32 and float64; the weight (filters,
# channels per group), groups = channels / channels per group.
WINOGRAD_SHAPES = [
    ((16, 64, 56, 56), (64, 64, 3, 3)), ((8, 128, 28, 28), (128, 128, 3, 3)),
    ((4, 256, 14, 14), (256, 256, 3, 3)), ((2, 512, 7, 7), (512, 512, 3, 3)),
    ((32, 32, 32, 32), (32, 32, 3, 3)), ((8, 16, 64, 64), (16, 16, 3, 3)),
    ((8, 3, 32, 32), (16, 3, 3, 3)), ((1, 64, 56, 56), (64, 64, 3, 3)),
    ((1, 128, 28, 28), (128, 128, 3, 3)), ((16, 32, 16, 16), (64, 32, 3, 3)),
    ((2, 64, 112, 112), (64, 64, 3, 3)), ((8, 64, 30, 30), (128, 64, 3, 3)),
    ((8, 96, 17, 17), (96, 96, 3, 3)), ((8, 128, 28, 28), (128, 32, 3, 3)),
    ((8, 128, 28, 28), (128, 4, 3, 3)), ((8, 24, 40, 40), (24, 24, 3, 3)),
    ((2, 256, 28, 28), (256, 256, 3, 3)), ((16, 8, 32, 32), (8, 8, 3, 3)),
    ((8, 48, 20, 20), (48, 48, 3, 3)), ((64, 16, 28, 28), (32, 16, 3, 3)),
    ((4, 32, 9, 9), (32, 32, 3, 3)), ((2, 1024, 7, 7), (256, 1024, 3, 3)),
    # dilated ('same' padding): Winograd on phase images
    ((4, 64, 64, 64), (64, 64, 3, 3), 2), ((8, 32, 64, 64), (32, 32, 3, 3), 2),
    ((2, 128, 32, 32), (128, 128, 3, 3), 2), ((4, 64, 48, 48), (64, 64, 3, 3), 3),
    ((1, 256, 33, 33), (256, 256, 3, 3), 2), ((8, 16, 40, 40), (16, 16, 3, 3), 2),
    ((2, 64, 97, 65), (64, 64, 3, 3), 4), ((16, 24, 32, 32), (24, 24, 3, 3), 2),
    ((2, 48, 128, 128), (48, 48, 3, 3), 2), ((8, 128, 16, 16), (128, 128, 3, 3), 2),
    # added with the Zen 5's fit: grouped, 8 to 48 channels a group; one or
    # two images; small images (7x7 and 6x6 are narrower than a vector)
    ((4, 192, 28, 28), (192, 16, 3, 3)), ((8, 256, 14, 14), (256, 32, 3, 3)),
    ((8, 64, 56, 56), (64, 16, 3, 3)), ((16, 64, 28, 28), (64, 8, 3, 3)),
    ((8, 96, 28, 28), (96, 24, 3, 3)), ((1, 256, 14, 14), (256, 256, 3, 3)),
    ((1, 96, 40, 40), (96, 96, 3, 3)), ((2, 160, 20, 20), (160, 160, 3, 3)),
    ((16, 128, 14, 14), (128, 16, 3, 3)), ((4, 64, 32, 32), (64, 32, 3, 3)),
    ((1, 192, 24, 24), (192, 48, 3, 3)), ((8, 32, 56, 56), (32, 8, 3, 3)),
    ((32, 128, 8, 8), (32, 128, 3, 3)), ((32, 64, 6, 6), (64, 64, 3, 3)),
    ((16, 256, 7, 7), (256, 256, 3, 3)), ((8, 192, 10, 10), (96, 192, 3, 3)),
    ((64, 32, 12, 12), (64, 32, 3, 3)), ((4, 64, 14, 14), (64, 64, 3, 3)),
]
# 5x5 kernels (F(2x2, 5x5)), 6 to 256 channels: timed with the 3x3 ones,
# left out of _NS_WINO's fit (its terms count their tiles as F(4x4, 3x3)'s),
# and the source of _NS_PER_MAC_5X5 (added with the Zen 4's fit).
WINOGRAD_5X5_SHAPES = [
    ((32, 6, 14, 14), (16, 6, 5, 5)), ((16, 8, 28, 28), (16, 8, 5, 5)),
    ((16, 16, 28, 28), (32, 16, 5, 5)), ((8, 32, 28, 28), (32, 32, 5, 5)),
    ((8, 48, 20, 20), (96, 48, 5, 5)), ((8, 64, 14, 14), (64, 64, 5, 5)),
    ((4, 64, 32, 32), (64, 64, 5, 5)), ((8, 96, 14, 14), (96, 96, 5, 5)),
    ((4, 128, 14, 14), (128, 128, 5, 5)), ((2, 192, 14, 14), (192, 192, 5, 5)),
    ((2, 256, 7, 7), (256, 256, 5, 5)), ((4, 32, 56, 56), (32, 32, 5, 5)),
]


# Large images and long signals (--large): 'same' padding, groups =
# channels when the weight has one.
LARGE_SHAPES = {
    "fit": [
        ((2, 1, 512, 512), (1, 1, 31, 31)), ((1, 1, 512, 512), (1, 1, 25, 25)),
        ((2, 1, 400, 400), (1, 1, 27, 27)), ((4, 1, 384, 384), (1, 1, 21, 21)),
        ((1, 1, 1024, 1024), (1, 1, 31, 31)), ((2, 1, 512, 512), (1, 1, 19, 19)),
        ((1, 3, 512, 512), (3, 1, 29, 29)), ((2, 1, 640, 480), (1, 1, 33, 33)),
        ((1, 1, 768, 768), (1, 1, 23, 23)), ((8, 1, 256, 256), (1, 1, 29, 29)),
        ((1, 2, 512, 512), (2, 2, 31, 31)), ((4, 1, 1, 65536), (1, 1, 1, 255)),
        ((2, 1, 1, 100000), (1, 1, 1, 511)), ((8, 1, 1, 32768), (1, 1, 1, 191)),
    ],
    "check": [
        ((1, 1, 600, 600), (1, 1, 27, 27)), ((2, 1, 480, 640), (1, 1, 25, 25)),
        ((3, 1, 512, 512), (1, 1, 23, 23)), ((1, 1, 900, 900), (1, 1, 35, 35)),
        ((2, 2, 300, 300), (2, 2, 21, 21)), ((1, 4, 256, 256), (4, 1, 31, 31)),
        ((4, 1, 320, 320), (1, 1, 33, 33)), ((1, 1, 1, 200000), (1, 1, 1, 301)),
        ((3, 1, 1, 48000), (1, 1, 1, 383)), ((16, 1, 1, 8192), (1, 1, 1, 255)),
        ((1, 1, 384, 512), (1, 1, 45, 45)), ((1, 1, 720, 540), (1, 1, 29, 29)),
    ],
}


def random_layers(seed, count):
    """``count`` layers (input, weight) drawn from ``seed``, of 3e6 to 6e8
    multiply-adds, with large kernels: where the FFT is a contender."""
    rng = np.random.default_rng(seed)
    layers = []
    while len(layers) < count:
        nd = int(rng.choice([1, 2], p=[0.35, 0.65]))
        n = int(rng.choice([1, 2, 4, 8, 16]))
        cg = int(rng.choice([1, 1, 2, 3, 4, 8, 16]))
        f = int(rng.choice([1, 2, 4, 8, 16, 32, 64]))
        groups = 1
        if rng.random() < 0.15:   # depthwise
            groups, f, cg = cg, cg * int(rng.choice([1, 2])), 1
        if nd == 2:
            k = int(rng.choice([5, 7, 9, 11, 13, 15, 17, 21, 25, 31]))
            size = int(rng.choice([32, 48, 64, 96, 128, 200, 256]))
            xs, ws = (n, cg * groups, size, size), (f, cg, k, k)
        else:
            k = int(rng.choice([15, 31, 63, 127, 255]))
            size = int(rng.choice([500, 1000, 4000, 16000]))
            xs, ws = (n, cg * groups, 1, size), (f, cg, 1, k)
        if 3e6 <= n * size ** nd * f * cg * k ** nd <= 6e8:
            layers.append((xs, ws))
    return layers


def best_of(f, rounds):
    f()
    best = math.inf
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def passes_of(xs, ws, x, w, g, geometry, pads4, d, groups, dtype):
    """The three passes of one case, by name: (the call, the plan), each a
    function of the method."""
    return {
        "forward": (lambda m: convx.conv2d(x, w, **geometry, method=m),
                    lambda m: _engine.forward_plan("t", xs, ws, (1, 1), pads4, (d, d),
                                                   groups, method=m, dtype=dtype)),
        "input grad": (lambda m: convx.conv2d_input_grad(xs, w, g, **geometry, method=m),
                       lambda m: _engine.input_grad_plan("t", xs, ws, g.shape, (1, 1),
                                                         pads4, (d, d), groups,
                                                         method=m, dtype=dtype)),
        "weight grad": (lambda m: convx.conv2d_weight_grad(x, ws, g, **geometry,
                                                           method=m),
                        lambda m: _engine.weight_grad_plan("t", xs, ws, g.shape, (1, 1),
                                                           pads4, (d, d), groups,
                                                           method=m, dtype=dtype)),
    }


def recording(fn, seen):
    """``fn``, appending the arguments of each call to ``seen``."""
    def recorded(c, *a):
        seen.append((c, *a))
        return fn(c, *a)
    return recorded


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=("fft", "winograd"), default="fft")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fit", action="store_true",
                    help="fit the constants to the times measured (see above)")
    ap.add_argument("--seed", type=int, default=None,
                    help="the FFT: time random layers drawn from this seed")
    ap.add_argument("--layers", type=int, default=30, help="with --seed: how many")
    ap.add_argument("--large", choices=("fit", "check"), default=None,
                    help="the FFT: time the large images and long signals of LARGE_SHAPES")
    args = ap.parse_args()
    report.require_fresh_build(convx)
    if args.threads:
        convx.set_num_threads(args.threads)
    print(f"threads: {convx.get_num_threads()}; best of {args.rounds}")
    losses, wrong, total = [], 0, 0
    method = args.method
    fits = []   # float32 Winograd: (its terms, copied values, its time, the other's, macs)
    ratios = {}   # the FFT: {(algorithm, pass, dtype): [time measured / the model's]}
    fft_terms = {}   # the FFT: {itemsize: [(its model's terms, its time in ns)]}
    cases = (WINOGRAD_SHAPES + WINOGRAD_5X5_SHAPES if method == "winograd"
             else LARGE_SHAPES[args.large] if args.large
             else SHAPES if args.seed is None else random_layers(args.seed, args.layers))
    for xs, ws, *dilated in cases:
        d = dilated[0] if dilated else 1
        pads = (d * (ws[2] - 1) // 2, d * (ws[3] - 1) // 2)
        groups = xs[1] // ws[1]
        geometry = dict(padding=pads, groups=groups, dilation=d)
        pads4 = (pads[0], pads[0], pads[1], pads[1])
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(0)
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            g = rng.standard_normal(convx.conv2d(x, w, **geometry).shape).astype(dtype)
            passes = passes_of(xs, ws, x, w, g, geometry, pads4, d, groups, dtype)
            if method == "winograd":
                del passes["weight grad"]
            for pass_, (call, plan) in passes.items():
                seen = []
                if method == "winograd":   # what the cost model is given
                    pays = _engine._winograd_pays
                    _engine._winograd_pays = recording(pays, seen)
                try:
                    chosen = plan("auto")
                finally:
                    if method == "winograd":
                        _engine._winograd_pays = pays
                other = plan(method)[3][1][1]   # the plan's fallback: the table without it
                t_fft = best_of(functools.partial(call, method), args.rounds)
                t_other = best_of(functools.partial(call, other.method), args.rounds)
                t_auto = t_fft if chosen[1].name == method else t_other
                loss = t_auto / min(t_fft, t_other)
                if method == "winograd" and dtype == np.float64:
                    # 'auto' keeps the direct sums in float64 by design (their
                    # error bound): shown, not counted
                    print(f"{xs!s:18} {ws!s:16} float64 {pass_:11} auto: "
                          f"{chosen[1].name:9} winograd {t_fft * 1e3:8.2f} ms  "
                          f"{other.name:9} {t_other * 1e3:8.2f} ms  (not counted)", flush=True)
                    continue
                losses.append(loss)
                total += 1
                wrong += loss > 1.05
                if method == "fft":
                    c = _engine.Call("t", "param", xs, ws, g.shape, (1, 1), pads4, (d, d),
                                     groups, np.dtype(dtype))
                    rates = _engine._cost_pass(pass_)
                    found = _engine._fft_geometry(c, pass_)
                    fft_terms.setdefault(np.dtype(dtype).itemsize, []).append(
                        (found[2], t_fft * 1e9))
                    for name, t, model in (
                            ("fft", t_fft, found[1]),
                            (other.name, t_other,
                             c.macs * _engine._ns_per_mac(other.name, c, pass_))):
                        ratios.setdefault((name, rates, np.dtype(dtype).name), []).append(
                            t * 1e9 / model)
                if seen:
                    c, cin, cout, tiles, tb, copied, narrow = seen[0]
                    fits.append((_engine._winograd_terms(c.groups, cin, cout, tiles, tb),
                                 _engine._NS_WINO_SPLIT * copied + _engine._NS_WINO_NARROW * narrow,
                                 t_fft * 1e9, t_other * 1e9, c.macs, ws[2]))
                print(f"{xs!s:18} {ws!s:16} {np.dtype(dtype).name:7} {pass_:11} "
                      f"auto: {chosen[1].name:9} {method} {t_fft * 1e3:8.2f} ms  {other.name:9} "
                      f"{t_other * 1e3:8.2f} ms  {'' if loss <= 1.05 else f'{loss:.2f}x slower'}",
                      flush=True)
    print(f"auto within 5% of the faster in {total - wrong} of {total} cases; its time over "
          f"the faster's: geomean {math.exp(np.mean(np.log(losses))):.3f}, "
          f"worst {max(losses):.2f}")
    if args.fit and fits:
        fit_winograd(fits)
    if args.fit and ratios:
        print("time measured / the model's, by algorithm, pass (the input gradient's are the "
              "forward pass's) and dtype: median (range) over the cases")
        for (name, rates, dtype), r in sorted(ratios.items()):
            print(f"  {name:10} {rates:11} {dtype:7} {np.median(r):.2f} "
                  f"({min(r):.2f}-{max(r):.2f}), {len(r)} cases")
        fit_fft(fft_terms)


def fit_fft(fft_terms):
    """This core's entry of _fft._NS_FFT: the transform and mix terms by
    non-negative least squares on the relative error of the FFT's times,
    with the chunk's (measured on its own: the time of a call on one tiny
    image) held."""
    from scipy.optimize import nnls

    from convx import _fft
    costs = _engine._per_core(_fft._NS_FFT)
    for itemsize, rows in sorted(fft_terms.items()):
        terms = np.array([r[0] for r in rows], float)
        t = np.array([r[1] for r in rows])
        chunk = costs[itemsize][2]
        ns, _ = nnls(terms[:, :2] / t[:, None], 1 - chunk * terms[:, 2] / t)
        print(f"fitted on {len(rows)} passes, with the chunk's {chunk:.0f} held: "
              f"_NS_FFT[{_engine._tuning()!r}][{itemsize}] = "
              f"({ns[0]:.3g}, {ns[1]:.3g}, {chunk:.0f})")


def fit_winograd(fits):
    """_NS_WINO and _NS_PER_MAC_3X3 from the float32 3x3 cases' times (ns),
    _NS_PER_MAC_5X5 from the 5x5 ones', for this CPU's entry
    (_engine._tuning())."""
    from scipy.optimize import nnls
    five = [f for f in fits if f[5] == 5]
    fits = [f for f in fits if f[5] == 3]
    terms = np.array([f[0] for f in fits], float)
    held = np.array([f[1] for f in fits], float)   # the split's and narrow rows' ns, held
    t_wino = np.array([f[2] for f in fits])
    t_other = np.array([f[3] for f in fits])
    macs = np.array([f[4] for f in fits], float)
    ns, _ = nnls(terms / t_wino[:, None], (t_wino - held) / t_wino)
    model = terms @ ns + held
    err = model / t_wino - 1
    print(f"fitted on {len(fits)} float32 passes: _NS_WINO[{_engine._tuning()!r}] = "
          f"({', '.join(f'{v:.3g}' for v in ns)}); the model's error: median "
          f"{np.median(abs(err)):.0%}, worst {max(abs(err)):.0%}")
    print(f"the other choice per multiply-add: median {np.median(t_other / macs):.4f} ns "
          f"(_NS_PER_MAC_3X3), from {min(t_other / macs):.4f} to {max(t_other / macs):.4f}")
    if five:
        per = np.array([f[3] / f[4] for f in five])
        print(f"5x5, {len(five)} float32 passes: the other choice per multiply-add: median "
              f"{np.median(per):.4f} ns (_NS_PER_MAC_5X5), from {per.min():.4f} to "
              f"{per.max():.4f}")


if __name__ == "__main__":
    main()
