"""convx.layers: the book's operation (Conv2D_Op, Conv1D_Op) and the layers in
PyTorch's layout (Conv2D, Conv1D), and the bias gradients they use.

Oracles: the notebook names (the same arithmetic), the pure-NumPy reference
(tests/reference.py), finite differences through a stack of two layers, a
minimal copy of the book's framework written from its contract, and PyTorch
where installed (CONVX_REQUIRE_TORCH=1 makes it compulsory, as in CI; conftest.py).
"""
import copy
import math
import pickle

import numpy as np
import pytest

import convx
import reference as ref
from conftest import optional  # (tests/conftest.py)
from convx import ConvxTypeError, ConvxValueError
from convx.layers import Conv1D, Conv1D_Op, Conv2D, Conv2D_Op

torch = optional("torch", skip=False)

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _same(k):
    return (k // 2, k - 1 - k // 2)


# --------------------------------------------------------------------------
# The book's operation
# --------------------------------------------------------------------------

OP_CASES = [  # (N, C_in, C_out, H, W, KH, KW)
    (1, 1, 1, 5, 5, 3, 3),
    (3, 2, 4, 7, 6, 3, 3),
    (4, 3, 5, 8, 8, 2, 2),     # even kernel
    (5, 4, 2, 6, 9, 4, 5),     # even and odd, not square
    (2, 3, 3, 5, 5, 1, 1),
    (3, 16, 8, 12, 12, 5, 5),  # enough taps for the direct kernels
]


@pytest.mark.parametrize("case", OP_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_op_is_the_notebook_names(case, dtype):
    """Conv2D_Op(W).forward(x) is _output(x, W), its gradients _input_grad and
    _param_grad: the same engine, the same bits."""
    n, ci, co, h, w, kh, kw = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, ci, h, w)).astype(dtype)
    W = rng.standard_normal((ci, co, kh, kw)).astype(dtype)
    g = rng.standard_normal((n, co, h, w)).astype(dtype)
    op = Conv2D_Op(W)
    out = op.forward(x)
    assert out is op.output and op.input_ is x
    assert np.array_equal(out, convx._output(x, W))
    dx = op.backward(g)
    assert dx is op.input_grad
    assert np.array_equal(dx, convx._input_grad(x, g, W))
    assert np.array_equal(op.param_grad, convx._param_grad(x, g, W))
    assert dx.dtype == op.param_grad.dtype == dtype


