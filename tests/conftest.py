"""Shared pytest configuration: the hypothesis profiles, the reference's
import path and the fixture that runs a test through both kernel paths.

* ``ci`` (the default): deterministic (derandomize, no example database), at
  least 300 examples for every ``@given`` test, so each fuzzed pass of
  tests/test_fuzz.py gets >= 300 cases in every CI run;
* ``long``: random, >= 5,000 examples per test; run it before resolving a
  reliability issue::

      python -m pytest tests/test_fuzz.py --hypothesis-profile=long --hypothesis-show-statistics

Both disable the per-example deadline (timings on a loaded 2-core CI machine
are noise) and the health checks that only complain about slow or large
examples, and print the blob that replays a failure (``@reproduce_failure``).

``optional(name)``: the tests that need an optional package import it through
this one helper (``from conftest import optional``), which skips them where
the package is absent, as in a bare install of the wheel, and fails them
instead where CI's main environment requires every optional package
(``CONVX_REQUIRE_OPTIONAL=1``; ``CONVX_REQUIRE_TORCH=1`` for torch alone).
"""
import contextlib
import importlib
import io
import os
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, settings

import convx._engine

# --import-mode=importlib puts nothing on sys.path; the test modules import
# their sibling tests/reference.py (the pure-NumPy oracle) as ``reference``.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
# pytest imports this file as tests.conftest; the test modules' ``from
# conftest import optional`` then finds this very module, not a second copy.
sys.modules.setdefault("conftest", sys.modules[__name__])

# The optional packages (import names) the tests use; the `test` extra has all
# but torch, which CI installs itself (.ci/run).
OPTIONAL = {"torch", "threadpoolctl", "sklearn", "tqdm", "matplotlib", "mnist1d", "dask",
            "distributed", "mypy", "pyright"}


def _required(top):
    if os.environ.get("CONVX_REQUIRE_OPTIONAL") == "1":
        return "CONVX_REQUIRE_OPTIONAL=1"
    if top == "torch" and os.environ.get("CONVX_REQUIRE_TORCH") == "1":
        return "CONVX_REQUIRE_TORCH=1"
    return None


def optional(name, *, skip=True):
    """The optional module *name* (``"torch"``, ``"dask.array"``...), imported.

    Where it does not import: a skip of the calling test, or of the whole
    module when called at its top level (or ``None`` with ``skip=False``, for
    a module that marks its few tests itself); a failure instead where the
    environment requires it (CONVX_REQUIRE_OPTIONAL=1, CONVX_REQUIRE_TORCH=1).
    """
    __tracebackhide__ = True  # a skip or failure is reported at the caller's line
    top = name.partition(".")[0]
    assert top in OPTIONAL, f"{top} is not one of conftest.OPTIONAL"
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        error = exc
    required = _required(top)
    if required:
        pytest.fail(f"{required}: the optional package {name!r} is required here "
                    f"but does not import ({error})", pytrace=False)
    if skip:
        pytest.skip(f"optional package {name!r} is not installed ({error})",
                    allow_module_level=True)
    return None


_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

settings.register_profile("ci", max_examples=300, derandomize=True, database=None, **_COMMON)
settings.register_profile("long", max_examples=5000, derandomize=False, **_COMMON)


def pytest_configure(config):
    # The hypothesis plugin loads --hypothesis-profile=NAME itself; without
    # that option the deterministic "ci" profile is the default.
    if not config.getoption("--hypothesis-profile", default=None):
        settings.load_profile("ci")
    # When a @given test fails, hypothesis's pytest plugin imports libcst (if
    # installed) to suggest a patch; libcst's import warns through
    # mypy_extensions, and filterwarnings=error turns the failure report into
    # an INTERNALERROR that hides the failing example.  Ignore only that one
    # third-party warning (appended, so it takes precedence over "error").
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


@pytest.fixture(params=["direct", "im2col"])
def kernel_path(request, monkeypatch):
    """Run a test through both implementations of the unit-stride passes: the
    direct SIMD kernel and im2col + GEMM (convx._engine.USE_DIRECT; on a CPU
    without AVX2 the direct kernel runs its slow baseline clone here).  The
    cached plans hold the path they chose, so the test gets an empty cache of
    its own."""
    monkeypatch.setattr(convx._engine, "USE_DIRECT", request.param == "direct")
    monkeypatch.setattr(convx._engine, "PLANS", {})
    return request.param


def show_config_text():
    """What convx.show_config() prints, as a string."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        convx.show_config()
    return out.getvalue()


def thread_counts(*counts):
    """Those of ``counts`` this process may use: set_num_threads refuses more
    threads than the CPUs it may run on, so on a machine (or a cpuset, a
    ``taskset``) of one CPU ``thread_counts(1, 2)`` is ``(1,)``."""
    return tuple(n for n in counts if n <= convx._threads._MAX_THREADS)


def at_each_thread_count(call):
    """``[call()]`` at 1 thread and at 2 (where this process may use 2), the
    thread count back at its default after each."""
    runs = []
    for threads in thread_counts(1, 2):
        convx.set_num_threads(threads)
        try:
            runs.append(call())
        finally:
            convx.set_num_threads(None)
    return runs


@pytest.fixture
def default_threads():
    """The test may set convx's thread count; it starts and ends at the default."""
    convx.set_num_threads(None)
    yield
    convx.set_num_threads(None)
