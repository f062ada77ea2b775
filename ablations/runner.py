"""Running a sweep: workers claim cells from the ledger, train each, and record how it ended.

:func:`launch` is the one launch sequence, for every launcher: stage 1 first when a stage-2 sweep needs it, the ledger
prepared, the workers started (:class:`LocalLauncher`: processes on this machine; ``ablations.slurm.SlurmLauncher``:
SLURM jobs), the sweep's progress shown until they have ended, and the ledger's summary returned. Each worker runs
:func:`work`, a loop that reads as Optuna's objective loops do: claim a cell, train it with a heartbeat
(:func:`train_cell` for real cells: the cell's run, ``core.trainer.train``, whose record is the run folder), record
how it ended. ``train_cell`` reports every evaluation, so a search's pruner may stop the cell. A finished line per
cell says where the sweep stands.

Importing this module imports neither torch nor Optuna: a spawned worker sets OMP_NUM_THREADS (:func:`work`) before
:func:`train_cell` imports the trainer. Optuna stays behind the ledger (``ablations/ledger.py``).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ablations.ledger import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    MAX_RETRY,
    Claim,
    Ledger,
    LedgerSession,
    LedgerUnreachable,
    Outcome,
    default_storage,
    prepare,
    summarize,
)
from ablations.progress import LinesOverBar, SweepProgress
from ablations.summary import Summary, format_start, progress_line
from ablations.sweep_file import (
    Cell,
    Sweep,
    SweepError,
    check_stage1_finished,
    load_sweep,
    stage1_file,
    stage1_unfinished,
    stale_cell,
)
from core.io import FolderBusy, atomic_write
from core.records import read_metrics


class CellFailed(Exception):
    """Raised by an objective when its cell did not produce the metric; recorded with ``status`` and ``reason``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status, self.reason = status, reason


# ---------------------------------------------------------------------------------------------------------------------
# The objective

Report = Callable[[int, float], bool]
"""``report(step, value)``: an intermediate value of the metric at a training step; returns True when the cell should
stop (a search's pruner says so; a grid's never does). The objective then raises ``CellFailed("pruned", ...)``."""
Objective = Callable[[Cell, str, Report], float]
"""Train (or fake) one cell, reporting at every evaluation, and return ``metric``'s value; raise :class:`CellFailed`
when there is none."""


def train_cell(cell: Cell, metric: str, report: Report | None = None) -> float:
    """The real objective: train the cell's config (resolved when the sweep loaded) in its run folder, resuming or
    skipping as the trainer does, and read its metric. A cell whose files now resolve to another config is refused
    (:func:`ablations.sweep_file.stale_cell`): its folder is named by the old config's hash.

    At every evaluation it reports the validation value of the metric's kind (``val/mse`` and ``test/mse`` report
    the validation MSE, ``val/ssim`` and ``test/ssim`` the validation SSIM); a True answer stops the run as
    ``pruned``. A ``val/...`` metric's value is the run's best validation (lowest MSE and MAE, highest PSNR and SSIM,
    as W&B's summary keeps it), a ``test/...`` one the final test's."""
    from core.trainer import train

    score = metric.split("/", 1)[1]

    def on_eval(step: int, scores) -> bool:
        return report is not None and bool(report(step, float(getattr(scores, score))))

    stale = stale_cell(cell)
    if stale:
        raise CellFailed("failed", stale)
    _reuse_finished_run(cell, f"val/{score}", report)
    result = train(cell.config, run_dir=cell.run_dir, on_eval=on_eval, progress=False)
    if result.status != "finished":
        summary = Path(result.run_dir) / "summary.json"
        record = json.loads(summary.read_text()) if summary.is_file() else {}
        raise CellFailed(result.status, str(record.get("reason") or f"run {result.status} at step {result.step}"))
    if metric == "val/mse":
        if result.best_val_mse is None:
            raise CellFailed("failed", "the run finished without a validation")
        return float(result.best_val_mse)
    if metric.startswith("val/"):
        seen = [row[metric] for row in read_metrics(Path(result.run_dir) / "metrics.jsonl")
                if isinstance(row.get(metric), int | float)]  # fmt: skip
        if not seen:
            raise CellFailed("failed", f"the run finished without a {metric}")
        return float(min(seen) if score in ("mse", "mae") else max(seen))
    value = (result.test or {}).get(metric)
    if value is None:
        raise CellFailed("failed", f"the run's summary has no {metric}")
    return float(value)


