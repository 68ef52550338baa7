"""The public API against PyTorch: torch.nn.functional.conv1d/conv2d and torch.nn.grad.

Random configurations like tests/test_api.py's (batch 1-3, channels 1-6,
sizes 1-12, kernels 1-5, strides and dilations 1-3, int / pair / 'valid' /
'same' padding, groups 1, 2, 3 and depthwise, bias or not, float32 and
float64), drawn from another seed.  Gradients with explicit padding are
compared with torch.nn.grad.conv*_input / conv*_weight; with padding='same'
with torch's autograd through F.conv*d(..., padding='same').

Without torch this module is skipped, unless CONVX_REQUIRE_TORCH=1 or
CONVX_REQUIRE_OPTIONAL=1 (CI), in which case a missing torch is a failure.
"""
import numpy as np
import pytest

from conftest import optional  # (tests/conftest.py)

torch = optional("torch")

import torch.nn.functional as TF

import convx
import convx._engine

torch.set_num_threads(1)

pytestmark = [
    # torch's own performance note for padding='same' with even kernels
    # (pyproject turns warnings into errors)
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning"),
    # every test runs through both kernel paths (conftest.py)
    pytest.mark.usefixtures("kernel_path"),
]

import reference as ref  # tests/reference.py; see conftest.py

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)

CONVX = {
    1: (convx.conv1d, convx.conv1d_input_grad, convx.conv1d_weight_grad),
    2: (convx.conv2d, convx.conv2d_input_grad, convx.conv2d_weight_grad),
}
TORCH = {
    1: (TF.conv1d, torch.nn.grad.conv1d_input, torch.nn.grad.conv1d_weight),
    2: (TF.conv2d, torch.nn.grad.conv2d_input, torch.nn.grad.conv2d_weight),
}


def tolerance(bound, nterms, dtype):
    """Per-element tolerance between two computations of one sum of ``nterms`` products.

    Each of convx and torch, in whatever order it sums, is within
    gamma_n * sum|terms| <= n * eps/2 * (1 + O(n*eps)) of the exact value
    (Higham, *Accuracy and Stability of Numerical Algorithms*, section 3.1),
    so they differ by at most about n * eps * sum|terms|; (n + 1) leaves room
    for the bias and the O(n*eps) term.  ``bound`` is sum|terms| per element,
    the float64 reference evaluated on absolute values.
    """
    return (nterms + 1) * np.finfo(dtype).eps * bound


def assert_close(got, want, bound, nterms, dtype):
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape, f"shape {got.shape}, torch {want.shape}"
    assert got.dtype == dtype == want.dtype, f"dtype {got.dtype}, torch {want.dtype}"
    atol = tolerance(bound, nterms, dtype)
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = ~(err <= atol)
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} elements off; worst {np.nanmax(err):.3g}, "
        f"convx {got[bad][:5]}, torch {want[bad][:5]}, atol {atol[bad][:5]}")


def _draw(rng, nsp):
    cfg = ref.random_call(rng, nsp, depthwise_max=7, size_max=13, pad_max=4,
                          padding_p=[0.3, 0.25, 0.15, 0.3])
    if cfg is None:
        return None
    cfg["id"] = (f"{nsp}d-n{cfg['N']}-c{cfg['C']}-f{cfg['F']}-{cfg['kind']}-"
                 f"{'x'.join(map(str, cfg['sizes']))}-k{'x'.join(map(str, cfg['ks']))}"
                 f"-s{cfg['stride']}-d{cfg['dilation']}-p{cfg['padding']}"
                 f"-{'bias' if cfg['bias'] else 'nobias'}-{cfg['dtype'].name}").replace(" ", "")
    return cfg


def _configs(seed, n):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        cfg = _draw(rng, nsp=2 if len(out) % 5 < 3 else 1)
        if cfg is not None:
            out.append(cfg)
    return out


CONFIGS = _configs(777, 120)
PARAMS = [pytest.param(c, id=c["id"]) for c in CONFIGS]


def test_configs_cover_the_brief():
    for nsp in (1, 2):
        cs = [c for c in CONFIGS if c["nsp"] == nsp]
        assert {"g1", "g2", "g3", "depthwise"} <= {c["kind"] for c in cs}
        assert any(c["kind"] == "depthwise" and c["F"] > c["C"] > 1 for c in cs)
        assert {"int", "pair", "valid", "same"} <= {c["pform"] for c in cs}
        assert {1, 2, 3} <= {c["stride"][-1] for c in cs}
        assert {1, 2, 3} <= {c["dilation"][-1] for c in cs}
        assert {True, False} == {c["bias"] for c in cs}
        assert {F32, F64} == {c["dtype"] for c in cs}
        assert any(c["pform"] == "same" and c["w_shape"][-1] % 2 == 0 for c in cs)