@pytest.mark.parametrize("case", OP_CASES)
def test_conv2d_op_against_reference(case):
    """Right at every batch size and for even kernels: the pure-NumPy reference."""
    n, ci, co, h, w, kh, kw = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, ci, h, w))
    W = rng.standard_normal((ci, co, kh, kw))
    g = rng.standard_normal((n, co, h, w))
    op = Conv2D_Op(W)
    np.testing.assert_allclose(op.forward(x), ref.forward(x, W), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.backward(g), ref.input_grad(x.shape, W, g), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(op.param_grad, ref.param_grad(x, g, W.shape), rtol=1e-12,
                               atol=1e-11)


def _conv1d_op_reference(x, W, g):
    """Conv1D_Op's three results by the reference's general convolution."""
    k = W.shape[2]
    pads = (0, 0) + _same(k)
    w = W.transpose(1, 0, 2)
    out = ref.conv_nd(x, w, pads=pads)
    dx = ref.conv_nd_input_grad(x.shape, w, g, pads=pads)
    dw = ref.conv_nd_weight_grad(x, w.shape, g, pads=pads).transpose(1, 0, 2)
    return out, dx, dw


@pytest.mark.parametrize("n,ci,co,length,k", [(1, 1, 1, 4, 3), (3, 2, 5, 17, 4), (4, 3, 2, 9, 5),
                                              (2, 8, 16, 40, 9), (3, 2, 2, 6, 6)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv1d_op_against_reference(n, ci, co, length, k, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, ci, length)).astype(dtype)
    W = rng.standard_normal((ci, co, k)).astype(dtype)
    g = rng.standard_normal((n, co, length)).astype(dtype)
    op = Conv1D_Op(W)
    out = op.forward(x)
    dx = op.backward(g)
    want = _conv1d_op_reference(x, W, g)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    for got, exp in zip((out, dx, op.param_grad), want):
        assert got.dtype == dtype and got.shape == exp.shape
        np.testing.assert_allclose(got, exp, **tol)


def test_conv1d_op_is_the_notebook_batch_for_one_channel():
    """With one channel in and out, Conv1D_Op is the notebook's batched 1-D
    convolution and its gradient with respect to the input."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 13))
    k = rng.standard_normal(5)
    op = Conv1D_Op(k[None, None])
    assert np.array_equal(op.forward(x[:, None])[:, 0], convx.conv_1d_batch(x, k))
    op.backward(np.ones((5, 1, 13)))
    assert np.array_equal(op.input_grad[:, 0], convx.input_grad_1d_batch(x, k))
    assert np.array_equal(op.param_grad[0, 0], convx.param_grad_1d_batch(x, k))


@needs_torch
@pytest.mark.parametrize("case", OP_CASES)
def test_conv2d_op_against_torch(case):
    n, ci, co, h, w, kh, kw = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, ci, h, w))
    W = rng.standard_normal((ci, co, kh, kw))
    g = rng.standard_normal((n, co, h, w))
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(W, requires_grad=True)
    padded = torch.nn.functional.pad(tx, _same(kw) + _same(kh))
    tout = torch.nn.functional.conv2d(padded, tw.transpose(0, 1))
    tout.backward(torch.tensor(g))
    op = Conv2D_Op(W)
    np.testing.assert_allclose(op.forward(x), tout.detach().numpy(), rtol=1e-11, atol=1e-11)
    op.backward(g)
    np.testing.assert_allclose(op.input_grad, tx.grad.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(op.param_grad, tw.grad.numpy(), rtol=1e-11, atol=1e-10)


@needs_torch
def test_conv1d_op_against_torch():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 21))
    W = rng.standard_normal((3, 6, 4))
    g = rng.standard_normal((4, 6, 21))
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(W, requires_grad=True)
    tout = torch.nn.functional.conv1d(torch.nn.functional.pad(tx, _same(4)), tw.transpose(0, 1))
    tout.backward(torch.tensor(g))
    op = Conv1D_Op(W)
    np.testing.assert_allclose(op.forward(x), tout.detach().numpy(), rtol=1e-11, atol=1e-11)
    op.backward(g)
    np.testing.assert_allclose(op.input_grad, tx.grad.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(op.param_grad, tw.grad.numpy(), rtol=1e-11, atol=1e-10)


def test_op_keeps_the_param_it_was_given():
    """No copy: an optimizer's in-place update of param is what the next
    forward uses."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((2, 3, 3, 3))
    op = Conv2D_Op(W)
    assert op.param is W
    x = rng.standard_normal((2, 2, 6, 6))
    before = op.forward(x).copy()
    W -= 0.5 * np.ones_like(W)
    assert op.param is W
    assert not np.allclose(op.forward(x), before)
    assert np.array_equal(op.output, convx._output(x, W))
    # and nothing convx does writes into the caller's arrays
    snapshot = (x.copy(), W.copy())
    op.backward(np.ones((2, 3, 6, 6)))
    assert np.array_equal(x, snapshot[0]) and np.array_equal(W, snapshot[1])


# --------------------------------------------------------------------------
# A minimal framework, written from the book's contract (chapter 5 and its
# library): Operation, ParamOperation, Layer, a network, a loss and SGD.
# --------------------------------------------------------------------------

def assert_same_shape(a, b):
    assert a.shape == b.shape, f"{a.shape} != {b.shape}"


class Operation:
    def __init__(self):
        pass

    def forward(self, input_, inference=False):
        self.input_ = input_
        self.output = self._output(inference)
        return self.output

    def backward(self, output_grad):
        assert_same_shape(self.output, output_grad)
        self.input_grad = self._input_grad(output_grad)
        assert_same_shape(self.input_, self.input_grad)
        return self.input_grad


class ParamOperation(Operation):
    def __init__(self, param):
        super().__init__()
        self.param = param
        self.book_init_ran = True

    def backward(self, output_grad):
        assert_same_shape(self.output, output_grad)
        self.input_grad = self._input_grad(output_grad)
        self.param_grad = self._param_grad(output_grad)
        assert_same_shape(self.input_, self.input_grad)
        assert_same_shape(self.param, self.param_grad)
        return self.input_grad


class WeightMultiply(ParamOperation):
    def _output(self, inference):
        return self.input_ @ self.param

    def _input_grad(self, output_grad):
        return output_grad @ self.param.T

    def _param_grad(self, output_grad):
        return self.input_.T @ output_grad


class BiasAdd(ParamOperation):
    def _output(self, inference):
        return self.input_ + self.param

    def _input_grad(self, output_grad):
        return np.ones_like(self.input_) * output_grad

    def _param_grad(self, output_grad):
        return output_grad.sum(axis=0, keepdims=True)


class Tanh(Operation):
    def _output(self, inference):
        return np.tanh(self.input_)

    def _input_grad(self, output_grad):
        return output_grad * (1 - self.output ** 2)


class Flatten(Operation):
    def _output(self, inference):
        return self.input_.reshape(self.input_.shape[0], -1)

    def _input_grad(self, output_grad):
        return output_grad.reshape(self.input_.shape)


class Layer:
    def __init__(self):
        self.first = True
        self.params, self.param_grads, self.operations = [], [], []

    def forward(self, input_, inference=False):
        if self.first:
            self._setup_layer(input_)
            self.first = False
        self.input_ = input_
        for op in self.operations:
            input_ = op.forward(input_, inference)
        self.output = input_
        return self.output

    def backward(self, output_grad):
        assert_same_shape(self.output, output_grad)
        for op in reversed(self.operations):
            output_grad = op.backward(output_grad)
        self.param_grads = [op.param_grad for op in self.operations
                            if issubclass(op.__class__, ParamOperation)]
        return output_grad

    def collect_params(self):
        self.params = [op.param for op in self.operations
                       if issubclass(op.__class__, ParamOperation)]


class BookConv2D_Op(convx.layers.Conv2D_Op, ParamOperation):
    """The mixin the issue asks for: convx's operation, the book's class."""


class ConvLayer(Layer):
    def __init__(self, out_channels, param_size, rng):
        super().__init__()
        self.out_channels, self.param_size, self.rng = out_channels, param_size, rng

    def _setup_layer(self, input_):
        shape = (input_.shape[1], self.out_channels, self.param_size, self.param_size)
        self.params = [self.rng.normal(scale=0.5, size=shape)]
        self.operations = [BookConv2D_Op(self.params[0]), Tanh(), Flatten()]


class Dense(Layer):
    def __init__(self, neurons, rng):
        super().__init__()
        self.neurons, self.rng = neurons, rng

    def _setup_layer(self, input_):
        scale = 1 / math.sqrt(input_.shape[1])
        self.params = [self.rng.normal(scale=scale, size=(input_.shape[1], self.neurons)),
                       np.zeros((1, self.neurons))]
        self.operations = [WeightMultiply(self.params[0]), BiasAdd(self.params[1])]


def _softmax_cross_entropy(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels] + 1e-12).mean()
    grad = p.copy()
    grad[np.arange(n), labels] -= 1
    return loss, grad / n


def _bars(rng, n, size=8):
    """Images of one vertical (label 0) or horizontal (label 1) bar in noise."""
    x = 0.3 * rng.standard_normal((n, 1, size, size))
    y = rng.integers(0, 2, n)
    where = rng.integers(1, size - 1, n)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, :, where[i]] += 1.5
        else:
            x[i, 0, where[i], :] += 1.5
    return x, y


