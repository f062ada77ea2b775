"""Running a sweep: local worker processes claim cells from the ledger, train each, and record how it ended.

:func:`run_sweep` prepares the ledger and starts the workers; each :func:`work` claims a cell (a search: a trial) and
runs the objective on it, :func:`train_cell` for real cells: it trains the cell's run (``core.trainer.train``), whose
record is the run folder, and returns the metric. ``train_cell`` reports every evaluation, so a search's pruner may
stop the cell. A finished line per cell says where the sweep stands.

Importing this module imports neither torch nor Optuna: a spawned worker sets OMP_NUM_THREADS (:func:`work`) before
:func:`train_cell` imports the trainer.
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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ablations.ledger import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    MAX_RETRY,
    Ledger,
    Summary,
    _claim,
    _claim_trial,
    _exclusive,
    _Heartbeat,
    _optuna,
    _pruner,
    _requeue,
    _sampler,
    _storage,
    default_storage,
    format_start,
    hand_back_half_claimed,
    prepare,
    requeue_orphans,
    summarize,
    vouch_for_local_workers,
)
from ablations.progress import SweepProgress
from ablations.sweep_file import (
    SEARCH_METHODS,
    Cell,
    Sweep,
    SweepError,
    _check_stage1_finished,
    cell_config,
    load_sweep,
    stage1_file,
    stage1_unfinished,
)
from core.io import FolderBusy, atomic_write
from core.records import read_metrics


class CellFailed(Exception):
    """Raised by an objective when its cell did not produce the metric; recorded with ``status`` and ``reason``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status, self.reason = status, reason


# ---------------------------------------------------------------------------------------------------------------------
# Workers

Report = Callable[[int, float], bool]
"""``report(step, value)``: an intermediate value of the metric at a training step; returns True when the cell should
stop (a search's pruner says so; a grid's never does). The objective then raises ``CellFailed("pruned", ...)``."""
Objective = Callable[[Cell, str, Report], float]
"""Train (or fake) one cell, reporting at every evaluation, and return ``metric``'s value; raise :class:`CellFailed`
when there is none."""


def train_cell(cell: Cell, metric: str, report: Report | None = None) -> float:
    """The real objective: train the cell's run (resuming or skipping as the trainer does) and read its metric.

    At every evaluation it reports the validation value of the metric's kind (``val/mse`` and ``test/mse`` report
    the validation MSE, ``val/ssim`` and ``test/ssim`` the validation SSIM); a True answer stops the run as
    ``pruned``. A ``val/...`` metric's value is the run's best validation (lowest MSE and MAE, highest PSNR and SSIM,
    as W&B's summary keeps it), a ``test/...`` one the final test's."""
    from core.trainer import train

    score = metric.split("/", 1)[1]

    def on_eval(step: int, scores) -> bool:
        return report is not None and bool(report(step, float(getattr(scores, score))))

    _reuse_finished_run(cell, f"val/{score}", report)
    result = train(cell_config(cell), run_dir=cell.run_dir, on_eval=on_eval, progress=False)
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
    pruner learns from them as from a run it watched). W&B's files stay behind: that run is the other sweep's."""
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
        with atomic_write(copying / "summary.json", "w") as handle:
            json.dump({**record, "reused_from": str(other)}, handle, indent=2)
        os.replace(copying, run_dir)  # whole or not at all
        print(f"{cell.name}: the same config finished in {other}; reusing it", flush=True)
        if report is not None:
            for line in (run_dir / "metrics.jsonl").read_text().splitlines():
                row = json.loads(line)
                if isinstance(row.get(reported), int | float):
                    report(int(row["step"]), float(row[reported]))
        return


class LedgerUnreachable(SweepError):
    """The ledger's database stayed unreachable past ``ledger.outage_s``: the sweep stops, no cell is blamed."""


