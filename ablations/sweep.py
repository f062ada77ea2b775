"""Sweeps: a YAML file in W&B's sweep schema, expanded into cells and run by local workers over an Optuna ledger.

The file is W&B's (``method``, ``metric``, ``parameters``, ``program``, ``command``, ...), so ``wandb sweep`` accepts
it too. Parameter names are the config's dotted keys (``model.conv``, ``loss.l1_weight``, ``train.seed``) or the
release's flag names, plus two of ours: ``variant`` (the variant file, required) and ``profile``.

The ledger is an Optuna study (``<runs_dir>/<sweep name>/study.db`` by default, any RDB URL with ``--storage``). The
parent creates it once and enqueues every grid cell once; workers then claim WAITING trials one at a time, so no cell
runs twice (Optuna's own GridSampler runs cells twice under concurrent workers) and nothing new is ever sampled. A
heartbeat marks each running cell; a cell whose worker died goes stale after the grace period, is failed and
re-enqueued by ``RetryHeartbeatStaleTrialCallback``, and runs again, resuming from its run folder's checkpoint.

Optuna is imported lazily and only here (``core/`` knows nothing of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config import ALIASES, Config, ConfigError, valid_keys

# W&B's sweep schema rejects any other top-level key, so ours ride as constant parameters or command-line flags.
TOP_LEVEL_KEYS = (
    "apiVersion", "kind", "controller", "description", "program", "job", "image_uri", "entity", "project", "method",
    "command", "name", "run_cap", "metric", "metrics", "scheduler", "early_terminate", "parameters",
)  # fmt: skip
METHODS = ("grid", "random", "bayes", "ablation")
IMPLEMENTED_METHODS = ("grid",)
GOALS = ("minimize", "maximize")
DISTRIBUTIONS = ("uniform", "int_uniform", "log_uniform_values", "categorical")
OWN_PARAMETERS = ("variant", "profile")  # ours, not config keys: which variant file, under which profile
PARAMETER_FIELDS = ("value", "values", "distribution", "min", "max", "probabilities")
DEFAULT_METRIC = "val/mse"

# Ledger defaults: a worker's heartbeat every 10 s; a cell silent for 30 s is declared dead and re-enqueued.
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30
MAX_RETRY = 3  # a cell that kills its worker this many times is left failed rather than retried forever


class SweepError(ValueError):
    """A bad sweep file or ledger: the message names the file and the key."""


class CellFailed(Exception):
    """Raised by an objective when its cell did not produce the metric; recorded with ``status`` and ``reason``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status, self.reason = status, reason


# ---------------------------------------------------------------------------------------------------------------------
# The sweep file


@dataclass(frozen=True)
class Parameter:
    """One entry of ``parameters``: a constant (``value``), an axis (``values``) or a ``distribution``."""

    name: str
    kind: str  # value | values | distribution
    values: tuple = ()  # the constant as a 1-tuple, or the axis's values, or a categorical distribution's
    distribution: str | None = None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Cell:
    """One grid cell: its parameters, a stable id, a readable name, and where its run lives."""

    id: str  # short hash of the cell's sorted parameter dict: the same cell has the same id on every load
    name: str  # from its axis values, e.g. conv=3d-residual=true-l1_weight=0.5-seed=0
    params: dict[str, Any]  # every parameter of the cell, constants included, as written in the file
    axes: dict[str, Any]  # the ones that vary across the grid
    run_dir: str
    overrides: tuple[str, ...]  # ``--key=value`` for load_variant, group and tags included