def test_mixin_trains_inside_the_books_framework():
    rng = np.random.default_rng(8)
    layers = [ConvLayer(4, 3, rng), Dense(2, rng)]
    x, y = _bars(rng, 64)
    lr = 0.1
    losses = []
    initial = None
    for step in range(60):
        out = x
        for layer in layers:
            out = layer.forward(out)
        loss, grad = _softmax_cross_entropy(out, y)
        losses.append(loss)
        for layer in reversed(layers):
            grad = layer.backward(grad)
        if initial is None:
            op = layers[0].operations[0]
            # the book's Layer found the operation among its ParamOperations
            assert isinstance(op, ParamOperation) and op.book_init_ran
            assert op.param is layers[0].params[0]
            initial = op.param.copy()
        for layer in layers:  # SGD, in place, as the book's optimizer does
            for param, param_grad in zip(layer.params, layer.param_grads):
                param -= lr * param_grad
    op = layers[0].operations[0]
    assert op.param is layers[0].params[0]          # still the same array
    assert not np.allclose(op.param, initial)        # the weights moved
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    logits = x
    for layer in layers:
        logits = layer.forward(logits, inference=True)
    assert (logits.argmax(axis=1) == y).mean() >= 0.9


class HooksFromTheBook(ParamOperation, convx.layers.Conv2D_Op):
    """The book's ParamOperation first: its own forward and backward call
    convx's hooks, which read only ``input_`` and ``param``."""


class HooksFromTheBook1D(ParamOperation, convx.layers.Conv1D_Op):
    pass


