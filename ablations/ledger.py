"""The ledger: an Optuna study that records which cell runs where and how it ended.

The study lives in ``<runs_dir>/<sweep name>/study.db`` by default, any RDB URL with ``--storage``. The parent creates
it once and enqueues every grid cell once (:func:`prepare`); workers then claim WAITING trials one at a time, so no cell
runs twice (Optuna's own GridSampler runs cells twice under concurrent workers) and a grid samples nothing. A heartbeat
marks each running cell; a cell whose worker died goes stale after the grace period, is failed and re-enqueued by
``RetryHeartbeatStaleTrialCallback``, and runs again, resuming from its run folder's checkpoint.

A search (``bayes``, ``random``) asks the study for new trials (TPE or random sampling) until ``run_cap`` trials exist,
each trial a cell with its own run folder; the pruner (median, or hyperband from ``early_terminate``) may stop it.
:func:`summarize` reads each cell's state back.

A trial's parameters are what the sweep compares (a grid's axes, a search's sampled values); its seed is never one of
them: a seed is a repeat of a cell, not a setting to rank, so Optuna's importances and optuna-dashboard's views must
not see it. Every trial records its cell's seed as the user attribute ``seed`` instead (a grid over ``train.seed`` too).

Optuna is imported lazily, here and in ``ablations/runner.py`` through :func:`_optuna` (``core/`` knows nothing of it).
"""

from __future__ import annotations

import _thread
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import signal
import socket
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.sweep_file import CELL_METHODS, SEARCH_METHODS, Cell, Sweep, SweepError, _text, search_cell
from core.config import ALIASES
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


def default_storage(sweep: Sweep) -> str:
    return f"sqlite:///{(Path(sweep.folder) / 'study.db').resolve()}"


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial INFO lines would drown our progress lines
    return optuna


