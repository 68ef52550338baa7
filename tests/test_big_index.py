"""64-bit indexing: offsets past 2**31 with little real memory, and sizes past
the 32-bit limits refused before anything big is allocated.

How a case gets past 2**31 without gigabytes of real memory:

* **Huge geometry, tiny arrays.**  ``padding='same'`` with a dilation of 2**31
  or more on a 5-sample signal: the kernel's outer taps read 2**31+ elements
  away from the output position, i.e. in the padding, so only the centre tap
  contributes.  Offsets such as ``q*dilation - padding`` only fit in 64 bits;
  computed in 32 bits they wrap, and an outer tap lands on a real sample (a
  wrong answer) or outside the buffer (a crash; AddressSanitizer reports it
  under .ci/sanitize).
* **Lazy zero pages.**  ``np.zeros`` of a few GiB is ``calloc``: the kernel
  sees a C-contiguous array (``np.ascontiguousarray`` passes it through
  without a copy), and only the pages a test writes, or the kernel writes,
  become resident; reading an untouched page maps the shared zero page.  So an
  input or an input gradient of more than 2**31 elements (8 GiB of float32,
  virtual) costs a few MiB.  The geometry (stride or dilation of 2**29 to
  2**31) makes the kernel read or write a handful of cells past element
  2**31: through a dilated tap, a strided column, a row offset, and a batch
  offset (image n >= 2 of 2**30 elements each, on the OpenMP path).  Each of
  these tests checks, with ``ru_maxrss``, that real memory stayed small: a
  copy of the input, or scratch the size of the input, fails it.

Sizes whose products BLAS cannot index (a GEMM dimension > 2**31 - 1) must be
refused with a ``ConvxValueError`` before anything big is allocated: checked
with tracemalloc, which sees NumPy's data buffers (the peak traced memory of
the call must stay under 64 MiB).

Marked slow: the lazy arrays are 8 to 12 GiB of address space each.
"""
import os
import resource
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest

import convx
from convx import _threads

pytestmark = pytest.mark.slow

G31 = 2**31
BUDGET = 512 << 20       # real memory a lazy-array test may add (bytes)
ALLOC_BUDGET = 64 << 20  # traced memory a refused call may allocate (bytes)


def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _under_asan():
    with open("/proc/self/maps") as fh:
        return "libasan" in fh.read()


UNDER_ASAN = _under_asan()


@contextmanager
def little_real_memory(budget=BUDGET):
    """The block must not raise the process's peak RSS above max(old peak,
    RSS at entry + budget): no copy of a lazy input, no input-sized scratch.

    Not checked under AddressSanitizer (.ci/sanitize): ASan writes the shadow
    of every allocation it hands out or frees, 1 byte per 8, so an 8 GiB lazy
    array costs 1 GiB of real shadow memory there whatever convx does."""
    before, peak_before = _rss(), _maxrss()
    yield
    if UNDER_ASAN:
        return
    peak = _maxrss()
    assert peak <= max(peak_before, before + budget), (
        f"peak RSS rose to {peak / 2**30:.2f} GiB (RSS at entry {before / 2**30:.2f} GiB, "
        f"budget {budget / 2**20:.0f} MiB): convx copied a lazy array or allocated scratch "
        f"the size of one")


def lazy_zeros(shape, dtype=np.float32):
    """A C-contiguous zero array whose pages are only allocated when written."""
    a = np.zeros(shape, dtype)
    assert a.flags.c_contiguous
    return a


def randn(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def close(a, b, dtype=np.float32, n_terms=1):
    """allclose with a tolerance for float32 sums of ``n_terms`` products."""
    eps = np.finfo(dtype).eps
    tol = 8 * eps * max(1, n_terms) ** 0.5
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.max(np.abs(b))))


# --------------------------------------------------------------------------
# 1. Huge geometry, tiny arrays: padding='same' with dilation >= 2**31.
# --------------------------------------------------------------------------

DILATIONS = [pytest.param(d, id=i) for d, i in [
    (G31 - 1, "d=2^31-1"), (G31, "d=2^31"), (2**32 + 1, "d=2^32+1"), (2**40, "d=2^40"),
    (2**61, "d=2^61")]]
# (C, F): few taps (1 channel, 1 filter) and many taps (32 channels, 4 or 16
# filters), so that the choice between convx's kernels (im2col + GEMM, or the
# direct kernel for >= 32 taps) does not decide which one is tested.
CHANNELS = [pytest.param(1, 1, id="c1f1"), pytest.param(32, 4, id="c32f4"),
            pytest.param(4, 16, id="c4f16")]


