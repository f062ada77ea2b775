import contextlib
import dataclasses
import json
import multiprocessing
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sweep_fakes
import yaml

import ablations.ledger as ledger_module
import ablations.search_space as search_space
import ablations.sweep as sweep_module
import ablations.sweep_file as sweep_file_module
import launch
from ablations.heartbeat import FENCE_SIGNAL, ClaimLost, Heartbeat
from ablations.sweep import (
    OWN_PARAMETERS,
    TOP_LEVEL_KEYS,
    CellFailed,
    Ledger,
    SweepError,
    format_summary,
    load_sweep,
    prepare,
    run_sweep,
    stale_cell,
    summarize,
    train_cell,
    work,
)
from core.config import ALIASES, config_hash, from_dict

ROOT = Path(__file__).resolve().parents[1]
BASELINE = str(ROOT / "ablations/moving_mnist/e3d_baseline.yaml")
FAST = {"heartbeat_interval": 1, "grace_period": 2, "poll_s": 0.2}  # notice a dead worker within ~3 s


def write_sweep(tmp_path: Path, **changes) -> Path:
    """A 2 x 2 x 2 grid like the demo's, its runs under tmp_path; ``changes`` replace parameters (dotted keys, variant,
    profile; None removes one) or top-level keys (the rest)."""
    spec = {
        "name": "grid",
        "method": "grid",
        "metric": {"name": "val/mse", "goal": "minimize"},
        "parameters": {
            "variant": {"value": BASELINE},
            "profile": {"value": "demo"},
            "model.conv": {"values": ["3d", "2d"]},
            "model.residual": {"values": [False, True]},
            "loss.l1_weight": {"values": [0.0, 0.5]},
            "train.seed": {"value": 0},
            "train.runs_dir": {"value": str(tmp_path / "runs")},
            "tracking.wandb": {"value": "disabled"},
        },
    }
    for key, value in changes.items():
        if "." not in key and key not in (*OWN_PARAMETERS, *ALIASES):
            spec[key] = value
        elif value is None:
            spec["parameters"].pop(key, None)
        else:
            spec["parameters"][key] = value
    path = tmp_path / "sweep.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def call_counts(folder: Path, kind: str = "call") -> Counter:
    return Counter(path.name.split(".")[0] for path in folder.iterdir() if path.name.split(".")[1] == kind)


