"""End-to-end runs of the paper reproduction (benchmarks/reproduce_paper.py) at tiny sizes."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reproduce_paper.py"
sys.path.insert(0, str(SCRIPT.parent))

import reproduce_paper as rp  # noqa: E402

from ensemblekit.models import MediumCNN, SmallCNN  # noqa: E402

# The quick preset's pipeline at toy sizes: every phase and figure, a few seconds on a CPU.
TINY = dict(n_runs=3, n_trajectories=2, epochs=3, late_epochs=2, lr_halving_every=2, rank=1,
            a_samples=3, b_samples=4, tsne_samples=2, shift_samples=2, n_train=300,
            n_test=120, n_val=60, corruptions=("contrast",), plane_resolution=3,
            path_points=3, bezier_epochs=1, landscape_images=60)
# The same for the MediumCNN paper preset on CIFAR-sized images (a CPU smoke run).
TINY_PAPER = {**TINY, "epochs": 2, "late_epochs": 2, "n_runs": 3, "a_samples": 2,
              "b_samples": 2, "shift_samples": 2, "n_train": 64, "n_test": 40,
              "landscape_images": 20, "predict_batch": 256, "n_val": 500,
              "a_max_tries": 1}
FIGURES = ("similarity", "tsne", "diversity_plane", "ensemble_size", "shift", "landscape")


def _tiny_cli(**extra: object) -> list[str]:
    out = []
    for key, value in {**TINY, **extra}.items():
        out += ["--set", f"{key}={json.dumps(list(value) if isinstance(value, tuple) else value)}"]
    return out


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A run stopped after the subspace phase, then resumed to the end."""
    out = tmp_path_factory.mktemp("reproduction")
    recipe = rp.make_recipe(**TINY)
    first: list[str] = []
    assert rp.reproduce(recipe, out, device="cpu", stop_after="subspace",
                        log=first.append) is None
    cache = out / "cache" / recipe.key()
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.pkl")}
    second: list[str] = []
    summary = rp.reproduce(recipe, out, device="cpu", log=second.append)
    return out, recipe, first, second, stamps, summary


def test_quick_pipeline_writes_report_figures_and_results(resumed):
    out, _, _, _, _, summary = resumed
    report = (out / "report.md").read_text()
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 1000
        assert f"({name}.png)" in report
    data = json.loads((out / "results.json").read_text())
    assert data["recipe"]["n_runs"] == 3
    assert set(data["ensemble_size"]) == set(rp.METHODS_A)
    for method in rp.METHODS_A:
        curve = data["ensemble_size"][method]
        assert len(curve["accuracy"]) == 3
        assert all(0 <= v <= 1 for v in curve["accuracy"])
        assert all(0 <= v <= 2 for v in curve["brier"])
    # The shift rows use the same test images as intensity 0: every row has 120 labels'
    # worth of accuracy granularity, and intensity 0 is the clean set itself.
    assert data["data"]["test"] == 120
    assert set(data["shift"]["by_intensity"]) == {str(s) for s in range(6)}
    assert len(data["claims"]) == 4
    assert all(isinstance(c["pass"], bool) for c in data["claims"])
    # A note on near-deterministic samplers sits beside its claim whenever there is one.
    js = data["shift"]["clean"]["js"]
    flagged = rp.near_deterministic(js)
    assert ("near-deterministic" in (data["claims"][1]["note"] or "")) == bool(flagged)
    for c in data["claims"]:
        if c["note"]:
            assert f"{c['claim']}. **Note: {c['note']}.**" in report
    assert "Subspace scales by one rule" in report
    assert "needs a GPU run" in report
    table = rp.summary_table(summary)
    assert "ensemble accuracy" in table


def test_independent_runs_accuracy_matches_a_direct_evaluation(resumed):
    out, recipe, *_ = resumed
    data = rp.load_data(recipe, None)
    cache = out / "cache" / recipe.key()
    base = pickle.loads((cache / "base.pkl").read_bytes())
    proba = base["estimator"].predict_member_proba(data.X_test)
    direct = (proba.argmax(axis=2) == data.y_test).mean(axis=1)
    reported = json.loads((out / "results.json").read_text())["runs"]["test_accuracy"]
    np.testing.assert_allclose(reported, direct)
    # Ensemble of all runs = mean of the members' probabilities.
    ensemble = float((proba.mean(axis=0).argmax(axis=1) == data.y_test).mean())
    curve = json.loads((out / "results.json").read_text())["ensemble_size"]["original"]
    assert curve["accuracy"][-1] == pytest.approx(ensemble)


