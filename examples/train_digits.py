"""A small CNN learns handwritten digits, with convx doing every convolution.

    pip install "convx[examples]"                # scikit-learn, tqdm, matplotlib
    python examples/train_digits.py              # train: accuracy, time per epoch, digits.png
    python examples/train_digits.py --compare    # the epoch timed with convx, the notebook's
                                                 # loops and PyTorch (when installed)

The data are scikit-learn's bundled ``load_digits``: 1,797 greyscale digits of
8x8 pixels, no download.  A fixed, stratified split keeps 25% (450 images)
for the test.  The network is

    conv 3x3, 1 -> 16 channels    convx.layers.Conv2D, padding 1
    ReLU
    conv 3x3, 16 -> 32 channels   convx.layers.Conv2D, padding 1
    ReLU
    flatten, dense 2048 -> 10, softmax cross-entropy, Adam     (numpy_nn.py)

With the default seed it reaches 98-99% test accuracy in 15 epochs of a
fraction of a second each (docs/examples.md has the curves and the timings).
"""
import time

import numpy as np

import convx
from convx.layers import Conv2D
from numpy_nn import (
    Adam,
    Dense,
    Flatten,
    ReLU,
    Sequential,
    arguments,
    batches,
    fit,
    plot_history,
    train_epoch,
)

SPLIT_SEED = 0


def load_data(dtype=np.float32):
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images[:, None] / 16.0).astype(dtype)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=SPLIT_SEED)
    return x_train, y_train, x_test, y_test


def build_model(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2D(1, 16, 3, padding=1, dtype=dtype, rng=rng),
        ReLU(),
        Conv2D(16, 32, 3, padding=1, dtype=dtype, rng=rng),
        ReLU(),
        Flatten(),
        Dense(32 * 8 * 8, 10, dtype=dtype, rng=rng),
    )


def train(epochs=15, batch_size=32, lr=2e-3, seed=0, progress=True, log=print, data=None):
    """Train from scratch; returns (model, history) with the training loss,
    the test accuracy and the seconds of each epoch."""
    model = build_model(seed)
    history = fit(model, data or load_data(), epochs, batch_size, lr, seed, progress, log)
    return model, history


# --------------------------------------------------------------------------
# --compare: the same network's epoch, three ways
# --------------------------------------------------------------------------

def loops_epoch_seconds(data, seed, images=2):
    """The notebook's loops (convx._baseline, with the forward's filter-size
    bug fixed) on the network's convolutions for ``images`` images, scaled
    to the training set: an estimate, and a low one (it leaves out the rest
    of the network, as small as convx's epoch)."""
    from convx._baseline import notebook_loops as loops
    x = data[0][:images].astype(np.float64)
    model = build_model(seed, np.float64)
    conv1, conv2 = model.layers[0], model.layers[2]
    p1 = conv1.weight.transpose(1, 0, 2, 3)     # the notebook's [C_in, C_out, k, k]
    p2 = conv2.weight.transpose(1, 0, 2, 3)
    start = time.perf_counter()
    a1 = np.maximum(loops._output_fixed(x, p1) + conv1.bias[:, None, None], 0)
    out = np.maximum(loops._output_fixed(a1, p2) + conv2.bias[:, None, None], 0)
    grad = np.ones_like(out)
    loops._param_grad(a1, grad, p2)
    grad_a1 = loops._input_grad(a1, grad, p2) * (a1 > 0)
    loops._param_grad(x, grad_a1, p1)
    return (time.perf_counter() - start) * len(data[0]) / images


def torch_model(model):
    """The same network in PyTorch, with the same initial weights."""
    import torch
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(32 * 8 * 8, 10))
    with torch.no_grad():
        for mine, theirs in zip((model.layers[0], model.layers[2], model.layers[5]),
                                (net[0], net[2], net[5])):
            theirs.weight.copy_(torch.from_numpy(mine.weight))
            theirs.bias.copy_(torch.from_numpy(mine.bias))
    return net


def epoch_seconds(data, batch_size, lr, seed, epochs=3, with_torch=True):
    """The best of ``epochs`` training epochs with convx and, if asked, with
    the PyTorch twin; the two take turns, epoch by epoch, so that a change in
    the machine's load falls on both."""
    x_train, y_train = data[:2]
    model = build_model(seed)
    optimizer, rng = Adam(lr), np.random.default_rng(seed + 1)
    best = {"convx": float("inf")}
    if with_torch:
        import torch
        torch.set_num_threads(convx.get_num_threads())
        net = torch_model(build_model(seed))
        t_optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
        t_rng = np.random.default_rng(seed + 1)
        best["torch"] = float("inf")
    for _ in range(epochs):
        seconds = train_epoch(model, optimizer, x_train, y_train, batch_size, rng)[1]
        best["convx"] = min(best["convx"], seconds)
        if not with_torch:
            continue
        start = time.perf_counter()
        for idx in batches(len(x_train), batch_size, t_rng):
            idx = torch.from_numpy(idx)
            t_optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            t_optimizer.step()
        best["torch"] = min(best["torch"], time.perf_counter() - start)
    return best


def compare(data, batch_size, lr, seed, log=print):
    """Epoch times (best of 3 epochs) with convx, the notebook's loops and
    PyTorch; returns them as a dict."""
    try:
        import torch
    except ImportError:
        torch = None
    times = epoch_seconds(data, batch_size, lr, seed, with_torch=torch is not None)
    times["loops"] = loops_epoch_seconds(data, seed)
    n = len(data[0])
    log(f"one epoch: {n:,} images in batches of {batch_size}, "
        f"{convx.get_num_threads()} thread(s), best of 3 epochs")
    log(f"  convx {convx.__version__:<22} {times['convx']:10.3f} s")
    log(f"  the notebook's loops        ~{times['loops']:9.0f} s   estimated from 2 images "
        f"(convolutions only): {times['loops'] / times['convx']:,.0f}x convx's time")
    if torch is not None:
        log(f"  PyTorch {torch.__version__:<20} {times['torch']:10.3f} s   "
            f"{times['torch'] / times['convx']:.2f}x convx's time")
    else:
        log("  PyTorch: not installed")
    return times


def main(argv=None):
    parser = arguments(__doc__, epochs=15, batch_size=32, lr=2e-3, plot="digits.png")
    parser.add_argument("--compare", action="store_true",
                        help="time an epoch with convx, the notebook's loops and PyTorch")
    args = parser.parse_args(argv)
    if args.threads:
        convx.set_num_threads(args.threads)
    data = load_data()
    if args.compare:
        compare(data, args.batch_size, args.lr, args.seed)
        return
    _, history = train(args.epochs, args.batch_size, args.lr, args.seed, data=data)
    print(f"test accuracy {100 * history['accuracy'][-1]:.1f}% after {args.epochs} epochs; "
          f"median epoch {np.median(history['seconds']):.3f} s on "
          f"{convx.get_num_threads()} thread(s)")
    plot_history(history, args.plot, f"convx: a CNN on scikit-learn's digits "
                                     f"(seed {args.seed})")
    print(f"curves written to {args.plot}")


if __name__ == "__main__":
    main()
