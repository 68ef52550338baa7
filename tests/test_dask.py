"""convx.dask: the public API's six convolutions on dask arrays.

The oracle is the NumPy API's single call on the whole arrays (and
tests/reference.py for the rounding bound):

* random chunkings (ragged, chunks of one, chunks smaller than the halo) of
  random configurations (1-D and 2-D, strides 1-3, dilations 1-3, int /
  pair / 'valid' / 'same' padding, groups and depthwise), for all six
  functions: within the torch comparisons' tolerance (tests/test_torch.py's
  ``tolerance``), the weight gradient too;
* batch and channel chunkings with a fixed method: the forward pass and the
  input gradient bit for bit;
* results are lazy dask arrays with the chunks the rule of convx/dask.py's
  docstring gives, built without computing anything;
* bad arguments raise the NumPy API's very error, when the graph is built;
* the threaded scheduler and a two-process LocalCluster, with the thread
  count convx itself used in each task.
"""
import functools
import inspect
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import optional, thread_counts  # (tests/conftest.py)

da = optional("dask.array")
import dask

import convx
import convx._core
import convx._threads
import convx.dask as cd
import reference as ref  # tests/reference.py; see conftest.py

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
NAMES = ["conv1d", "conv2d", "conv1d_input_grad", "conv2d_input_grad", "conv1d_weight_grad",
         "conv2d_weight_grad"]


def _no_compute(*args, **kwargs):
    raise AssertionError("a dask graph was computed while it was being built")


@pytest.fixture
def build_only():
    """Any compute in the block fails the test (the default scheduler raises)."""
    with dask.config.set(scheduler=_no_compute):
        yield


def tolerance(bound, nterms, dtype):
    """As tests/test_torch.py: two computations of one sum of ``nterms``
    products, each within about n * eps/2 * sum|terms| of the exact value
    (Higham, section 3.1), differ by at most (n + 1) * eps * sum|terms|."""
    return (nterms + 1) * np.finfo(dtype).eps * bound


def assert_close(got, want, bound, nterms, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype == dtype
    atol = tolerance(bound, nterms, dtype)
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = ~(err <= atol)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} off; worst {np.nanmax(err):.3g}, "
                           f"atol {atol[bad][:5]}")


# --------------------------------------------------------------------------
# Random configurations and chunkings
# --------------------------------------------------------------------------

def random_chunks(rng, n):
    """A chunking of an axis of length n: one chunk, chunks of one, or
    ragged cuts (which may be smaller than any halo)."""
    if n <= 1:
        return (n,)
    kind = rng.integers(4)
    if kind == 0:
        return (n,)
    if kind == 1:
        return (1,) * n
    cuts = sorted(set(rng.integers(1, n, size=int(rng.integers(1, n))).tolist()))
    return tuple(np.diff([0] + cuts + [n]).tolist())


def _draw(rng, nsp):
    cfg = ref.random_call(rng, nsp, depthwise_max=5, size_max=18, pad_max=5,
                          padding_p=[0.3, 0.2, 0.2, 0.3])
    if cfg is None:
        return None
    cfg["kw"] = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                     groups=cfg["groups"])
    cfg["id"] = (f"{nsp}d-{cfg['kind']}-{'x'.join(map(str, cfg['x_shape']))}"
                 f"-k{'x'.join(map(str, cfg['ks']))}-s{cfg['stride']}-d{cfg['dilation']}"
                 f"-p{cfg['padding']}-{cfg['dtype'].name}").replace(" ", "")
    return cfg


def _configs(seed, n):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        cfg = _draw(rng, nsp=2 if len(out) % 3 else 1)
        if cfg is not None:
            out.append(cfg)
    return out


CONFIGS = _configs(1212, 60)
PARAMS = [pytest.param(c, id=c["id"]) for c in CONFIGS]


def test_configs_cover_the_brief():
    for nsp in (1, 2):
        cs = [c for c in CONFIGS if c["nsp"] == nsp]
        assert {"g1", "g2", "g3", "depthwise"} <= {c["kind"] for c in cs}
        assert {"int", "pair", "valid", "same"} <= {c["pform"] for c in cs}
        assert {1, 2, 3} <= {c["kw"]["stride"][-1] for c in cs}
        assert {1, 2, 3} <= {c["kw"]["dilation"][-1] for c in cs}
        assert {F32, F64} == {c["dtype"] for c in cs}


