"""The channels kernels' vector width: the engine's choice against the other
width, side by side in one process.

    python benchmarks/vector_width.py [--rounds N] [--dtypes float32,float64]
                                      [--passes forward,input grad,weight grad]

At x86-64-v4 the channels kernels run in 64-byte or 32-byte vectors of
filters, by ``_engine._channels_vector`` (a function of the filters per group,
the dtype, the pass and the core's ``_WIDE_FILL``).  For each layer below
(layers of our own: grouped 3x3 with 5 to 40 filters a group, a 7x7 stride-2
stem, LeNet-like 5x5, 3x3 at stride 2, dense 3x3 at 20x20 and 30x30, one
image, 1-D k3 to k9), it times each pass with the engine's width and with
the other one (``_channels_vector`` patched to give it, which also moves the
rules that follow the width, such as ``_channels_replace_direct``), each
with plans of its own, interleaved round by round.  It prints the best time
of each, their ratio, the algorithms each ran and whether the two agree bit
for bit (each output sums the same terms in the same order).  Rows where
the two run the same algorithm other than the channels kernel (say
Winograd, whose fallback for non-finite values is all that differs) are
left out.  The machine may be shared: quote the ratios.
"""
import argparse

import numpy as np

import convx
import report
from choices import best_of, call
from convx import _engine

LAYERS = [  # x shape, weight shape, stride, padding, groups
    ((8, 40, 28, 28), (40, 5, 3, 3), 1, 1, 8),
    ((8, 48, 28, 28), (48, 6, 3, 3), 1, 1, 8),
    ((8, 72, 28, 28), (72, 9, 3, 3), 1, 1, 8),
    ((8, 80, 28, 28), (80, 10, 3, 3), 1, 1, 8),
    ((8, 96, 28, 28), (96, 12, 3, 3), 1, 1, 8),
    ((8, 128, 28, 28), (128, 16, 3, 3), 1, 1, 8),
    ((8, 160, 28, 28), (160, 20, 3, 3), 1, 1, 8),
    ((8, 192, 28, 28), (192, 24, 3, 3), 1, 1, 8),
    ((8, 320, 14, 14), (320, 40, 3, 3), 1, 1, 8),
    ((8, 3, 112, 112), (20, 3, 7, 7), 2, 3, 1),
    ((8, 3, 112, 112), (40, 3, 7, 7), 2, 3, 1),
    ((32, 6, 14, 14), (12, 6, 5, 5), 1, 0, 1),
    ((32, 6, 14, 14), (20, 6, 5, 5), 1, 0, 1),
    ((8, 16, 56, 56), (24, 16, 3, 3), 2, 1, 1),
    ((8, 64, 28, 28), (16, 64, 3, 3), 2, 1, 1),
    ((16, 32, 20, 20), (24, 32, 3, 3), 1, 1, 1),
    ((16, 16, 30, 30), (6, 16, 3, 3), 1, 1, 1),
    ((8, 64, 28, 28), (8, 64, 3, 3), 1, 1, 1),
    ((1, 64, 56, 56), (40, 64, 3, 3), 1, 1, 1),
    ((16, 16, 2000), (12, 16, 7), 1, 3, 1),
    ((16, 32, 1024), (40, 32, 9), 1, 4, 1),
    ((16, 24, 2048), (20, 24, 3), 1, 1, 1),
]

# the passes by name, and as benchmarks/choices.py names them
PASSES = {"forward": "fwd", "input grad": "ig", "weight grad": "wg"}


def _algorithms(plan, found):
    """The names of the algorithms a plan holds (a Winograd plan also holds
    its fallback's)."""
    if isinstance(plan, _engine.Algorithm):
        found.append(plan.name)
    elif isinstance(plan, (tuple, list)):
        for part in plan:
            _algorithms(part, found)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--passes", default=",".join(PASSES))
    args = ap.parse_args()
    report.require_fresh_build(convx)
    if not _engine._core.channels_wide():
        raise SystemExit("this CPU runs the channels kernels in 32-byte vectors only")
    rule = _engine._channels_vector

    def other(filters, dtype, weight_grad=False, large=False):
        return 96 // dtype.itemsize - rule(filters, dtype, weight_grad, large)

    widths = {"rule": rule, "other": other}
    plans = {name: {} for name in widths}
    kept = _engine.PLANS

    def use(name):
        _engine._channels_vector = widths[name]
        _engine.PLANS = plans[name]

    print(f"cost model: {_engine._tuning()}")
    print(f"{'layer':40s} {'pass':11s} {'dtype':8s} {'rule':>9s} {'other':>9s} "
          f"{'rule/other':>10s}  same bits  algorithms (rule / other)")
    ratios = []
    try:
        for dtype in args.dtypes.split(","):
            for xs, ws, stride, padding, groups in LAYERS:
                rng = np.random.default_rng(0)
                x = rng.standard_normal(xs).astype(dtype)
                w = rng.standard_normal(ws).astype(dtype)
                use("rule")
                fwd = convx.conv1d if x.ndim == 3 else convx.conv2d
                shape = fwd(x, w, stride=stride, padding=padding, groups=groups).shape
                gout = rng.standard_normal(shape).astype(dtype)
                geometry = dict(stride=stride, padding=padding, groups=groups)
                for pass_ in args.passes.split(","):
                    f = call(PASSES[pass_], x.ndim - 2, x, w, gout, geometry, "auto")
                    out, names, vl = {}, {}, {}
                    for name, width in widths.items():
                        use(name)
                        plans[name].clear()
                        out[name] = f()
                        names[name] = _algorithms(list(plans[name].values()), [])
                        # the input gradient's filters are its transposed pass's:
                        # the layer's input channels
                        filters = ws[1] if pass_ == "input grad" else ws[0] // groups
                        vl[name] = width(filters, np.dtype(dtype), pass_ == "weight grad")
                    # the algorithm that runs on finite values (a Winograd plan
                    # holds its fallback's too)
                    if names["rule"][0] == names["other"][0] != "channels":
                        continue
                    best = dict.fromkeys(widths, float("inf"))
                    for r in range(args.rounds):
                        for name in (widths if r % 2 else reversed(list(widths))):
                            use(name)
                            best[name] = min(best[name], best_of(f, 0.03))
                    ratio = best["rule"] / best["other"]
                    ratios.append(ratio)
                    size = np.dtype(dtype).itemsize
                    layer = f"{xs}->{ws[0]} k{ws[-1]} s{stride} g{groups}"
                    print(f"{layer:40s} {pass_:11s} {dtype:8s} {best['rule'] * 1e3:7.3f}ms "
                          f"{best['other'] * 1e3:7.3f}ms {ratio:9.2f}x  "
                          f"{np.array_equal(out['rule'], out['other'])!s:9s}  "
                          f"{'+'.join(names['rule'])} {vl['rule'] * size}B / "
                          f"{'+'.join(names['other'])} {vl['other'] * size}B", flush=True)
    finally:
        _engine._channels_vector = rule
        _engine.PLANS = kept
    if ratios:
        print(f"geometric mean rule/other: {np.exp(np.mean(np.log(ratios))):.3f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}x, {len(ratios)} passes)")


if __name__ == "__main__":
    main()
