"""The README's code runs as written, and shows what it says."""
import pathlib
import re

import numpy as np

from conftest import optional  # (tests/conftest.py)

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def _run(block):
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102  (the README's own code)
    return namespace


def test_readme_python_blocks_run():
    """Every block but convx.dask's (test_readme_dask_block_runs)."""
    blocks = [block for block in _blocks("python") if "dask" not in block]
    assert len(blocks) >= 3
    namespaces = [_run(block) for block in blocks]
    drop_in, layers, api = namespaces[0], namespaces[1], namespaces[2]
    assert drop_in["out"].shape == (10, 16, 32, 32)
    assert drop_in["d_param"].shape == (3, 16, 5, 5)
    assert layers["y"].shape == (10, 16, 32, 32) and layers["dx"].shape == (10, 3, 32, 32)
    assert layers["conv"].weight_grad.shape == (16, 3, 5, 5)
    assert np.allclose(layers["conv"].bias_grad, 10 * 32 * 32)
    assert api["y"].shape == (32, 32, 32, 32) and api["y"].dtype == np.float32
    assert api["dx"].shape == api["x"].shape and api["dw"].shape == api["w"].shape
    assert np.allclose(api["db"], api["g"].sum(axis=(0, 2, 3)))


def test_readme_dask_block_runs():
    optional("dask.array")
    blocks = [block for block in _blocks("python") if "dask" in block]
    assert len(blocks) == 1
    lazy = _run(blocks[0])                                 # convx.dask
    assert lazy["ys"].shape == (16, 8, 256, 256) and lazy["ys"].dtype == np.float32
    assert lazy["ys"].chunks[2:] == ((130, 126), (130, 126))   # output 130 starts at row 128
    assert lazy["tile"].shape == (4, 8, 128, 128)


def test_readme_opens_with_the_two_setup_commands():
    text = README.read_text()
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert first_block == ['pip install . && python -m convx',
                           'pip install ".[test]" && python -m pytest']
    assert text.index("```sh") < text.index("```python")


def test_docstring_examples_run():
    """The examples in the public docstrings (API and layers) give what they show."""
    import doctest

    import convx._api
    import convx.layers
    for module in (convx._api, convx.layers):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 6 and result.failed == 0, (module.__name__, result)
