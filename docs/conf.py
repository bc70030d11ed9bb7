"""Sphinx configuration of the ensemblekit documentation.

Build with ``bash scripts/run.sh docs`` (warnings are errors) or
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
# The examples run on the CPU (same numbers everywhere) in one thread: on a machine
# shared with other jobs, more threads only wait for each other. Set before torch loads.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import ensemblekit  # noqa: E402

project = "ensemblekit"
author = "ensemblekit developers"
copyright = "ensemblekit developers"
release = ensemblekit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/*.ipynb", "**.codeobj.json",
                    "sg_execution_times.rst"]
templates_path = ["_templates"]
html_static_path: list[str] = []

# -- Markdown pages (myst) ----------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference ------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"  # numpydoc sections carry the types
add_module_names = False

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Every public docstring is checked while the API reference is built; a failure is a
# warning, hence an error under ``-W``. Extended summary, See Also and Examples are
# required per object by tests/test_docstrings.py rather than here, and a return value
# may be named (``name : type``), as in scikit-learn.
numpydoc_validation_checks = {"all", "ES01", "SA01", "EX01", "RT02", "GL08"}
numpydoc_validation_exclude = {
    # Hooks whose contract is the base class's (torch.nn.Module, skorch callbacks).
    r"\.forward$",
    r"\.on_\w+$",
    r"\.initialize$",
    r"\.extra_repr$",
    # Constants: their documentation is the value shown.
    r"\.[A-Z][A-Z0-9_]+$",
    # Methods inherited from scikit-learn, torch and skorch base classes.
    r"\.(get_params|set_params|score|get_metadata_routing|set_score_request)$",
    r"\.(set_fit_request|set_predict_request|set_predict_proba_request)$",
}

# -- Cross-references to other projects --------------------------------------------------
# CI reaches package registries only, so inventories are never fetched at build time
# unless asked for: a vendored inventory in docs/_intersphinx/<name>.inv is used when
# present (docs/scripts/fetch_intersphinx.py writes them where there is internet), and
# ENSEMBLEKIT_DOCS_ONLINE=1 fetches the live ones. Otherwise intersphinx
# has nothing to load and references to these projects render as plain text.
_INTERSPHINX_URLS = {
    "python": "https://docs.python.org/3",
    "numpy": "https://numpy.org/doc/stable",
    "scipy": "https://docs.scipy.org/doc/scipy",
    "sklearn": "https://scikit-learn.org/stable",
    "torch": "https://docs.pytorch.org/docs/stable",
    "skorch": "https://skorch.readthedocs.io/en/stable",
    "matplotlib": "https://matplotlib.org/stable",
}
_online = os.environ.get("ENSEMBLEKIT_DOCS_ONLINE", "") == "1"
intersphinx_mapping = {}
for _name, _url in _INTERSPHINX_URLS.items():
    _vendored = HERE / "_intersphinx" / f"{_name}.inv"
    if _vendored.is_file():
        intersphinx_mapping[_name] = (_url, str(_vendored))
    elif _online:
        intersphinx_mapping[_name] = (_url, None)
intersphinx_timeout = 10

# -- Example gallery ----------------------------------------------------------------------
# The examples are executed at every build (on the CPU, see above) and must stay small:
# the whole gallery runs in well under three minutes. ENSEMBLEKIT_DOCS_GALLERY=False
# builds the pages without running them.
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # Only plot_*.py files are gallery examples; other scripts in examples/ are plain
    # command-line programs (quickstart.py, for instance).
    "ignore_pattern": r"(^|[\\/])(?!plot_)[^\\/]*\.py$",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "plot_gallery": os.environ.get("ENSEMBLEKIT_DOCS_GALLERY", "True"),
    "abort_on_example_error": True,
    "show_memory": False,
    "reference_url": {"ensemblekit": None},
    "matplotlib_animations": False,
}

# -- HTML -------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"ensemblekit {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
html_show_sourcelink = False


# Methods that scikit-learn's metadata routing adds to every estimator document
# scikit-learn's API, not ours, and cross-reference its glossary.
_SKIPPED_MEMBERS = {"get_metadata_routing"}


def _skip_member(app, what, name, obj, skip, options):
    if name in _SKIPPED_MEMBERS or (name.startswith("set_") and name.endswith("_request")):
        return True
    # Fields of a NamedTuple are documented in the class's Parameters section.
    if what == "class" and (getattr(obj, "__doc__", None) or "").startswith("Alias for field"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
