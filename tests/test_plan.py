import math
import re
from collections import Counter
from pathlib import Path

import pytest
import sweep_fakes
import yaml

import launch
from ablations.plan import (
    GPU_ASSUMPTION,
    STEP_COSTS,
    analytic_gflop,
    family_step_cost,
    format_plan,
    plan_sweep,
    step_cost,
)
from ablations.sweep import SweepError, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
FAST = {"heartbeat_interval": 1, "grace_period": 2, "poll_s": 0.2}
STUDY = {
    # file: (stage-1 cells, stage-2 cells, steps of stage 1 and 2, the stage-2 learning rate, the effective batch)
    "paper_moving_mnist": (["variant=e3d_baseline-seed=0", "variant=e2d-seed=0", "variant=residual-seed=0"],
                           ["variant=residual_finetuned-seed=0"], (80000, 30000), 1e-6, 16),
    "paper_kth": (["variant=e3d_baseline-seed=0", "variant=e2d-seed=0", "variant=residual-seed=0"],
                  ["variant=residual_finetuned-seed=0"], (200000, 200000), 1e-5, 8),
}  # fmt: skip


def tree(folder: Path) -> set[str]:
    return {str(path) for path in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("name", list(STUDY))
def test_the_paper_files_plan_the_studys_rows_in_two_stages_at_a_measured_cost(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # the files name their variants and stage 1 from the repository's root, as users run them
    stage1_cells, stage2_cells, steps, lr, batch = STUDY[name]
    sweep = load_sweep(f"sweeps/{name}.yaml", check_files=False)
    plan = plan_sweep(sweep, workers=3)
    assert [s.path for s in plan.stages] == [f"sweeps/{name}_stage1.yaml", f"sweeps/{name}.yaml"]
    assert [[c.name for c in s.cells] for s in plan.stages] == [stage1_cells, stage2_cells]
    assert [c.stage for c in plan.cells] == [1, 1, 1, 2]
    for cell in plan.cells:  # the paper's sizes are in the table: no cell's cost is a guess from another size
        assert cell.steps == steps[cell.stage - 1] and cell.basis == "measured" and cell.cpu_h > 0 and cell.gpu_h > 0
        assert cell.run_dir.startswith(f"runs/{name}_stage1/" if cell.stage == 1 else f"runs/{name}/")
    # Stage 2 finetunes the trained baseline of stage 1 at the study's rate, with residuals and the release's l1+l2,
    # Adam's state restored and teacher forcing restarted at 1.0, as the study's scripts; every cell at its batch.
    stage1 = load_sweep(f"sweeps/{name}_stage1.yaml", check_files=False)
    baseline = next(c for c in stage1.cells if c.name == stage1_cells[0])
    cfg = sweep.cells[0].config
    assert cfg.train.init_from == str(Path(baseline.run_dir) / "checkpoints/best.pt")
    assert cfg.train.lr == lr and cfg.model.residual and math.isclose(cfg.loss.l1_weight, 2 / 3)
    assert cfg.train.init_optimizer == "restore" and cfg.train.sampling_start == 1.0
    assert cfg.model.residual_layers == "study"
    assert {c.config.train.batch_size for c in [*stage1.cells, *sweep.cells]} == {batch}
    assert {c.config.train.init_optimizer for c in stage1.cells} == {"fresh"}
    assert math.isclose(plan.cpu_h, sum(c.cpu_h for c in plan.cells))
    # With 3 workers the three stage-1 cells run side by side: the longest of them, then the finetune.
    longest = max(c.gpu_h for c in plan.stages[0].cells)
    assert math.isclose(plan.wall_h("gpu"), longest + plan.stages[1].cells[0].gpu_h)


@pytest.mark.parametrize("name", list(STUDY))
def test_a_dry_run_prints_every_stage_and_its_cost_and_writes_nothing(name, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    before = tree(ROOT / "runs")
    assert launch.main(["sweep", f"sweeps/{name}.yaml", "--dry-run", "--workers", "3"]) == 0
    out = capsys.readouterr().out
    assert tree(ROOT / "runs") == before  # no ledger, no sweep folder, no run folder
    for cell in STUDY[name][0]:
        assert re.search(rf"^  1 +{re.escape(cell)} +{STUDY[name][2][0]} ", out, re.M)
    assert re.search(rf"^  2 +variant=residual_finetuned-seed=0 +{STUDY[name][2][1]} ", out, re.M)
    assert (
        f"runs/{name}_stage1/variant=e3d_baseline-seed=0-" in out and f"runs/{name}/variant=residual_finetuned" in out
    )
    assert "total: 4 cells, 4 to run" in out
    assert re.search(r"^  CPU: [\d,.]+ CPU-hours.*\n  GPU: [\d,.]+ GPU-hours", out, re.M)
    assert GPU_ASSUMPTION in out and "nothing was written" in out
    if name == "paper_kth" and not (ROOT / "data/kth").exists():  # listed, where a real run refuses to start
        assert "warning: data.root names data/kth, which does not exist here" in out
        with pytest.raises(SweepError, match="data.root names data/kth, which does not exist"):
            load_sweep(f"sweeps/{name}.yaml")


def test_the_step_table_agrees_with_the_flop_model_and_scales_unmeasured_sizes():
    for key, cost in STEP_COSTS.items():
        assert analytic_gflop(key) == pytest.approx(cost.gflop, rel=0.15), key
    measured = next(iter(STEP_COSTS))
    assert step_cost(measured) == (STEP_COSTS[measured], "measured")
    wider = (*measured[:3], tuple(2 * h for h in measured[3]), *measured[4:])
    scaled, basis = step_cost(wider)
    assert basis.startswith("scaled from") and scaled.cpu_s > STEP_COSTS[measured].cpu_s


@pytest.mark.parametrize("family", ["convlstm", "predrnn", "predrnnpp"])
def test_other_families_cost_the_e3d_lstms_step_scaled_by_their_flops(family):
    """Their FLOP model agrees with the flop counter (a step at a small size), and a cell of theirs costs the measured
    E3D-LSTM step at its key times the FLOP ratio, saying so."""
    import torch

    from core.config import ModelConfig
    from core.flops import flop_counter
    from core.losses import prediction_loss
    from core.models import build_model

    for key, window, hidden in [((32, 4, 12, (4, 4), "3d", 2), 2, (4, 4)), ((32, 4, 12, (8, 4), "2d", 1), 1, (8, 4))]:
        if family == "predrnn":
            key, hidden = (*key[:3], (4, 4), *key[4:]), (4, 4)
        torch.manual_seed(0)
        model = build_model(ModelConfig(name=family, hidden=hidden, patch_size=4, conv=key[4], window=window), 1, 32)
        frames = torch.rand(key[5], key[2], 1, 32, 32)
        with flop_counter() as counter:
            prediction_loss(model(frames, 10), frames[:, 1:], 0.0)["loss"].backward()
        counted = counter.get_total_flops() / 1e9
        assert analytic_gflop(key, family=family, window=window) == pytest.approx(counted, rel=0.1)
    demo = (64, 8, 20, (32, 32), "2d", 4)
    cost, basis = family_step_cost(demo, family, window=1)
    ratio = analytic_gflop(demo, family=family, window=1) / analytic_gflop(demo)
    assert cost.cpu_s == pytest.approx(STEP_COSTS[demo].cpu_s * ratio) and 0 < ratio < 1
    assert basis == f"{family}: the E3D-LSTM's step (measured) scaled by FLOPs"
    assert family_step_cost(demo, "e3d_lstm") == (STEP_COSTS[demo], "measured")


def test_the_families_grid_costs_every_family_by_its_own_flops(monkeypatch):
    monkeypatch.chdir(ROOT)
    plan = plan_sweep(load_sweep("sweeps/families.yaml", check_files=False))
    cells = {c.name: c for c in plan.cells}
    families = ("e3d_lstm", "convlstm", "predrnn", "predrnnpp")
    assert sorted(cells) == sorted(f"name={f}-conv={conv}-seed=0" for f in families for conv in ("3d", "2d"))
    for conv in ("3d", "2d"):
        cost = [cells[f"name={f}-conv={conv}-seed=0"] for f in families]
        assert cost[0].basis == "measured"
        assert all(c.basis.startswith(f"{f}: the E3D-LSTM's") for f, c in zip(families[1:], cost[1:], strict=True))
        assert cost[1].cpu_h < cost[2].cpu_h < cost[3].cpu_h  # ConvLSTM's cell is the smallest, PredRNN++'s largest
        assert all(c.cpu_h > 0 and c.gpu_h > 0 and c.steps == 150 for c in cost)


# ---------------------------------------------------------------------------------------------------------------------
# A staged sweep runs its stage 1 first


def write_stages(tmp_path: Path) -> tuple[Path, Path]:
    """Stage 1: a 2-cell grid, residuals off and on; stage 2: residuals on, finetuned from stage 1's cell without."""
    common = {"variant": {"value": str(ROOT / "ablations/moving_mnist/e3d_baseline.yaml")},
              "profile": {"value": "demo"}, "loss.l1_weight": {"value": 0.5}, "train.seed": {"value": 0},
              "train.runs_dir": {"value": str(tmp_path / "runs")}, "tracking.wandb": {"value": "disabled"}}  # fmt: skip
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump({"name": "one", "method": "grid", "parameters": {
        **common, "model.residual": {"values": [False, True]}}}))  # fmt: skip
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({"name": "two", "method": "grid", "parameters": {
        **common, "stage1": {"value": str(one)}, "init_from_cell": {"value": "residual=false-seed=0"},
        "train.lr": {"values": [0.0001, 0.0003]}}}))  # fmt: skip
    return one, two


def test_a_staged_sweep_runs_stage_one_then_stage_two_and_a_rerun_runs_nothing(tmp_path, calls, capfd):
    one, two = write_stages(tmp_path)
    summary = run_sweep(load_sweep(two), workers=2, objective=sweep_fakes.finish_with_checkpoint, **FAST)
    assert summary.done == 2 and summary.failed == 0
    counts = Counter(path.read_text() for path in calls.iterdir())  # each call leaves a file holding the cell's name
    assert counts == {"residual=false-seed=0": 1, "residual=true-seed=0": 1, "lr=0.0001-seed=0": 1,
                      "lr=0.0003-seed=0": 1}  # fmt: skip
    out = capfd.readouterr().out
    first, stage1, stage2 = (out.index(text) for text in ("two: its stage 1", "one: 2 cells", "two: 2 cells"))
    assert first < stage1 < stage2  # stage 1 ran to its end before stage 2's ledger was made
    assert (tmp_path / "runs/one/study.db").is_file() and (tmp_path / "runs/two/study.db").is_file()

    run_sweep(load_sweep(two), workers=2, objective=sweep_fakes.finish_with_checkpoint, **FAST)
    assert len(list(calls.iterdir())) == 4  # stage 1 finished: not even looked at again; stage 2 done
    assert "its stage 1" not in capfd.readouterr().out


def test_a_stage_one_cell_that_failed_stops_stage_two_saying_how_it_ended(tmp_path, calls):
    one, two = write_stages(tmp_path)
    with pytest.raises(SweepError) as error:
        run_sweep(load_sweep(two), objective=sweep_fakes.stage1_baseline_diverges, **FAST)
    message = str(error.value)
    baseline = load_sweep(one).cells[0]
    assert message.startswith(f"{two}: parameters.init_from_cell: stage-1 cell 'residual=false-seed=0' of {one}")
    assert "ended diverged (loss became nan at step 3) when stage 1 ran" in message and baseline.run_dir in message
    assert str(tmp_path / "runs/one/study.db") in message  # how to start stage 1 over
    assert not (tmp_path / "runs/two").exists()  # stage 2 made no ledger and ran nothing
    assert {path.read_text() for path in calls.iterdir()} == {"residual=false-seed=0", "residual=true-seed=0"}


def test_the_plan_of_a_staged_sweep_shows_finished_cells_and_counts_only_the_rest(tmp_path, calls):
    one, two = write_stages(tmp_path)
    run_sweep(load_sweep(one), objective=sweep_fakes.finish_with_checkpoint, **FAST)
    plan = plan_sweep(load_sweep(two), workers=1)
    assert [c.status for c in plan.cells] == ["finished", "finished", "not started", "not started"]
    assert math.isclose(plan.cpu_h, sum(c.cpu_h for c in plan.stages[1].cells))
    text = format_plan(plan)
    assert "total: 4 cells, 2 to run" in text and str(two) in text and str(one) in text
