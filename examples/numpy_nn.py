"""Everything in the example networks that is not a convolution, in plain NumPy.

convx is a convolution library: its layers (``convx.layers.Conv2D`` and
``Conv1D``) do the convolutions, and this file the rest, written to be read:
an activation, flatten, a dense layer, softmax cross-entropy, Adam, and a
loop over mini-batches.  Every layer has the same three methods as convx's:
``forward(x)``, ``backward(grad)`` (which keeps the gradients of its
parameters and returns the gradient of its input) and ``parameters()``, a
list of ``(array, gradient)`` pairs.
"""
import argparse
import math
import time

import numpy as np

from convx.layers import Conv1D, Conv2D


class ReLU:
    def forward(self, x):
        self.positive = x > 0
        return x * self.positive      # (np.where is several times slower here)

    def backward(self, grad):
        return grad * self.positive

    def parameters(self):
        return []


class Flatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad):
        return grad.reshape(self.shape)

    def parameters(self):
        return []


class Dense:
    """y = x @ weight.T + bias, initialised as PyTorch's ``nn.Linear``:
    U(-1/sqrt(n_in), 1/sqrt(n_in)) for both."""

    def __init__(self, n_in, n_out, dtype=np.float32, rng=None):
        rng = np.random.default_rng(rng)
        bound = 1 / math.sqrt(n_in)
        self.weight = rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype)
        self.bias = rng.uniform(-bound, bound, n_out).astype(dtype)
        self.weight_grad = self.bias_grad = None

    def forward(self, x):
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, grad):
        self.weight_grad = grad.T @ self.x
        self.bias_grad = grad.sum(axis=0)
        return grad @ self.weight

    def parameters(self):
        return [(self.weight, self.weight_grad), (self.bias, self.bias_grad)]


class Sequential:
    """Layers applied in order.  The first layer's backward skips the
    gradient of the network's input, which nothing needs."""

    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad):
        for layer in reversed(self.layers[1:]):
            grad = layer.backward(grad)
        first = self.layers[0]
        if isinstance(first, (Conv1D, Conv2D)):
            first.backward(grad, input_grad=False)
        else:
            first.backward(grad)

    def parameters(self):
        return [pair for layer in self.layers for pair in layer.parameters()]


def softmax_cross_entropy(logits, labels):
    """The mean cross-entropy of softmax(logits) against integer labels, and
    its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return float(loss), (grad / n).astype(logits.dtype)


class Adam:
    """Adam (Kingma and Ba), the update PyTorch's ``torch.optim.Adam`` makes,
    applied in place to each parameter."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps, self.m, self.v = 0, None, None

    def step(self, pairs):
        if self.m is None:
            self.m = [np.zeros_like(p) for p, _ in pairs]
            self.v = [np.zeros_like(p) for p, _ in pairs]
        self.steps += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1 ** self.steps)
        root_c2 = math.sqrt(1 - b2 ** self.steps)
        for (p, g), m, v in zip(pairs, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_c2 + self.eps)


def batches(n, batch_size, rng):
    """Index arrays of a shuffled pass over ``n`` examples."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def train_epoch(model, optimizer, x, y, batch_size, rng, progress=None):
    """One pass over (x, y); returns (mean loss, seconds).  ``progress`` is a
    tqdm bar (or None) that shows the running loss."""
    total, seen = 0.0, 0
    start = time.perf_counter()
    for idx in batches(len(x), batch_size, rng):
        logits = model.forward(x[idx])
        loss, grad = softmax_cross_entropy(logits, y[idx])
        model.backward(grad)
        optimizer.step(model.parameters())
        total += loss * len(idx)
        seen += len(idx)
        if progress is not None:
            progress.update(len(idx))
            progress.set_postfix(loss=f"{total / seen:.4f}")
    return total / seen, time.perf_counter() - start


def fit(model, data, epochs, batch_size, lr, seed, progress=True, log=print):
    """Train ``model`` with Adam on ``data`` = (x_train, y_train, x_test,
    y_test); returns the history: the training loss, the test accuracy and
    the seconds of each epoch.  ``progress`` shows a tqdm bar per epoch."""
    x_train, y_train, x_test, y_test = data
    optimizer = Adam(lr)
    rng = np.random.default_rng(seed + 1)
    history = {"loss": [], "accuracy": [], "seconds": []}
    for epoch in range(1, epochs + 1):
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(x_train), desc=f"epoch {epoch:2d}/{epochs}", unit="example",
                       leave=False)
        loss, seconds = train_epoch(model, optimizer, x_train, y_train, batch_size, rng, bar)
        if bar is not None:
            bar.close()
        acc = accuracy(model, x_test, y_test)
        history["loss"].append(loss)
        history["accuracy"].append(acc)
        history["seconds"].append(seconds)
        if log:
            log(f"epoch {epoch:2d}: loss {loss:.4f}, test accuracy {100 * acc:.1f}%, "
                f"{seconds:.3f} s")
    return history


def accuracy(model, x, y, batch_size=256):
    hits = 0
    for start in range(0, len(x), batch_size):
        hits += int((model.forward(x[start:start + batch_size]).argmax(axis=1)
                     == y[start:start + batch_size]).sum())
    return hits / len(x)


def arguments(doc, epochs, batch_size, lr, plot):
    """The command line both examples take (their defaults differ)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=plot, help="where to write the curves")
    parser.add_argument("--threads", type=int, help="convx.set_num_threads (default: all)")
    return parser


def plot_history(history, path, title):
    """Loss and test accuracy per epoch, side by side, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(epochs, history["loss"], marker="o", ms=3)
    left.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    right.plot(epochs, 100 * np.asarray(history["accuracy"]), marker="o", ms=3, color="C2")
    right.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
    right.grid(alpha=0.3)
    left.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
