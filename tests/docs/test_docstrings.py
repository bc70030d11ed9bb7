"""numpydoc validation of the public API, without building the documentation.

The checks and exclusions are those of docs/conf.py (``numpydoc_validation_checks``,
``numpydoc_validation_exclude``), read from that file so both stay one list. On top of
them, the user-facing objects must have an Examples section, and the estimators a See
Also section pointing at their rivals.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import ensemblekit

validate = pytest.importorskip("numpydoc.validate").validate

CONF = Path(__file__).resolve().parents[2] / "docs" / "conf.py"

# Subpackages whose every public function and class must show an example.
EXAMPLES_REQUIRED = ("ensemblekit.estimators", "ensemblekit.metrics", "ensemblekit.models",
                     "ensemblekit.datasets", "ensemblekit.landscape", "ensemblekit.plotting")
# Result containers and base classes are shown through the functions that build them.
EXAMPLES_EXEMPT = {"ensemblekit.metrics.EnsembleSizeCurve",
                   "ensemblekit.estimators.BaseNeuralClassifier",
                   "ensemblekit.estimators.BaseNeuralEnsemble",
                   "ensemblekit.estimators.BaseNeuralRegressor"}


def conf_setting(name: str):
    """The literal value assigned to ``name`` in docs/conf.py."""
    for node in ast.parse(CONF.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(f"{name} is not set in {CONF}")


def public_objects() -> list[tuple[str, object]]:
    """(qualified name, object) of every public class, function and public method."""
    modules = ["ensemblekit"] + [
        info.name
        for info in pkgutil.walk_packages(ensemblekit.__path__, prefix="ensemblekit.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    seen: set[int] = set()
    found = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            found.append((f"{module_name}.{name}", obj))
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and (
                        inspect.isfunction(value)
                        or isinstance(value, (property, classmethod, staticmethod))
                    ):
                        found.append((f"{module_name}.{name}.{attr}", value))
    return found


OBJECTS = public_objects()


def active_checks() -> set[str]:
    checks = set(conf_setting("numpydoc_validation_checks"))
    assert "all" in checks, "conf.py is expected to list the checks it turns off"
    return checks - {"all"}


def is_excluded(qualified: str) -> bool:
    return any(re.search(pattern, qualified) for pattern in conf_setting(
        "numpydoc_validation_exclude"))


@pytest.mark.parametrize("qualified", [q for q, _ in OBJECTS])
def test_numpydoc_validation(qualified):
    if is_excluded(qualified):
        pytest.skip("excluded in docs/conf.py")
    ignored = active_checks()
    errors = [f"{code}: {message}" for code, message in validate(qualified)["errors"]
              if code not in ignored]
    assert not errors, f"{qualified}:\n" + "\n".join(errors)


@pytest.mark.parametrize("qualified", [
    q for q, obj in OBJECTS
    if q.startswith(EXAMPLES_REQUIRED) and q.count(".") == 2 and q not in EXAMPLES_EXEMPT
])
def test_user_facing_objects_have_examples(qualified):
    codes = {code for code, _ in validate(qualified)["errors"]}
    assert "EX01" not in codes, f"{qualified} has no Examples section"


@pytest.mark.parametrize("name", ["DeepEnsembleClassifier", "SWAGClassifier",
                                  "DropoutClassifier", "SubspaceSamplingClassifier"])
def test_estimators_point_at_their_rivals(name):
    codes = {code for code, _ in validate(f"ensemblekit.{name}")["errors"]}
    assert "SA01" not in codes, f"ensemblekit.{name} has no See Also section"


def test_validation_catches_a_bad_docstring():
    # The same call flags what the suite is meant to catch.
    def undocumented(x, y):
        """returns the sum"""
        return x + y

    undocumented.__module__ = __name__
    globals()["undocumented"] = undocumented
    codes = {code for code, _ in validate(f"{__name__}.undocumented")["errors"]}
    assert {"SS02", "SS03", "PR01"} <= codes - active_checks()