def test_resume_loads_finished_phases_instead_of_recomputing(resumed):
    out, recipe, first, second, stamps, summary = resumed
    assert any("stopped after phase 'subspace'" in line for line in first)
    for phase in ("base", "trajectory", "subspace"):
        assert f"[{phase}] loaded from cache ({phase}.pkl)" in second
        assert summary["compute"]["phases"][phase]["status"] == "loaded from cache"
    for phase in ("plane", "shift", "landscape"):
        assert f"[{phase}] running" in second
        assert summary["compute"]["phases"][phase]["status"] == "computed"
    cache = out / "cache" / recipe.key()
    for name, stamp in stamps.items():
        assert (cache / name).stat().st_mtime_ns == stamp, f"{name} was rewritten"


def test_recipe_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown recipe field 'epoch'"):
        rp.make_recipe(epoch=3)
    with pytest.raises(ValueError, match="rank=5 must be below late_epochs=5"):
        rp.make_recipe(rank=5)
    with pytest.raises(ValueError, match=r"n_runs .* at least 3"):
        rp.make_recipe(n_runs=2)
    with pytest.raises(ValueError, match="model must be one of"):
        rp.make_recipe(model="vgg")
    with pytest.raises(ValueError, match="unknown corruptions"):
        rp.make_recipe(corruptions=("rain",))


def test_presets_follow_the_paper_recipes():
    medium = rp.make_recipe("mediumcnn", "cifar10", "paper")
    assert (medium.epochs, medium.batch_size, medium.lr, medium.n_val) == (40, 128, 1.6e-3, 500)
    assert medium.precision == "fp32" and medium.inputs == "raw255" and medium.dropout == 0.1
    assert (medium.n_train, medium.n_test) == (0, 0)  # the whole training and test sets
    schedule = rp.schedule_of(medium)
    assert [schedule(e) * 1.6e-3 for e in (0, 9, 10, 29, 30, 39)] == pytest.approx(
        [1.6e-3, 1.6e-3, 8e-4, 4e-4, 2e-4, 2e-4])
    resnet = rp.make_recipe("resnet20v1", "cifar10", "paper")
    keras = rp.schedule_of(resnet)
    assert resnet.epochs == 200 and resnet.augment and resnet.inputs == "unit_mean"
    assert [keras(e) for e in (0, 80, 120, 160, 180, 199)] == pytest.approx(
        [1, 1e-1, 1e-2, 1e-3, 5e-4, 5e-4])


