"""Cheap stand-ins for a sweep's objective, importable by the spawned worker processes.

Each call leaves a file ``<SWEEP_FAKE_DIR>/<cell id>.<pid>.<n>`` so a test can count, across processes, how many
times each cell ran. The metric is a function of the cell's parameters, so the best cell is known in advance.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from ablations.sweep import Cell, CellFailed

_calls = itertools.count()


def _record(cell: Cell, kind: str = "call") -> None:
    folder = Path(os.environ["SWEEP_FAKE_DIR"])
    (folder / f"{cell.id}.{kind}.{os.getpid()}.{next(_calls)}").write_text(cell.name)


def metric_of(cell: Cell) -> float:
    """Lower for 3d, residual and a larger l1 weight: the best cell is conv=3d, residual=true, the largest weight."""
    p = cell.params
    return 10.0 - 2.0 * (p.get("model.conv") == "3d") - 1.0 * bool(p.get("model.residual")) - p["loss.l1_weight"]


def count_calls(cell: Cell, metric: str, report=None) -> float:
    _record(cell)
    time.sleep(0.05)  # long enough for two workers to overlap
    return metric_of(cell)


def fail_some(cell: Cell, metric: str, report=None) -> float:
    """Cells with residual on and l1 weight 0.5 diverge; another one is broken; the rest are counted."""
    if cell.params.get("model.residual") and cell.params["loss.l1_weight"] == 0.5:
        _record(cell)
        raise CellFailed("diverged", "loss became nan at step 3")
    if cell.params.get("model.conv") == "2d" and not cell.params.get("model.residual"):
        _record(cell)
        raise RuntimeError("out of memory")
    return count_calls(cell, metric, report)


def hang_on_one(cell: Cell, metric: str, report=None) -> float:
    """Hangs on the cell named by SWEEP_HANG_CELL (after leaving a 'started' mark), so a test can kill its worker."""
    if cell.id == os.environ["SWEEP_HANG_CELL"]:
        _record(cell, "started")
        time.sleep(600)
    return count_calls(cell, metric, report)


def slow_silent(cell: Cell, metric: str, report=None) -> float:
    """Runs for SWEEP_SLOW_S seconds after a 'started' mark: with a heartbeat interval longer than that, a live worker
    whose beats have stopped, as a starved or stalled one looks to the others."""
    _record(cell, "started")
    time.sleep(float(os.environ["SWEEP_SLOW_S"]))
    return count_calls(cell, metric, report)


def slow_reports(cell: Cell, metric: str, report) -> float:
    """Reports :data:`EVALUATIONS` validations, SWEEP_SLOW_S seconds apart, after a 'started' mark (so a ledger
    outage can fall on an evaluation); stops when told to."""
    _record(cell, "started")
    value = 0.0
    for step in range(1, EVALUATIONS + 1):
        time.sleep(float(os.environ["SWEEP_SLOW_S"]))
        value = cell.params["loss.l1_weight"] + 0.1 / step
        if report(step * 10, value):
            _record(cell, "pruned")
            raise CellFailed("pruned", f"stopped at step {step * 10}")
    _record(cell)
    return value


OPTIMUM = 0.3  # the l1 weight the synthetic search objective is best at
EVALUATIONS = 3


def quadratic(cell: Cell, metric: str, report) -> float:
    """A search's synthetic objective: (w - OPTIMUM)^2 plus a term that shrinks over EVALUATIONS reports, so a far
    weight reports worse values than a near one at every step (what pruning needs); stops when told to."""
    _record(cell)
    weight = cell.params["loss.l1_weight"]
    value = (weight - OPTIMUM) ** 2
    for step in range(1, EVALUATIONS + 1):
        value = (weight - OPTIMUM) ** 2 + 0.1 / step
        if report(step * 10, value):
            _record(cell, "pruned")
            raise CellFailed("pruned", f"stopped at step {step * 10}")
    return value


def hang_quadratic(cell: Cell, metric: str, report) -> float:
    """The quadratic, but the trial named by SWEEP_HANG_TRIAL (a cell name prefix) hangs after a 'started' mark."""
    if cell.name.startswith(os.environ["SWEEP_HANG_TRIAL"]):
        _record(cell, "started")
        time.sleep(600)
    return quadratic(cell, metric, report)


def busy_once(cell: Cell, metric: str, report=None) -> float:
    """The first claim of each cell finds its run folder held by another live process (a worker that lost its claim
    to a late heartbeat, still training); later claims run it."""
    from core.io import FolderBusy

    folder = Path(os.environ["SWEEP_FAKE_DIR"])
    if not any(path.name.startswith(f"{cell.id}.busy.") for path in folder.iterdir()):
        _record(cell, "busy")
        raise FolderBusy(f"runs/{cell.name}: host pid 1 (since now) is training in this folder")
    return count_calls(cell, metric, report)


def log_steps(cell: Cell, metric: str, report=None) -> float:
    """Writes training rows to the cell's metrics.jsonl as a run would (every 100 steps up to 300, the demo's steps),
    so a progress display reading run folders sees the steps go by."""
    run_dir = Path(cell.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("a") as handle:
        for step in (100, 200, 300):
            handle.write(f'{{"step": {step}, "train/loss": 0.5}}\n')
            handle.flush()
            time.sleep(0.02)
    return count_calls(cell, metric, report)


def record_gpu(cell: Cell, metric: str, report=None) -> float:
    """Leaves ``<cell name>|<CUDA_VISIBLE_DEVICES>`` in its call file: which GPU the worker was given."""
    folder = Path(os.environ["SWEEP_FAKE_DIR"])
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "none")
    (folder / f"{cell.id}.call.{os.getpid()}.{next(_calls)}").write_text(f"{cell.name}|{gpu}")
    time.sleep(0.05)
    return metric_of(cell)


def finish_with_checkpoint(cell: Cell, metric: str, report=None) -> float:
    """Leaves what a trained cell leaves for a stage-2 sweep: a finished summary and a best checkpoint."""
    run_dir = Path(cell.run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"fake weights")
    (run_dir / "summary.json").write_text('{"status": "finished"}')
    return count_calls(cell, metric, report)


def stage1_baseline_diverges(cell: Cell, metric: str, report=None) -> float:
    """A stage-1 cell without residuals (the one a stage-2 sweep finetunes from) diverges; every other cell finishes
    with a checkpoint."""
    if "stage1" not in cell.params and not cell.params.get("model.residual"):
        _record(cell)
        raise CellFailed("diverged", "loss became nan at step 3")
    return finish_with_checkpoint(cell, metric, report)


def slow_on_one(cell: Cell, metric: str, report=None) -> float:
    """Like :func:`slow_silent` on the cell named by SWEEP_HANG_CELL (SWEEP_SLOW_S seconds after a 'started' mark),
    :func:`count_calls` on the others."""
    if cell.id == os.environ["SWEEP_HANG_CELL"]:
        return slow_silent(cell, metric, report)
    return count_calls(cell, metric, report)
