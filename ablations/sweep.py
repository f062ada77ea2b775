"""Sweeps: a YAML file in W&B's sweep schema, expanded into cells and run by local workers over an Optuna ledger.

The file is W&B's (``method``, ``metric``, ``parameters``, ``program``, ``command``, ...), so ``wandb sweep`` accepts
it too. Parameter names are the config's dotted keys (``model.conv``, ``loss.l1_weight``, ``train.seed``) or the
release's flag names, plus ours: ``variant`` (the variant file, required), ``profile``, and a stage-2 sweep's
``stage1`` (a grid or ablation file) and ``init_from_cell`` (the cell of it whose best checkpoint this sweep's cells
finetune from).

The ledger is an Optuna study (``<runs_dir>/<sweep name>/study.db`` by default, any RDB URL with ``--storage``). The
parent creates it once and enqueues every grid cell once; workers then claim WAITING trials one at a time, so no cell
runs twice (Optuna's own GridSampler runs cells twice under concurrent workers) and a grid samples nothing. A
heartbeat marks each running cell; a cell whose worker died goes stale after the grace period, is failed and
re-enqueued by ``RetryHeartbeatStaleTrialCallback``, and runs again, resuming from its run folder's checkpoint.

``method: ablation`` (ours) is the same machinery over another cell list: the base cell, then each axis changed alone.
``method: bayes`` and ``random`` search instead: workers ask the study for new trials (TPE or random sampling) until
``run_cap`` trials exist, each trial a cell with its own run folder; the objective reports the validation metric at
every evaluation and the pruner (median, or hyperband from ``early_terminate``) may stop it.

Optuna is imported lazily and only here (``core/`` knows nothing of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
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

from core.config import ALIASES, Config, ConfigError, config_hash, valid_keys
from core.io import atomic_write
from core.tracking import SWEEP_CELLS

# W&B's sweep schema rejects any other top-level key, so ours ride as constant parameters or command-line flags.
TOP_LEVEL_KEYS = (
    "apiVersion", "kind", "controller", "description", "program", "job", "image_uri", "entity", "project", "method",
    "command", "name", "run_cap", "metric", "metrics", "scheduler", "early_terminate", "parameters",
)  # fmt: skip
METHODS = ("grid", "random", "bayes", "ablation")
CELL_METHODS = ("grid", "ablation")  # a fixed list of cells, enqueued up front
SEARCH_METHODS = ("bayes", "random")  # trials sampled one at a time, up to run_cap
GOALS = ("minimize", "maximize")
DISTRIBUTIONS = ("uniform", "int_uniform", "log_uniform_values", "categorical")
# Ours, not config keys: which variant file, under which profile; a stage-2 sweep's stage-1 file and the stage-1 cell
# whose best checkpoint its cells finetune from (train.init_from, resolved by the local runner only).
OWN_PARAMETERS = ("variant", "profile", "stage1", "init_from_cell")
PARAMETER_FIELDS = ("value", "values", "distribution", "min", "max", "probabilities")
DEFAULT_METRIC = "val/mse"
# W&B's hyperband fields; s and strict have no Optuna counterpart (its HyperbandPruner derives its brackets itself).
EARLY_TERMINATE_FIELDS = ("type", "min_iter", "max_iter", "eta")
MEDIAN_STARTUP_TRIALS = 2  # the median pruner waits for this many finished trials before pruning any

# Ledger defaults: a worker's heartbeat every 10 s; a cell silent for 30 s is declared dead and re-enqueued.
CELL_THREADS = 1  # torch threads a cell computes with unless its config says: the same result whatever the workers
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
    """One cell (of a grid or ablation, or a search's trial): its parameters, a stable id, a readable name, and where
    its run lives."""

    id: str  # the hash of the cell's resolved config: the same config has the same id in every sweep, on every load
    name: str  # from its axis values, e.g. conv=3d-residual=true-l1_weight=0.5-seed=0 (a trial: trial=3-l1_weight=...)
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
    cells: tuple[Cell, ...] = ()  # grid or ablation cells in a stable order (empty for a search)
    raw: dict = field(default_factory=dict, compare=False)  # the file as read, for W&B's side of things
    # A search's settings (bayes, random):
    run_cap: int | None = None  # trials in all, counted across restarts
    seed: int = 0  # the sampler's seed: the sweep's train.seed (worker k of N samples with seed + k)
    pruner: dict = field(default_factory=dict)  # {"type": "median"|"hyperband", ...Optuna's arguments}
    first: dict = field(default_factory=dict)  # searched keys whose resolved config value is in range: trial 0

    @property
    def planned(self) -> int:
        """Cells or trials the sweep runs in all."""
        return (self.run_cap or 0) if self.method in SEARCH_METHODS else len(self.cells)


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
    if method in CELL_METHODS:
        if "early_terminate" in raw:
            raise SweepError(f"{where}: early_terminate is for bayes and random searches; a {method} runs every cell")
        return _with_cells(sweep, expand_grid(parameters) if method == "grid" else expand_ablation(parameters))
    return _search_settings(sweep)


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
            raise SweepError(f"{where}: parameters.{own} must be a file, profile or cell name as value or values")
    _check_stage(parameters, where)
    return tuple(parameters)


def _check_stage(parameters: list[Parameter], where: str) -> None:
    """``stage1: {value: FILE}`` and ``init_from_cell: {value: NAME}`` (or values) go together, name cells of that
    grid or ablation, and replace ``train.init_from``."""
    named = {ALIASES.get(p.name, p.name): p for p in parameters}
    if ("stage1" in named) != ("init_from_cell" in named):
        raise SweepError(
            f"{where}: parameters.stage1 and parameters.init_from_cell go together (a stage-1 sweep file and the "
            "name of its cell whose best checkpoint this sweep's cells finetune from)"
        )
    if "stage1" not in named:
        return
    if named["stage1"].kind != "value":
        raise SweepError(f"{where}: parameters.stage1 must be a constant {{value: sweeps/FILE.yaml}}")
    if "train.init_from" in named:
        raise SweepError(
            f"{where}: parameters.init_from_cell and {named['train.init_from'].name} both set train.init_from"
        )
    stage1 = named["stage1"].values[0]
    try:
        cells = _stage1_cells(stage1)
    except SweepError as exc:
        raise SweepError(f"{where}: parameters.stage1: {exc}") from exc
    for name in named["init_from_cell"].values:
        if name not in cells:
            raise SweepError(f"{where}: parameters.init_from_cell: {stage1} has no cell {name!r}; its cells: "
                             f"{', '.join(cells)}")  # fmt: skip


@functools.lru_cache(maxsize=8)
def _stage1_cells(path: str) -> dict[str, Cell]:
    stage1 = load_sweep(path)
    if stage1.method not in CELL_METHODS:
        raise SweepError(f"{path}: a stage-1 sweep must be a grid or ablation (its cells are known before it runs)")
    return {cell.name: cell for cell in stage1.cells}


def stage1_checkpoint(params: dict[str, Any]) -> Path | None:
    """The best checkpoint of the stage-1 cell a cell finetunes from (None when it trains from scratch)."""
    if "init_from_cell" not in params:
        return None
    return Path(_stage1_cells(params["stage1"])[params["init_from_cell"]].run_dir) / "checkpoints" / "best.pt"


def _check_stage1_finished(sweep: Sweep) -> None:
    """Before any stage-2 cell runs: every stage-1 cell it finetunes from has finished with a best checkpoint."""
    names = next((p.values for p in sweep.parameters if p.name == "init_from_cell"), ())
    stage1 = next((p.values[0] for p in sweep.parameters if p.name == "stage1"), None)
    for name in names:
        cell = _stage1_cells(stage1)[name]
        summary = Path(cell.run_dir) / "summary.json"
        status = json.loads(summary.read_text()).get("status", "unknown") if summary.is_file() else "not started"
        if status != "finished" or not stage1_checkpoint({"stage1": stage1, "init_from_cell": name}).is_file():
            raise SweepError(
                f"{sweep.path}: parameters.init_from_cell: stage-1 cell {name!r} of {stage1} is {status}, so there is "
                f"no best checkpoint in {cell.run_dir} to finetune from; run `python launch.py sweep {stage1}` first"
            )


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
    if method in CELL_METHODS:
        raise SweepError(f"{key}: a {method} needs value or values; distributions are for random and bayes search")
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


def expand_ablation(parameters: tuple[Parameter, ...]) -> list[dict[str, Any]]:
    """One factor at a time: the base cell (the first value of every ``values`` axis), then, axis by axis in the file's
    order, the base with that axis alone changed to each of its other values: 1 + sum(len(values) - 1) cells."""
    constants = {p.name: p.values[0] for p in parameters if p.kind == "value"}
    axes = [p for p in parameters if p.kind == "values"]
    base = {**constants, **{p.name: p.values[0] for p in axes}}
    return [base, *({**base, p.name: value} for p in axes for value in p.values[1:])]


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
    overrides = [f"--{key}={_text(value)}" for key, value in params.items() if key not in OWN_PARAMETERS]
    checkpoint = stage1_checkpoint(params)
    return [*overrides, f"--train.init_from={checkpoint}"] if checkpoint else overrides


def agent_command(sweep: Sweep, params: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` runs for a cell with these parameters: the file's ``command`` with W&B's macros
    expanded (``${env}``, ``${interpreter}``, ``${program}``, ``${args}``, ``${args_no_hyphens}``), each parameter
    written as W&B writes it (``--name=value``, Python's str of the value: ``True``, ``0.5``)."""
    command = sweep.raw.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    args = [f"--{name}={value}" for name, value in params.items()]
    macros = {
        "${env}": ["/usr/bin/env"],
        "${interpreter}": ["python"],
        "${program}": [str(sweep.raw.get("program", ""))],
        "${args}": args,
        "${args_no_hyphens}": [arg[2:] for arg in args],
    }
    return [part for token in command for part in macros.get(token, [token])]


def _load_params(params: dict[str, Any], where: str) -> Config:
    from ablations.variants import load_variant

    try:
        return load_variant(params["variant"], _overrides(params), params.get("profile"))
    except ConfigError as exc:
        raise SweepError(f"{where}: {exc}") from exc


def _make_cell(sweep: Sweep, params: dict[str, Any], axes: dict[str, Any], where: str, prefix: str = "") -> Cell:
    """A cell of ``params`` (its config loaded, so a bad value fails here), named from ``axes`` after ``prefix``.

    Its identity is its resolved config: the id is the config's hash and ends the run folder's name, so a cell whose
    files (variant, base, profile) changed is a new cell in a new folder, and the old run stays on disk as stale. It
    computes with ``train.threads`` = 1 unless its config sets it, so its result is the same whatever the workers."""
    cfg = _load_params(params, where)
    pinned = () if cfg.train.threads is not None else (f"--train.threads={CELL_THREADS}",)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=cfg.train.threads or CELL_THREADS))
    # A search's sampled floats are named to 4 significant digits (the config keeps them whole).
    shown = {k: float(f"{v:.4g}") if prefix and isinstance(v, float) else v for k, v in axes.items()}
    name = prefix + cell_name(shown, cfg.train.seed)
    tags = ",".join(f"{key}={_text(value)}" for key, value in zip(_short_names(list(axes)).values(), shown.values(),
                                                                  strict=True))  # fmt: skip
    overrides = (*_overrides(params), *pinned, f"--tracking.group={sweep.name}",
                 *([f"--tracking.tags={tags}"] * bool(tags)))  # fmt: skip
    identity = config_hash(cfg)
    run_dir = str(Path(cfg.train.runs_dir) / sweep.name / f"{name}-{identity}")
    return Cell(identity, name, params, axes, run_dir, overrides)


