"""OpenMP as built: a batch call runs get_num_threads() threads where the
extension has OpenMP, one where it has none, and show_config() says which
(setup.py picks the OpenMP flag for the compiler it runs, and builds without
OpenMP, said aloud, where that compiler has none)."""
import numpy as np
import pytest

import convx
from conftest import show_config_text  # (tests/conftest.py)

METHODS = ["gemm", "direct", "winograd"]


def _batch(method):
    """A batch call large enough to be split over threads (32 images)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 8, 48, 48)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    return convx.conv2d(x, w, padding=1, method=method)


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_call_runs_get_num_threads_threads(method):
    if not convx._core.openmp_enabled():
        pytest.skip("built without OpenMP (see test_without_openmp_a_call_runs_one_thread)")
    if convx._threads._MAX_THREADS < 2:
        pytest.skip("needs two CPUs")
    before = convx.get_num_threads()
    try:
        for n in (1, 2):
            convx.set_num_threads(n)
            assert convx.get_num_threads() == n
            _batch(method)
            assert convx._core.threads_seen() == n, (method, n)
    finally:
        convx.set_num_threads(before)


def test_without_openmp_a_call_runs_one_thread():
    if convx._core.openmp_enabled():
        pytest.skip("built with OpenMP")
    before = convx.get_num_threads()
    try:
        convx.set_num_threads(convx._threads._MAX_THREADS)
        _batch("gemm")
        assert convx._core.threads_seen() == 1
    finally:
        convx.set_num_threads(before)


def test_show_config_says_how_it_was_built():
    text = show_config_text()
    openmp = next(line for line in text.splitlines() if line.strip().startswith("OpenMP:"))
    assert ("yes" in openmp) == convx._core.openmp_enabled(), text
    simd = next(line for line in text.splitlines() if line.strip().startswith("SIMD kernels:"))
    assert ("portable" in simd) == convx._core.portable(), text
    if convx._core.portable():
        assert convx._core.isa() == 1
        assert not convx._core.channels_wide()
    threads = next(line for line in text.splitlines() if line.strip().startswith("threads:"))
    if convx._core.openmp_enabled():
        assert threads.split()[1] == str(convx.get_num_threads()), text
    else:
        assert threads.split()[1] == "1" and "no OpenMP" in threads, text