@pytest.mark.parametrize("d", DILATIONS)
@pytest.mark.parametrize("c, f", CHANNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_same_padding_huge_dilation_1d(d, c, f, dtype):
    """conv1d and its gradients with padding='same', kernel 3, dilation d >= 2**31
    - 1 on a 5-sample signal: only the centre tap sees the signal."""
    rng = np.random.default_rng(1)
    x, w, g = randn(rng, (2, c, 5), dtype), randn(rng, (f, c, 3), dtype), randn(rng, (2, f, 5), dtype)
    wc = w[:, :, 1].astype(np.float64)
    tracemalloc.start()
    try:
        out = convx.conv1d(x, w, padding="same", dilation=d)
        dx = convx.conv1d_input_grad(x.shape, w, g, padding="same", dilation=d)
        dw = convx.conv1d_weight_grad(x, w.shape, g, padding="same", dilation=d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    close(out, np.einsum("fc,ncl->nfl", wc, x), dtype, c)
    close(dx, np.einsum("fc,nfl->ncl", wc, g), dtype, f)
    expected = np.zeros(w.shape)
    expected[:, :, 1] = np.einsum("ncl,nfl->fc", x.astype(np.float64), g)
    close(dw, expected, dtype, 10)
    assert peak < ALLOC_BUDGET, f"3 calls on 5-sample signals allocated {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("d", [G31, 2**33 + 3], ids=["d=2^31", "d=2^33+3"])
@pytest.mark.parametrize("c, f", CHANNELS)
def test_same_padding_huge_dilation_2d(d, c, f):
    """The same in 2-D, with different dilations along height and width."""
    rng = np.random.default_rng(2)
    x, w, g = randn(rng, (2, c, 4, 5)), randn(rng, (f, c, 3, 3)), randn(rng, (2, f, 4, 5))
    wc = w[:, :, 1, 1].astype(np.float64)
    dil = (d, d + 7)
    tracemalloc.start()
    try:
        out = convx.conv2d(x, w, padding="same", dilation=dil)
        dx = convx.conv2d_input_grad(x.shape, w, g, padding="same", dilation=dil)
        dw = convx.conv2d_weight_grad(x, w.shape, g, padding="same", dilation=dil)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    close(out, np.einsum("fc,nchw->nfhw", wc, x), np.float32, c)
    close(dx, np.einsum("fc,nfhw->nchw", wc, g), np.float32, f)
    expected = np.zeros(w.shape)
    expected[:, :, 1, 1] = np.einsum("nchw,nfhw->fc", x.astype(np.float64), g)
    close(dw, expected, np.float32, 40)
    assert peak < ALLOC_BUDGET, f"3 calls on 4x5 images allocated {peak / 2**20:.0f} MiB"


# --------------------------------------------------------------------------
# 2. Arrays of more than 2**31 elements, lazily zero.
# --------------------------------------------------------------------------

def test_1d_dilated_tap_past_2_31():
    """x of 2**31 + 2**17 float32 elements (8 GiB virtual); a 2-tap kernel of
    dilation 2**31 at stride 2: out[j] = w0*x[2j] + w1*x[2j + 2**31]."""
    m = 2**17
    rng = np.random.default_rng(3)
    with little_real_memory():
        x = lazy_zeros((1, 1, G31 + m))
        x[0, 0, :m] = randn(rng, m)
        x[0, 0, G31:] = randn(rng, m)
        w = randn(rng, (1, 1, 2))
        lo, hi = x[0, 0, :m:2].astype(np.float64), x[0, 0, G31::2].astype(np.float64)

        out = convx.conv1d(x, w, stride=2, dilation=G31)
        assert out.shape == (1, 1, m // 2)
        close(out[0, 0], w[0, 0, 0] * lo + w[0, 0, 1] * hi, np.float32, 2)

        g = randn(rng, (1, 1, m // 2))
        dw = convx.conv1d_weight_grad(x, w.shape, g, stride=2, dilation=G31)
        gd = g[0, 0].astype(np.float64)
        close(dw[0, 0], [lo @ gd, hi @ gd], np.float32, m // 2)

        dx = convx.conv1d_input_grad(x.shape, w, g, stride=2, dilation=G31)
        del x
        assert dx.shape == (1, 1, G31 + m)
        close(dx[0, 0, :m:2], w[0, 0, 0] * gd, np.float32)
        close(dx[0, 0, G31::2], w[0, 0, 1] * gd, np.float32)
        assert not dx[0, 0, 1:m:2].any() and not dx[0, 0, G31 + 1::2].any()
        assert not dx[0, 0, m:m + 4096].any() and not dx[0, 0, G31 - 4096:G31].any()
        del dx


def test_1d_strided_column_past_2_31():
    """A 1-tap kernel at stride 2**30 reads x[0], x[2**30] and x[2**31] (the
    strided-column loop of im2col, not a dilated tap)."""
    rng = np.random.default_rng(4)
    with little_real_memory():
        x = lazy_zeros((2, 1, G31 + 8))   # 2 images: the second starts past 2**31
        cells = [0, 2**30, G31]
        vals = randn(rng, (2, 3))
        x[:, 0, cells] = vals
        w = randn(rng, (3, 1, 1))
        out = convx.conv1d(x, w, stride=2**30)
        assert out.shape == (2, 3, 3)
        close(out, np.einsum("f,nj->nfj", w[:, 0, 0], vals))
        g = randn(rng, (2, 3, 3))
        dw = convx.conv1d_weight_grad(x, w.shape, g, stride=2**30)
        close(dw[:, 0, 0], np.einsum("nj,nfj->f", vals.astype(np.float64), g), np.float32, 6)
        del x
        dx = convx.conv1d_input_grad((2, 1, G31 + 8), w, g, stride=2**30)
        close(dx[:, 0, cells], np.einsum("f,nfj->nj", w[:, 0, 0].astype(np.float64), g),
              np.float32, 3)
        dx[:, 0, cells] = 0
        assert not dx[:, 0, :4096].any() and not dx[:, 0, G31 - 4096:].any()
        del dx


def test_2d_row_offset_past_2_31():
    """x of (2**16 + 8) x (2**15 + 8) float32 (2**31 + 786,496 elements); a 2x2
    kernel of dilation (2**16, 2**15) at stride (1, 2) reads rows 2**16.. ,
    whose offsets row*W exceed 2**31."""
    h, wd = 2**16 + 8, 2**15 + 8
    rng = np.random.default_rng(5)
    with little_real_memory():
        x = lazy_zeros((1, 1, h, wd))
        assert x.size > G31
        x[0, 0, :8] = randn(rng, (8, wd))
        x[0, 0, 2**16:] = randn(rng, (8, wd))
        w = randn(rng, (1, 1, 2, 2))
        dil = (2**16, 2**15)
        out = convx.conv2d(x, w, stride=(1, 2), dilation=dil)
        assert out.shape == (1, 1, 8, 4)
        taps = {(p, q): x[0, 0, p * 2**16:p * 2**16 + 8, q * 2**15:q * 2**15 + 7:2].astype(np.float64)
                for p in (0, 1) for q in (0, 1)}
        close(out[0, 0], sum(w[0, 0, p, q] * t for (p, q), t in taps.items()), np.float32, 4)
        g = randn(rng, (1, 1, 8, 4))
        dw = convx.conv2d_weight_grad(x, w.shape, g, stride=(1, 2), dilation=dil)
        gd = g[0, 0].astype(np.float64)
        close(dw[0, 0], [[(taps[p, q] * gd).sum() for q in (0, 1)] for p in (0, 1)],
              np.float32, 32)
        del x
        dx = convx.conv2d_input_grad((1, 1, h, wd), w, g, stride=(1, 2), dilation=dil)
        for p in (0, 1):
            for q in (0, 1):
                block = dx[0, 0, p * 2**16:p * 2**16 + 8, q * 2**15:q * 2**15 + 7:2]
                close(block, w[0, 0, p, q] * gd, np.float32)
                block[...] = 0
        assert not dx[0, 0, :8].any() and not dx[0, 0, 2**16:].any()
        assert not dx[0, 0, 2**15].any()
        del dx


def test_batch_offset_past_2_31_openmp(monkeypatch):
    """3 images of 2**30 float32 elements each (12 GiB virtual): image 2
    starts at element 2**31.  2**15 filters make the call big enough for the
    OpenMP path (batch shared by 2 threads; the threshold lowered to 2**17
    multiply-adds); stride 2**29 reads 2 cells an image."""
    if not convx._core.openmp_enabled() or _threads._MAX_THREADS < 2:
        pytest.skip("convx was built without OpenMP, or this process may use one CPU")
    monkeypatch.setattr(_threads, "_PARALLEL_MIN_MACS", 1 << 17)
    n, L, f, s = 3, 2**30, 2**15, 2**29
    rng = np.random.default_rng(6)
    convx.set_num_threads(2)
    try:
        assert _threads.plan(n, n * 1 * 2 * f) == 2   # K=1, P=2: the OpenMP path
        with little_real_memory():
            x = lazy_zeros((n, 1, 1, L))
            vals = randn(rng, (n, 2))
            x[:, 0, 0, [0, s]] = vals
            w = randn(rng, (f, 1, 1, 1))
            out = convx.conv2d(x, w, stride=(1, s))
            assert out.shape == (n, f, 1, 2)
            close(out[:, :, 0], np.einsum("f,nj->nfj", w[:, 0, 0, 0], vals))
            g = randn(rng, (n, f, 1, 2))
            dw = convx.conv2d_weight_grad(x, w.shape, g, stride=(1, s))
            close(dw[:, 0, 0, 0], np.einsum("nj,nfj->f", vals.astype(np.float64), g[:, :, 0]),
                  np.float32, 2 * n)
            del x
            dx = convx.conv2d_input_grad((n, 1, 1, L), w, g, stride=(1, s))
            close(dx[:, 0, 0, [0, s]],
                  np.einsum("f,nfj->nj", w[:, 0, 0, 0].astype(np.float64), g[:, :, 0]),
                  np.float32, f)
            dx[:, 0, 0, [0, s]] = 0
            assert not dx[:, 0, 0, :4096].any() and not dx[:, 0, 0, s - 4096:s + 4096].any()
            assert not dx[:, 0, 0, -4096:].any()
            del dx
    finally:
        convx.set_num_threads(None)


# --------------------------------------------------------------------------
# 3. Sizes BLAS cannot index: a clear ConvxValueError before any big allocation.
# --------------------------------------------------------------------------

@contextmanager
def allocates_at_most(budget=ALLOC_BUDGET):
    """Peak traced memory (NumPy's buffers included) inside the block < budget."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < budget, f"allocated {peak / 2**30:.2f} GiB before refusing"


def _refused(call):
    """``call()`` raises ConvxValueError naming the 2**31 - 1 limit, allocating
    (almost) nothing first."""
    with (
        allocates_at_most(),
        pytest.raises(convx.ConvxValueError, match=r"2\*\*31|exceeds|too large"),
    ):
        call()


# paddings whose output is too long for BLAS (output positions > 2**31 - 1)
OVERSIZED = [
    pytest.param(2**30, id="P=2^31+1"),
    pytest.param(2**40, id="P=2^41+1"),
    pytest.param(2**62, id="P=2^63+1"),
]


@pytest.mark.parametrize("pad", OVERSIZED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_output_too_long_refused_before_allocating(pad, dtype):
    x, w = np.ones((1, 1, 1), dtype), np.ones((1, 1, 1), dtype)
    _refused(lambda: convx.conv1d(x, w, padding=pad))


def test_forward_2d_output_positions_product_refused_before_allocating():
    """OH and OW each fit in 32 bits; OH * OW = (2**16 + 1)**2 does not."""
    x, w = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    _refused(lambda: convx.conv2d(x, w, padding=2**15))


@pytest.mark.parametrize("which", ["input_grad", "weight_grad"])
def test_gradient_output_too_long_refused_before_allocating(which):
    """A zero-stride grad_output of 2**41 + 1 positions (a view of one value)."""
    pad = 2**40
    x, w = np.ones((1, 1, 1)), np.ones((1, 1, 1))
    g = np.broadcast_to(np.float64(1), (1, 1, 1 + 2 * pad))
    if which == "input_grad":
        _refused(lambda: convx.conv1d_input_grad(x.shape, w, g, padding=pad))
    else:
        _refused(lambda: convx.conv1d_weight_grad(x, w.shape, g, padding=pad))


def test_weight_grad_too_many_taps_refused_before_allocating():
    """weight_shape (1, 1, 2**31): K = 2**31 taps, given as a shape, no array."""
    x = np.ones((1, 1, 1))
    g = np.ones((1, 1, 2))
    _refused(lambda: convx.conv1d_weight_grad(x, (1, 1, G31), g, padding=2**30))


# --------------------------------------------------------------------------
# 4. Geometry at the edge of int64: answered right, or refused clearly.
# --------------------------------------------------------------------------


def _answered_or_refused(call, expected):
    try:
        got = call()
    except convx.ConvxValueError:
        return
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(stride=2**63), id="stride=2^63"),
    pytest.param(dict(stride=2**64 + 1), id="stride=2^64+1"),
    pytest.param(dict(dilation=2**63), id="dilation=2^63,k=1"),
    pytest.param(dict(dilation=2**64, padding="same"), id="dilation=2^64,same,k=1"),
])
def test_geometry_past_int64_answered_or_refused(kwargs):
    x, w = np.arange(1.0, 6.0)[None, None], np.full((1, 1, 1), 2.0)
    expected = 2 * x[..., :1] if "stride" in kwargs else 2 * x
    _answered_or_refused(lambda: convx.conv1d(x, w, **kwargs), expected)


@pytest.mark.parametrize("pad, args", [
    (convx._pad_1d, (np.ones(3),)),
    (convx._pad_1d_batch, (np.ones((2, 3)),)),
    (convx._pad_2d_obs, (np.ones((2, 3)),)),
    (convx._pad_conv_input, (np.ones((1, 1, 2, 2)),)),
])
@pytest.mark.parametrize("num", [2**47, 2**62, 2**70])
def test_pad_too_large_refused_before_allocating(pad, args, num):
    """A notebook pad whose result would pass 2**48 elements is refused, naming
    'num', before NumPy is asked for the memory (or its size overflows)."""
    with allocates_at_most(), pytest.raises(convx.ConvxValueError, match=r"'num'.*2\*\*48"):
        pad(*args, num)
