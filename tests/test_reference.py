"""Every pad, convolution and gradient of the notebook against tests/reference.py.

Random shapes (batch 1-3, channels 1-4 in and out, non-square images, 1xN and
Nx1 images, kernel sizes 1..7 on each axis independently, kernels larger than
the image), for float32, float64, int64, int32 and mixed-dtype arguments.

Float results are compared with a tolerance derived from the dtype (see
``_float_tolerance``); integer results must be exact, and every result's shape
and dtype must be exactly the documented ones.
"""

import numpy as np
import pytest

import convx
import convx._engine

# every test runs through both kernel paths (conftest.py)
pytestmark = pytest.mark.usefixtures("kernel_path")

import reference as ref  # tests/reference.py; see conftest.py

EPS64 = np.finfo(np.float64).eps
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

DTYPE_MODES = ["float32", "float64", "int64", "int32", "mixed"]
# image sizes (H, W): non-square, 1xN, Nx1, tiny (smaller than most kernels)
IMAGE_SHAPES = [(5, 9), (8, 3), (1, 7), (6, 1), (4, 4), (2, 5), (1, 1), (3, 10), (7, 2)]
LENGTHS = [1, 2, 3, 5, 8, 11]


# --------------------------------------------------------------------------
# dtype rules (stated in the brief / docs/notebook.md)
# --------------------------------------------------------------------------

def float_result(*arrays):
    """Forwards built on np.zeros(shape): float32 if the arguments promote to
    float32, otherwise float64 (ints included)."""
    return F32 if np.result_type(*arrays) == F32 else F64


def like_result(like, *arrays):
    """Functions that accumulated into np.zeros_like(like): like's integer
    dtype when every array argument is an integer array, else the float rule."""
    if all(a.dtype.kind in "iu" for a in arrays):
        return like.dtype
    return float_result(*arrays)


def sum_dtype(dtype):
    """dtype of ndarray.sum() over an array of ``dtype``."""
    return np.zeros(1, dtype).sum().dtype


# --------------------------------------------------------------------------
# tolerance
# --------------------------------------------------------------------------

def _float_tolerance(bound, nterms, dtype):
    """Per-element absolute tolerance for a sum of ``nterms`` products.

    Each output element is a dot product of ``nterms`` products (zero padding
    included, which only adds exact zeros).  In any summation order, computed
    in precision u = eps/2, |fl(sum) - sum| <= gamma_n * sum|terms| with
    gamma_n = n*u / (1 - n*u) <= n*eps (Higham, *Accuracy and Stability of
    Numerical Algorithms*, section 3.1); FMA only tightens this.  ``sum|terms|``
    per element is exactly the reference evaluated on |x|, |param|, |g|: that
    is ``bound``, the magnitude bound.  The float64 reference has an error of
    the same form with eps64, so both are added.  Nothing is loosened: this is
    a rigorous bound with no fudge factor, and a zero bound demands an exact 0.
    """
    return nterms * (np.finfo(dtype).eps + EPS64) * bound


def assert_matches(got, want, bound, nterms, dtype, shape):
    got = np.asarray(got)
    assert got.shape == shape, f"shape {got.shape}, expected {shape}"
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    assert want.shape == shape
    if dtype.kind in "iu":
        # integer inputs are small: the float64 reference is exact
        assert np.array_equal(want, np.rint(want))
        assert np.array_equal(got, want.astype(np.int64)), f"got {got}, expected {want}"
        return
    atol = _float_tolerance(bound, nterms, dtype)
    err = np.abs(got.astype(np.float64) - want)
    bad = err > atol
    assert not bad.any(), (
        f"{bad.sum()} elements outside tolerance; worst error {err.max():.3g}, "
        f"got {got[bad][:5]}, expected {want[bad][:5]}, atol {atol[bad][:5]}")