@dataclass(frozen=True)
class Sweep:
    path: str
    name: str
    method: str
    metric: str
    goal: str
    parameters: tuple[Parameter, ...]
    folder: str  # <runs_dir>/<name>: the cells' run folders and the default ledger
    cells: tuple[Cell, ...] = ()  # grid cells in a stable order (empty for methods that sample)
    raw: dict = field(default_factory=dict, compare=False)  # the file as read, for W&B's side of things


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; every grid cell's config is loaded once, so a bad value fails here."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise SweepError(f"{where}: no such sweep file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: a sweep file must be a mapping, got {type(raw).__name__}")
    unknown = [key for key in raw if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise SweepError(
            f"{where}: unknown top-level key {unknown[0]!r} (W&B's sweep schema allows only "
            f"{', '.join(TOP_LEVEL_KEYS)}); put our own settings in parameters as constants ({{value: ...}})"
        )
    method = raw.get("method")
    if method not in METHODS:
        raise SweepError(f"{where}: method must be one of {', '.join(METHODS)}, got {method!r}")
    name = str(raw.get("name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SweepError(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
    metric, goal = _metric(raw.get("metric"), where)
    if "run_cap" in raw and not (isinstance(raw["run_cap"], int) and raw["run_cap"] >= 1):
        raise SweepError(f"{where}: run_cap must be a positive integer, got {raw['run_cap']!r}")
    for key in ("command", "early_terminate"):
        expected = list if key == "command" else dict
        if key in raw and not isinstance(raw[key], expected):
            raise SweepError(f"{where}: {key} must be a {'list' if expected is list else 'mapping'}")
    parameters = _parameters(raw.get("parameters"), where, method)
    sweep = Sweep(where, name, method, metric, goal, parameters, folder="", raw=raw)
    if method == "grid":
        return _with_cells(sweep)
    return dataclasses.replace(sweep, folder=str(Path(_check_bounds(sweep).train.runs_dir) / name))


def metric_names() -> tuple[str, ...]:
    """The metrics a finished run reports: its best validation MSE and its test scores."""
    from core.metrics import METRICS  # imports torch: not at module level, so workers with a fake objective start fast

    return ("val/mse", *(f"test/{name}" for name in METRICS))


def _metric(raw: Any, where: str) -> tuple[str, str]:
    if raw is None:
        return DEFAULT_METRIC, "minimize"
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: metric must be a mapping {{name, goal}}, got {raw!r}")
    extra = [key for key in raw if key not in ("name", "goal", "target")]
    if extra:
        raise SweepError(f"{where}: metric: unknown key {extra[0]!r} (allowed: name, goal, target)")
    name, goal = raw.get("name", DEFAULT_METRIC), raw.get("goal", "minimize")
    if name not in metric_names():
        raise SweepError(f"{where}: metric.name must be one of {', '.join(metric_names())}, got {name!r}")
    if goal not in GOALS:
        raise SweepError(f"{where}: metric.goal must be minimize or maximize, got {goal!r}")
    return name, goal


def _parameters(raw: Any, where: str, method: str) -> tuple[Parameter, ...]:
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{where}: parameters must be a non-empty mapping of parameter name to its spec")
    known = [*OWN_PARAMETERS, *valid_keys(), *ALIASES]
    parameters = []
    for name, spec in raw.items():
        key = f"{where}: parameters.{name}"
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SweepError(
                f"{key}: unknown parameter {name!r}{hint}; valid: {', '.join([*OWN_PARAMETERS, *valid_keys()])}, "
                "or the release's flag names"
            )
        if not isinstance(spec, dict):
            raise SweepError(f"{key}: must be a mapping: {{value: X}}, {{values: [...]}} or {{distribution: ...}}")
        extra = [field_ for field_ in spec if field_ not in PARAMETER_FIELDS]
        if extra:
            raise SweepError(f"{key}: unknown field {extra[0]!r} (allowed: {', '.join(PARAMETER_FIELDS)})")
        parameters.append(_parameter(name, spec, key, method))
    seen: dict[str, str] = {}
    for name in raw:
        dotted = ALIASES.get(name, name)
        if dotted in seen:
            raise SweepError(f"{where}: parameters {seen[dotted]!r} and {name!r} both set {dotted}")
        seen[dotted] = name
    if "variant" not in raw:
        raise SweepError(f"{where}: parameters.variant is required (e.g. variant: {{value: ablations/.../x.yaml}})")
    for own in OWN_PARAMETERS:
        spec = next((p for p in parameters if p.name == own), None)
        if spec is not None and (spec.kind == "distribution" or not all(isinstance(v, str) for v in spec.values)):
            raise SweepError(f"{where}: parameters.{own} must be a file or profile name as value or values")
    return tuple(parameters)


def _parameter(name: str, spec: dict, key: str, method: str) -> Parameter:
    shapes = [field_ for field_ in ("value", "values", "distribution") if field_ in spec]
    if len(shapes) != 1 and not (shapes == ["values", "distribution"] and spec["distribution"] == "categorical"):
        raise SweepError(f"{key}: give exactly one of value, values or distribution, got {shapes or 'none'}")
    if shapes == ["value"]:
        _no_fields(spec, ("min", "max", "probabilities"), key, "value")
        return Parameter(name, "value", (spec["value"],))
    if shapes == ["values"]:
        _no_fields(spec, ("min", "max"), key, "values")
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"{key}: values must be a non-empty list, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise SweepError(f"{key}: values repeat an entry: {values!r}")
        return Parameter(name, "values", tuple(values))
    distribution = spec["distribution"]
    if method == "grid":
        raise SweepError(f"{key}: a grid needs value or values; distributions are for random and bayes search")
    if distribution not in DISTRIBUTIONS:
        raise SweepError(f"{key}: distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if distribution == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SweepError(f"{key}: a categorical distribution needs a non-empty values list")
        _no_fields(spec, ("min", "max"), key, "a categorical distribution")
        return Parameter(name, "distribution", tuple(values), distribution)
    _no_fields(spec, ("values", "probabilities"), key, f"distribution {distribution}")
    low, high = spec.get("min"), spec.get("max")
    for bound, value in (("min", low), ("max", high)):
        number = isinstance(value, int) if distribution == "int_uniform" else isinstance(value, int | float)
        if not number or isinstance(value, bool):
            kind = "an integer" if distribution == "int_uniform" else "a number"
            raise SweepError(f"{key}: distribution {distribution} needs {bound} as {kind}, got {value!r}")
    if not low < high:
        raise SweepError(f"{key}: min ({low}) must be below max ({high})")
    if distribution == "log_uniform_values" and low <= 0:
        raise SweepError(f"{key}: log_uniform_values needs min > 0, got {low}")
    return Parameter(name, "distribution", (), distribution, low, high)


def _no_fields(spec: dict, fields: tuple[str, ...], key: str, shape: str) -> None:
    extra = [field_ for field_ in fields if field_ in spec]
    if extra:
        raise SweepError(f"{key}: {extra[0]!r} does not go with {shape}")


# ---------------------------------------------------------------------------------------------------------------------
# Grid expansion


def expand_grid(parameters: tuple[Parameter, ...]) -> list[dict[str, Any]]:
    """The cartesian product of the ``values`` axes, in the file's order (the last axis varies fastest), each cell
    holding the constants too."""
    constants = {p.name: p.values[0] for p in parameters if p.kind == "value"}
    axes = [p for p in parameters if p.kind == "values"]
    return [{**constants, **dict(zip([p.name for p in axes], combo, strict=True))}
            for combo in itertools.product(*(p.values for p in axes))]  # fmt: skip


def cell_id(params: dict[str, Any]) -> str:
    """A short stable hash of a cell's sorted parameter dict."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _text(value: Any) -> str:
    """A parameter value as the command line and names write it (true, 0.5, 64,64, none)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _short_names(names: list[str]) -> dict[str, str]:
    """``model.conv`` -> ``conv`` unless two keys share their last part, which then keep the whole key."""
    dotted = {name: ALIASES.get(name, name) for name in names}
    leaves = [d.rsplit(".", 1)[-1] for d in dotted.values()]
    return {name: d.rsplit(".", 1)[-1] if leaves.count(d.rsplit(".", 1)[-1]) == 1 else d for name, d in dotted.items()}


def cell_name(axes: dict[str, Any], seed: int) -> str:
    """Readable and folder-safe, from the axis values (a variant by its file's stem) and the seed."""
    short = _short_names(list(axes))
    parts = [f"{short[k]}={Path(v).stem if k == 'variant' else _text(v)}" for k, v in axes.items()]
    if "seed" not in {short[k] for k in axes}:
        parts.append(f"seed={seed}")  # repeats of a cell differ by seed alone: keep it in every name
    return re.sub(r"[^A-Za-z0-9_.=,-]", "_", "-".join(parts))


def cell_config(cell: Cell) -> Config:
    """The cell's resolved config: its variant and profile with the cell's overrides (group and tags included)."""
    from ablations.variants import load_variant

    return load_variant(cell.params["variant"], list(cell.overrides), cell.params.get("profile"))


def _overrides(params: dict[str, Any]) -> list[str]:
    return [f"--{key}={_text(value)}" for key, value in params.items() if key not in OWN_PARAMETERS]


def _load_params(params: dict[str, Any], where: str) -> Config:
    from ablations.variants import load_variant

    try:
        return load_variant(params["variant"], _overrides(params), params.get("profile"))
    except ConfigError as exc:
        raise SweepError(f"{where}: {exc}") from exc


def _with_cells(sweep: Sweep) -> Sweep:
    axes_names = [p.name for p in sweep.parameters if p.kind == "values"]
    cells, folders = [], set()
    for params in expand_grid(sweep.parameters):
        axes = {name: params[name] for name in axes_names}
        label = ", ".join(f"{k}={_text(v)}" for k, v in axes.items()) or "the only cell"
        cfg = _load_params(params, f"{sweep.path}: parameters (cell {label})")
        folders.add(str(Path(cfg.train.runs_dir) / sweep.name))
        name = cell_name(axes, cfg.train.seed)
        tags = ",".join(f"{key}={_text(value)}" for key, value in zip(_short_names(axes_names).values(), axes.values(),
                                                                      strict=True))  # fmt: skip
        overrides = (*_overrides(params), f"--tracking.group={sweep.name}", *([f"--tracking.tags={tags}"] * bool(tags)))
        run_dir = str(Path(cfg.train.runs_dir) / sweep.name / name)
        cells.append(Cell(cell_id(params), name, params, axes, run_dir, overrides))
    if len(folders) != 1:
        raise SweepError(f"{sweep.path}: every cell must share train.runs_dir (the sweep's ledger lives there)")
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids) or len({c.name for c in cells}) != len(cells):
        raise SweepError(f"{sweep.path}: two cells have the same parameters or name")
    return dataclasses.replace(sweep, cells=tuple(cells), folder=folders.pop())


def _check_bounds(sweep: Sweep) -> Config:
    """For sampling methods: the constants with each distribution's bounds (or categories) must load."""
    base = {p.name: p.values[0] for p in sweep.parameters if p.kind in ("value", "values")}
    cfg = _load_params(base, f"{sweep.path}: parameters")
    for p in sweep.parameters:
        probes = p.values if p.kind != "distribution" or p.distribution == "categorical" else (p.low, p.high)
        for value in probes:
            _load_params({**base, p.name: value}, f"{sweep.path}: parameters.{p.name}")
    return cfg


# ---------------------------------------------------------------------------------------------------------------------
# The ledger


@dataclass(frozen=True)
class Ledger:
    """Where the study lives and how dead workers are noticed (short heartbeats in tests)."""

    url: str
    study_name: str
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S
    max_retry: int = MAX_RETRY
    poll_s: float = 1.0  # how often an idle worker looks for re-enqueued cells while others still run


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
    failed or waiting cells, and only new cells of an edited file."""
    optuna = _optuna()
    Path(sweep.folder).mkdir(parents=True, exist_ok=True)
    if ledger.url.startswith("sqlite:///"):
        Path(ledger.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Under the lock too: a second `launch.py sweep` on the same SQLite ledger must not create or enqueue at once.
    with _exclusive(ledger):
        study = optuna.create_study(
            study_name=ledger.study_name, storage=_storage(ledger), direction=sweep.goal, load_if_exists=True
        )
        for cell in sweep.cells:
            study.enqueue_trial(
                _fixed_params(cell), user_attrs={"cell_id": cell.id, "cell_name": cell.name}, skip_if_exists=True
            )


def _fixed_params(cell: Cell) -> dict[str, Any]:
    # Optuna compares enqueued params by value; the id covers them all, and keeps lists and None out of its checks.
    return {"cell_id": cell.id}


# ---------------------------------------------------------------------------------------------------------------------
# Workers

Objective = Callable[[Cell, str], float]
"""Train (or fake) one cell and return ``metric``'s value; raise :class:`CellFailed` when there is none."""


def train_cell(cell: Cell, metric: str) -> float:
    """The real objective: train the cell's run (resuming or skipping as the trainer does) and read its metric."""
    from core.trainer import train

    result = train(cell_config(cell), run_dir=cell.run_dir, progress=False)
    if result.status != "finished":
        summary = Path(result.run_dir) / "summary.json"
        record = json.loads(summary.read_text()) if summary.is_file() else {}
        raise CellFailed(result.status, str(record.get("reason") or f"run {result.status} at step {result.step}"))
    if metric == "val/mse":
        if result.best_val_mse is None:
            raise CellFailed("failed", "the run finished without a validation")
        return float(result.best_val_mse)
    value = (result.test or {}).get(metric)
    if value is None:
        raise CellFailed("failed", f"the run's summary has no {metric}")
    return float(value)


class _Heartbeat:
    """Records the trial's heartbeat every interval from a thread while the cell runs."""

    def __init__(self, storage, trial_id: int, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval), daemon=True)

    def _beat(self, storage, trial_id: int, interval: float) -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as exc:  # a busy database must not silence the cell for good: try again next beat
                print(f"heartbeat of trial {trial_id} failed ({type(exc).__name__}: {exc}); retrying", flush=True)
            if self._stop.wait(interval):
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def work(
    sweep: Sweep, ledger: Ledger, objective: Objective = train_cell, worker: int = 0, threads: int | None = None
) -> int:
    """One worker: claim waiting cells until none is waiting or running; returns how many cells it ran.

    While other cells still run it keeps polling, failing stale ones (whose retry comes back as WAITING), so a cell
    whose worker died is run again in the same sweep once its grace period has passed. ``threads`` caps torch's
    threads in this process (unless OMP_NUM_THREADS is set already)."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # recorded as interrupted, resumable
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        # Before torch is imported, so its thread pool is born this size. Measured on 2 cores: 2 workers with
        # torch's default 2 threads each trained 16x slower than one (spinning OpenMP threads fight for the cores).
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    optuna = _optuna()
    storage = _storage(ledger)
    study = optuna.load_study(study_name=ledger.study_name, storage=storage)
    study_id = storage.get_study_id_from_name(ledger.study_name)
    cells = {cell.id: cell for cell in sweep.cells}
    ran = 0
    while True:
        with _exclusive(ledger), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
            claimed = _claim(storage, study_id, cells)
        if claimed is None:
            running = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if not any(t.user_attrs.get("cell_id") in cells for t in running):
                return ran
            time.sleep(ledger.poll_s)
            continue
        trial_id, number, cell = claimed
        try:
            _run_cell(study, storage, trial_id, number, cell, sweep, ledger, objective, worker)
        except KeyboardInterrupt:
            print(f"worker {worker}: interrupted; {cell.name} goes back to the queue", flush=True)
            return ran
        ran += 1


@contextlib.contextmanager
def _exclusive(ledger: Ledger) -> Iterator[None]:
    """On SQLite, one process at a time creates and fills the ledger, or fails stale cells and claims one.

    Optuna's check-and-set of a trial's state reads, then writes; on PostgreSQL the read locks the row (SELECT ... FOR
    UPDATE), but SQLite has no row locks and pysqlite opens the transaction only at the write, so two workers can both
    see a cell WAITING and both claim it (measured: a cell ran twice in a 4-cell sweep with 2 workers), or both fail
    a stale cell and re-enqueue it twice. A file lock beside the database closes both races; SQLite is one machine's
    anyway."""
    if not ledger.url.startswith("sqlite:///"):
        yield
        return
    with open(ledger.url.removeprefix("sqlite:///") + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also when the process is killed
        yield


def _claim(storage, study_id: int, cells: dict[str, Cell]) -> tuple[int, int, Cell] | None:
    """Atomically move one waiting trial of this grid to RUNNING; None when there is none left."""
    optuna = _optuna()
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        cell = cells.get(trial.user_attrs.get("cell_id"))
        if cell is None:
            continue  # a cell of an earlier version of the file
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        # Beat before claiming: a worker killed right after its claim still leaves a heartbeat that goes stale.
        storage.record_heartbeat(trial_id)
        try:
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
                return trial_id, trial.number, cell
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker claimed and finished it meanwhile
    return None


def _run_cell(study, storage, trial_id, number, cell, sweep, ledger, objective, worker) -> None:
    optuna = _optuna()
    state = optuna.trial.TrialState
    start = time.perf_counter()
    value, status, reason = None, "finished", ""
    with _Heartbeat(storage, trial_id, ledger.heartbeat_interval):
        try:
            value = float(objective(cell, sweep.metric))
        except CellFailed as exc:
            status, reason = exc.status, exc.reason
        except KeyboardInterrupt:
            # Interrupted, not broken: hand the cell back so the next run of the sweep picks it up at once. A second
            # signal (Ctrl-C and the parent's SIGTERM both arrive) must not cut the hand-back short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _requeue(study, storage, trial_id, "interrupted")
            raise
        except Exception as exc:  # a broken cell is recorded and the sweep goes on
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
    try:
        storage.set_trial_user_attr(trial_id, "status", status)
        if reason:
            storage.set_trial_user_attr(trial_id, "reason", reason)
        if status == "finished":
            study.tell(number, value)
        else:
            study.tell(number, state=state.PRUNED if status == "pruned" else state.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        print(f"worker {worker}: {cell.name} was finished or declared dead by another process while it ran "
              "(a late heartbeat)", flush=True)  # fmt: skip
        return
    done = len({t.user_attrs["cell_id"] for t in study.get_trials(deepcopy=False, states=(state.COMPLETE,))})
    seconds = time.perf_counter() - start
    outcome = f"{sweep.metric} {value:.6g}" if status == "finished" else f"{status}: {reason}"
    print(f"[{done}/{len(sweep.cells)} done] {cell.name}: {outcome} ({seconds:.0f} s, worker {worker})", flush=True)


def _requeue(study, storage, trial_id: int, reason: str) -> None:
    optuna = _optuna()
    frozen = storage.get_trial(trial_id)
    storage.set_trial_user_attr(trial_id, "status", reason)
    storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            system_attrs={"fixed_params": frozen.system_attrs.get("fixed_params", {})},
            user_attrs={k: v for k, v in frozen.user_attrs.items() if k in ("cell_id", "cell_name")},
        )
    )


# ---------------------------------------------------------------------------------------------------------------------
# Running and summarising


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
        return self.count("failed", "diverged", "pruned")

    @property
    def left(self) -> int:
        return len(self.cells) - self.done - self.failed

    @property
    def best(self) -> CellStatus | None:
        finished = [c for c in self.cells if c.status == "done" and c.value is not None]
        sign = 1 if self.sweep.goal == "minimize" else -1
        return min(finished, key=lambda c: sign * c.value) if finished else None


def summarize(sweep: Sweep, ledger: Ledger) -> Summary:
    """Each cell's state from the ledger: its latest trial decides (a retry comes after the trial it replaces)."""
    optuna = _optuna()
    study = optuna.load_study(study_name=ledger.study_name, storage=_storage(ledger))
    by_cell: dict[str, list] = {}
    for trial in study.get_trials(deepcopy=False):
        by_cell.setdefault(trial.user_attrs.get("cell_id"), []).append(trial)
    names = {optuna.trial.TrialState.COMPLETE: "done", optuna.trial.TrialState.RUNNING: "running",
             optuna.trial.TrialState.WAITING: "waiting", optuna.trial.TrialState.PRUNED: "pruned"}  # fmt: skip
    statuses = []
    for cell in sweep.cells:
        trials = by_cell.get(cell.id, [])
        if not trials:
            statuses.append(CellStatus(cell, "waiting"))
            continue
        latest = max(trials, key=lambda t: t.number)
        status = names.get(latest.state) or latest.user_attrs.get("status", "failed")
        reason = latest.user_attrs.get("reason", "")
        if latest.state == optuna.trial.TrialState.FAIL and "status" not in latest.user_attrs:
            reason = f"its worker died {len(trials)} times (heartbeat stopped); retries used up"
        statuses.append(CellStatus(cell, status, latest.value, reason, len(trials)))
    return Summary(sweep, statuses)


def format_summary(summary: Summary) -> str:
    """The end-of-sweep table: every cell, its status and metric, then the counts and the best cell."""
    sweep = summary.sweep
    width = max([len("cell"), *(len(c.cell.name) for c in summary.cells)])
    lines = [f"{'cell':<{width}}  {'status':<11}{sweep.metric:>12}  tries  reason"]
    for c in summary.cells:
        value = f"{c.value:.6g}" if c.value is not None else "-"
        lines.append(f"{c.cell.name:<{width}}  {c.status:<11}{value:>12}  {c.trials:>5}  {c.reason}".rstrip())
    lines.append(f"{sweep.name}: {summary.done} done, {summary.failed} failed, {summary.left} left "
                 f"of {len(summary.cells)} cells")  # fmt: skip
    best = summary.best
    if best is not None:
        lines.append(f"best ({sweep.goal} {sweep.metric}): {best.cell.name} {best.value:.6g}  {best.cell.run_dir}")
    return "\n".join(lines)


def run_sweep(
    sweep: Sweep,
    workers: int = 1,
    storage: str | None = None,
    objective: Objective = train_cell,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
    max_retry: int = MAX_RETRY,
    poll_s: float = 1.0,
) -> Summary:
    """Run (or resume) a sweep with ``workers`` local processes over its ledger; returns the ledger's summary.

    ``objective`` must be importable by name (workers are spawned processes); tests pass a cheap fake."""
    if sweep.method not in IMPLEMENTED_METHODS:
        raise SweepError(f"{sweep.path}: method {sweep.method!r} is not implemented yet (grid is)")
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    ledger = Ledger(storage or default_storage(sweep), sweep.name, heartbeat_interval, grace_period, max_retry, poll_s)
    prepare(sweep, ledger)
    before = summarize(sweep, ledger)
    print(f"{sweep.name}: {len(sweep.cells)} cells, {before.done} done, {before.failed} failed, "
          f"{before.left} to run; {workers} worker{'s' * (workers > 1)}; ledger {ledger.url}", flush=True)  # fmt: skip
    if before.left == 0:
        return before  # every cell is done or failed: nothing to start workers for
    # spawn, not fork: a forked child would inherit the parent's open database connections and torch's threads.
    context = multiprocessing.get_context("spawn")
    threads = max(1, len(os.sched_getaffinity(0)) // workers)  # the cores this process may use, shared out
    processes = [context.Process(target=work, args=(sweep, ledger, objective, index, threads),
                                 name=f"sweep-worker-{index}") for index in range(workers)]  # fmt: skip
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
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
    return summarize(sweep, ledger)
