"""The examples (examples/) work: the training examples' loss falls and the
accuracy passes chance by a wide margin in a short run, the data need no
network, and the PyTorch twin of the digits network starts from the same
weights; the out-of-core example convolves an image on disk chunk by chunk
and checks itself."""
import importlib
import pathlib
import socket
import sys

import numpy as np
import pytest

from conftest import optional  # (tests/conftest.py)

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def examples():
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield {name: importlib.import_module(name)
               for name in ("numpy_nn", "train_digits", "train_signals", "large_image")}
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails."""
    def refuse(*args, **kwargs):
        raise OSError("tests/test_examples.py: no network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_digits_trains(examples, offline, tmp_path):
    optional("sklearn")
    optional("matplotlib")
    digits = examples["train_digits"]
    data = digits.load_data()
    assert [a.shape for a in data] == [(1347, 1, 8, 8), (1347,), (450, 1, 8, 8), (450,)]
    assert np.array_equal(np.bincount(data[3]), np.bincount(data[3], minlength=10))
    _model, history = digits.train(epochs=3, progress=False, log=None, data=data)
    assert history["loss"][-1] < 0.5 * history["loss"][0] < 2.3
    assert history["accuracy"][-1] >= 0.85          # chance is 0.10
    examples["numpy_nn"].plot_history(history, tmp_path / "curves.png", "test")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_digits_progress_bar_and_log(examples, capsys):
    optional("sklearn")
    optional("tqdm")
    digits = examples["train_digits"]
    data = digits.load_data()
    small = (data[0][:96], data[1][:96], data[2][:32], data[3][:32])
    lines = []
    digits.train(epochs=1, progress=True, log=lines.append, data=small)
    assert len(lines) == 1 and lines[0].startswith("epoch  1: loss ")
    assert "epoch  1/1" in capsys.readouterr().err  # tqdm's bar


def test_signals_trains_offline_and_beats_a_linear_model(examples, offline):
    optional("mnist1d")
    signals = examples["train_signals"]
    data = signals.load_data()           # generated, not downloaded: the network is cut off
    assert [a.shape for a in data] == [(4000, 1, 40), (4000,), (1000, 1, 40), (1000,)]
    _, cnn = signals.train(epochs=4, progress=False, log=None, data=data)
    _, lin = signals.train(epochs=4, progress=False, log=None, data=data, linear=True)
    assert cnn["loss"][-1] < 0.8 * cnn["loss"][0]
    assert cnn["accuracy"][-1] >= 0.5 and cnn["accuracy"][-1] > lin["accuracy"][-1] + 0.15


def test_digits_torch_twin_starts_from_the_same_weights(examples):
    torch = optional("torch")
    digits = examples["train_digits"]
    model = digits.build_model(0)
    net = digits.torch_model(model)
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), theirs, rtol=1e-4, atol=1e-5)


def test_numpy_nn_gradients_by_finite_differences(examples):
    """The example's own NumPy layers (dense, ReLU, flatten, the loss) are
    right, so the examples test convx and not a bug of their own."""
    nn = examples["numpy_nn"]
    from convx.layers import Conv2D
    rng = np.random.default_rng(1)
    model = nn.Sequential(Conv2D(2, 3, 3, padding=1, dtype=np.float64, rng=rng), nn.ReLU(),
                          nn.Flatten(), nn.Dense(3 * 5 * 5, 4, dtype=np.float64, rng=rng))
    x = rng.standard_normal((3, 2, 5, 5))
    y = np.array([0, 3, 1])
    _loss, grad = nn.softmax_cross_entropy(model.forward(x), y)
    model.backward(grad)
    for array, grad in model.parameters():
        flat = array.reshape(-1)
        for i in rng.choice(flat.size, min(8, flat.size), replace=False):
            keep = flat[i]
            flat[i] = keep + 1e-6
            up = nn.softmax_cross_entropy(model.forward(x), y)[0]
            flat[i] = keep - 1e-6
            down = nn.softmax_cross_entropy(model.forward(x), y)[0]
            flat[i] = keep
            assert abs((up - down) / 2e-6 - grad.reshape(-1)[i]) < 1e-6


def test_adam_matches_torch(examples):
    torch = optional("torch")
    nn = examples["numpy_nn"]
    rng = np.random.default_rng(2)
    p = rng.standard_normal(5)
    tp = torch.tensor(p.copy(), requires_grad=True)
    opt = torch.optim.Adam([tp], lr=0.01)
    mine = nn.Adam(0.01)
    for _ in range(5):
        g = rng.standard_normal(5)
        mine.step([(p, g)])
        tp.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_large_image_small_run(examples, tmp_path):
    """A small run of examples/large_image.py: 3 x 300 x 300 in chunks of
    64 x 128 (ragged at the edges), the result on disk equal to one
    convx.conv2d of the whole image within the rounding bound, its spot
    checks passing, and catching a wrong tile."""
    optional("dask.array")
    import convx
    large = examples["large_image"]
    lines = []
    figures = large.run(size=300, chunk=(64, 128), directory=str(tmp_path), keep=True,
                        log=lines.append)
    assert len(lines) == 4 and lines[-1].endswith("(ok)")
    assert figures["blocks"] == 5 * 3 and figures["worst_over_tolerance"] <= 1
    assert figures["peak_rss"] >= figures["rss_before"] > 0
    shape = (1, 3, 300, 300)
    image = np.fromfile(tmp_path / "image.f32", np.float32).reshape(shape)
    out = np.fromfile(tmp_path / "conv.f32", np.float32).reshape(shape)
    weight = np.random.default_rng(1).standard_normal((3, 3, 5, 5)).astype(np.float32) / 5
    want = convx.conv2d(image, weight, padding="same")
    bound = convx.conv2d(np.abs(image).astype(np.float64), np.abs(weight).astype(np.float64),
                         padding="same")
    assert np.all(np.abs(out - want.astype(np.float64)) <= 76 * np.finfo(np.float32).eps * bound)
    assert np.abs(image).max() > 0.5 and np.abs(out).max() > 0.5   # not an image of zeros
    tiles = large.Tiles(str(tmp_path / "conv.f32"), shape, "r+")
    r0, _r1, c0, _c1 = figures["tiles"][3]              # astride the first chunk corner
    tiles[:, :, r0 + 1, c0 + 1] = tiles[:, :, r0 + 1, c0 + 1] + 1e-3
    assert large.spot_check(large.Tiles(str(tmp_path / "image.f32"), shape), tiles, weight,
                            figures["tiles"]) > 1