def assert_sum_matches(got, want, bound, nterms, dtype):
    """``got`` is out.sum(): the element tolerances plus np.sum's own rounding
    (at most (M-1)*eps relative to the sum of |elements|, M elements)."""
    assert np.ndim(got) == 0
    got_dtype = np.asarray(got).dtype
    assert got_dtype == dtype, f"dtype {got_dtype}, expected {dtype}"
    total = want.sum()
    if dtype.kind in "iu":
        assert got == int(np.rint(total))
        return
    elem_atol = _float_tolerance(bound, nterms, dtype)
    m = want.size
    atol = elem_atol.sum() + m * (np.finfo(dtype).eps + EPS64) * (bound + elem_atol).sum()
    assert abs(float(got) - total) <= atol, f"got {got}, expected {total}, atol {atol}"


# --------------------------------------------------------------------------
# random arguments
# --------------------------------------------------------------------------

class Maker:
    """Random arrays of one 'dtype mode'."""

    def __init__(self, rng, mode):
        self.rng, self.mode = rng, mode

    def __call__(self, shape):
        rng = self.rng
        if self.mode == "mixed":
            dtype = rng.choice([np.int16, np.int64, np.float32, np.float64])
        else:
            dtype = np.dtype(self.mode)
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            return rng.standard_normal(shape).astype(dtype)
        return rng.integers(-5, 6, size=shape).astype(dtype)


def _a(x):
    return np.abs(np.asarray(x, dtype=np.float64))


def _shape2d(rng):
    return IMAGE_SHAPES[rng.integers(len(IMAGE_SHAPES))]


# Each builder returns a dict: args, want (float64), bound, nterms, dtype, shape,
# and 'sum': True when the function returns out.sum().

def b_conv_1d(rng, mk, k, summed=False):
    L = int(rng.choice(LENGTHS))
    inp, param = mk((L,)), mk((k,))
    return dict(args=(inp, param), want=ref.corr_same_1d(inp, param),
                bound=ref.corr_same_1d(_a(inp), _a(param)), nterms=k,
                dtype=float_result(inp, param), shape=(L,), sum=summed)


def b_conv_1d_batch(rng, mk, k, summed=False):
    N, L = int(rng.integers(1, 4)), int(rng.choice(LENGTHS))
    inp, param = mk((N, L)), mk((k,))
    return dict(args=(inp, param), want=ref.corr_same_1d(inp, param),
                bound=ref.corr_same_1d(_a(inp), _a(param)), nterms=k,
                dtype=float_result(inp, param), shape=(N, L), sum=summed)


def _grad_1d(rng, mk, k, which):
    L = int(rng.choice(LENGTHS))
    inp, param = mk((L,)), mk((k,))
    given = bool(rng.integers(2))
    og = mk((L,)) if given else None
    g = og if given else np.ones_like(inp)
    arrays = (inp, param) + ((og,) if given else ())
    x4, w4, g4 = inp[None, None, None], param[None, None, None], g[None, None, None]
    if which == "input":
        want = ref.input_grad((1, 1, 1, L), w4, g4)[0, 0, 0]
        bound = ref.input_grad((1, 1, 1, L), _a(w4), _a(g4))[0, 0, 0]
        nterms, like, shape = k, inp, (L,)
    else:
        want = ref.param_grad(x4, g4, (1, 1, 1, k))[0, 0, 0]
        bound = ref.param_grad(_a(x4), _a(g4), (1, 1, 1, k))[0, 0, 0]
        nterms, like, shape = L, param, (k,)
    args = (inp, param) if not given else (inp, param, og)
    return dict(args=args, want=want, bound=bound, nterms=nterms,
                dtype=like_result(like, *arrays), shape=shape, sum=False)


def b_input_grad_1d(rng, mk, k):
    return _grad_1d(rng, mk, k, "input")


def b_param_grad_1d(rng, mk, k):
    return _grad_1d(rng, mk, k, "param")


