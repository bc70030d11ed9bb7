"""Scale-out benchmark: the member cache in a grid search, worker processes, devices.

All parts run in one process, each against its baseline measured in the same run:

* ``a``: ``GridSearchCV`` over ``n_estimators`` in [1, 2, 4, 8] with 3-fold cross
  validation, without and with ``memory`` (a fresh folder): members trained (summed
  ``n_members_trained_`` over all fits, the refit included), wall time, and the
  largest difference between the two searches' test scores;
* ``b``: 8 members trained in this process (``n_jobs=1``) and over 2 loky worker
  processes (``n_jobs=2``), for the vectorised engine and the sequential one; the
  worker pool is started (and timed) before the measurements;
* ``c``: on a CUDA machine, 8 members on one GPU (``device="cuda"``) and sharded over
  every GPU (``devices="all"``); skipped without CUDA.

Data: scikit-learn's digits (1,797 rows of 64 pixels, 10 classes), standardised; an
MLP with one hidden layer.

Usage::

    python benchmarks/bench_scale.py [--quick] [--parts a,b,c] [--out benchmarks/results]

Results go to ``<out>/scale_<device>[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ensemblekit import DeepEnsembleClassifier  # noqa: E402

GRID = [1, 2, 4, 8]


def _load() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def _load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def environment(device: str) -> dict[str, Any]:
    """Versions, machine and load, recorded next to the numbers."""
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    return {
        "device": device,
        "device_name": name,
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "joblib": joblib.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "load_average_start": _load_average(),
    }


def _trained(estimator: Any, X: Any, y: Any) -> int:
    return int(estimator.n_members_trained_)


def part_a(X: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """Grid search over n_estimators without and with a member cache."""
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scoring = {"accuracy": "accuracy", "trained": _trained}
    rows = []
    scores = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, memory in (("without memory", None), ("with memory", folder)):
            est = DeepEnsembleClassifier(**params, memory=memory)
            search = GridSearchCV(est, {"n_estimators": GRID}, cv=cv, scoring=scoring,
                                  refit="accuracy")
            start = time.perf_counter()
            search.fit(X, y)
            wall = time.perf_counter() - start
            in_cv = int(sum(search.cv_results_[f"split{k}_test_trained"].sum()
                            for k in range(3)))
            refit = int(search.best_estimator_.n_members_trained_)
            scores[label] = np.array([search.cv_results_[f"split{k}_test_accuracy"]
                                      for k in range(3)])
            rows.append({
                "setting": label, "wall_s": round(wall, 3),
                "members_trained_in_cv": in_cv, "members_trained_per_fold": in_cv / 3,
                "members_trained_in_refit": refit,
                "mean_test_accuracy": [round(float(v), 4)
                                       for v in search.cv_results_["mean_test_accuracy"]],
                "best_n_estimators": int(search.best_params_["n_estimators"]),
            })
            print(f"  (a) {label}: {wall:.1f} s, {in_cv} members trained in CV, "
                  f"{refit} in the refit", flush=True)
    diff = float(np.abs(scores["with memory"] - scores["without memory"]).max())
    return {"grid": GRID, "cv": 3, "results": rows,
            "wall_ratio_without_over_with": round(rows[0]["wall_s"] / rows[1]["wall_s"], 3),
            "max_abs_score_difference": diff}


def _timed_fit(X: np.ndarray, y: np.ndarray, **params: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    est = DeepEnsembleClassifier(**params).fit(X, y)
    return time.perf_counter() - start, est


def part_b(X: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """8 members in this process against 2 loky worker processes."""
    start = time.perf_counter()
    _timed_fit(X[:200], y[:200], **{**params, "max_epochs": 1, "n_estimators": 2}, n_jobs=2)
    warmup = time.perf_counter() - start
    print(f"  (b) worker pool started in {warmup:.1f} s", flush=True)
    rows = []
    for engine in ("vectorized", "sequential"):
        wall_1, ref = _timed_fit(X, y, **params, n_estimators=8, engine=engine, n_jobs=1)
        wall_2, par = _timed_fit(X, y, **params, n_estimators=8, engine=engine, n_jobs=2)
        diff = float(np.abs(ref.predict_proba(X) - par.predict_proba(X)).max())
        rows.append({"engine": engine, "wall_n_jobs_1_s": round(wall_1, 3),
                     "wall_n_jobs_2_s": round(wall_2, 3),
                     "speedup": round(wall_1 / wall_2, 3),
                     "max_abs_predict_proba_difference": diff})
        print(f"  (b) {engine}: n_jobs=1 {wall_1:.1f} s, n_jobs=2 {wall_2:.1f} s, "
              f"difference {diff:.1e}", flush=True)
    return {"members": 8, "pool_start_s": round(warmup, 3), "results": rows}


def part_c(X: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    """8 members on one GPU against all GPUs."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    n = torch.cuda.device_count()
    gpu = {**params, "device": "cuda"}
    _timed_fit(X[:200], y[:200], **{**gpu, "max_epochs": 1}, n_estimators=2,
               devices="all")  # starts the device processes
    wall_1, ref = _timed_fit(X, y, **gpu, n_estimators=8)
    wall_n, par = _timed_fit(X, y, **gpu, n_estimators=8, devices="all")
    diff = float(np.abs(ref.predict_proba(X) - par.predict_proba(X)).max())
    print(f"  (c) one GPU {wall_1:.1f} s, {n} GPU(s) {wall_n:.1f} s", flush=True)
    return {"members": 8, "cuda_devices": n, "wall_one_device_s": round(wall_1, 3),
            "wall_all_devices_s": round(wall_n, 3), "speedup": round(wall_1 / wall_n, 3),
            "max_abs_predict_proba_difference": diff}


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown page."""
    env = report["environment"]
    cfg = report["config"]
    lines = [
        f"# Scale-out benchmark: {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, scikit-learn {env['sklearn']}, joblib {env['joblib']}, "
        f"Python {env['python']}, {env['cpu_count']} CPUs, {env['torch_threads']} torch "
        f"threads, {env['date']}. Command: `{env['command']}`.",
        f"Load average (1, 5, 15 min) at start {env['load_average_start']}, at end "
        f"{env.get('load_average_end')}: other processes shared the machine when it exceeds "
        "the CPU count, so wall times are noisy; compare rows of one table.",
        "",
        f"Digits (1,797 x 64, 10 classes), MLP {cfg['module__hidden_layer_sizes']}, "
        f"{cfg['max_epochs']} epochs, batch {cfg['batch_size']}, Adam lr {cfg['lr']}.",
        "",
    ]
    a = report.get("a")
    if a:
        lines += [
            f"## (a) GridSearchCV over n_estimators {a['grid']}, cv={a['cv']}",
            "",
            "| setting | wall (s) | members trained in CV | per fold | in the refit "
            "| mean test accuracy per candidate |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in a["results"]:
            lines.append(
                f"| {r['setting']} | {r['wall_s']:.1f} | {r['members_trained_in_cv']} | "
                f"{r['members_trained_per_fold']:g} | {r['members_trained_in_refit']} | "
                f"{r['mean_test_accuracy']} |"
            )
        lines += ["", f"Wall time without / with memory: {a['wall_ratio_without_over_with']}x. "
                  f"Largest difference between the two searches' fold scores: "
                  f"{a['max_abs_score_difference']:.1e}.", ""]
    b = report.get("b")
    if b:
        lines += [
            f"## (b) {b['members']} members in 1 vs 2 worker processes (CPU)",
            "",
            f"Worker pool start (excluded below): {b['pool_start_s']:.1f} s.",
            "",
            "| engine | n_jobs=1 (s) | n_jobs=2 (s) | speed-up | max abs difference of "
            "predict_proba |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in b["results"]:
            lines.append(f"| {r['engine']} | {r['wall_n_jobs_1_s']:.1f} | "
                         f"{r['wall_n_jobs_2_s']:.1f} | {r['speedup']:.2f}x | "
                         f"{r['max_abs_predict_proba_difference']:.1e} |")
        lines.append("")
    c = report.get("c")
    if c:
        lines += ["## (c) one GPU vs all GPUs", ""]
        if "skipped" in c:
            lines.append(f"Skipped: {c['skipped']}.")
        else:
            lines += [
                "| GPUs | one device (s) | all devices (s) | speed-up | max abs difference |",
                "|---:|---:|---:|---:|---:|",
                f"| {c['cuda_devices']} | {c['wall_one_device_s']:.1f} | "
                f"{c['wall_all_devices_s']:.1f} | {c['speedup']:.2f}x | "
                f"{c['max_abs_predict_proba_difference']:.1e} |",
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="a,b,c")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"a", "b", "c"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from a, b, c")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    X, y = _load()
    params: dict[str, Any] = dict(
        max_epochs=2 if args.quick else 10, batch_size=64, lr=1e-3, random_state=0,
        device="cpu", module__hidden_layer_sizes=(16,) if args.quick else (64,),
    )
    if args.quick:
        X, y = X[:300], y[:300]
    report: dict[str, Any] = {"environment": environment(device), "config": params}
    print(f"scale-out benchmark on {report['environment']['device_name']}", flush=True)
    for part, run in (("a", part_a), ("b", part_b), ("c", part_c)):
        if part in parts:
            report[part] = run(X, y, params)
    report["environment"]["load_average_end"] = _load_average()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "cpu" if device == "cpu" else "cuda_" + re.sub(
        r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-")
    if args.quick:
        tag += "_quick"
    (out / f"scale_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"scale_{tag}.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    print(f"wrote {out / f'scale_{tag}.json'} and .md", flush=True)
    return report


if __name__ == "__main__":
    main()
