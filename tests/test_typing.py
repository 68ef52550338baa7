"""convx is typed: mypy --strict and pyright pass on a user's script
(tests/typecheck/user_script.py) and on the package, the stub of the compiled
_core names what the extension defines, and the wheel ships both.

The checkers are the ``typecheck`` extra (also in ``test``): mypy and
pyright, configured in pyproject.toml ([tool.mypy], [tool.pyright]: pyright's
"standard" mode).  PyPI's pyright wheel carries pyright, and its ``nodejs``
extra a node, so nothing is fetched from npm.  A checker that is not
installed skips its tests, as every optional package's do, unless
CONVX_REQUIRE_OPTIONAL=1 (CI's main run), which fails them (conftest.optional).
"""
import ast
import inspect
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import convx
import convx._core
from conftest import optional  # (tests/conftest.py)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "typecheck" / "user_script.py"
PACKAGE = pathlib.Path(convx.__file__).resolve().parent
STUB = ROOT / "src" / "convx" / "_core.pyi"

pytestmark = pytest.mark.slow  # each checker takes seconds, mypy's first run a minute


def _tool(module, executable=None):
    """The command that runs ``module`` (``python -m module``), or a skip
    (a failure where CI requires the optional packages: conftest.optional)."""
    optional(module)
    if executable is not None:
        path = shutil.which(executable, path=os.path.dirname(sys.executable))
        if path is None:
            pytest.skip(f"{executable} is not on the path of {sys.executable}")
        return [path]
    return [sys.executable, "-m", module]


def _run(command):
    # From the repository's root, so that the checkers read pyproject.toml's
    # [tool.mypy] and [tool.pyright] (which find convx in src/).
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_user_script_runs():
    if sys.version_info < (3, 11):   # the script's assert_type
        pytest.importorskip("typing_extensions")
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """mypy's cache, shared by the two runs, outside the tree."""
    return str(tmp_path_factory.mktemp("mypy-cache"))


def test_mypy_strict_user_script(mypy_cache):
    out = _run(_tool("mypy") + ["--strict", "--cache-dir", mypy_cache,
                                str(SCRIPT.relative_to(ROOT))])
    assert "Success" in out


def test_mypy_strict_package(mypy_cache):
    out = _run(_tool("mypy") + ["--strict", "--cache-dir", mypy_cache, "-p", "convx"])
    assert "Success" in out


def test_pyright_user_script():
    out = _run(_tool("pyright", "pyright") + [str(SCRIPT.relative_to(ROOT))])
    assert "0 errors" in out


def test_pyright_package():
    # all of src/convx but dask.py and __main__.py ([tool.pyright]'s exclude
    # says why; mypy --strict checks them)
    out = _run(_tool("pyright", "pyright") + ["src/convx"])
    assert "0 errors" in out


def _stub_names():
    """The public names _core.pyi defines: its functions and variables."""
    names = set()
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def test_core_stub_names_what_the_extension_defines():
    module = {name for name in dir(convx._core) if not name.startswith("_")}
    assert _stub_names() == module
    callables = {name for name in module if callable(getattr(convx._core, name))}
    assert callables == module - {"STACK_SCRATCH"}


def test_core_stub_parameters_match_the_extension():
    """Each stub function's parameters are the extension function's, by name
    and in order (Cython's functions carry their signatures)."""
    for node in ast.parse(STUB.read_text()).body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        stub = [a.arg for a in node.args.posonlyargs + node.args.args]
        real = list(inspect.signature(getattr(convx._core, node.name)).parameters)
        assert stub == real, node.name


def test_markers_shipped_with_the_package():
    """py.typed and the stub sit beside the imported package (in a wheel or
    sdist install, where pyproject's package-data put them)."""
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_core.pyi").is_file()
