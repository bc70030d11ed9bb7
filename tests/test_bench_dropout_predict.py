"""Smoke run of the Monte Carlo dropout prediction benchmark, so that it keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dropout_prediction_benchmark_quick(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_dropout_predict.py"),
                    "--quick", "--threads", "1", "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    data = json.loads((tmp_path / "dropout_predict_cpu_quick.json").read_text())
    assert data["environment"]["load_average_start"] is not None
    for row in data["results"]:
        assert row["max_abs_diff"] < 1e-5 and row["speedup"] > 0
    assert (tmp_path / "dropout_predict_cpu_quick.md").is_file()
