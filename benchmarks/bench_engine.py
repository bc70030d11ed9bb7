"""Training throughput of the ensemble engines, against their baselines, in one run.

For each case the same data and the same number of member-epochs are trained by

* ``sequential-skorch``: ``DeepEnsembleClassifier(engine="sequential")``, one skorch net
  per member;
* ``plain-loop``: a hand-written PyTorch loop, one member after the other (data resident on
  the device, batches gathered by index, the same precision as the vectorised engine);
* ``vectorized``: ``DeepEnsembleClassifier(engine="vectorized")``, all members in one
  grouped network;
* ``ceiling``: one network trained with batch ``M * B`` for the same number of steps, the
  throughput an M-member ensemble can at best reach.

Throughput is counted in member-images per second (``members * epochs * n_samples /
wall``). Each method is warmed up on a small slice first; on CUDA the timings are taken
between ``torch.cuda.synchronize()`` calls and peak memory is ``max_memory_allocated``; on
the CPU peak memory is the process's peak resident set (it never decreases, so later
methods inherit earlier peaks).

The ``predict`` case measures prediction latency instead: ``predict_proba`` of a fitted
5-member MLP ensemble (its grouped network cached after the first call) against a plain
loop over the members' torch modules (``torch.no_grad``, float32 tensor, softmax and
mean), and against a grouped network built for every call, at 64, 1,000 and 10,000 rows:
timed interleaved in rounds, medians of all calls, the load average before and after each
size.

Usage::

    python benchmarks/bench_engine.py [--device cpu|cuda]
                                      [--cases mlp,smallcnn,resnet20,predict]
                                      [--quick] [--out benchmarks/results]

Results go to ``<out>/<prefix>_<device>[_quick].json`` and ``.md`` (``--prefix``,
default ``engine``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ensemblekit import DeepEnsembleClassifier  # noqa: E402
from ensemblekit.models import MLP, ResNet20v1, SmallCNN  # noqa: E402

try:
    from ensemblekit.datasets import random_crop_flip
except ImportError as exc:  # the datasets subpackage needs SciPy
    print(f"no augmentation ({exc})", flush=True)
    random_crop_flip = None

METHODS = ("sequential-skorch", "plain-loop", "vectorized", "ceiling")


@dataclass
class Case:
    """One benchmark configuration."""

    name: str
    module: str
    n_samples: int
    sample_shape: tuple[int, ...]
    n_classes: int
    members: int
    epochs: int
    batch_size: int
    lr: float
    precision: str
    channels_last: bool
    module_kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    augment: bool = False


def make_case(name: str, device: str, quick: bool) -> Case:
    """The configuration of a case on a device (small on the CPU, sized for ~1 min on GPU)."""
    cuda = device == "cuda"
    precision = "bf16" if cuda else "fp32"
    if name == "mlp":
        n, epochs = (20_000, 5) if not quick else (4_000, 2)
        return Case(name, "MLP", n, (50,), 5, 8, epochs, 128, 1e-3, precision, False,
                    {"hidden_layer_sizes": (100,)},
                    "tabular Gaussian data, MLP with one hidden layer of 100 units")
    if name in ("smallcnn", "resnet20"):
        if cuda:
            n, epochs = (16_384, 2) if not quick else (4_096, 1)
        else:
            n, epochs = (512, 1) if not quick else (256, 1)
        module = "SmallCNN" if name == "smallcnn" else "ResNet20v1"
        return Case(name, module, n, (3, 32, 32), 10, 8, epochs, 128, 1e-3, precision, True,
                    {}, f"CIFAR-shaped random images, {n} per epoch, random crop (padding 4) "
                    "and flip on the device for every method",
                    augment=random_crop_flip is not None)
    if name == "predict":
        return Case(name, "MLP", 2_000 if not quick else 500, (50,), 5, 5, 2, 128, 1e-3,
                    "fp32", False, {"hidden_layer_sizes": (100,)},
                    "prediction latency of a fitted ensemble (MLP with one hidden layer of "
                    "100 units)")
    if name == "multiswag":
        n, epochs = (10_000, 6) if not quick else (2_000, 3)
        return Case(name, "MLP", n, (50,), 5, 5, epochs, 128, 1e-3, "fp32", False,
                    {"hidden_layer_sizes": (100,)},
                    "MultiSWAG (low rank) with 5 runs, SWA phase over the second half; "
                    "training, moment collection, sampling and BatchNorm refresh timed")
    raise ValueError(f"unknown case {name!r}; choose from mlp, smallcnn, resnet20, predict, "
                     "multiswag")


def module_class(case: Case) -> type[nn.Module]:
    return {"MLP": MLP, "SmallCNN": SmallCNN, "ResNet20v1": ResNet20v1}[case.module]


def build_module(case: Case, seed: int, device: str) -> nn.Module:
    torch.manual_seed(seed)
    kwargs = dict(case.module_kwargs)
    if case.module == "MLP":
        kwargs.update(in_features=int(np.prod(case.sample_shape)), num_classes=case.n_classes)
    else:
        kwargs.update(num_classes=case.n_classes)
    module = module_class(case)(**kwargs).to(device)
    if case.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def make_data(case: Case, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = case.n_samples if n is None else n
    X = rng.standard_normal((n, *case.sample_shape), dtype=np.float32)
    y = rng.integers(0, case.n_classes, size=n)
    return X, y


# ----------------------------------------------------------------- timing helpers
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def timed(fn: Callable[[], Any], device: str) -> tuple[float, float]:
    """Wall seconds of ``fn()`` and the peak memory (MiB) while it ran."""
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    wall = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb())
    return wall, peak


# ----------------------------------------------------------------- the methods
def estimator(case: Case, engine: str, device: str, epochs: int) -> DeepEnsembleClassifier:
    params = {f"module__{k}": v for k, v in case.module_kwargs.items()}
    return DeepEnsembleClassifier(
        module_class(case), n_estimators=case.members, max_epochs=epochs, lr=case.lr,
        batch_size=case.batch_size, device=device, engine=engine, random_state=0,
        precision=case.precision if engine == "vectorized" else "fp32",
        augment=random_crop_flip if case.augment else None, **params,
    )


def plain_loop(case: Case, X: np.ndarray, y: np.ndarray, device: str, members: int,
               batch_size: int, epochs: int) -> None:
    """Train ``members`` networks one after the other with a minimal PyTorch loop."""
    Xd = torch.as_tensor(X, device=device)
    yd = torch.as_tensor(y, device=device)
    n = len(Xd)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=case.precision == "bf16")
    for m in range(members):
        model = build_module(case, seed=m, device=device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=case.lr)
        gen = torch.Generator(device=device).manual_seed(m)
        for _ in range(epochs):
            order = torch.randperm(n, device=device, generator=gen)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                xb = Xd[idx]
                if case.augment:
                    xb = random_crop_flip(xb, gen)
                if case.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with autocast:
                    out = model(xb)
                loss = F.cross_entropy(out.float(), yd[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


def run_method(method: str, case: Case, X: np.ndarray, y: np.ndarray, device: str,
               warmup: bool) -> None:
    epochs = 1 if warmup else case.epochs
    if method in ("sequential-skorch", "vectorized"):
        engine = "sequential" if method == "sequential-skorch" else "vectorized"
        clf = estimator(case, engine, device, epochs).fit(X, y)
        if engine == "vectorized" and not warmup:
            print(f"      vectorized engine: {clf.engine_reason_}", flush=True)
    elif method == "plain-loop":
        plain_loop(case, X, y, device, case.members, case.batch_size, epochs)
    elif method == "ceiling":
        # One network, batch M*B, as many steps as each member takes: M*B*steps images.
        plain_loop(case, np.concatenate([X] * case.members), np.concatenate([y] * case.members),
                   device, 1, case.members * case.batch_size, epochs)
    else:
        raise ValueError(method)


@dataclass
class Result:
    method: str
    wall_s: float
    member_images: int
    member_images_per_s: float
    peak_memory_mib: float
    speedup_vs_sequential_skorch: float | None = None
    fraction_of_ceiling: float | None = None


def run_case(case: Case, device: str, methods: tuple[str, ...]) -> list[Result]:
    X, y = make_data(case)
    warm_X, warm_y = make_data(case, n=min(case.n_samples, case.batch_size), seed=1)
    results = []
    for method in methods:
        print(f"  [{case.name}] {method}: warm-up", flush=True)
        run_method(method, case, warm_X, warm_y, device, warmup=True)
        print(f"  [{case.name}] {method}: timing {case.members} members x {case.epochs} "
              f"epochs x {case.n_samples} samples", flush=True)
        wall, peak = timed(lambda m=method: run_method(m, case, X, y, device, False), device)
        images = case.members * case.epochs * case.n_samples
        res = Result(method, wall, images, images / wall, peak)
        results.append(res)
        print(f"  [{case.name}] {method}: {wall:.2f} s, {res.member_images_per_s:,.0f} "
              f"member-images/s, peak {peak:,.0f} MiB", flush=True)
    by_name = {r.method: r for r in results}
    for r in results:
        if "sequential-skorch" in by_name:
            r.speedup_vs_sequential_skorch = (
                r.member_images_per_s / by_name["sequential-skorch"].member_images_per_s)
        if "ceiling" in by_name:
            r.fraction_of_ceiling = r.member_images_per_s / by_name["ceiling"].member_images_per_s
    return results


# ----------------------------------------------------------------- prediction latency
PREDICT_METHODS = ("plain-loop", "predict_proba", "predict_proba (uncached)")
#: (rows, rounds, calls per method and round); the uncached method is called once a round.
PREDICT_SIZES = ((64, 40, 25), (1_000, 30, 5), (10_000, 15, 1))


def _load() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def run_predict_case(case: Case, device: str, quick: bool) -> list[dict[str, Any]]:
    """Median latency of each prediction method at several numbers of rows.

    The methods are timed interleaved, in rounds: each round calls the plain loop and
    ``predict_proba`` alternately ``calls`` times each (and the uncached predictor
    once), so a change of the machine's load during the run affects them alike. The
    ratio is that of the medians over all calls; ``ratio_iqr`` is the interquartile
    range of the per-round ratios of medians, a measure of the noise.
    """
    from ensemblekit.engine import predict_member_logits

    X, y = make_data(case)
    clf = estimator(case, "auto", device, case.epochs).fit(X, y)
    modules = [net.module_.eval() for net in clf.estimators_]

    def plain(xb: np.ndarray) -> np.ndarray:
        # What a user would write: every module on a float32 tensor, softmax, mean.
        with torch.no_grad():
            x = torch.from_numpy(xb).to(device)
            logits = torch.stack([mod(x) for mod in modules])
            return logits.softmax(-1).mean(0).cpu().numpy()

    def uncached(xb: np.ndarray) -> np.ndarray:
        logits = predict_member_logits(modules, xb, clf.predict_batch_size)
        z = np.exp(logits - logits.max(-1, keepdims=True))
        return (z / z.sum(-1, keepdims=True)).mean(0)

    methods: dict[str, Callable[[np.ndarray], Any]] = {
        "plain-loop": plain, "predict_proba": clf.predict_proba,
        "predict_proba (uncached)": uncached}

    def call(fn: Callable[[np.ndarray], Any], xb: np.ndarray) -> float:
        sync(device)
        start = time.perf_counter()
        fn(xb)
        sync(device)
        return time.perf_counter() - start

    rows = []
    for n_rows, rounds, calls in PREDICT_SIZES:
        if quick:
            rounds = 3
        xb = make_data(case, n=n_rows, seed=2)[0]
        np.testing.assert_allclose(clf.predict_proba(xb), plain(xb), rtol=1e-4, atol=1e-5)
        for fn in methods.values():  # warm-up (builds the cached grouped network)
            fn(xb)
        load_before = _load()
        times: dict[str, list[float]] = {name: [] for name in methods}
        round_ratios = []
        for r in range(rounds):
            ours, loop = [], []
            for i in range(calls):
                # Alternate which goes first, so neither always follows the other.
                order = ("plain-loop", "predict_proba")[:: 1 if (r + i) % 2 else -1]
                for name in order:
                    (loop if name == "plain-loop" else ours).append(call(methods[name], xb))
            times["plain-loop"] += loop
            times["predict_proba"] += ours
            times["predict_proba (uncached)"].append(
                call(methods["predict_proba (uncached)"], xb))
            round_ratios.append(float(np.median(ours) / np.median(loop)))
        load_after = _load()
        medians = {name: float(np.median(t)) for name, t in times.items()}
        iqr = [float(v) for v in np.percentile(round_ratios, [25, 75])]
        for name in PREDICT_METHODS:
            rows.append({"rows": n_rows, "method": name, "median_ms": 1e3 * medians[name],
                         "vs_plain_loop": medians[name] / medians["plain-loop"],
                         "calls": len(times[name]),
                         "ratio_iqr": iqr if name == "predict_proba" else None,
                         "load_before": load_before, "load_after": load_after})
            print(f"  [predict] {n_rows} rows, {name}: {1e3 * medians[name]:.3f} ms "
                  f"({medians[name] / medians['plain-loop']:.2f}x the plain loop)", flush=True)
        print(f"  [predict] {n_rows} rows: per-round ratio IQR {iqr[0]:.2f}-{iqr[1]:.2f}, "
              f"load {load_before} -> {load_after}", flush=True)
    return rows


# ----------------------------------------------------------------- MultiSWAG
def run_multiswag_case(case: Case, device: str) -> list[Result]:
    """Fit time of MultiSWAG with each engine, the same data and seeds."""
    from ensemblekit import SWAGClassifier

    X, y = make_data(case)
    params = {f"module__{k}": v for k, v in case.module_kwargs.items()}
    results = []
    for engine in ("sequential", "vectorized"):
        def fit(n_epochs: int, data: tuple[np.ndarray, np.ndarray], e: str = engine) -> Any:
            return SWAGClassifier(
                n_estimators=case.members, max_epochs=n_epochs, batch_size=case.batch_size,
                lr=case.lr, n_samples=10, device=device, engine=e, random_state=0,
                **params,
            ).fit(*data)

        fit(4, make_data(case, n=case.batch_size * 2, seed=1))  # warm-up
        wall, peak = timed(lambda f=fit: f(case.epochs, (X, y)), device)
        images = case.members * case.epochs * case.n_samples
        method = "sequential-skorch" if engine == "sequential" else "vectorized"
        results.append(Result(method, wall, images, images / wall, peak))
        print(f"  [multiswag] {engine}: {wall:.2f} s", flush=True)
    for r in results:
        r.speedup_vs_sequential_skorch = (r.member_images_per_s
                                          / results[0].member_images_per_s)
    return results


# ----------------------------------------------------------------- reporting
def environment(device: str) -> dict[str, Any]:
    import sklearn
    import skorch

    info: dict[str, Any] = {
        "device": device,
        "device_name": (torch.cuda.get_device_name() if device == "cuda"
                        else platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "skorch": skorch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    if device == "cuda":
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
        info["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
    return info


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Engine benchmark: {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, Python {env['python']}, skorch {env['skorch']}, "
        f"{env['cpu_count']} CPUs, {env['torch_threads']} torch threads "
        f"(OMP_NUM_THREADS={env.get('omp_num_threads')}), {env['date']}.",
        f"Command: `{env['command']}`.",
    ]
    if "load_average_start" in env:
        lines.append(f"Load average at start {env['load_average_start']}, at end "
                     f"{env.get('load_average_end')} (other processes share the machine when "
                     "it exceeds the CPU count).")
    lines.append("")
    for entry in report["cases"]:
        case = entry["config"]
        if entry.get("kind") == "prediction":
            lines += [
                f"## {entry['case']}: prediction latency, {case['module']}, "
                f"M = {case['members']}",
                "",
                f"{case['note']}. Median wall time per call (ms) and its ratio to a plain "
                "loop over the member modules (`torch.no_grad`, float32 tensor, softmax, "
                "mean), timed interleaved with it in one run; the IQR is that of the "
                "per-round ratios (noise). The load average (1, 5, 15 min) is read before "
                "and after each size.",
                "",
                "| rows | method | median (ms) | vs plain loop | ratio IQR | calls "
                "| load before | load after |",
                "|---:|---|---:|---:|---:|---:|---|---|",
            ]
            for r in entry["results"]:
                iqr = r.get("ratio_iqr")
                spread = f"{iqr[0]:.2f}-{iqr[1]:.2f}" if iqr else ""
                lines.append(
                    f"| {r['rows']:,} | {r['method']} | {r['median_ms']:.3f} | "
                    f"{r['vs_plain_loop']:.2f}x | {spread} | {r.get('calls', '')} | "
                    f"{r.get('load_before', '')} | {r.get('load_after', '')} |")
            lines.append("")
            continue
        lines += [
            f"## {entry['case']}: {case['module']}, M = {case['members']}, batch "
            f"{case['batch_size']} per member",
            "",
            f"{case['n_samples']} samples of shape {tuple(case['sample_shape'])}, "
            f"{case['n_classes']} classes, {case['epochs']} epoch(s), Adam lr {case['lr']}, "
            f"precision {case['precision']} for plain-loop, vectorized and ceiling "
            f"(sequential skorch: fp32), channels-last: {case['channels_last']}. "
            f"{case['note']}.",
            "",
            "| method | wall (s) | member-images/s | vs sequential skorch | of ceiling "
            "| peak memory (MiB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in entry["results"]:
            speed = r["speedup_vs_sequential_skorch"]
            frac = r["fraction_of_ceiling"]
            lines.append(
                f"| {r['method']} | {r['wall_s']:.2f} | {r['member_images_per_s']:,.0f} | "
                f"{'' if speed is None else f'{speed:.2f}x'} | "
                f"{'' if frac is None else f'{frac:.2f}'} | {r['peak_memory_mib']:,.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--cases", default="mlp,smallcnn,resnet20")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--prefix", default="engine",
                        help="results go to <out>/<prefix>_<device>[_quick].json and .md")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda requested but CUDA is not available")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    report: dict[str, Any] = {"environment": environment(args.device), "cases": []}
    print(f"engine benchmark on {report['environment']['device_name']} "
          f"(torch {torch.__version__})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.device
    if args.device == "cuda":
        tag += "_" + re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-")
    if args.quick:
        tag += "_quick"
    for name in [c for c in args.cases.split(",") if c]:
        case = make_case(name, args.device, args.quick)
        print(f"case {name}: {asdict(case)}", flush=True)
        if name == "multiswag":
            results = run_multiswag_case(case, args.device)
            report["cases"].append({"case": name, "kind": "training", "config": asdict(case),
                                    "results": [asdict(r) for r in results]})
        elif name == "predict":
            report["cases"].append({"case": name, "kind": "prediction", "config": asdict(case),
                                    "results": run_predict_case(case, args.device,
                                                                args.quick)})
        else:
            results = run_case(case, args.device, methods)
            report["cases"].append({"case": name, "kind": "training", "config": asdict(case),
                                    "results": [asdict(r) for r in results]})
        if hasattr(os, "getloadavg"):
            report["environment"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        # Written after every case, so an interrupted run keeps what it measured.
        (out / f"{args.prefix}_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / f"{args.prefix}_{tag}.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    print(f"wrote {out / f'{args.prefix}_{tag}.json'} and .md", flush=True)
    return report


if __name__ == "__main__":
    main()