def test_hooks_called_as_the_books_param_operation_calls_them():
    rng = np.random.default_rng(9)
    W = rng.standard_normal((3, 2, 4, 3))
    x = rng.standard_normal((3, 3, 7, 5))
    g = rng.standard_normal((3, 2, 7, 5))
    op = HooksFromTheBook(W)
    assert op.param is W and op.book_init_ran
    assert type(op).forward is Operation.forward
    assert type(op).backward is ParamOperation.backward
    out = op.forward(x)
    assert np.array_equal(out, convx._output(x, W))
    dx = op.backward(g)
    assert np.array_equal(dx, convx._input_grad(x, g, W))
    assert np.array_equal(op.param_grad, convx._param_grad(x, g, W))
    # the hooks directly, with the arguments the book passes
    assert np.array_equal(op._output(False), out)
    assert np.array_equal(op._input_grad(g), dx)
    assert np.array_equal(op._param_grad(g), op.param_grad)

    W1 = rng.standard_normal((3, 2, 5))
    op1 = HooksFromTheBook1D(W1)
    x1 = rng.standard_normal((4, 3, 11))
    g1 = rng.standard_normal((4, 2, 11))
    out1 = op1.forward(x1)
    op1.backward(g1)
    want = _conv1d_op_reference(x1, W1, g1)
    for got, exp in zip((out1, op1.input_grad, op1.param_grad), want):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-11)


def test_op_errors():
    W = np.ones((2, 3, 3, 3))
    with pytest.raises(ConvxValueError, match=r"Conv2D_Op\(\): argument 'W' must be 4-D"):
        Conv2D_Op(np.ones((2, 3, 3)))
    with pytest.raises(ConvxTypeError, match=r"Conv1D_Op\(\): argument 'W'"):
        Conv1D_Op([[[1.0]]])
    with pytest.raises(ConvxValueError, match="kernel sizes >= 1"):
        Conv2D_Op(np.ones((2, 3, 0, 3)))
    op = Conv2D_Op(W)
    with pytest.raises(AssertionError, match=r"Conv2D_Op.backward\(\): call forward\(\) first"):
        op.backward(np.ones((1, 3, 4, 4)))
    with pytest.raises(AssertionError, match=r"Conv2D_Op._output\(\): argument 'param' must "
                                             r"have 3 input channels"):
        op.forward(np.ones((1, 3, 4, 4)))
    with pytest.raises(ConvxValueError, match=r"argument 'input_' must be 4-D"):
        op.forward(np.ones((2, 4, 4)))
    op.forward(np.ones((1, 2, 4, 4)))
    with pytest.raises(AssertionError, match=r"'output_grad' must have the output's shape "
                                             r"\(1, 3, 4, 4\), got shape \(1, 3, 4, 5\)"):
        op.backward(np.ones((1, 3, 4, 5)))


# --------------------------------------------------------------------------
# The layers in PyTorch's layout
# --------------------------------------------------------------------------