def _reuse_finished_run(cell: Cell, reported: str, report: Report | None) -> None:
    """Copy a finished run of the same resolved config (the same id) from another sweep's folder into the cell's, so
    the trainer finds it finished instead of training it again, and replay its validations to ``report`` (a search's
    pruner learns from them as from a run it watched). W&B's files stay behind, that run is the other sweep's: the
    copy gets its own W&B run in this sweep's group, its history replayed (:meth:`core.tracking.Tracker.adopt`)."""
    run_dir = Path(cell.run_dir)
    if run_dir.exists():
        return
    for other in sorted(run_dir.parent.parent.glob(f"*/*-{cell.id}")):
        summary = other / "summary.json"
        record = json.loads(summary.read_text()) if other != run_dir and summary.is_file() else {}
        if record.get("status") != "finished" or record.get("config_hash") != cell.id:
            continue
        copying = run_dir.with_name(f".{run_dir.name}.copying")
        shutil.rmtree(copying, ignore_errors=True)
        shutil.copytree(other, copying, ignore=shutil.ignore_patterns("wandb"))
        record = {**record, "reused_from": str(other)}
        with atomic_write(copying / "summary.json", "w") as handle:
            json.dump(record, handle, indent=2)
        os.replace(copying, run_dir)  # whole or not at all
        from core.tracking import Tracker

        # Killed in here, the copy's summary says running: the trainer resumes it at its last step and tests it again.
        with Tracker(run_dir, cell.config, resume=True) as tracker:
            tracker.adopt(record)
        print(f"{cell.name}: the same config finished in {other}; reusing it", flush=True)
        if report is not None:
            for line in (run_dir / "metrics.jsonl").read_text().splitlines():
                row = json.loads(line)
                if isinstance(row.get(reported), int | float):
                    report(int(row["step"]), float(row[reported]))
        return


# ---------------------------------------------------------------------------------------------------------------------
# A worker


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM (a scheduler, or a sweep stopping its worker) into KeyboardInterrupt, so a run is recorded as
    interrupted and resumes from its last checkpoint next time."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def work(
    sweep: Sweep,
    ledger: Ledger,
    objective: Objective = train_cell,
    worker: int = 0,
    threads: int | None = None,
    gpu: str | None = None,
) -> int:
    """One worker: claim waiting cells (a search: waiting trials, else new ones up to run_cap) until none is waiting
    or running; returns how many cells it ran.

    While other cells still run it keeps polling (claiming fails stale cells, whose retry comes back as WAITING), so a
    cell whose worker died is run again in the same sweep once its grace period has passed. ``threads`` caps torch's
    threads in this process (unless OMP_NUM_THREADS is set already); ``gpu`` (an index or UUID as CUDA names it) is
    the one GPU this process sees, as ``cuda``."""
    interrupt_on_sigterm()  # recorded as interrupted, resumable
    if sys.stdout.isatty():  # the sweep's progress bar sits on the terminal's last line
        sys.stdout = LinesOverBar(sys.stdout)
    if gpu is not None:
        # Before torch initialises CUDA: the process then sees this GPU alone, and every run in it records it.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        # Before torch is imported, so its thread pool is born this size. Measured on 2 cores: 2 workers with
        # torch's default 2 threads each trained 16x slower than one (spinning OpenMP threads fight for the cores).
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    session = ledger.open(sweep, worker)
    ran = 0
    while True:
        claim = session.claim()
        if claim is None:
            if not session.others_running():
                return ran
            time.sleep(ledger.poll_s)
            continue
        try:
            _run_cell(session, claim, objective)
        except KeyboardInterrupt:
            print(f"worker {worker}: interrupted; {claim.cell.name} goes back to the queue", flush=True)
            return ran
        ran += 1


