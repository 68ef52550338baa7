"""Every value the chapter-5 notebook prints, reproduced with ``from convx import *``.

The notebook is /work/shared/seed/000_289c8cb12a365f73.txt (Ethan Herron's
notebook for *Deep Learning from Scratch*, chapter 5).  Each test names the
notebook cell ("In [n]") whose output it reproduces.  The cells that only
define functions are replaced by the star import, exactly as docs/notebook.md
tells the learner to do; the cells that create data and call the functions are
copied as they are.

The last section is the notebook's failed CIFAR gradient check: with convx the
finite differences now agree with the (already correct) printed gradients, and
a vectorised re-implementation of the notebook's buggy forward pass reproduces
the wrong numbers the notebook printed.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from convx import *  # the notebook's switch, underscore names included
from convx import (  # explicit, so linters and readers see where each name comes from
    _compute_grads_2d,
    _compute_output_2d,
    _compute_output_2d_sum,
    _compute_output_obs,
    _compute_output_obs_2d,
    _compute_output_sum,
    _input_grad,
    _input_grad_1d,
    _output,
    _pad_1d,
    _pad_1d_batch,
    _pad_2d,
    _param_grad,
    _param_grad_1d,
    _param_grad_2d,
    conv_1d,
    conv_1d_batch,
    conv_1d_batch_sum,
    conv_1d_sum,
    input_grad_1d_batch,
    param_grad_1d_batch,
)

EPS = np.finfo(np.float64).eps
RTOL = 1e-12


# ---------------------------------------------------------------------------
# The notebook's data
# ---------------------------------------------------------------------------

def _input_1d():
    return np.array([1, 2, 3, 4, 5])             # In [5]


def _param_1d():
    return np.array([1, 1, 1])                   # In [5]


def _input_1d_batch():
    return np.array([[0, 1, 2, 3, 4, 5, 6],      # In [19]
                     [1, 2, 3, 4, 5, 6, 7]])


def replay_notebook_random_stream():
    """Replay the notebook's global random stream, cell by cell.

    ``np.random.seed(190220)`` (In [11]) followed by the same ``randint`` and
    ``randn`` calls the notebook makes, in cell order: 11, 29, 33, 38, 39, 50,
    56, 65, 66.  Returns the printed ``randint`` values per cell and the four
    random arrays.  The global state is saved and restored, so no other test
    sees a changed ``np.random`` stream.
    """
    input_1d, param_1d = _input_1d(), _param_1d()
    input_1d_batch = _input_1d_batch()
    saved = np.random.get_state()
    try:
        np.random.seed(190220)
        printed = {}
        printed[11] = (np.random.randint(0, input_1d.shape[0]),
                       np.random.randint(0, param_1d.shape[0]))
        printed[29] = (np.random.randint(0, input_1d_batch.shape[0]),
                       np.random.randint(0, input_1d_batch.shape[1]))
        printed[33] = (np.random.randint(0, param_1d.shape[0]),)
        imgs_2d_batch = np.random.randn(3, 28, 28)                        # In [38]
        param_2d = np.random.randn(3, 3)                                  # In [39]
        printed[50] = tuple(np.random.randint(0, s) for s in imgs_2d_batch.shape)
        printed[56] = tuple(np.random.randint(0, s) for s in param_2d.shape)
        cifar_imgs = np.random.randn(10, 3, 32, 32)                       # In [65]
        cifar_param = np.random.randn(3, 16, 5, 5)
        printed[66] = (tuple(np.random.randint(0, s) for s in cifar_imgs.shape)
                       + tuple(np.random.randint(0, s) for s in cifar_param.shape))
    finally:
        np.random.set_state(saved)
    return {
        "printed": printed,
        "imgs_2d_batch": imgs_2d_batch,
        "param_2d": param_2d,
        "cifar_imgs": cifar_imgs,
        "cifar_param": cifar_param,
    }


@pytest.fixture(scope="module")
def stream():
    return replay_notebook_random_stream()


def _assert_close(got, want, magnitude):
    """``got`` equals the notebook's printed ``want`` up to float64 rounding.

    The values compared here are finite differences of sums (or gradient
    elements that are themselves sums) of thousands of float64 products, and
    the notebook's Python loops add them in a different order from convx's
    BLAS kernel and ``np.sum``.  Their rounding error is therefore not
    relative to the (small) result but to the size of what was summed:
    ``magnitude`` is the sum of the absolute values of the output elements
    entering the totals.  Pairwise summation can be off by up to about
    log2(n) * eps * magnitude in the worst case; the two sums of a finite
    difference share all but a handful of their terms, so their errors
    mostly cancel, and one eps * magnitude is far above what is observed
    (~1e-14) while still ~1e9 times smaller than any real error (the
    notebook's own bug was off by ~7).
    """
    atol = EPS * magnitude
    assert abs(float(got) - want) <= atol + RTOL * abs(want), (
        f"got {float(got)!r}, notebook printed {want!r} "
        f"(|diff| = {abs(float(got) - want):.3g}, atol = {atol:.3g}, rtol = {RTOL})")


# ---------------------------------------------------------------------------
# 1-D
# ---------------------------------------------------------------------------

def test_pad_1d_cell_7():
    out = _pad_1d(np.array([1, 2, 3, 4, 5]), 1)
    assert out.dtype.kind == "i"
    np.testing.assert_array_equal(out, np.array([0, 1, 2, 3, 4, 5, 0]))
    assert out.shape == (7,)


def test_conv_1d_sum_cell_10():
    value = conv_1d_sum(_input_1d(), _param_1d())
    assert value == 39.0
    assert np.asarray(value).dtype == np.float64


def test_conv_1d_returns_float64_for_int_input():
    out = conv_1d(_input_1d(), _param_1d())
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.array([3.0, 6.0, 9.0, 12.0, 9.0]))


def test_random_stream_cell_11(stream):
    assert stream["printed"][11] == (4, 0)


def test_zero_difference_cell_13():
    input_1d_2 = np.array([1, 2, 3, 4, 6])
    param_1d = np.array([1, 1, 1])
    assert conv_1d_sum(input_1d_2, param_1d) - conv_1d_sum(input_1d_2, param_1d) == 0.0


def test_param_difference_cell_14():
    input_1d = np.array([1, 2, 3, 4, 5])
    param_1d_2 = np.array([2, 1, 1])
    assert conv_1d_sum(input_1d, param_1d_2) - conv_1d_sum(input_1d, _param_1d()) == 10.0


def test_input_grad_1d_cell_17():
    grad = _input_grad_1d(_input_1d(), _param_1d())
    assert grad.dtype.kind == "i"
    np.testing.assert_array_equal(grad, np.array([2, 3, 3, 3, 2]))


def test_param_grad_1d_cell_18():
    grad = _param_grad_1d(_input_1d(), _param_1d())
    assert grad.dtype.kind == "i"
    np.testing.assert_array_equal(grad, np.array([10, 15, 14]))


def test_1d_gradients_agree_with_the_notebooks_differences():
    """In [11]-[14]: the index the notebook drew (input 4, param 0) checked."""
    inp, param = _input_1d(), _param_1d()
    inp2 = inp.copy()
    inp2[4] += 1
    assert conv_1d_sum(inp2, param) - conv_1d_sum(inp, param) == _input_grad_1d(inp, param)[4]
    param2 = param.copy()
    param2[0] += 1
    assert conv_1d_sum(inp, param2) - conv_1d_sum(inp, param) == _param_grad_1d(inp, param)[0]


# ---------------------------------------------------------------------------
# 1-D, batch of 2
# ---------------------------------------------------------------------------

def test_pad_1d_batch_cell_22():
    out = _pad_1d_batch(_input_1d_batch(), 1)
    assert out.dtype.kind == "i"
    np.testing.assert_array_equal(out, np.array([[0, 0, 1, 2, 3, 4, 5, 6, 0],
                                                 [0, 1, 2, 3, 4, 5, 6, 7, 0]]))


def test_conv_1d_batch_cell_24():
    out = conv_1d_batch(_input_1d_batch(), _param_1d())
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.array([[1., 3., 6., 9., 12., 15., 11.],
                                                 [3., 6., 9., 12., 15., 18., 13.]]))


def test_conv_1d_batch_sum_cell_28():
    assert conv_1d_batch_sum(_input_1d_batch(), _param_1d()) == 133.0


def test_random_stream_cell_29_and_difference_cell_30(stream):
    assert stream["printed"][29] == (0, 2)
    batch = _input_1d_batch()
    batch_2 = batch.copy()
    batch_2[0][2] += 1
    diff = conv_1d_batch_sum(batch_2, _param_1d()) - conv_1d_batch_sum(batch, _param_1d())
    assert diff == 3.0
    assert diff == input_grad_1d_batch(batch, _param_1d())[0][2]


def test_input_grad_1d_batch_cell_31():
    grad = input_grad_1d_batch(_input_1d_batch(), _param_1d())
    assert grad.dtype.kind == "i"
    np.testing.assert_array_equal(grad, np.array([[2, 3, 3, 3, 3, 3, 2],
                                                  [2, 3, 3, 3, 3, 3, 2]]))


def test_random_stream_cell_33_and_difference_cell_34(stream):
    assert stream["printed"][33] == (2,)
    param_2 = _param_1d().copy()
    param_2[2] += 1
    diff = (conv_1d_batch_sum(_input_1d_batch(), param_2)
            - conv_1d_batch_sum(_input_1d_batch(), _param_1d()))
    assert diff == 48.0
    assert diff == param_grad_1d_batch(_input_1d_batch(), _param_1d())[2]


def test_param_grad_1d_batch_cell_37():
    grad = param_grad_1d_batch(_input_1d_batch(), _param_1d())
    assert grad.dtype.kind == "i"
    np.testing.assert_array_equal(grad, np.array([36, 49, 48]))


# ---------------------------------------------------------------------------
# 2-D
# ---------------------------------------------------------------------------

def test_replayed_2d_arrays_have_the_notebooks_shapes(stream):
    assert stream["imgs_2d_batch"].shape == (3, 28, 28)
    assert stream["param_2d"].shape == (3, 3)
    assert stream["cifar_imgs"].shape == (10, 3, 32, 32)
    assert stream["cifar_param"].shape == (3, 16, 5, 5)


def test_shapes_cells_42_45_48_49(stream):
    imgs, param = stream["imgs_2d_batch"], stream["param_2d"]
    assert _pad_2d(imgs, 1).shape == (3, 30, 30)                          # In [42]
    assert _compute_output_2d(imgs, param).shape == (3, 28, 28)           # In [45]
    img_grads = _compute_grads_2d(imgs, np.ones_like(imgs), param)        # In [47]
    assert img_grads.shape == (3, 28, 28)                                 # In [48]
    param_grad = _param_grad_2d(imgs, np.ones_like(imgs), param)
    assert param_grad.shape == (3, 3)                                     # In [49]


def _magnitude_2d(imgs, param):
    """Sum of |output| over the batch: the size of what ``_compute_output_2d_sum`` adds."""
    return float(np.abs(_compute_output_2d(imgs, param)).sum())


def test_input_gradient_check_cells_50_to_54(stream):
    imgs, param = stream["imgs_2d_batch"], stream["param_2d"]
    assert stream["printed"][50] == (0, 6, 18)
    imgs_2 = imgs.copy()
    imgs_2[0][6][18] += 1                                                 # In [51]
    mag = _magnitude_2d(imgs_2, param)
    diff = _compute_output_2d_sum(imgs_2, param) - _compute_output_2d_sum(imgs, param)
    _assert_close(diff, -3.1843477398599163, mag)                         # In [53]
    grad = _compute_grads_2d(imgs, np.ones_like(imgs), param)[0][6][18]
    _assert_close(grad, -3.184347739859924, mag)                          # In [54]
    _assert_close(diff, float(grad), mag)


def test_param_gradient_check_cells_56_to_60(stream):
    imgs, param = stream["imgs_2d_batch"], stream["param_2d"]
    assert stream["printed"][56] == (0, 2)
    param_2 = param.copy()
    param_2[0][2] += 1                                                    # In [58]
    mag = _magnitude_2d(imgs, param_2)
    diff = _compute_output_2d_sum(imgs, param_2) - _compute_output_2d_sum(imgs, param)
    _assert_close(diff, 5.53349015923007, mag)                            # In [59]
    grad = _param_grad_2d(imgs, np.ones_like(imgs), param)[0][2]
    _assert_close(grad, 5.533490159230001, mag)                           # In [60]
    _assert_close(diff, float(grad), mag)


# ---------------------------------------------------------------------------
# Channels + batch: the check the notebook got wrong
# ---------------------------------------------------------------------------

CIFAR_INPUT_GRAD = 2.3452987587074423       # In [71], the notebook's (correct) gradient
CIFAR_INPUT_FD_BUGGY = -4.9421924733578635  # In [73], the notebook's (wrong) difference
CIFAR_PARAM_GRAD = -47.0912312415532        # In [76]
CIFAR_PARAM_FD_BUGGY = 11.019642398145606   # In [75]


def notebook_buggy_output(inp, param):
    """The notebook's ``_output`` (In [62]), bug included, vectorised.

    The notebook took the filter size from ``param.shape[0]`` -- the number
    of *input channels* (3 here), not the filter size (5) -- so it padded by
    ``3 // 2 = 1`` and summed over ``p_w, p_h in range(3)``: a 'same'
    cross-correlation with the top-left 3x3 corner ``param[..., :3, :3]``.
    ``inp``: (N, C_in, H, W); ``param``: (C_in, C_out, KH, KW).
    """
    size = param.shape[0]          # the bug: channels, not the filter size
    mid = size // 2
    padded = np.pad(inp, ((0, 0), (0, 0), (mid, mid), (mid, mid)))
    windows = sliding_window_view(padded, (size, size), axis=(2, 3))   # N, C, H, W, s, s
    return np.einsum("nchwpq,cfpq->nfhw", windows, param[:, :, :size, :size])


@pytest.fixture(scope="module")
def cifar(stream):
    imgs, param = stream["cifar_imgs"], stream["cifar_param"]
    imgs_2 = imgs.copy()
    imgs_2[3][1][2][19] += 1                                              # In [69]
    param_2 = param.copy()
    param_2[0][8][0][2] += 1                                              # In [74]
    ones = np.ones((10, 16, 32, 32))
    return {"imgs": imgs, "param": param, "imgs_2": imgs_2, "param_2": param_2,
            "ones": ones,
            "magnitude": float(np.abs(_output(imgs, param)).sum())}


def test_random_stream_cell_66(stream):
    assert stream["printed"][66] == (3, 1, 2, 19, 0, 8, 0, 2)


def test_cifar_input_gradient_is_the_notebooks(cifar):
    grad = _input_grad(cifar["imgs"], cifar["ones"], cifar["param"])
    assert grad.shape == (10, 3, 32, 32)
    _assert_close(grad[3][1][2][19], CIFAR_INPUT_GRAD, cifar["magnitude"])


def test_cifar_input_finite_difference_now_agrees(cifar):
    diff = (_compute_output_sum(cifar["imgs_2"], cifar["param"])
            - _compute_output_sum(cifar["imgs"], cifar["param"]))
    _assert_close(diff, CIFAR_INPUT_GRAD, cifar["magnitude"])
    # and it is no longer the notebook's wrong value
    assert abs(diff - CIFAR_INPUT_FD_BUGGY) > 7.0


def test_cifar_param_gradient_is_the_notebooks(cifar):
    grad = _param_grad(cifar["imgs"], cifar["ones"], cifar["param"])
    assert grad.shape == (3, 16, 5, 5)
    _assert_close(grad[0][8][0][2], CIFAR_PARAM_GRAD, cifar["magnitude"])


def test_cifar_param_finite_difference_now_agrees(cifar):
    diff = (_compute_output_sum(cifar["imgs"], cifar["param_2"])
            - _compute_output_sum(cifar["imgs"], cifar["param"]))
    _assert_close(diff, CIFAR_PARAM_GRAD, cifar["magnitude"])
    assert abs(diff - CIFAR_PARAM_FD_BUGGY) > 58.0


def test_the_notebooks_buggy_forward_reproduces_its_wrong_numbers(cifar):
    """The notebook's -4.942... and 11.0196... come from the 3x3-corner forward."""
    imgs, param = cifar["imgs"], cifar["param"]
    base = notebook_buggy_output(imgs, param)
    mag = float(np.abs(base).sum())
    diff_input = notebook_buggy_output(cifar["imgs_2"], param).sum() - base.sum()
    _assert_close(diff_input, CIFAR_INPUT_FD_BUGGY, mag)                  # In [73]
    diff_param = notebook_buggy_output(imgs, cifar["param_2"]).sum() - base.sum()
    _assert_close(diff_param, CIFAR_PARAM_FD_BUGGY, mag)                  # In [75]


def test_the_buggy_forward_is_convx_with_the_3x3_corner(cifar):
    """Pins down the bug: convx on ``param[..., :3, :3]`` is the notebook's forward."""
    imgs, param = cifar["imgs"][:2], cifar["param"]
    got = _output(imgs, np.ascontiguousarray(param[:, :, :3, :3]))
    want = notebook_buggy_output(imgs, param)
    # each output is a dot product of 27 = 3 channels x 3 x 3 taps, rounded
    # differently on the two sides: 2 * 27 * eps times the sum of its |terms|
    bound = 2 * 27 * EPS * notebook_buggy_output(np.abs(imgs), np.abs(param))
    assert np.all(np.abs(got - want) <= bound)
    # while the real 5x5 forward is a different function
    assert np.abs(_output(imgs, param) - want).max() > 1.0


# ---------------------------------------------------------------------------
# dtypes of the forwards
# ---------------------------------------------------------------------------

def _f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name, fwd, x_shape, p_shape", [
    ("conv_1d", conv_1d, (7,), (3,)),
    ("conv_1d_batch", conv_1d_batch, (2, 7), (3,)),
    ("_compute_output_obs_2d", _compute_output_obs_2d, (6, 5), (3, 3)),
    ("_compute_output_2d", _compute_output_2d, (2, 6, 5), (3, 2)),
    ("_compute_output_obs", _compute_output_obs, (3, 6, 5), (3, 4, 3, 3)),
    ("_output", _output, (2, 3, 6, 5), (3, 4, 5, 4)),
])
def test_float32_forward_stays_float32(name, fwd, x_shape, p_shape):
    x, p = _f32(*x_shape, seed=1), _f32(*p_shape, seed=2)
    out = fwd(x, p)
    assert out.dtype == np.float32, name
    ref = fwd(x.astype(np.float64), p.astype(np.float64))
    assert ref.dtype == np.float64, name
    # float32 accumulation of at most 3*5*4 = 60 products of unit-size numbers
    bound = 2 * 60 * np.finfo(np.float32).eps * float(
        fwd(np.abs(x).astype(np.float64), np.abs(p).astype(np.float64)).max())
    np.testing.assert_allclose(out, ref, rtol=0, atol=bound)


@pytest.mark.parametrize("fsum, fwd, x_shape, p_shape", [
    (conv_1d_sum, conv_1d, (7,), (3,)),
    (conv_1d_batch_sum, conv_1d_batch, (2, 7), (3,)),
    (_compute_output_2d_sum, _compute_output_2d, (2, 6, 5), (3, 3)),
    (_compute_output_sum, _output, (2, 3, 6, 5), (3, 4, 3, 3)),
])
def test_sums_are_the_sums_of_the_forwards(fsum, fwd, x_shape, p_shape):
    x, p = _f32(*x_shape, seed=3).astype(np.float64), _f32(*p_shape, seed=4).astype(np.float64)
    assert fsum(x, p) == np.sum(fwd(x, p))