def patiently(call: Callable[[], Any], ledger: Ledger, what: str) -> Any:
    """``call()``, retried while the ledger's database is unreachable (a restart, a network cut): after 1, 2, 4, ...
    30 s, up to ``ledger.outage_s`` in all, saying so each time; then a LedgerUnreachable that says what is safe. A
    cell's training goes on meanwhile (its heartbeat thread rides out failed beats on its own)."""
    errors = _ledger_errors()
    waited, delay = 0.0, 1.0
    while True:
        try:
            return call()
        except errors as exc:
            if waited >= ledger.outage_s:
                raise LedgerUnreachable(f"{what}: the ledger ({_safe_url(ledger.url)}) has been unreachable for "
                                        f"{waited:.0f} s ({type(exc).__name__}); every finished cell's run folder is "
                                        "intact: run the same command again once it is back") from exc  # fmt: skip
            print(f"{what}: the ledger is unreachable ({type(exc).__name__}); trying again in {delay:.0f} s "
                  f"({waited:.0f} s so far, giving up after {ledger.outage_s:.0f} s)", flush=True)  # fmt: skip
            time.sleep(delay)
            waited += delay
            delay = min(2 * delay, 30.0)


def _ledger_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable database raises through Optuna: its own StorageInternalError, SQLAlchemy's errors."""
    import sqlalchemy.exc

    optuna = _optuna()
    return (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


def _safe_url(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


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

    While other cells still run it keeps polling, failing stale ones (whose retry comes back as WAITING), so a cell
    whose worker died is run again in the same sweep once its grace period has passed. ``threads`` caps torch's
    threads in this process (unless OMP_NUM_THREADS is set already); ``gpu`` (an index or UUID as CUDA names it) is
    the one GPU this process sees, as ``cuda``."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # recorded as interrupted, resumable
    if gpu is not None:
        # Before torch initialises CUDA: the process then sees this GPU alone, and every run in it records it.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        # Before torch is imported, so its thread pool is born this size. Measured on 2 cores: 2 workers with
        # torch's default 2 threads each trained 16x slower than one (spinning OpenMP threads fight for the cores).
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    optuna = _optuna()
    storage = _storage(ledger)
    search = sweep.method in SEARCH_METHODS
    # Samplers and pruners live in the process, not in the database: every worker builds its own.
    sampler, pruner = (_sampler(sweep, worker), _pruner(sweep)) if search else (None, optuna.pruners.NopPruner())
    study = optuna.load_study(study_name=ledger.study_name, storage=storage, sampler=sampler, pruner=pruner)
    study_id = storage.get_study_id_from_name(ledger.study_name)
    cells = {cell.id: cell for cell in sweep.cells}
    ran = 0
    claiming: list[int] = []  # a claim's trial until the claim is complete: an outage may cut it off midway

    def claim():
        with _exclusive(ledger), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # ask() warns that heartbeats are meant for optimize(); this loop is our optimize(), beating as it does.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            hand_back_half_claimed(study, storage, claiming)
            requeue_orphans(study, storage, study_id)
            vouch_for_local_workers(storage, study_id)
            optuna.storages.fail_stale_trials(study)
            if target_reached(storage, study_id, sweep):
                return None  # metric.target: the cells running finish, no new one starts
            if search:
                return _claim_trial(study, storage, study_id, sweep, claiming)
            return _claim(storage, study_id, cells, claiming)

    def others_running() -> bool:
        running = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return any(search or t.user_attrs.get("cell_id") in cells for t in running)

    while True:
        claimed = patiently(claim, ledger, f"worker {worker}: claiming a cell")
        if claimed is None:
            if not patiently(others_running, ledger, f"worker {worker}: looking for running cells"):
                return ran
            time.sleep(ledger.poll_s)
            continue
        trial_id, number, cell = claimed[:3]
        trial = claimed[3] if search else None
        try:
            _run_cell(study, storage, trial_id, number, cell, sweep, ledger, objective, worker, trial)
        except KeyboardInterrupt:
            print(f"worker {worker}: interrupted; {cell.name} goes back to the queue", flush=True)
            return ran
        ran += 1


def target_reached(storage, study_id: int, sweep: Sweep) -> bool:
    """Whether a finished cell of this sweep (a search: any trial) has reached the file's ``metric.target``."""
    if sweep.target is None:
        return False
    complete = storage.get_all_trials(study_id, deepcopy=False, states=(_optuna().trial.TrialState.COMPLETE,))
    ids = {cell.id for cell in sweep.cells}
    return any(sweep.reached(t.value) for t in complete if sweep.method in SEARCH_METHODS or t.user_attrs.get("cell_id")
               in ids)  # fmt: skip


def _run_cell(study, storage, trial_id, number, cell, sweep, ledger, objective, worker, trial=None) -> None:
    """Run one claimed cell and record its outcome. ``trial`` (a search's) reports to the pruner; a grid's reports
    are only recorded."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    start = time.perf_counter()
    value, status, reason = None, "finished", ""
    reported: list[int] = []

    def report(step: int, value: float) -> bool:
        # Through the outage policy, as every ledger write: the evaluation waits for the database rather than fail
        # the cell. Both writes are idempotent (the same value at the same step), so a retry after a lost reply is safe.
        reported.append(step)
        if trial is None:
            patiently(lambda: storage.set_trial_intermediate_value(trial_id, step, float(value)), ledger,
                      f"worker {worker}: recording {cell.name}'s validation at step {step}")  # fmt: skip
            return False
        patiently(lambda: trial.report(float(value), step), ledger,
                  f"worker {worker}: reporting {cell.name}'s validation at step {step} to the pruner")  # fmt: skip
        return patiently(trial.should_prune, ledger, f"worker {worker}: asking the pruner about {cell.name}")

    with _Heartbeat(storage, trial_id, ledger.heartbeat_interval) as heartbeat:
        try:
            value = float(objective(cell, sweep.metric, report))
        except CellFailed as exc:
            status, reason = exc.status, exc.reason
            if status == "pruned" and reported:
                reason = f"pruned at step {reported[-1]}"
        except KeyboardInterrupt:
            if heartbeat.lost:  # fenced: the cell is another worker's now; this one goes on with the next cell
                print(f"worker {worker}: {cell.name} was declared dead and handed on while it ran here (its "
                      "heartbeats came late); stopped it", flush=True)  # fmt: skip
                return
            # Interrupted, not broken: hand the cell back so the next run of the sweep picks it up at once. A second
            # signal (Ctrl-C and the parent's SIGTERM both arrive) must not cut the hand-back short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            heartbeat.stop()  # the hand-back ends the claim: no fencing interrupt for it
            patiently(lambda: _requeue(study, storage, trial_id, "interrupted"), ledger,
                      f"worker {worker}: handing {cell.name} back")  # fmt: skip
            raise
        except FolderBusy as exc:
            # A live process trains this cell's run folder: the worker whose late heartbeat lost it the claim. Hand
            # the cell back untouched; a later claim finds that run finished (and copies its result) or resumes it.
            heartbeat.stop()
            patiently(lambda: _requeue(study, storage, trial_id, "busy"), ledger,
                      f"worker {worker}: handing {cell.name} back")  # fmt: skip
            print(f"worker {worker}: {cell.name} is still trained by another process ({exc}); back to the queue",
                  flush=True)  # fmt: skip
            time.sleep(ledger.poll_s)
            return
        except LedgerUnreachable:  # past the outage limit: not the cell's fault, never its record
            raise
        except Exception as exc:  # a broken cell is recorded and the sweep goes on
            status, reason = "failed", f"{type(exc).__name__}: {exc}"

    def record() -> None:
        if status == "pruned" and reported:
            storage.set_trial_user_attr(trial_id, "step", reported[-1])
        storage.set_trial_user_attr(trial_id, "status", status)
        if reason:
            storage.set_trial_user_attr(trial_id, "reason", reason)
        if status == "finished":
            study.tell(number, value)
        else:
            study.tell(number, state=state.PRUNED if status == "pruned" else state.FAIL)

    try:
        patiently(record, ledger, f"worker {worker}: recording {cell.name}")
    except optuna.exceptions.UpdateFinishedTrialError:
        print(f"worker {worker}: {cell.name} was finished or declared dead by another process while it ran "
              "(a late heartbeat)", flush=True)  # fmt: skip
        return
    seconds = time.perf_counter() - start
    outcome = f"{sweep.metric} {value:.6g}" if status == "finished" else f"{status}: {reason}"
    print(f"{_progress(summarize(sweep, ledger))} {cell.name}: {outcome} ({seconds:.0f} s, worker {worker})",
          flush=True)  # fmt: skip


def _progress(summary: Summary) -> str:
    """The live line's head: ``[3/8 done, 2 running, 0 failed, 3 left; best so far <cell> <value>]``."""
    best = summary.best
    best_text = f"; best so far {best.cell.name} {best.value:.6g}" if best is not None else ""
    pruned = f"{summary.pruned} pruned, " if summary.sweep.method in SEARCH_METHODS else ""
    return (f"[{summary.done}/{summary.sweep.planned} done, {summary.count('running')} running, {pruned}"
            f"{summary.failed} failed, {summary.left} left{best_text}]")  # fmt: skip


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
    _check_stage1_finished(sweep, {c.cell.name: (c.status, c.reason) for c in summary.cells})
    print(f"{sweep.name}: stage 1 done; stage 2 starts", flush=True)


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
    """Run (or resume) a sweep with ``workers`` local processes over its ledger; returns the ledger's summary.

    Worker k computes on GPU ``gpus[k % len(gpus)]`` (default: every visible GPU, :func:`visible_gpus`), alone in its
    process; on a machine without GPUs nothing changes. ``objective`` must be importable by name (workers are spawned
    processes); tests pass a cheap fake."""
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    run_stage1(sweep, lambda stage1: run_sweep(stage1, workers, storage, objective, heartbeat_interval, grace_period,
                                               max_retry, poll_s, gpus))  # fmt: skip
    ledger = Ledger(storage or default_storage(sweep), sweep.name, heartbeat_interval, grace_period, max_retry, poll_s)
    prepare(sweep, ledger)
    before = summarize(sweep, ledger)
    print(format_start(before, ledger, f"{workers} worker{'s' * (workers > 1)}"), flush=True)
    if before.left == 0:
        return before  # every cell is done or failed: nothing to start workers for
    # spawn, not fork: a forked child would inherit the parent's open database connections and torch's threads.
    context = multiprocessing.get_context("spawn")
    threads = max(1, len(os.sched_getaffinity(0)) // workers)  # the cores this process may use, shared out
    gpus = visible_gpus() if gpus is None else gpus
    assigned = [gpus[index % len(gpus)] if gpus else None for index in range(workers)]
    if gpus:
        print(f"{sweep.name}: " + ", ".join(f"worker {k} on GPU {g}" for k, g in enumerate(assigned)), flush=True)
    processes = [context.Process(target=work, args=(sweep, ledger, objective, index, threads, assigned[index]),
                                 name=f"sweep-worker-{index}") for index in range(workers)]  # fmt: skip
    for process in processes:
        process.start()
    progress = SweepProgress(sweep, ledger)
    try:
        while any(process.is_alive() for process in processes):
            progress.poll()
            multiprocessing.connection.wait([process.sentinel for process in processes], timeout=poll_s)
        progress.close()
    except KeyboardInterrupt:
        # Ctrl-C reaches the workers too, a SIGTERM to this process does not: pass it on, so none claims another cell.
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()
        raise
    for process in processes:
        if process.exitcode != 0:
            print(f"{process.name} exited with code {process.exitcode}; its cell is retried after the grace "
                  f"period ({grace_period} s) when the sweep runs again", flush=True)  # fmt: skip
    after = summarize(sweep, ledger)
    reached = [c for c in after.cells if c.status == "done" and sweep.reached(c.value)]
    if reached:
        print(f"metric.target {sweep.target:g} reached by {reached[0].cell.name} ({reached[0].value:g}): no further "
              "cell starts", flush=True)  # fmt: skip
    return after
