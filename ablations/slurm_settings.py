"""The SLURM launcher's job settings (``slurm.<name>`` constants in a sweep file, ``--slurm NAME=VALUE`` on the
command line): what each is, and the check of a value, which ``load_sweep`` runs when it reads the file. Imports
nothing of ours, so the sweep file's reader and the launcher both use it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

PREFIX = "slurm."  # the sweep file's parameters for the launcher: slurm.partition, slurm.time, ...
# What each setting is, for --help and for errors naming the valid ones.
SETTINGS = {
    "partition": "the partition the jobs run in (sbatch --partition; default: the cluster's default partition)",
    "account": "the account the jobs are charged to (sbatch --account; default: yours)",
    "time": "each job's time limit, minutes or SLURM's [D-]HH:MM:SS (default 60); a job near its limit hands its "
    "cell back and is requeued",
    "gpus_per_job": "GPUs per job, that is per worker (sbatch --gpus-per-node; default 0)",
    "cpus_per_job": "CPUs per job, also the worker's torch thread cap (sbatch --cpus-per-task; default 1)",
}
DEFAULT_TIME_MIN = 60
LAUNCHER_PARAMETERS = tuple(f"{PREFIX}{name}" for name in SETTINGS)


@dataclass(frozen=True)
class SlurmSettings:
    """What every worker's job asks SLURM for."""

    partition: str | None = None
    account: str | None = None
    time: int = DEFAULT_TIME_MIN  # minutes
    gpus_per_job: int = 0
    cpus_per_job: int = 1


# ---------------------------------------------------------------------------------------------------------------------
# Settings: checked in the sweep file when it loads, and on the command line


def launcher_parameter_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the sweep file's ``slurm.<name>``; None when it can (used by ``load_sweep``)."""
    try:
        parse_setting(name.removeprefix(PREFIX), value, from_file=True)
    except ValueError as exc:
        return str(exc)
    return None


def parse_setting(name: str, value: Any, from_file: bool) -> Any:
    """The typed value of one setting; a ValueError says what is wrong with it."""
    if name not in SETTINGS:
        close = difflib.get_close_matches(name, SETTINGS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown SLURM setting {name!r}{hint}; valid: {', '.join(SETTINGS)}")
    if name in ("partition", "account"):
        # It reaches the job script (#SBATCH --partition=...): SLURM's names, or a comma-separated list of them.
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.,:+-]+", value):
            raise ValueError(f"{value!r} must be a {name} name: letters, digits and _ . , : + - only")
        return value
    if name == "time":
        if from_file and not isinstance(value, str):
            # YAML 1.1 reads an unquoted 4:00:00 as the number 14400 (base 60), which as minutes is ten days.
            raise ValueError(f"{value!r} must be quoted text, e.g. '4:00:00' or '240' (minutes): YAML reads an "
                             "unquoted 4:00:00 as the number 14400")  # fmt: skip
        return parse_time(str(value))
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    low = 0 if name == "gpus_per_job" else 1
    if number is None or number < low:
        raise ValueError(f"{value!r} must be a whole number of at least {low}")
    return number


def parse_time(text: str) -> int:
    """SLURM's time formats as whole minutes (seconds rounded up): ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``; a ValueError otherwise."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a SLURM time: minutes, or [D-]HH:MM:SS, e.g. 240 or 4:00:00 or 1-12:00:00")
    days, first, second, third = match.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + int(first) * 3600 + int(second or 0) * 60 + int(third or 0)
    elif third is not None:  # H:M:S
        seconds = int(first) * 3600 + int(second) * 60 + int(third)
    elif second is not None:  # M:S
        seconds = int(first) * 60 + int(second)
    else:  # M
        seconds = int(first) * 60
    if seconds <= 0:
        raise ValueError(f"{text!r}: a job's time limit must be positive")
    return -(-seconds // 60)
