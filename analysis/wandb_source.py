"""W&B runs -> the same DataFrame as :func:`analysis.collect.collect`, one row per run (columns: ``COLUMNS``).

Two sources feed one mapping (:func:`wandb_row`):

- :func:`collect_wandb`: a W&B project through the public API (``wandb.Api``), optionally one group (our sweeps set
  the W&B group to the sweep's name). Rows: ``run_dir`` = ``wandb:<entity>/<project>/<run id>``, ``url`` the run's
  page.
- :func:`collect_wandb_offline`: the transaction logs (``<run>/wandb/*/run-*.wandb``) that the tracker leaves in each
  run folder, read without a server (``core.tracking.read_offline_run``). Rows keep the local ``run_dir``, so they
  line up with ``collect()``'s rows of the same folders: that is how to check that what W&B holds equals the local
  record.

What the tracker sends W&B (``core.tracking.Tracker``), and how it maps back to summary.json's shape:

- config: ``{**to_dict(cfg), **axes, "config_hash": hash}``. The config's own top-level keys give the resolved
  config, the axis keys give ``axes``, ``config_hash`` and ``variant`` their fields.
- summary, flat: ``split/name`` keys (``test/mse``, ``test/mse_by_frame``, ``test/ssim_convention``...) become
  ``metrics``, except W&B's media and table entries (dicts with ``_type``); keys without a ``/`` (``status``,
  ``baselines``, ``test_set``, ``step``, ``best_val_mse``, ``reason``, ``error``) stay top-level fields; W&B's own
  ``_`` keys are left out, except ``_runtime`` (seconds: the row's ``run_time_s``), ``_timestamp`` (the last log:
  ``updated``) and ``_step`` (the last step, when the summary has no ``step``).
- history: rows with ``_step`` and the logged numbers; ``train/loss`` and ``val/mse`` become the loss and validation
  histories.
- status: the summary's ``status``; a run without one (not written by our tracker, or killed before its first
  summary) takes its W&B state (finished -> finished, crashed or failed -> failed, killed -> killed, running ->
  running), as does a run whose last recorded status is ``running`` but which W&B saw crash, fail or be killed.

Reading the API needs a W&B login and network; on these machines W&B runs offline (design.md section 8), so the API
path is tested with a stand-in built from real offline records, and the offline path with real runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.collect import AXES, COLUMNS, find_run_dirs, record_row
from core.config import Config, ConfigError, config_hash, from_dict, to_yaml
from core.io import atomic_write
from core.tracking import import_wandb, read_offline_run
from core.wandb_env import scrub_secrets
from core.wandb_log import offline_run_files

CONFIG_KEYS = tuple(field.name for field in dataclasses.fields(Config))
"""The resolved config's top-level keys; the tracker adds the axes and ``config_hash`` beside them in W&B's config."""

AXIS_KEYS = ("variant", *AXES)
"""What ``core.tracking.axes`` writes: summary.json's ``axes`` and extra keys of W&B's config."""

HISTORY_KEYS = ("train/loss", "val/mse")
"""History read back from W&B: the loss and validation curves of the row."""

STATE_STATUS = {
    "finished": "finished",
    "crashed": "failed",
    "failed": "failed",
    "killed": "killed",
    "preempted": "killed",
    "running": "running",
    "pending": "running",
    "preempting": "running",
}
"""W&B run state -> our status, for a run whose summary holds none."""

_ENDED_BADLY = ("failed", "killed")  # mapped states that overrule a recorded "running"


# ---------------------------------------------------------------------------------------------------------------------
# The mapping shared by both sources


def wandb_row(
    location: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    summary: Mapping[str, Any] | None,
    history: Iterable[Mapping[str, Any]],
    state: str | None = None,
    started: str | None = None,
) -> dict[str, Any]:
    """One W&B run as a row with the keys of ``COLUMNS`` (see :func:`analysis.collect.record_row`).

    Args:
        location: ``run_dir``, ``run_name`` and optionally ``url`` and ``config_path``.
        config: the run's W&B config (resolved config plus the axes and ``config_hash``), W&B's ``_wandb`` left out.
        summary: the run's flat W&B summary, as plain data.
        history: history rows, each with ``_step``; only :data:`HISTORY_KEYS` are read.
        state: the W&B run state (``finished``, ``crashed``...), used when the summary holds no status.
        started: when the run started (ISO 8601; naive times are UTC).
    """
    config = dict(config or {})
    flat = dict(summary or {})
    resolved = {key: config[key] for key in CONFIG_KEYS if key in config} or None
    record: dict[str, Any] = {
        key: value for key, value in flat.items() if "/" not in key and not key.startswith("_") and key != "status"
    }
    record["metrics"] = {
        key: value for key, value in flat.items() if "/" in key and not key.startswith("_") and not _is_media(value)
    }
    if "variant" in config:  # the summary's, when there: under `wandb agent` the config's is the file path
        record.setdefault("variant", config["variant"])
    axes = {key: config[key] for key in AXIS_KEYS if key in config} | (
        {"variant": record["variant"]} if "variant" in record else {}
    )
    if axes:
        record["axes"] = axes
    record["config_hash"] = config.get("config_hash")
    record["status"] = _status(flat.get("status"), state)
    record["started"] = _iso(started)
    record["updated"] = _iso(flat.get("_timestamp"))
    rows = [
        {"step": int(row["_step"]), **{key: row[key] for key in HISTORY_KEYS if key in row}}
        for row in history
        if _is_number(row.get("_step"))
    ]
    if _is_number(flat.get("_step")):
        rows.append({"step": int(flat["_step"])})  # the last step logged, whatever its keys
    row = record_row(location, resolved, record, rows)
    if _is_number(flat.get("_runtime")):
        row["run_time_s"] = float(flat["_runtime"])
    return row


def _status(recorded: Any, state: str | None) -> str | None:
    mapped = STATE_STATUS.get(str(state).lower(), str(state).lower()) if state else None
    if not isinstance(recorded, str) or not recorded:
        return mapped
    if recorded == "running" and mapped in _ENDED_BADLY:
        return mapped  # the process died without a word; W&B saw it end
    return recorded


def _is_media(value: Any) -> bool:
    return isinstance(value, Mapping) and "_type" in value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _iso(value: Any) -> str | None:
    """A time (unix seconds, or ISO 8601 with or without zone: naive means UTC) as summary.json writes it."""
    if _is_number(value):
        moment = dt.datetime.fromtimestamp(float(value), dt.UTC)
    elif isinstance(value, str) and value:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    else:
        return None
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def _dicts_and_lists(value: Any) -> Any:
    """W&B's summary objects (dict-like, nested, not dicts) as plain dicts and lists."""
    if isinstance(value, Mapping) or (hasattr(value, "keys") and hasattr(value, "__getitem__")):
        return {str(key): _dicts_and_lists(value[key]) for key in value.keys()}  # noqa: SIM118 (W&B's objects lack __iter__)
    if isinstance(value, list | tuple):
        return [_dicts_and_lists(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------------------------------
# A W&B project through the public API


def collect_wandb(
    project: str, group: str | None = None, *, api: Any = None, config_dir: str | Path | None = None
) -> pd.DataFrame:
    """One row per W&B run of ``project`` (``entity/project``, or ``project`` for the default entity), sorted by
    ``run_dir``; only the runs whose group is ``group`` when given (a sweep's name).

    Args:
        project: the W&B project path.
        group: keep only the runs of this W&B group.
        api: a ``wandb.Api`` (default: a new one, which needs a login and network).
        config_dir: write each run's resolved config to ``<config_dir>/<run name>.yaml`` (loadable with
            ``core.config.load``; a name met twice gets the run id appended), so the row's ``command`` trains it again.

    Raises:
        ValueError: a malformed project path, or no run matches (the message names the project and group).
        RuntimeError: W&B cannot be reached, the login is missing or refused, or the API fails; the message names the
            project and never holds a secret from the environment.
    """
    path = project.strip().strip("/")
    if not path or path.count("/") > 1 or any(not part for part in path.split("/")):
        raise ValueError(f"W&B project must be 'entity/project' or 'project', got {project!r}")
    where = f"W&B project {path!r}" + (f", group {group!r}" if group is not None else "")
    if api is None:
        wandb = import_wandb()
        try:
            api = wandb.Api()
        except Exception as error:
            raise RuntimeError(_failure(where, error)) from None
    try:
        runs = [
            _fetch(run)
            for run in api.runs(path, filters={"group": group} if group is not None else None, lazy=False)
            if group is None or getattr(run, "group", None) == group
        ]
    except Exception as error:
        raise RuntimeError(_failure(where, error)) from None
    if not runs:
        raise ValueError(f"{where}: no runs found (check the entity, the project name and the group)")
    written: set[str] = set()
    rows = []
    for run in runs:
        location = {
            "run_dir": f"wandb:{run['entity']}/{run['project']}/{run['id']}",
            "run_name": run["name"] or run["id"],
            "url": run["url"],
        }
        if config_dir is not None:
            location["config_path"] = _write_config(config_dir, run["name"] or run["id"], run, written)
        rows.append(wandb_row(location, run["config"], run["summary"], run["history"], run["state"], run["started"]))
    rows.sort(key=lambda row: row["run_dir"])
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _fetch(run: Any) -> dict[str, Any]:
    """Everything read from one API run, as plain data (every W&B call happens here, inside the caller's try)."""
    summary = getattr(run, "summary_metrics", None)  # plain JSON; run.summary nests dict-like objects
    if not isinstance(summary, Mapping):
        summary = run.summary
    history: list[dict] = []
    for key in HISTORY_KEYS:
        # scan_history returns only rows holding every requested key, and the loss and the validation MSE are not
        # always logged at the same steps: one scan per key. `_step` is asked for explicitly (0.31's scanner needs it).
        history += [dict(row) for row in run.scan_history(keys=["_step", key])]
    return {
        "entity": run.entity,
        "project": run.project,
        "id": run.id,
        "name": run.name,
        "url": run.url,
        "state": run.state,
        "started": getattr(run, "created_at", None),
        "config": {key: value for key, value in _dicts_and_lists(run.config).items() if not key.startswith("_")},
        "summary": _dicts_and_lists(summary),
        "history": history,
    }


def _write_config(folder: str | Path, name: str, run: Mapping[str, Any], written: set[str]) -> str | None:
    """Write the run's resolved config as YAML; None (with a warning) when W&B's config is not one of ours."""
    resolved = {key: run["config"][key] for key in CONFIG_KEYS if key in run["config"]}
    where = f"W&B run {run['entity']}/{run['project']}/{run['id']}"
    try:
        cfg = from_dict(resolved, where)
    except ConfigError as error:
        warnings.warn(f"{where}: its config is not a mentalsim config, not written ({error})", stacklevel=3)
        return None
    recorded = run["config"].get("config_hash")
    if recorded is not None and config_hash(cfg) != recorded:
        warnings.warn(
            f"{where}: its config hashes to {config_hash(cfg)} today, the run recorded {recorded} "
            "(the config's fields or defaults changed since)",
            stacklevel=3,
        )
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or run["id"]
    if stem in written:
        stem = f"{stem}-{re.sub(r'[^A-Za-z0-9_-]+', '_', run['id'])}"
    written.add(stem)
    target = Path(folder) / f"{stem}.yaml"
    with atomic_write(target, "w") as handle:
        handle.write(to_yaml(cfg))
    return str(target)


def _failure(where: str, error: Exception) -> str:
    """A readable message for a failed W&B call, secrets from the environment blanked out."""
    kind = type(error).__name__
    text = scrub_secrets(str(error)).strip() or "no message"
    if kind in ("UsageError", "AuthenticationError"):
        hint = "log in with `wandb login` or set WANDB_API_KEY; offline runs: collect_wandb_offline(runs folder)"
    elif kind == "CommError":
        hint = "W&B could not be reached (these machines have no network: use collect_wandb_offline)"
    else:
        hint = "the W&B API failed"
    return f"{where}: {hint} ({kind}: {text})"


# ---------------------------------------------------------------------------------------------------------------------
# Offline transaction logs in local run folders


def collect_wandb_offline(root: str | Path, config_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per run folder under ``root`` whose ``wandb/`` folder holds a transaction log, from that log alone.

    Rows keep the local ``run_dir`` (to line up with ``collect(root)``); ``url`` is None. A run folder without a log
    (W&B disabled) has no row; a log that cannot be read gives a row with status ``unreadable``. ``config_dir`` as for
    :func:`collect_wandb`.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no run folder under ``root`` has a W&B log.
    """
    rows = []
    written: set[str] = set()
    for run_dir in find_run_dirs(root):
        if not (run_dir / "wandb").is_dir() or not offline_run_files(run_dir / "wandb"):
            continue
        location = {"run_dir": str(run_dir), "run_name": run_dir.name}
        try:
            record = read_offline_run(run_dir / "wandb")
        except (OSError, ValueError) as error:  # core.io.DataError is a ValueError
            rows.append(record_row(location, None, None, [], error=f"{type(error).__name__}: {error}"))
            continue
        location["run_name"] = record["name"] or run_dir.name
        # A local log has no W&B state; its exit record says how the process ended (130: interrupted).
        code = record["exit_code"]
        state = "running" if code is None else "finished" if code == 0 else "killed" if code == 130 else "failed"
        if config_dir is not None:
            run = {"entity": "offline", "project": record["project"], "id": record["id"], "config": record["config"]}
            location["config_path"] = _write_config(config_dir, location["run_name"], run, written)
        started = record["parts"][0]["start_time"] if record["parts"] else None
        rows.append(wandb_row(location, record["config"], record["summary"], record["history"], state, started))
    if not rows:
        raise ValueError(f"{root}: no run folder holds a W&B log (runs with tracking.wandb=disabled write none)")
    return pd.DataFrame(rows, columns=list(COLUMNS))