def test_layer_init_is_torchs():
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan_in =
    in_channels / groups * kernel size; a seed reproduces it."""
    layer = Conv2D(12, 66, (3, 5), groups=3, rng=0)
    bound = 1 / math.sqrt(4 * 15)
    assert layer.weight.shape == (66, 4, 3, 5) and layer.bias.shape == (66,)
    assert layer.weight.dtype == layer.bias.dtype == np.float32
    for a in (layer.weight, layer.bias):
        assert np.abs(a).max() <= bound
    w = layer.weight.astype(np.float64)
    assert np.abs(w).max() > 0.98 * bound
    assert abs(w.mean()) < 0.02 * bound
    assert abs(w.var() - bound ** 2 / 3) < 0.05 * bound ** 2 / 3   # a uniform's variance
    again = Conv2D(12, 66, (3, 5), groups=3, rng=0)
    assert np.array_equal(again.weight, layer.weight) and np.array_equal(again.bias, layer.bias)
    gen = Conv2D(12, 66, (3, 5), groups=3, rng=np.random.default_rng(0))
    assert np.array_equal(gen.weight, layer.weight)
    assert not np.array_equal(Conv2D(12, 66, (3, 5), groups=3, rng=1).weight, layer.weight)
    one = Conv1D(2, 3, 7, bias=False, dtype=np.float64, rng=2)
    assert one.bias is None and one.weight.shape == (3, 2, 7) and one.weight.dtype == np.float64
    assert np.abs(one.weight).max() <= 1 / math.sqrt(14)


@needs_torch
def test_layer_init_bound_matches_torch():
    """torch's nn.Conv2d draws from the same bound (its weights are its own
    draws; the bound and the spread are what must agree)."""
    torch.manual_seed(0)
    t = torch.nn.Conv2d(12, 66, (3, 5), groups=3)
    tb = t.weight.detach().abs().max().item()
    c = Conv2D(12, 66, (3, 5), groups=3, rng=0)
    bound = 1 / math.sqrt(60)
    assert tb <= bound and np.abs(c.weight).max() <= bound
    assert abs(t.weight.detach().std().item() - c.weight.std()) < 0.05 * bound
    assert abs(t.bias.detach().abs().max().item() - bound) < 0.1 * bound


LAYER_CASES = [  # (nsp, N, C_in, C1, C_out, size, k1, k2, stride, padding, groups)
    (2, 3, 4, 6, 4, (9, 8), 3, 2, 1, 1, 1),
    (2, 4, 4, 6, 2, (10, 10), 4, 3, 2, 1, 2),
    (2, 3, 2, 4, 4, (7, 9), (2, 3), 3, (2, 1), "valid", 2),
    (1, 3, 2, 4, 3, (19,), 5, 4, 1, 2, 1),
    (1, 5, 4, 8, 4, (16,), 4, 3, 2, 1, 4),
]


def _stack(case, dtype, rng):
    nsp, n, ci, c1, co, size, k1, k2, stride, padding, groups = case
    Layer = Conv2D if nsp == 2 else Conv1D
    first = Layer(ci, c1, k1, stride=stride, padding=padding, groups=groups, dtype=dtype,
                  rng=rng)
    second = Layer(c1, co, k2, padding="same", groups=groups, bias=groups == 1, dtype=dtype,
                   rng=rng)
    x = rng.standard_normal((n, ci) + size).astype(dtype)
    return first, second, x


def _loss_and_grads(first, second, x, r, act, dact, with_grads=True):
    """L = sum(second(act(first(x))) * r), in float64, and its gradients."""
    h = first.forward(x)
    a = act(h)
    out = second.forward(a)
    loss = float(np.sum(out.astype(np.float64) * r))
    if not with_grads:
        return loss
    da = second.backward(r.astype(out.dtype))
    dx = first.backward((da * dact(h)).astype(h.dtype))
    return loss, dx


def _tanh(h):
    return np.tanh(h)


def _dtanh(h):
    return 1 - np.tanh(h) ** 2


@pytest.mark.parametrize("case", LAYER_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_layers_against_finite_differences(case, dtype):
    """Central differences of the loss of conv -> tanh -> conv, for the input,
    both weights and both biases, at sampled coordinates."""
    rng = np.random.default_rng(10)
    first, second, x = _stack(case, dtype, rng)
    r = rng.standard_normal(second.forward(np.tanh(first.forward(x))).shape)
    _loss, dx = _loss_and_grads(first, second, x, r, _tanh, _dtanh)
    grads = {"x": (x, dx), "w1": (first.weight, first.weight_grad),
             "b1": (first.bias, first.bias_grad), "w2": (second.weight, second.weight_grad)}
    if second.bias is not None:
        grads["b2"] = (second.bias, second.bias_grad)
    if dtype == np.float64:
        step, rtol = 1e-5, 1e-6
    else:  # float32: rounding in the layers limits the differences
        step, rtol = 1e-2, 3e-2
    for name, (array, grad) in grads.items():
        assert grad.shape == array.shape and grad.dtype == dtype, name
        scale = np.sqrt(np.mean(grad.astype(np.float64) ** 2)) + 1e-12
        flat = array.reshape(-1)
        for i in rng.choice(flat.size, size=min(flat.size, 12), replace=False):
            keep = flat[i]
            flat[i] = keep + step
            up = _loss_and_grads(first, second, x, r, _tanh, _dtanh, False)
            flat[i] = keep - step
            down = _loss_and_grads(first, second, x, r, _tanh, _dtanh, False)
            flat[i] = keep
            fd = (up - down) / (np.float64(keep + step) - np.float64(keep - step))
            an = float(grad.reshape(-1)[i])
            assert abs(fd - an) <= rtol * max(abs(an), scale), (name, i, fd, an)


@needs_torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", LAYER_CASES)
def test_two_layers_against_torch(case):
    rng = np.random.default_rng(11)
    first, second, x = _stack(case, np.float64, rng)
    nsp = case[0]
    conv = torch.nn.functional.conv2d if nsp == 2 else torch.nn.functional.conv1d
    r = None
    tx = torch.tensor(x, requires_grad=True)
    params = [torch.tensor(a, requires_grad=True) if a is not None else None
              for a in (first.weight, first.bias, second.weight, second.bias)]
    h = conv(tx, params[0], params[1], first.stride, first.padding, first.dilation,
             first.groups)
    out = conv(torch.tanh(h), params[2], params[3], 1, "same", 1, second.groups)
    r = rng.standard_normal(tuple(out.shape))
    (out * torch.tensor(r)).sum().backward()
    _loss, dx = _loss_and_grads(first, second, x, r, _tanh, _dtanh)
    np.testing.assert_allclose(second.forward(np.tanh(first.forward(x))), out.detach().numpy(),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    mine = [first.weight_grad, first.bias_grad, second.weight_grad, second.bias_grad]
    for got, t in zip(mine, params):
        if t is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_layer_unbatched_and_gradients_overwritten():
    rng = np.random.default_rng(12)
    layer = Conv2D(3, 5, 3, padding=1, dtype=np.float64, rng=rng)
    x = rng.standard_normal((3, 6, 7))
    y = layer.forward(x)
    assert y.shape == (5, 6, 7)
    assert np.array_equal(y, convx.conv2d(x[None], layer.weight, layer.bias, padding=1)[0])
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape
    first = layer.weight_grad.copy()
    layer.forward(x)
    layer.backward(np.ones_like(y))
    assert np.array_equal(layer.weight_grad, first)  # overwritten, not accumulated
    assert np.array_equal(layer.bias_grad, np.full(5, 42.0))
    layer.weight_grad = None
    assert layer.backward(np.ones_like(y), input_grad=False) is None  # the first layer's
    assert np.array_equal(layer.weight_grad, first)
    pairs = layer.parameters()
    assert pairs[0][0] is layer.weight and pairs[0][1] is layer.weight_grad
    assert pairs[1][0] is layer.bias and pairs[1][1] is layer.bias_grad
    assert repr(layer) == "Conv2D(3, 5, kernel_size=(3, 3), padding=1, dtype=float64)"


@pytest.mark.parametrize("layer_class, shape, padding", [
    (Conv2D, (2, 2, 3, 3), 1), (Conv2D, (1, 1, 3, 3), 0), (Conv2D, (4, 4, 5, 5), 2),
    (Conv1D, (3, 3, 3), 0), (Conv1D, (2, 2, 5), 2),
])
@pytest.mark.parametrize("weight_first", [False, True])
def test_layer_gradients_where_the_input_is_shaped_as_the_weight(layer_class, shape, padding,
                                                                 weight_first):
    """Both gradients right, in either order, where the input's shape is the
    weight's: the layer names its two gradient calls alike, and their plans
    were once cached under one key, so that the second reused the first's."""
    rng = np.random.default_rng(13)
    layer = layer_class(shape[1], shape[0], shape[2:], padding=padding, bias=False,
                        dtype=np.float64, rng=rng)
    assert layer.weight.shape == shape
    x = rng.standard_normal(shape)
    g = rng.standard_normal(layer.forward(x).shape)
    # the reference in 2-D: a 1-D layer's arrays one row tall
    x4, w4, g4 = (a.reshape(a.shape[:2] + (1,) * (4 - a.ndim) + a.shape[2:])
                  for a in (x, layer.weight, g))
    pads = ref.pads4(padding if len(shape) == 4 else (0, padding))
    want_dw = ref.conv_nd_weight_grad(x4, w4.shape, g4, pads=pads).reshape(shape)
    want_dx = ref.conv_nd_input_grad(x4.shape, w4, g4, pads=pads).reshape(shape)
    if weight_first:
        assert layer.backward(g, input_grad=False) is None
        np.testing.assert_allclose(layer.weight_grad, want_dw, rtol=1e-12, atol=1e-12)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight_grad, want_dw, rtol=1e-12, atol=1e-12)