def _arrays(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dt = cfg["dtype"]
    x = rng.standard_normal(cfg["x_shape"]).astype(dt)
    w = rng.standard_normal(cfg["w_shape"]).astype(dt)
    b = rng.standard_normal(cfg["w_shape"][0]).astype(dt) if cfg["bias"] else None
    g = rng.standard_normal(cfg["out_shape"]).astype(dt)
    return x, w, b, g


def _chunked(rng, a):
    return da.from_array(a, chunks=tuple(random_chunks(rng, n) for n in a.shape))


def _funcs(nsp):
    return [getattr(m, f"conv{nsp}d{s}") for m in (convx, cd)
            for s in ("", "_input_grad", "_weight_grad")]


# --------------------------------------------------------------------------
# The chunk rule, written out independently of convx/dask.py
# --------------------------------------------------------------------------

def _pads(cfg):
    """(lo, hi) per spatial axis."""
    p = cfg["rk"]["pads"]
    return [(p[2], p[3])] if cfg["nsp"] == 1 else [(p[0], p[1]), (p[2], p[3])]


def expected_forward_chunks(x_chunks, cfg):
    out = []
    for sizes, (lo, _), s, n_out in zip(x_chunks[2:], _pads(cfg), cfg["kw"]["stride"],
                                        cfg["out_shape"][2:]):
        cuts = {0, n_out}
        for b in np.cumsum(sizes)[:-1]:
            cuts.add(min(max(math.ceil((int(b) + lo) / s), 0), n_out))
        out.append(tuple(np.diff(sorted(cuts)).tolist()))
    return (x_chunks[0], (cfg["w_shape"][0],)) + tuple(out)


def expected_input_grad_chunks(g_chunks, cfg):
    out = []
    for sizes, (lo, _), s, n in zip(g_chunks[2:], _pads(cfg), cfg["kw"]["stride"],
                                    cfg["x_shape"][2:]):
        cuts = {0, n}
        for o in np.cumsum(sizes)[:-1]:
            cuts.add(min(max(int(o) * s - lo, 0), n))
        out.append(tuple(np.diff(sorted(cuts)).tolist()) or (0,))
    return (g_chunks[0], (cfg["x_shape"][1],)) + tuple(out)


# --------------------------------------------------------------------------
# Random chunkings: all six functions against the single NumPy call
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", PARAMS)
def test_forward_random_chunkings(cfg):
    x, w, b, _ = _arrays(cfg)
    rng = np.random.default_rng(cfg["seed"] + 1)
    f_np, _, _, f_da, _, _ = _funcs(cfg["nsp"])
    want = f_np(x, w, b, **cfg["kw"])
    bound = ref.conv_nd(np.abs(x), np.abs(w), None if b is None else np.abs(b), **cfg["rk"])
    for _ in range(3):
        dx = _chunked(rng, x)
        with dask.config.set(scheduler=_no_compute):
            y = f_da(dx, _chunked(rng, w), None if b is None else _chunked(rng, b), **cfg["kw"])
        assert isinstance(y, da.Array)
        assert y.chunks == expected_forward_chunks(dx.chunks, cfg)
        assert_close(y.compute(scheduler="sync"), want, bound, w[0].size + 1, cfg["dtype"])


@pytest.mark.parametrize("cfg", PARAMS)
def test_input_grad_random_chunkings(cfg):
    x, w, _, g = _arrays(cfg)
    rng = np.random.default_rng(cfg["seed"] + 2)
    _, f_np, _, _, f_da, _ = _funcs(cfg["nsp"])
    want = f_np(x.shape, w, g, **cfg["kw"])
    bound = ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), **cfg["rk"])
    nterms = (cfg["w_shape"][0] // cfg["groups"]) * w[0, 0].size
    for _ in range(3):
        dg = _chunked(rng, g)
        with dask.config.set(scheduler=_no_compute):
            dx = f_da(x.shape, _chunked(rng, w), dg, **cfg["kw"])
        assert isinstance(dx, da.Array)
        assert dx.chunks == expected_input_grad_chunks(dg.chunks, cfg)
        assert_close(dx.compute(scheduler="sync"), want, bound, nterms, cfg["dtype"])


@pytest.mark.parametrize("cfg", PARAMS)
def test_weight_grad_random_chunkings(cfg):
    """input and grad_output chunked independently (their batch chunks too)."""
    x, w, _, g = _arrays(cfg)
    rng = np.random.default_rng(cfg["seed"] + 3)
    _, _, f_np, _, _, f_da = _funcs(cfg["nsp"])
    want = f_np(x, w.shape, g, **cfg["kw"])
    bound = ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **cfg["rk"])
    for _ in range(3):
        with dask.config.set(scheduler=_no_compute):
            dw = f_da(_chunked(rng, x), w.shape, _chunked(rng, g), **cfg["kw"])
        assert isinstance(dw, da.Array) and dw.chunks == tuple((n,) for n in w.shape)
        assert_close(dw.compute(scheduler="sync"), want, bound, g[:, 0].size, cfg["dtype"])


