"""A 1-D CNN learns MNIST-1D, with convx doing every convolution.

    pip install "convx[examples]"                # mnist1d, tqdm, matplotlib
    python examples/train_signals.py             # train: accuracy, time per epoch, signals.png

The data are MNIST-1D (Greydanus, 2020): the ten digits drawn as 1-D
templates, then padded, shifted, sheared, scaled and blurred, with
correlated and white noise, to 40 samples.  ``mnist1d.data.make_dataset()``
generates them on the spot from the package's templates and a fixed seed (42):
nothing is downloaded (tests/test_examples.py checks it with the network
cut off).  4,000 signals train and 1,000 test.

The network is

    conv k5, 1 -> 32 channels, padding 2             convx.layers.Conv1D
    ReLU
    conv k3, 32 -> 32, stride 2, padding 1  (40 -> 20)
    ReLU
    conv k3, 32 -> 32, stride 2, padding 1  (20 -> 10)
    ReLU
    flatten, dense 320 -> 10, softmax cross-entropy, Adam     (numpy_nn.py)

and it is compared with a linear model (dense 40 -> 10, softmax) trained by
the same loop on the same data: the task is made so that a linear model does
poorly (about a third right), and a small CNN well (docs/examples.md).
"""
import numpy as np

import convx
from convx.layers import Conv1D
from numpy_nn import Dense, Flatten, ReLU, Sequential, arguments, fit, plot_history


def load_data(dtype=np.float32):
    """(x_train, y_train, x_test, y_test): signals (N, 1, 40)."""
    from mnist1d.data import get_dataset_args, make_dataset
    data = make_dataset(get_dataset_args())
    return (data["x"][:, None].astype(dtype), data["y"].astype(np.int64),
            data["x_test"][:, None].astype(dtype), data["y_test"].astype(np.int64))


def build_model(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv1D(1, 32, 5, padding=2, dtype=dtype, rng=rng),
        ReLU(),
        Conv1D(32, 32, 3, stride=2, padding=1, dtype=dtype, rng=rng),
        ReLU(),
        Conv1D(32, 32, 3, stride=2, padding=1, dtype=dtype, rng=rng),
        ReLU(),
        Flatten(),
        Dense(32 * 10, 10, dtype=dtype, rng=rng),
    )


def build_linear(seed, length=40, dtype=np.float32):
    return Sequential(Flatten(), Dense(length, 10, dtype=dtype, rng=seed))


def train(epochs=30, batch_size=64, lr=2e-3, seed=0, progress=True, log=print, data=None,
          linear=False):
    """Train the CNN (or, with ``linear``, the linear model) from scratch;
    returns (model, history)."""
    model = build_linear(seed) if linear else build_model(seed)
    history = fit(model, data or load_data(), epochs, batch_size, lr, seed, progress, log)
    return model, history


def main(argv=None):
    parser = arguments(__doc__, epochs=30, batch_size=64, lr=2e-3, plot="signals.png")
    args = parser.parse_args(argv)
    if args.threads:
        convx.set_num_threads(args.threads)
    data = load_data()
    print("the linear model:")
    _, lin = train(args.epochs, args.batch_size, args.lr, args.seed, progress=False,
                   log=None, data=data, linear=True)
    print(f"  test accuracy {100 * lin['accuracy'][-1]:.1f}% after {args.epochs} epochs")
    print("the CNN:")
    _, history = train(args.epochs, args.batch_size, args.lr, args.seed, data=data)
    print(f"test accuracy {100 * history['accuracy'][-1]:.1f}% after {args.epochs} epochs "
          f"(the linear model: {100 * lin['accuracy'][-1]:.1f}%); median epoch "
          f"{np.median(history['seconds']):.3f} s on {convx.get_num_threads()} thread(s)")
    plot_history(history, args.plot, f"convx: a 1-D CNN on MNIST-1D (seed {args.seed}; "
                                     f"linear model {100 * lin['accuracy'][-1]:.0f}%)")
    print(f"curves written to {args.plot}")


if __name__ == "__main__":
    main()