def test_layer_errors():
    with pytest.raises(ConvxTypeError, match=r"Conv2D.forward\(\): argument 'x' must be a "
                                             r"numpy.ndarray of the layer's dtype float32, "
                                             r"got an array of dtype float64"):
        Conv2D(1, 2, 3).forward(np.ones((1, 1, 5, 5)))
    layer = Conv1D(2, 3, 3, dtype=np.float64, rng=0)
    with pytest.raises(ConvxValueError, match=r"Conv1D.backward\(\): call forward\(\) first"):
        layer.backward(np.ones((1, 3, 3)))
    layer.forward(np.ones((1, 2, 5)))
    with pytest.raises(ConvxValueError, match=r"'grad_out' must have the last output's shape "
                                              r"\(1, 3, 3\), got shape \(1, 3, 5\)"):
        layer.backward(np.ones((1, 3, 5)))
    with pytest.raises(ConvxTypeError, match="'grad_out' must have the layer's dtype float64"):
        layer.backward(np.ones((1, 3, 3), np.float32))
    with pytest.raises(ConvxValueError, match=r"Conv1D.forward\(\): argument 'x' must have shape "
                                              r"\(batch, 2, length\) or \(2, length\), for "
                                              r"the layer's 2 input channels, got shape "
                                              r"\(1, 4, 5\)"):
        layer.forward(np.ones((1, 4, 5)))
    with pytest.raises(ConvxValueError, match=r"Conv1D.forward\(\): argument 'weight': the "
                                              r"kernel spans 3"):
        layer.forward(np.ones((1, 2, 2)))
    with pytest.raises(ConvxTypeError, match="argument 'rng' must be None, an int seed"):
        Conv2D(1, 2, 3, rng=np.random.RandomState(0))
    with pytest.raises(ConvxTypeError, match="argument 'dtype' must be float32 or float64"):
        Conv2D(1, 2, 3, dtype=np.int32)
    with pytest.raises(ConvxValueError, match="argument 'groups' \\(2\\) must divide"):
        Conv2D(3, 4, 3, groups=2)
    with pytest.raises(ConvxValueError, match="'same' needs stride 1"):
        Conv2D(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ConvxValueError, match="argument 'in_channels' must be an int >= 1"):
        Conv1D(0, 4, 3)
    with pytest.raises(ConvxTypeError, match="argument 'kernel_size' must be an int or a tuple"):
        Conv2D(1, 4, 2.5)
    with pytest.raises(ConvxTypeError, match="argument 'bias' must be True or False"):
        Conv2D(1, 4, 3, bias=np.zeros(4))