@pytest.mark.parametrize("nsp", [1, 2])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_chunks_far_smaller_than_the_halo(nsp, size):
    """A 5-tap kernel at dilation 3 (halo 12) on chunks of 1 to 3, at strides
    2 and 3, padding 'same' and explicit: each block gathers its halo from
    many chunks, and reaches into the padding."""
    rng = np.random.default_rng(size)
    sp = (23,) * nsp
    x = rng.standard_normal((2, 3) + sp)
    w = rng.standard_normal((4, 3) + (5,) * nsp)
    dx_chunks = (1, 3) + (size,) * nsp
    f_np, gi_np, gw_np, f_da, gi_da, gw_da = _funcs(nsp)
    for kw in (dict(padding="same", dilation=3), dict(stride=2, padding=7, dilation=3),
               dict(stride=3, padding=2, dilation=3)):
        y = f_np(x, w, **kw)
        got = f_da(da.from_array(x, chunks=dx_chunks), w, **kw)
        assert max(got.chunks[-1]) <= size + 7 and len(got.chunks[-1]) > 1
        np.testing.assert_allclose(got.compute(), y, rtol=1e-12, atol=1e-12)
        g = rng.standard_normal(y.shape)
        gch = (1, 4) + (size,) * nsp
        np.testing.assert_allclose(gi_da(x.shape, w, da.from_array(g, chunks=gch), **kw)
                                   .compute(), gi_np(x.shape, w, g, **kw),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw_da(da.from_array(x, chunks=dx_chunks), w.shape,
                                         da.from_array(g, chunks=gch), **kw).compute(),
                                   gw_np(x, w.shape, g, **kw), rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("method", ["direct", "gemm", "fft", "winograd"])
@pytest.mark.parametrize("nsp", [1, 2])
def test_forced_methods_on_spatial_chunks(nsp, method):
    """A forced method runs every block of a spatial chunking (without
    padding) and applies to the blocks where it applies to the call: float64,
    against the NumPy call with the same method.  The FFT's and Winograd's
    error bounds (docs/design.md) are below 1e-12 of the terms' size here; a
    wrong halo errs by the size of a term."""
    rng = np.random.default_rng(13)
    sp = (29,) * nsp
    x = rng.standard_normal((2, 4) + sp)
    w = rng.standard_normal((8, 4) + (3,) * nsp)
    chunks = (1, 4) + (7,) * nsp
    f_np, gi_np, gw_np, f_da, gi_da, gw_da = _funcs(nsp)
    kw = dict(padding="same", method=method)
    y = f_np(x, w, padding="same")
    g = rng.standard_normal(y.shape)
    dx, dg = da.from_array(x, chunks=chunks), da.from_array(g, chunks=(1, 8) + chunks[2:])
    assert f_da(dx, w, **dict(kw, method="auto")).chunks[-1] == (8, 7, 7, 7)  # 1: only a halo
    scale = np.abs(x).max() * np.abs(w).max() * 4 * 3**nsp + np.abs(g).max() * np.abs(
        w).max() * 8 * 3**nsp + np.abs(x).max() * np.abs(g).max() * g[0, 0].size
    compared = 0
    for build, numpy_call in ((lambda: f_da(dx, w, **kw), lambda: f_np(x, w, **kw)),
                              (lambda: gi_da(x.shape, w, dg, **kw),
                               lambda: gi_np(x.shape, w, g, **kw)),
                              (lambda: gw_da(dx, w.shape, dg, **kw),
                               lambda: gw_np(x, w.shape, g, **kw))):
        want = _numpy_or_error(numpy_call)
        if isinstance(want, Exception):    # Winograd: 2-D only, and no weight gradient
            with pytest.raises(type(want)) as e:
                build()
            assert str(e.value) == str(want)
            continue
        np.testing.assert_allclose(build().compute(), want, rtol=0, atol=1e-12 * scale)
        compared += 1
    assert compared == (0 if (nsp, method) == (1, "winograd") else
                        2 if method == "winograd" else 3)


def test_input_grad_blocks_no_window_touches_are_zero():
    """Stride 3 with a 1-tap kernel reads one row in three: the input
    gradient's blocks between them are zeros, made without the engine."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((2, 2, 1, 1))
    g = rng.standard_normal((1, 2, 4, 4))
    dg = da.from_array(g, chunks=(1, 2, 1, 1))
    got = cd.conv2d_input_grad((1, 2, 10, 10), w, dg, stride=3, padding=1)
    want = convx.conv2d_input_grad((1, 2, 10, 10), w, g, stride=3, padding=1)
    assert got.chunks[2:] == ((2, 3, 3, 2), (2, 3, 3, 2))   # at 3*o - 1 for o = 1, 2, 3
    assert np.array_equal(got.compute(), want)
    read = [2, 5, 8]     # rows 3*o - 1 (and -1, in the padding)
    assert want[:, :, read][:, :, :, read].all()
    assert not np.delete(want, read, axis=2).any() and not np.delete(want, read, axis=3).any()


# --------------------------------------------------------------------------
# Batch and channel chunkings: the NumPy call's bits
# --------------------------------------------------------------------------

BIT_CASES = [
    # (nsp, x_shape, w_shape, kw, methods)
    (2, (5, 6, 12, 11), (8, 6, 3, 3), dict(padding=1), ("gemm", "direct")),
    (2, (4, 6, 13, 10), (6, 2, 3, 2), dict(stride=2, padding=(1, 0), groups=3), ("gemm",)),
    (2, (3, 4, 9, 9), (8, 1, 3, 3), dict(padding="same", dilation=2, groups=4),
     ("gemm", "direct")),
    (2, (6, 16, 14, 14), (32, 16, 3, 3), dict(stride=(1, 2), padding=1), ("gemm", "direct")),
    (1, (7, 4, 40), (6, 4, 5), dict(padding="same", dilation=3), ("gemm", "direct")),
    (1, (5, 6, 33), (6, 2, 4), dict(stride=3, padding=2, groups=3), ("gemm",)),
]


def _numpy_or_error(f, *args, **kw):
    """The NumPy call's result, or the error it raises (a forced method
    that does not apply to this pass)."""
    try:
        return f(*args, **kw)
    except convx.ConvxValueError as e:
        assert "does not apply" in str(e)
        return e


def _same(got_build, want, compare):
    """``compare(dask result, want)``; where the NumPy call refused, convx.dask
    refuses at build time with the same error."""
    if isinstance(want, Exception):
        with pytest.raises(type(want)) as e:
            got_build()
        assert str(e.value) == str(want)
        return 0
    compare(got_build().compute(), want)
    return 1


@pytest.mark.parametrize("case", BIT_CASES, ids=lambda c: f"{c[0]}d-{c[1]}-{c[3]}")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_batch_and_channel_chunkings_give_the_numpy_bits(case, dtype):
    nsp, x_shape, w_shape, kw, methods = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    f_np, gi_np, gw_np, f_da, gi_da, gw_da = _funcs(nsp)

    def equal(got, want):
        assert got.dtype == want.dtype and np.array_equal(got, want)

    for method in methods:
        y = f_np(x, w, b, method=method, **kw)
        g = rng.standard_normal(y.shape).astype(dtype)
        dx = _numpy_or_error(gi_np, x.shape, w, g, method=method, **kw)
        dw = _numpy_or_error(gw_np, x, w.shape, g, method=method, **kw)
        bound = ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), **_rk(nsp, w.shape, kw))
        compared = 0
        for _ in range(3):
            xc = (random_chunks(rng, x_shape[0]), random_chunks(rng, x_shape[1])) + x_shape[2:]
            gc = (random_chunks(rng, y.shape[0]), random_chunks(rng, y.shape[1])) + y.shape[2:]
            got = f_da(da.from_array(x, chunks=xc), da.from_array(w, chunks=1),
                       da.from_array(b, chunks=1), method=method, **kw)
            assert got.chunks[0] == xc[0] and len(got.chunks[1]) == 1
            equal(got.compute(), y)
            compared += _same(functools.partial(gi_da, x.shape, w, da.from_array(g, chunks=gc),
                                                method=method, **kw), dx, equal)
            compared += _same(functools.partial(gw_da, da.from_array(x, chunks=xc), w.shape,
                                                da.from_array(g, chunks=gc), method=method, **kw),
                              dw, functools.partial(assert_close, bound=bound,
                                                    nterms=g[:, 0].size, dtype=dtype))
        assert compared >= 3


def _rk(nsp, w_shape, kw):
    st, pads, dil = convx._api._geometry("t", nsp, w_shape[2:], kw.get("stride", 1),
                                         kw.get("padding", 0), kw.get("dilation", 1))
    return dict(stride=st, pads=pads, dilation=dil, groups=kw.get("groups", 1))


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.uint8])
def test_dtypes_follow_the_numpy_api(dtype):
    """float16 computes in float32 and returns float16; integers return
    float64; with batch chunks, the NumPy call's bits."""
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((4, 3, 9, 9)) * 4).astype(dtype)
    w = (rng.standard_normal((5, 3, 3, 3)) * 4).astype(dtype)
    g = (rng.standard_normal((4, 5, 9, 9)) * 4).astype(dtype)
    kw = dict(padding=1, method="gemm")
    for got, want in ((cd.conv2d(da.from_array(x, chunks=(1, 2, 9, 9)), w, **kw),
                       convx.conv2d(x, w, **kw)),
                      (cd.conv2d_input_grad(x.shape, w, da.from_array(g, chunks=(3, 5, 9, 9)),
                                            **kw),
                       convx.conv2d_input_grad(x.shape, w, g, **kw))):
        assert got.dtype == want.dtype and got.compute().dtype == want.dtype
        assert np.array_equal(got.compute(), want)
    got = cd.conv2d_weight_grad(da.from_array(x, chunks=(1, 3, 4, 5)), w.shape,
                                da.from_array(g, chunks=(2, 5, 9, 9)), **kw)
    want = convx.conv2d_weight_grad(x, w.shape, g, **kw)
    assert got.dtype == want.dtype and got.compute().dtype == want.dtype
    np.testing.assert_allclose(got.compute().astype(np.float64), want, rtol=2e-3 if dtype is
                               np.float16 else 1e-13)


