"""Run records -> one pandas DataFrame, one row per run folder; a run that failed or never finished keeps its row.

Reads only the local run record (:func:`core.records.read_run`: config.yaml, metrics.jsonl, summary.json); never
the trainer, never W&B. Columns, in order (see :data:`COLUMNS`):

- identity: ``run_dir``, ``run_name`` (the folder's name), ``variant``, ``config_hash``;
- ``status``: summary.json's (finished, failed, diverged, killed, pruned, running), ``interrupted`` for a ``running``
  one that no process on this host trains any more (killed with -9, or its machine went down), ``no summary`` for a
  folder whose summary.json is missing, ``unreadable`` for a record that cannot be parsed (or a finished one whose
  test metrics are not numbers), ``stale`` for a sweep's run that is no longer one of its cells; ``status_reason``:
  the recorded reason or error, if any;
- the axes (:data:`AXES`): ``dataset``, ``conv``, ``residual``, ``memory_flow``, ``recall``, ``output_gate``,
  ``l1_weight``, ``init`` (scratch, finetuned, or pretrained: a checkpoint scored after 0 steps), ``seed``;
- how it was scored: ``test_set`` (the description the trainer stores), ``ssim_convention``, ``num_sequences``;
- final test metrics ``mse``, ``mae``, ``psnr``, ``ssim`` (NaN unless the run finished) and their per-frame curves
  ``mse_by_frame`` ... (lists over the predicted frame index; None unless finished);
- ``loss_history``: ``[(step, train/loss), ...]`` and ``val_history``: ``[(step, val/mse), ...]`` from metrics.jsonl;
  for a shipped checkpoint scored as it is (0 steps, ``train.init_from`` a file ``make pretrain`` shipped), its
  pretraining's, from the manifest beside the file; ``best_val_mse``; ``step`` (the last step);
- ``run_time_s``: seconds of run time (the last metrics row's ``time``, which excludes the gaps between resumes; the
  summary's ``updated - started`` when no row has one);
- the trivial baselines on the same test set: ``copy_last_frame_mse`` ... ``blank_ssim``, and ``baseline_curves``:
  ``{baseline: {metric: per-frame list}}`` (None for runs recorded before the trainer stored them);
- ``started``, ``updated``: summary.json's UTC timestamps;
- ``frames_file`` and ``frames_gif``: the final test's predicted frames (``frames/test_step<step>.npz``, read by
  :func:`core.records.read_frames`, and its animation), None when the run wrote none; ``url``: the W&B run's page when
  the record came from W&B (:mod:`analysis.wandb_source`), else None;
- ``config_path`` and ``command``: the run's resolved config and the command that trains that config again
  (``python launch.py train <run_dir>/config.yaml``); ``config``: that config as ``{dotted key: value}`` over the keys
  that can be axes (:func:`core.axes.axis_values`), from which :mod:`analysis.rows` finds the axes a set of runs
  varies. The record's test numbers come from the final weights of that training; ``python launch.py eval
  <run_dir>`` would re-score the *best* checkpoint instead, so it is not given.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from core.axes import RECORDED, axis_values, recorded_axes
from core.io import DataError, folder_abandoned
from core.manifest import manifest_beside
from core.records import METRICS, SWEEP_CELLS, read_run

BASELINES = ("copy_last_frame", "blank")
"""The trivial predictions the trainer scores beside every model, on the same test set."""

AXES = tuple(axis.name for axis in RECORDED)
"""The axes every run records (:data:`core.axes.RECORDED`), as ``core.tracking.axes`` writes them into summary.json."""

RECORD_FILES = ("summary.json", "config.yaml")
"""A folder holding either is a run folder (a run killed before its summary still shows up, as ``no summary``)."""

COLUMNS = (
    ("run_dir", "run_name", "variant", "config_hash", "status", "status_reason")
    + AXES
    + ("test_set", "ssim_convention", "num_sequences")
    + METRICS
    + tuple(f"{name}_by_frame" for name in METRICS)
    + ("loss_history", "val_history", "best_val_mse", "step", "run_time_s")
    + tuple(f"{baseline}_{name}" for baseline in BASELINES for name in METRICS)
    + ("baseline_curves", "started", "updated", "frames_file", "frames_gif", "url", "config_path", "command", "config")
)

_SKIP_DIRS = ("wandb", "checkpoints", "frames", "eval")  # inside a run folder, never run folders themselves


def find_run_dirs(root: str | Path) -> list[Path]:
    """The run folders at or under ``root`` (a sweep folder ``runs/<sweep>/`` or ``runs/``), sorted by path.

    Does not look inside a run folder, nor into hidden folders or W&B's.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of runs")
    found: list[Path] = []

    def visit(folder: Path) -> None:
        if any((folder / name).is_file() for name in RECORD_FILES):
            found.append(folder)
            return
        for child in sorted(folder.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and child.name not in _SKIP_DIRS:
                visit(child)

    visit(root)
    return found


def collect(root: str | Path) -> pd.DataFrame:
    """One row per run folder under ``root`` (columns: :data:`COLUMNS`), sorted by ``run_dir``.

    In a sweep's folder, a run whose config is no longer one of the sweep's cells (its variant, base or profile file
    changed since) is ``stale``: it stays in the record but a report never shows it as a current cell."""
    rows = [run_row(path) for path in find_run_dirs(root)]
    _mark_stale(rows, Path(root) / SWEEP_CELLS)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _mark_stale(rows: list[dict[str, Any]], listing: Path) -> None:
    if not listing.is_file():
        return
    try:
        cells = json.loads(listing.read_text())
        current = {cell["id"] for cell in cells["cells"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{listing}: not a readable list of the sweep's cells ({error})") from error
    for row in rows:
        if row["config_hash"] is not None and row["config_hash"] not in current:
            row["status_reason"] = (
                f"stale ({row['status']}): its config (hash {row['config_hash']}) is no longer a cell of "
                f"{cells.get('sweep', 'the sweep')}, whose files changed since it ran"
            )
            row["status"] = "stale"


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """One run folder as a flat dict with the keys of :data:`COLUMNS` (missing values: None or NaN)."""
    run_dir = Path(run_dir)
    location = {"run_dir": str(run_dir), "run_name": run_dir.name, "config_path": str(run_dir / "config.yaml")}
    try:
        record = read_run(run_dir)
    except (OSError, ValueError) as error:  # a damaged config.yaml or summary.json is a DataError naming the file
        return record_row(location, None, None, [], error=f"{type(error).__name__}: {error}")
    try:
        row = record_row(location, record["config"], record["summary"], record["metrics"])
    except (AttributeError, TypeError, ValueError) as error:  # a field of the wrong type, e.g. "metrics" a list
        reason = (
            f"{run_dir}: a field of summary.json or config.yaml has the wrong type ({type(error).__name__}: {error})"
        )
        return record_row(location, None, None, [], error=reason)
    pretraining = _pretraining_history(record["config"])
    if pretraining is not None:
        row["loss_history"], row["val_history"] = pretraining
    if row["status"] == "running" and folder_abandoned(run_dir):
        row["status"] = "interrupted"
        row["status_reason"] = ("no process holds the run folder's lock: it was killed or stopped at its last "
                                "checkpoint; its command resumes it")  # fmt: skip
    if row["status"] == "finished" and row["step"] is not None:
        frames = run_dir / "frames" / f"test_step{row['step']}.npz"
        if frames.is_file():
            row["frames_file"] = str(frames)
        if frames.with_suffix(".gif").is_file():
            row["frames_gif"] = str(frames.with_suffix(".gif"))
    return row


def record_row(
    location: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    summary: Mapping[str, Any] | None,
    metric_rows: list[dict],
    error: str | None = None,
) -> dict[str, Any]:
    """A run as a flat dict with the keys of :data:`COLUMNS`, from the pieces of its record wherever they were read.

    Args:
        location: ``run_dir`` (where it lives: a folder, or a W&B path), ``run_name`` and optionally ``config_path``,
            ``url``; the rest of the row comes from the record.
        config: the resolved config as a dict (config.yaml), or None when missing.
        summary: summary.json's fields (``status``, ``axes``, ``metrics``, ``baselines``, ``test_set``...), or None.
        metric_rows: the logged rows (metrics.jsonl), each with ``step``.
        error: why the record could not be read: the row's status is then ``unreadable``.
    """
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(location)
    if row.get("config_path"):
        row["command"] = f"python launch.py train {row['config_path']}"
    for name in (*METRICS, "best_val_mse", "run_time_s", *(f"{b}_{m}" for b in BASELINES for m in METRICS)):
        row[name] = math.nan
    if error is not None:
        row.update(status="unreadable", status_reason=error)
        return row
    config = config or {}
    row.update(_axes_from_config(config))
    row["config"] = axis_values(config) if config else None
    if summary is None:
        row["status"] = "no summary"
        row["status_reason"] = "summary.json is missing: the run stopped before its first record"
    else:
        row.update({key: value for key, value in (summary.get("axes") or {}).items() if key in row})
        row.update(
            variant=summary.get("variant", row["variant"]),
            config_hash=summary.get("config_hash"),
            status=summary.get("status"),
            status_reason=summary.get("reason") or summary.get("error"),
            test_set=summary.get("test_set"),
            best_val_mse=_number(summary.get("best_val_mse")),
            step=summary.get("step"),
            started=summary.get("started"),
            updated=summary.get("updated"),
        )
        metrics = summary.get("metrics") or {}
        if row["status"] == "finished" and (problem := _not_a_number(metrics)):
            row.update(status="unreadable", status_reason=problem)  # a finished record whose numbers are not numbers
        if row["status"] == "finished":
            row["ssim_convention"] = metrics.get("test/ssim_convention")
            row["num_sequences"] = metrics.get("test/num_sequences")
            for name in METRICS:
                row[name] = _number(metrics.get(f"test/{name}"))
                curve = metrics.get(f"test/{name}_by_frame")
                row[f"{name}_by_frame"] = [float(v) for v in curve] if curve is not None else None
        curves: dict[str, dict[str, list[float]]] = {}
        for baseline, scores in (summary.get("baselines") or {}).items():
            for name in METRICS:
                if f"{baseline}_{name}" in row:
                    row[f"{baseline}_{name}"] = _number((scores or {}).get(name))
                curve = (scores or {}).get(f"{name}_by_frame")
                if isinstance(curve, list) and baseline in BASELINES:
                    curves.setdefault(baseline, {})[name] = [float(v) for v in curve]
        row["baseline_curves"] = curves or None
    row["loss_history"] = _history(metric_rows, "train/loss")
    row["val_history"] = _history(metric_rows, "val/mse")
    if row["step"] is None and metric_rows:
        row["step"] = max(int(r.get("step", 0)) for r in metric_rows)
    row["run_time_s"] = _run_time(metric_rows, summary)
    return row


def _pretraining_history(config: Mapping[str, Any] | None) -> tuple[list, list] | None:
    """The training-loss and validation-MSE histories of the shipped checkpoint a 0-step run scored, from the manifest
    beside it (``<name>.json`` naming ``<name>-<sha8>.pt``); None for any other run, or when no manifest names it."""
    train = (config or {}).get("train") or {}
    weights = train.get("init_from")
    if train.get("steps") != 0 or not isinstance(weights, str) or not weights.endswith(".pt"):
        return None
    weights_path = Path(weights)
    manifest_path = manifest_beside(weights_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("file") != weights_path.name:
            return None
        losses = [(int(r["step"]), float(r["loss"])) for r in manifest.get("training", [])]
        validation = [(int(r["step"]), float(r["mse"])) for r in manifest.get("validation", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return losses, validation


def _history(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), int | float)]


def _axes_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The axes from the resolved config (what summary.json's ``axes`` holds), for a run without a summary."""
    return recorded_axes(config) if config else {}


def _run_time(rows: list[dict], summary: Mapping[str, Any] | None) -> float:
    times = [float(r["time"]) for r in rows if isinstance(r.get("time"), int | float)]
    if times:
        return max(times)
    if summary and summary.get("started") and summary.get("updated"):
        try:
            started = dt.datetime.fromisoformat(summary["started"])
            updated = dt.datetime.fromisoformat(summary["updated"])
        except (TypeError, ValueError):
            return math.nan
        return (updated - started).total_seconds()
    return math.nan


def _not_a_number(metrics: Mapping[str, Any]) -> str | None:
    """Why a finished run's test metrics cannot be read (a mean that is not a number, a per-frame curve that is not a
    list of numbers), else None; a metric that is missing (or null) is just missing."""
    for name in METRICS:
        for key in (f"test/{name}", f"test/{name}_by_frame"):
            value = metrics.get(key)
            curve = key.endswith("_by_frame")
            values = value if curve and isinstance(value, list) else [value]
            if value is not None and not all(_is_number(v) for v in values):
                return f"summary.json: {key} is {value!r}, not {'a list of numbers' if curve else 'a number'}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan
