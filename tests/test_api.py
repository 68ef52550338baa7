"""The public API (conv1d, conv2d and their gradients) against tests/reference.py.

Random configurations (batch 1-3, channels 1-6, non-square sizes 1-12,
non-square kernels 1-5, strides and dilations 1-3, int / pair / 'valid' /
'same' padding, groups 1, 2, 3 and depthwise, with and without bias, float32
and float64) are drawn once from a fixed seed; each case draws its arrays
from its own seeded generator.  Every result's shape and dtype must be exactly
the documented ones and its values within a rigorous rounding bound of the
float64 reference (see ``tolerance``).  Configurations whose kernel does not
fit in the padded input must raise ConvxValueError instead.
"""
import doctest

import numpy as np
import pytest

import convx
import convx._api
import convx._engine

# every test runs through both kernel paths (conftest.py)
pytestmark = pytest.mark.usefixtures("kernel_path")

import reference as ref  # tests/reference.py; see conftest.py

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
EPS64 = np.finfo(np.float64).eps

FORWARD = {1: convx.conv1d, 2: convx.conv2d}
INPUT_GRAD = {1: convx.conv1d_input_grad, 2: convx.conv2d_input_grad}
WEIGHT_GRAD = {1: convx.conv1d_weight_grad, 2: convx.conv2d_weight_grad}


# --------------------------------------------------------------------------
# tolerance
# --------------------------------------------------------------------------

def tolerance(bound, nterms, dtype):
    """Per-element absolute tolerance for a sum of at most ``nterms`` products.

    In any summation order (BLAS blocking, FMA, per-thread partial sums),
    a sum of n products computed in precision u = eps/2 is off by at most
    gamma_n * sum|terms|, gamma_n = n*u / (1 - n*u) <= n*eps (Higham,
    *Accuracy and Stability of Numerical Algorithms*, section 3.1); the bias
    is one more term and the reference's float64 sum has an error of the same
    form with eps64, hence (n + 1) * (eps + eps64).  ``bound`` is sum|terms|
    per element: the reference evaluated on |x|, |w|, |bias|, |g|.  Padding
    only adds exact zeros, and a zero bound demands an exact zero.

    float16 arrays are computed in float32 and then rounded once to float16:
    that adds at most eps16/2 * |result| <= eps16/2 * bound, plus half the
    smallest subnormal for results that round into float16's subnormals.
    """
    if dtype == F16:
        return ((nterms + 1) * (np.finfo(np.float32).eps + EPS64) * bound
                + np.finfo(np.float16).eps * bound + np.finfo(np.float16).smallest_subnormal)
    return (nterms + 1) * (np.finfo(dtype).eps + EPS64) * bound


def assert_matches(got, want, bound, nterms, dtype, shape):
    assert isinstance(got, np.ndarray)
    assert got.shape == shape, f"shape {got.shape}, expected {shape}"
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    assert want.shape == shape
    atol = tolerance(bound, nterms, dtype)
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= atol)  # NaN counts as bad
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} elements outside tolerance; worst error {np.nanmax(err):.3g}, "
        f"got {got[bad][:5]}, expected {want[bad][:5]}, atol {atol[bad][:5]}")


# --------------------------------------------------------------------------
# random configurations
# --------------------------------------------------------------------------

