"""Running a sweep's workers as SLURM jobs (``launch.py sweep FILE --launcher slurm``), through submitit.

Each worker is one SLURM job running :func:`ablations.runner.work` over the shared ledger; the submitting command
prepares the ledger, submits the jobs, shows the sweep's progress from the ledger until every job has ended, and
returns the ledger's summary. A job SLURM kills outright leaves its cell to the ledger's heartbeat-and-retry path. A job
told to stop (``scancel``, its time limit's warning signal, a preemption) hands its cell back to the queue at once, and
submitit requeues it: the requeued job claims cells again, and a cell's run resumes from its last checkpoint.

The job settings (:data:`SETTINGS`) come from the sweep file, as constant parameters ``slurm.<name>`` (W&B's schema has
no other place for them), and from ``--slurm NAME=VALUE`` on the command line, which wins. submitit is imported only
when jobs are submitted; importing this module imports neither submitit, Optuna nor torch.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ablations.ledger import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    MAX_RETRY,
    Ledger,
    Summary,
    default_storage,
    format_start,
    prepare,
    summarize,
)
from ablations.sweep_file import Sweep, SweepError

REPO_ROOT = Path(__file__).resolve().parents[1]
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
# submitit requeues a job that reaches its time limit at most this many times. Every requeue makes progress (a cell
# resumes from its checkpoint), so the bound only stops a worker that times out forever; submitit's default, 3, would
# end a long sweep's workers after four time limits.
MAX_TIMEOUTS = 100
SIGNAL_DELAY_S = 90  # submitit's warning signal comes this long before the time limit: time to hand a cell back
QUEUE_POLL_S = 5.0  # how often the submitting command asks squeue whether the jobs still live
# squeue's states of a job that is over for good; any other state (PENDING, RUNNING, REQUEUED, ...) is still alive.
FINAL_STATES = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "TIMEOUT", "SPECIAL_EXIT")  # fmt: skip


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
        _setting(name.removeprefix(PREFIX), value, from_file=True)
    except ValueError as exc:
        return str(exc)
    return None


def _setting(name: str, value: Any, from_file: bool) -> Any:
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


def slurm_settings(sweep: Sweep, pairs: Iterable[str] = ()) -> SlurmSettings:
    """The jobs' settings: the sweep file's ``slurm.*`` constants (checked when it loaded), then each command-line
    ``NAME=VALUE`` over them. Errors name the flag and the value."""
    settings = SlurmSettings()
    for parameter in sweep.parameters:
        if parameter.name.startswith(PREFIX):
            name = parameter.name.removeprefix(PREFIX)
            try:
                value = _setting(name, parameter.values[0], from_file=True)
            except ValueError as exc:  # load_sweep checked it already; a Sweep built by hand may not be
                raise SweepError(f"{sweep.path}: parameters.{parameter.name}: {exc}") from exc
            settings = replace(settings, **{name: value})
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals:
            raise SweepError(f"--slurm {pair!r}: expected NAME=VALUE, e.g. --slurm partition=gpu")
        try:
            settings = replace(settings, **{name.strip(): _setting(name.strip(), text.strip(), from_file=False)})
        except ValueError as exc:
            raise SweepError(f"--slurm {pair!r}: {exc}") from exc
    return settings


def executor_parameters(settings: SlurmSettings, sweep: Sweep) -> dict[str, Any]:
    """submitit's ``SlurmExecutor.update_parameters`` for every worker's job."""
    parameters: dict[str, Any] = {
        "job_name": f"sweep-{sweep.name}",
        "time": settings.time,
        "cpus_per_task": settings.cpus_per_job,
        "signal_delay_s": SIGNAL_DELAY_S,
        # The job imports this repository's modules (and the objective by name) whatever the submitting directory.
        "setup": [f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"],
    }
    if settings.gpus_per_job:
        # One task per job, so per node is per job; SLURM sets CUDA_VISIBLE_DEVICES, and the worker sees its own GPUs.
        parameters["gpus_per_node"] = settings.gpus_per_job
    for name in ("partition", "account"):
        if getattr(settings, name) is not None:
            parameters[name] = getattr(settings, name)
    return parameters


# ---------------------------------------------------------------------------------------------------------------------
# Where the ledger may live


def storage_problem(url: str, nodes: set[str], host: str) -> str | None:
    """Why jobs on ``nodes`` cannot share the ledger at ``url``; None when they can.

    PostgreSQL (any server every node reaches) always works. An SQLite ledger only when the jobs can land on this
    machine alone: SQLite's and our claim lock's file locks do not hold across machines (over NFS neither), and this
    command reads and writes the ledger too."""
    if not url.startswith("sqlite"):
        return None
    short = {host, host.split(".")[0]}
    if nodes and all(node in short or node.split(".")[0] in short for node in nodes):
        return None
    where = f"the jobs' partition has {len(nodes)} nodes ({', '.join(sorted(nodes)[:4])}{', ...' * (len(nodes) > 4)})"
    if len(nodes) == 1:
        where = f"the jobs run on {next(iter(nodes))}, not on this machine ({host})"
    if not nodes:
        where = "sinfo lists no node for the jobs' partition"
    return (f"an SQLite ledger ({url}) works only when every job runs on this machine, and {where}: SQLite's file "
            "locks do not hold across machines. Give --storage postgresql://user@host:5432/db, a server every node "
            "reaches")  # fmt: skip


def partition_nodes(partition: str | None) -> set[str]:
    """The names and hostnames of the nodes a job of ``partition`` (None: the default partition) may run on."""
    listing = _slurm_command(["sinfo", "--noheader", "--Node", "--format=%N|%n|%P"])
    wanted = set(partition.split(",")) if partition else None
    nodes = set()
    for line in listing.splitlines():
        name, hostname, part = line.strip().split("|")
        if (part.rstrip("*") in wanted) if wanted else part.endswith("*"):
            nodes.add(hostname if hostname and hostname != "(null)" else name)
    return nodes


def _slurm_command(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        raise SweepError(f"--launcher slurm needs SLURM's {command[0]} on PATH (run it where you submit jobs: a "
                         "cluster's login node)")  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SweepError(f"{' '.join(command)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout


# ---------------------------------------------------------------------------------------------------------------------
# The job


class SlurmWorker:
    """A job's body: one sweep worker over the shared ledger (:func:`ablations.runner.work`).

    Checkpointable in submitit's sense (it has :meth:`checkpoint`): at its time limit's warning signal, or at a
    preemption that sends it, submitit pickles ``checkpoint``'s resubmission and requeues the job. The worker's state is
    the ledger, so the resubmission is the same worker; before the job exits, its cell goes back to the queue at once
    (instead of waiting out the heartbeat's grace period), and any worker resumes it from its run's last checkpoint."""

    def __call__(self, sweep: Sweep, ledger: Ledger, objective: Callable, worker: int, threads: int) -> int:
        from ablations.runner import work

        _hand_back_before_requeue()
        print(f"worker {worker}: SLURM job {os.environ.get('SLURM_JOB_ID', '?')} on {socket.gethostname()}, "
              f"restart {os.environ.get('SLURM_RESTART_COUNT', '0')}", flush=True)  # fmt: skip
        try:
            return work(sweep, ledger, objective, worker, threads)
        except KeyboardInterrupt:  # stopped between cells: nothing of ours is running
            print(f"worker {worker}: stopped", flush=True)
            return 0

    def checkpoint(self, *args: Any, **kwargs: Any):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _hand_back_before_requeue() -> None:
    """Wrap submitit's requeue signal handler (installed before the job's function runs): after it has requeued the
    job (or decided not to), raise KeyboardInterrupt, so the worker hands its running cell back to the ledger as
    SIGTERM makes it do, rather than exiting mid-cell and leaving the cell to go stale."""
    sig = getattr(signal, f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2')}", signal.SIGUSR2)
    requeue = signal.getsignal(sig)
    if not callable(requeue):
        return

    def handler(signum, frame):
        try:
            requeue(signum, frame)  # submitit: checkpoint, `scontrol requeue`, then sys.exit
        except BaseException as exc:  # its SystemExit, or why it did not requeue: the hand-back comes first
            print(f"SLURM signal {signum}: {type(exc).__name__} {exc}".rstrip(), flush=True)
        raise KeyboardInterrupt(f"signal {signum} (requeued by SLURM)")

    signal.signal(sig, handler)


# ---------------------------------------------------------------------------------------------------------------------
# Submitting and waiting


def run_slurm_sweep(
    sweep: Sweep,
    workers: int,
    storage: str | None = None,
    settings: SlurmSettings | None = None,
    objective: Callable | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
    max_retry: int = MAX_RETRY,
    poll_s: float = 1.0,
    queue_poll_s: float = QUEUE_POLL_S,
) -> Summary:
    """Run (or resume) a sweep with ``workers`` SLURM jobs over its ledger, wait for them and return the summary.

    Ctrl-C (or SIGTERM) here cancels the jobs: each hands its cell back, and the same command resumes the sweep."""
    from ablations.progress import SweepProgress
    from ablations.runner import run_stage1, train_cell

    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    settings = settings or SlurmSettings()
    run_stage1(sweep, lambda stage1: run_slurm_sweep(stage1, workers, storage, settings, objective, heartbeat_interval,
                                                     grace_period, max_retry, poll_s, queue_poll_s))  # fmt: skip
    url = storage or default_storage(sweep)
    problem = storage_problem(url, partition_nodes(settings.partition), socket.gethostname())
    if problem:
        raise SweepError(f"{sweep.path}: {problem}")
    ledger = Ledger(url, sweep.name, heartbeat_interval, grace_period, max_retry, poll_s)
    prepare(sweep, ledger)  # once, here: the jobs only load the study (concurrent first creation races)
    before = summarize(sweep, ledger)
    print(format_start(before, ledger, f"{workers} SLURM job{'s' * (workers > 1)}"), flush=True)
    if before.left == 0:
        return before
    import submitit

    folder = Path(sweep.folder).resolve() / "slurm"
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=MAX_TIMEOUTS)
    executor.update_parameters(**executor_parameters(settings, sweep))
    jobs = []
    try:
        for index in range(workers):
            jobs.append(executor.submit(SlurmWorker(), sweep, ledger, objective or train_cell, index,
                                        settings.cpus_per_job))  # fmt: skip
        ids = [job.job_id for job in jobs]
        print(f"submitted SLURM jobs {', '.join(ids)} ({_describe(settings)}); their logs in {folder}", flush=True)
        progress = SweepProgress(sweep, ledger)
        states = _wait(ids, progress, poll_s, queue_poll_s)
        progress.close()
    except KeyboardInterrupt:
        if jobs:  # scancel sends SIGTERM: each worker hands its cell back to the queue
            subprocess.run(["scancel", *(job.job_id for job in jobs)], check=False, timeout=60)
            print(f"cancelled SLURM jobs {', '.join(job.job_id for job in jobs)}; the same command resumes the sweep",
                  file=sys.stderr, flush=True)  # fmt: skip
        raise
    for index, job in enumerate(jobs):
        state = states.get(job.job_id, "gone")
        if state != "COMPLETED":
            tail = "\n".join((job.stderr() or "").strip().splitlines()[-5:])
            print(f"SLURM job {job.job_id} (worker {index}) ended {state}; a cell it left running is retried after "
                  f"the grace period ({grace_period} s) when the sweep runs again"
                  + (f"; its stderr ends:\n{tail}" if tail else ""), flush=True)  # fmt: skip
    return summarize(sweep, ledger)


def _describe(settings: SlurmSettings) -> str:
    return ", ".join(f"{field.name} {getattr(settings, field.name)}" for field in fields(settings)
                     if getattr(settings, field.name) is not None)  # fmt: skip


def _wait(ids: list[str], progress, poll_s: float, queue_poll_s: float) -> dict[str, str]:
    """Show the sweep's progress until every job is over; returns each job's final state (squeue's, or ``gone`` for
    one squeue has forgotten). Asks squeue, not submitit: submitit reads job states with sacct, which needs SLURM's
    accounting database, and a cluster without one would leave a killed job running forever in submitit's eyes."""
    states: dict[str, str] = {}
    last_check, over = -float("inf"), 0
    while True:
        progress.poll()
        if time.monotonic() - last_check >= queue_poll_s:
            last_check = time.monotonic()
            states = _queue_states(ids, states)
            # Over on two looks in a row: a job being requeued passes through states of its own for a moment.
            over = over + 1 if all(state in FINAL_STATES or state == "gone" for state in states.values()) else 0
            if over == 2:
                return states
        time.sleep(poll_s)


def _queue_states(ids: list[str], previous: dict[str, str]) -> dict[str, str]:
    """Each job's state from squeue (all states, so a job just ended is seen as such); a job squeue no longer knows is
    ``gone``; on a failed call (the controller restarting) the previous states stand."""
    done = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T", f"--jobs={','.join(ids)}"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # every one of them purged from the controller's memory
            return dict.fromkeys(ids, "gone")
        return previous or dict.fromkeys(ids, "PENDING")
    seen = dict(line.strip().split("|", 1) for line in done.stdout.splitlines() if "|" in line)
    return {job_id: seen.get(job_id, "gone") for job_id in ids}