# --------------------------------------------------------------------------
# What the functions take and give
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_signatures_are_the_numpy_apis(name):
    # names, kinds and defaults (the annotations differ: dask arrays in and out)
    def parameters(function):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(function).parameters.values()]
    assert parameters(getattr(cd, name)) == parameters(getattr(convx, name))


def test_importing_convx_does_not_import_dask():
    code = ("import convx, sys; "
            "assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules), "
            "sorted(m for m in sys.modules if 'dask' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_numpy_inputs_give_lazy_dask_arrays(build_only):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 8, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    y = cd.conv2d(x, w, b, padding=1)
    dx = cd.conv2d_input_grad(x.shape, w, np.ones((2, 4, 8, 7)), padding=1)
    dw = cd.conv2d_weight_grad(x, w.shape, np.ones((2, 4, 8, 7)), padding=1)
    y1 = cd.conv1d(x[:, :, 0], w[:, :, 0], b)
    for a in (y, dx, dw, y1):
        assert isinstance(a, da.Array)
    assert y.chunks == ((2,), (4,), (8,), (7,)) and dx.chunks == ((2,), (3,), (8,), (7,))
    with dask.config.set(scheduler="sync"):
        assert np.array_equal(y.compute(), convx.conv2d(x, w, b, padding=1))
        assert np.array_equal(y1.compute(), convx.conv1d(x[:, :, 0], w[:, :, 0], b))
        assert np.array_equal(dx.compute(), convx.conv2d_input_grad(
            x.shape, w, np.ones((2, 4, 8, 7)), padding=1))
        np.testing.assert_allclose(dw.compute(), convx.conv2d_weight_grad(
            x, w.shape, np.ones((2, 4, 8, 7)), padding=1), rtol=1e-13)


@pytest.mark.parametrize("nsp", [1, 2])
def test_unbatched_input(nsp):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3,) + (11,) * nsp)
    w = rng.standard_normal((4, 3) + (3,) * nsp)
    f_np, f_da = getattr(convx, f"conv{nsp}d"), getattr(cd, f"conv{nsp}d")
    want = f_np(x, w, stride=2, padding=1)
    got = f_da(da.from_array(x, chunks=(2,) + (4,) * nsp), w, stride=2, padding=1)
    assert got.shape == want.shape == (4,) + (6,) * nsp
    np.testing.assert_allclose(got.compute(), want, rtol=1e-13, atol=1e-13)