def _run_cell(session: LedgerSession, claim: Claim, objective: Objective) -> None:
    """Run one claimed cell with a heartbeat and record how it ended; hand it back when interrupted or when another
    process trains its run folder."""
    cell, worker, sweep = claim.cell, session.worker, session.sweep
    start = time.perf_counter()
    reported: list[int] = []

    def report(step: int, value: float) -> bool:
        reported.append(step)
        return session.report(claim, step, value)

    with session.beating(claim) as heartbeat:
        try:
            outcome = Outcome("finished", float(objective(cell, sweep.metric, report)))
        except CellFailed as exc:
            pruned_at = exc.status == "pruned" and reported
            outcome = Outcome(exc.status, None, f"pruned at step {reported[-1]}" if pruned_at else exc.reason,
                              reported[-1] if reported else None)  # fmt: skip
        except KeyboardInterrupt:
            if heartbeat.lost:
                # Fenced: the cell is another worker's now; this one goes on with the next cell.
                print(f"worker {worker}: {cell.name} was declared dead and handed on while it ran here (its "
                      "heartbeats came late); stopped it", flush=True)  # fmt: skip
                return
            # Interrupted, not broken: hand the cell back so the next run of the sweep picks it up at once. A second
            # signal (Ctrl-C and the parent's SIGTERM both arrive) must not cut the hand-back short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            heartbeat.stop()  # the hand-back ends the claim: no fencing interrupt for it
            session.requeue(claim, "interrupted")
            raise
        except FolderBusy as exc:
            # A live process trains this cell's run folder: the worker whose late heartbeat lost it the claim. Hand
            # the cell back untouched; a later claim finds that run finished (and copies its result) or resumes it.
            heartbeat.stop()
            session.requeue(claim, "busy")
            print(f"worker {worker}: {cell.name} is still trained by another process ({exc}); back to the queue",
                  flush=True)  # fmt: skip
            time.sleep(session.ledger.poll_s)
            return
        except LedgerUnreachable:  # past the outage limit: not the cell's fault, never its record
            raise
        except Exception as exc:  # a broken cell is recorded and the sweep goes on
            outcome = Outcome("failed", None, f"{type(exc).__name__}: {exc}")
    if not session.record(claim, outcome):
        print(f"worker {worker}: {cell.name} was finished or declared dead by another process while it ran "
              "(a late heartbeat)", flush=True)  # fmt: skip
        return
    seconds = time.perf_counter() - start
    shown = f"{sweep.metric} {outcome.value:.6g}" if outcome.status == "finished" else (
        f"{outcome.status}: {outcome.reason}")  # fmt: skip
    print(f"{progress_line(summarize(sweep, session.ledger))} {cell.name}: {shown} ({seconds:.0f} s, worker {worker})",
          flush=True)  # fmt: skip


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (its entries when set, else 0..n-1 for the
    n GPUs torch sees); empty on a machine without CUDA."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [entry.strip() for entry in listed.split(",") if entry.strip() and entry.strip() != "-1"]
    import torch  # counting GPUs does not initialise CUDA in this process, so forked or spawned workers are safe

    return [str(index) for index in range(torch.cuda.device_count())]


def parse_gpus(text: str) -> list[str]:
    """``--devices 0,1,2,3`` (indexes or GPU UUIDs, as CUDA_VISIBLE_DEVICES takes them) as a list; ``cpu`` for none."""
    if text.strip().lower() == "cpu":
        return []
    entries = [entry.strip() for entry in text.split(",")]
    bad = [entry for entry in entries if not re.fullmatch(r"\d+|(GPU|MIG)-[0-9A-Za-z/-]+", entry)]
    if bad or not entries:
        raise SweepError(f"--devices {text!r}: {bad[0] if bad else 'nothing'!r} is not a GPU index or UUID; write e.g. "
                         "--devices 0,1 (or --devices cpu for none)")  # fmt: skip
    if len(set(entries)) != len(entries):
        raise SweepError(f"--devices {text!r} names a GPU twice")
    return entries


