"""Awkward but valid inputs to every notebook name.

* inputs are never written to (checked after every call in this file);
* read-only inputs work, and the results are fresh writable arrays;
* non-contiguous inputs (steps, transposes, Fortran order, negative strides)
  give exactly the results of contiguous copies;
* big-endian inputs give exactly the results of native ones;
* results never share memory with the inputs;
* zero-length 1-D signals give what the notebook gave (empty outputs, zero
  parameter gradients).
"""
import numpy as np
import pytest

import convx

NOTEBOOK_NAMES = [
    "assert_same_shape", "assert_dim",
    "_pad_1d", "conv_1d", "conv_1d_sum", "_param_grad_1d", "_input_grad_1d",
    "_pad_1d_batch", "conv_1d_batch", "input_grad_1d_batch", "param_grad_1d_batch",
    "conv_1d_batch_sum",
    "_pad_2d", "_pad_2d_obs", "_compute_output_obs_2d", "_compute_output_2d",
    "_compute_grads_obs_2d", "_compute_grads_2d", "_param_grad_2d", "_compute_output_2d_sum",
    "_pad_2d_channel", "_pad_conv_input", "_compute_output_obs", "_output",
    "_compute_grads_obs", "_input_grad", "_param_grad", "_compute_output_sum",
]
NO_KERNEL = {"assert_same_shape", "assert_dim", "_pad_1d", "_pad_1d_batch", "_pad_2d",
             "_pad_2d_obs", "_pad_2d_channel", "_pad_conv_input"}
ARRAY_RESULT = set(NOTEBOOK_NAMES) - {"assert_same_shape", "assert_dim", "conv_1d_sum",
                                      "conv_1d_batch_sum", "_compute_output_2d_sum",
                                      "_compute_output_sum"}

# kernels: an even, non-square one (im2col path) and 1x1 (the core's pointwise
# path, which reads the input buffer directly)
KERNELS = {"k3x2": (3, 2), "k1x1": (1, 1)}
DTYPES = ["float64", "float32", "int64"]


def arg_spec(func, kh, kw):
    """The notebook arguments: a shape tuple for an array, an int for ``num``.
    Images are 4x5 (non-square), 2 input and 3 output channels, batch 2."""
    L, N, H, W, CI, CO = 7, 2, 4, 5, 2, 3
    return {
        "assert_same_shape": [(N, H, W), (N, H, W)],
        "assert_dim": [(N, H, W), 3],
        "_pad_1d": [(L,), 2],
        "_pad_1d_batch": [(N, L), 2],
        "_pad_2d": [(N, H, W), 2],
        "_pad_2d_obs": [(H, W), 2],
        "_pad_2d_channel": [(CI, H, W), 2],
        "_pad_conv_input": [(N, CI, H, W), 2],
        "conv_1d": [(L,), (kh,)],
        "conv_1d_sum": [(L,), (kh,)],
        "_param_grad_1d": [(L,), (kh,), (L,)],
        "_input_grad_1d": [(L,), (kh,), (L,)],
        "conv_1d_batch": [(N, L), (kh,)],
        "input_grad_1d_batch": [(N, L), (kh,)],
        "param_grad_1d_batch": [(N, L), (kh,)],
        "conv_1d_batch_sum": [(N, L), (kh,)],
        "_compute_output_obs_2d": [(H, W), (kh, kw)],
        "_compute_output_2d": [(N, H, W), (kh, kw)],
        "_compute_grads_obs_2d": [(H, W), (H, W), (kh, kw)],
        "_compute_grads_2d": [(N, H, W), (N, H, W), (kh, kw)],
        "_param_grad_2d": [(N, H, W), (N, H, W), (kh, kw)],
        "_compute_output_2d_sum": [(N, H, W), (kh, kw)],
        "_compute_output_obs": [(CI, H, W), (CI, CO, kh, kw)],
        "_output": [(N, CI, H, W), (CI, CO, kh, kw)],
        "_compute_grads_obs": [(CI, H, W), (CO, H, W), (CI, CO, kh, kw)],
        "_input_grad": [(N, CI, H, W), (N, CO, H, W), (CI, CO, kh, kw)],
        "_param_grad": [(N, CI, H, W), (N, CO, H, W), (CI, CO, kh, kw)],
        "_compute_output_sum": [(N, CI, H, W), (CI, CO, kh, kw)],
    }[func]


