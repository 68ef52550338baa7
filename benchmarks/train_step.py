"""One training step of examples/train_digits.py's network, timed part by part.

    python benchmarks/train_step.py [--threads N] [--compare-policies]

Prints the median time of each part of a step (batch 32, float32): the two
convolutions' passes, the bias gradients, the dense layer (NumPy's BLAS),
ReLU, Adam, and the whole step.  ``--compare-policies`` runs the whole step
again in child processes with libgomp's wait policy left to convx (its
threads sleep between calls: docs/reliability.md, "Idle threads") and with
``OMP_WAIT_POLICY=active`` (they spin), alternating, and prints both medians.
Needs the `examples` extra (scikit-learn).
"""
import argparse
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))


def median_us(f, n=200):
    f()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def parts(threads):
    import convx
    import numpy_nn as nn
    import train_digits as td
    if threads:
        convx.set_num_threads(threads)
    x_train, y_train = td.load_data()[:2]
    model = td.build_model(0)
    x, y = x_train[:32], y_train[:32]
    conv1, relu1, conv2, relu2, flat, dense = model.layers
    a1 = relu1.forward(conv1.forward(x))
    h2 = conv2.forward(a1)
    logits = dense.forward(flat.forward(relu2.forward(h2)))
    rng = np.random.default_rng(0)
    g2 = rng.random(h2.shape, np.float32)
    g1 = rng.random(a1.shape, np.float32)
    gl = rng.random(logits.shape, np.float32)
    optimizer = nn.Adam(1e-3)

    def step():
        _loss, grad = nn.softmax_cross_entropy(model.forward(x), y)
        model.backward(grad)
        optimizer.step(model.parameters())

    step()  # every layer has its gradients from here on

    rows = [
        ("conv 1 -> 16, forward", lambda: conv1.forward(x)),
        ("conv 16 -> 32, forward", lambda: conv2.forward(a1)),
        ("conv 16 -> 32, input gradient",
         lambda: convx.conv2d_input_grad(a1.shape, conv2.weight, g2, padding=1)),
        ("conv 16 -> 32, weight gradient",
         lambda: convx.conv2d_weight_grad(a1, conv2.weight.shape, g2, padding=1)),
        ("conv 16 -> 32, bias gradient", lambda: convx.conv2d_bias_grad(g2)),
        ("conv 1 -> 16, backward (no input gradient)",
         lambda: conv1.backward(g1, input_grad=False)),
        ("dense, forward + backward", lambda: (dense.forward(flat.forward(h2)),
                                               dense.backward(gl))),
        ("ReLU, forward + backward", lambda: (relu2.forward(h2), relu2.backward(g2))),
        ("Adam", lambda: optimizer.step(model.parameters())),
        ("the whole step", step),
    ]
    print(f"{convx.get_num_threads()} thread(s); medians of 200 calls")
    for name, f in rows:
        print(f"  {name:<45} {median_us(f):9.1f} us")
    return median_us(step)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--compare-policies", action="store_true")
    parser.add_argument("--step-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step_only:
        with open(os.devnull, "w") as null:
            out, sys.stdout = sys.stdout, null
            try:
                us = parts(args.threads)
            finally:
                sys.stdout = out
        print(us)
        return
    parts(args.threads)
    if args.compare_policies:
        base = {k: v for k, v in os.environ.items()
                if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        runs = {"convx's default (threads sleep)": [], "OMP_WAIT_POLICY=active (spin)": []}
        command = [sys.executable, __file__, "--step-only"]
        if args.threads:
            command += ["--threads", str(args.threads)]
        for _ in range(3):
            for name, extra in zip(runs, ({}, {"OMP_WAIT_POLICY": "active"})):
                out = subprocess.run(command, env={**base, **extra}, capture_output=True,
                                     text=True, check=True)
                runs[name].append(float(out.stdout))
        print("the whole step, in child processes, 3 runs each, alternating:")
        for name, values in runs.items():
            print(f"  {name:<45} {np.median(values):9.1f} us  (runs: "
                  + ", ".join(f"{v:.0f}" for v in values) + ")")


if __name__ == "__main__":
    main()
