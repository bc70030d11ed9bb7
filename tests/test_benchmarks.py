"""Smoke runs of the benchmark scripts, so that they keep working."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], check=True,
                   capture_output=True, timeout=300)


def test_engine_benchmark_quick(tmp_path):
    _run("bench_engine.py", "--quick", "--cases", "mlp", "--threads", "1", "--out",
         str(tmp_path))
    (result,) = tmp_path.glob("engine_cpu*.json")
    data = json.loads(result.read_text())
    text = json.dumps(data)
    for method in ("sequential-skorch", "plain-loop", "vectorized", "ceiling"):
        assert method in text
    assert (tmp_path / result.name.replace(".json", ".md")).is_file()


def _write_fake_cifar10(home: Path, rng: np.random.Generator) -> None:
    # The official "python version" layout, with random pixels: enough to run the script.
    folder = home / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, n: int) -> None:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, size=n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", 320)
    dump("test_batch", 500)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)


@pytest.mark.slow
def test_paper_script_quick(tmp_path):
    _write_fake_cifar10(tmp_path / "data", np.random.default_rng(0))
    args = ["--quick", "--precision", "fp32", "--device", "cpu", "--workers", "2",
            "--data-home", str(tmp_path / "data"), "--out", str(tmp_path),
            "--model-cache", str(tmp_path / "models")]
    _run("paper_mediumcnn.py", *args)
    (result,) = tmp_path.glob("paper_mediumcnn_quick_*.json")
    data = json.loads(result.read_text())
    assert len(list((tmp_path / "models").glob("*.pkl"))) == 1
    # A rerun resumes from the saved members and reproduces the same evaluation.
    _run("paper_mediumcnn.py", *args)
    again = json.loads(result.read_text())
    assert again["clean"] == data["clean"]
    assert data["config"]["members"] == 2
    assert set(data["shift"]) == {str(s) for s in range(6)}
    assert 0.0 <= data["clean"]["accuracy"]["1"] <= 1.0
    assert 0.0 <= data["clean"]["brier"]["2"] <= 2.0


@pytest.mark.slow
def test_engine_benchmark_prediction_case(tmp_path):
    _run("bench_engine.py", "--quick", "--cases", "predict", "--threads", "1", "--out",
         str(tmp_path), "--prefix", "latency")
    (result,) = tmp_path.glob("latency_cpu*.json")
    (entry,) = json.loads(result.read_text())["cases"]
    assert entry["kind"] == "prediction"
    assert {r["method"] for r in entry["results"]} == {
        "plain-loop", "predict_proba", "predict_proba (uncached)"}
    assert {r["rows"] for r in entry["results"]} == {64, 1_000, 10_000}
    assert "Load average" in (tmp_path / result.name.replace(".json", ".md")).read_text()


@pytest.mark.slow
def test_scale_benchmark_quick(tmp_path):
    _run("bench_scale.py", "--quick", "--parts", "a,b,c", "--out", str(tmp_path))
    (result,) = tmp_path.glob("scale_*quick.json")
    data = json.loads(result.read_text())
    without, with_memory = data["a"]["results"]
    assert without["members_trained_per_fold"] == 15
    assert with_memory["members_trained_per_fold"] == 8
    assert data["a"]["max_abs_score_difference"] == 0.0
    assert [r["engine"] for r in data["b"]["results"]] == ["vectorized", "sequential"]
    assert (tmp_path / result.name.replace(".json", ".md")).is_file()


@pytest.mark.slow
def test_refresh_benchmark_quick(tmp_path):
    _run("bench_refresh.py", "--quick", "--repeats", "1", "--threads", "1", "--cases",
         "mlp-bn", "--out", str(tmp_path))
    data = json.loads((tmp_path / "refresh_cpu_quick.json").read_text())
    (entry,) = data["cases"]
    assert [r["method"] for r in entry["results"]] == ["per-sample", "grouped", "grouped (all)"]
    assert all(r["max_relative_difference"] <= 1e-4 for r in entry["results"])
    assert "Load average" in (tmp_path / "refresh_cpu_quick.md").read_text()