def _with_cells(sweep: Sweep, combos: list[dict[str, Any]]) -> Sweep:
    axes_names = [p.name for p in sweep.parameters if p.kind == "values"]
    cells = []
    for params in combos:
        axes = {name: params[name] for name in axes_names}
        label = ", ".join(f"{k}={_text(v)}" for k, v in axes.items()) or "the only cell"
        cells.append(_make_cell(sweep, params, axes, f"{sweep.path}: parameters (cell {label})"))
    folders = {str(Path(c.run_dir).parent) for c in cells}
    if len(folders) != 1:
        raise SweepError(f"{sweep.path}: every cell must share train.runs_dir (the sweep's ledger lives there)")
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids) or len({c.name for c in cells}) != len(cells):
        raise SweepError(f"{sweep.path}: two cells have the same name or resolve to the same config")
    return dataclasses.replace(sweep, cells=tuple(cells), folder=folders.pop())


def _search_settings(sweep: Sweep) -> Sweep:
    """A search's run_cap, sampler seed, pruner and first trial, checked: the constants with each searched parameter's
    bounds (or categories) must load."""
    where, raw = sweep.path, sweep.raw
    if "run_cap" not in raw:
        raise SweepError(f"{where}: a {sweep.method} search needs run_cap (how many trials to run in all)")
    seed = next((p for p in sweep.parameters if ALIASES.get(p.name, p.name) == "train.seed"), None)
    if seed is not None and seed.kind != "value":
        raise SweepError(f"{where}: parameters.{seed.name}: a search's seed must be a constant {{value: N}} (it seeds "
                         "the sampler and every trial; searching over seeds would pick the luckiest)")  # fmt: skip
    searched = [p for p in sweep.parameters if p.kind != "value"]
    if not searched:
        raise SweepError(f"{where}: a {sweep.method} search needs a parameter with values or a distribution")
    own = [p.name for p in searched if p.name in OWN_PARAMETERS]
    if own:
        raise SweepError(f"{where}: parameters.{own[0]} must be a constant in a search")
    base = {p.name: p.values[0] for p in sweep.parameters if p.kind == "value"}
    cfg = _load_params(base, f"{where}: parameters")
    for p in searched:
        probes = p.values if p.distribution in (None, "categorical") else (p.low, p.high)
        for value in probes:
            _load_params({**base, p.name: value}, f"{where}: parameters.{p.name}")
    first = {}
    for p in searched:
        value = _config_value(cfg, p.name)
        if p.distribution in (None, "categorical"):
            if any(_text(value) == _text(choice) for choice in p.values):
                first[p.name] = next(choice for choice in p.values if _text(value) == _text(choice))
        elif (
            isinstance(value, int | float)
            and p.low <= value <= p.high
            and (p.distribution != "int_uniform" or float(value).is_integer())
        ):
            first[p.name] = int(value) if p.distribution == "int_uniform" else float(value)
    return dataclasses.replace(
        sweep,
        folder=str(Path(cfg.train.runs_dir) / sweep.name),
        run_cap=raw["run_cap"],
        seed=cfg.train.seed,
        pruner=_pruner_spec(raw.get("early_terminate"), cfg, where),
        first=first,
    )