def _arrays(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dt = cfg["dtype"]
    x = rng.standard_normal(cfg["x_shape"]).astype(dt)
    w = rng.standard_normal(cfg["w_shape"]).astype(dt)
    b = rng.standard_normal(cfg["F"]).astype(dt) if cfg["bias"] else None
    g = rng.standard_normal(cfg["out_shape"]).astype(dt)
    return x, w, b, g


def _kw(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                groups=cfg["groups"])


def _torch_padding(cfg):
    """padding for torch.nn.grad: explicit ints (it takes no strings)."""
    return 0 if cfg["padding"] == "valid" else cfg["padding"]


def _t(a):
    return None if a is None else torch.from_numpy(a)


@pytest.mark.parametrize("cfg", PARAMS)
def test_forward(cfg):
    x, w, b, _ = _arrays(cfg)
    nsp = cfg["nsp"]
    got = CONVX[nsp][0](x, w, b, **_kw(cfg))
    want = TORCH[nsp][0](_t(x), _t(w), _t(b), **_kw(cfg)).numpy()
    bound = ref.conv_nd(np.abs(x), np.abs(w), None if b is None else np.abs(b), **cfg["rk"])
    assert got.shape == cfg["out_shape"]
    assert_close(got, want, bound, w[0].size + 1, cfg["dtype"])


def _torch_grads(cfg, x, w, g):
    """(dx, dw) from torch: torch.nn.grad with explicit padding, autograd for 'same'."""
    nsp = cfg["nsp"]
    if cfg["padding"] == "same":
        xt = torch.from_numpy(x.copy()).requires_grad_()
        wt = torch.from_numpy(w.copy()).requires_grad_()
        out = TORCH[nsp][0](xt, wt, None, **_kw(cfg))
        out.backward(torch.from_numpy(g))
        return xt.grad.numpy(), wt.grad.numpy()
    kw = dict(_kw(cfg), padding=_torch_padding(cfg))
    dx = TORCH[nsp][1](x.shape, _t(w), _t(g), **kw).numpy()
    dw = TORCH[nsp][2](_t(x), w.shape, _t(g), **kw).numpy()
    return dx, dw


@pytest.mark.parametrize("cfg", PARAMS)
def test_input_and_weight_grad(cfg):
    x, w, _, g = _arrays(cfg)
    nsp = cfg["nsp"]
    want_dx, want_dw = _torch_grads(cfg, x, w, g)
    dx = CONVX[nsp][1](x.shape, w, g, **_kw(cfg))
    dw = CONVX[nsp][2](x, w.shape, g, **_kw(cfg))
    assert dx.shape == x.shape and dw.shape == w.shape
    bound_dx = ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **cfg["rk"])
    bound_dw = ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **cfg["rk"])
    # dx sums over the group's filters and the taps; dw over the batch and the output positions
    assert_close(dx, want_dx, bound_dx, (cfg["F"] // cfg["groups"]) * w[0, 0].size, cfg["dtype"])
    assert_close(dw, want_dw, bound_dw, g[:, 0].size, cfg["dtype"])


@pytest.mark.parametrize("nsp", [1, 2])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_training_step_matches_autograd(nsp, dtype):
    """A layer with bias, stride 2, padding 1, dilation 2, depthwise: forward and
    both gradients of sum(out * g) against autograd."""
    rng = np.random.default_rng(5 + nsp)
    sp = (13, 10)[:nsp] if nsp == 2 else (15,)
    x = rng.standard_normal((3, 4) + sp).astype(dtype)
    w = rng.standard_normal((8, 1) + (3,) * nsp).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    kw = dict(stride=2, padding=1, dilation=2, groups=4)
    xt, wt, bt = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
    out_t = TORCH[nsp][0](xt, wt, bt, **kw)
    g = rng.standard_normal(tuple(out_t.shape)).astype(dtype)
    out_t.backward(torch.from_numpy(g))
    out = CONVX[nsp][0](x, w, b, **kw)
    rk = dict(stride=(1, 2) if nsp == 1 else 2, dilation=(1, 2) if nsp == 1 else 2,
              pads=(0, 0, 1, 1) if nsp == 1 else (1, 1, 1, 1), groups=4)
    assert_close(out, out_t.detach().numpy(),
                 ref.conv_nd(np.abs(x), np.abs(w), np.abs(b), **rk), w[0].size + 1, dtype)
    assert_close(CONVX[nsp][1](x.shape, w, g, **kw), xt.grad.numpy(),
                 ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **rk),
                 2 * w[0, 0].size, dtype)
    assert_close(CONVX[nsp][2](x, w.shape, g, **kw), wt.grad.numpy(),
                 ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **rk),
                 g[:, 0].size, dtype)