def _grad_1d_batch(rng, mk, k, which):
    N, L = int(rng.integers(1, 4)), int(rng.choice(LENGTHS))
    inp, param = mk((N, L)), mk((k,))
    g4 = np.ones((N, 1, 1, L))
    x4, w4 = inp[:, None, None], param[None, None, None]
    if which == "input":
        want = ref.input_grad((N, 1, 1, L), w4, g4)[:, 0, 0]
        bound = ref.input_grad((N, 1, 1, L), _a(w4), g4)[:, 0, 0]
        nterms, like, shape = k, inp, (N, L)
    else:
        want = ref.param_grad(x4, g4, (1, 1, 1, k))[0, 0, 0]
        bound = ref.param_grad(_a(x4), g4, (1, 1, 1, k))[0, 0, 0]
        nterms, like, shape = N * L, param, (k,)
    return dict(args=(inp, param), want=want, bound=bound, nterms=nterms,
                dtype=like_result(like, inp, param), shape=shape, sum=False)


def b_input_grad_1d_batch(rng, mk, k):
    return _grad_1d_batch(rng, mk, k, "input")


def b_param_grad_1d_batch(rng, mk, k):
    return _grad_1d_batch(rng, mk, k, "param")


def _kernel_2d(rng, k):
    return (k, int(rng.integers(1, 8)))


def b_output_obs_2d(rng, mk, k):
    H, W = _shape2d(rng)
    kh, kw = _kernel_2d(rng, k)
    obs, param = mk((H, W)), mk((kh, kw))
    return dict(args=(obs, param), want=ref.corr_same_2d(obs, param),
                bound=ref.corr_same_2d(_a(obs), _a(param)), nterms=kh * kw,
                dtype=like_result(obs, obs, param), shape=(H, W), sum=False)


def b_output_2d(rng, mk, k, summed=False):
    H, W = _shape2d(rng)
    N = int(rng.integers(1, 4))
    kh, kw = _kernel_2d(rng, k)
    imgs, param = mk((N, H, W)), mk((kh, kw))
    dtype = like_result(imgs, imgs, param)
    return dict(args=(imgs, param), want=ref.corr_same_2d(imgs, param),
                bound=ref.corr_same_2d(_a(imgs), _a(param)), nterms=kh * kw,
                dtype=sum_dtype(dtype) if summed else dtype, shape=(N, H, W), sum=summed)


def _grads_2d(rng, mk, k, which, batched):
    H, W = _shape2d(rng)
    N = int(rng.integers(1, 4)) if batched else 1
    kh, kw = _kernel_2d(rng, k)
    inp, og, param = mk((N, H, W)), mk((N, H, W)), mk((kh, kw))
    if not batched:
        inp, og = inp[0], og[0]
    x4 = inp.reshape(N, 1, H, W)
    g4 = og.reshape(N, 1, H, W)
    w4 = param[None, None]
    if which == "input":
        want = ref.input_grad((N, 1, H, W), w4, g4).reshape(inp.shape)
        bound = ref.input_grad((N, 1, H, W), _a(w4), _a(g4)).reshape(inp.shape)
        nterms, like, shape = kh * kw, inp, inp.shape
    else:
        want = ref.param_grad(x4, g4, (1, 1, kh, kw))[0, 0]
        bound = ref.param_grad(_a(x4), _a(g4), (1, 1, kh, kw))[0, 0]
        nterms, like, shape = N * H * W, param, (kh, kw)
    return dict(args=(inp, og, param), want=want, bound=bound, nterms=nterms,
                dtype=like_result(like, inp, og, param), shape=shape, sum=False)


def b_grads_obs_2d(rng, mk, k):
    return _grads_2d(rng, mk, k, "input", batched=False)


def b_grads_2d(rng, mk, k):
    return _grads_2d(rng, mk, k, "input", batched=True)


def b_param_grad_2d(rng, mk, k):
    return _grads_2d(rng, mk, k, "param", batched=True)


def _channels(rng):
    return int(rng.integers(1, 5)), int(rng.integers(1, 5))