def _config_value(cfg: Config, name: str) -> Any:
    value = cfg
    for part in ALIASES.get(name, name).split("."):
        value = getattr(value, part)
    return value


def _pruner_spec(early_terminate: dict | None, cfg: Config, where: str) -> dict[str, Any]:
    """W&B's ``early_terminate`` as Optuna's pruner arguments; steps are training steps.

    Absent: a median pruner (a trial stops when its value at an evaluation is worse than the median of the finished
    trials' at the same step, once MEDIAN_STARTUP_TRIALS have finished). ``{type: hyperband, min_iter, max_iter, eta}``:
    W&B counts iterations in evaluations, so min_iter and max_iter (default: the whole run) are multiplied by
    ``train.eval_every``; eta (default 3) is the reduction factor."""
    if early_terminate is None:
        return {"type": "median", "n_startup_trials": MEDIAN_STARTUP_TRIALS}
    key = f"{where}: early_terminate"
    extra = [name for name in early_terminate if name not in EARLY_TERMINATE_FIELDS]
    if extra:
        raise SweepError(f"{key}: unsupported field {extra[0]!r} (supported: {', '.join(EARLY_TERMINATE_FIELDS)})")
    if early_terminate.get("type") != "hyperband":
        raise SweepError(f"{key}: type must be hyperband (W&B's only one), got {early_terminate.get('type')!r}")
    for name in ("min_iter", "max_iter", "eta"):
        value = early_terminate.get(name)
        lowest = 2 if name == "eta" else 1
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= lowest):
            raise SweepError(f"{key}: {name} must be an integer of at least {lowest}, got {value!r}")
    if "min_iter" not in early_terminate:
        raise SweepError(f"{key}: hyperband needs min_iter (evaluations every trial gets before it can be stopped)")
    eval_every, steps = cfg.train.eval_every, cfg.train.steps
    max_resource = early_terminate["max_iter"] * eval_every if "max_iter" in early_terminate else steps
    min_resource = early_terminate["min_iter"] * eval_every
    if not min_resource < max_resource:
        raise SweepError(f"{key}: min_iter x train.eval_every ({min_resource}) must be below max_iter x "
                         f"train.eval_every or train.steps ({max_resource})")  # fmt: skip
    return {"type": "hyperband", "min_resource": min_resource, "max_resource": max_resource,
            "reduction_factor": early_terminate.get("eta", 3)}  # fmt: skip


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
        if sweep.first and not study.get_trials(deepcopy=False):
            study.enqueue_trial({name: _choice(value) for name, value in sweep.first.items()})
        for cell in sweep.cells:
            study.enqueue_trial(
                _fixed_params(cell), user_attrs={"cell_id": cell.id, "cell_name": cell.name}, skip_if_exists=True
            )
        if sweep.method in CELL_METHODS:  # what a report reads to tell current cells from stale ones
            listing = {"sweep": sweep.path, "cells": [{"id": c.id, "name": c.name, "run_dir": c.run_dir}
                                                      for c in sweep.cells]}  # fmt: skip
            with atomic_write(Path(sweep.folder) / SWEEP_CELLS, "w") as handle:
                json.dump(listing, handle, indent=1)


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
    """The trial's value of each searched parameter (``values`` axes are categorical)."""
    values = {}
    for p in sweep.parameters:
        if p.kind == "value":
            continue
        if p.distribution in (None, "categorical"):
            choices = [_choice(v) for v in p.values]
            values[p.name] = p.values[choices.index(trial.suggest_categorical(p.name, choices))]
        elif p.distribution == "int_uniform":
            values[p.name] = trial.suggest_int(p.name, p.low, p.high)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.distribution == "log_uniform_values")
    return values