def test_empty_batch_and_channels():
    w = np.ones((4, 3, 3, 3))
    x = da.zeros((0, 3, 8, 8), chunks=(0, 3, 4, 4))
    assert cd.conv2d(x, w).compute().shape == (0, 4, 6, 6)
    dw = cd.conv2d_weight_grad(x, w.shape, da.zeros((0, 4, 6, 6), chunks=(0, 4, 3, 3)))
    assert np.array_equal(dw.compute(), np.zeros(w.shape))
    y = cd.conv2d(da.ones((2, 0, 5, 5), chunks=(1, 0, 2, 2)), np.ones((3, 0, 2, 2)))
    assert np.array_equal(y.compute(), np.zeros((2, 3, 4, 4)))


def test_graph_names_are_deterministic():
    x = da.ones((2, 3, 10, 10), chunks=(1, 3, 5, 5))
    w = np.ones((2, 3, 3, 3))
    assert cd.conv2d(x, w).name == cd.conv2d(x, w).name != cd.conv2d(x, w, padding=1).name


# --------------------------------------------------------------------------
# Errors: the NumPy API's, at graph-building time
# --------------------------------------------------------------------------

def _bad_calls():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 9, 9))
    w = rng.standard_normal((6, 4, 3, 3))
    g = rng.standard_normal((2, 6, 7, 7))
    x1, w1, g1 = x[:, :, 0], w[:, :, 0], g[:, :, 0]
    return [
        ("conv2d", (x[0, 0], w), {}),                                    # 2-D input
        ("conv2d", (x, w[0]), {}),                                       # 3-D weight
        ("conv2d", (x.astype(np.float32), w), {}),                       # dtypes differ
        ("conv2d", (x.astype(np.complex128), w.astype(np.complex128)), {}),
        ("conv2d", (x, w), dict(groups=3)),
        ("conv2d", (x, w), dict(groups=2)),                              # weight's channels
        ("conv2d", (x, w), dict(stride=0)),
        ("conv2d", (x, w), dict(stride=(1, 2, 3))),
        ("conv2d", (x, w), dict(stride="2")),
        ("conv2d", (x, w), dict(padding="same", stride=2)),
        ("conv2d", (x, w), dict(padding="full")),
        ("conv2d", (x, w), dict(padding=-1)),
        ("conv2d", (x, w), dict(dilation=5)),                            # kernel too large
        ("conv2d", (x, w, np.ones(5)), {}),                              # bias shape
        ("conv2d", (x, w, np.ones(6, np.float32)), {}),                  # bias dtype
        ("conv2d", (x, w), dict(method="bogus")),
        ("conv2d", (x, w), dict(method=3)),
        ("conv2d", (x, np.ones((6, 4, 7, 7))), dict(method="winograd")),  # does not apply
        ("conv2d", (x, np.ones((6, 4, 0, 3))), {}),                      # empty kernel
        ("conv1d", (x1, w1), dict(padding=(1, 1))),
        ("conv1d", (x1, w1), dict(stride=(True,))),
        ("conv1d", (x1[0, 0], w1), {}),
        ("conv2d_input_grad", (x.shape, w, g), dict(stride=2, padding=2)),  # gout shape
        ("conv2d_input_grad", ((2, 4, 9), w, g), {}),
        ("conv2d_input_grad", ([2, 4, 9, "9"], w, g), {}),
        ("conv2d_input_grad", ((2, 4, 9, -9), w, g), {}),
        ("conv2d_input_grad", (x.shape, w, g.astype(np.float32)), {}),
        ("conv2d_input_grad", (x.shape, w, g), dict(method="direct", stride=2)),
        ("conv1d_input_grad", (x1.shape, w1, g1[:, :3]), {}),
        ("conv2d_weight_grad", (x, w.shape, g[:, :, :6]), {}),
        ("conv2d_weight_grad", (x, (6, 4, 3), g), {}),
        ("conv2d_weight_grad", (x, (6, 4, 3, 3), g), dict(groups=4)),
        ("conv2d_weight_grad", (x, w.shape, g), dict(method="winograd")),
        ("conv1d_weight_grad", (x1, w1.shape, g1.astype(np.float16)), {}),
        ("conv1d_weight_grad", (x1, (6, 4, 3.0), g1), {}),
    ]