def _draw_config(rng, nsp):
    """One random configuration; ``cfg['valid']`` says whether the kernel fits."""
    kind = rng.choice(["g1", "g1", "g2", "g3", "depthwise"])
    if kind == "depthwise":
        C = int(rng.integers(1, 7))
        groups, F = C, C * int(rng.integers(1, 3))
    else:
        groups = {"g1": 1, "g2": 2, "g3": 3}[kind]
        C = groups * int(rng.integers(1, 6 // groups + 1))
        F = groups * int(rng.integers(1, 6 // groups + 1))
    N = int(rng.integers(1, 4))
    H, KH = (int(rng.integers(1, 13)), int(rng.integers(1, 6))) if nsp == 2 else (1, 1)
    W, KW = int(rng.integers(1, 13)), int(rng.integers(1, 6))
    # padding form first: 'same' needs stride 1
    pform = rng.choice(["int", "pair", "valid", "same"], p=[0.3, 0.3, 0.15, 0.25])
    if pform == "same":
        sh = sw = 1
    else:
        sh = int(rng.integers(1, 4)) if nsp == 2 else 1
        sw = int(rng.integers(1, 4))
    dh = int(rng.integers(1, 4)) if nsp == 2 else 1
    dw = int(rng.integers(1, 4))
    spatial = [(sh, dh, KH), (sw, dw, KW)][2 - nsp:]

    def form(values):  # an int when all equal (and sometimes anyway a tuple)
        if len(set(values)) == 1 and rng.random() < 0.6:
            return values[0]
        return tuple(values)

    stride_arg = form([s for s, _, _ in spatial])
    dilation_arg = form([d for _, d, _ in spatial])
    if pform == "int":
        p = int(rng.integers(0, 4))
        padding_arg, lohi = p, [(p, p)] * nsp
    elif pform == "pair":
        ps = [int(rng.integers(0, 4)) for _ in range(nsp)]
        padding_arg, lohi = tuple(ps), [(p, p) for p in ps]
    elif pform == "valid":
        padding_arg, lohi = "valid", [(0, 0)] * nsp
    else:
        padding_arg = "same"
        lohi = [ref.torch_same_pads(k, d) for _, d, k in spatial]
    pads = ((0, 0) + lohi[0]) if nsp == 1 else (lohi[0] + lohi[1])
    OH = ref.conv_output_size(H, KH, sh, dh, pads[0], pads[1])
    OW = ref.conv_output_size(W, KW, sw, dw, pads[2], pads[3])
    dtype = F32 if rng.random() < 0.5 else F64
    cfg = dict(nsp=nsp, N=N, C=C, F=F, groups=groups, kind=kind, H=H, W=W, KH=KH, KW=KW,
               stride=(sh, sw), dilation=(dh, dw), pads=pads, pform=str(pform),
               stride_arg=stride_arg, dilation_arg=dilation_arg, padding_arg=padding_arg,
               bias=bool(rng.random() < 0.5), dtype=dtype, seed=int(rng.integers(2**31)),
               valid=OH is not None and OW is not None, OH=OH, OW=OW)
    if nsp == 1:
        cfg["x_shape"], cfg["w_shape"] = (N, C, W), (F, C // groups, KW)
        cfg["out_shape"] = None if OW is None else (N, F, OW)
    else:
        cfg["x_shape"], cfg["w_shape"] = (N, C, H, W), (F, C // groups, KH, KW)
        cfg["out_shape"] = None if not cfg["valid"] else (N, F, OH, OW)
    cfg["id"] = (f"{nsp}d-n{N}-c{C}-f{F}-{kind}-{'x'.join(map(str, cfg['x_shape'][2:]))}"
                 f"-k{'x'.join(map(str, cfg['w_shape'][2:]))}-s{stride_arg}-d{dilation_arg}"
                 f"-p{padding_arg}-{'bias' if cfg['bias'] else 'nobias'}-{dtype.name}"
                 ).replace(" ", "")
    return cfg


def _draw_configs(seed, n_valid, n_invalid):
    rng = np.random.default_rng(seed)
    valid, invalid = [], []
    while len(valid) < n_valid or len(invalid) < n_invalid:
        cfg = _draw_config(rng, nsp=2 if len(valid) % 5 < 3 else 1)
        if cfg["valid"] and len(valid) < n_valid:
            valid.append(cfg)
        elif not cfg["valid"] and len(invalid) < n_invalid:
            invalid.append(cfg)
    return valid, invalid


VALID, INVALID = _draw_configs(20240611, n_valid=150, n_invalid=30)


def _params(configs):
    return [pytest.param(cfg, id=cfg["id"]) for cfg in configs]


def _kwargs(cfg):
    return dict(stride=cfg["stride_arg"], padding=cfg["padding_arg"],
                dilation=cfg["dilation_arg"], groups=cfg["groups"])


def _refkw(cfg):
    return dict(stride=cfg["stride"], pads=cfg["pads"], dilation=cfg["dilation"],
                groups=cfg["groups"])


def _arrays(cfg, dtype=None):
    """x, w, bias (or None) and a grad_output for ``cfg``, drawn from its own seed."""
    rng = np.random.default_rng(cfg["seed"])
    dtype = cfg["dtype"] if dtype is None else dtype
    x = rng.standard_normal(cfg["x_shape"]).astype(dtype)
    w = rng.standard_normal(cfg["w_shape"]).astype(dtype)
    b = rng.standard_normal(cfg["F"]).astype(dtype) if cfg["bias"] else None
    g = rng.standard_normal(cfg["out_shape"]).astype(dtype) if cfg["valid"] else None
    return x, w, b, g


def test_configs_cover_the_brief():
    """The random draw really contains every feature the tests claim to cover."""
    for nsp in (1, 2):
        cs = [c for c in VALID if c["nsp"] == nsp]
        assert len(cs) >= 50
        assert {c["groups"] > 1 and c["kind"] == "depthwise" and c["F"] > c["C"]
                for c in cs} == {True, False}
        assert {"g1", "g2", "g3", "depthwise"} <= {c["kind"] for c in cs}
        assert {"int", "pair", "valid", "same"} <= {c["pform"] for c in cs}
        assert {1, 2, 3} <= {c["stride"][1] for c in cs}
        assert {1, 2, 3} <= {c["dilation"][1] for c in cs}
        assert {1, 2, 3, 4, 5} <= {c["KW"] for c in cs}
        assert {True, False} == {c["bias"] for c in cs}
        assert {F32, F64} == {c["dtype"] for c in cs}
        assert {1, 2, 3} == {c["N"] for c in cs}
        assert any(c["pform"] == "same" and c["KW"] % 2 == 0 for c in cs)
        assert any(c["pform"] == "same" and c["dilation"][1] > 1 for c in cs)
    cs2 = [c for c in VALID if c["nsp"] == 2]
    assert any(c["H"] != c["W"] for c in cs2)
    assert any(c["KH"] != c["KW"] for c in cs2)
    assert any(c["stride"][0] != c["stride"][1] for c in cs2)
    assert any(c["dilation"][0] != c["dilation"][1] for c in cs2)
    assert {1, 2} <= {c["nsp"] for c in INVALID}


# --------------------------------------------------------------------------
# the reference itself, against the definition
# --------------------------------------------------------------------------

def _brute_forward(x, w, stride, pads, dilation, groups):
    """out[n,f,i,j] = sum_{c,p,q} w[f,c,p,q] * xpad[n, g*Cg + c, i*sh + p*dh, j*sw + q*dw],
    one scalar at a time."""
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, pads
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr))
    xp[:, :, pt:pt + H, pl:pl + W] = x
    OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1
    OW = (W + pl + pr - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            gi = f // (F // groups)
            for i in range(OH):
                for j in range(OW):
                    s = 0.0
                    for c in range(Cg):
                        for p in range(KH):
                            for q in range(KW):
                                s += w[f, c, p, q] * xp[n, gi * Cg + c, i * sh + p * dh,
                                                        j * sw + q * dw]
                    out[n, f, i, j] = s
    return out


@pytest.mark.parametrize("cfg", _params([c for c in VALID if c["nsp"] == 2][:12]))
def test_reference_against_definition(cfg):
    """conv_nd is the definition, and its two gradients are its exact adjoints:
    <conv(x, w), g> = <x, dx(g)> = <w, dw(g)>."""
    x, w, b, g = _arrays(cfg, F64)
    kw = _refkw(cfg)
    out = ref.conv_nd(x, w, None, **kw)
    brute = _brute_forward(x, w, cfg["stride"], cfg["pads"], cfg["dilation"], cfg["groups"])
    np.testing.assert_allclose(out, brute, rtol=1e-12, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(ref.conv_nd(x, w, b, **kw), brute + b[:, None, None],
                                   rtol=1e-12, atol=1e-12)
    dx = ref.conv_nd_input_grad(x.shape, w, g, **kw)
    dw = ref.conv_nd_weight_grad(x, w.shape, g, **kw)
    inner = np.sum(out * g)
    scale = np.sum(np.abs(out * g)) + 1.0
    assert abs(inner - np.sum(x * dx)) <= 1e-12 * scale
    assert abs(inner - np.sum(w * dw)) <= 1e-12 * scale
    assert dx.shape == x.shape and dw.shape == w.shape


def test_reference_1d_is_2d_with_h_1():
    rng = np.random.default_rng(7)
    x, w, g = rng.standard_normal((2, 4, 9)), rng.standard_normal((6, 2, 3)), None
    kw = dict(stride=(1, 2), pads=(0, 0, 2, 1), dilation=(1, 2), groups=2)
    out = ref.conv_nd(x, w, None, **kw)
    np.testing.assert_array_equal(out, ref.conv_nd(x[:, :, None], w[:, :, None], **kw)[:, :, 0])
    g = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(
        ref.conv_nd_input_grad(x.shape, w, g, **kw),
        ref.conv_nd_input_grad(x[:, :, None].shape, w[:, :, None], g[:, :, None], **kw)[:, :, 0])


# --------------------------------------------------------------------------
# the three passes on random configurations
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", _params(VALID))
def test_forward(cfg):
    x, w, b, _ = _arrays(cfg)
    got = FORWARD[cfg["nsp"]](x, w, b, **_kwargs(cfg))
    want = ref.conv_nd(x, w, b, **_refkw(cfg))
    bound = ref.conv_nd(np.abs(x), np.abs(w), None if b is None else np.abs(b), **_refkw(cfg))
    nterms = (cfg["C"] // cfg["groups"]) * cfg["KH"] * cfg["KW"] + (b is not None)
    assert_matches(got, want, bound, nterms, cfg["dtype"], cfg["out_shape"])


@pytest.mark.parametrize("cfg", _params(VALID))
def test_input_grad(cfg):
    x, w, _, g = _arrays(cfg)
    got = INPUT_GRAD[cfg["nsp"]](x.shape, w, g, **_kwargs(cfg))
    want = ref.conv_nd_input_grad(x.shape, w, g, **_refkw(cfg))
    bound = ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **_refkw(cfg))
    nterms = (cfg["F"] // cfg["groups"]) * cfg["KH"] * cfg["KW"]
    assert_matches(got, want, bound, nterms, cfg["dtype"], cfg["x_shape"])


@pytest.mark.parametrize("cfg", _params(VALID))
def test_weight_grad(cfg):
    x, w, _, g = _arrays(cfg)
    got = WEIGHT_GRAD[cfg["nsp"]](x, w.shape, g, **_kwargs(cfg))
    want = ref.conv_nd_weight_grad(x, w.shape, g, **_refkw(cfg))
    bound = ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **_refkw(cfg))
    nterms = cfg["N"] * cfg["OH"] * cfg["OW"]
    assert_matches(got, want, bound, nterms, cfg["dtype"], cfg["w_shape"])


@pytest.mark.parametrize("c, f, groups", [(2, 3, 1), (4, 4, 2)])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_scratch_on_the_stack_and_on_the_heap(c, f, groups, dtype):
    """A serial GEMM call whose scratch fits in _core.STACK_SCRATCH values
    passes none and the kernel uses its stack; one value more and the scratch
    is allocated.  Lengths on both sides of that line, for the three passes
    (the weight gradient's scratch also holds its accumulator)."""
    k, n = 2, 2
    limit = convx._core.STACK_SCRATCH
    seen = set()
    for length in [*range(limit // 5 - 4, limit // 5 + 5), *range(limit // 4 - 3, limit // 4 + 5)]:
        rng = np.random.default_rng(length)
        x = rng.standard_normal((n, c, length)).astype(dtype)
        w = rng.standard_normal((f, c // groups, k)).astype(dtype)
        p = length - k + 1
        g = rng.standard_normal((n, f, p)).astype(dtype)
        kk = (c // groups) * k
        wgrad_rows = kk + -(-f * kk // p)
        seen |= {kk * p <= limit, wgrad_rows * p <= limit}
        kw = dict(stride=1, pads=(0, 0, 0, 0), dilation=1, groups=groups)
        assert_matches(convx.conv1d(x, w, groups=groups), ref.conv_nd(x, w, None, **kw),
                       ref.conv_nd(np.abs(x), np.abs(w), None, **kw), kk, dtype, (n, f, p))
        assert_matches(convx.conv1d_input_grad(x.shape, w, g, groups=groups),
                       ref.conv_nd_input_grad(x.shape, w, g, **kw),
                       ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **kw),
                       (f // groups) * k, dtype, x.shape)
        assert_matches(convx.conv1d_weight_grad(x, w.shape, g, groups=groups),
                       ref.conv_nd_weight_grad(x, w.shape, g, **kw),
                       ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **kw),
                       n * p, dtype, w.shape)
    assert seen == {True, False}


@pytest.mark.parametrize("cfg", _params(INVALID))
def test_kernel_larger_than_padded_input(cfg):
    """All three passes refuse a kernel whose dilated span exceeds the padded input."""
    x, w, b, _ = _arrays(cfg)
    nsp, kw = cfg["nsp"], _kwargs(cfg)
    g = np.zeros((cfg["N"], cfg["F"]) + (1,) * nsp, cfg["dtype"])
    name = {1: "conv1d", 2: "conv2d"}[nsp]
    calls = {name: lambda: FORWARD[nsp](x, w, b, **kw),
             name + "_input_grad": lambda: INPUT_GRAD[nsp](x.shape, w, g, **kw),
             name + "_weight_grad": lambda: WEIGHT_GRAD[nsp](x, w.shape, g, **kw)}
    for func, call in calls.items():
        with pytest.raises(convx.ConvxValueError, match=rf"^{func}\(\).*kernel"):
            call()


# --------------------------------------------------------------------------
# unbatched input
# --------------------------------------------------------------------------

@pytest.mark.parametrize("nsp", [1, 2])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_unbatched_is_batched_result_0(nsp, with_bias, dtype):
    rng = np.random.default_rng(100 * nsp + 10 * with_bias + (dtype == F64))
    sp_x, sp_w = ((7, 9), (3, 2)) if nsp == 2 else ((11,), (4,))
    x = rng.standard_normal((4,) + sp_x).astype(dtype)           # (C, H, W) / (C, L)
    w = rng.standard_normal((6, 2) + sp_w).astype(dtype)         # groups = 2
    b = rng.standard_normal(6).astype(dtype) if with_bias else None
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    got = FORWARD[nsp](x, w, b, **kw)
    batched = FORWARD[nsp](x[None], w, b, **kw)
    assert got.shape == batched.shape[1:] and got.dtype == dtype
    np.testing.assert_array_equal(got, batched[0])
    rk = dict(stride=2, pads=(0, 0, 1, 1) if nsp == 1 else (1, 1, 1, 1), dilation=1, groups=2)
    want = ref.conv_nd(x[None], w, b, **rk)
    bound = ref.conv_nd(np.abs(x[None]), np.abs(w), None if b is None else np.abs(b), **rk)
    assert_matches(got[None], want, bound, 2 * w[0, 0].size + 1, dtype, want.shape)


# --------------------------------------------------------------------------
# dtypes: float16 computes in float32 and returns float16; ints return float64
# --------------------------------------------------------------------------

def _small_case(nsp, seed, make):
    """x, w, b, g for a fixed grouped, strided, dilated configuration built by ``make``."""
    rng = np.random.default_rng(seed)
    x_shape, w_shape = ((2, 4, 9, 8), (6, 2, 3, 2)) if nsp == 2 else ((2, 4, 10), (6, 2, 3))
    if nsp == 2:
        kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
        rk = dict(stride=(2, 1), pads=(1, 1, 1, 1), dilation=(1, 2), groups=2)
    else:
        kw = dict(stride=2, padding=(1,), dilation=(2,), groups=2)
        rk = dict(stride=(1, 2), pads=(0, 0, 1, 1), dilation=(1, 2), groups=2)
    x, w, b = make(rng, x_shape), make(rng, w_shape), make(rng, (6,))
    out_shape = ref.conv_nd(np.zeros(x_shape), np.zeros(w_shape), **rk).shape
    g = make(rng, out_shape)
    return x, w, b, g, kw, rk


@pytest.mark.parametrize("nsp", [1, 2])
def test_float16(nsp):
    x, w, b, g, kw, rk = _small_case(
        nsp, 16 + nsp, lambda rng, shape: rng.standard_normal(shape).astype(np.float16))
    assert x.dtype == F16
    nt_f = w[0].size + 1
    out = FORWARD[nsp](x, w, b, **kw)
    assert_matches(out, ref.conv_nd(x, w, b, **rk),
                   ref.conv_nd(np.abs(x), np.abs(w), np.abs(b), **rk), nt_f, F16, g.shape)
    dx = INPUT_GRAD[nsp](x.shape, w, g, **kw)
    assert_matches(dx, ref.conv_nd_input_grad(x.shape, w, g, **rk),
                   ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **rk),
                   3 * w[0, 0].size, F16, x.shape)
    dw = WEIGHT_GRAD[nsp](x, w.shape, g, **kw)
    assert_matches(dw, ref.conv_nd_weight_grad(x, w.shape, g, **rk),
                   ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **rk),
                   g[:, 0].size, F16, w.shape)


def test_float16_computes_in_float32():
    """300 * 300 = 90000 overflows float16 (max 65504) whatever the summation
    order, so a float16 computation gives inf or nan; in float32 the products
    are exact and 300*300 - 300*299 = 300 comes back as a float16."""
    x = np.full((1, 1, 2), 300, np.float16)
    w = np.array([[[300, -299]]], np.float16)
    out = convx.conv1d(x, w)
    assert out.dtype == F16
    np.testing.assert_array_equal(out, np.array([[[300]]], np.float16))
    dw = convx.conv1d_weight_grad(x, (1, 1, 1), np.array([[[300, -299]]], np.float16))
    assert dw.dtype == F16
    np.testing.assert_array_equal(dw, np.array([[[300]]], np.float16))
    # dx = sum_f w[f] * g[f] with w (2, 1, 1) = [300, -299] and g = [300, 300]
    dx = convx.conv1d_input_grad((1, 1, 1), w.reshape(2, 1, 1),
                                 np.full((1, 2, 1), 300, np.float16))
    assert dx.dtype == F16
    np.testing.assert_array_equal(dx, np.array([[[300]]], np.float16))


@pytest.mark.parametrize("nsp", [1, 2])
@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.int8, np.uint8])
def test_integer_dtypes_return_float64(nsp, int_dtype):
    """Integer arrays compute in float64 and return float64; small integer
    products summed in float64 are exact in any order, so equality is exact."""
    x, w, b, g, kw, rk = _small_case(
        nsp, 32 + nsp, lambda rng, shape: rng.integers(0, 7, shape).astype(int_dtype))
    assert x.dtype == np.dtype(int_dtype)
    out = FORWARD[nsp](x, w, b, **kw)
    assert out.dtype == F64 and out.shape == g.shape
    np.testing.assert_array_equal(out, ref.conv_nd(x, w, b, **rk))
    dx = INPUT_GRAD[nsp](x.shape, w, g, **kw)
    assert dx.dtype == F64 and dx.shape == x.shape
    np.testing.assert_array_equal(dx, ref.conv_nd_input_grad(x.shape, w, g, **rk))
    dw = WEIGHT_GRAD[nsp](x, w.shape, g, **kw)
    assert dw.dtype == F64 and dw.shape == w.shape
    np.testing.assert_array_equal(dw, ref.conv_nd_weight_grad(x, w.shape, g, **rk))


def test_large_int64_is_not_rounded_to_float32():
    """ints compute in float64: 2**24 + 1 survives (it would not in float32)."""
    x = np.array([[[2**24 + 1]]], np.int64)
    out = convx.conv1d(x, np.array([[[1]]], np.int64))
    assert out.dtype == F64 and out[0, 0, 0] == 2**24 + 1


# --------------------------------------------------------------------------
# padding='same'
# --------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("nsp", [1, 2])
def test_same_keeps_the_size(k, d, nsp):
    rng = np.random.default_rng(1000 + 100 * k + 10 * d + nsp)
    if nsp == 2:
        x = rng.standard_normal((2, 3, 17, 16))
        w = rng.standard_normal((4, 3, k, max(1, k - 1)))
        rk = dict(pads=ref.torch_same_pads(k, d) + ref.torch_same_pads(max(1, k - 1), d),
                  stride=1, dilation=d)
    else:
        x = rng.standard_normal((2, 3, 17))
        w = rng.standard_normal((4, 3, k))
        rk = dict(pads=(0, 0) + ref.torch_same_pads(k, d), stride=1, dilation=d)
    out = FORWARD[nsp](x, w, padding="same", dilation=d)
    assert out.shape == (2, 4) + x.shape[2:]
    assert_matches(out, ref.conv_nd(x, w, **rk), ref.conv_nd(np.abs(x), np.abs(w), **rk),
                   w[0].size, F64, out.shape)
    g = rng.standard_normal(out.shape)
    dx = INPUT_GRAD[nsp](x.shape, w, g, padding="same", dilation=d)
    assert_matches(dx, ref.conv_nd_input_grad(x.shape, w, g, **rk),
                   ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **rk),
                   4 * w[0, 0].size, F64, x.shape)
    dw = WEIGHT_GRAD[nsp](x, w.shape, g, padding="same", dilation=d)
    assert_matches(dw, ref.conv_nd_weight_grad(x, w.shape, g, **rk),
                   ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **rk),
                   g[:, 0].size, F64, w.shape)


def test_same_even_kernel_puts_the_extra_zero_after():
    """Kernel (1, 0) over [1, 2, 3]: total padding 1, all of it after (PyTorch),
    so the output is x itself; with the zero before it would be [0, 1, 2]."""
    x = np.array([[[1.0, 2.0, 3.0]]])
    w = np.array([[[1.0, 0.0]]])
    np.testing.assert_array_equal(convx.conv1d(x, w, padding="same"), [[[1.0, 2.0, 3.0]]])
    # dilation 3, kernel 2: total 3, 1 before and 2 after: out[i] = x[i - 1]
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    np.testing.assert_array_equal(convx.conv1d(x, w, padding="same", dilation=3),
                                  [[[0.0, 1.0, 2.0, 3.0]]])
    x2 = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w2 = np.zeros((1, 1, 2, 2))
    w2[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(convx.conv2d(x2, w2, padding="same"), x2)


def test_valid_is_padding_0():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((3, 2, 3, 2))
    np.testing.assert_array_equal(convx.conv2d(x, w, padding="valid", stride=2),
                                  convx.conv2d(x, w, padding=0, stride=2))


# --------------------------------------------------------------------------
# docstrings
# --------------------------------------------------------------------------

def test_docstring_examples_run():
    result = doctest.testmod(convx._api, verbose=False, report=False)
    assert result.attempted > 0
    assert result.failed == 0
