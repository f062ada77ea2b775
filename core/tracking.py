"""The run record and W&B: the one module that imports wandb, and only inside functions that need it.

A :class:`Tracker` keeps a local record of each run, always, in the run folder:

- ``config.yaml``: the resolved config (``core.config.to_yaml``), written atomically.
- ``metrics.jsonl``: one JSON object per :meth:`Tracker.log` call, ``{"step": ..., "time": ..., **metrics}``, appended
  and flushed line by line, so a crash loses at most the line being written (:func:`read_metrics` skips a cut-off last
  line). ``time`` is seconds of run time: since the start, continuing from the last kept row after a resume. Non-finite
  floats are written as ``NaN`` / ``Infinity``, which Python's json reads back.
- ``summary.json``: status, variant, config hash, axis values, final metrics, times, where W&B wrote, and any extra
  fields the trainer gives; rewritten atomically at each change.
- ``frames/<tag>_step<step>.png``, ``.gif`` and ``.npz``: a picture grid, an animation and the raw uint8 frames of
  predictions (:meth:`Tracker.log_frames`; :func:`read_frames`).

and mirrors it to W&B unless the mode is ``disabled`` (which imports nothing and writes nothing of W&B's). W&B 0.31
keeps an offline run's config, history and summary only inside ``<run>/wandb/offline-run-<time>-<id>/run-<id>.wandb``
(media beside it under ``files/media/``); :func:`read_offline_run` reads that file back without a server.

Facts about W&B 0.31 this module relies on (measured, see design.md section 8): offline mode must be chosen through
``WANDB_MODE`` before ``wandb.init`` (the ``mode=`` argument alone still makes a telemetry lookup that delays exit by
~10 s without network); ``wandb.Video`` from an array needs moviepy, so videos are passed as GIF files; ``run.finish()``
can return before the transaction log holds its exit record, so :meth:`Tracker.finish` polls for it.

No environment variable is copied into the config, the summary or W&B; an error message stored in the summary has the
values of variables named like keys, tokens, secrets and passwords blanked out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import operator
import os
import re
import struct
import time
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import yaml

from core.axes import recorded_axes
from core.config import Config, config_hash, to_dict, to_yaml
from core.io import DataError, atomic_write

WANDB_MODES = ("offline", "online", "disabled")

STATUSES = ("running", "finished", "failed", "diverged", "killed", "pruned")
"""A run's status in summary.json. ``running`` with a stale ``updated`` time means the process died without a word."""

EXIT_CODES = {"finished": 0, "pruned": 0, "diverged": 1, "failed": 1, "killed": 130}
"""W&B exit code per final status: non-zero marks the run failed in the dashboard (130: interrupted, as shells say)."""

SUMMARY_KEYS = ("status", "variant", "config_hash", "axes", "metrics", "started", "updated", "resumes", "wandb")
"""summary.json's own keys; extra fields given to :meth:`Tracker.summary` may not reuse them."""

SWEEP_CELLS = "cells.json"
"""In a sweep's folder: its current cells (id = config hash, name, run folder) as its file read at its last run."""

FINISH_TIMEOUT_S = 10.0
"""How long :meth:`Tracker.finish` waits for W&B's transaction log to receive its exit record."""

# Frame pictures. Cells are separated by background gray, which also fills the prediction row under the context
# frames, so an empty cell reads as "no frame" rather than as a black frame (Moving MNIST backgrounds are black).
BACKGROUND = 128
FRAME_GAP = 2  # pixels between neighbouring frames
CONTEXT_GAP = 6  # pixels between the last context frame and the first predicted one
SEQUENCE_GAP = 6  # pixels between the two-row blocks of different sequences
PROGRESS_BAR = 4  # pixels: height of the GIF's time bar
BAR_TRACK, BAR_CONTEXT, BAR_PREDICTION = 64, 176, 255  # the bar's gray levels: empty, during context, predicting
GIF_FRAME_MS = 200  # 5 frames per second: slow enough to follow a digit

_RESERVED_METRICS = ("step", "time")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------------
# Identity of a run