def _init_norm(cls: type, **kwargs: int) -> float:
    """|theta| of a freshly built module, summed by hand over its parameters."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        module = cls(num_classes=10, **kwargs)
    return float(sum((p.detach().double() ** 2).sum() for p in module.parameters())) ** 0.5


@pytest.mark.parametrize("model, cls", [("smallcnn", SmallCNN), ("mediumcnn", MediumCNN)])
@pytest.mark.parametrize("rank", [4, 2])
def test_quick_scales_keep_the_papers_perturbation_relative_to_the_weights(model, cls, rank):
    # The paper (MediumCNN, 32x32 RGB): random s = 10 U(0,1) / 70 U(0,1), PCA c = 1 / 6 at
    # rank 5. Perturbation length over weight length is kept; PCA's length is c sqrt(rank).
    ratio = _init_norm(cls, in_channels=1, input_size=8) / _init_norm(MediumCNN)
    pca = ratio * (5 / rank) ** 0.5
    r = rp.make_recipe(model, "digits", "quick", rank=rank)
    got = (r.a_random_scale, r.b_random_scale, r.a_pca_scale, r.b_pca_scale)
    np.testing.assert_allclose(got, (10 * ratio, 70 * ratio, pca, 6 * pca), rtol=0.03)
    # The diagonal Gaussian's c and dropout's p are relative already: the paper's values.
    assert (r.a_gauss_scale, r.b_diag_scale, r.b_dropout_p) == (1.0, 10.0, 0.1)
    assert "Subspace scales by one rule" in rp.scale_rule_text(r)
    assert f"s = {r.a_random_scale:g} U(0, 1)" in rp.scale_rule_text(r)


def test_scale_rule_respects_overrides_paper_preset_and_the_global_stream():
    rp._scale_rule.cache_clear()
    state = torch.random.get_rng_state()
    r = rp.make_recipe(a_random_scale=5.0)
    assert torch.equal(state, torch.random.get_rng_state())
    rule = rp.scale_rule("smallcnn", r.rank)
    assert r.a_random_scale == 5.0 and r.b_random_scale == rule["b_random_scale"]
    assert "Set by hand: a_random_scale=5" in rp.scale_rule_text(r)
    assert rule["n_parameters"] == sum(p.numel() for p in SmallCNN(in_channels=1,
                                                                   input_size=8).parameters())
    paper = rp.make_recipe("smallcnn", "cifar10", "paper")
    assert (paper.a_random_scale, paper.b_random_scale, paper.a_pca_scale,
            paper.b_pca_scale) == (10.0, 70.0, 1.0, 6.0)


def test_near_deterministic_methods_are_those_below_five_percent_of_the_runs():
    js = {"independent": 0.04, "random": 0.0021, "diag_gaus": 0.0019, "pca_gaus": 0.0}
    assert rp.near_deterministic(js) == {"diag_gaus": 0.0019, "pca_gaus": 0.0}
    assert rp.near_deterministic(js, fraction=0.1) == {"random": 0.0021, "diag_gaus": 0.0019,
                                                       "pca_gaus": 0.0}
    assert rp.near_deterministic({"independent": 0.3, "random": 0.08}) == {}
    note = rp._near_note(rp.near_deterministic(js), 0.04)
    assert "Diag Gaus and PCA Gaus are near-deterministic here: JS 0.002, 0.000" in note
    assert rp._near_note({}, 0.04) is None


def test_help_lists_every_option():
    text = rp.build_parser().format_help()
    for option in ("--model", "--dataset", "--preset", "--data-home", "--out", "--device",
                   "--precision", "--seeds", "--batches", "--cifar10c", "--set",
                   "--stop-after"):
        assert option in text
    for choice in ("smallcnn", "mediumcnn", "resnet20v1", "cifar100", "digits", "paper",
                   "with-replacement"):
        assert choice in text


def _cache_dir(out: Path) -> Path:
    (folder,) = (out / "cache").iterdir()
    return folder


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", *_tiny_cli()]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (killed / "cache").is_dir() and any((killed / "cache").glob("*/trajectory.pkl")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cache = _cache_dir(killed)
    assert (cache / "base.pkl").is_file() and not (killed / "report.md").exists()
    stamp = (cache / "base.pkl").stat().st_mtime_ns
    resumed = subprocess.run([*cmd, "--out", str(killed)], env=env, capture_output=True,
                             text=True, check=True, timeout=300)
    assert "[base] loaded from cache (base.pkl)" in resumed.stdout
    assert (cache / "base.pkl").stat().st_mtime_ns == stamp
    fresh = tmp_path / "fresh"
    subprocess.run([*cmd, "--out", str(fresh)], env=env, capture_output=True, check=True,
                   timeout=300)
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((fresh / "results.json").read_text())
    for key in ("runs", "ensemble_size", "similarity", "diversity_plane", "shift"):
        assert a[key] == b[key], key


def _write_fake_cifar10(home: Path, rng: np.random.Generator) -> None:
    folder = home / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, n: int) -> None:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, size=n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", 200)
    dump("test_batch", 100)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)


@pytest.mark.slow
def test_paper_preset_code_path_with_published_cifar10c_layout(tmp_path):
    from ensemblekit.datasets import load_cifar10, make_cifar10c

    _write_fake_cifar10(tmp_path / "data", np.random.default_rng(0))
    test = load_cifar10(tmp_path / "data")
    make_cifar10c(test.X_test, test.y_test, tmp_path / "c10c",
                  corruptions=["contrast"], random_state=0)
    recipe = rp.make_recipe("mediumcnn", "cifar10", "paper",
                            **{**TINY_PAPER, "n_val": 100})
    summary = rp.reproduce(recipe, tmp_path / "out", data_home=str(tmp_path / "data"),
                           device="cpu", cifar10c=str(tmp_path / "c10c"), log=lambda s: None)
    assert summary["shift"]["source"] == str(tmp_path / "c10c")
    assert summary["compute"]["precision"] == "fp32"
    assert summary["data"] == {"train": 64, "validation": 100, "test": 40, "classes": 10}
    # The MediumCNN comparison is judged against the paper's bands (pass or fail, not n/a)
    # for the clean numbers.
    rows = {row["quantity"]: row for row in summary["paper_comparison"]}
    assert isinstance(rows["clean accuracy, single"]["pass"], bool)


DATA = Path("/work/shared/data/make_cifar10.py")


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_file(), reason="the shared CIFAR-10 archive is not present")
def test_paper_preset_runs_a_few_steps_on_real_cifar10(tmp_path):
    subprocess.run([sys.executable, str(DATA), str(tmp_path / "data")], check=True,
                   capture_output=True, timeout=300)
    recipe = rp.make_recipe("mediumcnn", "cifar10", "paper",
                            **TINY_PAPER)
    summary = rp.reproduce(recipe, tmp_path / "out", data_home=str(tmp_path / "data"),
                           device="cpu", log=lambda s: None)
    assert summary["data"]["validation"] == 500
    assert 0.0 <= summary["runs"]["test_accuracy"][0] <= 1.0
    assert (tmp_path / "out" / "report.md").is_file()


def test_batches_option_reaches_the_estimator():
    recipe = rp.make_recipe(batches="with-replacement")
    clf = rp.build_estimator(recipe, 100, "cpu", "estimator")
    assert clf.get_params()["batches"] == "with_replacement"
    assert rp.build_estimator(rp.make_recipe(), 100, "cpu", "estimator").batches == "permutation"


# ----------------------------------------------------------------------------- PCA scale cap
def _tiny_base(resumed):
    out, recipe, *_ = resumed
    cache = out / "cache" / recipe.key()
    base = pickle.loads((cache / "base.pkl").read_bytes())
    base["trajectories"] = np.load(cache / "base_trajectories.npy")
    return base, rp.load_data(recipe, None)


def _val_accuracy(base, data, thetas: torch.Tensor) -> float:
    """Mean validation accuracy of parameter vectors, by a plain forward pass per network."""
    from ensemblekit.posteriors import sampled_networks

    nets = sampled_networks(base["estimator"].estimators_[0].module_, thetas,
                            data.X_train[:1024], 256)
    X = torch.as_tensor(data.X_val)
    accs = []
    with torch.no_grad():
        for net in nets:
            net.eval()
            accs.append(float((net(X).argmax(dim=1).numpy() == data.y_val).mean()))
    return float(np.mean(accs))


@pytest.mark.parametrize("method", ["pca_gaus", "pca_random"])
@pytest.mark.parametrize("blow_up, bar", [(1.0, 0.0), (40.0, "between"), (40.0, 1.01)])
def test_pca_scale_cap_stays_below_the_rule_and_meets_the_validation_bar(
        resumed, method, blow_up, bar):
    base, data = _tiny_base(resumed)
    _, tiny, *_ = resumed
    run = 1
    template = base["estimator"].estimators_[0].module_
    if method == "pca_gaus":
        points = rp.late(base, tiny, run)
    else:
        gen = torch.Generator().manual_seed(3)
        theta = rp.final_theta(base, run)
        points = torch.stack([rp.random_subspace_sample(theta, tiny.a_random_scale, gen)
                              for _ in range(6)])
    rule = tiny.a_pca_scale * blow_up
    k = tiny.a_cap_samples

    def samples_at(c: float) -> torch.Tensor:
        # The same directions the search draws: the run's stream for this method.
        gen = rp._generator(tiny, 5, run, rp.METHODS_A.index(method))
        return rp.pca_gaussian_samples(points, tiny.rank, k, c, gen)

    if bar == "between":  # a bar the rule's samples miss and near-zero scales meet
        low, high = _val_accuracy(base, data, samples_at(rule)), _val_accuracy(
            base, data, samples_at(rule * rp.CAP_MIN_FRACTION))
        assert high > low + 0.05, "the blown-up scale should cost accuracy"
        bar = (low + high) / 2
    r = rp.make_recipe(**TINY, a_pca_scale=rule, a_threshold=bar)

    def search(global_seed: int) -> tuple[float, dict]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)  # the search must not depend on the global stream
            return rp.capped_pca_scale(template, points, r, data,
                                       rp._generator(r, 5, run, rp.METHODS_A.index(method)))

    c, info = search(0)
    assert 0 < c <= rule and info["scale"] == c and info["rule_scale"] == rule
    assert len(info["trace"]) <= 2 + r.a_cap_steps
    at_rule = _val_accuracy(base, data, samples_at(rule))
    if at_rule >= bar:
        assert c == rule and len(info["trace"]) == 1
    elif bar > 1:  # no scale can meet it: the grid's lower end, flagged
        assert c == pytest.approx(rule * rp.CAP_MIN_FRACTION) and not info["met"]
    else:
        assert info["met"] and c < rule
        assert _val_accuracy(base, data, samples_at(c)) >= bar
        # The largest grid value meeting it: the next grid value up misses the bar.
        step = (1 / rp.CAP_MIN_FRACTION) ** (0.5 ** r.a_cap_steps)
        assert _val_accuracy(base, data, samples_at(min(c * step, rule))) < bar
    # Deterministic for a seed, whatever the global stream holds.
    assert search(12345) == (c, info)


def test_pca_scale_cap_is_recorded_per_run_and_the_paper_preset_keeps_its_scale(resumed):
    out, tiny, *_ = resumed
    data = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for method in rp.CAPPED_METHODS:
        rec = data["a_pca_scales"][method]
        assert rec["capped"] and rec["rule"] == tiny.a_pca_scale
        assert len(rec["chosen_per_run"]) == tiny.n_runs
        assert all(0 < c <= tiny.a_pca_scale for c in rec["chosen_per_run"])
        for acc, met in zip(rec["validation_accuracy_at_chosen"], rec["bar_met"]):
            assert (acc >= tiny.a_threshold) == met
    assert "PCA scales capped by accuracy (configuration A)" in report
    assert "PCA scales (configuration A) capped by validation accuracy" in report
    # Configuration B and the paper preset keep their scales: no search, no cap.
    for preset_model in (("mediumcnn", "cifar10"), ("smallcnn", "cifar10"),
                         ("resnet20v1", "cifar10")):
        assert rp.make_recipe(*preset_model, "paper").a_cap_steps == 0
    base, tiny_data = _tiny_base(resumed)
    uncapped = rp.make_recipe(**TINY, a_cap_steps=0, a_pca_scale=3.0)
    thetas, info = rp.subspace_thetas("pca_gaus", uncapped, base, tiny_data, 0, 4, "A",
                                      torch.Generator().manual_seed(5))
    expected = rp.pca_gaussian_samples(rp.late(base, uncapped, 0), uncapped.rank, 4, 3.0,
                                       torch.Generator().manual_seed(5))
    assert torch.equal(thetas, expected) and info == {"scale": 3.0}
    capped = rp.make_recipe(**TINY, a_pca_scale=3.0)
    thetas_b, info_b = rp.subspace_thetas("pca_gaus", capped, base, tiny_data, 0, 4, "B",
                                          torch.Generator().manual_seed(5))
    assert torch.equal(thetas_b, rp.pca_gaussian_samples(
        rp.late(base, capped, 0), capped.rank, 4, capped.b_pca_scale,
        torch.Generator().manual_seed(5))) and info_b == {}
    with pytest.raises(ValueError, match="a_cap_steps must be a non-negative integer"):
        rp.make_recipe(a_cap_steps=-1)
    with pytest.raises(ValueError, match="a_cap_samples must be a positive integer"):
        rp.make_recipe(a_cap_samples=0)
