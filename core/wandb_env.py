"""W&B's conventions, without importing wandb: which mode and project a run gets from the environment (``wandb
agent``'s included), its job type, run id and exit code, and the environment's secrets kept out of records.

:mod:`core.tracking` (the one module that imports wandb) applies them to the runs it records.
"""

from __future__ import annotations

import hashlib
import os
import re

from core.config import Config, config_hash

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


def job_type(cfg: Config) -> str:
    """W&B's job type of a training run: ``train`` from scratch, ``finetune`` from a checkpoint, ``eval`` when a
    checkpoint is scored as it is (0 steps)."""
    if not cfg.train.init_from:
        return "train"
    return "eval" if cfg.train.steps == 0 else "finetune"


EXIT_CODES = {"finished": 0, "pruned": 0, "diverged": 1, "failed": 1, "killed": 130}
"""W&B exit code per final status: non-zero marks the run failed in the dashboard (130: interrupted, as shells say)."""


def wandb_run_id(run_name: str, cfg: Config) -> str:
    """A W&B run id that is the same whenever the same run folder holds the same config, so a resume continues it.

    W&B ids allow letters, digits, ``-`` and ``_``: the readable part is the folder name cleaned and cut to 40
    characters, and a digest of the exact name, the config hash and the W&B group (a sweep's name) keeps ids of
    different runs apart: two sweeps' folders of the same cell are two runs (one reused from the other).
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run_name).strip("-")[:40]
    group = f"\0{cfg.tracking.group}" if cfg.tracking.group else ""  # no group: the ids runs had before groups counted
    digest = hashlib.sha256(f"{run_name}\0{config_hash(cfg)}{group}".encode()).hexdigest()[:12]
    return f"{slug}-{digest}" if slug else digest


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def scrub_secrets(text: str) -> str:
    """``text`` with the values of secret-looking environment variables blanked out."""
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= 6:
            text = text.replace(value, "***")
    return text