def run_stage1(sweep: Sweep, run: Callable[[Sweep], Summary]) -> None:
    """A stage-2 sweep whose stage-1 cells have not all finished runs its stage-1 sweep first, through ``run`` (the
    same launcher, workers, storage and objective), so one command runs the whole staged sweep. A stage-1 cell it
    finetunes from that still has no best checkpoint then stops it before its ledger is made, saying how that cell
    ended in stage 1's ledger and why."""
    if stage1_file(sweep) is None or not stage1_unfinished(sweep):
        return
    stage1 = load_sweep(stage1_file(sweep))  # read again, checked: a stage file's cells are cached unchecked by a plan
    print(f"{sweep.name}: its stage 1 ({stage1.path}) has not finished; running it first", flush=True)
    summary = run(stage1)
    check_stage1_finished(sweep, {c.cell.name: (c.status, c.reason) for c in summary.cells})
    print(f"{sweep.name}: stage 1 done; stage 2 starts", flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# The launch sequence, for every launcher


class Launcher(Protocol):
    """Where a sweep's workers run: :class:`LocalLauncher` (processes here), ``ablations.slurm.SlurmLauncher`` (jobs).
    Each worker runs :func:`work` over the ledger."""

    def describe(self) -> str:
        """Who runs the sweep, for its first line: ``2 workers``, ``8 SLURM jobs``."""

    def check(self, sweep: Sweep, ledger: Ledger) -> None:
        """Refuse, before the ledger is made, what cannot work (a SweepError): an SQLite ledger across machines."""

    def start(self, sweep: Sweep, ledger: Ledger, objective: Objective) -> None:
        """Start every worker."""

    def wait(self, progress: SweepProgress) -> None:
        """Show the sweep's progress until every worker has ended."""

    def stop(self) -> None:
        """Stop the workers (Ctrl-C): each hands its cell back to the queue."""

    def report(self) -> None:
        """Say how each worker that did not end cleanly ended."""


def launch(sweep: Sweep, launcher: Launcher, storage: str | None = None, objective: Objective = train_cell,
           **ledger_options: Any) -> Summary:  # fmt: skip
    """Run (or resume) a sweep with ``launcher``'s workers over its ledger (``storage``, default the sweep folder's
    ``study.db``); returns the ledger's summary. ``ledger_options``: :class:`ablations.ledger.Ledger`'s timings
    (``heartbeat_interval``, ``grace_period``, ``max_retry``, ``poll_s``). Ctrl-C (or SIGTERM) stops the workers,
    each handing its cell back, and the same command resumes the sweep."""
    run_stage1(sweep, lambda stage1: launch(stage1, launcher, storage, objective, **ledger_options))
    ledger = Ledger(storage or default_storage(sweep), sweep.name, **ledger_options)
    launcher.check(sweep, ledger)
    prepare(sweep, ledger)  # once, here, before any worker: concurrent first creation races
    before = summarize(sweep, ledger)
    print(format_start(before, ledger.url, launcher.describe()), flush=True)
    if before.left == 0:
        return before  # every cell is done or failed: nothing to start workers for
    progress = SweepProgress(sweep, ledger)
    try:
        launcher.start(sweep, ledger, objective)
        launcher.wait(progress)
        progress.close()
    except KeyboardInterrupt:
        launcher.stop()
        raise
    launcher.report()
    after = summarize(sweep, ledger)
    reached = [c for c in after.cells if c.status == "done" and sweep.reached(c.value)]
    if reached:
        print(f"metric.target {sweep.target:g} reached by {reached[0].cell.name} ({reached[0].value:g}): no further "
              "cell starts", flush=True)  # fmt: skip
    return after


class LocalLauncher:
    """``workers`` processes on this machine, sharing its cores; worker k computes on GPU ``gpus[k % len(gpus)]``
    (default: every visible GPU, :func:`visible_gpus`), alone in its process."""

    def __init__(self, workers: int = 1, gpus: list[str] | None = None) -> None:
        if workers < 1:
            raise SweepError(f"--workers must be at least 1, got {workers}")
        self.workers, self.gpus = workers, gpus
        self.processes: list[multiprocessing.Process] = []
        self.poll_s, self.grace_period = 1.0, GRACE_PERIOD_S

    def describe(self) -> str:
        return f"{self.workers} worker{'s' * (self.workers > 1)}"

    def check(self, sweep: Sweep, ledger: Ledger) -> None:
        return None  # any ledger works on one machine

    def start(self, sweep: Sweep, ledger: Ledger, objective: Objective) -> None:
        self.poll_s, self.grace_period = ledger.poll_s, ledger.grace_period
        # spawn, not fork: a forked child would inherit the parent's open database connections and torch's threads.
        context = multiprocessing.get_context("spawn")
        threads = max(1, len(os.sched_getaffinity(0)) // self.workers)  # the cores this process may use, shared out
        gpus = visible_gpus() if self.gpus is None else self.gpus
        assigned = [gpus[index % len(gpus)] if gpus else None for index in range(self.workers)]
        if gpus:
            print(f"{sweep.name}: " + ", ".join(f"worker {k} on GPU {g}" for k, g in enumerate(assigned)), flush=True)
        self.processes = [context.Process(target=work, args=(sweep, ledger, objective, index, threads, assigned[index]),
                                          name=f"sweep-worker-{index}") for index in range(self.workers)]  # fmt: skip
        for process in self.processes:
            process.start()

    def wait(self, progress: SweepProgress) -> None:
        while any(process.is_alive() for process in self.processes):
            progress.poll()
            multiprocessing.connection.wait([process.sentinel for process in self.processes], timeout=self.poll_s)

    def stop(self) -> None:
        # Ctrl-C reaches the workers too, a SIGTERM to this process does not: pass it on, so none claims another cell.
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join()

    def report(self) -> None:
        for process in self.processes:
            if process.exitcode != 0:
                print(f"{process.name} exited with code {process.exitcode}; its cell is retried after the grace "
                      f"period ({self.grace_period} s) when the sweep runs again", flush=True)  # fmt: skip


def run_sweep(
    sweep: Sweep,
    workers: int = 1,
    storage: str | None = None,
    objective: Objective = train_cell,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
    max_retry: int = MAX_RETRY,
    poll_s: float = 1.0,
    gpus: list[str] | None = None,
) -> Summary:
    """Run (or resume) a sweep with ``workers`` local processes (:class:`LocalLauncher`) over its ledger; returns the
    ledger's summary. ``objective`` must be importable by name (workers are spawned processes); tests pass a cheap
    fake."""
    return launch(sweep, LocalLauncher(workers, gpus), storage, objective, heartbeat_interval=heartbeat_interval,
                  grace_period=grace_period, max_retry=max_retry, poll_s=poll_s)  # fmt: skip