def _to_dask(args):
    return tuple(da.from_array(a, chunks=2) if isinstance(a, np.ndarray) else a for a in args)


@pytest.mark.parametrize("call", _bad_calls(), ids=lambda c: f"{c[0]}-{sorted(c[2])}")
def test_errors_are_the_numpy_apis_at_build_time(call, build_only):
    name, args, kw = call
    with pytest.raises((convx.ConvxValueError, convx.ConvxTypeError)) as want:
        getattr(convx, name)(*args, **kw)
    for form in (_to_dask(args), args):   # dask arrays, and NumPy arrays given to convx.dask
        with pytest.raises(type(want.value)) as got:
            getattr(cd, name)(*form, **kw)
        assert str(got.value) == str(want.value)


@pytest.mark.parametrize("name", NAMES)
def test_non_arrays_are_refused_naming_the_argument(name, build_only):
    nsp = 1 if "1d" in name else 2
    x, w = np.ones((1, 2) + (5,) * nsp), np.ones((3, 2) + (2,) * nsp)
    g = np.ones((1, 3) + (4,) * nsp)
    if name.endswith("input_grad"):
        args, which = (x.shape, w, g.tolist()), "grad_output"
    elif name.endswith("weight_grad"):
        args, which = (x.tolist(), w.shape, g), "input"
    else:
        args, which = (x, w.tolist()), "weight"
    with pytest.raises(convx.ConvxTypeError,
                       match=rf"^{name}\(\): argument '{which}' must be a dask.array.Array or a "
                             r"numpy.ndarray of shape .*, got list"):
        getattr(cd, name)(*args)


