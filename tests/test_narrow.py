"""Narrow images: the direct kernel computes whole rows of a narrow output as
one strip (``_engine._strip``), the columns between two rows computed and
dropped.  Each output is the same sum in the same order as row by row, so the
strip must give the same bits, right against the reference, for any thread
count, with non-finite values in the junk columns' reach too."""
import numpy as np
import pytest

import convx
import reference as ref
from conftest import at_each_thread_count  # (tests/conftest.py)
from convx import _engine

NARROW = [  # (N, C, F, H, W, KH, KW, pad, dilation)
    (32, 16, 32, 8, 8, 3, 3, 1, 1),
    (3, 16, 8, 5, 7, 3, 3, 1, 1),
    (8, 32, 64, 4, 4, 3, 3, 1, 1),
    (2, 32, 16, 11, 3, 5, 5, 2, 1),
    (5, 16, 5, 4, 1, 3, 3, 1, 1),
    (1, 16, 33, 9, 9, 3, 3, 1, 1),
    (4, 16, 12, 6, 6, 3, 3, 2, 2),
    (2, 8, 24, 7, 5, 4, 2, 0, 1),
]


@pytest.fixture
def direct(monkeypatch):
    """The direct kernel, even where the channels kernel would replace it
    (x86-64-v4, or rows narrower than its column block), the rows kernel
    take its input gradient, or Winograd either pass."""
    monkeypatch.setattr(_engine, "USE_DIRECT", True)
    monkeypatch.setattr(_engine, "_winograd_pays", lambda *args: False)
    monkeypatch.setattr(_engine, "_channels_replace_direct", lambda *args: False)
    monkeypatch.setattr(_engine, "_channels_narrow_rows", lambda *args: False)
    monkeypatch.setattr(_engine, "_channels_one_vector_rows", lambda *args: False)
    monkeypatch.setattr(_engine, "ROWS", False)
    monkeypatch.setattr(_engine, "PLANS", {})


def _run(x, w, g, pad, dil):
    y = convx.conv2d(x, w, padding=pad, dilation=dil)
    dx = convx.conv2d_input_grad(x.shape, w, g, padding=pad, dilation=dil)
    return y, dx


@pytest.mark.parametrize("case", NARROW)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strip_is_row_by_row_bit_for_bit(case, dtype, direct, monkeypatch):
    n, c, f, h, wd, kh, kw, pad, dil = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    oh = h + 2 * pad - dil * (kh - 1)
    ow = wd + 2 * pad - dil * (kw - 1)
    g = rng.standard_normal((n, f, oh, ow)).astype(dtype)
    used = []
    real = _engine._strip

    def spy(*args):
        used.append(real(*args))
        return used[-1]

    monkeypatch.setattr(_engine, "_strip", spy)
    results = at_each_thread_count(lambda: _run(x, w, g, pad, dil))
    monkeypatch.setattr(_engine, "_strip", lambda *args: 0)
    rows = _run(x, w, g, pad, dil)
    pads = (pad,) * 4
    want = (ref.conv_nd(x, w, pads=pads, dilation=dil),
            ref.conv_nd_input_grad(x.shape, w, g, pads=pads, dilation=dil))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for got in results:
        for a, b, e in zip(got, rows, want):
            assert np.array_equal(a, b)
            np.testing.assert_allclose(a, e, rtol=tol, atol=tol * np.abs(e).max())
    if dtype == np.float32 and n >= 3 and kh == kw == 3 and pad == 1 and dil == 1:
        assert any(used), "the strip was not taken"


def test_non_finite_input_stays_where_it_belongs(direct):
    """An Inf in the input reaches, in the strip, junk columns that are
    dropped: the outputs are exactly those of the reference (NaN and Inf
    where they should be, finite elsewhere)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 6, 6))
    x[1, 3, 2, 5] = np.inf      # the last column: next to the junk columns
    x[2, 0, 4, 0] = np.nan      # the first column
    w = rng.standard_normal((8, 16, 3, 3))
    y = convx.conv2d(x, w, padding=1)
    e = ref.conv_nd(x, w, pads=(1, 1, 1, 1))
    assert np.array_equal(np.isnan(y), np.isnan(e))
    assert np.array_equal(np.isinf(y), np.isinf(e))
    fin = np.isfinite(e)
    np.testing.assert_allclose(y[fin], e[fin], rtol=1e-12, atol=1e-12)