def start_hanging_worker(tmp_path: Path, sweep, objective, calls: Path):
    """Prepare the sweep's ledger, start one spawned worker on ``objective`` and wait until its cell has started."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    prepare(sweep, ledger)
    worker = multiprocessing.get_context("spawn").Process(target=work, args=(sweep, ledger, objective))
    worker.start()
    deadline = time.monotonic() + 60
    while not call_counts(calls, "started") and time.monotonic() < deadline:
        time.sleep(0.05)
    return ledger, worker


# ---------------------------------------------------------------------------------------------------------------------
# The file


def test_demo_grid_expands_to_eight_named_cells_with_stable_ids():
    sweep = load_sweep(ROOT / "sweeps/demo.yaml")
    assert sweep.method == "grid" and sweep.metric == "val/mse" and sweep.goal == "minimize"
    assert len(sweep.cells) == 8 and len({c.id for c in sweep.cells}) == 8
    assert [c.id for c in load_sweep(ROOT / "sweeps/demo.yaml").cells] == [c.id for c in sweep.cells]
    names = [c.name for c in sweep.cells]
    assert names[:2] == ["conv=3d-residual=false-l1_weight=0.0-seed=0", "conv=3d-residual=false-l1_weight=0.5-seed=0"]
    assert names[-1] == "conv=2d-residual=true-l1_weight=0.5-seed=0"
    assert all(Path(c.run_dir) == Path("runs/demo") / f"{c.name}-{c.id}" for c in sweep.cells)
    cell = sweep.cells[-1]
    cfg = cell.config
    assert cell.id == config_hash(cfg) and cfg.train.threads == 1  # its identity is what it trains
    assert (cfg.model.conv, cfg.model.residual, cfg.loss.l1_weight, cfg.train.seed) == ("2d", True, 0.5, 0)
    assert cfg.model.hidden == (32, 32)  # the demo profile applied
    assert cfg.tracking.group == "demo"
    assert cfg.tracking.tags == ("conv=2d", "residual=true", "l1_weight=0.5")


def test_the_showcase_sweeps_start_from_the_shipped_baselines():
    pretrained_dir = ROOT / "ablations/moving_mnist/pretrained"
    manifests = {p.stem: json.loads(p.read_text()) for p in pretrained_dir.glob("*.json")}
    shipped = {name: f"ablations/moving_mnist/pretrained/{m['file']}" for name, m in manifests.items()}
    # the stage-1 rows: each variant's shipped model at each seed, its own file, scored as it is
    baselines = [c.config for c in load_sweep(ROOT / "sweeps/baselines.yaml").cells]
    assert sorted((c.variant, c.train.seed) for c in baselines) == sorted(
        (f"mmnist_{v}", s) for v in ("e3d_baseline", "e2d", "residual") for s in (0, 1))  # fmt: skip
    for c in baselines:
        assert (c.train.steps, c.train.init_from) == (0, shipped[f"{c.variant}-s{c.train.seed}"])
        assert c.model == from_dict(manifests[f"{c.variant}-s{c.train.seed}"]["config"], "manifest").model
    grid = load_sweep(ROOT / "sweeps/finetune.yaml")
    configs = [c.config for c in grid.cells]
    assert len({c.id for c in grid.cells}) == 12
    # no skips, the study's fixed skips, zero-gated skips: each x l1 weight 0 and 2/3 x 2 seeds
    skips = {(False, "fixed"), (True, "fixed"), (True, "zero")}
    assert {(c.model.residual, c.model.residual_gate, round(c.loss.l1_weight, 4), c.train.seed) for c in configs} == {
        (*k, w, s) for k in skips for w in (0.0, 0.6667) for s in (0, 1)}  # fmt: skip
    assert {(c.train.init_from, c.train.steps, c.model.conv) for c in configs} == {
        (shipped["mmnist_e3d_baseline-s0"], 20, "3d")}  # fmt: skip
    # every stage-2 cell trains the shipped model's shapes (the pretrain profile's), and the baseline scored at 0
    # steps is tested on the same sequences as the finetuned cells
    pretrained = manifests["mmnist_e3d_baseline-s0"]["config"]
    assert all(list(c.model.hidden) == pretrained["model"]["hidden"] for c in configs + baselines)
    assert {(c.data.test_size, c.data.test_seed) for c in configs + baselines} == {(256, 1)}


def test_a_missing_data_file_is_found_when_the_sweep_is_read_not_cell_by_cell(tmp_path):
    missing = tmp_path / "mmnist-test.npz"
    path = write_sweep(tmp_path, **{"data.test_path": {"value": str(missing)}})
    with pytest.raises(SweepError, match=f"data.test_path names {missing}, which does not exist"):
        load_sweep(path)


def test_a_grid_of_long_values_keeps_its_cell_names_within_the_name_limit(tmp_path):
    deep = [[4] * 100, [4] * 99 + [8]]  # 100 layers: names alike for their first 190 characters
    sweep = load_sweep(write_sweep(tmp_path, **{"model.hidden": {"values": deep}, "model.residual": {"value": False}}))
    folders = [Path(cell.run_dir).name for cell in sweep.cells]
    assert len(set(folders)) == len(sweep.cells) and all(len(f.encode()) <= 200 for f in folders)


def test_cell_ids_follow_parameters_not_order(tmp_path):
    first = load_sweep(write_sweep(tmp_path))
    reordered = write_sweep(tmp_path, **{"loss.l1_weight": None})
    spec = yaml.safe_load(reordered.read_text())
    spec["parameters"] = {"loss.l1_weight": {"values": [0.0, 0.5]}, **spec["parameters"]}
    reordered.write_text(yaml.safe_dump(spec, sort_keys=False))
    second = load_sweep(reordered)
    assert {c.id: c.params for c in first.cells} == {c.id: c.params for c in second.cells}


def test_the_command_for_wandb_agent_is_kept():
    raw = yaml.safe_load((ROOT / "sweeps/demo.yaml").read_text())
    assert set(raw) <= set(TOP_LEVEL_KEYS)
    assert raw["program"] == "launch.py" and raw["command"] == ["${env}", "python", "${program}", "train", "${args}"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"workers": 2}, ["unknown top-level key 'workers'", "parameters"]),
        ({"method": "hyperband"}, ["method must be one of grid, random, bayes, ablation"]),
        ({"metric": {"name": "val/loss"}}, ["metric.name", "val/mse"]),
        ({"metric": {"name": "val/mse", "goal": "lowest"}}, ["metric.goal"]),
        ({"model.convv": {"values": ["3d"]}}, ["unknown parameter 'model.convv'", "'model.conv'", "loss.l1_weight"]),
        ({"variant": None}, ["parameters.variant is required"]),
        ({"max_iterations": {"value": 3}, "train.steps": {"value": 4}}, ["'max_iterations' and 'train.steps'"]),
        ({"model.conv": {"values": "3d"}}, ["parameters.model.conv", "non-empty list"]),
        ({"model.conv": {"value": "3d", "values": ["2d"]}}, ["parameters.model.conv", "exactly one of"]),
        ({"model.conv": {"values": ["3d"], "step": 1}}, ["parameters.model.conv", "unknown field 'step'"]),
        ({"model.conv": {"values": ["3d", "4d"]}}, ["model.conv=4d", "model.conv must be one of"]),
        ({"loss.l1_weight": {"values": [0.5, 2.0]}}, ["loss.l1_weight=2.0", "loss.l1_weight must lie in [0, 1]"]),
        ({"loss.l1_weight": {"distribution": "uniform", "min": 0, "max": 1}}, ["loss.l1_weight", "a grid needs"]),
    ],
)
def test_bad_sweep_files_name_the_key(tmp_path, changes, expected):
    with pytest.raises(SweepError) as error:
        load_sweep(write_sweep(tmp_path, **changes))
    assert str(tmp_path / "sweep.yaml") in str(error.value)
    for text in expected:
        assert text in str(error.value)


@pytest.mark.parametrize(
    ("distribution", "expected"),
    [
        ({"distribution": "uniform", "min": 0.1}, "needs max as a number"),
        ({"distribution": "int_uniform", "min": 0.5, "max": 3}, "needs min as an integer"),
        ({"distribution": "log_uniform_values", "min": 0, "max": 1}, "min > 0"),
        ({"distribution": "uniform", "min": 0.9, "max": 0.1}, "must be below max"),
        ({"distribution": "normal", "min": 0, "max": 1}, "distribution must be one of"),
        ({"distribution": "categorical", "min": 0, "max": 1}, "categorical distribution needs a non-empty values"),
        ({"distribution": "uniform", "min": 0.0, "max": 2.0}, "loss.l1_weight must lie in [0, 1]"),
    ],
)
def test_bad_distributions_name_the_parameter(tmp_path, distribution, expected):
    path = write_sweep(tmp_path, method="bayes", run_cap=6, **{"loss.l1_weight": distribution})
    with pytest.raises(SweepError, match="parameters.loss.l1_weight") as error:
        load_sweep(path)
    assert expected in str(error.value)


def write_search(tmp_path: Path, **changes) -> Path:
    """A search of loss.l1_weight over [0, 1] on the baseline as released (no profile: its l1 weight is 2/3)."""
    search = {
        "method": "bayes",
        "run_cap": 6,
        "profile": None,
        "model.conv": {"value": "3d"},
        "model.residual": {"value": False},
        "loss.l1_weight": {"distribution": "uniform", "min": 0, "max": 1},
        "train.steps": {"value": 50},
        "train.eval_every": {"value": 10},
    }
    return write_sweep(tmp_path, **{**search, **changes})


def test_a_search_is_validated_up_front(tmp_path):
    sweep = load_sweep(write_search(tmp_path))
    assert sweep.cells == () and Path(sweep.folder) == tmp_path / "runs/grid"
    assert (sweep.run_cap, sweep.seed, sweep.planned) == (6, 0, 6)
    assert sweep.first == {"loss.l1_weight": pytest.approx(2 / 3)}  # the release's value, tried first
    assert sweep.pruner == {"type": "median", "n_startup_trials": 2}
    assert type(search_space.sampler(sweep, worker=0)).__name__ == "TPESampler"
    random = load_sweep(write_search(tmp_path, method="random"))
    assert type(search_space.sampler(random, worker=0)).__name__ == "RandomSampler"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"run_cap": None}, "needs run_cap"),
        ({"train.seed": {"values": [0, 1]}}, "parameters.train.seed: a search's seed must be a constant"),
        ({"loss.l1_weight": {"value": 0.5}}, "needs a parameter with values or a distribution"),
        ({"early_terminate": {"type": "median"}}, "early_terminate: type must be hyperband"),
        ({"early_terminate": {"type": "hyperband", "min_iter": 1, "s": 2}}, "unsupported field 's'"),
        ({"early_terminate": {"type": "hyperband"}}, "hyperband needs min_iter"),
        ({"early_terminate": {"type": "hyperband", "min_iter": 5}}, "must be below"),
        ({"early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 1}}, "eta must be an integer of at least 2"),
        ({"method": "grid", "loss.l1_weight": {"values": [0.5]}, "early_terminate": {"type": "hyperband"}},
         "early_terminate is for bayes and random searches"),
    ],
)  # fmt: skip
def test_bad_search_files_name_the_key(tmp_path, changes, expected):
    path = write_search(tmp_path, **changes)
    if changes.get("run_cap", 1) is None:
        spec = yaml.safe_load(path.read_text())
        del spec["run_cap"]
        path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SweepError) as error:
        load_sweep(path)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_hyperband_comes_from_early_terminate_in_training_steps(tmp_path):
    sweep = load_sweep(write_search(tmp_path, early_terminate={"type": "hyperband", "min_iter": 2}))
    # W&B counts iterations in evaluations: 2 evaluations of 10 steps; the whole run (50 steps) is the most.
    assert sweep.pruner == {"type": "hyperband", "min_resource": 20, "max_resource": 50, "reduction_factor": 3}
    assert type(search_space.pruner(sweep)).__name__ == "HyperbandPruner"  # optuna is imported only in ablations/
    assert type(search_space.pruner(load_sweep(write_search(tmp_path)))).__name__ == "MedianPruner"
    capped = write_search(tmp_path, early_terminate={"type": "hyperband", "min_iter": 1, "max_iter": 4, "eta": 2})
    assert load_sweep(capped).pruner == {"type": "hyperband", "min_resource": 10, "max_resource": 40,
                                         "reduction_factor": 2}  # fmt: skip


def test_the_showcase_search_file():
    sweep = load_sweep(ROOT / "sweeps/search.yaml")
    assert (sweep.method, sweep.metric, sweep.goal, sweep.run_cap, sweep.seed) == ("bayes", "val/mse", "minimize", 3, 0)
    assert sweep.pruner == {"type": "hyperband", "min_resource": 10, "max_resource": 20, "reduction_factor": 3}
    assert set(sweep.raw) <= set(TOP_LEVEL_KEYS)
    assert sweep.first == {"loss.l1_weight": 0.0}  # the finetune profile's own l1 weight: a cell of finetune.yaml
    grid = {c.id for c in load_sweep(ROOT / "sweeps/finetune.yaml").cells}
    assert sweep_module.search_cell(sweep, 0, sweep.first).id in grid  # so its first trial is copied, not retrained


@pytest.mark.slow
def test_tpe_finds_the_optimum_from_the_release_value_and_prunes_bad_trials(tmp_path, calls):
    sweep = load_sweep(write_search(tmp_path, run_cap=10))
    summary = run_sweep(sweep, workers=1, objective=sweep_fakes.quadratic, **FAST)
    assert sum(call_counts(calls).values()) == 10 and len(summary.cells) == 10
    first = summary.cells[0]
    assert first.cell.name == "trial=0-l1_weight=0.6667-seed=0"
    assert first.cell.params["loss.l1_weight"] == pytest.approx(2 / 3) and first.status == "done"
    assert Path(first.cell.run_dir) == tmp_path / f"runs/grid/trial=0-l1_weight=0.6667-seed=0-{first.cell.id}"
    assert "--loss.l1_weight=0.6666666666666666" in first.cell.overrides  # the config gets the value whole
    best = summary.best
    # Measured: TPE's best is 0.30001 in 10 trials; random sampling's best, same seed and budget, 0.42.
    assert abs(best.cell.params["loss.l1_weight"] - sweep_fakes.OPTIMUM) < 0.02
    assert summary.done + summary.pruned == 10 and summary.failed == 0 and summary.left == 0
    assert "10 trials" in format_summary(summary) and "pruned" in format_summary(summary)
    # Seeded by train.seed: TPE's first random draw is numpy's RandomState(0).uniform(), 0.5488.
    assert summary.cells[1].cell.name == "trial=1-l1_weight=0.5488-seed=0"
    # The median pruner stopped trials whose intermediate values were worse than the median: the far ones.
    pruned = [c for c in summary.cells if c.status == "pruned"]
    assert len(pruned) >= 3 and sum(call_counts(calls, "pruned").values()) == len(pruned)
    assert all(c.reason.startswith("pruned at step ") and int(c.reason.split()[-1]) < 30 for c in pruned)
    distance = {c.cell.name: abs(c.cell.params["loss.l1_weight"] - sweep_fakes.OPTIMUM) for c in summary.cells}
    assert min(distance[c.cell.name] for c in pruned) > distance[best.cell.name]


@pytest.mark.slow
def test_a_resumed_search_keeps_to_run_cap_and_reruns_a_killed_trial(tmp_path, calls, monkeypatch):
    sweep = load_sweep(write_search(tmp_path, run_cap=4))
    monkeypatch.setenv("SWEEP_HANG_TRIAL", "trial=1-")
    ledger, worker = start_hanging_worker(tmp_path, sweep, sweep_fakes.hang_quadratic, calls)
    os.kill(worker.pid, signal.SIGKILL)  # trial 1 mid-run
    worker.join()
    assert [c.status for c in summarize(sweep, ledger).cells] == ["done", "running"]

    summary = run_sweep(sweep, workers=2, objective=sweep_fakes.quadratic, **FAST)
    assert len(summary.cells) == 4 and summary.left == 0 and summary.failed == 0
    assert [c.trials for c in summary.cells] == [1, 2, 1, 1]  # trial 1 retried in its own slot and folder
    killed = summary.cells[1]
    assert killed.cell.name.startswith("trial=1-") and killed.status in ("done", "pruned")
    assert sum(call_counts(calls).values()) == 4  # trial 0 once, trial 1 once after its kill, trials 2 and 3

    again = run_sweep(sweep, workers=2, objective=sweep_fakes.quadratic, **FAST)
    assert sum(call_counts(calls).values()) == 4 and len(again.cells) == 4  # the cap is reached: nothing runs
    more = run_sweep(load_sweep(write_search(tmp_path, run_cap=6)), objective=sweep_fakes.quadratic, **FAST)
    assert sum(call_counts(calls).values()) == 6 and len(more.cells) == 6  # a raised cap adds only the difference


# ---------------------------------------------------------------------------------------------------------------------
# One factor at a time


def test_ablation_changes_one_axis_at_a_time_from_the_base(tmp_path, calls):
    path = write_sweep(tmp_path, method="ablation", **{"loss.l1_weight": {"values": [0.0, 0.5, 1.0]}})
    sweep = load_sweep(path)
    assert len(sweep.cells) == 1 + 1 + 1 + 2
    assert [c.name for c in sweep.cells] == [
        "conv=3d-residual=false-l1_weight=0.0-seed=0",  # the base: every axis's first value
        "conv=2d-residual=false-l1_weight=0.0-seed=0",
        "conv=3d-residual=true-l1_weight=0.0-seed=0",
        "conv=3d-residual=false-l1_weight=0.5-seed=0",
        "conv=3d-residual=false-l1_weight=1.0-seed=0",
    ]
    assert [c.id for c in load_sweep(path).cells] == [c.id for c in sweep.cells]
    same = {"loss.l1_weight": {"values": [0.0, 0.5, 1.0]}, "train.runs_dir": {"value": str(tmp_path / "runs")}}
    grid = load_sweep(write_sweep(tmp_path / "grid", **same))
    assert {c.id for c in sweep.cells} < {c.id for c in grid.cells}  # the same cells as the grid's, by id
    summary = run_sweep(sweep, workers=2, objective=sweep_fakes.count_calls, **FAST)
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})
    assert (summary.done, summary.left) == (5, 0) and "5 done, 0 failed, 0 left of 5 cells" in format_summary(summary)


def test_cli_reports_a_bad_sweep_file(tmp_path, capsys):
    assert launch.main(["sweep", str(write_sweep(tmp_path, workers=2))]) == 2
    assert "unknown top-level key 'workers'" in capsys.readouterr().err


def test_cli_passes_workers_and_storage_to_the_runner(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run_sweep(sweep, workers, storage, gpus):
        seen.update(name=sweep.name, workers=workers, storage=storage, gpus=gpus)
        return sweep_module.Summary(sweep, [sweep_module.CellStatus(c, "waiting") for c in sweep.cells])

    monkeypatch.setattr(sweep_module, "run_sweep", fake_run_sweep)
    path = str(write_sweep(tmp_path))
    assert launch.main(["sweep", path, "--workers", "3", "--storage", "sqlite:///x.db"]) == 0
    assert seen == {"name": "grid", "workers": 3, "storage": "sqlite:///x.db", "gpus": None}
    assert "grid: 0 done, 0 failed, 8 left of 8 cells" in capsys.readouterr().out
    assert launch.main(["sweep", path, "--workers", "2", "--devices", "2,3"]) == 0 and seen["gpus"] == ["2", "3"]
    assert launch.main(["sweep", path, "--devices", "cpu"]) == 0 and seen["gpus"] == []
    assert launch.main(["sweep", path, "--devices", "0,zero"]) == 2  # a usage error
    assert "--devices '0,zero': 'zero' is not a GPU index or UUID" in capsys.readouterr().err


def test_each_worker_computes_on_its_own_gpu_round_robin(tmp_path, calls, monkeypatch):
    # Four fake GPUs, as CUDA_VISIBLE_DEVICES lists them; three workers take 0, 1 and 2, each alone in its process.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert sweep_module.visible_gpus() == ["0", "1", "2", "3"]
    sweep = load_sweep(write_sweep(tmp_path))
    run_sweep(sweep, workers=3, objective=sweep_fakes.record_gpu, **FAST)
    seen = {path.read_text().split("|")[1] for path in calls.iterdir() if ".call." in path.name}
    assert seen <= {"0", "1", "2"} and len(seen) >= 2  # every cell on one worker's own GPU; at least two workers ran
    by_process = {}
    for path in calls.iterdir():
        by_process.setdefault(path.name.split(".")[2], set()).add(path.read_text().split("|")[1])
    assert all(len(gpus) == 1 for gpus in by_process.values())  # a worker keeps its GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep_module.visible_gpus() == []  # none visible: CPU workers, nothing changes


# ---------------------------------------------------------------------------------------------------------------------
# Running


def test_two_workers_run_every_cell_once_and_a_rerun_runs_nothing(tmp_path, calls, capfd):
    sweep = load_sweep(write_sweep(tmp_path))
    summary = run_sweep(sweep, workers=2, objective=sweep_fakes.count_calls, **FAST)
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})
    assert (summary.done, summary.failed, summary.left) == (8, 0, 0)
    assert summary.best.cell.name == "conv=3d-residual=true-l1_weight=0.5-seed=0" and summary.best.value == 6.5
    assert (tmp_path / "runs/grid/study.db").is_file()
    out = capfd.readouterr().out
    assert out.count(" left; best so far ") == 8 and "[8/8 done, 0 running, 0 failed, 0 left; best so far " in out
    table = format_summary(summary)
    assert "grid: 8 done, 0 failed, 0 left of 8 cells" in table and "best (minimize val/mse)" in table

    again = run_sweep(load_sweep(write_sweep(tmp_path)), workers=2, objective=sweep_fakes.count_calls, **FAST)
    assert sum(call_counts(calls).values()) == 8  # nothing ran again
    assert again.done == 8 and "0 to run" in capfd.readouterr().out


def test_no_cell_starts_once_a_finished_one_reached_the_metric_target(tmp_path, calls, capfd):
    # The first cell (3d, no residuals, l1 weight 0) scores 8.0: at the target, so the other seven never start.
    sweep = load_sweep(write_sweep(tmp_path, metric={"name": "val/mse", "goal": "minimize", "target": 8.0}))
    assert sweep.target == 8.0
    summary = run_sweep(sweep, workers=1, objective=sweep_fakes.count_calls, **FAST)
    assert call_counts(calls) == Counter({sweep.cells[0].id: 1}) and (summary.done, summary.left) == (1, 7)
    assert "metric.target 8 reached by conv=3d-residual=false-l1_weight=0.0-seed=0 (8): no further cell starts" in (
        capfd.readouterr().out)  # fmt: skip


def test_failed_cells_are_recorded_and_the_others_run(tmp_path, calls):
    sweep = load_sweep(write_sweep(tmp_path))
    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    summary = run_sweep(sweep, workers=2, storage=storage, objective=sweep_fakes.fail_some, **FAST)
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "runs/grid/study.db").exists()
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})
    by_name = {c.cell.name: c for c in summary.cells}
    diverged = by_name["conv=3d-residual=true-l1_weight=0.5-seed=0"]
    assert (diverged.status, diverged.reason) == ("diverged", "loss became nan at step 3")
    broken = by_name["conv=2d-residual=false-l1_weight=0.0-seed=0"]
    assert (broken.status, broken.reason) == ("failed", "RuntimeError: out of memory")
    assert (summary.done, summary.failed, summary.left) == (4, 4, 0)
    assert "diverged" in format_summary(summary) and "out of memory" in format_summary(summary)
    # Failures are results too: running the sweep again does not repeat them.
    again = run_sweep(sweep, workers=1, storage=storage, objective=sweep_fakes.fail_some, **FAST)
    assert sum(call_counts(calls).values()) == 8 and (again.done, again.failed) == (4, 4)


def test_a_cell_whose_run_folder_is_busy_goes_back_to_the_queue_and_runs_once(tmp_path, calls):
    sweep = load_sweep(write_sweep(tmp_path))
    summary = run_sweep(sweep, workers=1, objective=sweep_fakes.busy_once, **FAST)
    assert call_counts(calls, "busy") == call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})
    assert (summary.done, summary.failed, summary.left) == (8, 0, 0)


def test_a_worker_rides_out_a_ledger_outage_and_gives_up_cleanly_after_its_limit(tmp_path, calls, monkeypatch, capsys):
    import optuna

    sweep = load_sweep(write_sweep(tmp_path))
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    prepare(sweep, ledger)
    real_claim, outage = ledger_module._claim, iter(range(2))

    def claim_through_an_outage(*args):
        if next(outage, None) is not None:  # the database is down for the first two claims
            raise optuna.exceptions.StorageInternalError("connection refused")
        return real_claim(*args)

    monkeypatch.setattr(ledger_module, "_claim", claim_through_an_outage)
    assert work(sweep, ledger, sweep_fakes.count_calls) == 8
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})
    out = capsys.readouterr().out
    assert "worker 0: claiming a cell: the ledger is unreachable (StorageInternalError); trying again in 1 s" in out
    assert "trying again in 2 s (1 s so far, giving up after 300 s)" in out

    def down():
        raise optuna.exceptions.StorageInternalError("connection refused")

    hidden = dataclasses.replace(ledger, url="postgresql://me:secret@db:5432/sweeps", outage_s=3)
    with pytest.raises(SweepError, match=r"the ledger \(postgresql://me:\*\*\*@db:5432/sweeps\) has been unreachable "
                       r"for 3 s .* run the same command again"):  # fmt: skip
        ledger_module.retry_through_outage(down, hidden, "worker 0: claiming a cell")


@pytest.mark.parametrize("cut", ["signing", "unlocking"])
@pytest.mark.parametrize("kind", ["grid", "search"])
def test_a_claim_cut_off_by_an_outage_hands_its_trial_back(tmp_path, calls, monkeypatch, kind, cut):
    """The outage falls inside a claim, after its trial is RUNNING: before the claim is signed, or once it is signed,
    on the release of the ledger's lock (seen in CI: PostgreSQL restarted just then). The worker, alive and so
    vouching for that trial, hands it back before it claims again. Every cell runs once; none is left running (the
    sweep would wait for it forever), and a search keeps to its run_cap."""
    import optuna

    sweep = load_sweep(write_sweep(tmp_path) if kind == "grid" else write_search(tmp_path, run_cap=3))
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs' / sweep.name / 'study.db'}", sweep.name, **FAST)
    prepare(sweep, ledger)
    outage = iter(range(1))

    def down_once() -> None:
        if next(outage, None) is not None:  # the database goes down mid-claim, once
            raise optuna.exceptions.StorageInternalError("server closed the connection unexpectedly")

    if cut == "signing":
        real_tag = ledger_module.worker_tag
        monkeypatch.setattr(ledger_module, "worker_tag", lambda: (down_once(), real_tag())[1])
    else:
        real_exclusive = ledger_module._exclusive

        @contextlib.contextmanager
        def exclusive_down_on_release(held):
            with real_exclusive(held):
                yield
            down_once()

        monkeypatch.setattr(ledger_module, "_exclusive", exclusive_down_on_release)
    objective = sweep_fakes.count_calls if kind == "grid" else sweep_fakes.quadratic
    ran = work(sweep, ledger, objective)
    summary = summarize(sweep, ledger)
    assert [c.status for c in summary.cells].count("running") == 0
    assert set(call_counts(calls).values()) == {1} and ran == len(summary.cells)
    assert len(summary.cells) == (len(sweep.cells) if kind == "grid" else 3)
    assert summary.done + summary.pruned == len(summary.cells) and summary.failed == 0


def test_a_killed_workers_cell_runs_again_and_no_cell_runs_twice(tmp_path, calls, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path, **{"loss.l1_weight": {"value": 0.5}}))  # 4 cells
    hung = sweep.cells[1]
    monkeypatch.setenv("SWEEP_HANG_CELL", hung.id)
    ledger, worker = start_hanging_worker(tmp_path, sweep, sweep_fakes.hang_on_one, calls)
    assert call_counts(calls, "started") == Counter({hung.id: 1})
    os.kill(worker.pid, signal.SIGKILL)  # mid-cell: no chance to tell the ledger anything
    worker.join()
    left = summarize(sweep, ledger)
    assert [c.status for c in left.cells] == ["done", "running", "waiting", "waiting"]

    summary = run_sweep(sweep, workers=2, objective=sweep_fakes.count_calls, **FAST)
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})  # each cell completed exactly once
    assert (summary.done, summary.failed, summary.left) == (4, 0, 0)
    assert [c.trials for c in summary.cells] == [1, 2, 1, 1]  # the killed cell's trial was retried


def test_a_live_workers_cell_is_not_taken_from_it_when_its_beats_come_late(tmp_path, calls, monkeypatch):
    """A worker whose heartbeats stall past the grace period (a loaded machine) but whose process lives keeps its
    cell: another worker on the same machine vouches for it instead of running the cell a second time beside it."""
    one_cell = {"model.conv": {"value": "3d"}, "model.residual": {"value": False}, "loss.l1_weight": {"value": 0.0}}
    sweep = load_sweep(write_sweep(tmp_path, **one_cell))
    monkeypatch.setenv("SWEEP_SLOW_S", "5")
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", heartbeat_interval=600, grace_period=1,
                    poll_s=0.2)  # fmt: skip
    prepare(sweep, ledger)
    silent = multiprocessing.get_context("spawn").Process(target=work, args=(sweep, ledger, sweep_fakes.slow_silent))
    silent.start()
    deadline = time.monotonic() + 60
    while not call_counts(calls, "started") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # past the grace period: its only beat, at the claim, is stale now
    assert work(sweep, ledger, sweep_fakes.count_calls) == 0  # waits for the live worker, runs nothing
    silent.join()
    assert silent.exitcode == 0 and sum(call_counts(calls).values()) == 1
    assert [c.status for c in summarize(sweep, ledger).cells] == ["done"]


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_a_worker_whose_cell_was_declared_dead_elsewhere_stops_it_within_a_beat(tmp_path, calls, monkeypatch, sigint):
    """Fencing: another machine's worker failed this worker's trial as stale (its beats came late); at its next beat
    this worker finds the claim gone, stops the cell before finishing it, records nothing and goes on. Also where
    SIGINT is ignored, as in a worker a script started in the background (``launch.py sweep ... &``)."""
    sweep = load_sweep(write_sweep(tmp_path))
    monkeypatch.setenv("SWEEP_SLOW_S", "30")
    monkeypatch.setenv("SWEEP_HANG_CELL", sweep.cells[0].id)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:  # the spawned worker inherits an ignored SIGINT
        ledger, worker = start_hanging_worker(tmp_path, sweep, sweep_fakes.slow_on_one, calls)
    finally:
        signal.signal(signal.SIGINT, previous)
    storage = ledger_module._storage(ledger)
    study_id = storage.get_study_id_from_name("grid")
    (running,) = storage.get_all_trials(study_id, states=(search_space.optuna_module().trial.TrialState.RUNNING,))
    taken = time.monotonic()
    storage.set_trial_state_values(running._trial_id, state=search_space.optuna_module().trial.TrialState.FAIL)
    worker.join(timeout=60)
    assert worker.exitcode == 0 and time.monotonic() - taken < 20  # not the 30 s the cell would have taken
    assert sweep.cells[0].id not in call_counts(calls)  # it never finished here
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells[1:]})  # the worker went on


def test_a_claim_lost_as_the_cell_ends_does_not_stop_the_worker():
    """The fence's signal can land after the cell's last line: once the heartbeat has stopped it does nothing, and
    between the cell's end and the heartbeat's exit it is swallowed (recording then finds the trial gone)."""

    before = signal.getsignal(FENCE_SIGNAL)
    with Heartbeat(lambda: True, 60) as heartbeat:  # a claim that holds: it never fences by itself
        heartbeat.stop()
        os.kill(os.getpid(), FENCE_SIGNAL)  # handled here, after stop(): nothing to stop
        time.sleep(0.05)
    with Heartbeat(lambda: True, 60):
        with pytest.raises(ClaimLost):  # while the cell runs: it stops the cell ...
            os.kill(os.getpid(), FENCE_SIGNAL)
            time.sleep(5)
        raise ClaimLost("landed after the cell's last line")  # ... but not the worker
    assert signal.getsignal(FENCE_SIGNAL) == before


def test_a_stopped_worker_hands_its_cell_back_at_once(tmp_path, calls, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path, **{"loss.l1_weight": {"value": 0.5}}))
    monkeypatch.setenv("SWEEP_HANG_CELL", sweep.cells[0].id)
    ledger, worker = start_hanging_worker(tmp_path, sweep, sweep_fakes.hang_on_one, calls)
    worker.terminate()  # SIGTERM, as a scheduler or the sweep's own parent stops a worker
    worker.join()
    assert worker.exitcode == 0
    first = summarize(sweep, ledger).cells[0]
    assert (first.status, first.trials) == ("waiting", 2)  # no grace period to wait for: the next run takes it


# ---------------------------------------------------------------------------------------------------------------------
# One real cell


def write_tiny_variant(tmp_path: Path) -> Path:
    """A variant that trains in about a second on 30 random 28x28 digits: 2 steps, evaluated at step 2."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=digits[:20], x_test=digits[20:])
    variant = tmp_path / "tiny.yaml"
    variant.write_text(yaml.safe_dump({
        "variant": "tiny",
        "data": {"mnist": str(tmp_path / "mnist.npz"), "image_size": 32, "total_frames": 4, "context_frames": 2,
                 "val_size": 2, "test_size": 2},
        "model": {"hidden": [2, 2], "filter_size": 3, "patch_size": 4},
        "train": {"steps": 2, "batch_size": 1, "eval_every": 2, "checkpoint_every": 2, "log_every": 1,
                  "eval_batch_size": 2},
        "tracking": {"frames": 0},
    }))  # fmt: skip
    return variant


