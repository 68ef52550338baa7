"""Winograd's F(4x4, 3x3) and F(2x2, 5x5) (method='winograd'): the forward
pass and the input gradient against the reference within the documented
error bound, at every
instruction-set level and for images narrower than its vectors; its
fallback on non-finite values; the same bits for any thread count; working
memory that does not grow with the batch; and 'auto' choosing it where it
pays.

The bound (docs/design.md, "Accuracy"): with u the unit roundoff of the
compute dtype, K the channels summed into an output (C // groups for the
forward pass, F // groups for the input gradient) and |B|, |G|, |A| the
transform matrices with their entries' absolute values, every element of
the result is within

    (K + 16) u  sum over c of  |A|^T [ (|G| |g_c| |G|^T) (.) (|B|^T |d_c| |B|) ] |A|

of the exact sum, plus u |value| for the final rounding; d_c is the 6x6
input tile the output's 4x4 (2x2) tile reads in channel c (zero outside the
image), g_c the 3x3 (5x5) kernel that channel meets.  Unlike a direct sum's, the
bound of one output involves its whole tile.
"""
import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import convx
import reference
from conftest import thread_counts  # (tests/conftest.py)
from convx import ConvxValueError, _core, _engine
from test_fft import _check as check_bound
from test_fuzz import EPS64, Ref

BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], float)
# F(2x2, 5x5): the same points, so the same B^T
G5 = np.array([[1 / 4, 0, 0, 0, 0], [-1 / 6] * 5, [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3], [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3],
               [0, 0, 0, 0, 1]])
AT2 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1]], float)
MATRICES = {3: (G, AT), 5: (G5, AT2)}   # by the kernel's size: (G, A^T)


