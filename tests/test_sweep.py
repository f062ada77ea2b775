import json
import multiprocessing
import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sweep_fakes
import yaml

import ablations.sweep as sweep_module
import launch
from ablations.sweep import (
    TOP_LEVEL_KEYS,
    Ledger,
    SweepError,
    cell_config,
    format_summary,
    load_sweep,
    prepare,
    run_sweep,
    summarize,
    train_cell,
    work,
)
from core.config import ALIASES

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
        if "." not in key and key not in ("variant", "profile", *ALIASES):
            spec[key] = value
        elif value is None:
            spec["parameters"].pop(key)
        else:
            spec["parameters"][key] = value
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def calls(tmp_path, monkeypatch) -> Path:
    """The folder where the fake objectives leave one file per call (the workers inherit the environment)."""
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv("SWEEP_FAKE_DIR", str(folder))
    return folder


def call_counts(folder: Path, kind: str = "call") -> Counter:
    return Counter(path.name.split(".")[0] for path in folder.iterdir() if path.name.split(".")[1] == kind)


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
    assert all(Path(c.run_dir) == Path("runs/demo") / c.name for c in sweep.cells)
    cell = sweep.cells[-1]
    cfg = cell_config(cell)
    assert (cfg.model.conv, cfg.model.residual, cfg.loss.l1_weight, cfg.train.seed) == ("2d", True, 0.5, 0)
    assert cfg.model.hidden == (32, 32)  # the demo profile applied
    assert cfg.tracking.group == "demo"
    assert cfg.tracking.tags == ("conv=2d", "residual=true", "l1_weight=0.5")


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
    path = write_sweep(tmp_path, method="bayes", **{"loss.l1_weight": distribution})
    with pytest.raises(SweepError, match="parameters.loss.l1_weight") as error:
        load_sweep(path)
    assert expected in str(error.value)


def test_a_search_validates_but_does_not_run_yet(tmp_path):
    path = write_sweep(tmp_path, method="bayes", **{"loss.l1_weight": {"distribution": "uniform", "min": 0, "max": 1}})
    sweep = load_sweep(path)
    assert sweep.cells == () and Path(sweep.folder) == tmp_path / "runs/grid"
    with pytest.raises(SweepError, match="'bayes' is not implemented yet"):
        run_sweep(sweep)
    assert not (tmp_path / "runs").exists()


def test_cli_reports_a_bad_sweep_file(tmp_path, capsys):
    assert launch.main(["sweep", str(write_sweep(tmp_path, workers=2))]) == 2
    assert "unknown top-level key 'workers'" in capsys.readouterr().err


def test_cli_passes_workers_and_storage_to_the_runner(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run_sweep(sweep, workers, storage):
        seen.update(name=sweep.name, workers=workers, storage=storage)
        return sweep_module.Summary(sweep, [sweep_module.CellStatus(c, "waiting") for c in sweep.cells])

    monkeypatch.setattr(sweep_module, "run_sweep", fake_run_sweep)
    path = str(write_sweep(tmp_path))
    assert launch.main(["sweep", path, "--workers", "3", "--storage", "sqlite:///x.db"]) == 0
    assert seen == {"name": "grid", "workers": 3, "storage": "sqlite:///x.db"}
    assert "grid: 0 done, 0 failed, 8 left of 8 cells" in capsys.readouterr().out


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
    assert out.count("done] ") == 8 and "[8/8 done]" in out
    table = format_summary(summary)
    assert "grid: 8 done, 0 failed, 0 left of 8 cells" in table and "best (minimize val/mse)" in table

    again = run_sweep(load_sweep(write_sweep(tmp_path)), workers=2, objective=sweep_fakes.count_calls, **FAST)
    assert sum(call_counts(calls).values()) == 8  # nothing ran again
    assert again.done == 8 and "0 to run" in capfd.readouterr().out


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


def test_a_killed_workers_cell_runs_again_and_no_cell_runs_twice(tmp_path, calls, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path, **{"loss.l1_weight": {"value": 0.5}}))  # 4 cells
    hung = sweep.cells[1]
    monkeypatch.setenv("SWEEP_HANG_CELL", hung.id)
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    prepare(sweep, ledger)
    worker = multiprocessing.get_context("spawn").Process(target=work, args=(sweep, ledger, sweep_fakes.hang_on_one))
    worker.start()
    deadline = time.monotonic() + 60
    while not call_counts(calls, "started") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert call_counts(calls, "started") == Counter({hung.id: 1})
    os.kill(worker.pid, signal.SIGKILL)  # mid-cell: no chance to tell the ledger anything
    worker.join()
    left = summarize(sweep, ledger)
    assert [c.status for c in left.cells] == ["done", "running", "waiting", "waiting"]

    summary = run_sweep(sweep, workers=2, objective=sweep_fakes.count_calls, **FAST)
    assert call_counts(calls) == Counter({cell.id: 1 for cell in sweep.cells})  # each cell completed exactly once
    assert (summary.done, summary.failed, summary.left) == (4, 0, 0)
    assert [c.trials for c in summary.cells] == [1, 2, 1, 1]  # the killed cell's trial was retried


def test_a_stopped_worker_hands_its_cell_back_at_once(tmp_path, calls, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path, **{"loss.l1_weight": {"value": 0.5}}))
    monkeypatch.setenv("SWEEP_HANG_CELL", sweep.cells[0].id)
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    prepare(sweep, ledger)
    worker = multiprocessing.get_context("spawn").Process(target=work, args=(sweep, ledger, sweep_fakes.hang_on_one))
    worker.start()
    deadline = time.monotonic() + 60
    while not call_counts(calls, "started") and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.terminate()  # SIGTERM, as a scheduler or the sweep's own parent stops a worker
    worker.join()
    assert worker.exitcode == 0
    first = summarize(sweep, ledger).cells[0]
    assert (first.status, first.trials) == ("waiting", 2)  # no grace period to wait for: the next run takes it


# ---------------------------------------------------------------------------------------------------------------------
# One real cell


def test_train_cell_trains_the_cell_in_its_sweep_folder(tmp_path):
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
    path = write_sweep(tmp_path, variant={"value": str(variant)}, profile=None, metric={"name": "test/mse"})
    sweep = load_sweep(path)
    cell = sweep.cells[-1]
    value = train_cell(cell, "test/mse")
    summary = json.loads((tmp_path / "runs/grid" / cell.name / "summary.json").read_text())
    assert summary["status"] == "finished" and value == pytest.approx(summary["metrics"]["test/mse"])
    saved = yaml.safe_load((tmp_path / "runs/grid" / cell.name / "config.yaml").read_text())
    assert saved["model"]["conv"] == "2d" and saved["model"]["residual"] is True and saved["loss"]["l1_weight"] == 0.5
    assert saved["tracking"]["group"] == "grid"
