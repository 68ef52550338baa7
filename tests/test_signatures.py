"""``from convx import *`` brings the notebook's 28 functions with its exact signatures.

The expected table is transcribed by hand from the notebook
(/work/shared/seed/000_289c8cb12a365f73.txt), one ``def`` per row, rather than
parsed from it at test time.  A learner's notebook calls these functions by
position and by keyword, so names, order, defaults and parameter kinds all
matter.
"""
import inspect

import pytest

import convx

NO_DEFAULT = object()   # sentinel: the notebook's parameter has no default

# name -> ((parameter name, default or NO_DEFAULT), ...), in notebook order.
NOTEBOOK_SIGNATURES = {
    # Helper objects, In [3]-[4]
    "assert_same_shape": (("output", NO_DEFAULT), ("output_grad", NO_DEFAULT)),
    "assert_dim": (("t", NO_DEFAULT), ("dim", NO_DEFAULT)),
    # 1-D, In [6]-[16]
    "_pad_1d": (("inp", NO_DEFAULT), ("num", NO_DEFAULT)),
    "conv_1d": (("inp", NO_DEFAULT), ("param", NO_DEFAULT)),
    "conv_1d_sum": (("inp", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_param_grad_1d": (("inp", NO_DEFAULT), ("param", NO_DEFAULT), ("output_grad", None)),
    "_input_grad_1d": (("inp", NO_DEFAULT), ("param", NO_DEFAULT), ("output_grad", None)),
    # 1-D batch, In [21]-[36]
    "_pad_1d_batch": (("inp", NO_DEFAULT), ("num", NO_DEFAULT)),
    "conv_1d_batch": (("inp", NO_DEFAULT), ("param", NO_DEFAULT)),
    "input_grad_1d_batch": (("inp", NO_DEFAULT), ("param", NO_DEFAULT)),
    "param_grad_1d_batch": (("inp", NO_DEFAULT), ("param", NO_DEFAULT)),
    "conv_1d_batch_sum": (("inp", NO_DEFAULT), ("fil", NO_DEFAULT)),
    # 2-D, In [40]-[52]
    "_pad_2d": (("inp", NO_DEFAULT), ("num", NO_DEFAULT)),
    "_pad_2d_obs": (("inp", NO_DEFAULT), ("num", NO_DEFAULT)),
    "_compute_output_obs_2d": (("obs", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_compute_output_2d": (("img_batch", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_compute_grads_obs_2d": (("input_obs", NO_DEFAULT), ("output_grad_obs", NO_DEFAULT),
                              ("param", NO_DEFAULT)),
    "_compute_grads_2d": (("inp", NO_DEFAULT), ("output_grad", NO_DEFAULT),
                          ("param", NO_DEFAULT)),
    "_param_grad_2d": (("inp", NO_DEFAULT), ("output_grad", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_compute_output_2d_sum": (("img_batch", NO_DEFAULT), ("param", NO_DEFAULT)),
    # Channels + batch, In [61]-[64] and the sum cell
    "_pad_2d_channel": (("inp", NO_DEFAULT), ("num", NO_DEFAULT)),
    "_pad_conv_input": (("inp", NO_DEFAULT), ("num", NO_DEFAULT)),
    "_compute_output_obs": (("obs", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_output": (("inp", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_compute_grads_obs": (("input_obs", NO_DEFAULT), ("output_grad_obs", NO_DEFAULT),
                           ("param", NO_DEFAULT)),
    "_input_grad": (("inp", NO_DEFAULT), ("output_grad", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_param_grad": (("inp", NO_DEFAULT), ("output_grad", NO_DEFAULT), ("param", NO_DEFAULT)),
    "_compute_output_sum": (("imgs", NO_DEFAULT), ("param", NO_DEFAULT)),
}

# The 28 names exactly as the issue lists them.
ISSUE_NAMES = [
    "assert_same_shape", "assert_dim", "_pad_1d", "conv_1d", "conv_1d_sum",
    "_param_grad_1d", "_input_grad_1d", "_pad_1d_batch", "conv_1d_batch",
    "input_grad_1d_batch", "param_grad_1d_batch", "conv_1d_batch_sum", "_pad_2d",
    "_pad_2d_obs", "_compute_output_obs_2d", "_compute_output_2d", "_compute_grads_obs_2d",
    "_compute_grads_2d", "_param_grad_2d", "_compute_output_2d_sum", "_pad_2d_channel",
    "_pad_conv_input", "_compute_output_obs", "_output", "_compute_grads_obs",
    "_input_grad", "_param_grad", "_compute_output_sum",
]


@pytest.fixture(scope="module")
def star_namespace():
    """What a notebook cell ``from convx import *`` puts in the notebook's globals."""
    namespace = {}
    exec("from convx import *", namespace)  # noqa: S102  (the star import, as a notebook runs it)
    return namespace


def test_the_table_covers_the_issues_28_names():
    assert len(ISSUE_NAMES) == 28
    assert len(set(ISSUE_NAMES)) == 28
    assert list(NOTEBOOK_SIGNATURES) == ISSUE_NAMES


def test_dunder_all_contains_all_28():
    missing = [name for name in ISSUE_NAMES if name not in convx.__all__]
    assert missing == []
    assert len(convx.__all__) == len(set(convx.__all__)), "duplicates in convx.__all__"


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_star_import_brings_the_function(star_namespace, name):
    assert name in star_namespace, f"'from convx import *' does not bring {name}"
    func = star_namespace[name]
    assert callable(func)
    assert func is getattr(convx, name)


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_signature_matches_the_notebook(star_namespace, name):
    sig = inspect.signature(star_namespace[name])
    got = tuple(
        (p.name, NO_DEFAULT if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
    )
    want = NOTEBOOK_SIGNATURES[name]
    assert [n for n, _ in got] == [n for n, _ in want], f"{name}: parameter names/order"
    for (pname, got_default), (_, want_default) in zip(got, want):
        assert got_default is want_default, (
            f"{name}({pname}): default {got_default!r}, notebook has "
            f"{'none' if want_default is NO_DEFAULT else repr(want_default)}")


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_parameters_are_plain_positional_or_keyword(star_namespace, name):
    """The notebook's plain ``def``s accept every argument by position or by name."""
    sig = inspect.signature(star_namespace[name])
    kinds = {p.name: p.kind for p in sig.parameters.values()}
    assert all(k is inspect.Parameter.POSITIONAL_OR_KEYWORD for k in kinds.values()), kinds