@pytest.mark.parametrize("r", [3, 5])
def test_the_matrices_compute_a_correlation(r):
    """The matrices written here (and in _winograd.h) give the m x m valid
    correlation of a 6x6 tile with an r x r kernel (m = 7 - r), exactly up
    to rounding."""
    g_, at = MATRICES[r]
    m = 7 - r
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((r, r))
    y = at @ ((g_ @ g @ g_.T) * (BT @ d @ BT.T)) @ at.T
    want = np.array([[(d[i:i + r, j:j + r] * g).sum() for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-13)


def winograd_bound(src, k, out_hw, pt, pl, groups, dilation=(1, 1)):
    """The documented bound in units of u, shaped like the result: ``src``
    (N, C, H, W) is what the transform reads, ``k`` (O, C // groups, r, r),
    r = 3 or 5, the kernel it meets (for the input gradient, w turned and its channel
    axes exchanged), the output's first cell reading src at (-pt, -pl).  At
    a dilation (dh, dw), the output cells (dh u + r, dw v + s) are the
    undilated correlation of the phase image src[dh m + r - pt, dw k + s -
    pl] (docs/design.md): each phase's bound is the undilated one's.  Every
    phase is cut as convx cuts it, ceil(oh / dh) x ceil(ow / dw) outputs
    (those past the phase's own are dropped): its last tiles read the input
    rows convx's do, which a phase cut to its own size would read as zeros
    (a bound 3.5e4 to 8e26 times too small, seen in the input gradient at
    dilation 2 to 4 with spikes of 1e6 among small values)."""
    dh, dw = dilation
    r = k.shape[2]
    g_, at = MATRICES[r]
    m = 7 - r       # outputs per tile side
    if (dh, dw) != (1, 1):
        oh, ow = out_hw
        bound = np.zeros((src.shape[0], k.shape[0], oh, ow))
        ohp, owp = -(-oh // dh), -(-ow // dw)
        for p in range(min(dh, oh)):
            for s in range(min(dw, ow)):
                rows = dh * np.arange(ohp + r - 1) + p - pt
                cols = dw * np.arange(owp + r - 1) + s - pl
                inside = np.ix_((rows >= 0) & (rows < src.shape[2]),
                                (cols >= 0) & (cols < src.shape[3]))
                phase = np.zeros(src.shape[:2] + (ohp + r - 1, owp + r - 1))
                phase[:, :, inside[0], inside[1]] = src[:, :, rows[inside[0].ravel()]][
                    :, :, :, cols[inside[1].ravel()]]
                own = winograd_bound(phase, k, (ohp, owp), 0, 0, groups)
                bound[:, :, p::dh, s::dw] = own[:, :, :len(range(p, oh, dh)),
                                                :len(range(s, ow, dw))]
        return bound
    n, c, h, wd = src.shape
    o, cg = k.shape[:2]
    oh, ow = out_hw
    th, tw = -(-oh // m), -(-ow // m)
    # src with the zeros the tiles read around it
    big = np.zeros((n, c, m * th + r - 1, m * tw + r - 1))
    r0, r1 = max(0, pt), min(m * th + r - 1, h + pt)     # big[i] is src[i - pt]
    c0, c1 = max(0, pl), min(m * tw + r - 1, wd + pl)
    if r1 > r0 and c1 > c0:
        big[:, :, r0:r1, c0:c1] = np.abs(src[:, :, r0 - pt:r1 - pt, c0 - pl:c1 - pl])
    tiles = np.lib.stride_tricks.sliding_window_view(big, (6, 6), axis=(2, 3))[:, :, ::m, ::m]
    v = np.einsum("ar,nctsrq,bq->nctsab", np.abs(BT), tiles, np.abs(BT))
    u = np.einsum("ap,ocpq,bq->ocab", np.abs(g_), np.abs(k), np.abs(g_))
    og = o // groups
    mm = np.concatenate([np.einsum("nctsab,ocab->notsab", v[:, i * cg:(i + 1) * cg],
                                   u[i * og:(i + 1) * og]) for i in range(groups)], axis=1)
    s = np.einsum("ia,notsab,jb->notisj", np.abs(at), mm, np.abs(at))
    s = s.reshape(n, o, m * th, m * tw)[:, :, :oh, :ow]
    return (cg + 16) * s


def turned(w, groups):
    """The input gradient's kernel: w turned by 180 degrees, its channel axes
    exchanged within each group: (C, F // groups, r, r)."""
    f, cg, r = w.shape[:3]
    k = w.reshape(groups, f // groups, cg, r, r).transpose(0, 2, 1, 3, 4)
    return k.reshape(groups * cg, f // groups, r, r)[..., ::-1, ::-1]


def run_case(n, cg, fg, groups, size, pads, dtype, seed, scale=1.0, bias=True,
             dilation=(1, 1), r=3):
    """Both passes by method='winograd', an r x r kernel, against the float64
    reference."""
    rng = np.random.default_rng(seed)
    c, f = cg * groups, fg * groups
    x = (rng.standard_normal((n, c) + size) * scale).astype(dtype)
    w = rng.standard_normal((f, cg, r, r)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    kw = dict(padding=pads, groups=groups, dilation=dilation, method="winograd")
    y = convx.conv2d(x, w, b, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx = convx.conv2d_input_grad(x.shape, w, g, **kw)
    ref = Ref(x, w, g, b, (1, 1), [(pads[0], pads[0]), (pads[1], pads[1])], dilation, groups)
    xf, wf, gf = (a.astype(np.float64) for a in (x, w, g))
    worst = check_bound("forward", y, ref.y,
                        winograd_bound(xf, wf, y.shape[2:], pads[0], pads[1], groups, dilation),
                        ref.n_y * EPS64 * ref.y_abs, np.dtype(dtype), "Winograd")
    dx_bound = winograd_bound(gf, turned(wf, groups), x.shape[2:],
                              (r - 1) * dilation[0] - pads[0], (r - 1) * dilation[1] - pads[1],
                              groups, dilation)
    return max(worst, check_bound("input grad", dx, ref.dx, dx_bound,
                                  ref.n_dx * EPS64 * ref.dx_abs, np.dtype(dtype), "Winograd"))


@st.composite
def winograd_cases(draw):
    r = draw(st.sampled_from([3, 3, 5]))
    pads = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    dilation = draw(st.sampled_from([(1, 1), (1, 1), (2, 2), (1, 3), (3, 2)]))
    size = tuple(draw(st.integers(max(1, (r - 1) * d + 1 - 2 * p), 40))
                 for p, d in zip(pads, dilation))
    return dict(r=r, n=draw(st.integers(1, 3)), cg=draw(st.integers(1, 9)), dilation=dilation,
                fg=draw(st.integers(1, 9)), groups=draw(st.sampled_from([1, 1, 2, 3])),
                size=size, pads=pads, dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**32 - 1)),
                scale=draw(st.sampled_from([1e-3, 1.0, 1e3])), bias=draw(st.booleans()))


@given(case=winograd_cases())
def test_both_passes_within_the_bound(case):
    """hypothesis: padding 0 to 4 (wider than the kernel crops the input
    gradient's reads), images from one pixel wide, groups, ragged tiles,
    dilations (phase images of unequal sizes)."""
    note(repr(case))
    run_case(**case)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    # (n, cg, fg, groups, size, pads[, dilation])
    (2, 64, 64, 1, (56, 56), (1, 1)),      # the benchmark's layer, smaller batch
    (3, 16, 24, 1, (33, 29), (1, 1)),      # ragged tiles at the bottom and right
    (1, 40, 8, 1, (9, 70), (0, 2)),        # long rows, tiles past several blocks
    (5, 8, 8, 4, (14, 14), (1, 1)),        # grouped
    (2, 300, 5, 1, (7, 7), (1, 1)),        # more channels than one GEMM block (256)
    (1, 200, 6, 1, (9, 9), (1, 1)),        # one block of 200 (cvx_kc_step), not 32s
    (1, 6, 144, 1, (8, 8), (1, 1)),        # input gradient: one block of 144 filters
    (1, 3, 3, 1, (5, 6), (2, 2)),          # rows narrower than a vector
    (2, 24, 16, 1, (37, 30), (2, 2), (2, 2)),  # dilated, 'same': four phase images
    (3, 8, 12, 2, (25, 31), (1, 4), (3, 2)),   # dilated unevenly, pads not multiples
])
@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("isa", [1, 9])
def test_named_cases_within_the_bound(case, dtype, r, isa):
    """At the baseline level (isa 1: generic transforms) and at the CPU's own
    (the AVX2 transforms where it has AVX2); 3x3 and 5x5 kernels."""
    before = _core.isa()
    try:
        _core.set_isa(isa)
        run_case(*case[:6], dtype, seed=11, dilation=case[6] if len(case) > 6 else (1, 1), r=r)
    finally:
        _core.set_isa(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_take_the_other_algorithm(dtype, where, value):
    """A non-finite value would spread over its tile's outputs through the
    transforms: such a call runs the algorithm 'auto' would take without
    Winograd, bit for bit, and so follows docs/reliability.md."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 12, 12)).astype(dtype)
    w = rng.standard_normal((8, 8, 3, 3)).astype(dtype)
    g = rng.standard_normal((2, 8, 12, 12)).astype(dtype)
    {"input": x, "weight": w, "grad_output": g}[where][1, 2, 2, 1] = value
    calls = {
        "forward": (lambda m: convx.conv2d(x, w, padding=1, method=m), ("input", "weight"),
                    lambda: _engine.forward_plan("t", x.shape, w.shape, (1, 1), (1,) * 4,
                                                 (1, 1), 1, method="winograd", dtype=dtype)),
        "input grad": (lambda m: convx.conv2d_input_grad(x.shape, w, g, padding=1, method=m),
                       ("weight", "grad_output"),
                       lambda: _engine.input_grad_plan("t", x.shape, w.shape, g.shape, (1, 1),
                                                       (1,) * 4, (1, 1), 1, method="winograd",
                                                       dtype=dtype)),
    }
    for pass_, (call, uses, plan) in calls.items():
        got = call("winograd")
        if where in uses:
            fallback = plan()[3][1][1]
            assert fallback.method not in ("fft", "winograd")
            np.testing.assert_array_equal(got, call(fallback.method), err_msg=pass_)
            assert not np.isfinite(got).all(), pass_
        else:
            assert np.isfinite(got).all(), pass_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", [1, 9])
@pytest.mark.parametrize("pass_", ["forward", "input grad"])
@pytest.mark.parametrize("dilation", [(1, 1), (2, 3)])
@pytest.mark.parametrize("r", [3, 5])
def test_the_transform_finds_every_non_finite_value(dtype, isa, pass_, dilation, r,
                                                    default_threads, monkeypatch):
    """The kernel looks for non-finite values itself, as it transforms the
    input (the output gradient): one anywhere the sums read (a corner, an
    edge, the last channel, the last image, a late block of tiles, a late
    piece of a dilated call's phase images) sends the call to the exact
    algorithm, bit for bit, at the baseline ISA level and at the CPU's own,
    on one thread and on several.  So does a finite value whose transform
    overflows."""
    rng = np.random.default_rng(5)
    # 4 images of 5 x 6 tiles: 120 tiles, four blocks of 30; dilated, each
    # image's phase images one piece (the pieces share the kernel's transform)
    monkeypatch.setattr(_engine, "_WINO_SPLIT_BYTES", 1)
    x = rng.standard_normal((4, 5, 19, 21)).astype(dtype)
    w = rng.standard_normal((6, 5, r, r)).astype(dtype)
    pads = dilation
    geometry = dict(padding=pads, dilation=dilation)
    g = rng.standard_normal(convx.conv2d(x, w, **geometry).shape).astype(dtype)
    if pass_ == "forward":
        data = x
        call = lambda m: convx.conv2d(x, w, method=m, **geometry)
        planner = lambda: _engine.forward_plan("t", x.shape, w.shape, (1, 1),
                                               reference.pads4(pads), dilation, 1,
                                               method="winograd", dtype=dtype)
    else:
        data = g
        call = lambda m: convx.conv2d_input_grad(x.shape, w, g, method=m,
                                                 **geometry)
        planner = lambda: _engine.input_grad_plan("t", x.shape, w.shape, g.shape, (1, 1),
                                                  reference.pads4(pads), dilation, 1,
                                                  method="winograd", dtype=dtype)
    n, c, h, wd = data.shape
    places = [(0, 0, 0, 0), (n - 1, c - 1, h - 1, wd - 1), (1, 2, 0, wd - 1),
              (n - 1, 0, h - 1, 0), (2, c - 1, 9, 10), (n - 1, 3, h - 2, 1)]
    values = [np.nan, np.inf, -np.inf, np.finfo(dtype).max]
    before = _core.isa()
    try:
        _core.set_isa(isa)
        _engine.PLANS.clear()
        plan = planner()   # at this level: its fallback is this level's exact algorithm
        # two equal items per CPU: with one CPU, two blocks of 60
        one_cpu = convx._threads._MAX_THREADS == 1
        if dilation == (1, 1) and r == 3:
            assert plan[3][0][0] == (60 if one_cpu else 30), plan[3][0]
            assert plan[3][0][4] == (2 if one_cpu else 4), plan[3][0]
        elif dilation == (1, 1):
            assert plan[3][0][4] >= (2 if one_cpu else 3), plan[3][0]
        else:
            assert plan[3][0][7][2] == 1, plan[3][0]   # one image's phases at a time
        exact = plan[3][1][1].method
        clean = call("winograd")
        assert not np.array_equal(clean, call(exact)), "finite data ran Winograd"
        for threads in sorted({1, convx._threads._MAX_THREADS}):
            convx.set_num_threads(threads)
            for place in places:
                for value in values:
                    kept = data[place]
                    data[place] = value
                    try:
                        got, want = call("winograd"), call(exact)
                    finally:
                        data[place] = kept
                    np.testing.assert_array_equal(got, want,
                                                  err_msg=f"{place} {value} {threads}")
                    assert not np.isfinite(got).all(), (place, value)
    finally:
        _core.set_isa(before)
        _engine.PLANS.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernel_says_whether_it_found_a_non_finite_value(dtype):
    """conv_winograd's ``found``: 0 on finite data, with every output
    written (so Winograd does run there), 1 with one NaN in the last block of
    tiles."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 8, 20, 20)).astype(dtype)
    w = rng.standard_normal((8, 8, 3, 3)).astype(dtype)
    out = np.empty((3, 8, 20, 20), dtype)
    tb = 20   # blocks of 20, 20, 20 and 15 of the 75 tiles, in rows of 32 values
    shared, per = _core.winograd_scratch(8, 8, 1, tb, x.itemsize)
    work = np.empty(shared + 2 * per, dtype)
    found = np.full(1, 7, np.intc)
    for value, want in ((1.0, 0), (np.nan, 1)):
        x[2, 7, 19, 19] = value
        for threads in (1, 2):
            assert _core.conv_winograd(x, w, None, out, work, found, 1, 1, 1, False, tb,
                                       False, threads, 1, False)
            assert found[0] == want, (value, threads)
            if want == 0:   # what the public call gives, which the bound tests check
                np.testing.assert_array_equal(out, convx.conv2d(x, w, padding=1,
                                                                method="winograd"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("r", [3, 5])
def test_same_bits_for_any_thread_count(dtype, dilation, r, default_threads):
    """Each block of tiles is computed by one thread, in an order that does
    not depend on the others."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 16, 30, 31)).astype(dtype)
    w = rng.standard_normal((12, 16, r, r)).astype(dtype)
    g = rng.standard_normal((5, 12, 30, 31)).astype(dtype)
    kw = dict(padding=dilation * (r // 2), dilation=dilation, method="winograd")
    results = []
    for threads in range(1, convx._threads._MAX_THREADS + 1):
        convx.set_num_threads(threads)
        results.append((convx.conv2d(x, w, **kw), convx.conv2d_input_grad(x.shape, w, g, **kw)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dilated_call_in_pieces_gives_the_same_bits(dtype, monkeypatch):
    """Cut into pieces of one image's phase images (the later pieces reuse
    the kernel's transform), a dilated call gives the bits of one piece."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 10, 23, 26)).astype(dtype)
    w = rng.standard_normal((7, 10, 3, 3)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    g = rng.standard_normal((3, 7, 23, 26)).astype(dtype)
    kw = dict(padding=(2, 3), dilation=(2, 3), method="winograd")
    results = []
    for budget in (_engine._WINO_SPLIT_BYTES, 1):
        monkeypatch.setattr(_engine, "_WINO_SPLIT_BYTES", budget)
        _engine.PLANS.clear()
        plan = _engine.forward_plan("t", x.shape, w.shape, (1, 1), (2, 2, 3, 3), (2, 3), 1,
                                    method="winograd", dtype=dtype)
        assert plan[3][0][7][2] == (3 if budget > 1 else 1), plan[3][0]
        results.append((convx.conv2d(x, w, b, **kw),
                        convx.conv2d_input_grad(x.shape, w, g, **kw)))
    _engine.PLANS.clear()
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)


def test_working_memory_does_not_grow_with_the_batch():
    """A thread's block of tiles is fixed by the channels: a batch of 10,000
    plans the same block as a batch of 100, within _WINO_BLOCK_BYTES; and a
    dilated call's phase images are cut for the same number of images at a
    time, within _WINO_SPLIT_BYTES."""
    blocks = []
    for n in (100, 10_000):
        for d in (1, 2):
            plan = _engine.forward_plan("t", (n, 64, 56, 56), (64, 64, 3, 3), (1, 1), (d,) * 4,
                                        (d, d), 1, method="winograd", dtype=np.float32)
            tb, split = plan[3][0][0], plan[3][0][7]
            _, per = _core.winograd_scratch(64, 64, 1, tb, 4)
            assert per * 4 <= _engine._WINO_BLOCK_BYTES, (tb, per)
            blocks.append((tb, split))
            if d == 2:
                dh, dw, nb, hp, wp, ohp, owp = split
                assert nb * dh * dw * 64 * (hp * wp + ohp * owp) * 4 <= _engine._WINO_SPLIT_BYTES
    assert blocks[:2] == blocks[2:]


def test_method_winograd_needs_a_3x3_or_5x5_kernel_at_unit_stride():
    x = np.ones((1, 2, 9, 9))
    ok = np.ones((3, 2, 3, 3))
    calls = [lambda: convx.conv2d(x, np.ones((3, 2, 7, 7)), method="winograd"),
             lambda: convx.conv2d(x, np.ones((3, 2, 5, 3)), method="winograd"),
             lambda: convx.conv2d(x, np.ones((3, 2, 5, 5)), stride=2, method="winograd"),
             lambda: convx.conv2d(x, ok, stride=2, method="winograd"),
             lambda: convx.conv2d_input_grad(x.shape, ok, np.ones((1, 3, 4, 4)), stride=2,
                                             method="winograd"),
             lambda: convx.conv2d_weight_grad(x, ok.shape, np.ones((1, 3, 7, 7)),
                                              method="winograd"),
             lambda: convx.conv1d(np.ones((1, 2, 9)), np.ones((3, 2, 3)), method="winograd")]
    for call in calls:
        with pytest.raises(ConvxValueError, match=r"conv[12]d\w*\(\): argument "
                                                  r"'method'='winograd' does not apply to this "
                                                  r"call: the winograd algorithm needs a 3x3 "
                                                  r"or 5x5 kernel at stride 1, in the forward "
                                                  r"pass"):
            call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("flip", [False, True])
def test_filter_parts_give_the_same_bits(dtype, r, flip):
    """conv_winograd's ``parts``: one image's filters cut into parts, each
    item one part over a block of tiles, on 1 and 2 threads and any block
    and number of parts, give the bits of the call without parts, bias
    included, with filters
    that do not fill their last micro-panel; the working memory is filled
    with NaN first, so that a part left uncomputed or a transform read
    before it is written shows."""
    rng = np.random.default_rng(8)
    cin, cout, side = 24, 42, 18                # 42 filters: 11 micro-panels of 4
    x = rng.standard_normal((1, cin, side, side)).astype(dtype)
    w = rng.standard_normal((cin, cout, r, r) if flip else (cout, cin, r, r)).astype(dtype)
    bias = None if flip else rng.standard_normal(cout).astype(dtype)
    step = 7 - r
    tiles = (-(-side // step)) ** 2

    def run(parts, tb, threads):
        shared, per = _core.winograd_scratch(cin, cout, 1, tb, x.itemsize)
        work = np.full(shared + 2 * per, np.nan, dtype)
        out = np.full((1, cout, side, side), np.nan, dtype)
        found = np.zeros(1, np.intc)
        assert _core.conv_winograd(x, w, bias, out, work, found, r // 2, r // 2, 1, flip, tb,
                                   False, threads, parts, False)
        assert found[0] == 0
        return out

    want = run(1, 16, 1)
    assert np.isfinite(want).all()
    for parts, tb, threads in ((2, tiles, 2), (2, 16, 2), (3, 20, 2), (2, tiles, 1),
                               (11, 16, 2), (4, tiles, 2), (5, tiles, 2), (7, tiles, 2)):
        np.testing.assert_array_equal(run(parts, tb, threads), want, err_msg=str((parts, tb)))
    # a value that is not finite is found whatever the part
    x[0, cin - 1, side - 1, side - 1] = np.nan
    shared, per = _core.winograd_scratch(cin, cout, 1, tiles, x.itemsize)
    found = np.zeros(1, np.intc)
    _core.conv_winograd(x, w, bias, np.empty((1, cout, side, side), dtype),
                        np.empty(shared + 2 * per, dtype), found, r // 2, r // 2, 1, flip,
                        tiles, False, 2, 2, False)
    assert found[0] == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("groups, cin, cout", [
    (1, 5, 7),        # an odd number of channels, filters short of a micro-panel
    (1, 131, 10),     # more channels than a depth block (128), an odd number past it
    (3, 12, 33),      # groups of 4 channels, 11 filters
    (1, 64, 64),
])
def test_the_kernel_transform_has_the_same_bits_at_every_level(dtype, r, flip, groups, cin,
                                                                cout):
    """The kernel's transform, packed for the products, computed in double
    and rounded once, is the same at the baseline level, at x86-64-v3 and at
    the CPU's own (v4: two columns of a micro-panel a step, gathered):
    compared in conv_winograd's working memory, filled with NaN first, with
    signed zeros, values near float32's limits and an infinity among the
    weights (its NaNs must lie in the same places)."""
    rng = np.random.default_rng(12)
    shape = (cin, cout // groups, r, r) if flip else (cout, cin // groups, r, r)
    w = rng.standard_normal(shape)
    w.flat[::7] = 0.0
    w.flat[3::11] = -0.0
    w.flat[5::13] *= 1e37 if dtype == np.float32 else 1e300
    w.flat[-1] = np.inf
    w = w.astype(dtype)
    x = rng.standard_normal((1, cin, 8, 8)).astype(dtype)
    shared, per = _core.winograd_scratch(cin, cout, groups, 4, x.itemsize)
    packs = []
    before = _core.isa()
    try:
        for isa in sorted({1, min(3, before), before}):
            _core.set_isa(isa)
            work = np.full(shared + per, np.nan, dtype)
            _core.conv_winograd(x, w, None, np.empty((1, cout, 8, 8), dtype), work,
                                np.zeros(1, np.intc), r // 2, r // 2, groups, flip, 4, False,
                                1, 1, False)
            packs.append((isa, work[:shared]))
    finally:
        _core.set_isa(before)
    (_, want), *others = packs
    assert np.isnan(want).sum() < want.size // 4   # (the transform was written)
    bits = want.view(np.uint32 if dtype == np.float32 else np.uint64)
    for isa, got in others:
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=str(isa))
        np.testing.assert_array_equal(got.view(bits.dtype)[~nan], bits[~nan], err_msg=str(isa))


def test_filter_parts_need_one_image_of_one_group():
    x = np.zeros((2, 8, 8, 8), np.float32)
    w = np.zeros((16, 8, 3, 3), np.float32)
    shared, per = _core.winograd_scratch(8, 16, 1, 16, 4)
    work, found = np.empty(shared + 2 * per, np.float32), np.zeros(1, np.intc)
    out = np.empty((2, 16, 8, 8), np.float32)
    for xs, parts in (((2, 8, 8, 8), 2), ((1, 8, 8, 8), 5), ((1, 8, 8, 8), 0)):
        with pytest.raises(ValueError, match="parts of the filters need one image"):
            _core.conv_winograd(x[:xs[0]], w, None, out[:xs[0]], work, found, 1, 1, 1, False,
                                16, False, 2, parts, False)   # 16 filters: 4 micro-panels


@pytest.mark.parametrize("pass_", ["forward", "input grad"])
def test_one_image_of_few_tiles_shares_its_filters(pass_, monkeypatch):
    """_engine._winograd_parts_block: one image of few tiles (fewer blocks
    of the cache's size than two per CPU) and enough filters has its
    threads share the filters; a batch, groups, a dilation, few filters or
    many tiles keep the tiles' split.  The public call gives the same bits
    either way, on every thread count."""
    cpus = convx._threads._MAX_THREADS
    monkeypatch.setattr(convx._threads, "_MAX_THREADS", 2)

    def parts_tb(xs, ws, groups=1, dilation=(1, 1)):
        c = _engine.Call("t", "weight", xs, ws, (xs[0], ws[0]) + xs[2:], (1, 1), (1,) * 4,
                         dilation, groups, np.dtype(np.float32))
        cin, cout = (ws[1] * groups, ws[0]) if pass_ == "forward" else (ws[0], ws[1] * groups)
        tiles = xs[0] * -(-xs[2] // 4) * -(-xs[3] // 4)
        return _engine._winograd_parts_block(c, cin, cout, tiles)

    assert parts_tb((1, 128, 28, 28), (128, 128, 3, 3)) == 25     # 49 tiles: 2 blocks of 48
    assert parts_tb((1, 256, 14, 14), (256, 256, 3, 3)) == 16
    assert parts_tb((2, 128, 28, 28), (128, 128, 3, 3)) == 0      # a batch
    assert parts_tb((1, 128, 28, 28), (128, 32, 3, 3), groups=4) == 0
    assert parts_tb((1, 128, 28, 28), (128, 128, 3, 3), dilation=(2, 2)) == 0
    assert parts_tb((1, 24, 28, 28), (24, 24, 3, 3)) == 0          # 6 micro-panels
    assert parts_tb((1, 32, 112, 112), (32, 32, 3, 3)) == 0        # 784 tiles: 7 blocks
    monkeypatch.setattr(convx._threads, "_MAX_THREADS", cpus)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 64, 20, 20)).astype(np.float32)
    w = rng.standard_normal((96, 64, 3, 3)).astype(np.float32)
    g = rng.standard_normal((1, 96, 20, 20)).astype(np.float32)
    kw = dict(padding=1, method="winograd")

    def call():
        _engine.PLANS.clear()
        if pass_ == "forward":
            return convx.conv2d(x, w, **kw)
        return convx.conv2d_input_grad(x.shape, w, g, **kw)

    results = []
    for shared in (True, False):
        if not shared:
            monkeypatch.setattr(_engine, "_winograd_parts_block", lambda *a: 0)
        for threads in thread_counts(1, 2):
            convx.set_num_threads(threads)
            results.append(call())
    _engine.PLANS.clear()
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    ref = reference.conv_nd(x.astype(np.float64), w, None, 1, (1,) * 4) if pass_ == "forward" \
        else reference.conv_nd_input_grad(x.shape, w.astype(np.float64), g, 1, (1,) * 4)
    np.testing.assert_allclose(results[0], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("x_shape, w_shape, groups, dtype, winograd", [
    ((16, 64, 56, 56), (64, 64, 3, 3), 1, np.float32, True),     # the layer
    ((8, 128, 28, 28), (128, 128, 3, 3), 1, np.float32, True),
    ((16, 64, 56, 56), (64, 64, 3, 3), 1, np.float64, False),    # float64: the exact sums
    ((8, 3, 32, 32), (16, 3, 3, 3), 1, np.float32, False),        # few channels
    ((8, 64, 56, 56), (64, 1, 3, 3), 64, np.float32, False),      # depthwise
    ((8, 96, 14, 14), (96, 96, 5, 5), 1, np.float32, True),       # F(2x2, 5x5)
    ((8, 64, 28, 28), (64, 64, 5, 5), 1, np.float32, True),
    ((8, 64, 28, 28), (64, 64, 5, 5), 1, np.float64, False),
    ((8, 8, 28, 28), (16, 8, 5, 5), 1, np.float32, False),        # few channels
])
def test_auto_takes_winograd_where_it_pays(x_shape, w_shape, groups, dtype, winograd):
    for pass_, make in (("forward", _engine.forward_plan),
                        ("input grad", _engine.input_grad_plan)):
        args = (x_shape, w_shape) if pass_ == "forward" else (x_shape, w_shape, x_shape[:1]
                                                              + w_shape[:1] + x_shape[2:])
        plan = make("t", *args, (1, 1), (1,) * 4, (1, 1), groups, dtype=dtype)
        assert (plan[1].name == "winograd") == (winograd and _engine.USE_DIRECT), \
            (pass_, plan[1].name)


def _near_the_top(rng, x_shape, w_shape, dtype, r):
    """Finite x and w whose direct results, the forward pass and the input
    gradient with x as the output gradient, reach 1/4 of the dtype's largest
    number: the products of their transforms overflow (V is up to 100 times
    the input, U of a 5x5 kernel 1.3 times the weights)."""
    x = rng.standard_normal(x_shape)
    w = np.abs(rng.standard_normal(w_shape))   # sums of one sign: no cancelling
    top = max(np.abs(reference.conv_nd(x, w, None, 1, (r // 2,) * 4)).max(),
              np.abs(reference.conv_nd_input_grad(x.shape, w, x, 1, (r // 2,) * 4)).max())
    scale = np.sqrt(np.finfo(dtype).max / 4 / top)
    return (x * scale).astype(dtype), (w * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", [1, 9])
@pytest.mark.parametrize("r", [3, 5])
def test_finite_values_whose_transform_overflows_take_the_other_algorithm(dtype, isa, r):
    """Where the direct sums are finite and Winograd's products or their sums
    overflow, the output transform finds the infinity and the call runs the
    exact algorithm: no NaN or infinity where the exact result is finite
    (before: 2114 of 131072 outputs of a float32 layer, under 'auto')."""
    rng = np.random.default_rng(8)
    x, w = _near_the_top(rng, (2, 8, 14, 14), (8, 8, r, r), dtype, r)
    before = _core.isa()
    _core.set_isa(isa)
    try:
        _engine.PLANS.clear()
        out = np.empty((2, 8, 14, 14), dtype)
        tb = _core.winograd_lanes()
        shared, per = _core.winograd_scratch(8, 8, 1, tb, x.itemsize)
        found = np.zeros(1, np.intc)
        _core.conv_winograd(x, w, None, out, np.empty(shared + 2 * per, dtype), found, r // 2,
                            r // 2, 1, False, tb, False, 1, 1, False)
        assert found[0] == 1                   # the kernel saw its transform overflow
        plan = _engine.forward_plan("t", x.shape, w.shape, (1, 1), (r // 2,) * 4, (1, 1), 1,
                                    method="winograd", dtype=dtype)
        fallback = plan[3][1][1].method
        for pass_, call in (("forward", lambda m: convx.conv2d(x, w, padding=r // 2, method=m)),
                            ("input grad", lambda m: convx.conv2d_input_grad(
                                x.shape, w, x, padding=r // 2, method=m))):
            got = call("winograd")
            assert np.isfinite(got).all(), pass_
            np.testing.assert_array_equal(got, call(fallback), err_msg=pass_)
    finally:
        _core.set_isa(before)
        _engine.PLANS.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", [1, 9])
@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("pass_", ["forward", "input grad"])
@pytest.mark.parametrize("n", [1, 2])
def test_weights_whose_transform_underflows_take_the_other_algorithm(dtype, isa, r, pass_, n,
                                                                      default_threads):
    """A kernel below 2**12 x the smallest normal number would have its
    transform rounded among the subnormal numbers, beyond Winograd's bound
    (weights of 1e-42 in float32: 104 times it): a call with one such
    (filter, channel) kernel, even among normal ones, runs the exact
    algorithm, bit for bit; one whose smallest kernels are at that bound,
    or zero, runs Winograd.  The kernel transform finds them, at the
    baseline level and the CPU's own, on one thread and on several, where
    the threads share one image's filters (n = 1: 40 filters, parts) and
    where they share its tiles (n = 2)."""
    rng = np.random.default_rng(9)
    c, size = (32, 24) if n == 1 else (16, 20)   # (calls the threads share)
    x = rng.standard_normal((n, c, size, size)).astype(dtype)
    g = rng.standard_normal((n, 40, size, size)).astype(dtype)
    base = rng.standard_normal((40, c, r, r)).astype(dtype)
    small = np.finfo(dtype).tiny * 2.0 ** 12
    pads = (r // 2,) * 4

    def with_kernel(f, c, top):
        """base, kernel (f, c) scaled to its largest magnitude ``top``."""
        w, k = base.copy(), base[f, c].astype(np.float64)
        at = np.unravel_index(np.abs(k).argmax(), k.shape)
        if np.isfinite(top):
            k *= top / np.abs(k).max()
        k[at] = np.sign(k[at]) * dtype(top)       # the largest, exactly
        w[f, c] = k
        assert np.array_equal(np.abs(w[f, c]).max(), dtype(top), equal_nan=True)
        return w

    weights = [   # (weights, runs the exact algorithm)
        ((base * dtype(np.finfo(dtype).tiny * 2.0 ** -3)).astype(dtype), True),   # every kernel
        ((base * dtype(np.finfo(dtype).tiny * 2.0 ** 20)).astype(dtype), False),
        (with_kernel(39, c - 1, small / 2), True),  # the last filter's last channel
        (with_kernel(17, c // 2, small * 0.999), True),  # one in a middle micro-panel
        (with_kernel(0, 0, small), False),          # at the bound
        (with_kernel(21, c - 3, 0.0), False),       # zero
        (with_kernel(39, c - 1, np.inf), True),     # not finite (the kernel finds these too)
        (with_kernel(9, 1, np.nan), True),
    ]
    plan_of = {
        "forward": lambda w: _engine.forward_plan("t", x.shape, w.shape, (1, 1), pads, (1, 1), 1,
                                                  method="winograd", dtype=dtype),
        "input grad": lambda w: _engine.input_grad_plan("t", x.shape, w.shape, g.shape, (1, 1),
                                                        pads, (1, 1), 1, method="winograd",
                                                        dtype=dtype),
    }[pass_]
    call = {
        "forward": lambda w, m: convx.conv2d(x, w, padding=r // 2, method=m),
        "input grad": lambda w, m: convx.conv2d_input_grad(x.shape, w, g, padding=r // 2,
                                                           method=m),
    }[pass_]
    want_of = {
        "forward": lambda w: reference.conv_nd(x, w, None, 1, pads),
        "input grad": lambda w: reference.conv_nd_input_grad(x.shape, w, g, 1, pads),
    }[pass_]
    before = _core.isa()
    try:
        _core.set_isa(isa)
        _engine.PLANS.clear()
        plan = plan_of(base)
        cpus = convx._threads._MAX_THREADS
        # (one image: parts where each CPU has enough filters, as on 2 CPUs;
        # the input gradient's "filters" are the c channels)
        if pass_ == "forward" and 1 < cpus and 40 // _engine._MR >= _engine._WINO_PART_PANELS * cpus:
            assert bool(plan[3][0][8]) == (n == 1), plan[3][0]
        fallback = plan[3][1][1].method
        for threads in sorted({1, convx._threads._MAX_THREADS}):
            convx.set_num_threads(threads)
            for k, (w, exact) in enumerate(weights):
                got = call(w, "winograd")
                assert (convx._threads._local.last > 1) == (threads > 1)   # (they shared it)
                same = np.array_equal(got, call(w, fallback), equal_nan=True)
                assert same if exact else not same, (k, threads)
                if np.isfinite(w).all():
                    want = want_of(w)
                    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max(), (k, threads)
    finally:
        _core.set_isa(before)
        _engine.PLANS.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("value", [np.nan, np.inf, "small"])
@pytest.mark.parametrize("threads, parts", [(1, 1), (2, 1), (2, 2)])
def test_the_kernel_transform_stops_the_call_before_its_items(dtype, flip, value, threads,
                                                             parts):
    """A kernel that is not finite, or too small (every weight 1/8 of the
    smallest normal number), is found as the kernel is
    transformed, before any item runs: conv_winograd says so in ``found``
    and leaves every output cell as it was, on one thread and two, with
    and without parts; at every ISA level."""
    rng = np.random.default_rng(13)
    cin, cout, side = 16, 40, 20
    x = rng.standard_normal((1, cin, side, side)).astype(dtype)
    w = rng.standard_normal((cin, cout, 3, 3) if flip else (cout, cin, 3, 3)).astype(dtype)
    if value == "small":
        w[cin - 1 if flip else cout - 1, 2] = np.finfo(dtype).tiny / 8
    else:
        w[3, 5, 2, 1] = value
    before = _core.isa()
    try:
        for isa in sorted({1, before}):
            _core.set_isa(isa)
            tb = 32
            shared, per = _core.winograd_scratch(cin, cout, 1, tb, x.itemsize)
            out = np.full((1, cout, side, side), 7.0, dtype)
            found = np.zeros(1, np.intc)
            assert _core.conv_winograd(x, w, None, out, np.empty(shared + 2 * per, dtype), found,
                                       1, 1, 1, flip, tb, False, threads, parts, False)
            assert found[0] == 1, isa
            assert (out == 7.0).all(), isa
    finally:
        _core.set_isa(before)
