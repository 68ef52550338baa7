"""Awkward but valid input gives the right answer, through the public API and the notebook names.

Every case is compared with the NumPy reference of tests/test_fuzz.py (its
``Ref``: taps of strided slices of an ``np.pad``-ed array), with the result's
type, shape and documented dtype checked exactly:

* geometry: batch 0; 0 input and/or output channels; 1x1 kernels (plain, and
  strided over padding); a kernel exactly as large as the padded input (output
  1x1), dilated too;
* layout: Fortran order, negative strides, strided slices of a larger
  NaN-filled buffer, stride-0 broadcast weights (and everything broadcast),
  big-endian arrays (all of them, or only the input), read-only arrays, and
  all of these at once;
* dtype: float32 and float64 keep their dtype; float16 and integer inputs
  give the documented result dtype.  Public API: float16 computes in float32
  and returns float16, integers return float64.  Notebook names
  (docs/notebook.md, 'Result dtypes'): float16 computes and returns float64;
  integer arrays give float64 from the forwards built on ``np.zeros(shape)``,
  the ``zeros_like(arg)`` dtype from the others, int64 from the 1-D pads and
  float64 from the 2-D pads.

On every call the inputs are snapshotted (copy, dtype, shape, strides,
writeable flag) and checked unchanged with ``np.array_equal`` afterwards, and
the result must not share memory with any input.
"""
import importlib.util
import pathlib
import sys
import zlib

import numpy as np
import pytest

import convx


