"""Print the declared minimum version of each core dependency as ``name==floor``, one a line.

The floors are the ``>=`` bounds of ``[project] dependencies`` in pyproject.toml; a core
dependency without one is an error, since nothing would then say which release to test.
Usage: ``python scripts/min_requirements.py [pyproject.toml]``.
"""

from __future__ import annotations

import re
import sys

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def floors(path: str) -> list[str]:
    with open(path, "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    pins = []
    for requirement in dependencies:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        name, extras, specifiers = match.group(1), match.group(2) or "", match.group(3)
        lower = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
        if len(lower) != 1:
            raise SystemExit(f"{requirement!r} must declare exactly one '>=' floor")
        pins.append(f"{name}{extras}=={lower[0]}")
    return pins


if __name__ == "__main__":
    print("\n".join(floors(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")))
