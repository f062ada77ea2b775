"""Running a sweep's workers as SLURM jobs (``launch.py sweep FILE --launcher slurm``), through submitit.

Each worker is one SLURM job running :func:`ablations.runner.work` over the shared ledger; the submitting command
prepares the ledger, submits the jobs, shows the sweep's progress from the ledger until every job has ended, and
returns the ledger's summary. A job SLURM kills outright leaves its cell to the ledger's heartbeat-and-retry path. A job
told to stop (``scancel``, its time limit's warning signal, a preemption) hands its cell back to the queue at once, and
submitit requeues it: the requeued job claims cells again, and a cell's run resumes from its last checkpoint.

The job settings (``ablations/slurm_settings.py``) come from the sweep file, as constant parameters ``slurm.<name>``
(W&B's schema has no other place for them), and from ``--slurm NAME=VALUE`` on the command line, which wins.
submitit is imported only when jobs are submitted; importing this module imports neither submitit, Optuna nor torch.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ablations.ledger import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, MAX_RETRY, Ledger
from ablations.runner import launch, train_cell, work
from ablations.slurm_settings import PREFIX, SlurmSettings, parse_setting
from ablations.summary import Summary
from ablations.sweep_file import Sweep, SweepError

REPO_ROOT = Path(__file__).resolve().parents[1]
# submitit requeues a job that reaches its time limit at most this many times. Every requeue makes progress (a cell
# resumes from its checkpoint), so the bound only stops a worker that times out forever; submitit's default, 3, would
# end a long sweep's workers after four time limits.
MAX_TIMEOUTS = 100
SIGNAL_DELAY_S = 90  # submitit's warning signal comes this long before the time limit: time to hand a cell back
QUEUE_POLL_S = 5.0  # how often the submitting command asks squeue whether the jobs still live
# squeue's states of a job that is over for good; any other state (PENDING, RUNNING, REQUEUED, ...) is still alive.
FINAL_STATES = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "TIMEOUT", "SPECIAL_EXIT")  # fmt: skip


def slurm_settings(sweep: Sweep, pairs: Iterable[str] = ()) -> SlurmSettings:
    """The jobs' settings: the sweep file's ``slurm.*`` constants (checked when it loaded), then each command-line
    ``NAME=VALUE`` over them. Errors name the flag and the value."""
    settings = SlurmSettings()
    for parameter in sweep.parameters:
        if parameter.name.startswith(PREFIX):
            name = parameter.name.removeprefix(PREFIX)
            try:
                value = parse_setting(name, parameter.values[0], from_file=True)
            except ValueError as exc:  # load_sweep checked it already; a Sweep built by hand may not be
                raise SweepError(f"{sweep.path}: parameters.{parameter.name}: {exc}") from exc
            settings = _with(settings, name, value)
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals:
            raise SweepError(f"--slurm {pair!r}: expected NAME=VALUE, e.g. --slurm partition=gpu")
        try:
            settings = _with(settings, name.strip(), parse_setting(name.strip(), text.strip(), from_file=False))
        except ValueError as exc:
            raise SweepError(f"--slurm {pair!r}: {exc}") from exc
    return settings


def _with(settings: SlurmSettings, name: str, value: Any) -> SlurmSettings:
    if name in {field.name for field in fields(SlurmSettings)} and name != "submitit":
        return replace(settings, **{name: value})
    return replace(settings, submitit=(*((k, v) for k, v in settings.submitit if k != name), (name, value)))


def executor_parameters(settings: SlurmSettings, sweep: Sweep) -> dict[str, Any]:
    """submitit's ``SlurmExecutor.update_parameters`` for every worker's job: ours, then submitit's own parameters as
    the sweep gave them (``setup`` lines run after ours)."""
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
    for name, value in settings.submitit:
        if name == "additional_parameters":
            parameters[name] = dict(value)
        elif name == "setup":
            parameters[name] = [*parameters["setup"], *value]
        else:
            parameters[name] = list(value) if isinstance(value, tuple) else value
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


class SlurmLauncher:
    """``workers`` SLURM jobs, each one worker (:class:`SlurmWorker`) over the shared ledger, submitted through
    submitit; waits by asking squeue (:func:`_wait`). Ctrl-C cancels the jobs: each hands its cell back."""

    def __init__(self, workers: int, settings: SlurmSettings | None = None, queue_poll_s: float = QUEUE_POLL_S) -> None:
        if workers < 1:
            raise SweepError(f"--workers must be at least 1, got {workers}")
        self.workers, self.settings, self.queue_poll_s = workers, settings or SlurmSettings(), queue_poll_s
        self.jobs: list = []
        self.states: dict[str, str] = {}
        self.poll_s, self.grace_period = 1.0, 0

    def describe(self) -> str:
        return f"{self.workers} SLURM job{'s' * (self.workers > 1)}"

    def check(self, sweep: Sweep, ledger: Ledger) -> None:
        problem = storage_problem(ledger.url, partition_nodes(self.settings.partition), socket.gethostname())
        if problem:
            raise SweepError(f"{sweep.path}: {problem}")

    def start(self, sweep: Sweep, ledger: Ledger, objective: Callable) -> None:
        import submitit

        self.poll_s, self.grace_period = ledger.poll_s, ledger.grace_period
        folder = Path(sweep.folder).resolve() / "slurm"
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=MAX_TIMEOUTS)
        executor.update_parameters(**executor_parameters(self.settings, sweep))
        self.jobs = []
        threads = self.settings.cpus_per_job
        for index in range(self.workers):
            self.jobs.append(executor.submit(SlurmWorker(), sweep, ledger, objective, index, threads))
        print(f"submitted SLURM jobs {', '.join(job.job_id for job in self.jobs)} ({_describe(self.settings)}); "
              f"their logs in {folder}", flush=True)  # fmt: skip

    def wait(self, progress) -> None:
        self.states = _wait([job.job_id for job in self.jobs], progress, self.poll_s, self.queue_poll_s)

    def stop(self) -> None:
        if self.jobs:  # scancel sends SIGTERM: each worker hands its cell back to the queue
            subprocess.run(["scancel", *(job.job_id for job in self.jobs)], check=False, timeout=60)
            print(f"cancelled SLURM jobs {', '.join(job.job_id for job in self.jobs)}; the same command resumes the "
                  "sweep", file=sys.stderr, flush=True)  # fmt: skip

    def report(self) -> None:
        for index, job in enumerate(self.jobs):
            state = self.states.get(job.job_id, "gone")
            if state != "COMPLETED":
                tail = "\n".join((job.stderr() or "").strip().splitlines()[-5:])
                print(f"SLURM job {job.job_id} (worker {index}) ended {state}; a cell it left running is retried after "
                      f"the grace period ({self.grace_period} s) when the sweep runs again"
                      + (f"; its stderr ends:\n{tail}" if tail else ""), flush=True)  # fmt: skip


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
    """Run (or resume) a sweep with ``workers`` SLURM jobs (:class:`SlurmLauncher`) over its ledger, wait for them and
    return the summary.

    Ctrl-C (or SIGTERM) here cancels the jobs: each hands its cell back, and the same command resumes the sweep."""
    return launch(sweep, SlurmLauncher(workers, settings, queue_poll_s), storage, objective or train_cell,
                  heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry,
                  poll_s=poll_s)  # fmt: skip


def _describe(settings: SlurmSettings) -> str:
    ours = [(field.name, getattr(settings, field.name)) for field in fields(settings) if field.name != "submitit"]
    return ", ".join(f"{name} {value}" for name, value in [*ours, *settings.submitit] if value is not None)


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