def _load_fuzz():
    # --import-mode=importlib puts nothing on sys.path: load the sibling file
    # that holds the reference and the notebook-layout tables.
    name = "_convx_tests_fuzz"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, pathlib.Path(__file__).with_name("test_fuzz.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


fz = _load_fuzz()

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
FLOATS = ("float64", "float32")
ALL_DTYPES = ("float64", "float32", "float16", "int64", "int32")
PLAIN = ("C", False, False)  # (layout, big-endian, read-only)


# --------------------------------------------------------------------------
# Scenarios: (geometry overrides for the public API, for the notebook names,
# styles by array role (x, w, b, g; the notebook's param is w), dtypes)
# --------------------------------------------------------------------------

def _styles(default=PLAIN, **roles):
    return lambda role: roles.get(role, default)


NOT_FOR_NOTEBOOK = None  # geometry that only the public API can express

SCENARIOS = {
    # geometry
    "batch0": (dict(n=0), dict(n=0), _styles(), ALL_DTYPES),
    "in_channels0": (dict(c_in=0), dict(c_in=0), _styles(), ALL_DTYPES),
    "out_channels0": (dict(c_out=0), dict(c_out=0), _styles(), ALL_DTYPES),
    "channels0": (dict(c_in=0, c_out=0), dict(c_in=0, c_out=0), _styles(), ALL_DTYPES),
    "kernel1x1": (dict(kernel=(1, 1)), dict(kernel=(1, 1)), _styles(), ALL_DTYPES),
    "kernel1x1_strided_padded": (dict(kernel=(1, 1), stride=(2, 3), padding=(1, 2)),
                                 NOT_FOR_NOTEBOOK, _styles(), FLOATS),
    # public: 5x4 padded by 1 is 7x6, the kernel's size; notebook ('same'
    # padding, k - 1 zeros in all): only a 1x1 image is as large as the kernel
    "kernel_equals_padded_input": (dict(size=(5, 4), padding=(1, 1), kernel=(7, 6),
                                        dilation=(1, 1)),
                                   dict(size=(1, 1), kernel=(5, 4)), _styles(), ALL_DTYPES),
    "dilated_kernel_equals_padded_input": (dict(size=(5, 4), padding=(1, 1), kernel=(3, 2),
                                                dilation=(3, 5)),
                                           NOT_FOR_NOTEBOOK, _styles(), FLOATS),
    "default": ({}, {}, _styles(), ALL_DTYPES + ("uint8",)),
    # layout
    "fortran": ({}, {}, _styles(("F", False, False)), FLOATS),
    "negative_strides": ({}, {}, _styles(("neg", False, False)), FLOATS),
    "strided_slices": ({}, {}, _styles(("slice", False, False)), FLOATS),
    "broadcast_weight": ({}, {}, _styles(w=("bcast", False, False)), FLOATS),
    "broadcast_everything": ({}, {}, _styles(("bcast", False, False)), FLOATS),
    "big_endian": ({}, {}, _styles(("C", True, False)), FLOATS),
    "read_only": ({}, {}, _styles(("C", False, True)), FLOATS),
    "all_at_once": ({}, {}, _styles(x=("neg", True, True), w=("bcast", True, True),
                                    b=("slice", True, True), g=("F", True, True)), FLOATS),
    # a big-endian input with native weights (and gradients): one float64
    # (or float32) value type in two byte orders
    "big_endian_input_only": ({}, {}, _styles(x=("C", True, False)), FLOATS),
}


def values_kind(dtype):
    """Small integers for integer dtypes (exact everywhere: -3..3, or 0..3 when
    unsigned), normal floats otherwise."""
    return {"i": "int", "u": "nat"}.get(np.dtype(dtype).kind, "normal")


def make(rng, shape, dtype, style):
    dtype = np.dtype(dtype)
    return fz.make_array(rng, shape, dtype, *style, kind=values_kind(dtype))


def check_result(got, want, bound, nterms, result_dtype, compute, what):
    if result_dtype.kind in "iu" or compute.kind in "iu":
        assert isinstance(got, np.ndarray) and got.dtype == result_dtype, (
            f"{what}: {type(got).__name__} of dtype {getattr(got, 'dtype', None)}, "
            f"expected {result_dtype}")
        assert got.shape == want.shape and np.array_equal(got, want), f"{what}: {got} != {want}"
    else:
        fz.assert_close(got, want, bound, nterms, result_dtype, what, compute=compute)
    assert got.flags.writeable, f"{what}: the result is not writable"


# --------------------------------------------------------------------------
# The public API
# --------------------------------------------------------------------------

PUBLIC_DEFAULT = dict(n=2, c_in=4, c_out=6, groups=2, size=(5, 6), kernel=(3, 2),
                      stride=(1, 2), padding=(1, 0), dilation=(2, 1))


def public_result_dtype(dtype):
    """float16 -> float16 (computed in float32), integers -> float64."""
    dtype = np.dtype(dtype)
    if dtype == F16:
        return F16, F32
    if dtype.kind in "iu":
        return F64, F64
    return dtype, dtype


def public_cases():
    out = []
    for func in ("conv1d", "conv2d", "conv1d_input_grad", "conv2d_input_grad",
                 "conv1d_weight_grad", "conv2d_weight_grad"):
        for scn, (_, _, _, dtypes) in SCENARIOS.items():
            for dt in dtypes:
                out.append(pytest.param(func, scn, dt, id=f"{func}-{scn}-{dt}"))
    return out


@pytest.mark.parametrize("func, scenario, dtype", public_cases())
def test_public_api(func, scenario, dtype):
    geo_over, _, styles, _ = SCENARIOS[scenario]
    geo = dict(PUBLIC_DEFAULT, **geo_over)
    nsp = 1 if func.startswith("conv1d") else 2
    axes = slice(2 - nsp, 2)  # 1-D takes the width axis of the 2-D geometry
    size, kernel = geo["size"][axes], geo["kernel"][axes]
    stride, padding, dilation = geo["stride"][axes], geo["padding"][axes], geo["dilation"][axes]
    pads = [(p, p) for p in padding]
    o = fz.out_shape(size, kernel, stride, pads, dilation)
    assert o is not None
    if scenario.startswith(("kernel_equals", "dilated_kernel_equals")):
        assert o == (1,) * nsp

    rng = np.random.default_rng(zlib.crc32(repr((func, scenario, dtype)).encode()))
    g_ = geo["groups"]
    x_shape = (geo["n"], geo["c_in"]) + size
    w_shape = (geo["c_out"], geo["c_in"] // g_) + kernel
    y_shape = (geo["n"], geo["c_out"]) + o
    x = make(rng, x_shape, dtype, styles("x"))
    w = make(rng, w_shape, dtype, styles("w"))
    b = make(rng, (geo["c_out"],), dtype, styles("b"))
    g = make(rng, y_shape, dtype, styles("g"))
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=g_)
    result_dtype, compute = public_result_dtype(dtype)
    ref = fz.Ref(x, w, g, b, stride, pads, dilation, g_)

    f = getattr(convx, func)
    if func in ("conv1d", "conv2d"):
        args, want, bound, nterms = (x, w, b), ref.y, ref.y_abs, ref.n_y
    elif func.endswith("input_grad"):
        args, want, bound, nterms = (x_shape, w, g), ref.dx, ref.dx_abs, ref.n_dx
    else:
        args, want, bound, nterms = (x, w_shape, g), ref.dw, ref.dw_abs, ref.n_dw
    keep = fz.Unchanged(*args)
    got = f(*args, **kw)
    keep.check(got)
    check_result(got, want, bound, nterms, result_dtype, compute, func)


# --------------------------------------------------------------------------
# The notebook names
# --------------------------------------------------------------------------

NB_DEFAULT = dict(n=2, c_in=3, c_out=2, size=(5, 6), kernel=(3, 2))
NB_DEFAULT_1D = dict(size=(7,), kernel=(4,))

FLOAT_FORWARDS = {"conv_1d", "conv_1d_batch", "_compute_output_obs", "_output"}
# names that accumulated into np.zeros_like(<role>)
LIKE = {"_input_grad_1d": "x", "_param_grad_1d": "w", "input_grad_1d_batch": "x",
        "param_grad_1d_batch": "w", "_compute_output_obs_2d": "x", "_compute_output_2d": "x",
        "_compute_grads_obs_2d": "x", "_compute_grads_2d": "x", "_param_grad_2d": "w",
        "_compute_grads_obs": "x", "_input_grad": "x", "_param_grad": "w"}
SUM_OF = {"conv_1d_sum": "conv_1d", "conv_1d_batch_sum": "conv_1d_batch",
          "_compute_output_2d_sum": "_compute_output_2d", "_compute_output_sum": "_output"}
assert set(fz.NB_NAMES) == FLOAT_FORWARDS | set(LIKE) | set(SUM_OF)


def nb_float(arrays):
    """float32 when the arguments promote to float32, else float64 (float16 and ints too)."""
    return F32 if np.result_type(*arrays) == F32 else F64


def nb_result_dtype(name, roles, arrays):
    if name in SUM_OF:
        return np.zeros(1, nb_result_dtype(SUM_OF[name], roles, arrays)).sum().dtype
    if name in LIKE and all(a.dtype.kind in "iu" for a in arrays):
        return roles[LIKE[name]].dtype
    return nb_float(arrays)


def nb_applies(kind, scenario):
    geo = SCENARIOS[scenario][1]
    if geo is NOT_FOR_NOTEBOOK:
        return False
    if "n" in geo and "N" not in fz.NB_KINDS[kind][0]:
        return False
    return kind.startswith("ch") or ("c_in" not in geo and "c_out" not in geo)


def notebook_cases():
    out = []
    for name, (kind, _) in fz.NB_NAMES.items():
        for scn, (_, _, _, dtypes) in SCENARIOS.items():
            if not nb_applies(kind, scn):
                continue
            for dt in dtypes:
                if dt == "uint8":  # zeros_like(uint8) would wrap: not a case to pin down
                    continue
                out.append(pytest.param(name, scn, dt, id=f"{name}-{scn}-{dt}"))
    return out


@pytest.mark.parametrize("name, scenario, dtype", notebook_cases())
def test_notebook_name(name, scenario, dtype):
    kind, pass_ = fz.NB_NAMES[name]
    _, geo_over, styles, _ = SCENARIOS[scenario]
    nsp = fz.NB_KINDS[kind][2]
    geo = dict(NB_DEFAULT, **(NB_DEFAULT_1D if nsp == 1 else {}))
    geo.update({k: (v[-1:] if nsp == 1 and k in ("size", "kernel") else v)
                for k, v in geo_over.items()})
    x_shape, p_shape, y_shape = fz.nb_shapes(kind, geo["n"], geo["c_in"], geo["c_out"],
                                             geo["size"], geo["kernel"])
    if scenario == "kernel_equals_padded_input":
        assert y_shape[-nsp:] == (1,) * nsp

    rng = np.random.default_rng(zlib.crc32(repr((name, scenario, dtype)).encode()))
    x = make(rng, x_shape, dtype, styles("x"))
    p = make(rng, p_shape, dtype, styles("w"))
    if kind == "1d_batch":
        g, g_ref = None, np.ones(y_shape)  # these differentiate conv_1d_batch_sum
    else:
        g = g_ref = make(rng, y_shape, dtype, styles("g"))
    args = [a for a in (x, p, g) if a is not None]
    result_dtype = nb_result_dtype(name, dict(x=x, w=p), args)
    compute = nb_float(args)
    ref = fz.nb_reference(kind, x, p, g_ref)

    def back(a, what="x"):
        return fz.nb_from_canonical(kind, a, what)

    keep = fz.Unchanged(*args)
    got = fz.nb_call(name, x, p, g)
    keep.check(got)
    if pass_ == "sum":
        if result_dtype.kind in "iu":
            assert np.ndim(got) == 0 and np.asarray(got).dtype == result_dtype
            assert got == ref.y.sum()
        else:
            fz.assert_sum_close(got, ref.y, ref.y_abs, ref.n_y, result_dtype, name)
        return
    want, bound, nterms = {
        "fwd": (back(ref.y), back(ref.y_abs), ref.n_y),
        "dx": (back(ref.dx), back(ref.dx_abs), ref.n_dx),
        "dw": (back(ref.dw, "w"), back(ref.dw_abs, "w"), ref.n_dw),
    }[pass_]
    check_result(got, want, bound, nterms, result_dtype, compute, name)


# --------------------------------------------------------------------------
# The notebook pads
# --------------------------------------------------------------------------

PAD_SHAPES = dict(N=2, C=3, L=7, H=5, W=6)


def pad_cases():
    out = []
    for name, (axes, _) in fz.PADS.items():
        for scn, (_, geo, _, dtypes) in SCENARIOS.items():
            if geo is NOT_FOR_NOTEBOOK or "kernel" in geo or "c_out" in geo:
                continue
            if ("n" in geo and "N" not in axes) or ("c_in" in geo and "C" not in axes):
                continue
            for dt in dtypes:
                for num in (0, 2):
                    out.append(pytest.param(name, scn, dt, num, id=f"{name}-{scn}-{dt}-num{num}"))
    return out


@pytest.mark.parametrize("name, scenario, dtype, num", pad_cases())
def test_pad(name, scenario, dtype, num):
    axes, spatial = fz.PADS[name]
    _, geo, styles, _ = SCENARIOS[scenario]
    dims = dict(PAD_SHAPES, N=geo.get("n", 2), C=geo.get("c_in", 3))
    shape = tuple(dims[a] for a in axes)
    rng = np.random.default_rng(zlib.crc32(repr((name, scenario, dtype)).encode()))
    x = make(rng, shape, dtype, styles("x"))
    keep = fz.Unchanged(x)
    got = getattr(convx, name)(x, num)
    keep.check(got)
    want_dtype = fz.pad_result_dtype(name, np.dtype(dtype))
    want = np.pad(np.asarray(x), [(0, 0)] * (x.ndim - spatial) + [(num, num)] * spatial)
    assert isinstance(got, np.ndarray) and got.dtype == want_dtype, (got.dtype, want_dtype)
    assert got.shape == want.shape and np.array_equal(got, want.astype(want_dtype))
    assert got.flags.writeable


# --------------------------------------------------------------------------
# The notebook's two shape helpers take the same awkward arrays
# --------------------------------------------------------------------------

def helper_cases():
    out = []
    for scn, (_, geo, _, dtypes) in SCENARIOS.items():
        if geo is NOT_FOR_NOTEBOOK or "kernel" in geo:
            continue
        for dt in dtypes:
            out.append(pytest.param(scn, dt, id=f"{scn}-{dt}"))
    return out


@pytest.mark.parametrize("scenario, dtype", helper_cases())
def test_shape_helpers(scenario, dtype):
    _, geo, styles, _ = SCENARIOS[scenario]
    shape = (geo.get("n", 2), geo.get("c_in", geo.get("c_out", 3)), 5, 6)
    rng = np.random.default_rng(zlib.crc32(repr((scenario, dtype)).encode()))
    a = make(rng, shape, dtype, styles("x"))
    b = make(rng, shape, dtype, styles("g"))
    keep = fz.Unchanged(a, b)
    assert convx.assert_same_shape(a, b) is None
    assert convx.assert_dim(a, 4) is None
    keep.check()


# ---- subclasses of ndarray: np.matrix, np.memmap --------------------------

@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_matrices_compute_as_their_arrays():
    """An np.matrix is always 2-D: as the (C_in, L) input of conv1d it is an
    unbatched signal, and the notebook's batch pads and 2-D helpers take it as
    their 2-D argument.  The results are plain ndarrays, equal to the same
    calls on np.asarray(m); calling twice (the second from the plan cache)
    gives the same."""
    m = np.matrix(np.arange(14.0).reshape(2, 7))
    a = np.asarray(m)
    w = np.arange(12.0).reshape(2, 2, 3)
    for _ in range(2):
        out = convx.conv1d(m, w, padding=1)
        assert type(out) is np.ndarray
        assert np.array_equal(out, convx.conv1d(a, w, padding=1))
        for f in (convx._pad_1d_batch, convx._pad_2d_obs):
            got = f(m, 2)
            assert type(got) is np.ndarray and np.array_equal(got, f(a, 2))
        got = convx.conv_1d_batch(m, np.array([1.0, 2.0, 3.0]))
        assert np.array_equal(got, convx.conv_1d_batch(a, np.array([1.0, 2.0, 3.0])))
        got = convx._compute_output_obs_2d(m, np.matrix([[1.0, 2.0], [3.0, 4.0]]))
        assert np.array_equal(got, convx._compute_output_obs_2d(a, np.array([[1.0, 2.0],
                                                                              [3.0, 4.0]])))
        gm = np.matrix(np.ones((2, 7)))
        assert np.array_equal(convx.conv1d_input_grad((1, 2, 7), w, gm.A[None], padding=1),
                              convx.conv1d_input_grad((1, 2, 7), w, np.ones((1, 2, 7)), padding=1))
    assert np.array_equal(np.asarray(m), a)  # not written to


def test_memmaps_compute_as_their_arrays(tmp_path):
    x = np.arange(2 * 3 * 6 * 5, dtype=np.float32).reshape(2, 3, 6, 5)
    mm = np.memmap(tmp_path / "x.bin", dtype=np.float32, mode="w+", shape=x.shape)
    mm[...] = x
    mm.flush()
    ro = np.memmap(tmp_path / "x.bin", dtype=np.float32, mode="r", shape=x.shape)
    w = np.ones((4, 3, 3, 3), np.float32)
    for _ in range(2):
        out = convx.conv2d(ro, w, padding=1)
        assert type(out) is np.ndarray and np.array_equal(out, convx.conv2d(x, w, padding=1))
        dw = convx.conv2d_weight_grad(ro, w.shape, np.ones((2, 4, 6, 5), np.float32), padding=1)
        assert np.array_equal(dw, convx.conv2d_weight_grad(x, w.shape,
                                                           np.ones((2, 4, 6, 5), np.float32),
                                                           padding=1))
        assert np.array_equal(convx._output(ro, w.transpose(1, 0, 2, 3)),
                              convx._output(x, w.transpose(1, 0, 2, 3)))


def _unaligned(a):
    """A copy of ``a`` over a buffer one byte past an aligned address: its
    values are not aligned to their size (``flags.aligned`` is False)."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = np.frombuffer(buf[1:].data, a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nsp", [1, 2])
def test_unaligned_arrays_compute_as_aligned_copies(nsp, dtype):
    """Arrays whose values sit at odd addresses (np.frombuffer at an offset;
    a dask chunk deserialised on a distributed worker) are copied before the
    kernels see them, which would load them misaligned (UBSan: "load of
    misaligned address"): the same bits as aligned copies, inputs unchanged."""
    rng = np.random.default_rng(3)
    sp = (9, 8)[:nsp] if nsp == 2 else (17,)
    x = rng.standard_normal((2, 4) + sp).astype(dtype)
    w = rng.standard_normal((6, 2) + (3,) * nsp).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    kw = dict(padding=1, groups=2)
    f = {s: getattr(convx, f"conv{nsp}d{s}") for s in ("", "_input_grad", "_weight_grad")}
    y = f[""](x, w, b, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    ux, uw, ub, ug = (_unaligned(a) for a in (x, w, b, g))
    assert convx._validate.as_kernel_input("t", "x", ux, np.dtype(dtype)).flags.aligned
    for method in ("auto", "gemm", "direct"):
        assert np.array_equal(f[""](ux, uw, ub, method=method, **kw),
                              f[""](x, w, b, method=method, **kw))
        assert np.array_equal(f["_input_grad"](x.shape, uw, ug, method=method, **kw),
                              f["_input_grad"](x.shape, w, g, method=method, **kw))
        assert np.array_equal(f["_weight_grad"](ux, w.shape, ug, method=method, **kw),
                              f["_weight_grad"](x, w.shape, g, method=method, **kw))
    assert np.array_equal(convx.conv2d_bias_grad(_unaligned(np.ones((2, 3, 4, 5), dtype))),
                          np.full(3, 40.0, dtype))
    for a, u in ((x, ux), (w, uw), (b, ub), (g, ug)):
        assert np.array_equal(a, u) and not u.flags.aligned
