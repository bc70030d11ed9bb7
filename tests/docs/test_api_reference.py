"""The API reference (docs/api.rst) lists every public name of every subpackage.

Each subpackage's ``__all__`` is its public API; a name there that the reference does
not document is a promise without documentation. The reference is read as text, so
this test needs neither Sphinx nor a docs build.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import ensemblekit

API_RST = Path(__file__).resolve().parents[2] / "docs" / "api.rst"


def public_modules() -> list[str]:
    """The package and every public subpackage (or module) under it, recursively."""
    names = ["ensemblekit"]
    for info in pkgutil.walk_packages(ensemblekit.__path__, prefix="ensemblekit."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def documented_names(text: str) -> list[str]:
    """Fully qualified names listed in the ``autosummary`` blocks of an rst text.

    ``.. currentmodule::`` sets the module of the entries that follow it; entries are
    the indented, non-option lines of an ``.. autosummary::`` block.
    """
    module = ""
    names: list[str] = []
    in_block = False
    for line in text.splitlines():
        current = re.match(r"\.\.\s+currentmodule::\s+(\S+)", line)
        if current:
            module, in_block = current.group(1), False
            continue
        if re.match(r"\.\.\s+autosummary::", line):
            in_block = True
            continue
        if not in_block:
            continue
        if line.strip() == "" or line.lstrip().startswith(":"):
            continue
        if not line.startswith((" ", "\t")):
            in_block = False
            continue
        entry = line.strip().lstrip("~")
        names.append(entry if "." in entry and entry.startswith("ensemblekit") else
                     f"{module}.{entry}")
    return names


def resolve(qualified: str):
    module_name, _, attr = qualified.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def missing_from_reference(text: str) -> list[str]:
    """Names in any public ``__all__`` that the reference text does not document.

    A class or function documented under another public path (the estimators live in
    ``ensemblekit`` and ``ensemblekit.estimators``) counts as documented.
    """
    documented = set(documented_names(text))
    documented_objects = set()
    for qualified in documented:
        try:
            obj = resolve(qualified)
        except (ImportError, AttributeError):
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            documented_objects.add(id(obj))
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            if name.startswith("__"):
                continue  # __version__
            obj = getattr(module, name)
            if f"{module_name}.{name}" in documented:
                continue
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) in documented_objects:
                continue
            missing.append(f"{module_name}.{name}")
    return missing


def test_every_public_name_is_in_the_api_reference():
    missing = missing_from_reference(API_RST.read_text(encoding="utf-8"))
    assert not missing, (
        f"public names missing from {API_RST.name} (add them to an autosummary block "
        f"under the right currentmodule): {missing}"
    )


def test_every_api_reference_entry_exists():
    # A stale entry would make the documentation build fail.
    broken = []
    for qualified in documented_names(API_RST.read_text(encoding="utf-8")):
        try:
            resolve(qualified)
        except (ImportError, AttributeError):
            broken.append(qualified)
    assert not broken, f"{API_RST.name} lists names that do not exist: {broken}"


def test_reference_parser_sees_a_removed_entry():
    # The check above is only as good as the parser: dropping one entry from the real
    # reference must make exactly that name (and its aliases) go missing.
    text = API_RST.read_text(encoding="utf-8")
    assert "   pairwise_kl\n" in text
    assert missing_from_reference(text.replace("   pairwise_kl\n", "")) == [
        "ensemblekit.metrics.pairwise_kl"
    ]


def test_reference_parser_reads_modules_and_options():
    text = (
        ".. currentmodule:: ensemblekit.metrics\n\n"
        ".. autosummary::\n   :toctree: generated/\n   :nosignatures:\n\n"
        "   accuracy\n   brier_score\n\nSome prose.\n\n"
        ".. currentmodule:: ensemblekit\n\n.. autosummary::\n\n   DeepEnsembleClassifier\n"
    )
    assert documented_names(text) == [
        "ensemblekit.metrics.accuracy",
        "ensemblekit.metrics.brier_score",
        "ensemblekit.DeepEnsembleClassifier",
    ]


@pytest.mark.parametrize("module_name", public_modules())
def test_all_lists_only_existing_names(module_name):
    module = importlib.import_module(module_name)
    absent = [name for name in getattr(module, "__all__", []) if not hasattr(module, name)]
    assert not absent, f"{module_name}.__all__ lists names it does not define: {absent}"