def axes(cfg: Config) -> dict[str, Any]:
    """The ablation axes and identifiers of a run, flat (:data:`core.axes.RECORDED`): W&B groups by them, tables
    read them from summary.json."""
    return recorded_axes(to_dict(cfg))


def wandb_run_id(run_name: str, cfg: Config) -> str:
    """A W&B run id that is the same whenever the same run folder holds the same config, so a resume continues it.

    W&B ids allow letters, digits, ``-`` and ``_``: the readable part is the folder name cleaned and cut to 40
    characters, and a digest of the exact name and the config hash keeps ids of different runs apart.
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run_name).strip("-")[:40]
    digest = hashlib.sha256(f"{run_name}\0{config_hash(cfg)}".encode()).hexdigest()[:12]
    return f"{slug}-{digest}" if slug else digest


# ---------------------------------------------------------------------------------------------------------------------
# The tracker


class Tracker:
    """Records one run: the local run record always, W&B unless ``mode`` is ``disabled``.

    Use it as a context manager: leaving the block by an exception finishes the run as ``failed`` (``killed`` for
    KeyboardInterrupt), stores the error in summary.json and gives W&B a non-zero exit code; the exception propagates.

    Args:
        run_dir: the run folder (made if missing); W&B's files go to ``run_dir/wandb``.
        cfg: the resolved config.
        mode: ``offline`` (default: ``cfg.tracking.wandb``), ``online`` or ``disabled``.
        resume: continue the run in ``run_dir``: keep metrics.jsonl (call :meth:`truncate_after` with the checkpoint's
            step) and the start time, and continue the same W&B run id. Otherwise metrics.jsonl starts empty.
    """

    def __init__(self, run_dir: str | Path, cfg: Config, mode: str | None = None, resume: bool = False) -> None:
        mode = mode if mode is not None else cfg.tracking.wandb
        if mode not in WANDB_MODES:
            raise ValueError(f"W&B mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.mode = mode
        self.resume = resume
        self.wandb_id: str | None = None
        self._hash = config_hash(cfg)
        self._axes = axes(cfg)
        self._status = "running"
        self._metrics: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}
        self._closed = False
        self._run: Any = None  # the wandb Run, while open
        self._wandb_dir: Path | None = None  # W&B's folder for this process's part of the run
        self._wandb_file: Path | None = None  # its transaction log (.wandb)
        self._wandb_complete: bool | None = None  # whether that log got its exit record; None until finish

        self.run_dir.mkdir(parents=True, exist_ok=True)
        previous = _read_json(self.summary_path) if resume else None
        self._started = (previous or {}).get("started") or _now()
        self._resumes = int((previous or {}).get("resumes", 0)) + 1 if resume else 0
        with atomic_write(self.run_dir / "config.yaml", "w") as handle:
            handle.write(to_yaml(cfg))
        self._metrics_file: Any = None
        # Rewriting even on resume drops a line cut off by a crash, so the next row starts on a line of its own.
        self._rewrite_metrics(read_metrics(self.metrics_path) if resume else [])
        try:
            if mode != "disabled":
                self._start_wandb()
            self._write_summary()
        except BaseException:
            self._metrics_file.close()
            raise

    # -- paths

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.run_dir / "summary.json"

    @property
    def frames_dir(self) -> Path:
        return self.run_dir / "frames"

    @property
    def status(self) -> str:
        return self._status

    # -- context manager

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        if self._closed:
            return False
        clean_exit = exc_type is None or (issubclass(exc_type, SystemExit) and exc.code in (0, None))
        if clean_exit:
            # A status set by summary() (diverged, pruned) stands; a block that simply ends has finished.
            status = "finished" if self._status == "running" else self._status
        else:
            status = "killed" if issubclass(exc_type, KeyboardInterrupt | SystemExit) else "failed"
            self._extra["error"] = scrub_secrets(f"{exc_type.__name__}: {exc}")[:2000]
        try:
            self.finish(status)
        except Exception as failure:
            if clean_exit:
                raise
            # Never hide the exception that ended the run behind one from closing its record.
            warnings.warn(f"could not finish the run record of {self.run_dir}: {failure!r}", stacklevel=2)
        return False

    # -- recording

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Record metrics at ``step``: numbers (``"train/loss"``, ``"val/mse"``), strings, or per-frame lists.

        W&B receives numbers as history, each list as a line chart over predicted frames 1..T (a table logged under
        ``<key>_table``), and strings in its summary (a history of text draws no chart).
        """
        self._check_open()
        step = operator.index(step)
        clash = [key for key in metrics if key in _RESERVED_METRICS]
        if clash:
            raise ValueError(f"metric names {clash} are reserved for the row's own fields in metrics.jsonl")
        values = {str(key): _metric_value(value, str(key)) for key, value in metrics.items()}
        row = {"step": step, "time": round(self._elapsed(), 3), **values}
        self._metrics_file.write(json.dumps(row) + "\n")
        self._metrics_file.flush()
        if self._run is not None:
            self._log_wandb(values, step)

    def log_frames(
        self, tag: str, target: Any, pred: Any, context: Any | None = None, step: int = 0
    ) -> tuple[Path, Path] | None:
        """Draw ``(N, T, C, H, W)`` target and predicted frames (values in [0, 1] or uint8; C is 1 or 3), after the
        ``(N, Tc, C, H, W)`` context, for the first ``cfg.tracking.frames`` sequences.

        Writes ``frames/<tag>_step<step>.png`` (:func:`frame_grid`), ``.gif`` (:func:`frame_video`) and ``.npz`` (the
        uint8 arrays ``target``, ``pred`` and ``context``, read by :func:`read_frames`) and logs the first two to W&B as
        ``<tag>/frames`` and ``<tag>/video``. Returns the PNG and GIF paths, or None when ``tracking.frames`` is 0.
        """
        self._check_open()
        step = operator.index(step)
        keep = self.cfg.tracking.frames
        if keep == 0:
            return None
        target = _as_frames(target, "target")[:keep]
        pred = _as_frames(pred, "pred")[:keep]
        context = None if context is None else _as_frames(context, "context")[:keep]
        png, gif = save_frames(self.frames_dir, f"{tag}_step{step}", target, pred, context)
        arrays = {"target": target, "pred": pred} | ({} if context is None else {"context": context})
        with atomic_write(png.with_suffix(".npz"), "wb") as handle:  # the raw frames, for figures across runs
            np.savez_compressed(handle, **arrays)
        if self._run is not None:
            wandb = import_wandb()
            context_count = 0 if context is None else context.shape[1]
            caption = (
                f"step {step}: per sequence, ground truth over prediction; {context_count} context frames, "
                f"then {target.shape[1]} predicted"
            )
            media = {
                f"{tag}/frames": wandb.Image(str(png), caption=caption),
                f"{tag}/video": wandb.Video(str(gif), caption="ground truth | prediction", format="gif"),
            }
            self._run.log(media, step=step)
        return png, gif

    def summary(self, status: str, metrics: Mapping[str, Any] | None = None, **extra: Any) -> None:
        """Set the status and merge in final ``metrics`` and ``extra`` fields; rewrites summary.json, updates W&B's."""
        self._check_open()
        _check_status(status)
        clash = [key for key in extra if key in SUMMARY_KEYS]
        if clash:
            raise ValueError(f"summary fields {clash} are summary.json's own; pass metrics through metrics=")
        new_metrics = _plain(dict(metrics or {}), "metrics")
        new_extra = _plain(extra, "summary")
        self._status = status
        self._metrics.update(new_metrics)
        self._extra.update(new_extra)
        self._write_summary()
        if self._run is not None:
            self._run.summary.update({**new_metrics, **new_extra, "status": status})

    def truncate_after(self, step: int) -> int:
        """Keep only the metrics.jsonl rows with ``row["step"] <= step`` (on resume from a checkpoint at ``step``, so
        the steps run again are not recorded twice); later rows' ``time`` continues from the last kept row.

        Returns the number of rows dropped.
        """
        self._check_open()
        rows = read_metrics(self.metrics_path)
        kept = [row for row in rows if row.get("step", -1) <= step]
        self._rewrite_metrics(kept)
        return len(rows) - len(kept)

    def finish(self, status: str = "finished") -> None:
        """Close the run with a final ``status``: summary.json first (so it never depends on W&B closing), then W&B,
        waiting up to ``FINISH_TIMEOUT_S`` for its transaction log to be complete. A second call does nothing."""
        if self._closed:
            return
        _check_status(status)
        if status == "running":
            raise ValueError("finish() needs a final status, not 'running'")
        self._closed = True
        self._status = status
        self._write_summary()
        self._metrics_file.close()
        if self._run is not None:
            run, self._run = self._run, None
            run.summary.update(
                {"status": status, **({"error": self._extra["error"]} if "error" in self._extra else {})}
            )
            run.finish(exit_code=EXIT_CODES[status])
            self._wandb_complete = _wait_for_exit_record(self._wandb_file, FINISH_TIMEOUT_S)
            if not self._wandb_complete:
                warnings.warn(
                    f"W&B's log {self._wandb_file} got no exit record within {FINISH_TIMEOUT_S:.0f} s", stacklevel=2
                )
            self._write_summary()

    # -- internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the tracker of {self.run_dir} is finished")

    def _elapsed(self) -> float:
        return self._time_offset + time.monotonic() - self._clock

    def _rewrite_metrics(self, rows: list[dict]) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
        with atomic_write(self.metrics_path, "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        last_time = rows[-1].get("time") if rows else None
        self._time_offset = float(last_time) if isinstance(last_time, int | float) else 0.0
        self._clock = time.monotonic()
        self._metrics_file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115 (open until finish)

    def _write_summary(self) -> None:
        wandb_dir = None
        if self._wandb_dir is not None:
            try:
                wandb_dir = self._wandb_dir.resolve().relative_to(self.run_dir.resolve()).as_posix()
            except ValueError:
                wandb_dir = str(self._wandb_dir.resolve())
        record = {
            "status": self._status,
            "variant": self.cfg.variant,
            "config_hash": self._hash,
            "axes": self._axes,
            "metrics": self._metrics,
            "started": self._started,
            "updated": _now(),
            "resumes": self._resumes,
            "wandb": {"mode": self.mode, "id": self.wandb_id, "dir": wandb_dir, "complete": self._wandb_complete},
            **self._extra,
        }
        with atomic_write(self.summary_path, "w") as handle:
            json.dump(record, handle, indent=2)
            handle.write("\n")

    def _start_wandb(self) -> None:
        wandb = _wandb_for(self.mode)
        self.wandb_id = wandb_run_id(self.run_dir.name, self.cfg)
        tracking = self.cfg.tracking
        self._run = wandb.init(
            project=tracking.project,
            group=tracking.group,
            tags=list(tracking.tags),
            name=self.run_dir.name,
            id=self.wandb_id,
            dir=str(self.run_dir),  # WANDB_DIR is read once per process; dir= is honoured at every init
            config={**to_dict(self.cfg), **self._axes, "config_hash": self._hash},
            resume="allow" if self.resume else None,
            reinit="create_new",  # several runs in one process (a search) must not hand back an earlier run
        )
        self._wandb_dir = Path(self._run.settings.sync_dir)
        self._wandb_file = Path(self._run.settings.sync_file)

    def _log_wandb(self, values: dict[str, Any], step: int) -> None:
        wandb = import_wandb()
        history: dict[str, Any] = {}
        texts: dict[str, str] = {}
        for key, value in values.items():
            if isinstance(value, list):
                if value:
                    table = wandb.Table(columns=["frame", key], data=[[i + 1, v] for i, v in enumerate(value)])
                    history[key] = wandb.plot.line(table, "frame", key, title=key)
            elif isinstance(value, str):
                texts[key] = value
            elif value is not None:
                history[key] = value
        if history:
            self._run.log(history, step=step)
        if texts:
            self._run.summary.update(texts)


def log_summary_run(
    folder: str | Path,
    name: str,
    project: str,
    group: str | None,
    tables: Mapping[str, tuple[list[str], list[list[Any]]]],
    images: Mapping[str, str | Path],
    mode: str = "offline",
) -> Path | None:
    """One W&B run (job type ``report``) holding a sweep's tables and figures, in the sweep's group, so the dashboard
    shows the paper's table beside the runs it came from.

    ``tables``: key -> (columns, rows), logged as ``wandb.Table``; ``images``: key -> PNG path, logged as
    ``wandb.Image``. W&B's files go to ``folder/wandb``. Returns the run's transaction log (``.wandb``; ``wandb sync``
    uploads an offline one), or None with mode ``disabled``.
    """
    if mode not in WANDB_MODES:
        raise ValueError(f"W&B mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
    if mode == "disabled":
        return None
    wandb = _wandb_for(mode)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{project}/{group}/{name}".encode()).hexdigest()[:8]
    run = wandb.init(project=project, group=group, name=name, id=f"report-{digest}", job_type="report",
                     dir=str(folder), resume="allow", reinit="create_new")  # fmt: skip
    try:
        values: dict[str, Any] = {key: wandb.Table(columns=list(columns), data=[list(row) for row in rows])
                                  for key, (columns, rows) in tables.items()}  # fmt: skip
        values |= {key: wandb.Image(str(path)) for key, path in images.items()}
        run.log(values)
        log_file = Path(run.settings.sync_file)
    finally:
        run.finish()
    _wait_for_exit_record(log_file, FINISH_TIMEOUT_S)
    return log_file


# ---------------------------------------------------------------------------------------------------------------------
# Frame pictures


def save_frames(folder: Path, stem: str, target: Any, pred: Any, context: Any | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (:func:`frame_grid`) and ``<stem>.gif`` (:func:`frame_video`) into ``folder``.

    Frames are ``(N, T, C, H, W)`` in [0, 1] or uint8; returns the two paths.
    """
    target, pred = _as_frames(target, "target"), _as_frames(pred, "pred")
    context = None if context is None else _as_frames(context, "context")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    png, gif = Path(folder) / f"{stem}.png", Path(folder) / f"{stem}.gif"
    write_png(png, frame_grid(target, pred, context))
    write_gif(gif, frame_video(target, pred, context))
    return png, gif


def frame_grid(target: np.ndarray, pred: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """One picture of predictions: ``(height, width)`` uint8 for C = 1, ``(height, width, 3)`` for C = 3.

    Inputs are uint8 ``(N, T, C, H, W)`` (context ``(N, Tc, C, H, W)``). Each sequence is two rows: the ground truth
    (context frames, then target frames) over the prediction (empty under the context). Columns are time, with
    ``FRAME_GAP`` pixels between frames and ``CONTEXT_GAP`` where prediction begins; ``SEQUENCE_GAP`` between sequences.
    """
    n, t, c, h, w = target.shape
    tc = 0 if context is None else context.shape[1]
    truth = target if context is None else np.concatenate([context, target], axis=1)  # (N, Tc+T, C, H, W)
    lefts = [i * (w + FRAME_GAP) + (CONTEXT_GAP - FRAME_GAP if tc and i >= tc else 0) for i in range(tc + t)]
    block = 2 * h + FRAME_GAP  # one sequence's two rows
    canvas = np.full((n * block + (n - 1) * SEQUENCE_GAP, lefts[-1] + w, c), BACKGROUND, dtype=np.uint8)
    for s in range(n):
        top = s * (block + SEQUENCE_GAP)
        for i, left in enumerate(lefts):
            canvas[top : top + h, left : left + w] = truth[s, i].transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        for i in range(t):
            left = lefts[tc + i]
            canvas[top + h + FRAME_GAP : top + block, left : left + w] = pred[s, i].transpose(1, 2, 0)
    return canvas[..., 0] if c == 1 else canvas


def frame_video(target: np.ndarray, pred: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """An animation of predictions: ``(Tc + T, height, width)`` uint8 for C = 1, ``(..., 3)`` for C = 3.

    Each sequence is one row, ground truth on the left and prediction on the right (during the context both show the
    context frame the model is given); a bar along the bottom fills with time, brighter once prediction begins.
    """
    n, t, c, h, w = target.shape
    tc = 0 if context is None else context.shape[1]
    truth = target if context is None else np.concatenate([context, target], axis=1)  # (N, Tc+T, C, H, W)
    shown = pred if context is None else np.concatenate([context, pred], axis=1)  # (N, Tc+T, C, H, W)
    total, width = tc + t, 2 * w + FRAME_GAP
    bar_top = n * h + n * FRAME_GAP
    video = np.full((total, bar_top + PROGRESS_BAR, width, c), BACKGROUND, dtype=np.uint8)
    for s in range(n):
        top = s * (h + FRAME_GAP)
        video[:, top : top + h, :w] = truth[s].transpose(0, 2, 3, 1)  # (T, C, H, W) -> (T, H, W, C)
        video[:, top : top + h, w + FRAME_GAP :] = shown[s].transpose(0, 2, 3, 1)
    for k in range(total):
        video[k, bar_top:] = BAR_TRACK
        video[k, bar_top:, : round(width * (k + 1) / total)] = BAR_CONTEXT if k < tc else BAR_PREDICTION
    return video[..., 0] if c == 1 else video


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` image as PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def write_gif(path: Path, video: np.ndarray, frame_ms: int = GIF_FRAME_MS) -> None:
    """Write a uint8 ``(T, H, W)`` or ``(T, H, W, 3)`` animation as a looping GIF, atomically."""
    import imageio.v3 as iio

    data = iio.imwrite("<bytes>", video, extension=".gif", duration=frame_ms, loop=0, is_batch=True)
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def _as_frames(frames: Any, name: str) -> np.ndarray:
    """``(N, T, C, H, W)`` frames (numpy, or anything with ``.detach()``) as uint8, values in [0, 1] scaled by 255."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 5 or frames.shape[2] not in (1, 3):
        raise DataError(f"{name} frames must have shape (N, T, C, H, W) with C = 1 or 3, got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    # NaN (a diverged model's output) is drawn black rather than failing the picture.
    scaled = np.nan_to_num(np.clip(frames.astype(np.float64), 0.0, 1.0), nan=0.0) * 255
    return np.rint(scaled).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# Reading a local run record (no W&B needed)


def read_frames(path: str | Path) -> dict[str, np.ndarray]:
    """The uint8 ``(N, T, C, H, W)`` arrays of a frames ``.npz`` written by :meth:`Tracker.log_frames` (``target``,
    ``pred``, and ``context`` when it was given); never unpickles. A malformed file is a DataError naming it."""
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


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """A run record as plain data: ``{"dir", "config" (the YAML as a dict), "metrics" (rows), "summary"}``.

    A missing config.yaml or summary.json gives None (the run died before writing it), metrics.jsonl an empty list.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    return {
        "dir": str(run_dir),
        "config": config,
        "metrics": read_metrics(run_dir / "metrics.jsonl"),
        "summary": _read_json(run_dir / "summary.json"),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Reading W&B's offline transaction log
#
# W&B 0.31 has no public reader of offline runs. Its .wandb file is a LevelDB-style log: a 7-byte file header
# (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header (crc32 of the type byte and
# the data, data length, type: full, first, middle or last piece of a record); a block tail too short for a header is
# zero padding. Each record is a protobuf ``wandb.proto.wandb_internal_pb2.Record``.

_LOG_BLOCK = 32 * 1024
_FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
_LOG_IDENT, _LOG_MAGIC, _LOG_VERSION = b":W&B", 0xBEE1, 0
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_log_records(path: str | Path) -> tuple[list[bytes], bool]:
    """The records (raw bytes) of a W&B transaction log, and whether it ended cleanly.

    A file still being written, or cut off by a crash, ends in a partial chunk or record: those are left out and the
    flag is False. A checksum mismatch before the last chunk, or chunks out of order, is a DataError.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size:
        return [], False
    ident, magic, version = _FILE_HEADER.unpack_from(data)
    if ident != _LOG_IDENT or magic != _LOG_MAGIC:
        raise DataError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    if version != _LOG_VERSION:
        raise DataError(f"{path}: W&B log format version {version}, this reader knows {_LOG_VERSION}")
    records: list[bytes] = []
    pieces: list[bytes] | None = None  # the record being assembled from first/middle chunks
    pos, clean = _FILE_HEADER.size, True
    while pos < len(data):
        block_left = _LOG_BLOCK - pos % _LOG_BLOCK
        if block_left < _CHUNK_HEADER.size:
            pos += block_left
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            clean = False
            break
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if crc == length == kind == 0:  # zero fill: nothing more in this block
            pos += block_left
            continue
        end = pos + _CHUNK_HEADER.size + length
        if end > len(data):
            clean = False
            break
        payload = data[pos + _CHUNK_HEADER.size : end]
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            if end == len(data):  # a torn last write
                clean = False
                break
            raise DataError(f"{path}: checksum mismatch in the chunk at byte {pos}")
        if length > block_left - _CHUNK_HEADER.size:
            raise DataError(f"{path}: the chunk at byte {pos} crosses a block boundary")
        pos = end
        if kind == _FULL and pieces is None:
            records.append(payload)
        elif kind == _FIRST and pieces is None:
            pieces = [payload]
        elif kind in (_MIDDLE, _LAST) and pieces is not None:
            pieces.append(payload)
            if kind == _LAST:
                records.append(b"".join(pieces))
                pieces = None
        else:
            raise DataError(f"{path}: chunk of type {kind} out of order at byte {pos - length - _CHUNK_HEADER.size}")
    if pieces is not None:
        clean = False
    return records, clean


def offline_run_files(path: str | Path) -> list[Path]:
    """The .wandb transaction logs at ``path``: a .wandb file, a W&B run folder, a ``wandb`` folder or a run folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    unique = {file.resolve(): file for file in path.rglob("*.wandb") if file.is_file()}
    return sorted(unique.values())


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """Config, history and summary of a W&B run from its transaction logs, without a server.

    ``path`` as for :func:`offline_run_files`; all logs found must belong to one run id. A resumed run has one log per
    process: they are read in order of start time, a later part's history replacing the earlier parts' rows from its
    first step on (as :meth:`Tracker.truncate_after` does locally), config and summary updated in order.

    Returns ``{"id", "project", "group", "name", "tags", "config", "history", "summary", "exit_code", "complete",
    "parts"}``: history is a list of rows (dicts with ``_step``, ``_runtime``, ``_timestamp`` and the logged keys),
    config and summary dicts without W&B's internal ``_wandb`` entries. Media values (``{"_type": "image-file",
    "path": ...}``, tables, videos) get a ``local_path``: the absolute path of the file. ``complete`` is whether the
    last part holds its exit record.
    """
    files = offline_run_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no W&B transaction log (.wandb) found")
    from wandb.proto import wandb_internal_pb2 as pb

    parts = sorted((_decode_log(pb, file) for file in files), key=lambda part: (part["start_time"], str(part["file"])))
    ids = sorted({part["id"] for part in parts if part["id"]})
    if len(ids) > 1:
        raise DataError(f"{path}: transaction logs of several runs ({', '.join(ids)}); pass one run's folder")
    out: dict[str, Any] = {"id": ids[0] if ids else None, "project": None, "group": None, "name": None, "tags": []}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict] = []
    for part in parts:
        for key in ("project", "group", "name"):
            out[key] = part[key] or out[key]
        out["tags"] = part["tags"] or out["tags"]
        for op, keys, value in part["config"]:
            _apply(config, op, keys, value)
        touched = set()
        for op, keys, value in part["summary"]:
            _apply(summary, op, keys, value)
            touched.add(keys[0])
        for key in touched & summary.keys():
            _add_local_paths(summary[key], part["media_root"])
        if part["history"]:
            first = part["history"][0]["_step"]
            history = [row for row in history if row["_step"] < first] + part["history"]
    last = parts[-1]
    out.update(
        config=config,
        history=history,
        summary=summary,
        exit_code=last["exit_code"],
        complete=last["exit_code"] is not None,
        parts=[
            {"file": str(p["file"]), "start_time": p["start_time"], "exit_code": p["exit_code"], "clean": p["clean"]}
            for p in parts
        ],
    )
    return out


def read_offline_table(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a table-file value from :func:`read_offline_run` (e.g. a per-frame curve), as dicts by column."""
    table = json.loads(Path(value["local_path"]).read_text(encoding="utf-8"))
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]


def _decode_log(pb: Any, file: Path) -> dict[str, Any]:
    """One transaction log's records in order: run identity, config and summary operations, history rows, exit."""
    records, clean = read_log_records(file)
    part: dict[str, Any] = {
        "file": file,
        "media_root": file.parent / "files",
        "clean": clean,
        "id": None,
        "project": None,
        "group": None,
        "name": None,
        "tags": [],
        "start_time": "",
        "config": [],
        "summary": [],
        "history": [],
        "exit_code": None,
    }
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            part.update(id=run.run_id or None, project=run.project or None, group=run.run_group or None)
            part.update(name=run.display_name or None, tags=list(run.tags))
            if run.HasField("start_time"):
                part["start_time"] = run.start_time.ToDatetime().isoformat()
            part["config"] += _operations(run.config)
            part["summary"] += _operations(run.summary)
        elif kind == "config":
            part["config"] += _operations(record.config)
        elif kind == "summary":
            part["summary"] += _operations(record.summary)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _apply(row, "set", _item_keys(item), _item_value(item))
            row["_step"] = record.history.step.num if record.history.HasField("step") else row.get("_step")
            for value in row.values():
                _add_local_paths(value, part["media_root"])
            part["history"].append(row)
        elif kind == "exit":
            part["exit_code"] = int(record.exit.exit_code)
    return part


def _operations(update_record: Any) -> list[tuple[str, list[str], Any]]:
    """A config or summary record's updates and removals as ``(op, key path, value)``, W&B's internals left out."""
    ops = [("set", _item_keys(item), _item_value(item)) for item in update_record.update]
    ops += [("remove", _item_keys(item), None) for item in update_record.remove]
    return [op for op in ops if op[1] and not op[1][0].startswith("_wandb")]


def _item_keys(item: Any) -> list[str]:
    return list(item.nested_key) if len(item.nested_key) else [item.key]


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    # History items may carry a typed value instead of JSON text.
    field = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if field is None or field == "none":
        return None
    value = getattr(item, field)
    return json.loads(value) if field == "json" else value


def _apply(tree: dict, op: str, keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if op == "remove":
                return
            child = node[key] = {}
        node = child
    if op == "set":
        node[keys[-1]] = value
    else:
        node.pop(keys[-1], None)


def _add_local_paths(value: Any, media_root: Path) -> None:
    if isinstance(value, dict) and isinstance(value.get("_type"), str) and isinstance(value.get("path"), str):
        value["local_path"] = str((media_root / value["path"]).resolve())


def _wait_for_exit_record(path: Path | None, timeout_s: float) -> bool:
    """Poll W&B's transaction log until it holds its exit record (True) or ``timeout_s`` passes (False)."""
    if path is None:
        return False
    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + timeout_s
    while True:
        if path.is_file():
            for raw in reversed(read_log_records(path)[0]):
                record = pb.Record()
                record.ParseFromString(raw)
                if record.WhichOneof("record_type") == "exit":
                    return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers


def _wandb_for(mode: str) -> Any:
    """wandb, imported with the environment a run needs, set before ``wandb.init``.

    Environment, not init arguments: only WANDB_MODE set before init avoids the telemetry lookup that stalls exit
    without network, and error reporting would be a network call of its own."""
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_ERROR_REPORTING"] = "false"
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")  # the progress bar would fill the log with output records
    return import_wandb()


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise RuntimeError("W&B tracking needs the wandb package; install it or set tracking.wandb=disabled") from exc
    return wandb


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")


def _metric_value(value: Any, key: str) -> Any:
    """A logged value as JSON data: a number, a string, None, or a flat list of numbers (a per-frame curve)."""
    plain = _plain(value, key)
    if isinstance(plain, dict) or (isinstance(plain, list) and any(isinstance(v, list | dict | str) for v in plain)):
        raise TypeError(f"metric {key!r} must be a number, a string or a list of numbers, got {type(value).__name__}")
    return plain


def _plain(value: Any, key: str) -> Any:
    """Numpy and torch values as plain Python (JSON) data; anything else unrecordable is a TypeError naming the key."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and torch tensors
        return _plain(value.tolist(), key)
    if isinstance(value, list | tuple):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{key}: cannot record a value of type {type(value).__name__}")


def scrub_secrets(text: str) -> str:
    """``text`` with the values of secret-looking environment variables blanked out."""
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= 6:
            text = text.replace(value, "***")
    return text


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
