"""The run record: where a run folder is, what it holds, and its readers. Needs neither torch nor W&B.

A config's run folder is ``<train.runs_dir>/<variant>-s<seed>-<config hash>`` (:func:`run_dir_for`), unless
``train.run_name`` names it. :class:`core.tracking.Tracker` writes each run's record there:

- ``config.yaml``: the resolved config (``core.config.to_yaml``), written atomically.
- ``metrics.jsonl``: one JSON object per :meth:`core.tracking.Tracker.log` call, ``{"step": ..., "time": ...,
  **metrics}``, appended and flushed line by line, so a crash loses at most the line being written
  (:func:`read_metrics` skips a cut-off last line). ``time`` is seconds of run time: since the start, continuing from
  the last kept row after a resume. Non-finite floats are written as ``NaN`` / ``Infinity``, which Python's json reads
  back.
- ``summary.json``: status, variant, config hash, axis values, final metrics, times, where W&B wrote, and any extra
  fields the trainer gives; rewritten atomically at each change.
- ``test_by_sequence.json``: the final test's score of each test sequence (mean over its frames), ``{"test_set":
  name, "num_sequences": N, "mse": [N floats], "mae": [...], "psnr": [...], "ssim": [...]}``, in the test set's order;
  two runs scored on the same test set pair sequence by sequence (:func:`read_test_by_sequence`).
- ``frames/<tag>_step<step>.png``, ``.gif`` and ``.npz``: a picture grid, an animation and the raw uint8 frames of
  predictions (:meth:`core.tracking.Tracker.log_frames`; :func:`read_frames`).

:func:`read_run` reads the first three back as plain data (:func:`read_config`, :func:`read_metrics`,
:func:`read_summary`), :func:`read_frames` one frames ``.npz``. A damaged file is a DataError naming it.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.config import Config, config_hash
from core.io import DataError

METRICS = ("mse", "mae", "psnr", "ssim")
"""Metric names, in report order (:mod:`core.metrics` computes them); result keys are these and ``<name>_by_frame``, a
run's logged keys ``val/<name>`` and ``test/<name>``."""

STATUSES = ("running", "finished", "failed", "diverged", "killed", "pruned")
"""A run's status in summary.json. ``running`` with a stale ``updated`` time means the process died without a word."""

SUMMARY_KEYS = ("status", "variant", "config_hash", "axes", "metrics", "started", "updated", "resumes", "wandb")
"""summary.json's own keys; extra fields given to :meth:`core.tracking.Tracker.summary` may not reuse them."""

TEST_BY_SEQUENCE = "test_by_sequence.json"
"""In a finished run's folder: the final test's per-sequence scores."""

SWEEP_CELLS = "cells.json"
"""In a sweep's folder: its current cells (id = config hash, name, run folder) as its file read at its last run."""


def default_run_name(cfg: Config) -> str:
    """``<variant>-s<seed>-<config hash>``: re-running the same config finds the same folder."""
    return cfg.train.run_name or f"{cfg.variant}-s{cfg.train.seed}-{config_hash(cfg)}"


def run_dir_for(cfg: Config) -> Path:
    """Where ``cfg``'s run record is: ``<train.runs_dir>/<run name>`` (:func:`default_run_name`)."""
    return Path(cfg.train.runs_dir) / default_run_name(cfg)


def read_frames(path: str | Path) -> dict[str, np.ndarray]:
    """The uint8 ``(N, T, C, H, W)`` arrays of a frames ``.npz`` written by :meth:`core.tracking.Tracker.log_frames`
    (``target``, ``pred``, and ``context`` when it was given); never unpickles. A malformed file is a DataError naming
    it."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a frames file ({error})") from None
    for name in ("target", "pred"):
        if name not in arrays:
            raise DataError(f"{path}: no {name!r} array (has {sorted(arrays)})")
    for name, array in arrays.items():
        if array.dtype != np.uint8 or array.ndim != 5:
            raise DataError(f"{path}: {name!r} must be uint8 (N, T, C, H, W), got {array.dtype} {array.shape}")
    return arrays


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl; a missing file has none. A last line cut off by a crash is skipped; a bad line
    elsewhere is a DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = []
    # The last piece is "" when the file ends with a newline; otherwise it is a line whose writer died mid-write.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
    if lines[-1].strip():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(lines[-1]))
    return rows


def read_test_by_sequence(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's :data:`TEST_BY_SEQUENCE` as ``{"test_set": str, "mse": (N,) float64 array, ...}``; None when the run
    has none (it has not finished, or finished before the file existed). A damaged file is a DataError naming it."""
    path = Path(run_dir) / TEST_BY_SEQUENCE
    text = _read_text(path)
    if text is None:
        return None
    try:
        record = json.loads(text)
        count = int(record["num_sequences"])
        scores = {name: np.asarray(record[name], dtype=np.float64) for name in ("mse", "mae", "psnr", "ssim")}
        if any(values.shape != (count,) for values in scores.values()):
            raise ValueError(f"a metric's list does not hold num_sequences = {count} numbers")
        return {"test_set": str(record["test_set"]), **scores}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: not a per-sequence score file ({type(error).__name__}: {error}); the file is "
                        "damaged") from None  # fmt: skip


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A run record as plain data: ``{"dir", "config" (the YAML as a dict), "metrics" (rows), "summary"}``.

    A missing config.yaml or summary.json gives None (the run died before writing it), metrics.jsonl an empty list.
    A damaged one is a DataError naming the file and what is wrong with it.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    return {
        "dir": str(run_dir),
        "config": read_config(run_dir / "config.yaml"),
        "metrics": read_metrics(run_dir / "metrics.jsonl"),
        "summary": read_summary(run_dir / "summary.json"),
    }


def read_config(path: str | Path) -> dict | None:
    """A run's config.yaml as a dict, None when missing; one that is empty, not YAML or not a mapping of config keys
    is a DataError naming it."""
    path = Path(path)
    text = _read_text(path)
    if text is None:
        return None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"; line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise DataError(f"{path}: not valid YAML ({problem}{where}); the file is damaged") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: {_holds(config, 'YAML')}, not a mapping of config keys; the file is damaged")
    return config


def read_summary(path: str | Path) -> dict | None:
    """A run's summary.json as a dict, None when missing; one that is empty, cut off or not a JSON object is a
    DataError naming it."""
    path = Path(path)
    text = _read_text(path)
    if text is None:
        return None
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: not valid JSON ({error.msg}; line {error.lineno}, column {error.colno}); the file is cut off "
            "or damaged"
        ) from None
    if not isinstance(summary, dict):
        raise DataError(f"{path}: {_holds(summary, 'JSON')}, not an object of summary fields; the file is damaged")
    return summary


def _read_text(path: Path) -> str | None:
    """A record file's text, None when it is missing; an empty or non-UTF-8 file is a DataError naming it."""
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}); the file is damaged") from None
    if not text.strip():
        raise DataError(f"{path}: empty; the file is damaged")
    return text


def _holds(value: Any, language: str) -> str:
    """What a parsed record file holds instead of a mapping, in words."""
    if value is None:
        return f"holds a {language} null"
    kind = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "value")
    return f"holds a {language} {kind}"
