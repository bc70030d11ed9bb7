"""The documentation builds without a warning (the gallery's examples not executed).

CI builds the whole site with ``bash scripts/run.sh docs``; this test catches the same
warnings earlier, in the test suite, wherever Sphinx and the docs extra are installed:
a page missing from the table of contents, a broken cross-reference, a docstring that
fails numpydoc's validation, a heading out of order. It builds a copy of docs/ and
examples/ with the ``dummy`` builder (every phase but writing HTML).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

for _requirement in ("sphinx", "numpydoc", "sphinx_gallery", "myst_parser",
                     "pydata_sphinx_theme"):
    pytest.importorskip(_requirement)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns(
        "_build", "generated", "auto_examples", "sg_execution_times.rst"))
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "ENSEMBLEKIT_DOCS_GALLERY": "False",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "dummy",
         str(tmp_path / "docs"), str(tmp_path / "build")],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )
    assert result.returncode == 0, (
        "the documentation build has warnings (run `bash scripts/run.sh docs`):\n"
        + result.stderr[-6000:]
    )