def _storage(ledger: Ledger):
    optuna = _optuna()
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
    categorical parameters (:func:`_grid_params`), so Optuna's importances and optuna-dashboard see the grid, and its
    seed as the user attribute ``seed`` (never a parameter: see the module's docstring)."""
    optuna = _optuna()
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
            study.enqueue_trial({name: _choice(value) for name, value in sweep.first.items()})
        distributions = _grid_distributions(sweep, trials)
        cells = {cell.id: cell for cell in sweep.cells}
        for trial in trials:
            cell = cells.get(trial.user_attrs.get("cell_id"))
            if cell is None or trial.state != optuna.trial.TrialState.WAITING:
                continue
            if not trial.params:
                # Enqueued before cells carried their parameters: a waiting one gets them now (a finished one cannot).
                params, cell_distributions = _grid_params(cell, distributions)
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
            params, cell_distributions = _grid_params(cell, distributions)
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


def _describe(study, sweep: Sweep) -> None:
    """Name the objective and record where the study comes from, for optuna-dashboard and anyone opening the ledger
    (rewritten by every run: an edited file may change its metric)."""
    optuna = _optuna()
    attrs = {"sweep_file": sweep.path, "method": sweep.method, "metric": sweep.metric, "goal": sweep.goal}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # set_metric_names is experimental
        study.set_metric_names([sweep.metric])


def _grid_distributions(sweep: Sweep, trials) -> dict[str, Any]:
    """Each axis of a grid or ablation but the seed as a categorical over its values in the file's order
    (:func:`_choice`).

    Optuna holds one distribution per parameter name in a study and refuses another: an axis the study has recorded
    keeps its recorded distribution, even after the file changed its values (see :func:`_grid_params`)."""
    optuna = _optuna()
    recorded = {name: distribution for trial in trials for name, distribution in trial.distributions.items()}
    return {p.name: recorded.get(p.name) or optuna.distributions.CategoricalDistribution([_choice(v) for v in p.values])
            for p in sweep.parameters if p.kind == "values" and not is_seed(p.name)}  # fmt: skip


def _grid_params(cell: Cell, distributions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cell's axis values but its seed as Optuna parameters, with their distributions. A value its axis's
    distribution lacks (a value added to the file after the study recorded the axis) is left out: that cell goes
    without the parameter."""
    categorical = _optuna().distributions.CategoricalDistribution
    params, chosen = {}, {}
    for name, value in cell.axes.items():
        if is_seed(name):
            continue
        distribution = distributions[name]
        if isinstance(distribution, categorical) and _choice(value) in distribution.choices:
            params[name], chosen[name] = _choice(value), distribution
    return params, chosen


def is_seed(name: str) -> bool:
    """Whether a sweep parameter is the seed (``train.seed``, by any of its names): a trial's attribute, never one of
    its Optuna parameters."""
    return ALIASES.get(name, name) == "train.seed"


def _sampler(sweep: Sweep, worker: int):
    """TPE (bayes) or random sampling, seeded; worker k samples with seed + k, so workers do not repeat each other.

    TPE samples at random for its first max(2, min(10, run_cap // 4)) trials (Optuna's default of 10 would leave a
    small search entirely random); constant_liar keeps concurrent workers from proposing the same point."""
    optuna = _optuna()
    seed = sweep.seed + worker
    if sweep.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, (sweep.run_cap or 0) // 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def _pruner(sweep: Sweep):
    optuna = _optuna()
    spec = dict(sweep.pruner)
    kind = spec.pop("type", "median")
    return optuna.pruners.HyperbandPruner(**spec) if kind == "hyperband" else optuna.pruners.MedianPruner(**spec)


def _choice(value: Any) -> Any:
    """A value as Optuna holds it: lists (hidden sizes) as their text, since categorical choices must be scalars."""
    return _text(value) if isinstance(value, list | tuple | dict) else value


def _suggest(trial, sweep: Sweep) -> dict[str, Any]:
    """The trial's value of each searched parameter, each W&B distribution sampled by its Optuna equivalent.

    - ``values`` axes and ``categorical``: ``suggest_categorical``.
    - ``int_uniform``: ``suggest_int(min, max)``; ``uniform``: ``suggest_float(min, max)``.
    - ``log_uniform_values``, ``inv_log_uniform_values``, ``log_uniform`` and ``inv_log_uniform``: ``suggest_float``
      with ``log=True`` over the range in values, exactly. Each is log-uniform there (the inverse of a log-uniform
      variable is log-uniform too); load_sweep turned the natural-log bounds of the last two into values.
    - ``q_uniform``: Optuna's ``step=q`` (``suggest_int`` when q is an integer) over the multiples of q within
      [min, max], each equally likely; W&B's ``round(X / q) * q`` gives the two end ones half the weight of the others
      and may step just outside [min, max].
    - ``q_log_uniform`` and ``q_log_uniform_values``: Optuna has no stepped log scale (a float takes ``step`` or
      ``log``, not both; a log-scale int only step 1), so the trial samples the log-uniform float, which Optuna records
      as the parameter and TPE models, and the cell is given it rounded to a multiple of q as W&B rounds, kept within
      [min, max]: W&B's distribution, but the trial's recorded parameter is the float before rounding.

    W&B's normal, log_normal, beta, their q forms and categorical_w_probabilities have no Optuna equivalent; load_sweep
    refuses them, naming the reason, so none reaches here."""
    values = {}
    for p in sweep.parameters:
        if p.kind == "value":
            continue
        if p.kind == "values":
            choices = [_choice(v) for v in p.values]
            values[p.name] = p.values[choices.index(trial.suggest_categorical(p.name, choices))]
        elif p.distribution == "int_uniform":
            values[p.name] = trial.suggest_int(p.name, p.low, p.high)
        elif p.distribution == "uniform":
            values[p.name] = trial.suggest_float(p.name, p.low, p.high)
        elif p.distribution == "q_uniform":
            low, high = p.support
            if isinstance(p.q, int):
                values[p.name] = trial.suggest_int(p.name, low, high, step=p.q)
            else:  # quantize only strips binary noise here: Optuna's low + k * step is already on the grid
                values[p.name] = p.quantize(trial.suggest_float(p.name, low, high, step=p.q))
        elif p.distribution in ("log_uniform", "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values"):
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=True)
        elif p.distribution in ("q_log_uniform", "q_log_uniform_values"):
            values[p.name] = p.quantize(trial.suggest_float(p.name, p.low, p.high, log=True))
        else:
            raise SweepError(f"{sweep.path}: parameters.{p.name}: distribution {p.distribution!r} has no sampler here")
    return values


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
    the trial's id from its move to RUNNING until the claim is complete (see :func:`hand_back_half_claimed`)."""
    claiming = [] if claiming is None else claiming
    optuna = _optuna()
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
                claiming.remove(trial_id)
                return trial_id, trial.number, cell
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
    ``claiming`` holds the trial's id from ask() until the claim is complete (see :func:`hand_back_half_claimed`)."""
    claiming = [] if claiming is None else claiming
    optuna = _optuna()
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
            values = _suggest(trial, sweep)
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
        claiming.remove(trial._trial_id)
        return trial._trial_id, trial.number, cell, trial


def hand_back_half_claimed(study, storage, claiming: list[int]) -> None:
    """Hand back the trials of this worker's claims that a ledger outage cut off midway (``claiming``, filled by
    :func:`_claim` and :func:`_claim_trial`): each one still RUNNING is requeued, since nobody runs it, and its
    worker, alive, would keep vouching for it."""
    optuna = _optuna()
    for trial_id in list(claiming):
        trial = storage.get_trial(trial_id)
        if trial.state == optuna.trial.TrialState.RUNNING:
            _requeue_orphan(study, storage, trial)
        claiming.remove(trial_id)


def requeue_orphans(study, storage, study_id: int) -> None:
    """Hand back every RUNNING trial that no worker signed: a claim cut off by a ledger outage after the trial was
    made or moved to RUNNING and before the claim's own writes (its heartbeat, its ``worker``). Nobody runs it and,
    without a heartbeat, it never goes stale: left alone, the sweep would wait for it forever. Called under the
    ledger's lock, where no other claim is half done."""
    optuna = _optuna()
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


def vouch_for_local_workers(storage, study_id: int) -> None:
    """Beat for every running trial whose worker is a live process on this machine, before stale trials are failed.

    Heartbeats are how a ledger shared by several machines tells a dead worker from a live one; but on a loaded
    machine a live worker's own beats can come later than the grace period (a thread starved of CPU, a long database
    lock), and its cell would be declared dead and run a second time beside it. On the worker's own machine liveness
    is a fact, not a guess: a cell is taken away only from a worker that is gone, or from one on another machine whose
    beats stopped."""
    optuna = _optuna()
    host = socket.gethostname()
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        name, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if name == host and pid.isdigit() and _alive(int(pid)):
            storage.record_heartbeat(trial._trial_id)


class _Heartbeat:
    """Records the trial's heartbeat every interval from a thread while the cell runs, and fences the claim.

    A worker on another machine whose beats came too late may have had its cell declared dead and handed to another
    worker. At each beat the thread reads the trial back: once it is no longer RUNNING, the claim is lost, ``lost``
    is set and the main thread is interrupted (KeyboardInterrupt), so this worker stops the cell within one interval
    instead of training it beside its new owner (whose run folder lock, :func:`core.io.folder_lock`, keeps the two
    apart where the file system honours locks).

    The interrupt is a signal of its own, :data:`FENCE_SIGNAL`, handled while the cell runs: a real signal also cuts
    short a sleep or a wait in progress (``_thread.interrupt_main`` does not), and SIGINT is ignored in a worker that a
    script started in the background (``launch.py sweep ... &`` without job control, as in a batch script)."""

    def __init__(self, storage, trial_id: int, interval: float) -> None:
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval), daemon=True)
        self._signalled = False  # whether FENCE_SIGNAL is ours while the cell runs (only the main thread handles it)
        self._previous: Any = signal.SIG_DFL

    def _beat(self, storage, trial_id: int, interval: float) -> None:
        running = _optuna().trial.TrialState.RUNNING
        while True:
            try:
                storage.record_heartbeat(trial_id)
                if storage.get_trial(trial_id).state != running and not self._stop.is_set():
                    self.lost = True
                    if self._signalled:
                        os.kill(os.getpid(), FENCE_SIGNAL)
                    else:  # a worker outside the main thread: its next bytecode, once a sleep or wait has ended
                        _thread.interrupt_main()
                    return
            except Exception as exc:  # a busy database must not silence the cell for good: try again next beat
                print(f"heartbeat of trial {trial_id} failed ({type(exc).__name__}: {exc}); retrying", flush=True)
            if self._stop.wait(interval):
                return

    def __enter__(self) -> _Heartbeat:
        if threading.current_thread() is threading.main_thread():
            self._previous, self._signalled = signal.signal(FENCE_SIGNAL, self._claim_lost), True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (and fencing): before this worker itself changes the trial's state."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _claim_lost(self, signum, frame) -> None:
        if not self._stop.is_set():  # a signal handled after the cell ended (and stop()) has nothing left to stop
            raise ClaimLost("the cell's claim was lost: declared dead and handed on elsewhere")

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self.stop()
        if self._signalled:
            signal.signal(FENCE_SIGNAL, signal.SIG_DFL if self._previous is None else self._previous)
        # The claim was lost just as the cell ended, between its last line and here: what comes next (recording the
        # cell, which finds the trial no longer this worker's) says so; the worker goes on with the next cell.
        return exc_type is not None and issubclass(exc_type, ClaimLost)


class ClaimLost(KeyboardInterrupt):
    """Raised in a worker's main thread when its heartbeat finds the cell's claim lost (see :class:`_Heartbeat`)."""


FENCE_SIGNAL = signal.SIGUSR1
"""The signal a worker's heartbeat thread sends its own process when the cell's claim is lost (see :class:`_Heartbeat`;
SIGUSR2 is submitit's preemption signal)."""


def _requeue(study, storage, trial_id: int, reason: str) -> None:
    optuna = _optuna()
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
# Summarising


@dataclass
class CellStatus:
    cell: Cell
    status: str  # done | failed | diverged | pruned | running | waiting | interrupted
    value: float | None = None
    reason: str = ""
    trials: int = 0  # trials this cell has had (more than one after a retry)


@dataclass
class Summary:
    sweep: Sweep
    cells: list[CellStatus]

    def count(self, *statuses: str) -> int:
        return sum(c.status in statuses for c in self.cells)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def failed(self) -> int:
        return self.count("failed", "diverged")

    @property
    def pruned(self) -> int:
        return self.count("pruned")

    @property
    def left(self) -> int:
        """Cells (a search: trials up to run_cap) not yet done, failed or pruned: waiting, running or not started."""
        return max(len(self.cells), self.sweep.planned) - self.done - self.failed - self.pruned

    @property
    def best(self) -> CellStatus | None:
        finished = [c for c in self.cells if c.status == "done" and c.value is not None]
        sign = 1 if self.sweep.goal == "minimize" else -1
        return min(finished, key=lambda c: sign * c.value) if finished else None


def summarize(sweep: Sweep, ledger: Ledger) -> Summary:
    """Each cell's state from the ledger: its latest trial decides (a retry comes after the trial it replaces).

    A search's cells are its trials in slot order, once they have values (a waiting first trial has none yet)."""
    optuna = _optuna()
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


def format_start(summary: Summary, ledger: Ledger, workers: str) -> str:
    """The line a sweep starts with: what it is, where it stands, who runs it (``2 workers``, ``8 SLURM jobs``)."""
    sweep = summary.sweep
    what = f"a {sweep.method} search of {sweep.planned} trials" if sweep.method in SEARCH_METHODS else (
        f"{len(sweep.cells)} cells")  # fmt: skip
    return (f"{sweep.name}: {what}, {summary.done} done, {summary.failed} failed, {summary.pruned} pruned, "
            f"{summary.left} to run; {workers}; ledger {ledger.url}")  # fmt: skip


def format_summary(summary: Summary) -> str:
    """The end-of-sweep table: every cell, its status and metric, then the counts and the best cell."""
    sweep = summary.sweep
    width = max([len("cell"), *(len(c.cell.name) for c in summary.cells)])
    lines = [f"{'cell':<{width}}  {'status':<11}{sweep.metric:>12}  tries  reason"]
    for c in summary.cells:
        value = f"{c.value:.6g}" if c.value is not None else "-"
        lines.append(f"{c.cell.name:<{width}}  {c.status:<11}{value:>12}  {c.trials:>5}  {c.reason}".rstrip())
    lines.append(f"{sweep.name}: {_counts(summary)}")
    best = summary.best
    if best is not None:
        lines.append(f"best ({sweep.goal} {sweep.metric}): {best.cell.name} {best.value:.6g}  {best.cell.run_dir}")
    return "\n".join(lines)


def _counts(summary: Summary) -> str:
    search = summary.sweep.method in SEARCH_METHODS
    pruned = f"{summary.pruned} pruned, " if search else ""
    total = f"{summary.sweep.planned} trials" if search else f"{len(summary.cells)} cells"
    return f"{summary.done} done, {pruned}{summary.failed} failed, {summary.left} left of {total}"
