"""Finite-difference checks of every gradient function, element by element.

Convolution is linear in the input and in the parameter.  So for
``L(x, w) = sum(fwd(x, w) * g)`` a unit step of one element of ``x`` (or
``w``) changes ``L`` by exactly the gradient's element, with no truncation
error: ``L(x + e_i, w) - L(x, w) = dL/dx_i``.  The only difference between
the two sides is floating-point rounding, bounded below.  Every element of
every gradient is checked, on random float64 data, for odd and even kernel
sizes, non-square kernels and non-square images, kernels wider than the image
included.

The forwards the finite differences use are themselves checked against an
independent NumPy reference of the notebook's loops (``test_forward_matches_
the_notebook_loops``), so a gradient cannot pass by agreeing with a wrong
forward.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from convx import (
    _compute_grads_2d,
    _compute_grads_obs,
    _compute_grads_obs_2d,
    _compute_output_2d,
    _compute_output_obs,
    _compute_output_obs_2d,
    _input_grad,
    _input_grad_1d,
    _output,
    _param_grad,
    _param_grad_1d,
    _param_grad_2d,
    conv_1d,
    conv_1d_batch,
    input_grad_1d_batch,
    param_grad_1d_batch,
)

# ---------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------

TOL_FACTOR = 64


def _tolerance(eps, x, w, g, fwd, wrt):
    """A rounding bound for |finite difference - gradient element|: ``64 * eps * T``.

    Magnitude: ``T = sum(fwd(|x| + 1, |w|) * |g|)`` (the +1 on the argument
    being stepped) is the sum of the absolute values of every product
    ``w * x * g`` that enters either ``L(x, w)`` or ``L(x + e_i, w)``; it
    also bounds the sum of |terms| of any one gradient element, and the error
    of the step itself (``x_i + 1`` rounds by at most eps * (|x_i| + 1)).
    Rounding errors of sums are relative to the sum of |terms|, not to the
    (possibly small, cancelling) result, so ``T`` is the right scale.  It is
    computed with the convx forward on non-negative data; rounding there is
    irrelevant to a bound, and the forwards are checked against the notebook's
    loops below.

    Factor: a worst-case analysis gives ``(2K + M + log2(n) + 1) * eps * T``,
    with K and M the lengths of the forward's and the gradient's dot products
    (at most ~170 here).  Rounding errors are random-signed and grow like the
    square root of those lengths; over every case in this file the observed
    error is below ``1 * eps * T``, so 64 leaves a 64-fold margin while the
    check stays ~1e-12 relative to the gradients in float64 (~1e-3 in
    float32): an indexing, flipping or off-by-one bug is an O(1) error and
    cannot hide in it (``check_every_element`` asserts that margin).
    """
    xa, wa = np.abs(x).astype(np.float64), np.abs(w).astype(np.float64)
    if wrt == "x":
        xa = xa + 1
    else:
        wa = wa + 1
    magnitude = float(np.sum(fwd(xa, wa) * np.abs(g).astype(np.float64)))
    return TOL_FACTOR * eps * magnitude


def check_every_element(fwd, x, w, g, grad, wrt):
    """Compare ``grad`` (d/dx or d/dw of sum(fwd(x, w) * g)) with unit-step differences.

    ``g`` is the output gradient (ones for the functions that take none).
    The sums are accumulated in float64 whatever the working dtype, so that
    for float32 data the only rounding is the float32 forward's own.
    """
    target = x if wrt == "x" else w
    assert grad.shape == target.shape
    eps = np.finfo(np.result_type(x, w, g)).eps
    tol = _tolerance(eps, x, w, g, fwd, wrt)
    g64 = g.astype(np.float64)

    def loss(xx, ww):
        return float(np.sum(fwd(xx, ww).astype(np.float64) * g64))

    base = loss(x, w)
    fd = np.empty(target.shape, np.float64)
    for idx in np.ndindex(target.shape):
        stepped = target.copy()
        stepped[idx] += 1
        fd[idx] = (loss(stepped, w) if wrt == "x" else loss(x, stepped)) - base
    err = np.abs(fd - grad.astype(np.float64))
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() <= tol, (
        f"gradient element {worst}: finite difference {fd[worst]!r}, gradient "
        f"{grad[worst]!r}, |diff| {err.max():.3g} > tolerance {tol:.3g}")
    # the check is sharp: the tolerance is tiny next to the gradient's elements
    assert np.abs(fd).max() > 100 * tol


def _rng(*key):
    return np.random.default_rng([20200304, *key])


def _data(rng, *shapes, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# ---------------------------------------------------------------------------
# 1-D
# ---------------------------------------------------------------------------

KERNELS_1D = [1, 2, 3, 4, 5, 6]
LENGTHS_1D = [7, 3]          # 3: kernels 4..6 are wider than the input


@pytest.mark.parametrize("k", KERNELS_1D)
@pytest.mark.parametrize("length", LENGTHS_1D)
@pytest.mark.parametrize("with_output_grad", [True, False])
def test_input_grad_1d(length, k, with_output_grad):
    x, w, g = _data(_rng(1, length, k), (length,), (k,), (length,))
    if with_output_grad:
        grad = _input_grad_1d(x, w, g)
    else:
        g = np.ones(length)
        grad = _input_grad_1d(x, w)
    assert grad.dtype == np.float64
    check_every_element(conv_1d, x, w, g, grad, "x")


@pytest.mark.parametrize("k", KERNELS_1D)
@pytest.mark.parametrize("length", LENGTHS_1D)
@pytest.mark.parametrize("with_output_grad", [True, False])
def test_param_grad_1d(length, k, with_output_grad):
    x, w, g = _data(_rng(2, length, k), (length,), (k,), (length,))
    if with_output_grad:
        grad = _param_grad_1d(x, w, g)
    else:
        g = np.ones(length)
        grad = _param_grad_1d(x, w)
    assert grad.dtype == np.float64
    check_every_element(conv_1d, x, w, g, grad, "w")


BATCHES_1D = [(2, 7), (3, 4)]


@pytest.mark.parametrize("k", KERNELS_1D)
@pytest.mark.parametrize("shape", BATCHES_1D)
def test_input_grad_1d_batch(shape, k):
    x, w = _data(_rng(3, *shape, k), shape, (k,))
    grad = input_grad_1d_batch(x, w)
    assert grad.dtype == np.float64
    check_every_element(conv_1d_batch, x, w, np.ones(shape), grad, "x")


@pytest.mark.parametrize("k", KERNELS_1D)
@pytest.mark.parametrize("shape", BATCHES_1D)
def test_param_grad_1d_batch(shape, k):
    """For every kernel size, not just 3 (the notebook padded by 1 whatever k was)."""
    x, w = _data(_rng(4, *shape, k), shape, (k,))
    grad = param_grad_1d_batch(x, w)
    assert grad.dtype == np.float64
    check_every_element(conv_1d_batch, x, w, np.ones(shape), grad, "w")


# ---------------------------------------------------------------------------
# 2-D, one channel
# ---------------------------------------------------------------------------

KERNELS_2D = [(1, 1), (2, 2), (3, 3), (2, 3), (5, 4), (1, 6), (6, 1), (4, 5)]
IMAGES_2D = [(7, 5), (4, 6)]


@pytest.mark.parametrize("kernel", KERNELS_2D)
@pytest.mark.parametrize("image", IMAGES_2D)
def test_compute_grads_obs_2d(image, kernel):
    x, w, g = _data(_rng(5, *image, *kernel), image, kernel, image)
    grad = _compute_grads_obs_2d(x, g, w)
    assert grad.dtype == np.float64
    check_every_element(_compute_output_obs_2d, x, w, g, grad, "x")


@pytest.mark.parametrize("kernel", KERNELS_2D)
@pytest.mark.parametrize("image", IMAGES_2D)
def test_compute_grads_2d(image, kernel):
    shape = (2,) + image
    x, w, g = _data(_rng(6, *image, *kernel), shape, kernel, shape)
    grad = _compute_grads_2d(x, g, w)
    assert grad.dtype == np.float64
    check_every_element(_compute_output_2d, x, w, g, grad, "x")


@pytest.mark.parametrize("kernel", KERNELS_2D)
@pytest.mark.parametrize("image", IMAGES_2D)
def test_param_grad_2d(image, kernel):
    shape = (2,) + image
    x, w, g = _data(_rng(7, *image, *kernel), shape, kernel, shape)
    grad = _param_grad_2d(x, g, w)
    assert grad.dtype == np.float64
    check_every_element(_compute_output_2d, x, w, g, grad, "w")


# ---------------------------------------------------------------------------
# Channels (+ batch).  param is the notebook's (C_in, C_out, KH, KW).
# ---------------------------------------------------------------------------

# (C_in, C_out, image (H, W), kernel (KH, KW))
CHANNEL_CASES = [
    (1, 1, (7, 5), (1, 1)),
    (1, 2, (7, 5), (2, 3)),
    (2, 3, (7, 5), (3, 3)),
    (3, 2, (4, 6), (5, 4)),
    (2, 2, (5, 5), (4, 4)),
    (2, 1, (3, 4), (6, 2)),   # kernel taller than the image
]


def _channel_data(key, c_in, c_out, image, kernel, batch=None):
    lead = () if batch is None else (batch,)
    return _data(_rng(*key), lead + (c_in,) + image, (c_in, c_out) + kernel,
                 lead + (c_out,) + image)


@pytest.mark.parametrize("c_in, c_out, image, kernel", CHANNEL_CASES)
def test_compute_grads_obs(c_in, c_out, image, kernel):
    x, w, g = _channel_data((8, c_in, c_out, *image, *kernel), c_in, c_out, image, kernel)
    grad = _compute_grads_obs(x, g, w)
    assert grad.dtype == np.float64
    check_every_element(_compute_output_obs, x, w, g, grad, "x")


@pytest.mark.parametrize("c_in, c_out, image, kernel", CHANNEL_CASES)
def test_input_grad(c_in, c_out, image, kernel):
    x, w, g = _channel_data((9, c_in, c_out, *image, *kernel), c_in, c_out, image, kernel,
                            batch=2)
    grad = _input_grad(x, g, w)
    assert grad.dtype == np.float64
    check_every_element(_output, x, w, g, grad, "x")


@pytest.mark.parametrize("c_in, c_out, image, kernel", CHANNEL_CASES)
def test_param_grad(c_in, c_out, image, kernel):
    x, w, g = _channel_data((10, c_in, c_out, *image, *kernel), c_in, c_out, image, kernel,
                            batch=2)
    grad = _param_grad(x, g, w)
    assert grad.dtype == np.float64
    check_every_element(_output, x, w, g, grad, "w")


# ---------------------------------------------------------------------------
# float32: the same checks with float32 eps
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 5])
def test_float32_input_grad_1d(k):
    x, w, g = _data(_rng(11, k), (7,), (k,), (7,), dtype=np.float32)
    grad = _input_grad_1d(x, w, g)
    assert grad.dtype == np.float32
    check_every_element(conv_1d, x, w, g, grad, "x")


@pytest.mark.parametrize("kernel", [(3, 3), (2, 3), (5, 4)])
def test_float32_param_grad_2d(kernel):
    x, w, g = _data(_rng(12, *kernel), (2, 7, 5), kernel, (2, 7, 5), dtype=np.float32)
    grad = _param_grad_2d(x, g, w)
    assert grad.dtype == np.float32
    check_every_element(_compute_output_2d, x, w, g, grad, "w")


@pytest.mark.parametrize("c_in, c_out, image, kernel", CHANNEL_CASES[1:4])
def test_float32_input_and_param_grad(c_in, c_out, image, kernel):
    x, w, g = [a.astype(np.float32) for a in _channel_data(
        (13, c_in, c_out, *image, *kernel), c_in, c_out, image, kernel, batch=2)]
    grad_x = _input_grad(x, g, w)
    grad_w = _param_grad(x, g, w)
    assert grad_x.dtype == np.float32 and grad_w.dtype == np.float32
    check_every_element(_output, x, w, g, grad_x, "x")
    check_every_element(_output, x, w, g, grad_w, "w")


# ---------------------------------------------------------------------------
# Integer inputs give integer gradients, equal to the float ones
# ---------------------------------------------------------------------------

def _ints(rng, *shapes):
    return [rng.integers(-5, 6, size=s) for s in shapes]


# name, call(x, w, g) -> grad, which argument's dtype the result takes,
# shapes of (x, w, g)
INT_CASES = [
    ("_input_grad_1d", lambda x, w, g: _input_grad_1d(x, w, g), "x", (7,), (4,), (7,)),
    ("_input_grad_1d/no g", lambda x, w, g: _input_grad_1d(x, w), "x", (7,), (3,), None),
    ("_param_grad_1d", lambda x, w, g: _param_grad_1d(x, w, g), "w", (7,), (4,), (7,)),
    ("_param_grad_1d/no g", lambda x, w, g: _param_grad_1d(x, w), "w", (7,), (5,), None),
    ("input_grad_1d_batch", lambda x, w, g: input_grad_1d_batch(x, w), "x", (2, 7), (4,), None),
    ("param_grad_1d_batch", lambda x, w, g: param_grad_1d_batch(x, w), "w", (2, 7), (4,), None),
    ("_compute_grads_obs_2d", lambda x, w, g: _compute_grads_obs_2d(x, g, w), "x",
     (7, 5), (2, 3), (7, 5)),
    ("_compute_grads_2d", lambda x, w, g: _compute_grads_2d(x, g, w), "x",
     (2, 7, 5), (5, 4), (2, 7, 5)),
    ("_param_grad_2d", lambda x, w, g: _param_grad_2d(x, g, w), "w",
     (2, 7, 5), (5, 4), (2, 7, 5)),
    ("_compute_grads_obs", lambda x, w, g: _compute_grads_obs(x, g, w), "x",
     (2, 7, 5), (2, 3, 2, 3), (3, 7, 5)),
    ("_input_grad", lambda x, w, g: _input_grad(x, g, w), "x",
     (2, 2, 7, 5), (2, 3, 4, 3), (2, 3, 7, 5)),
    ("_param_grad", lambda x, w, g: _param_grad(x, g, w), "w",
     (2, 2, 7, 5), (2, 3, 4, 3), (2, 3, 7, 5)),
]


@pytest.mark.parametrize("name, call, like, x_shape, w_shape, g_shape", INT_CASES,
                         ids=[c[0] for c in INT_CASES])
def test_int_inputs_give_int_gradients_equal_to_the_float_ones(
        name, call, like, x_shape, w_shape, g_shape):
    rng = _rng(14, len(x_shape), *w_shape)
    x, w = _ints(rng, x_shape, w_shape)
    g = None if g_shape is None else rng.integers(-5, 6, size=g_shape)
    got = call(x, w, g)
    assert got.dtype.kind == "i", name
    assert got.dtype == (x if like == "x" else w).dtype, name
    want = call(x.astype(np.float64), w.astype(np.float64),
                None if g is None else g.astype(np.float64))
    assert want.dtype == np.float64
    # small integers: the float64 result is exact, so equality is exact
    np.testing.assert_array_equal(got, want)
    assert np.abs(want).max() > 0


# ---------------------------------------------------------------------------
# The forwards used above are the notebook's convolution
# ---------------------------------------------------------------------------

def notebook_conv(x, w):
    """The notebook's loops, vectorised: x (N, C, H, W), w (F, C, KH, KW).

    ``out[n, f, i, j] = sum_{c,p,q} w[f, c, p, q] * x_pad[n, c, i + p, j + q]``
    with ``KH // 2`` zero rows (``KW // 2`` columns) before the image, and as
    many after as keep the output the size of the input.
    """
    kh, kw = w.shape[2:]
    pad = ((0, 0), (0, 0), (kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2))
    win = sliding_window_view(np.pad(x, pad), (kh, kw), axis=(2, 3))
    return np.einsum("nchwpq,fcpq->nfhw", win, w)


# name, convx forward, adapter (x, w) -> convx output in NCHW
FORWARDS = [
    ("conv_1d", lambda x, w: conv_1d(x[0, 0, 0], w[0, 0, 0])[None, None, None]),
    ("conv_1d_batch", lambda x, w: conv_1d_batch(x[:, 0, 0], w[0, 0, 0])[:, None, None]),
    ("_compute_output_obs_2d", lambda x, w: _compute_output_obs_2d(x[0, 0], w[0, 0])[None, None]),
    ("_compute_output_2d", lambda x, w: _compute_output_2d(x[:, 0], w[0, 0])[:, None]),
    ("_compute_output_obs", lambda x, w: _compute_output_obs(x[0], w.transpose(1, 0, 2, 3))[None]),
    ("_output", lambda x, w: _output(x, w.transpose(1, 0, 2, 3))),
]


@pytest.mark.parametrize("name, call", FORWARDS, ids=[f[0] for f in FORWARDS])
@pytest.mark.parametrize("kernel", [(1, 1), (2, 2), (3, 3), (2, 3), (5, 4), (6, 1), (4, 6)])
def test_forward_matches_the_notebook_loops(name, call, kernel):
    rng = _rng(15, *kernel)
    one_d = name.startswith("conv_1d")
    batch = name in ("conv_1d_batch", "_compute_output_2d", "_output")
    channels = name in ("_compute_output_obs", "_output")
    kh, kw = (1, kernel[1]) if one_d else kernel
    n = 2 if batch else 1
    c_in, c_out = (2, 3) if channels else (1, 1)
    h, wd = (1, 7) if one_d else (7, 5)
    x = rng.standard_normal((n, c_in, h, wd))
    w = rng.standard_normal((c_out, c_in, kh, kw))
    got = call(x, w)
    want = notebook_conv(x, w)
    assert got.shape == want.shape
    # dot products of c_in*kh*kw <= 48 terms, both sides rounded
    bound = 2 * 48 * np.finfo(np.float64).eps * notebook_conv(np.abs(x), np.abs(w))
    assert np.all(np.abs(got - want) <= bound), name