def test_train_cell_trains_the_cell_in_its_sweep_folder(tmp_path):
    variant = write_tiny_variant(tmp_path)
    path = write_sweep(tmp_path, variant={"value": str(variant)}, profile=None, metric={"name": "test/mse"})
    sweep = load_sweep(path)
    cell = sweep.cells[-1]
    value = train_cell(cell, "test/mse")
    summary = json.loads((Path(cell.run_dir) / "summary.json").read_text())
    assert summary["status"] == "finished" and value == pytest.approx(summary["metrics"]["test/mse"])
    saved = yaml.safe_load((Path(cell.run_dir) / "config.yaml").read_text())
    assert saved["model"]["conv"] == "2d" and saved["model"]["residual"] is True and saved["loss"]["l1_weight"] == 0.5
    assert saved["tracking"]["group"] == "grid"


def test_train_cell_reports_each_evaluation_and_stops_when_told(tmp_path):
    variant = write_tiny_variant(tmp_path)
    changes = {"variant": {"value": str(variant)}, "profile": None, "train.steps": {"value": 6},
               "train.eval_every": {"value": 2}}  # fmt: skip
    sweep = load_sweep(write_search(tmp_path, **changes))
    cell = sweep_module.search_cell(sweep, 0, {"loss.l1_weight": 0.25})
    assert cell.name == "trial=0-l1_weight=0.25-seed=0" and cell.config.loss.l1_weight == 0.25
    reports = []
    with pytest.raises(CellFailed) as stopped:
        train_cell(cell, "val/mse", lambda step, value: reports.append((step, value)) or step >= 4)
    assert stopped.value.status == "pruned" and [step for step, _ in reports] == [2, 4]
    summary = json.loads((Path(cell.run_dir) / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["reason"] == "stopped by the evaluation callback at step 4"
    assert summary["step"] == 4 and summary["best_val_mse"] > 0
    assert (Path(cell.run_dir) / "checkpoints/last.pt").is_file()  # a pruned run keeps its last checkpoint


def test_a_cell_ranked_by_validation_ssim_reports_it_and_returns_its_best(tmp_path):
    variant = write_tiny_variant(tmp_path)
    changes = {"variant": {"value": str(variant)}, "profile": None, "train.steps": {"value": 6},
               "train.eval_every": {"value": 2}, "metric": {"name": "val/ssim", "goal": "maximize"}}  # fmt: skip
    sweep = load_sweep(write_search(tmp_path, **changes))
    cell = sweep_module.search_cell(sweep, 0, {"loss.l1_weight": 0.25})
    reports = []
    best = train_cell(cell, "val/ssim", lambda step, value: reports.append((step, value)) and False)
    rows = [json.loads(line) for line in (Path(cell.run_dir) / "metrics.jsonl").read_text().splitlines()]
    ssims = [(row["step"], row["val/ssim"]) for row in rows if "val/ssim" in row]
    assert reports == ssims and len(ssims) == 3 and best == max(value for _, value in ssims)


def _tiny_grid(tmp_path: Path, name: str = "grid", **changes) -> Path:
    """The tiny variant over residual off/on at l1 weight 0.5: two real cells that train in about a second each."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    variant = tmp_path / "tiny.yaml" if (tmp_path / "tiny.yaml").is_file() else write_tiny_variant(tmp_path)
    tiny = {"name": name, "variant": {"value": str(variant)}, "profile": None, "loss.l1_weight": {"value": 0.5},
            "model.conv": {"value": "3d"}, "train.runs_dir": {"value": str(tmp_path / "runs")}}  # fmt: skip
    return write_sweep(tmp_path / name, **{**tiny, **changes})


def test_a_cell_is_its_resolved_config_and_an_edited_file_leaves_the_old_runs_stale(tmp_path):
    from analysis.collect import collect
    from analysis.report import write_report

    sweep = load_sweep(_tiny_grid(tmp_path))
    run_sweep(sweep, workers=1, **FAST)
    old = {c.name: c for c in sweep.cells}
    variant = tmp_path / "tiny.yaml"
    edited = yaml.safe_load(variant.read_text())
    edited["train"]["steps"] = 3  # the base file changes what every cell trains
    variant.write_text(yaml.safe_dump(edited))
    again = load_sweep(_tiny_grid(tmp_path))
    assert [c.name for c in again.cells] == list(old) and not {c.id for c in again.cells} & {c.id for c in old.values()}
    summary = run_sweep(again, workers=1, **FAST)
    assert summary.done == 2 and all(Path(c.run_dir).is_dir() for c in [*again.cells, *old.values()])
    runs = collect(tmp_path / "runs/grid")
    status = dict(zip(runs["config_hash"], runs["status"], strict=True))
    assert {status[c.id] for c in old.values()} == {"stale"} and {status[c.id] for c in again.cells} == {"finished"}
    assert all("no longer a cell of" in reason for reason in runs.loc[runs["status"] == "stale", "status_reason"])
    report = write_report([tmp_path / "runs/grid"], out_dir=tmp_path / "report")
    table = report.sections[0].tables[0]
    assert {row.name for row in table.rows if row.kind == "variant"} == {
        "E3D-LSTM, l1+l2 (w=0.5)",
        "E3D-LSTM + residuals, l1+l2 (w=0.5)",
    }
    assert all(cell.text != "stale" for row in table.rows for cell in row.cells.values())
    assert (tmp_path / "report/runs.csv").read_text().count(",stale,") == 2  # listed, marked, never tabulated


def test_a_variant_edited_mid_sweep_is_refused_naming_the_file(tmp_path):
    """A cell's config is resolved once, when the sweep loads. A worker that then finds the cell's files resolving to
    another config refuses the cell and names the edited file, rather than train either config in the folder of the
    old one's hash; a comment changes no config and is no reason."""
    sweep = load_sweep(_tiny_grid(tmp_path))
    cell, variant = sweep.cells[0], tmp_path / "tiny.yaml"
    original = variant.read_text()
    variant.write_text(original + "# a comment\n")
    assert stale_cell(cell) is None
    edited = yaml.safe_load(original)
    edited["train"]["steps"] = 3
    variant.write_text(yaml.safe_dump(edited))
    changed = rf"{re.escape(variant.name)} changed since the sweep was loaded, and it now resolves to config \w{{8}}"
    with pytest.raises(CellFailed, match=rf"{changed}, not {cell.id}; not trained"):
        train_cell(cell, "val/mse")
    assert not Path(cell.run_dir).exists()
    summary = run_sweep(sweep, workers=1, **FAST)
    assert summary.failed == 2 and all(re.search(changed, c.reason) for c in summary.cells)
    assert not any(Path(c.run_dir).exists() for c in sweep.cells)


def test_a_sweep_over_any_key_gets_a_full_report(tmp_path):
    from analysis.report import write_report

    path = _tiny_grid(tmp_path, "lr", **{"model.residual": {"value": False}, "train.lr": {"values": [0.001, 0.01]},
                                          "train.seed": {"values": [0, 1]}})  # fmt: skip
    run_sweep(load_sweep(path), workers=1, **FAST)
    report = write_report([tmp_path / "runs/lr"], out_dir=tmp_path / "report")
    section = report.sections[0]
    names = [row.name for row in section.tables[0].rows if row.kind == "variant"]
    assert names == ["E3D-LSTM, l1+l2 (w=0.5), lr=0.001", "E3D-LSTM, l1+l2 (w=0.5), lr=0.01"]
    assert section.tables[0].cell(names[1], "moving_mnist", "seeds").text == "2"
    lr = section.effects[(section.effects["axis"] == "lr") & (section.effects["metric"] == "mse")].iloc[0]
    assert lr["change"] == "lr: 0.001 → 0.01" and lr["pairs"] == 2
    assert {"loss", "per_frame", "lr"} <= set(section.figures) and (tmp_path / "report/lr.csv").is_file()
    assert "lr=0.01" in report.html.read_text() and "lr" in (tmp_path / "report/runs.csv").read_text().splitlines()[0]


def test_a_cells_result_does_not_depend_on_the_worker_count(tmp_path):
    one = run_sweep(load_sweep(_tiny_grid(tmp_path / "a")), workers=1, **FAST)
    two = run_sweep(load_sweep(_tiny_grid(tmp_path / "b")), workers=2, **FAST)
    assert [c.value for c in one.cells] == [c.value for c in two.cells]  # equal, not close
    for first, second in zip(one.cells, two.cells, strict=True):
        a = json.loads((Path(first.cell.run_dir) / "summary.json").read_text())
        b = json.loads((Path(second.cell.run_dir) / "summary.json").read_text())
        assert a["metrics"] == b["metrics"] and a["threads"] == b["threads"] == 1


def test_a_cell_reuses_a_finished_run_of_the_same_config_from_another_sweep(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name, value in (("WANDB_ERROR_REPORTING", "false"), ("WANDB_SILENT", "true")):
        monkeypatch.setenv(name, value)
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home" / name.lower()))
    offline = {"tracking.wandb": {"value": "offline"}}
    grid = load_sweep(_tiny_grid(tmp_path, "grid", **offline))
    run_sweep(grid, workers=1, **FAST)
    other = load_sweep(_tiny_grid(tmp_path, "other", **{"model.residual": {"values": [False]}}, **offline))
    assert other.cells[0].id == grid.cells[0].id  # the same resolved config, so the same cell
    reports = []
    value = train_cell(other.cells[0], "val/mse", lambda step, value: reports.append((step, value)) or False)
    summary = json.loads((Path(other.cells[0].run_dir) / "summary.json").read_text())
    assert summary["reused_from"] == grid.cells[0].run_dir and value == summary["best_val_mse"]
    assert reports == [(2, value)]  # its validation replayed for a search's pruner
    # Its own W&B run (the original's stays the first sweep's), with the whole history and the final metrics.
    from core.tracking import read_offline_run

    copy, original = read_offline_run(other.cells[0].run_dir), read_offline_run(grid.cells[0].run_dir)
    assert copy["id"] != original["id"] and copy["complete"] and summary["wandb"]["id"] == copy["id"]
    assert [row["_step"] for row in copy["history"]] == [row["_step"] for row in original["history"]]
    assert copy["summary"]["test/mse"] == summary["metrics"]["test/mse"] and copy["summary"]["status"] == "finished"
    assert summary["status"] == "finished" and summary["resumes"] == 0


# ---------------------------------------------------------------------------------------------------------------------
# Stages


def write_stages(tmp_path: Path, **stage2) -> tuple[Path, Path]:
    """Stage 1: the tiny variant without and with residuals; stage 2: residuals on, finetuned from stage 1's first."""
    tiny = {"variant": {"value": str(write_tiny_variant(tmp_path))}, "profile": None, "model.conv": {"value": "3d"},
            "loss.l1_weight": {"value": 0.5}, "train.runs_dir": {"value": str(tmp_path / "runs")}}  # fmt: skip
    one = write_sweep(tmp_path / "one", name="one", **tiny)
    two = {"name": "two", "stage1": {"value": str(one)}, "init_from_cell": {"value": "residual=false-seed=0"},
           "model.residual": {"values": [True]}, **tiny, **stage2}  # fmt: skip
    return one, write_sweep(tmp_path / "two", **two)


def test_stage_two_finetunes_from_the_best_checkpoint_of_a_stage_one_cell(tmp_path):
    one, two = write_stages(tmp_path)
    first, stage2 = load_sweep(one).cells[0], load_sweep(two)
    assert first.name == "residual=false-seed=0" and [c.name for c in stage2.cells] == ["residual=true-seed=0"]
    cell = stage2.cells[0]
    best = Path(first.run_dir) / "checkpoints/best.pt"
    assert (
        cell.config.train.init_from == str(best)
        and Path(cell.run_dir) == tmp_path / "runs/two" / f"{cell.name}-{cell.id}"
    )
    # Stage 1 has not run: refused (run_sweep runs stage 1 first; tests/test_plan.py runs both stages).
    with pytest.raises(SweepError) as error:
        sweep_file_module.check_stage1_finished(stage2)
    message = str(error.value)
    assert "stage-1 cell 'residual=false-seed=0'" in message and "is not started" in message
    assert f"launch.py sweep {one}" in message and not (tmp_path / "runs/two").exists()

    train_cell(first, "val/mse")
    assert best.is_file()
    sweep_file_module.check_stage1_finished(stage2)  # now stage 2 may run
    train_cell(cell, "val/mse")
    saved = yaml.safe_load((Path(cell.run_dir) / "config.yaml").read_text())
    assert saved["train"]["init_from"] == str(best) and saved["model"]["residual"] is True


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"init_from_cell": {"value": "residual=maybe-seed=0"}},
         "parameters.init_from_cell: {one} has no cell 'residual=maybe-seed=0'; its cells: residual=false-seed=0, "
         "residual=true-seed=0"),
        ({"init_from_cell": None}, "parameters.stage1 and parameters.init_from_cell go together"),
        ({"stage1": {"values": ["a.yaml", "b.yaml"]}}, "parameters.stage1 must be a constant"),
        ({"train.init_from": {"value": "x.pt"}}, "init_from_cell and train.init_from both set train.init_from"),
    ],
)  # fmt: skip
def test_bad_stages_name_the_key(tmp_path, changes, expected):
    one, two = write_stages(tmp_path, **changes)
    with pytest.raises(SweepError) as error:
        load_sweep(two)
    assert str(two) in str(error.value) and expected.format(one=one) in str(error.value)


