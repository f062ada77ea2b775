"""The speed benchmarks' variants compute the same function as the model (what bench/RESULTS.md's table claims)."""

import pytest
import torch

import core.models.recall as recall_module
from bench.bench_changes import CHANGES
from bench.bench_train import _measure
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