def make_args(func, dtype, kernel, seed=0):
    kh, kw = KERNELS[kernel]
    rng = np.random.default_rng([11, NOTEBOOK_NAMES.index(func), seed])
    dtype = np.dtype(dtype)
    args = []
    for spec in arg_spec(func, kh, kw):
        if isinstance(spec, int):
            args.append(spec)
        elif dtype.kind == "f":
            args.append(rng.standard_normal(spec).astype(dtype))
        else:
            args.append(rng.integers(-5, 6, size=spec).astype(dtype))
    return args


def call_checked(func, args):
    """Call ``convx.<func>(*args)`` and check that no input was written to."""
    snap = [(a.copy(), a.dtype, a.shape, a.strides, a.flags.writeable)
            if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(convx, func)(*args)
    for a, s in zip(args, snap):
        if isinstance(a, np.ndarray):
            copy, dtype, shape, strides, writeable = s
            assert a.dtype == dtype and a.shape == shape and a.strides == strides
            assert a.flags.writeable == writeable
            assert np.array_equal(a, copy), f"{func}() wrote to an input"
        else:
            assert a == s
    return out


def assert_same_result(got, want, byteorder_free=False):
    if want is None:
        assert got is None
        return
    assert type(got) is type(want)
    got_dt, want_dt = np.asarray(got).dtype, np.asarray(want).dtype
    if byteorder_free:
        got_dt, want_dt = got_dt.newbyteorder("="), want_dt.newbyteorder("=")
    assert got_dt == want_dt
    assert np.shape(got) == np.shape(want)
    assert np.array_equal(got, want)


def cases(layouts=(None,)):
    out = []
    for func in NOTEBOOK_NAMES:
        kernels = ["k3x2"] if func in NO_KERNEL else list(KERNELS)
        for dt in DTYPES:
            for kernel in kernels:
                for layout in layouts:
                    vals = (func, dt, kernel) + ((layout,) if layout else ())
                    out.append(pytest.param(*vals, id="-".join(vals)))
    return out


# --------------------------------------------------------------------------

@pytest.mark.parametrize("func, dt, kernel", cases())
def test_inputs_not_written_and_results_deterministic(func, dt, kernel):
    args = make_args(func, dt, kernel)
    first = call_checked(func, args)
    second = call_checked(func, args)
    assert_same_result(second, first)
    if func in ARRAY_RESULT:
        assert first is not second and not np.shares_memory(first, second)


@pytest.mark.parametrize("func, dt, kernel", cases())
def test_read_only_inputs(func, dt, kernel):
    args = make_args(func, dt, kernel)
    want = call_checked(func, [a.copy() if isinstance(a, np.ndarray) else a for a in args])
    for a in args:
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    got = call_checked(func, args)
    assert_same_result(got, want)
    if func in ARRAY_RESULT:
        assert got.flags.writeable
        got[...] = 0  # a fresh, writable result: writing it must not touch the inputs


def relayout(a, layout):
    """An array equal to ``a`` but laid out differently in memory."""
    if layout == "step":
        big = a
        for ax in range(a.ndim):
            big = np.repeat(big, 2, axis=ax)
        view = big[(slice(None, None, 2),) * a.ndim]
    elif layout == "transpose":
        if a.ndim >= 2:
            view = np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 0, -1)), -1, 0)
        else:
            view = np.ascontiguousarray(a[::-1])[::-1]
    elif layout == "fortran":
        view = np.asfortranarray(a)
    elif layout == "negative":
        view = np.flip(np.flip(a).copy())
    else:
        raise AssertionError(layout)
    assert np.array_equal(view, a) and view.dtype == a.dtype
    return view