def search_cell(sweep: Sweep, slot: int, values: dict[str, Any]) -> Cell:
    """Trial ``slot``'s cell: the constants with its sampled values, named ``trial=<slot>-<values>-seed=<seed>``."""
    params = {**{p.name: p.values[0] for p in sweep.parameters if p.kind == "value"}, **values}
    return _make_cell(sweep, params, values, f"{sweep.path}: trial {slot} ({values})", prefix=f"trial={slot}-")


def _fixed_params(cell: Cell) -> dict[str, Any]:
    # Optuna compares enqueued params by value; the id covers them all, and keeps lists and None out of its checks.
    return {"cell_id": cell.id}


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
    the validation MSE, ``test/ssim`` the validation SSIM); a True answer stops the run as ``pruned``."""
    from core.trainer import train

    score = "mse" if metric == "val/mse" else metric.removeprefix("test/")

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
    """One worker: claim waiting cells (a search: waiting trials, else new ones up to run_cap) until none is waiting
    or running; returns how many cells it ran.

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
    search = sweep.method in SEARCH_METHODS
    # Samplers and pruners live in the process, not in the database: every worker builds its own.
    sampler, pruner = (_sampler(sweep, worker), _pruner(sweep)) if search else (None, optuna.pruners.NopPruner())
    study = optuna.load_study(study_name=ledger.study_name, storage=storage, sampler=sampler, pruner=pruner)
    study_id = storage.get_study_id_from_name(ledger.study_name)
    cells = {cell.id: cell for cell in sweep.cells}
    ran = 0
    while True:
        with _exclusive(ledger), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # ask() warns that heartbeats are meant for optimize(); this loop is our optimize(), beating as it does.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            optuna.storages.fail_stale_trials(study)
            claimed = _claim_trial(study, storage, study_id, sweep) if search else _claim(storage, study_id, cells)
        if claimed is None:
            running = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if not any(search or t.user_attrs.get("cell_id") in cells for t in running):
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


