"""W&B around the runs: which mode and project a run gets from the environment (``wandb agent``'s included), wandb
imported with that environment, a transaction log read back or waited on, and the report's own run.

:mod:`core.tracking` records training runs with it; :mod:`analysis` reads runs back and logs the report with it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.wandb_log import read_log_records, read_run_logs

WANDB_MODES = ("offline", "online", "disabled")
DEFAULT_PROJECT = "mentalsim"
_ENV_MODES = {"offline": "offline", "dryrun": "offline", "online": "online", "run": "online", "disabled": "disabled"}


FINISH_TIMEOUT_S = 10.0
"""How long :meth:`core.tracking.Tracker.finish` (and the report's run) waits for W&B's transaction log to receive its
exit record."""


def under_wandb_agent() -> bool:
    """Whether this process is a run that ``wandb agent`` started (it sets ``WANDB_SWEEP_ID``, and ``WANDB_RUN_ID``
    for the run the sweep's controller waits for)."""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def wandb_mode_from_env() -> str:
    """W&B's convention where the config does not say: the environment's ``WANDB_MODE`` (its ``dryrun`` and ``run``
    spellings too), else ``online`` under ``wandb agent`` (whose controller must hear of the run; the agent sets no
    WANDB_MODE), else ``offline``, which needs no account. An unknown value is an error naming it."""
    value = os.environ.get("WANDB_MODE", "").strip().lower()
    if not value:
        return "online" if under_wandb_agent() else "offline"
    if value not in _ENV_MODES:
        raise ValueError(f"WANDB_MODE={value!r} is not a W&B mode ({', '.join(_ENV_MODES)})")
    return _ENV_MODES[value]


def wandb_for(mode: str) -> Any:
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
    wandb = wandb_for(mode)
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
    wait_for_exit_record(log_file, FINISH_TIMEOUT_S)
    return log_file


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """Config, history and summary of a W&B run from its transaction logs, without a server: see
    :func:`core.wandb_log.read_run_logs`, which this gives W&B's protobufs."""
    return read_run_logs(path, record_proto)


def record_proto() -> Any:
    """W&B's protobuf module, whose ``Record`` is one entry of a transaction log."""
    from wandb.proto import wandb_internal_pb2 as pb

    return pb


def wait_for_exit_record(path: Path | None, timeout_s: float) -> bool:
    """Poll W&B's transaction log until it holds its exit record (True) or ``timeout_s`` passes (False)."""
    if path is None:
        return False
    pb = record_proto()

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
