"""The SLURM launcher's job settings (``slurm.<name>`` constants in a sweep file, ``--slurm NAME=VALUE`` on the
command line): what each is, and the check of a value, which ``load_sweep`` runs when it reads the file. Imports
nothing of ours, so the sweep file's reader and the launcher both use it.

Ours (:data:`SETTINGS`) say what a sweep's worker needs. Every other parameter of submitit's SLURM executor passes
through as submitit names it (``mem``, ``qos``, ``constraint``, ``setup``, ``additional_parameters``, ...), checked
against submitit's own signature: the names it takes and the type each is annotated with. submitit is imported only
when such a setting is given.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

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
# submitit's parameters that the launcher sets itself, each with what to use instead.
RESERVED = {
    "job_name": "the jobs are named sweep-<sweep name>",
    "signal_delay_s": "the warning signal comes 90 s before the time limit, time for a worker to hand its cell back",
    "cpus_per_task": "use cpus_per_job (also the worker's torch thread cap)",
    "gpus_per_node": "use gpus_per_job",
    "num_gpus": "use gpus_per_job",
    "nodes": "a job is one worker; ask for more workers with --workers",
    "ntasks_per_node": "a job is one worker; ask for more workers with --workers",
    "map_count": "a job is one worker; ask for more workers with --workers",
    "command": "a job runs a sweep worker",
    "folder": "the jobs' logs go to <sweep folder>/slurm",
}


@dataclass(frozen=True)
class SlurmSettings:
    """What every worker's job asks SLURM for."""

    partition: str | None = None
    account: str | None = None
    time: int = DEFAULT_TIME_MIN  # minutes
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    submitit: tuple[tuple[str, Any], ...] = ()  # (name, value) of submitit's other parameters, passed through


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
    """The typed value of one setting, ours or submitit's; a ValueError says what is wrong with it."""
    if name not in SETTINGS:
        return _submitit_setting(name, value, from_file)
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
    return _whole(value, 0 if name == "gpus_per_job" else 1)


def _whole(value: Any, low: int) -> int:
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or number < low:
        raise ValueError(f"{value!r} must be a whole number of at least {low}")
    return number


@functools.cache
def submitit_parameters() -> dict[str, Any]:
    """submitit's SLURM parameters and their annotated types, from the signature of the function that writes the job
    script (what ``SlurmExecutor.update_parameters`` checks names against)."""
    from submitit.slurm import slurm

    hints = typing.get_type_hints(slurm._make_sbatch_string)
    return {name: hints.get(name, Any) for name in inspect.signature(slurm._make_sbatch_string).parameters}


def setting_names() -> list[str]:
    """Every setting a sweep may give: ours, then submitit's that the launcher does not set itself."""
    return [*SETTINGS, *(name for name in submitit_parameters() if name not in RESERVED and name not in SETTINGS)]


def _submitit_setting(name: str, value: Any, from_file: bool) -> Any:
    """One of submitit's parameters, of the type its signature names: text (one line: it reaches an #SBATCH line),
    a whole number, true/false, a list of lines (``setup``; one line on the command line) or a mapping
    (``additional_parameters``; YAML's ``{key: value}`` on the command line)."""
    if name in RESERVED:
        raise ValueError(f"the launcher sets submitit's {name!r} itself: {RESERVED[name]}")
    kinds = submitit_parameters()
    if name not in kinds:
        close = difflib.get_close_matches(name, setting_names(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown SLURM setting {name!r}{hint}; valid: ours ({', '.join(SETTINGS)}) and submitit's "
                         f"({', '.join(n for n in setting_names() if n not in SETTINGS)})")  # fmt: skip
    kind = kinds[name]
    accepted = set(typing.get_args(kind)) or {kind}
    origins = {typing.get_origin(a) or a for a in accepted}
    if not from_file and isinstance(value, str) and (dict in origins or bool in origins):
        try:
            value = yaml.safe_load(value)  # --slurm exclusive=true, --slurm additional_parameters={x: 1}
        except yaml.YAMLError as exc:
            raise ValueError(f"{value!r} is not YAML ({exc})") from exc
    if dict in origins and isinstance(value, dict):
        return tuple((str(k), _one_line(v)) for k, v in value.items())
    if bool in origins and isinstance(value, bool):
        return value
    if int in origins:
        return _whole(value, 0)
    if origins & {list, Iterable}:
        lines = [value] if isinstance(value, str) else value
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise ValueError(f"{value!r} must be a list of lines (one line on the command line)")
        return tuple(_one_line(line) for line in lines)
    if str in origins and isinstance(value, str | int | float) and not isinstance(value, bool):
        return _one_line(str(value))
    raise ValueError(f"{value!r} must be {_type_name(kind)}, as submitit's {name} is")


def _one_line(value: Any) -> Any:
    if isinstance(value, str) and any(char in value for char in "\n\r\0"):
        raise ValueError(f"{value!r} must be one line: it is written into the job script")
    return value


def _type_name(kind: Any) -> str:
    return re.sub(r"typing\.|<class '|'>", "", str(kind))


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