def _slot(trial) -> int:
    """The trial's place in a search's run_cap: its own number, or the number of the trial a retry replaces."""
    return int(trial.user_attrs.get("slot", trial.number))


def _claim_trial(study, storage, study_id: int, sweep: Sweep) -> tuple[int, int, Cell, Any] | None:
    """A search's next trial, RUNNING: a waiting one (the first trial, a retry) or, while fewer than run_cap trials
    exist (retries share their original's slot), a new one the sampler fills; None when the cap is reached."""
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
        storage.record_heartbeat(trial._trial_id)
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
            continue
        for key, value in (("cell_id", cell.id), ("cell_name", cell.name), ("values", values)):
            trial.set_user_attr(key, value)
        return trial._trial_id, trial.number, cell, trial


def _run_cell(study, storage, trial_id, number, cell, sweep, ledger, objective, worker, trial=None) -> None:
    """Run one claimed cell and record its outcome. ``trial`` (a search's) reports to the pruner; a grid's reports
    are only recorded."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    start = time.perf_counter()
    value, status, reason = None, "finished", ""
    reported: list[int] = []

    def report(step: int, value: float) -> bool:
        reported.append(step)
        if trial is None:
            storage.set_trial_intermediate_value(trial_id, step, float(value))
            return False
        trial.report(float(value), step)
        return trial.should_prune()

    with _Heartbeat(storage, trial_id, ledger.heartbeat_interval):
        try:
            value = float(objective(cell, sweep.metric, report))
        except CellFailed as exc:
            status, reason = exc.status, exc.reason
            if status == "pruned" and reported:
                reason = f"pruned at step {reported[-1]}"
                storage.set_trial_user_attr(trial_id, "step", reported[-1])
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
            user_attrs={k: v for k, v in frozen.user_attrs.items() if k in ("cell_id", "cell_name", "slot", "values")},
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
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    _check_stage1_finished(sweep)
    ledger = Ledger(storage or default_storage(sweep), sweep.name, heartbeat_interval, grace_period, max_retry, poll_s)
    prepare(sweep, ledger)
    before = summarize(sweep, ledger)
    what = f"a {sweep.method} search of {sweep.planned} trials" if sweep.method in SEARCH_METHODS else (
        f"{len(sweep.cells)} cells")  # fmt: skip
    print(f"{sweep.name}: {what}, {before.done} done, {before.failed} failed, {before.pruned} pruned, "
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
