"""Prediction of Monte Carlo dropout samples: grouped passes against one network at a time.

``DropoutClassifier.predict_member_proba`` evaluates every thinned network (runs x
samples) in grouped passes through the estimator's cached grouped predictor. The
baseline, measured in the same run and interleaved with it, is the loop over the
thinned networks that the estimator used before (``_member_logits_loop``: one
:func:`~ensemblekit.posteriors.thinned_network` context and one forward pass per
sample). Both give the same numbers (checked here and in the tests).

Usage::

    python benchmarks/bench_dropout_predict.py [--quick] [--threads 2] [--out DIR]

Writes ``dropout_predict_cpu.json`` and ``.md`` to ``--out`` (default
``benchmarks/results``), with the machine's load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ensemblekit import DropoutClassifier  # noqa: E402
from ensemblekit.estimators._base import softmax  # noqa: E402
from ensemblekit.models import SmallCNN  # noqa: E402


def _cases(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    X_tab = rng.normal(size=(2000, 20)).astype(np.float32)
    y_tab = (X_tab[:, :3].sum(1) > 0).astype(int) + (X_tab[:, 3] > 1)
    X_img = rng.normal(size=(600, 3, 16, 16)).astype(np.float32)
    y_img = rng.integers(0, 10, 600)
    rows = [64, 1000] if quick else [64, 1000, 10000]
    cases = [
        dict(name="mlp", title="MLP (20-100-3), dropout 0.1", X=X_tab, y=y_tab,
             params=dict(module__hidden_layer_sizes=(100,), module__dropout=0.1),
             rows=rows),
        dict(name="smallcnn", title="SmallCNN (channels 16, 32), 16x16x3 inputs, dropout 0.1",
             X=X_img, y=y_img,
             params=dict(module=SmallCNN, module__channels=(16, 32), module__dropout=0.1),
             rows=rows[:2]),
    ]
    return cases[:1] if quick else cases


def _median_ms(fn, X: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    n_runs, n_samples = (1, 8) if args.quick else (3, 30)
    results = []
    for case in _cases(args.quick):
        clf = DropoutClassifier(n_estimators=n_runs, n_samples=n_samples, max_epochs=1,
                                batch_size=128, random_state=0, device="cpu",
                                predict_batch_size=1024, **case["params"])
        clf.fit(case["X"], case["y"])
        for n_rows in case["rows"]:
            X = np.resize(case["X"], (n_rows, *case["X"].shape[1:])).astype(np.float32)
            start = time.perf_counter()
            grouped = clf.predict_member_proba(X)  # builds the thinned networks
            first_ms = 1000 * (time.perf_counter() - start)
            loop = softmax(clf._member_logits_loop(X))
            max_diff = float(np.abs(grouped - loop).max())
            # About a second of each method per round (at least 3 calls).
            start = time.perf_counter()
            clf._member_logits_loop(X)
            once = time.perf_counter() - start
            repeats = 3 if args.quick else int(np.clip(1.0 / max(once, 1e-4), 3, 200))
            loop_ms, grouped_ms = [], []
            for _ in range(3):  # interleaved rounds, so that load changes hit both
                loop_ms.append(_median_ms(clf._member_logits_loop, X, repeats))
                grouped_ms.append(_median_ms(clf._member_logits, X, repeats))
            row = dict(case=case["name"], rows=n_rows, networks=n_runs * n_samples,
                       loop_ms=float(np.median(loop_ms)),
                       grouped_ms=float(np.median(grouped_ms)),
                       first_call_ms=first_ms, repeats=3 * repeats, max_abs_diff=max_diff)
            row["speedup"] = row["loop_ms"] / row["grouped_ms"]
            results.append(row)
            print(json.dumps(row))
    load_end = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    env = dict(torch=torch.__version__, python=platform.python_version(),
               cpus=os.cpu_count(), threads=args.threads, machine=platform.machine(),
               date=time.strftime("%Y-%m-%d %H:%M:%S"), load_average_start=load_start,
               load_average_end=load_end, runs=n_runs, samples_per_run=n_samples,
               command=" ".join(["bench_dropout_predict.py", *sys.argv[1:]]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "dropout_predict_cpu" + ("_quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps(dict(environment=env, results=results),
                                                 indent=2))
    titles = {case["name"]: case["title"] for case in _cases(args.quick)}
    lines = [
        "# Monte Carlo dropout prediction: grouped passes vs one thinned network at a time",
        "",
        f"torch {env['torch']}, Python {env['python']}, {env['cpus']} CPUs, "
        f"{env['threads']} torch threads, {env['date']}.",
        f"Command: `{env['command']}`.",
        f"Load average at start {load_start}, at end {load_end} (other processes share the "
        "machine when it exceeds the CPU count).",
        "",
        f"{n_runs} runs x {n_samples} samples = {n_runs * n_samples} thinned networks; "
        "`predict_batch_size=1024`. Median wall time of `_member_logits` (grouped, "
        "thinned networks cached) and of the per-sample loop, interleaved in the same run; "
        "speed-up = loop / grouped. The first call also builds the thinned networks and the "
        "grouped predictor.",
        "",
        "| case | rows | loop (ms) | grouped (ms) | speed-up | first call (ms) | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {titles[r['case']]} | {r['rows']:,} | {r['loop_ms']:.2f} | "
                     f"{r['grouped_ms']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['first_call_ms']:.1f} | {r['max_abs_diff']:.1e} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