# --------------------------------------------------------------------------
# The bias gradients
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (0, 3, 4, 4), (3, 0, 2, 2),
                                   (2, 4, 0, 3), (1, 2, 300, 300), (3, 5, 1, 70000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_bias_grad(shape, dtype):
    rng = np.random.default_rng(13)
    g = rng.standard_normal(shape).astype(dtype)
    got = convx.conv2d_bias_grad(g)
    want = g.astype(np.float64).sum(axis=(0, 2, 3))
    assert got.dtype == dtype and got.shape == (shape[1],)
    # summed in float64, then rounded once to the dtype
    np.testing.assert_allclose(got, want.astype(dtype), rtol=0,
                               atol=1e-9 * max(1.0, np.abs(g).sum()) if dtype == np.float64
                               else 0)


def test_bias_grads_1d_unbatched_strided_and_other_dtypes():
    rng = np.random.default_rng(14)
    g = rng.standard_normal((4, 6, 50))
    assert np.allclose(convx.conv1d_bias_grad(g), g.sum(axis=(0, 2)), rtol=1e-13)
    assert np.allclose(convx.conv1d_bias_grad(g[0]), g[0].sum(axis=1), rtol=1e-13)
    g4 = rng.standard_normal((3, 5, 8, 8))
    assert np.allclose(convx.conv2d_bias_grad(g4[1]), g4[1].sum(axis=(1, 2)), rtol=1e-13)
    strided = g4[:, ::2, ::3, 1:]
    assert np.allclose(convx.conv2d_bias_grad(strided), strided.sum(axis=(0, 2, 3)), rtol=1e-13)
    ints = np.arange(24).reshape(2, 3, 4)
    out = convx.conv1d_bias_grad(ints)
    assert out.dtype == np.float64 and np.array_equal(out, ints.sum(axis=(0, 2)))
    half = np.ones((2, 3, 4), np.float16)
    out = convx.conv1d_bias_grad(half)
    assert out.dtype == np.float16 and np.array_equal(out, np.full(3, 8, np.float16))
    before = g.copy()
    convx.conv1d_bias_grad(g)
    assert np.array_equal(g, before)


def test_bias_grad_same_bits_for_any_thread_count():
    if not convx._core.openmp_enabled() or convx._threads._MAX_THREADS < 2:
        pytest.skip("needs OpenMP and two CPUs")
    rng = np.random.default_rng(15)
    g = rng.standard_normal((16, 8, 96, 96)).astype(np.float32)
    before = convx.get_num_threads()
    try:
        convx.set_num_threads(1)
        one = convx.conv2d_bias_grad(g)
        assert convx._core.threads_seen() == 1
        convx.set_num_threads(2)
        two = convx.conv2d_bias_grad(g)
        assert convx._core.threads_seen() == 2
    finally:
        convx.set_num_threads(before)
    assert np.array_equal(one, two)


def test_bias_grad_errors():
    with pytest.raises(ConvxValueError, match=r"conv2d_bias_grad\(\): argument 'grad_output' "
                                              r"must be 4-D"):
        convx.conv2d_bias_grad(np.ones((2, 3)))
    with pytest.raises(ConvxValueError, match=r"conv1d_bias_grad\(\): argument 'grad_output' "
                                              r"must be 3-D"):
        convx.conv1d_bias_grad(np.ones((2, 3, 4, 5)))
    with pytest.raises(ConvxTypeError, match=r"conv1d_bias_grad\(\): argument 'grad_output' "
                                             r"must be a numpy.ndarray"):
        convx.conv1d_bias_grad([[1.0, 2.0]])
    with pytest.raises(ConvxTypeError, match="real numeric dtype"):
        convx.conv2d_bias_grad(np.ones((1, 2, 3, 3), complex))


def test_layer_takes_any_byte_order_and_layout_of_its_dtype():
    rng = np.random.default_rng(16)
    layer = Conv1D(3, 4, 3, padding=1, rng=rng)
    x = rng.standard_normal((2, 3, 9)).astype(np.float32)
    want = layer.forward(x)
    for other in (x.astype(">f4"), np.asfortranarray(x), x[:, :, ::-1].copy()[:, :, ::-1]):
        assert np.array_equal(layer.forward(other), want)
        g = np.ones(want.shape, ">f4")
        dx = layer.backward(g)
        assert dx.dtype == np.float32 and dx.shape == x.shape


def test_mixin_with_a_framework_class_whose_init_takes_no_param():
    """Mixed into a class whose __init__ takes no parameter (the book's plain
    Operation), convx's operation still runs it, and keeps param itself."""
    class Op(convx.layers.Conv1D_Op, Operation):
        pass

    calls = []
    original = Operation.__init__
    Operation.__init__ = lambda self: calls.append(self)
    try:
        W = np.ones((2, 3, 3))
        op = Op(W)
    finally:
        Operation.__init__ = original
    assert calls == [op] and op.param is W
    assert op.forward(np.ones((1, 2, 5))).shape == (1, 3, 5)


@pytest.mark.parametrize("geometry", [dict(stride=np.int64(1), padding=np.int32(1)),
                                      dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1]),
                                      dict(stride=(np.int64(1), 1), padding="same")])
