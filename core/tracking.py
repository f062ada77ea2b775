"""The tracker and W&B: the one module that imports wandb, and only inside functions that need it.

A :class:`Tracker` keeps a local record of each run, always, in the run folder (config.yaml, metrics.jsonl,
summary.json, frames/: the layout and its readers are in ``core/records.py``, the pictures in ``core/pictures.py``),
and mirrors it to W&B unless the mode is ``disabled`` (which imports nothing and writes nothing of W&B's). W&B 0.31
keeps an offline run's config, history and summary only inside ``<run>/wandb/offline-run-<time>-<id>/run-<id>.wandb``
(media beside it under ``files/media/``); :func:`read_offline_run` reads that file back without a server (the log's
format is read in ``core/wandb_log.py``, given W&B's protobufs from here).

Facts about W&B 0.31 this module relies on (measured, see design.md section 8): offline mode must be chosen through
``WANDB_MODE`` before ``wandb.init`` (the ``mode=`` argument alone still makes a telemetry lookup that delays exit by
~10 s without network); ``wandb.Video`` from an array needs moviepy, so videos are passed as GIF files; ``run.finish()``
can return before the transaction log holds its exit record, so :meth:`Tracker.finish` polls for it.

No environment variable is copied into the config, the summary or W&B; an error message stored in the summary has the
values of variables named like keys, tokens, secrets and passwords blanked out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
import os
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from core.axes import recorded_axes
from core.config import Config, config_hash, to_dict, to_yaml
from core.io import atomic_write
from core.pictures import as_frames, save_frames
from core.records import STATUSES, SUMMARY_KEYS, TEST_BY_SEQUENCE, read_metrics, read_summary
from core.wandb_env import (
    DEFAULT_PROJECT,
    EXIT_CODES,
    FINISH_TIMEOUT_S,
    WANDB_MODES,
    job_type,
    scrub_secrets,
    under_wandb_agent,
    wandb_mode_from_env,
    wandb_run_id,
)
from core.wandb_log import read_log_records, read_run_logs

_RESERVED_METRICS = ("step", "time")


# ---------------------------------------------------------------------------------------------------------------------
# Identity of a run


def axes(cfg: Config) -> dict[str, Any]:
    """The ablation axes and identifiers of a run, flat (:data:`core.axes.RECORDED`): W&B groups by them, tables
    read them from summary.json."""
    return recorded_axes(to_dict(cfg))


# ---------------------------------------------------------------------------------------------------------------------
# The tracker


class Tracker:
    """Records one run: the local run record always, W&B unless ``mode`` is ``disabled``.

    Use it as a context manager: leaving the block by an exception finishes the run as ``failed`` (``killed`` for
    KeyboardInterrupt), stores the error in summary.json and gives W&B a non-zero exit code; the exception propagates.

    Args:
        run_dir: the run folder (made if missing); W&B's files go to ``run_dir/wandb``.
        cfg: the resolved config.
        mode: ``offline``, ``online`` or ``disabled``; default ``cfg.tracking.wandb``, else the environment's
            WANDB_MODE, else ``offline`` (:func:`wandb_mode_from_env`).
        resume: continue the run in ``run_dir``: keep metrics.jsonl (call :meth:`truncate_after` with the checkpoint's
            step) and the start time, and continue the same W&B run id. Otherwise metrics.jsonl starts empty.
        console: W&B captures the terminal output (``wrap``) unless the environment's WANDB_CONSOLE says otherwise;
            off by default, since a progress bar redrawn in place would fill W&B's log (the trainer asks for it when
            it shows none: in sweeps, with ``--quiet``).
    """

    def __init__(
        self, run_dir: str | Path, cfg: Config, mode: str | None = None, resume: bool = False, console: bool = False
    ) -> None:
        mode = mode or cfg.tracking.wandb or wandb_mode_from_env()
        if mode not in WANDB_MODES:
            raise ValueError(f"W&B mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.mode = mode
        self.resume = resume
        self.console = console
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
        previous = read_summary(self.summary_path) if resume else None
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
    def reports_to_wandb(self) -> bool:
        """Whether this run logs to W&B (online or offline), not only to its local record."""
        return self._run is not None

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

    def adopt(self, record: Mapping[str, Any]) -> None:
        """Take over a finished run's record, copied into this run's folder from another one (a sweep reusing a
        cell another sweep finished, without that run's W&B folder): its status, metrics and fields stay this run's
        summary, and its whole history goes to this run's own W&B run, in this config's group."""
        self._check_open()
        self._status = str(record.get("status", self._status))
        self._metrics = dict(record.get("metrics") or {})
        self._extra = {key: value for key, value in record.items() if key not in SUMMARY_KEYS}
        self._resumes = int(record.get("resumes", 0))
        self._write_summary()
        if self._run is not None:
            self._replay_to_wandb(read_metrics(self.metrics_path))
            self._run.summary.update({**self._metrics, **self._extra})

    def use_checkpoint(self, path: str | Path) -> None:
        """Online, W&B's lineage graph shows the checkpoint this run started from as its input: a ``model`` artifact
        named as its producer logged it (``<the producing run's W&B id>-model`` for a run folder's checkpoint, the
        file's stem for a shipped one), so W&B links the two runs when the producer logged its artifacts. Offline W&B
        cannot use artifacts (it refuses); summary.json's ``init_from`` names the checkpoint either way."""
        self._check_open()
        path = Path(path)
        if self._run is None or self.mode != "online" or not path.is_file():
            return
        producer = read_summary(path.parent.parent / "summary.json") if path.parent.name == "checkpoints" else None
        producer_id = ((producer or {}).get("wandb") or {}).get("id")
        name = f"{producer_id}-model" if producer_id else re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem)
        try:
            artifact = import_wandb().Artifact(name, type="model", metadata={"path": str(path)})
            artifact.add_file(str(path), name=path.name)
            self._run.use_artifact(artifact)
        except Exception as exc:  # lineage is a view of the record, never a reason to stop the run
            warnings.warn(f"W&B: could not record {path} as this run's input ({type(exc).__name__}: {exc})",
                          stacklevel=2)  # fmt: skip

    def mark_best(self, metrics: Mapping[str, float], step: int) -> None:
        """The evaluation at ``step`` is the run's best (by validation MSE): W&B's summary gets each of its numbers
        under ``best/`` (``best/val/ssim``, ...) and ``best/step``, so every metric there comes from that one step.
        (``val/<metric>``'s own summary is that metric's best over all steps, which may be other steps.)"""
        self._check_open()
        if self._run is not None:
            best = {f"best/{key}": value for key, value in metrics.items() if isinstance(value, int | float)}
            self._run.summary.update({**best, "best/step": operator.index(step)})

    def log_frames(
        self, tag: str, target: Any, pred: Any, context: Any | None = None, step: int = 0
    ) -> tuple[Path, Path] | None:
        """Draw ``(N, T, C, H, W)`` target and predicted frames (values in [0, 1] or uint8; C is 1 or 3), after the
        ``(N, Tc, C, H, W)`` context, for the first ``cfg.tracking.frames`` sequences.

        Writes ``frames/<tag>_step<step>.png`` (:func:`core.pictures.frame_grid`), ``.gif``
        (:func:`core.pictures.frame_video`) and ``.npz`` (the uint8 arrays ``target``, ``pred`` and ``context``, read by
        :func:`core.records.read_frames`) and logs the first two to W&B as ``<tag>/frames`` and ``<tag>/video``.
        Returns the PNG and GIF paths, or None when ``tracking.frames`` is 0.
        """
        self._check_open()
        step = operator.index(step)
        keep = self.cfg.tracking.frames
        if keep == 0:
            return None
        target = as_frames(target, "target")[:keep]
        pred = as_frames(pred, "pred")[:keep]
        context = None if context is None else as_frames(context, "context")[:keep]
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

    def log_by_sequence(self, test_set: str, scores: Mapping[str, np.ndarray]) -> Path:
        """Write the final test's per-sequence scores (metric name -> ``(N,)`` values) as
        :data:`core.records.TEST_BY_SEQUENCE`, atomically; the local record only (W&B has the means)."""
        self._check_open()
        lengths = {len(values) for values in scores.values()}
        if len(lengths) != 1:
            raise ValueError(f"per-sequence scores of unequal lengths: { {k: len(v) for k, v in scores.items()} }")
        record = {"test_set": test_set, "num_sequences": lengths.pop()}
        record |= {name: [float(v) for v in values] for name, values in scores.items()}
        path = self.run_dir / TEST_BY_SEQUENCE
        with atomic_write(path, "w") as handle:
            json.dump(record, handle)
        return path

    def log_artifacts(self, checkpoints: list[Path], frames: list[Path]) -> list[str]:
        """With ``tracking.artifacts`` on and W&B recording: the checkpoints as a ``model`` artifact and the test
        frames (PNG, GIF, raw npz) as a ``predictions`` artifact, each named after the W&B run id and aliased
        ``final``. Missing files are left out. Returns the names logged (none when off)."""
        self._check_open()
        if self._run is None or not self.cfg.tracking.artifacts:
            return []
        wandb = import_wandb()
        logged = []
        for kind, files in (("model", checkpoints), ("predictions", frames)):
            files = [Path(file) for file in files if Path(file).is_file()]
            if not files:
                continue
            artifact = wandb.Artifact(f"{self.wandb_id}-{kind}", type=kind, metadata={"config_hash": self._hash})
            for file in files:
                artifact.add_file(str(file), name=file.name)
            self._run.log_artifact(artifact, aliases=["final"])
            logged.append(artifact.name)
        return logged

    def summary(self, status: str, metrics: Mapping[str, Any] | None = None, **extra: Any) -> None:
        """Set the status and merge in final ``metrics`` and ``extra`` fields; rewrites summary.json, updates W&B's."""
        self._check_open()
        _check_status(status)
        clash = [key for key in extra if key in SUMMARY_KEYS]
        if clash:
            raise ValueError(f"summary fields {clash} are summary.json's own; pass metrics through metrics=")
        new_metrics = _json_data(dict(metrics or {}), "metrics")
        new_extra = _json_data(extra, "summary")
        self._status = status
        self._metrics.update(new_metrics)
        self._extra.update(new_extra)
        self._write_summary()
        if self._run is not None:
            self._run.summary.update({**new_metrics, **new_extra, "status": status})

    def truncate_after(self, step: int) -> int:
        """Keep only the metrics.jsonl rows with ``row["step"] <= step`` (on resume from a checkpoint at ``step``, so
        the steps run again are not recorded twice), less any final test row (``test/...``), which a run killed
        after its test but before its summary wrote, and which the resumed run writes again; later rows' ``time``
        continues from the last kept row.

        Returns the number of rows dropped.
        """
        self._check_open()
        rows = read_metrics(self.metrics_path)
        kept = [row for row in rows
                if row.get("step", -1) <= step and not any(key.startswith("test/") for key in row)]  # fmt: skip
        self._rewrite_metrics(kept)
        if self._run is not None:
            self._replay_to_wandb(kept)
        return len(rows) - len(kept)

    def _replay_to_wandb(self, rows: list[dict]) -> None:
        """Log again to W&B the kept rows it lacks, so a resumed run's W&B history is as complete as metrics.jsonl.

        A process killed outright loses what W&B had not yet written of its history (offline, its whole log may be
        cut short), and W&B's resumed run starts at its own last step: ``run.step`` (0 offline, the server's next
        step online, which refuses lower steps). Frames are not logged again."""
        have = int(getattr(self._run, "step", 0) or 0)
        for row in rows:
            step = row.get("step")
            if isinstance(step, int) and step >= have:
                self._log_wandb({k: v for k, v in row.items() if k not in _RESERVED_METRICS}, step)

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
        # Under `wandb agent`, the run is the agent's: its WANDB_RUN_ID is the run the sweep's controller waits for.
        agent_run = os.environ.get("WANDB_RUN_ID") if under_wandb_agent() else None
        self.wandb_id = agent_run or wandb_run_id(self.run_dir.name, self.cfg)
        tracking = self.cfg.tracking
        self._run = wandb.init(
            project=tracking.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            group=tracking.group,
            tags=list(tracking.tags),
            name=self.run_dir.name,
            id=self.wandb_id,
            dir=str(self.run_dir),  # WANDB_DIR is read once per process; dir= is honoured at every init
            config={**to_dict(self.cfg), **self._axes, "config_hash": self._hash},
            resume="allow" if self.resume else None,
            reinit="create_new",  # several runs in one process (a search) must not hand back an earlier run
            job_type=job_type(self.cfg),
            # The user's WANDB_CONSOLE wins; else capture unless a progress bar would fill the log with its redraws.
            settings=None if "WANDB_CONSOLE" in os.environ else wandb.Settings(console="wrap" * self.console or "off"),
        )
        # W&B's run and sweep tables rank by the summary: the best validation value, as our ledger does, not the last.
        for name in ("mse", "mae", "psnr", "ssim"):
            self._run.define_metric(f"val/{name}", summary="min" if name in ("mse", "mae") else "max")
        # Under `wandb agent`, the sweep's parameters overwrite the config's keys of the same name: `variant` becomes
        # the variant's file path (and dotted keys such as `model.residual` join the nested ones, which W&B's sweep
        # controller needs to tell its cells apart, so they stay). The summary is ours alone: the name goes there too.
        self._run.summary["variant"] = self.cfg.variant
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
    project: str | None,
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
    project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT  # the user's setting wins
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


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """Config, history and summary of a W&B run from its transaction logs, without a server: see
    :func:`core.wandb_log.read_run_logs`, which this gives W&B's protobufs."""
    return read_run_logs(path, _record_proto)


def _record_proto() -> Any:
    """W&B's protobuf module, whose ``Record`` is one entry of a transaction log."""
    from wandb.proto import wandb_internal_pb2 as pb

    return pb


def _wait_for_exit_record(path: Path | None, timeout_s: float) -> bool:
    """Poll W&B's transaction log until it holds its exit record (True) or ``timeout_s`` passes (False)."""
    if path is None:
        return False
    pb = _record_proto()

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


def _wandb_for(mode: str) -> Any:
    """wandb, imported with the environment a run needs, set before ``wandb.init``.

    Environment, not init arguments: only WANDB_MODE set before init avoids the telemetry lookup that stalls exit
    without network, and error reporting would be a network call of its own."""
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_ERROR_REPORTING"] = "false"
    os.environ.setdefault("WANDB_SILENT", "true")
    return import_wandb()


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise RuntimeError("W&B tracking needs the wandb package; install it or set tracking.wandb=disabled") from exc
    return wandb


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")


def _metric_value(value: Any, key: str) -> Any:
    """A logged value as JSON data: a number, a string, None, or a flat list of numbers (a per-frame curve)."""
    plain = _json_data(value, key)
    if isinstance(plain, dict) or (isinstance(plain, list) and any(isinstance(v, list | dict | str) for v in plain)):
        raise TypeError(f"metric {key!r} must be a number, a string or a list of numbers, got {type(value).__name__}")
    return plain


def _json_data(value: Any, key: str) -> Any:
    """Numpy and torch values as plain Python (JSON) data; anything else unrecordable is a TypeError naming the key."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _json_data(v, f"{key}.{k}") for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and torch tensors
        return _json_data(value.tolist(), key)
    if isinstance(value, list | tuple):
        return [_json_data(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{key}: cannot record a value of type {type(value).__name__}")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