def _forward_mc(rng, mk, k, batched, summed=False):
    H, W = _shape2d(rng)
    N = int(rng.integers(1, 4)) if batched else 1
    cin, cout = _channels(rng)
    kh, kw = _kernel_2d(rng, k)
    x, param = mk((N, cin, H, W)), mk((cin, cout, kh, kw))
    want = ref.forward(x, param)
    bound = ref.forward(_a(x), _a(param))
    if not batched:
        x, want, bound = x[0], want[0], bound[0]
    return dict(args=(x, param), want=want, bound=bound, nterms=cin * kh * kw,
                dtype=float_result(x, param), shape=want.shape, sum=summed)


def b_output_obs(rng, mk, k):
    return _forward_mc(rng, mk, k, batched=False)


def b_output(rng, mk, k, summed=False):
    return _forward_mc(rng, mk, k, batched=True, summed=summed)


def _grads_mc(rng, mk, k, which, batched):
    H, W = _shape2d(rng)
    N = int(rng.integers(1, 4)) if batched else 1
    cin, cout = _channels(rng)
    kh, kw = _kernel_2d(rng, k)
    x, g, param = mk((N, cin, H, W)), mk((N, cout, H, W)), mk((cin, cout, kh, kw))
    if which == "input":
        want = ref.input_grad(x.shape, param, g)
        bound = ref.input_grad(x.shape, _a(param), _a(g))
        nterms = cout * kh * kw
    else:
        want = ref.param_grad(x, g, param.shape)
        bound = ref.param_grad(_a(x), _a(g), param.shape)
        nterms = N * H * W
    if not batched:
        x, g, want, bound = x[0], g[0], want[0], bound[0]
    like = x if which == "input" else param
    return dict(args=(x, g, param), want=want, bound=bound, nterms=nterms,
                dtype=like_result(like, x, g, param), shape=want.shape, sum=False)


def b_grads_obs(rng, mk, k):
    return _grads_mc(rng, mk, k, "input", batched=False)


def b_input_grad(rng, mk, k):
    return _grads_mc(rng, mk, k, "input", batched=True)


def b_param_grad(rng, mk, k):
    return _grads_mc(rng, mk, k, "param", batched=True)


BUILDERS = {
    "conv_1d": b_conv_1d,
    "conv_1d_sum": lambda rng, mk, k: b_conv_1d(rng, mk, k, summed=True),
    "_param_grad_1d": b_param_grad_1d,
    "_input_grad_1d": b_input_grad_1d,
    "conv_1d_batch": b_conv_1d_batch,
    "input_grad_1d_batch": b_input_grad_1d_batch,
    "param_grad_1d_batch": b_param_grad_1d_batch,
    "conv_1d_batch_sum": lambda rng, mk, k: b_conv_1d_batch(rng, mk, k, summed=True),
    "_compute_output_obs_2d": b_output_obs_2d,
    "_compute_output_2d": b_output_2d,
    "_compute_grads_obs_2d": b_grads_obs_2d,
    "_compute_grads_2d": b_grads_2d,
    "_param_grad_2d": b_param_grad_2d,
    "_compute_output_2d_sum": lambda rng, mk, k: b_output_2d(rng, mk, k, summed=True),
    "_compute_output_obs": b_output_obs,
    "_output": b_output,
    "_compute_grads_obs": b_grads_obs,
    "_input_grad": b_input_grad,
    "_param_grad": b_param_grad,
    "_compute_output_sum": lambda rng, mk, k: b_output(rng, mk, k, summed=True),
}

CASES = [
    pytest.param(name, mode, k, seed, id=f"{name}-{mode}-k{k}")
    for seed, (name, mode, k) in enumerate(
        (name, mode, k) for name in BUILDERS for mode in DTYPE_MODES for k in range(1, 8))
]