def test_layer_geometry_is_kept_as_plain_values(geometry):
    """NumPy integers or lists (from a config file) are kept as plain ints
    and tuples, which the plan cache keys on: otherwise every call was
    checked and planned again (7-8x the time of a small step)."""
    layer = Conv2D(2, 3, 3, rng=0, **geometry)
    for value in (layer.stride, layer.padding, layer.dilation):
        assert isinstance(value, str) or type(value) is int or (
            type(value) is tuple and all(type(v) is int for v in value)), value
    x = np.ones((2, 2, 6, 6), np.float32)
    layer.backward(layer.forward(x))
    convx._engine.PLANS.clear()
    layer.backward(layer.forward(x))
    planned = len(convx._engine.PLANS)
    layer.backward(layer.forward(x))
    assert planned > 0 and len(convx._engine.PLANS) == planned
    plain = Conv2D(2, 3, 3, rng=0, stride=1, padding=geometry["padding"] if isinstance(
        geometry["padding"], str) else 1)
    np.testing.assert_array_equal(layer.forward(x), plain.forward(x))


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_pickle_and_copy_leave_the_last_input_out(how):
    """forward() keeps its input for backward(); a pickle or a copy of the
    layer leaves it out (a 41 KB model pickled to 140 MiB after one forward
    pass) and takes backward() after a forward() of its own."""
    layer = Conv2D(3, 4, 3, padding=1, rng=0)
    x = np.ones((64, 3, 32, 32), np.float32)
    layer.forward(x)
    clone = {"pickle": lambda: pickle.loads(pickle.dumps(layer)),
             "deepcopy": lambda: copy.deepcopy(layer), "copy": lambda: copy.copy(layer)}[how]()
    assert clone._x is None and layer._x is x
    assert len(pickle.dumps(layer)) < 10 * layer.weight.nbytes + 4096
    np.testing.assert_array_equal(clone.weight, layer.weight)
    with pytest.raises(ConvxValueError, match=r"Conv2D\.backward\(\): call forward\(\) first"):
        clone.backward(np.ones((64, 4, 32, 32), np.float32))
    y = clone.forward(x)
    np.testing.assert_array_equal(y, layer.forward(x))
    assert clone.backward(np.ones_like(y)).shape == x.shape


def test_replaced_parameters_are_named():
    """A weight replaced by one of another shape between forward and
    backward, or a bias left in another dtype than the weight (an update by
    a float64 learning rate), is named as the layer's parameter."""
    layer = Conv2D(3, 4, 3, rng=0)
    x = np.ones((2, 3, 8, 8), np.float32)
    y = layer.forward(x)
    layer.weight = np.ones((4, 3, 5, 5), np.float32)
    with pytest.raises(ConvxValueError, match=r"backward\(\): the layer's weight has shape "
                                              r"\(4, 3, 5, 5\), but forward\(\) ran with a "
                                              r"weight of shape \(4, 3, 3, 3\)"):
        layer.backward(np.ones_like(y))
    layer.weight = layer.weight[:, :, :3, :3].astype(np.float64)
    with pytest.raises(ConvxTypeError, match=r"forward\(\): the layer's bias must have its "
                                             r"weight's dtype float64, got an array of dtype "
                                             r"float32"):
        layer.forward(x.astype(np.float64))
    assert Conv2D(1, 1, 1, dtype=None).weight.dtype == np.float32   # None: the default