def test_the_demo_finetune_file_starts_from_a_demo_grid_cell():
    sweep = load_sweep(ROOT / "sweeps/demo_finetune.yaml")
    assert [c.name for c in sweep.cells] == ["l1_weight=0.0-seed=0", "l1_weight=0.5-seed=0"]
    baseline = next(c for c in load_sweep(ROOT / "sweeps/demo.yaml").cells if c.name == sweep.cells[0].params[
        "init_from_cell"])  # fmt: skip
    cfg = sweep.cells[0].config
    assert cfg.train.init_from == str(Path(baseline.run_dir) / "checkpoints/best.pt") and cfg.model.residual is True


def test_the_command_a_wandb_agent_builds_trains_the_same_config(monkeypatch):
    # What `wandb agent` would run for a cell of the demo file, fed to our own command line: the same config.
    import core.trainer

    sweep = load_sweep(ROOT / "sweeps/demo.yaml")
    cell = sweep.cells[3]
    argv = sweep_module.agent_command(sweep, cell.params)
    assert argv[:5] == ["/usr/bin/env", "python", "launch.py", "train", f"--variant={cell.params['variant']}"]
    assert "--model.residual=True" in argv and "--loss.l1_weight=0.5" in argv  # Python's str, as W&B writes it
    seen = {}

    def fake_train(cfg, progress=True):
        seen["cfg"] = cfg
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(core.trainer, "train", fake_train)
    monkeypatch.chdir(ROOT)
    assert launch.main(argv[3:]) == 130
    ours = cell.config
    # The same run, but for where W&B groups it: the agent's runs carry no group or tags of ours.
    assert seen["cfg"].tracking.group is None and ours.tracking.group == sweep.name
    assert dataclasses.replace(seen["cfg"], tracking=ours.tracking) == ours