LAYOUTS = ("step", "transpose", "fortran", "negative")


@pytest.mark.parametrize("func, dt, kernel, layout", cases(LAYOUTS))
def test_non_contiguous_inputs(func, dt, kernel, layout):
    args = make_args(func, dt, kernel)
    want = call_checked(func, args)
    views = [relayout(a, layout) if isinstance(a, np.ndarray) else a for a in args]
    arrays = [a for a in views if isinstance(a, np.ndarray)]
    # the test is only meaningful if some input really is not C-contiguous
    # (Fortran order of a 1-D array is C order, hence the exception)
    if not (layout == "fortran" and all(a.ndim < 2 for a in arrays)):
        assert any(not a.flags.c_contiguous for a in arrays)
    got = call_checked(func, views)
    assert_same_result(got, want)


@pytest.mark.parametrize("func, dt, kernel", cases())
def test_big_endian_inputs(func, dt, kernel):
    args = make_args(func, dt, kernel)
    want = call_checked(func, args)
    swapped = [a.astype(a.dtype.newbyteorder(">")) if isinstance(a, np.ndarray) else a
               for a in args]
    assert all(a.dtype.byteorder == ">" or a.dtype.itemsize == 1
               for a in swapped if isinstance(a, np.ndarray))
    got = call_checked(func, swapped)
    assert_same_result(got, want, byteorder_free=True)


@pytest.mark.parametrize("func, dt, kernel", [p for p in cases() if p.values[0] in ARRAY_RESULT])
def test_results_are_fresh(func, dt, kernel):
    args = make_args(func, dt, kernel)
    if func.startswith("_pad"):
        args[1] = 0  # no padding: the likeliest case for returning the input itself
    for variant in (args, [a.astype(np.float64) if isinstance(a, np.ndarray) else a
                           for a in args]):
        out = call_checked(func, variant)
        assert isinstance(out, np.ndarray)
        for a in variant:
            if isinstance(a, np.ndarray):
                assert not np.shares_memory(out, a)
                if out.shape == a.shape:
                    assert out is not a


# --------------------------------------------------------------------------
# zero-length 1-D signals: the notebook's loops simply ran zero times
# --------------------------------------------------------------------------

def _empty_cases():
    e, eb, k = np.zeros(0), np.zeros((2, 0)), np.array([1.0, 2.0, 3.0])
    return [
        ("_pad_1d", (e, 2), np.zeros(4)),
        ("_pad_1d_batch", (eb, 1), np.zeros((2, 2))),
        ("conv_1d", (e, k), np.zeros(0)),
        ("conv_1d_sum", (e, k), np.float64(0.0)),
        ("_param_grad_1d", (e, k), np.zeros(3)),
        ("_param_grad_1d", (e, k, e), np.zeros(3)),
        ("_input_grad_1d", (e, k), np.zeros(0)),
        ("_input_grad_1d", (e, k, e), np.zeros(0)),
        ("conv_1d_batch", (eb, k), np.zeros((2, 0))),
        ("conv_1d_batch_sum", (eb, k), np.float64(0.0)),
        ("input_grad_1d_batch", (eb, k), np.zeros((2, 0))),
        ("param_grad_1d_batch", (eb, k), np.zeros(3)),
    ]


@pytest.mark.parametrize("func, args, want", [
    pytest.param(f, a, w, id=f"{f}-{len(a)}args") for f, a, w in _empty_cases()])
def test_zero_length_signal(func, args, want):
    """conv_1d(np.array([]), param) returned array([]) in the notebook (out was
    np.zeros(0) and the loops ran zero times); _param_grad_1d returned zeros."""
    got = call_checked(func, args)
    assert_same_result(got, want)
