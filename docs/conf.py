"""Sphinx configuration of convx's documentation site.

Build (from a clone): ``pip install ".[docs]"`` then
``python -m sphinx -W -b html docs docs/_build/html``.  The Markdown pages are
read by MyST; the API reference is autodoc over the installed package, its
docstrings in numpydoc style.  ``python -m sphinx -W -b doctest docs OUT``
runs the examples of the API reference's docstrings (tests/test_docs.py runs
them too, and the pages' Python blocks); .ci/docs does both and checks the
pages in headless Chromium (docs/check_render.py).
"""
import convx

project = "convx"
author = "the convx authors"
copyright = "the convx authors, BSD-3-Clause"
version = release = convx.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# The build goes to _build/ when built in place (git ignores it).
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: ::: fences, definition lists, and anchors for the headings, so that
# the pages can link to each other's sections.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: signatures as written; members in the order of the source.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autosummary_generate = False

# numpydoc renders the docstrings' sections; the class pages list their
# members themselves.
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"convx {release}"
html_theme_options = {
    "navigation_depth": 2,
    "header_links_before_dropdown": 6,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# The section navigation on the left for the pages that have sections (the
# API reference, the performance pages); the single pages use the width.
html_sidebars = {"**": ["sidebar-nav-bs"]}
html_sidebars.update({page: [] for page in (
    "index", "quickstart", "notebook", "conventions", "examples", "reliability", "scaling",
    "design", "changelog")})
html_static_path = []
html_last_updated_fmt = None

# The doctest builder (python -m sphinx -b doctest docs OUT) runs the examples
# of the API reference's docstrings, with the flags tests/test_docs.py uses.
import doctest

doctest_global_setup = "import numpy as np\nimport convx"
doctest_default_flags = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
                         | doctest.DONT_ACCEPT_TRUE_FOR_1)
