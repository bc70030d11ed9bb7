"""Smoke run of the OOD example script, so that it keeps working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ood_digits_example_runs():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ood_digits.py"), "--members", "2",
         "--epochs", "3"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "OOD set" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == [
        "digits 5-9", "uniform noise", "gaussian_noise 1", "gaussian_noise 3", "gaussian_noise 5"
    ]
    for row in rows:
        values = [float(v) for v in row.strip(" |").split(" | ")[1:]]
        assert len(values) == 6 and all(0.0 <= v <= 1.0 for v in values)
