"""BatchNorm refresh of posterior samples: one network per pass against grouped passes.

SWAG and the subspace samplers build many networks per run (``n_samples``) and
recompute each network's BatchNorm statistics on up to ``bn_update_size`` training
rows. For each case, the same template, parameter vectors and rows go through

* ``per-sample``: :func:`~ensemblekit.posteriors.sampled_network` for each vector,
  one refresh pass per network (the path before grouped refresh);
* ``grouped``: :func:`~ensemblekit.posteriors.sampled_networks` with at most 8
  networks per grouped pass (its default on accelerators; on the CPU its default
  is one network per pass, i.e. ``per-sample``);
* ``grouped (all)``: the same with every network in one grouped pass
  (``max_networks_per_pass=None``).

Each timing covers building the networks (copy, parameters, refresh). Methods are
timed in interleaved repetitions (every repetition runs each method once, in turn),
so that a change of machine load hits all of them alike; the table gives the medians
and each method's speed-up over ``per-sample`` (median per-sample time over its
median). Before timing, every method's running statistics and predictions are
checked against ``per-sample``.

Usage::

    python benchmarks/bench_refresh.py [--cases smallcnn-bn,mlp-bn,resnet20] [--repeats 5]
                                       [--threads N] [--quick] [--out benchmarks/results]

On the CPU. Results go to ``<out>/refresh_cpu[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ensemblekit.models import ResNet20v1  # noqa: E402
from ensemblekit.posteriors import (  # noqa: E402
    flatten_parameters,
    sampled_network,
    sampled_networks,
)

METHODS = ("per-sample", "grouped", "grouped (all)")


@dataclass
class Case:
    """One benchmark configuration."""

    name: str
    n_samples: int
    n_rows: int
    sample_shape: tuple[int, ...]
    batch_size: int
    note: str


def make_case(name: str, quick: bool) -> Case:
    """The configuration of a case (``quick``: a few seconds on the CPU)."""
    if name == "smallcnn-bn":
        return Case(name, 30 if not quick else 6, 1_000 if not quick else 200, (3, 32, 32),
                    1024, "SmallCNN's blocks (3x3 conv 16, 32, 32 with max-pool and ReLU, "
                    "dense head) with BatchNorm2d after each convolution")
    if name == "mlp-bn":
        return Case(name, 30 if not quick else 6, 1_000 if not quick else 200, (50,), 1024,
                    "MLP 50-100-100-10 with BatchNorm1d after each hidden layer")
    if name == "resnet20":
        return Case(name, 10 if not quick else 3, 256 if not quick else 64, (3, 32, 32), 1024,
                    "ResNet20v1 (19 BatchNorm2d layers)")
    raise ValueError(f"unknown case {name!r}; choose from smallcnn-bn, mlp-bn, resnet20")


def build_template(case: Case) -> nn.Module:
    torch.manual_seed(0)
    if case.name == "smallcnn-bn":
        layers: list[nn.Module] = []
        width = case.sample_shape[0]
        for i, out in enumerate((16, 32, 32)):
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out),
                       nn.MaxPool2d(2, 2, ceil_mode=True)]
            if i < 2:
                layers.append(nn.ReLU())
            width = out
        net: nn.Module = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 4 * 32, 10))
    elif case.name == "mlp-bn":
        net = nn.Sequential(nn.Linear(50, 100), nn.BatchNorm1d(100), nn.ReLU(),
                            nn.Linear(100, 100), nn.BatchNorm1d(100), nn.ReLU(),
                            nn.Linear(100, 10))
    else:
        net = ResNet20v1(num_classes=10)
    return net.eval()


def make_inputs(case: Case, template: nn.Module) -> tuple[torch.Tensor, np.ndarray]:
    """SWAG-like parameter vectors around the template, and the refresh rows."""
    gen = torch.Generator().manual_seed(1)
    theta = flatten_parameters(template)
    thetas = theta + 0.05 * theta.abs().mean() * torch.randn(case.n_samples, theta.numel(),
                                                             generator=gen)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((case.n_rows, *case.sample_shape), dtype=np.float32)
    return thetas, X


def method_fn(method: str, template: nn.Module, thetas: torch.Tensor, X: np.ndarray,
              batch_size: int) -> Callable[[], list[nn.Module]]:
    if method == "per-sample":
        return lambda: [sampled_network(template, t, X, batch_size) for t in thetas]
    if method == "grouped":
        return lambda: sampled_networks(template, thetas, X, batch_size,
                                        max_networks_per_pass=8)
    if method == "grouped (all)":
        return lambda: sampled_networks(template, thetas, X, batch_size,
                                        max_networks_per_pass=None)
    raise ValueError(method)


def check_same(reference: list[nn.Module], other: list[nn.Module], X: np.ndarray) -> float:
    """Largest difference of statistics and logits, relative to their scale; raises if > 1e-4."""
    worst = 0.0
    x = torch.as_tensor(X[:64])
    with torch.no_grad():
        for a, b in zip(reference, other):
            pairs = [(p, q) for p, q in zip(a.buffers(), b.buffers()) if p.is_floating_point()]
            pairs.append((a(x), b(x)))
            for p, q in pairs:
                scale = float(p.abs().max()) or 1.0
                worst = max(worst, float((p - q).abs().max()) / scale)
    if worst > 1e-4:
        raise AssertionError(f"the methods disagree: relative difference {worst:.2e}")
    return worst


def run_case(case: Case, repeats: int) -> dict[str, Any]:
    template = build_template(case)
    thetas, X = make_inputs(case, template)
    fns = {m: method_fn(m, template, thetas, X, case.batch_size) for m in METHODS}
    reference = fns["per-sample"]()  # also the warm-up
    agreement = {m: check_same(reference, fns[m](), X) for m in METHODS[1:]}
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for rep in range(repeats):
        for method, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[method].append(time.perf_counter() - start)
        print(f"  [{case.name}] repetition {rep + 1}/{repeats}: "
              + ", ".join(f"{m} {t[-1]:.3f} s" for m, t in times.items()), flush=True)
    medians = {m: float(np.median(t)) for m, t in times.items()}
    results = [{"method": m, "median_s": medians[m], "times_s": times[m],
                "speedup_vs_per_sample": medians["per-sample"] / medians[m],
                "max_relative_difference": agreement.get(m, 0.0)} for m in METHODS]
    return {"case": case.name, "config": asdict(case), "repeats": repeats, "results": results}


def environment() -> dict[str, Any]:
    return {
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "load_average_start": ([round(v, 2) for v in os.getloadavg()]
                               if hasattr(os, "getloadavg") else None),
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# BatchNorm refresh benchmark: {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, Python {env['python']}, {env['cpu_count']} CPUs, "
        f"{env['torch_threads']} torch threads, {env['date']}.",
        f"Command: `{env['command']}`.",
        f"Load average at start {env['load_average_start']}, at end "
        f"{env.get('load_average_end')} (other processes share the machine when it exceeds "
        "the CPU count; the ratios are measured side by side in interleaved repetitions).",
        "",
    ]
    for entry in report["cases"]:
        case = entry["config"]
        lines += [
            f"## {entry['case']}: {case['n_samples']} samples, {case['n_rows']:,} rows",
            "",
            f"{case['note']}; inputs of shape {tuple(case['sample_shape'])}, batch size "
            f"{case['batch_size']}. Building all samples' networks (copy, parameters, "
            f"BatchNorm refresh); median of {entry['repeats']} interleaved repetitions.",
            "",
            "| method | median (s) | speed-up vs per-sample | max relative difference |",
            "|---|---:|---:|---:|",
        ]
        for r in entry["results"]:
            lines.append(f"| {r['method']} | {r['median_s']:.3f} | "
                         f"{r['speedup_vs_per_sample']:.2f}x | "
                         f"{r['max_relative_difference']:.1e} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="smallcnn-bn,mlp-bn")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, which follows "
                             "OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"environment": environment(), "cases": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "cpu_quick" if args.quick else "cpu"
    for name in [c for c in args.cases.split(",") if c]:
        case = make_case(name, args.quick)
        print(f"case {name}: {asdict(case)}", flush=True)
        report["cases"].append(run_case(case, args.repeats))
        if hasattr(os, "getloadavg"):
            report["environment"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        # Written after every case, so an interrupted run keeps what it measured.
        (out / f"refresh_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / f"refresh_{tag}.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    print(f"wrote {out / f'refresh_{tag}.json'} and .md", flush=True)
    return report


if __name__ == "__main__":
    main()