@pytest.mark.parametrize("name, mode, k, seed", CASES)
def test_against_reference(name, mode, k, seed):
    rng = np.random.default_rng([20240607, seed])
    case = BUILDERS[name](rng, Maker(rng, mode), k)
    got = getattr(convx, name)(*case["args"])
    if case["sum"]:
        assert_sum_matches(got, case["want"], case["bound"], case["nterms"], case["dtype"])
    else:
        assert isinstance(got, np.ndarray)
        assert_matches(got, case["want"], case["bound"], case["nterms"], case["dtype"],
                       case["shape"])


def test_cases_cover_the_brief():
    """The random draws really include what the brief asks for."""
    seen_big_kernel = seen_even_nonsquare = 0
    for name, mode, k, seed in (p.values for p in CASES):
        rng = np.random.default_rng([20240607, seed])
        case = BUILDERS[name](rng, Maker(rng, mode), k)
        param = case["args"][-1] if name not in ("_param_grad_1d", "_input_grad_1d") \
            else case["args"][1]
        img = case["args"][0]
        if param.shape[-1] > img.shape[-1]:
            seen_big_kernel += 1
        if param.ndim >= 2 and param.shape[-2] != param.shape[-1] and param.shape[-2] % 2 == 0:
            seen_even_nonsquare += 1
    assert seen_big_kernel >= 50
    assert seen_even_nonsquare >= 30
    assert len(CASES) == len(BUILDERS) * len(DTYPE_MODES) * 7


# --------------------------------------------------------------------------
# pads: exact values
# --------------------------------------------------------------------------

PAD_FUNCS = {
    # name: (number of leading non-padded axes, padded axes)
    "_pad_1d": (0, 1),
    "_pad_1d_batch": (1, 1),
    "_pad_2d": (1, 2),
    "_pad_2d_obs": (0, 2),
    "_pad_2d_channel": (1, 2),
    "_pad_conv_input": (2, 2),
}
PAD_DTYPES = ["float32", "float64", "int64", "int32", "int8", "uint8"]


def _pad_case_params():
    out = []
    for name in PAD_FUNCS:
        for dt in PAD_DTYPES:
            for num in range(4):
                out.append(pytest.param(name, dt, num, id=f"{name}-{dt}-num{num}"))
    return out


@pytest.mark.parametrize("name, dt, num", _pad_case_params())
def test_pad_against_reference(name, dt, num):
    lead, spatial = PAD_FUNCS[name]
    rng = np.random.default_rng([7, list(PAD_FUNCS).index(name), PAD_DTYPES.index(dt), num])
    shape = tuple(int(s) for s in rng.integers(1, 4, size=lead))
    shape += (int(rng.choice(LENGTHS)),) if spatial == 1 else _shape2d(rng)
    dtype = np.dtype(dt)
    if dtype.kind == "f":
        inp = rng.standard_normal(shape).astype(dtype)
    else:
        inp = rng.integers(0 if dtype.kind == "u" else -5, 6, size=shape).astype(dtype)
    got = getattr(convx, name)(inp, num)
    want = ref.pad(inp, [(0, 0)] * lead + [(num, num)] * spatial)
    if spatial == 1:
        # 1-D pads: the notebook concatenated an int64 zero array
        expected_dtype = np.dtype(np.int64) if dtype.kind in "iu" else dtype
    else:
        # 2-D pads: the notebook stacked float zeros; float32 stays float32
        expected_dtype = float_result(inp)
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected_dtype
    assert got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", list(PAD_FUNCS))
def test_pad_accepts_numpy_integer_num(name):
    lead, spatial = PAD_FUNCS[name]
    inp = np.arange(1.0, 1.0 + 3 ** (lead + spatial)).reshape((3,) * (lead + spatial))
    got = getattr(convx, name)(inp, np.int32(2))
    assert np.array_equal(got, ref.pad(inp, [(0, 0)] * lead + [(2, 2)] * spatial))


# --------------------------------------------------------------------------
# the reference itself
# --------------------------------------------------------------------------