def test_a_grid_s_cell_count_is_checked_before_any_cell_is_built(tmp_path, capsys, monkeypatch):
    """Six axes of 100 values are 10^12 cells: refused from the axes' lengths at once, the count and the way to raise
    the limit said; a grid within a raised limit loads."""
    from ablations import sweep_file

    built = []
    monkeypatch.setattr(sweep_file, "_make_cell", lambda *args, **kwargs: built.append(args) or None)
    axes = {f"train.{key}": {"values": list(range(1, 101))} for key in ("steps", "batch_size", "eval_every",
            "log_every", "checkpoint_every", "eval_batch_size")}  # fmt: skip
    path = write_sweep(tmp_path, **axes)
    with pytest.raises(SweepError, match=r"the grid has 8,000,000,000,000 cells \(2 x 2 x 2 x 100 x 100 x 100 x 100 x "
                       r"100 x 100\), more than the 10,000 .* --max-cells N"):  # fmt: skip
        load_sweep(path)
    assert built == []
    assert launch.main(["sweep", str(path), "--dry-run"]) == 2
    assert "8,000,000,000,000 cells" in capsys.readouterr().err
    monkeypatch.undo()
    small = write_sweep(tmp_path / "small")  # 8 cells
    with pytest.raises(SweepError, match=r"the grid has 8 cells \(2 x 2 x 2\), more than the 4 a sweep may have"):
        load_sweep(small, max_cells=4)
    assert len(load_sweep(small, max_cells=8).cells) == 8
