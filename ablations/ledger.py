"""The ledger: an Optuna study that records which cell runs where and how it ended. With ``ablations/search_space.py``
(its sampling half) the only module that imports Optuna.

The study lives in ``<runs_dir>/<sweep name>/study.db`` by default, any RDB URL with ``--storage``. The parent creates
it once and enqueues every grid cell once (:func:`prepare`); workers then open it (:meth:`Ledger.open`, a
:class:`LedgerSession`) and claim WAITING trials one at a time under a lock, so no cell runs twice (Optuna's own
GridSampler runs cells twice under concurrent workers) and a grid samples nothing. A heartbeat marks each running cell
(:meth:`LedgerSession.beating`); a cell whose worker died goes stale after the grace period, is failed and re-enqueued
by ``RetryHeartbeatStaleTrialCallback``, and runs again, resuming from its run folder's checkpoint.

A search (``bayes``, ``random``) asks the study for new trials (TPE or random sampling) until ``run_cap`` trials exist,
each trial a cell with its own run folder; the pruner (median, or hyperband from ``early_terminate``) may stop it.
:func:`summarize` reads each cell's state back.

A trial's parameters are what the sweep compares (a grid's axes, a search's sampled values); its seed is never one of
them: a seed is a repeat of a cell, not a setting to rank, so Optuna's importances and optuna-dashboard's views must
not see it. Every trial records its cell's seed as the user attribute ``seed`` instead (a grid over ``train.seed`` too).

Every call a worker makes rides out an unreachable database (:func:`retry_through_outage`) up to ``Ledger.outage_s``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.heartbeat import Heartbeat
from ablations.parameters import CELL_METHODS, SEARCH_METHODS, SweepError
from ablations.search_space import (
    choice,
    grid_distributions,
    grid_params,
    optuna_module,
    pruner,
    sampler,
    suggest,
)
from ablations.summary import CellStatus, Summary
from ablations.sweep_file import Cell, Sweep, search_cell
from core.io import atomic_write
from core.records import SWEEP_CELLS

# Ledger defaults: a worker's heartbeat every 10 s; a cell silent for 30 s is declared dead and re-enqueued.
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30
MAX_RETRY = 3  # a cell that kills its worker this many times is left failed rather than retried forever
CELL_ATTRS = ("cell_id", "cell_name", "slot", "values", "seed")  # a trial's user attributes that its retry keeps


# ---------------------------------------------------------------------------------------------------------------------
# The study: its storage, creation, sampler and pruner


@dataclass(frozen=True)
class Ledger:
    """Where the study lives and how dead workers are noticed (short heartbeats in tests)."""

    url: str
    study_name: str
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S
    max_retry: int = MAX_RETRY
    poll_s: float = 1.0  # how often an idle worker looks for re-enqueued cells while others still run
    outage_s: float = 300.0  # how long a worker waits out an unreachable ledger, with backoff, before it gives up

    def open(self, sweep: Sweep, worker: int = 0) -> LedgerSession:
        """The study as worker ``worker`` uses it; prepared beforehand (:func:`prepare`)."""
        return LedgerSession(self, sweep, worker)


def default_storage(sweep: Sweep) -> str:
    return f"sqlite:///{(Path(sweep.folder) / 'study.db').resolve()}"


def _storage(ledger: Ledger):
    optuna = optuna_module()
    # SQLite: wait for the file lock rather than fail when several workers write at once.
    engine_kwargs = {"connect_args": {"timeout": 60}} if ledger.url.startswith("sqlite") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            ledger.url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=ledger.heartbeat_interval,
            grace_period=ledger.grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=ledger.max_retry),
        )


def prepare(sweep: Sweep, ledger: Ledger) -> None:
    """Create the study (once, here, before any worker: concurrent first creation races) and enqueue each cell once.

    Enqueueing skips a cell that already has a trial in any state, so re-running the sweep adds nothing for finished,
    failed or waiting cells, and only new cells of an edited file. Each cell's trial carries its axis values as
    categorical parameters (:func:`ablations.search_space.grid_params`), so Optuna's importances and
    optuna-dashboard see the grid, and its seed as the user attribute ``seed`` (never a parameter: see the module's
    docstring)."""
    optuna = optuna_module()
    Path(sweep.folder).mkdir(parents=True, exist_ok=True)
    if ledger.url.startswith("sqlite:///"):
        Path(ledger.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Under the lock too: a second `launch.py sweep` on the same SQLite ledger must not create or enqueue at once.
    with _exclusive(ledger):
        storage = _storage(ledger)
        study = optuna.create_study(
            study_name=ledger.study_name, storage=storage, direction=sweep.goal, load_if_exists=True
        )
        _describe(study, sweep)
        trials = study.get_trials(deepcopy=False)
        if sweep.first and not trials:
            study.enqueue_trial({name: choice(value) for name, value in sweep.first.items()})
        distributions = grid_distributions(sweep, trials)
        cells = {cell.id: cell for cell in sweep.cells}
        for trial in trials:
            cell = cells.get(trial.user_attrs.get("cell_id"))
            if cell is None or trial.state != optuna.trial.TrialState.WAITING:
                continue
            if not trial.params:
                # Enqueued before cells carried their parameters: a waiting one gets them now (a finished one cannot).
                params, cell_distributions = grid_params(cell, distributions)
                for name, value in params.items():
                    distribution = cell_distributions[name]
                    storage.set_trial_param(trial._trial_id, name, distribution.to_internal_repr(value), distribution)
            if "seed" not in trial.user_attrs:  # enqueued before trials recorded their seed
                storage.set_trial_user_attr(trial._trial_id, "seed", cell.seed)
        # Every trial of a cell (a retry too) records its id: a cell with a trial in any state is not enqueued again.
        enqueued = {trial.user_attrs.get("cell_id") for trial in trials}
        for cell in sweep.cells:
            if cell.id in enqueued:
                continue
            params, cell_distributions = grid_params(cell, distributions)
            study.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.WAITING,
                    params=params,
                    distributions=cell_distributions,
                    system_attrs={"fixed_params": _fixed_params(cell)},
                    user_attrs={"cell_id": cell.id, "cell_name": cell.name, "seed": cell.seed},
                )
            )
        if sweep.method in CELL_METHODS:  # what a report reads to tell current cells from stale ones
            listing = {"sweep": sweep.path, "cells": [{"id": c.id, "name": c.name, "run_dir": c.run_dir}
                                                      for c in sweep.cells]}  # fmt: skip
            with atomic_write(Path(sweep.folder) / SWEEP_CELLS, "w") as handle:
                json.dump(listing, handle, indent=1)


IMPORTANCES_NOTE = (
    "{trials} trials. Parameter importances (PED-ANOVA, fANOVA) fit how the finished trials' values vary with each "
    "parameter; over a few dozen trials, with seed noise between repeats, they mean little and can rank a setting "
    "that moves the metric far below one that does not. Read the axis effects with their intervals over seeds in "
    "`launch.py report` instead."
)
"""What the study's ``importances`` attribute tells a reader of optuna-dashboard's importance view."""


def _describe(study, sweep: Sweep) -> None:
    """Name the objective and record where the study comes from, for optuna-dashboard and anyone opening the ledger
    (rewritten by every run: an edited file may change its metric)."""
    optuna = optuna_module()
    attrs = {"sweep_file": sweep.path, "method": sweep.method, "metric": sweep.metric, "goal": sweep.goal,
             "importances": IMPORTANCES_NOTE.format(trials=sweep.planned)}  # fmt: skip
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # set_metric_names is experimental
        study.set_metric_names([sweep.metric])


def _fixed_params(cell: Cell) -> dict[str, Any]:
    # The cell's id as Optuna's record of what was enqueued (ledgers written before trials carried their parameters
    # hold only this); a retry copies it.
    return {"cell_id": cell.id}


# ---------------------------------------------------------------------------------------------------------------------
# Claiming cells under the ledger's lock, beating while they run, handing them back


@contextlib.contextmanager
def _exclusive(ledger: Ledger) -> Iterator[None]:
    """One process at a time creates and fills the ledger, fails stale cells and claims one, or adds a search's trial.

    Optuna's check-and-set of a trial's state reads, then writes; on PostgreSQL the read locks the row (SELECT ... FOR
    UPDATE), but SQLite has no row locks and pysqlite opens the transaction only at the write, so two workers can both
    see a cell WAITING and both claim it (measured: a cell ran twice in a 4-cell sweep with 2 workers), or both fail
    a stale cell and re-enqueue it twice. And on any database a search's count-then-ask (is there a slot left under
    run_cap?) is two statements. SQLite: a file lock beside the database (SQLite is one machine's anyway). PostgreSQL:
    a session advisory lock keyed by the study's name, which every machine sharing the ledger sees. Both are released
    when their holder's process dies."""
    if ledger.url.startswith("sqlite:///"):
        with open(ledger.url.removeprefix("sqlite:///") + ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also when the process is killed
            yield
    elif ledger.url.startswith(("postgresql", "postgres")):
        import sqlalchemy

        key = int.from_bytes(hashlib.sha256(ledger.study_name.encode()).digest()[:8], "big", signed=True)
        with _lock_engine(ledger.url).connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    else:
        yield


@functools.cache
def _lock_engine(url: str):
    """One connection pool per database for the advisory locks (their sessions must outlive a single statement)."""
    import sqlalchemy

    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def _claim(
    storage, study_id: int, cells: dict[str, Cell], claiming: list[int] | None = None
) -> tuple[int, int, Cell] | None:
    """Atomically move one waiting trial of this grid to RUNNING; None when there is none left. ``claiming`` holds
    the trial's id from its move to RUNNING on; the caller clears it once the claim is complete, its lock let go (see
    :func:`_hand_back_half_claimed`)."""
    claiming = [] if claiming is None else claiming
    optuna = optuna_module()
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        cell = cells.get(trial.user_attrs.get("cell_id"))
        if cell is None:
            continue  # a cell of an earlier version of the file
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        # Beat before claiming: a worker killed right after its claim still leaves a heartbeat that goes stale.
        storage.record_heartbeat(trial_id)
        try:
            claiming.append(trial_id)
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
                storage.set_trial_user_attr(trial_id, "worker", worker_tag())
                return trial_id, trial.number, cell  # still in claiming: the caller clears it once the lock is let go
            claiming.remove(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker claimed and finished it meanwhile
    return None


def _slot(trial) -> int:
    """The trial's place in a search's run_cap: its own number, or the number of the trial a retry replaces."""
    return int(trial.user_attrs.get("slot", trial.number))


def _claim_trial(study, storage, study_id: int, sweep: Sweep, claiming: list[int] | None = None
                 ) -> tuple[int, int, Cell, Any] | None:  # fmt: skip
    """A search's next trial, RUNNING: a waiting one (the first trial, a retry) or, while fewer than run_cap trials
    exist (retries share their original's slot), a new one the sampler fills; None when the cap is reached.
    ``claiming`` holds the trial's id from ask() on; the caller clears it once the claim is complete, its lock let go
    (see :func:`_hand_back_half_claimed`)."""
    claiming = [] if claiming is None else claiming
    optuna = optuna_module()
    state = optuna.trial.TrialState
    while True:
        # ask() pops a waiting trial first (the first trial, a retry: their slots are counted already), else creates
        # one. The caller holds the ledger's lock (_exclusive), so this count-then-ask is atomic: run_cap holds.
        waiting = storage.get_all_trials(study_id, deepcopy=False, states=(state.WAITING,))
        used = {_slot(t) for t in storage.get_all_trials(study_id, deepcopy=False)}
        if not waiting and len(used) >= (sweep.run_cap or 0):
            return None
        trial = study.ask()
        claiming.append(trial._trial_id)
        storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", worker_tag())
        slot = _slot(trial)
        trial.set_user_attr("slot", slot)
        try:
            values = suggest(trial, sweep)
            cell = search_cell(sweep, slot, values)
        except (SweepError, ValueError) as exc:  # a combination the config rejects: recorded, the search goes on
            storage.set_trial_user_attr(trial._trial_id, "status", "failed")
            storage.set_trial_user_attr(trial._trial_id, "reason", str(exc))
            study.tell(trial, state=state.FAIL)
            print(f"trial {trial.number} failed before it ran: {exc}", flush=True)
            claiming.remove(trial._trial_id)
            continue
        for key, value in (("cell_id", cell.id), ("cell_name", cell.name), ("values", values), ("seed", cell.seed)):
            trial.set_user_attr(key, value)
        return trial._trial_id, trial.number, cell, trial


def _hand_back_half_claimed(study, storage, claiming: list[int]) -> None:
    """Hand back the trials of this worker's claims that a ledger outage cut off midway (``claiming``, filled by
    :func:`_claim` and :func:`_claim_trial`): each one still RUNNING is requeued, since nobody runs it, and its
    worker, alive, would keep vouching for it."""
    optuna = optuna_module()
    for trial_id in list(claiming):
        trial = storage.get_trial(trial_id)
        if trial.state == optuna.trial.TrialState.RUNNING:
            _requeue_orphan(study, storage, trial)
        claiming.remove(trial_id)


def _requeue_orphans(study, storage, study_id: int) -> None:
    """Hand back every RUNNING trial that no worker signed: a claim cut off by a ledger outage after the trial was
    made or moved to RUNNING and before the claim's own writes (its heartbeat, its ``worker``). Nobody runs it and,
    without a heartbeat, it never goes stale: left alone, the sweep would wait for it forever. Called under the
    ledger's lock, where no other claim is half done."""
    optuna = optuna_module()
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if "worker" not in trial.user_attrs:
            _requeue_orphan(study, storage, trial)


def _requeue_orphan(study, storage, trial) -> None:
    """Requeue a RUNNING trial that nobody runs; a search's trial made before its sample keeps its slot (its number),
    so run_cap holds."""
    if "slot" not in trial.user_attrs and "cell_id" not in trial.user_attrs:
        storage.set_trial_user_attr(trial._trial_id, "slot", trial.number)
    _requeue(study, storage, trial._trial_id, "orphaned")


def worker_tag() -> str:
    """``host:pid`` of this process, recorded on every trial it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _beat_for_live_local_workers(storage, study_id: int) -> None:
    """Beat for every running trial whose worker is a live process on this machine, before stale trials are failed.

    Heartbeats are how a ledger shared by several machines tells a dead worker from a live one; but on a loaded
    machine a live worker's own beats can come later than the grace period (a thread starved of CPU, a long database
    lock), and its cell would be declared dead and run a second time beside it. On the worker's own machine liveness
    is a fact, not a guess: a cell is taken away only from a worker that is gone, or from one on another machine whose
    beats stopped."""
    optuna = optuna_module()
    host = socket.gethostname()
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        name, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if name == host and pid.isdigit() and _alive(int(pid)):
            storage.record_heartbeat(trial._trial_id)


def _requeue(study, storage, trial_id: int, reason: str) -> None:
    optuna = optuna_module()
    frozen = storage.get_trial(trial_id)
    storage.set_trial_user_attr(trial_id, "status", reason)
    storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=frozen.params,  # a search trial's sampled values: its retry runs the same cell
            distributions=frozen.distributions,
            system_attrs={"fixed_params": frozen.system_attrs.get("fixed_params", {})},
            user_attrs={k: v for k, v in frozen.user_attrs.items() if k in CELL_ATTRS},
        )
    )


# ---------------------------------------------------------------------------------------------------------------------
# A worker's side: claim a cell, beat while it runs, report its evaluations, record how it ended or hand it back


@dataclass(frozen=True)
class Claim:
    """A cell this worker holds: its trial's id and number; a search's live trial, whose pruner its reports reach."""

    cell: Cell
    trial_id: int
    number: int
    trial: Any = None


@dataclass(frozen=True)
class Outcome:
    """How a claimed cell ended: ``finished`` with its metric's value, or ``failed``, ``diverged`` or ``pruned``."""

    status: str
    value: float | None = None
    reason: str = ""
    step: int | None = None  # the step of its last report (a pruned cell's)


class LedgerSession:
    """The ledger as one worker uses it (:meth:`Ledger.open`): :meth:`claim`, ``with`` :meth:`beating`, :meth:`report`
    each evaluation, :meth:`record` the outcome, or :meth:`requeue` a cell handed back. Each call rides out an outage
    (:func:`retry_through_outage`), naming the worker and what it was doing."""

    def __init__(self, ledger: Ledger, sweep: Sweep, worker: int) -> None:
        optuna = optuna_module()
        self.ledger, self.sweep, self.worker = ledger, sweep, worker
        self.search = sweep.method in SEARCH_METHODS
        self._storage = _storage(ledger)
        # Samplers and pruners live in the process, not in the database: every worker builds its own.
        chosen = (sampler(sweep, worker), pruner(sweep)) if self.search else (None, optuna.pruners.NopPruner())
        self._study = optuna.load_study(study_name=ledger.study_name, storage=self._storage, sampler=chosen[0],
                                        pruner=chosen[1])  # fmt: skip
        self._study_id = self._storage.get_study_id_from_name(ledger.study_name)
        self._cells = {cell.id: cell for cell in sweep.cells}
        self._claiming: list[int] = []  # a claim's trial until the claim is complete: an outage may cut it off midway

    def _retrying(self, call: Callable[[], Any], what: str) -> Any:
        return retry_through_outage(call, self.ledger, f"worker {self.worker}: {what}")

    def claim(self) -> Claim | None:
        """The next cell, RUNNING and this worker's; None when none is waiting (a search: at run_cap), or once a
        finished cell has reached the metric's target."""
        return self._retrying(self._claim_once, "claiming a cell")

    def _claim_once(self) -> Claim | None:
        optuna = optuna_module()
        study, storage, study_id = self._study, self._storage, self._study_id
        with _exclusive(self.ledger), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # ask() warns that heartbeats are meant for optimize(); this loop is our optimize(), beating as it does.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            _hand_back_half_claimed(study, storage, self._claiming)
            _requeue_orphans(study, storage, study_id)
            _beat_for_live_local_workers(storage, study_id)
            optuna.storages.fail_stale_trials(study)
            if target_reached(storage, study_id, self.sweep):
                return None  # metric.target: the cells running finish, no new one starts
            if self.search:
                claimed = _claim_trial(study, storage, study_id, self.sweep, self._claiming)
                claim = None if claimed is None else Claim(claimed[2], claimed[0], claimed[1], claimed[3])
            else:
                claimed = _claim(storage, study_id, self._cells, self._claiming)
                claim = None if claimed is None else Claim(claimed[2], claimed[0], claimed[1])
        # Complete only now: an outage that fails the lock's release (measured: PostgreSQL restarted just then) makes
        # the retry hand this signed trial back, where it would otherwise stay RUNNING under a live worker that vouches
        # for it and never runs it, and the sweep would wait for it forever.
        self._claiming.clear()
        return claim

    def others_running(self) -> bool:
        """Whether a cell of this sweep still runs elsewhere (it may die and come back to the queue)."""

        def look() -> bool:
            running = optuna_module().trial.TrialState.RUNNING
            trials = self._storage.get_all_trials(self._study_id, deepcopy=False, states=(running,))
            return any(self.search or t.user_attrs.get("cell_id") in self._cells for t in trials)

        return self._retrying(look, "looking for running cells")

    def beating(self, claim: Claim) -> Heartbeat:
        """``with session.beating(claim):`` the cell runs with a heartbeat, fenced: a claim lost meanwhile (declared
        dead after late beats and handed on) stops it (:class:`ablations.heartbeat.Heartbeat`)."""
        running = optuna_module().trial.TrialState.RUNNING

        def beat() -> bool:
            self._storage.record_heartbeat(claim.trial_id)
            return self._storage.get_trial(claim.trial_id).state == running

        return Heartbeat(beat, self.ledger.heartbeat_interval, f"trial {claim.trial_id}")

    def report(self, claim: Claim, step: int, value: float) -> bool:
        """Record an evaluation's value; True when the cell should stop (a search's pruner says so). Both writes are
        idempotent (the same value at the same step), so a retry after a lost reply is safe."""
        if claim.trial is None:
            self._retrying(lambda: self._storage.set_trial_intermediate_value(claim.trial_id, step, float(value)),
                           f"recording {claim.cell.name}'s validation at step {step}")  # fmt: skip
            return False
        self._retrying(lambda: claim.trial.report(float(value), step),
                       f"reporting {claim.cell.name}'s validation at step {step} to the pruner")  # fmt: skip
        return bool(self._retrying(claim.trial.should_prune, f"asking the pruner about {claim.cell.name}"))

    def record(self, claim: Claim, outcome: Outcome) -> bool:
        """Record how the cell ended; False when another process finished it or declared it dead meanwhile (its
        beats came late), and the record is theirs."""
        optuna = optuna_module()
        state, storage = optuna.trial.TrialState, self._storage

        def write() -> None:
            if outcome.status == "pruned" and outcome.step is not None:
                storage.set_trial_user_attr(claim.trial_id, "step", outcome.step)
            storage.set_trial_user_attr(claim.trial_id, "status", outcome.status)
            if outcome.reason:
                storage.set_trial_user_attr(claim.trial_id, "reason", outcome.reason)
            if outcome.status == "finished":
                self._study.tell(claim.number, outcome.value)
            else:
                self._study.tell(claim.number, state=state.PRUNED if outcome.status == "pruned" else state.FAIL)

        try:
            self._retrying(write, f"recording {claim.cell.name}")
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def requeue(self, claim: Claim, reason: str) -> None:
        """Hand the cell back to the queue (``interrupted``, ``busy``): the next claim runs it, resuming its run."""
        self._retrying(lambda: _requeue(self._study, self._storage, claim.trial_id, reason),
                       f"handing {claim.cell.name} back")  # fmt: skip


def target_reached(storage, study_id: int, sweep: Sweep) -> bool:
    """Whether a finished cell of this sweep (a search: any trial) has reached the file's ``metric.target``."""
    if sweep.target is None:
        return False
    complete = storage.get_all_trials(study_id, deepcopy=False, states=(optuna_module().trial.TrialState.COMPLETE,))
    ids = {cell.id for cell in sweep.cells}
    return any(sweep.reached(t.value) for t in complete if sweep.method in SEARCH_METHODS or t.user_attrs.get("cell_id")
               in ids)  # fmt: skip


class LedgerUnreachable(SweepError):
    """The ledger's database stayed unreachable past ``ledger.outage_s``: the sweep stops, no cell is blamed."""


def retry_through_outage(call: Callable[[], Any], ledger: Ledger, what: str) -> Any:
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

    optuna = optuna_module()
    return (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


def _safe_url(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


# ---------------------------------------------------------------------------------------------------------------------
# Summarising


def summarize(sweep: Sweep, ledger: Ledger) -> Summary:
    """Each cell's state from the ledger: its latest trial decides (a retry comes after the trial it replaces).

    A search's cells are its trials in slot order, once they have values (a waiting first trial has none yet)."""
    optuna = optuna_module()
    study = optuna.load_study(study_name=ledger.study_name, storage=_storage(ledger))
    search = sweep.method in SEARCH_METHODS
    by_cell: dict[Any, list] = {}
    for trial in study.get_trials(deepcopy=False):
        by_cell.setdefault(_slot(trial) if search else trial.user_attrs.get("cell_id"), []).append(trial)
    names = {optuna.trial.TrialState.COMPLETE: "done", optuna.trial.TrialState.RUNNING: "running",
             optuna.trial.TrialState.WAITING: "waiting", optuna.trial.TrialState.PRUNED: "pruned"}  # fmt: skip
    if search:
        pairs = []
        for slot, trials in sorted(by_cell.items()):
            latest = max(trials, key=lambda t: t.number)
            if latest.state != optuna.trial.TrialState.WAITING or "values" in latest.user_attrs:
                # A trial that failed before it ran (its sampled values rejected) is shown by its slot alone.
                pairs.append((search_cell(sweep, slot, latest.user_attrs.get("values", {})), trials))
    else:
        pairs = [(cell, by_cell.get(cell.id, [])) for cell in sweep.cells]
    statuses = []
    for cell, trials in pairs:
        if not trials:
            statuses.append(CellStatus(cell, "waiting"))
            continue
        latest = max(trials, key=lambda t: t.number)
        status = names.get(latest.state) or latest.user_attrs.get("status", "failed")
        reason = latest.user_attrs.get("reason", "")
        if latest.state == optuna.trial.TrialState.FAIL and "status" not in latest.user_attrs:
            reason = f"its worker died {len(trials)} times (heartbeat stopped); retries used up"
        value = latest.value if status == "done" else None  # a pruned trial's value is only its last report
        statuses.append(CellStatus(cell, status, value, reason, len(trials)))
    return Summary(sweep, statuses)