def _brute_forward(x, param):
    """The definition with explicit indices and bounds tests: no padding array."""
    N, C, H, W = x.shape
    _, F, KH, KW = param.shape
    pt, pl = KH // 2, KW // 2
    out = np.zeros((N, F, H, W))
    for n in range(N):
        for f in range(F):
            for i in range(H):
                for j in range(W):
                    s = 0.0
                    for c in range(C):
                        for p in range(KH):
                            for q in range(KW):
                                r, t = i + p - pt, j + q - pl
                                if 0 <= r < H and 0 <= t < W:
                                    s += param[c, f, p, q] * x[n, c, r, t]
                    out[n, f, i, j] = s
    return out


@pytest.mark.parametrize("kh, kw", [(1, 1), (2, 3), (3, 3), (4, 1), (5, 6), (7, 2)])
def test_reference_forward_matches_definition(kh, kw):
    rng = np.random.default_rng([3, kh, kw])
    x = rng.integers(-5, 6, size=(2, 3, 4, 6))
    param = rng.integers(-5, 6, size=(3, 2, kh, kw))
    want = _brute_forward(x, param)
    assert np.array_equal(ref.forward(x, param), want)
    for c in range(2):
        assert np.array_equal(ref.corr_same_2d(x[:, 0], param[0, c]),
                              _brute_forward(x[:, :1], param[:1, c:c + 1])[:, 0])
    if kh == 1:
        assert np.array_equal(ref.corr_same_1d(x[:, 0], param[0, 0, 0]),
                              ref.corr_same_2d(x[:, 0], param[0, 0]))


@pytest.mark.parametrize("kh, kw", [(1, 2), (2, 2), (3, 4), (4, 4), (6, 5), (7, 7)])
def test_reference_grads_are_adjoints(kh, kw):
    """<forward(x, p), g> = <x, input_grad(p, g)> = <p, param_grad(x, g)>, exactly
    (small integers), for odd and even kernels."""
    rng = np.random.default_rng([4, kh, kw])
    x = rng.integers(-5, 6, size=(2, 3, 5, 3))
    param = rng.integers(-5, 6, size=(3, 4, kh, kw))
    g = rng.integers(-5, 6, size=(2, 4, 5, 3))
    lhs = np.sum(ref.forward(x, param) * g)
    assert lhs == np.sum(x * ref.input_grad(x.shape, param, g))
    assert lhs == np.sum(param * ref.param_grad(x, g, param.shape))
    # and the gradient wrt one entry is the change when that entry grows by 1
    x2 = x.copy()
    x2[1, 2, 3, 0] += 1
    assert np.sum((ref.forward(x2, param) - ref.forward(x, param)) * g) == \
        ref.input_grad(x.shape, param, g)[1, 2, 3, 0]


def test_reference_reproduces_notebook_prints():
    """The notebook's printed numbers (odd kernels, where it was right)."""
    inp = np.array([1, 2, 3, 4, 5])
    param = np.array([1, 1, 1])
    assert ref.corr_same_1d(inp, param).sum() == 39.0
    ones = np.ones((1, 1, 1, 5))
    assert np.array_equal(ref.input_grad((1, 1, 1, 5), param[None, None, None], ones)[0, 0, 0],
                          [2, 3, 3, 3, 2])
    assert np.array_equal(ref.param_grad(inp[None, None, None], ones, (1, 1, 1, 3))[0, 0, 0],
                          [10, 15, 14])
    batch = np.array([[0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7]])
    assert np.array_equal(ref.corr_same_1d(batch, param),
                          [[1, 3, 6, 9, 12, 15, 11], [3, 6, 9, 12, 15, 18, 13]])
    assert ref.corr_same_1d(batch, param).sum() == 133.0
    assert np.array_equal(
        ref.param_grad(batch[:, None, None], np.ones((2, 1, 1, 7)), (1, 1, 1, 3))[0, 0, 0],
        [36, 49, 48])
    assert np.array_equal(ref.pad(inp, 1), [0, 1, 2, 3, 4, 5, 0])
