"""The speed benchmarks' variants compute the same function as the model (what bench/RESULTS.md's table claims)."""

import math

import pytest
import torch

import core.models
import core.models.recall as recall_module
from bench.bench_changes import CHANGES
from bench.bench_train import SIZES
from bench.bench_train import measure as _measure
from core.models.e3d_lstm import CellConv
from core.models.recall import EideticHistory

TINY = ((8, 8), 32, 4, 2, 6, 3)  # hidden, image size, patch, batch, total frames, context frames


@pytest.fixture
def restored(monkeypatch):
    """Whatever a variant replaces is put back after the test."""
    monkeypatch.setattr(recall_module, "FUSED_CPU_BACKWARD", recall_module.FUSED_CPU_BACKWARD)
    monkeypatch.setattr(CellConv, "forward", CellConv.forward)
    monkeypatch.setattr(EideticHistory, "keys", EideticHistory.keys)
    monkeypatch.setattr(EideticHistory, "recall", EideticHistory.recall)
    yield
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", [name for name in CHANGES if name != "this code"])
def test_every_undone_change_trains_the_same_function(name, restored):
    ours = _measure(*TINY, steps=1, threads=1)
    undo, flush = CHANGES[name]
    if undo is not None:
        undo()
    theirs = _measure(*TINY, steps=1, threads=1, flush_denormal=flush)
    assert theirs["losses"] == pytest.approx(ours["losses"], rel=1e-5)  # the second loss follows one update
    assert ours["step_s"] > 0 and ours["gflop_per_step"] > 0 and ours["peak_gib"] > 0


def test_every_family_has_a_row_at_the_study_size_in_its_papers_cell(monkeypatch):
    study = SIZES["study (4x64, 64x64, patch 4, batch 4)"]
    families = {size[6]: size[:6] for size in SIZES.values() if len(size) > 6}
    assert set(families) == set(core.models.model_names()) - {"e3d_lstm"}
    assert all(shape == study for shape in families.values())
    built, build_model = [], core.models.build_model

    def recording(cfg, channels, image_size):
        built.append(cfg)
        return build_model(cfg, channels, image_size)

    monkeypatch.setattr(core.models, "build_model", recording)  # measure imports it from core.models when it runs
    for family in families:
        result = _measure(*TINY, steps=1, threads=1, family=family)
        assert all(math.isfinite(loss) for loss in result["losses"]) and result["gflop_per_step"] > 0
    assert [(cfg.name, cfg.conv, cfg.window) for cfg in built] == [(family, "2d", 1) for family in families]


def _tiny_candidate(mnist_npz, *overrides):
    from bench.time_to_quality import Candidate

    return Candidate(("--data.image_size=32", "--model.hidden=2,2", f"--data.mnist={mnist_npz}", *overrides))


def test_minutes_to_a_threshold_interpolate_between_evaluations():
    from bench.time_to_quality import minutes_to

    rows = [{"cpu_s": 60, "val_mse": 160.0}, {"cpu_s": 120, "val_mse": 150.0}, {"cpu_s": 180, "val_mse": 140.0}]
    assert minutes_to(rows, 145.0) == pytest.approx(2.5) and minutes_to(rows, 170.0) == 1.0
    assert minutes_to(rows, 100.0) is None


@pytest.mark.slow
def test_a_race_reports_minutes_to_a_validation_mse_side_by_side(mnist_npz):
    from bench.time_to_quality import race

    candidates = {"a": _tiny_candidate(mnist_npz), "b": _tiny_candidate(mnist_npz, "--train.lr=0.01")}
    reached = race(("a", "b"), threshold=1e9, budget_min=0.05, eval_every_min=0.01, candidates=candidates)
    assert set(reached) == {"a", "b"} and all(0 < minutes <= 0.1 for minutes in reached.values())
    never = race(("a",), threshold=0.0, budget_min=0.02, eval_every_min=0.01, candidates=candidates)
    assert never == {"a": None}