def test_masked_arrays_are_refused(build_only):
    x = np.ma.masked_array(np.ones((1, 1, 4, 4)), mask=False)
    for a in (x, da.from_array(x, chunks=2, asarray=False)):
        with pytest.raises(convx.ConvxTypeError, match="conv2d.*'input' is a masked array"):
            cd.conv2d(a, np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_chunk_sizes_are_refused(name, build_only):
    nsp = 1 if "1d" in name else 2
    x, w = da.ones((4, 2) + (5,) * nsp, chunks=2), np.ones((3, 2) + (2,) * nsp)
    g = da.ones((4, 3) + (4,) * nsp, chunks=2)
    keep = da.from_array(np.array([True, False, True, True]), chunks=2)
    if name.endswith("input_grad"):
        args, which = ((3, 2) + (5,) * nsp, w, g[keep]), "grad_output"
    elif name.endswith("weight_grad"):
        args, which = (x[keep], w.shape, g[:3]), "input"
    else:
        args, which = (x[keep], w), "input"
    with pytest.raises(convx.ConvxValueError,
                       match=rf"^{name}\(\): argument '{which}' has unknown \(NaN\) chunk sizes "
                             r"along axis 0.*compute_chunk_sizes\(\)"):
        getattr(cd, name)(*args)


@pytest.mark.parametrize("value, error", [(0, convx.ConvxValueError), (-1, convx.ConvxValueError),
                                          (10**6, convx.ConvxValueError),
                                          ("2", convx.ConvxTypeError),
                                          (1.0, convx.ConvxTypeError),
                                          (True, convx.ConvxTypeError)])
def test_threads_per_task_config_is_checked(value, error, build_only):
    with (
        dask.config.set({"convx.threads-per-task": value}),
        pytest.raises(error, match=r"^conv2d\(\): dask config 'convx.threads-per-task' "
                                   r"must be an int from 1 to \d+"),
    ):
        cd.conv2d(da.ones((1, 1, 4, 4), chunks=2), np.ones((1, 1, 2, 2)))


def test_docstring_examples_run():
    import doctest
    result = doctest.testmod(cd, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 12 and result.failed == 0, result


# --------------------------------------------------------------------------
# Schedulers and threads
# --------------------------------------------------------------------------

def _big_case():
    """Blocks of 1 image of (16, 48, 48) through 32 3x3 filters: 10.6M
    multiply-adds each, past _threads._PARALLEL_MIN_MACS (4.2M), so that
    convx would run each on every core were it not for the task limit."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 16, 48, 48)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    g = rng.standard_normal((4, 32, 48, 48)).astype(np.float32)
    assert 16 * 9 * 32 * 48 * 48 >= 2 * convx._threads._PARALLEL_MIN_MACS
    return x, w, g


def _assert_big_case(x, w, g, y, gx, gw):
    """The three passes of _big_case, computed in blocks, against the NumPy
    calls, within the float32 bound of their sums of magnitudes."""
    pads = (1, 1, 1, 1)
    assert_close(y, convx.conv2d(x, w, padding=1),
                 ref.conv_nd(np.abs(x), np.abs(w), pads=pads), w[0].size, F32)
    assert_close(gx, convx.conv2d_input_grad(x.shape, w, g, padding=1),
                 ref.conv_nd_input_grad(x.shape, np.abs(w), np.abs(g), pads=pads), 32 * 9, F32)
    assert_close(gw, convx.conv2d_weight_grad(x, w.shape, g, padding=1),
                 ref.conv_nd_weight_grad(np.abs(x), w.shape, np.abs(g), pads=pads),
                 g[:, 0].size, F32)


def _threaded_machine():
    if convx._threads._cpus() < 2 or not convx._core.openmp_enabled():
        pytest.skip("needs 2 CPUs and OpenMP to tell one thread from several")


def test_threaded_scheduler(default_threads):
    x, w, g = _big_case()
    dx = da.from_array(x, chunks=(1, 16, 24, 48))
    dg = da.from_array(g, chunks=(2, 32, 48, 17))
    with dask.config.set(scheduler="threads", num_workers=2):
        y, gx, gw = dask.compute(cd.conv2d(dx, w, padding=1),
                                 cd.conv2d_input_grad(x.shape, w, dg, padding=1),
                                 cd.conv2d_weight_grad(dx, w.shape, dg, padding=1))
    _assert_big_case(x, w, g, y, gx, gw)


@pytest.mark.parametrize("per_task", [None, 1, 2])
def test_threads_per_task_as_convx_counts_them(per_task, default_threads):
    """convx's own record of the threads it chose in each task: 1 by default
    (and never more than the config key says), while the global count stays
    at every core."""
    _threaded_machine()
    x, w, g = _big_case()
    dx = da.from_array(x, chunks=(1, 16, 48, 48))
    dg = da.from_array(g, chunks=(1, 32, 48, 48))
    config = {} if per_task is None else {"convx.threads-per-task": per_task}
    with dask.config.set(config):
        graphs = (cd.conv2d(dx, w, padding=1), cd.conv2d_input_grad(x.shape, w, dg, padding=1),
                  cd.conv2d_weight_grad(dx, w.shape, dg, padding=1))
    cd.reset_threads_used()
    with dask.config.set(scheduler="threads", num_workers=2):
        dask.compute(*graphs)
    assert cd.threads_used() == {per_task or 1: 3 * 4}
    assert convx.get_num_threads() == convx._threads._cpus() >= 2
    assert convx._core.user_threads() == 0


@pytest.fixture
def environ_kept():
    """distributed's nanny sets its pre-spawn variables (OMP_NUM_THREADS=1,
    ...) in the process that runs it, here the test's: put the environment
    back as it was for the tests that follow."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.slow
def test_local_cluster(default_threads, environ_kept):
    """Two worker processes of one thread each: the results, the threads
    convx used in their tasks (1, from convx's own record; the config key's
    count when it is set), and the global setting, untouched.

    distributed starts its workers with OMP_NUM_THREADS=1 unless told
    otherwise, which would make convx use one thread there anyway; the test
    unsets it, so that the workers' default is every core (as in this
    process) and the count of 1 is the task limit's doing."""
    distributed = optional("distributed")
    x, w, g = _big_case()
    dx = da.from_array(x, chunks=(1, 16, 24, 48))   # output rows 25 + 23: blocks >= 5M
    dg = da.from_array(g, chunks=(2, 32, 48, 48))
    with dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": None}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(cd.reset_threads_used)
        y, gx, gw = dask.compute(cd.conv2d(dx, w, padding=1),
                                 cd.conv2d_input_grad(x.shape, w, dg, padding=1),
                                 cd.conv2d_weight_grad(dx, w.shape, dg, padding=1))
        used = client.run(cd.threads_used)
        default = client.run(convx.get_num_threads)
        client.run(cd.reset_threads_used)
        # (the key takes at most the CPUs this process may use)
        with dask.config.set({"convx.threads-per-task": max(thread_counts(1, 2))}):
            more = cd.conv2d(dx, w, padding=1)
        assert_close(more.compute(), y, ref.conv_nd(np.abs(x), np.abs(w), pads=(1, 1, 1, 1)),
                     w[0].size, F32)
        used_more = client.run(cd.threads_used)
        user = client.run(convx._core.user_threads)
    assert len(used) == 2 and set(default.values()) == {convx.get_num_threads()}
    assert {n for counts in used.values() for n in counts} == {1}
    # forward: 4 images x 2 blocks of rows; input grad: 2 blocks of 2 images; weight grad:
    # 4 partials (the batch chunks of input and grad_output, refined)
    assert sum(c for counts in used.values() for c in counts.values()) == 8 + 2 + 4
    both = min(2, convx.get_num_threads()) if convx._core.openmp_enabled() else 1
    assert {n for counts in used_more.values() for n in counts} == {both}
    assert set(user.values()) == {0}   # the global setting was never changed
    _assert_big_case(x, w, g, y, gx, gw)


def test_the_thread_record_can_be_read_from_inside_itself():
    """A signal handler or a finalizer that runs while this thread updates
    the record (inside _note) may read or reset it: the lock is re-entrant
    (before, the thread waited on itself forever: 5 hangs in 5 runs).  The
    record's counter stands in for such a handler."""
    import threading

    class Reading(dict):
        def __missing__(self, key):
            seen.append(cd.threads_used())   # what a handler would call, here
            cd.reset_threads_used()
            return 0

    seen = []
    saved = cd._USED
    cd._USED = Reading()
    try:
        th = threading.Thread(target=cd._note, args=(convx._threads._Limit(1),), daemon=True)
        th.start()
        th.join(10)
        assert not th.is_alive(), "the record's lock waited on its own thread"
        assert seen == [{}] and cd.threads_used() == {1: 1}
    finally:
        cd._USED = saved
