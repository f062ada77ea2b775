"""The sweep file: a YAML file in W&B's sweep schema, checked and expanded into cells.

The file is W&B's (``method``, ``metric``, ``parameters``, ``program``, ``command``, ...), so ``wandb sweep`` accepts
it too. Parameter names are the config's dotted keys (``model.conv``, ``loss.l1_weight``, ``train.seed``; W&B's nested
``model: {parameters: {conv: ...}}`` is flattened to them) or the release's flag names, plus ours: ``variant`` (the
variant file, required), ``profile``, and a stage-2 sweep's ``stage1`` (a grid or ablation file) and
``init_from_cell`` (the cell of it whose best checkpoint this sweep's cells finetune from). Each W&B distribution is
sampled by its Optuna equivalent or refused with the reason (:data:`REFUSED_DISTRIBUTIONS`; sweeps/README.md).

``method: grid`` expands into the cartesian product of the ``values`` axes; ``method: ablation`` (ours) into the base
cell, then each axis changed alone. ``method: bayes`` and ``random`` search instead: their cells are trials the ledger
samples one at a time (:func:`search_cell`), up to ``run_cap``. A cell is its resolved config: its id is the config's
hash and ends its run folder's name.

Nothing here imports Optuna or torch.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config import (
    ALIASES,
    NAME_MAX_BYTES,
    Config,
    ConfigError,
    config_hash,
    is_plain_name,
    read_yaml,
    valid_keys,
)
from core.records import METRICS

# W&B's sweep schema rejects any other top-level key, so ours ride as constant parameters or command-line flags.
TOP_LEVEL_KEYS = (
    "apiVersion", "kind", "controller", "description", "program", "job", "image_uri", "entity", "project", "method",
    "command", "name", "run_cap", "metric", "metrics", "scheduler", "early_terminate", "parameters",
)  # fmt: skip
METHODS = ("grid", "random", "bayes", "ablation")
CELL_METHODS = ("grid", "ablation")  # a fixed list of cells, enqueued up front
SEARCH_METHODS = ("bayes", "random")  # trials sampled one at a time, up to run_cap
GOALS = ("minimize", "maximize")
# W&B's distributions the ledger samples with an Optuna equivalent (ledger._suggest; sweeps/README.md has the table),
# each with the fields W&B's schema allows beside ``distribution``. ``log_uniform`` and ``inv_log_uniform`` take
# natural-log bounds, the ``_values`` forms the values themselves; ``q`` (default 1) rounds to its multiples.
DISTRIBUTION_FIELDS = {
    "constant": ("value",),
    "categorical": ("values",),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
}
DISTRIBUTIONS = tuple(DISTRIBUTION_FIELDS)
_UNBOUNDED = (
    "Optuna has no {what} distribution: its samplers (TPE, random) search a bounded range, and cutting the {what} at "
    "bounds would change it; give the range instead, e.g. {instead}"
)
# W&B's distributions with no Optuna equivalent, refused by name with the reason (never sampled as something else).
REFUSED_DISTRIBUTIONS = {
    "normal": _UNBOUNDED.format(what="normal", instead="{distribution: uniform, min: mu - 2 sigma, max: mu + 2 sigma}"),
    "q_normal": _UNBOUNDED.format(
        what="normal", instead="{distribution: q_uniform, min: mu - 2 sigma, max: mu + 2 sigma, q: q}"
    ),
    "log_normal": _UNBOUNDED.format(
        what="log-normal",
        instead="{distribution: log_uniform, min: mu - 2 sigma, max: mu + 2 sigma} (natural-log bounds)",
    ),
    "q_log_normal": _UNBOUNDED.format(
        what="log-normal",
        instead="{distribution: q_log_uniform, min: mu - 2 sigma, max: mu + 2 sigma, q: q} (natural-log bounds)",
    ),
    "beta": "Optuna has no beta distribution (its floats are uniform or log-uniform over a range, so a and b would be "
    "ignored); use {distribution: uniform, min: 0, max: 1}",
    "q_beta": "Optuna has no beta distribution (its floats are uniform or log-uniform over a range, so a and b would "
    "be ignored); use {distribution: q_uniform, min: 0, max: 1, q: q}",
    "categorical_w_probabilities": "Optuna's samplers cannot weight categories: random draws each equally often and "
    "TPE from the trials so far, so the probabilities would be ignored; use values alone (categorical)",
}
# Ours, not config keys: which variant file, under which profile; a stage-2 sweep's stage-1 file and the stage-1 cell
# whose best checkpoint its cells finetune from (train.init_from, resolved by the local runner only).
# The SLURM launcher's job settings (ablations/slurm.py) too: constants, never part of a cell's config or id.
LAUNCHER_PARAMETERS = ("slurm.partition", "slurm.account", "slurm.time", "slurm.gpus_per_job", "slurm.cpus_per_job")
OWN_PARAMETERS = ("variant", "profile", "stage1", "init_from_cell", *LAUNCHER_PARAMETERS)
# Every field of a W&B parameter: ours, those of refused distributions (named in their refusal rather than as unknown),
# and ``parameters``, W&B's nesting (``model: {parameters: {residual: ...}}`` is our dotted key ``model.residual``).
PARAMETER_FIELDS = ("value", "values", "distribution", "min", "max", "q", "probabilities", "mu", "sigma", "a", "b",
                    "parameters")  # fmt: skip
DEFAULT_METRIC = "val/mse"
METRIC_FIELDS = ("name", "goal", "target")
# W&B's other metric fields: the local ledger cannot do what they ask, so a file using them is refused, not run as if
# they were absent.
REFUSED_METRIC_FIELDS = {
    "impute": "Optuna leaves a failed or pruned trial out of its model instead of imputing a value for it; remove it",
    "impute_while_running": "Optuna's pruners read the running trials' reported values themselves; remove it",
}
Q_TOLERANCE = 1e-9  # relative slack when asking whether a bound is a multiple of q (0.3 / 0.1 is 2.9999999999999996)
# W&B's hyperband fields; s and strict have no Optuna counterpart (its HyperbandPruner derives its brackets itself).
EARLY_TERMINATE_FIELDS = ("type", "min_iter", "max_iter", "eta")
MEDIAN_STARTUP_TRIALS = 2  # the median pruner waits for this many finished trials before pruning any
CELL_THREADS = 1  # torch threads a cell computes with unless its config says: the same result whatever the workers


class SweepError(ValueError):
    """A bad sweep file or ledger: the message names the file and the key."""


# ---------------------------------------------------------------------------------------------------------------------
# The sweep file


@dataclass(frozen=True)
class Parameter:
    """One entry of ``parameters``: a constant (``value``), an axis (``values``) or a ``distribution``.

    A nested W&B parameter is here under its dotted name. A distribution keeps W&B's name; ``low`` and ``high`` are
    its range in values (a natural-log bound of ``log_uniform`` or ``inv_log_uniform`` is converted), ``q`` the step of
    a ``q_`` form."""

    name: str
    kind: str  # value | values | distribution
    values: tuple = ()  # the constant as a 1-tuple, or the axis's values, or a categorical distribution's
    distribution: str | None = None
    low: float | None = None
    high: float | None = None
    q: float | None = None  # the values are multiples of q (integers when q is an integer)

    @property
    def support(self) -> tuple[float, float]:
        """The lowest and highest value the distribution gives: [low, high], or the multiples of q within it."""
        if self.q is None:
            return self.low, self.high
        first = math.ceil(self.low / self.q - Q_TOLERANCE)
        last = math.floor(self.high / self.q + Q_TOLERANCE)
        return _multiple(first, self.q), _multiple(last, self.q)

    def quantize(self, value: float) -> float:
        """W&B's ``round(value / q) * q``, kept within the support (W&B's rounding can leave [min, max], where the
        config may refuse the value: a learning rate of 0)."""
        lowest, highest = self.support
        return min(max(_multiple(round(value / self.q), self.q), lowest), highest)

    def holds(self, value: Any) -> bool:
        """Whether a number is one this distribution gives: in range, and an integer or a multiple of q if it must."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        lowest, highest = self.support
        if not lowest <= value <= highest:
            return False
        if self.distribution == "int_uniform":
            return float(value).is_integer()
        return self.q is None or math.isclose(self.quantize(value), value, rel_tol=Q_TOLERANCE, abs_tol=1e-12)


def _multiple(count: int, q: float) -> float:
    """``count * q``, an int for an integer q; a float rid of binary noise (3 * 0.1 is 0.30000000000000004)."""
    return count * q if isinstance(q, int) else float(f"{count * q:.12g}")


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
    seed: int = 0  # its resolved config's train.seed (the ledger records it as the trial's attribute, not a parameter)


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
    target: float | None = None  # metric.target: once a finished cell reaches it, no further cell starts

    def reached(self, value: float | None) -> bool:
        """Whether a finished cell's metric ``value`` reaches ``target`` (at or below it when minimising)."""
        if self.target is None or value is None:
            return False
        return value <= self.target if self.goal == "minimize" else value >= self.target

    @property
    def planned(self) -> int:
        """Cells or trials the sweep runs in all."""
        return (self.run_cap or 0) if self.method in SEARCH_METHODS else len(self.cells)


# Whether loading a cell checks that the files its runs would open exist; a dry run (ablations/plan.py) turns it off
# and reports them instead, so a plan can be read before the data is in place.
_CHECK_FILES = contextvars.ContextVar("check_files", default=True)

MAX_CELLS = 10_000
"""The most cells a grid or ablation may expand to unless the user raises it (``launch.py sweep --max-cells``): the
count is known from the axes' lengths before a cell is built, so a file of a few lines cannot ask for billions."""
_MAX_CELLS = contextvars.ContextVar("max_cells", default=MAX_CELLS)


def load_sweep(path: str | Path, check_files: bool = True, max_cells: int | None = None) -> Sweep:
    """Read and validate a sweep file; every grid cell's config is loaded once, so a bad value fails here.

    ``check_files=False`` skips the check that the data files each cell's runs would open exist (:func:`missing_files`
    lists them): everything else is checked as before. ``max_cells`` raises :data:`MAX_CELLS` for this sweep and the
    stage-1 file it names."""
    token = _CHECK_FILES.set(check_files and _CHECK_FILES.get())
    cap = _MAX_CELLS.set(max_cells if max_cells is not None else _MAX_CELLS.get())
    try:
        return _load_sweep(Path(path))
    finally:
        _MAX_CELLS.reset(cap)
        _CHECK_FILES.reset(token)


def _load_sweep(path: Path) -> Sweep:
    where = str(path)
    if not path.is_file():
        raise SweepError(f"{where}: no such sweep file")
    try:
        raw = read_yaml(path.read_text())
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
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not is_plain_name(name):
        raise SweepError(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
    metric, goal, target = _metric(raw.get("metric"), where)
    if "run_cap" in raw and not (isinstance(raw["run_cap"], int) and raw["run_cap"] >= 1):
        raise SweepError(f"{where}: run_cap must be a positive integer, got {raw['run_cap']!r}")
    for key in ("command", "early_terminate"):
        expected = list if key == "command" else dict
        if key in raw and not isinstance(raw[key], expected):
            raise SweepError(f"{where}: {key} must be a {'list' if expected is list else 'mapping'}")
    parameters = _parameters(raw.get("parameters"), where, method)
    sweep = Sweep(where, name, method, metric, goal, parameters, folder="", raw=raw, target=target)
    if method in CELL_METHODS:
        if "early_terminate" in raw:
            raise SweepError(f"{where}: early_terminate is for bayes and random searches; a {method} runs every cell")
        _check_cell_count(parameters, method, where)
        return _with_cells(sweep, expand_grid(parameters) if method == "grid" else expand_ablation(parameters))
    return _search_settings(sweep)


def _check_cell_count(parameters: tuple[Parameter, ...], method: str, where: str) -> None:
    """Refuse a grid or ablation of more than the allowed cells, counted from its axes before any cell is built."""
    lengths = [len(p.values) for p in parameters if p.kind == "values"]
    count = math.prod(lengths) if method == "grid" else 1 + sum(n - 1 for n in lengths)
    limit = _MAX_CELLS.get()
    if count > limit:
        shape = (
            " x ".join(str(n) for n in lengths) if method == "grid" else f"1 + the other values of {len(lengths)} axes"
        )
        raise SweepError(f"{where}: the {method} has {count:,} cells ({shape}), more than the {limit:,} a sweep may "
                         "have; if you mean it, raise the limit with launch.py sweep --max-cells N")  # fmt: skip


def metric_names() -> tuple[str, ...]:
    """The metrics a sweep ranks by: a run's best validation score of each metric (every evaluation logs ``val/mse``,
    ``val/mae``, ``val/psnr`` and ``val/ssim``, the pruner's intermediate values) and its test scores."""
    return (*(f"val/{name}" for name in METRICS), *(f"test/{name}" for name in METRICS))


def _metric(raw: Any, where: str) -> tuple[str, str, float | None]:
    """``(name, goal, target)``; ``target`` (W&B's): no cell is started once a finished one has reached it."""
    if raw is None:
        return DEFAULT_METRIC, "minimize", None
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: metric must be a mapping {{name, goal}}, got {raw!r}")
    for key, value in raw.items():
        if key in REFUSED_METRIC_FIELDS:
            raise SweepError(f"{where}: metric.{key} ({value!r}) is W&B's, but {REFUSED_METRIC_FIELDS[key]}")
        if key not in METRIC_FIELDS:
            raise SweepError(f"{where}: metric: unknown key {key!r} (allowed: {', '.join(METRIC_FIELDS)})")
    name, goal = raw.get("name", DEFAULT_METRIC), raw.get("goal", "minimize")
    if name not in metric_names():
        raise SweepError(f"{where}: metric.name must be one of {', '.join(metric_names())}, got {name!r}")
    if goal not in GOALS:
        raise SweepError(f"{where}: metric.goal must be minimize or maximize, got {goal!r}")
    target = raw.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)
                               or not math.isfinite(target)):  # fmt: skip
        raise SweepError(f"{where}: metric.target must be a finite number, got {target!r}")
    return name, goal, None if target is None else float(target)


def _parameters(raw: Any, where: str, method: str) -> tuple[Parameter, ...]:
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{where}: parameters must be a non-empty mapping of parameter name to its spec")
    known = [*OWN_PARAMETERS, *valid_keys(), *ALIASES]
    pairs = _flatten(raw, where)
    parameters = []
    for name, spec in pairs:
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
    for name, _ in pairs:
        dotted = ALIASES.get(name, name)
        if dotted in seen:
            raise SweepError(f"{where}: parameters {seen[dotted]!r} and {name!r} both set {dotted}")
        seen[dotted] = name
    if "variant" not in seen:
        raise SweepError(f"{where}: parameters.variant is required (e.g. variant: {{value: ablations/.../x.yaml}})")
    for own in OWN_PARAMETERS:
        spec = next((p for p in parameters if p.name == own), None)
        if spec is not None and own in LAUNCHER_PARAMETERS:
            _check_launcher_parameter(spec, f"{where}: parameters.{own}")
        elif spec is not None and (spec.kind == "distribution" or not all(isinstance(v, str) for v in spec.values)):
            raise SweepError(f"{where}: parameters.{own} must be a file, profile or cell name as value or values")
    _check_stage(parameters, where)
    return tuple(parameters)


def _check_launcher_parameter(spec: Parameter, key: str) -> None:
    """A SLURM setting is one constant (every worker's job asks for the same), of the type the launcher needs."""
    from ablations.slurm import launcher_parameter_problem

    if spec.kind != "value":
        raise SweepError(f"{key}: a SLURM setting is a constant {{value: X}}, not an axis or a distribution")
    problem = launcher_parameter_problem(spec.name, spec.values[0])
    if problem:
        raise SweepError(f"{key}: {problem}")


def _flatten(raw: dict, where: str, prefix: str = "") -> list[tuple[str, Any]]:
    """W&B's nested parameters as our dotted keys, in the file's order: ``model: {parameters: {residual: {...}}}`` is
    ``model.residual``. A list of pairs, not a dict, so a key given both nested and dotted is caught, not merged."""
    pairs = []
    for name, spec in raw.items():
        dotted = f"{prefix}{name}"
        if not (isinstance(spec, dict) and "parameters" in spec):
            pairs.append((dotted, spec))
            continue
        extra = [field_ for field_ in spec if field_ != "parameters"]
        if extra:
            raise SweepError(f"{where}: parameters.{dotted}: nested parameters take no other field, got {extra[0]!r}")
        if not isinstance(spec["parameters"], dict) or not spec["parameters"]:
            raise SweepError(f"{where}: parameters.{dotted}.parameters must be a non-empty mapping of parameter specs")
        pairs.extend(_flatten(spec["parameters"], where, f"{dotted}."))
    return pairs


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


def stage1_file(sweep: Sweep) -> str | None:
    """The stage-1 sweep file a stage-2 sweep finetunes from (None for a sweep that starts from scratch)."""
    return next((p.values[0] for p in sweep.parameters if p.name == "stage1"), None)


def stage1_unfinished(sweep: Sweep) -> list[str]:
    """The stage-1 cells this sweep finetunes from that have no finished run with a best checkpoint yet."""
    names = next((p.values for p in sweep.parameters if p.name == "init_from_cell"), ())
    stage1 = stage1_file(sweep)
    return [name for name in names if _stage1_status(stage1, name) != "finished"]


def _stage1_status(stage1: str, name: str) -> str:
    """The stage-1 cell's run as its summary says (``not started`` without one), ``no checkpoint`` when it finished
    without a best checkpoint."""
    summary = Path(_stage1_cells(stage1)[name].run_dir) / "summary.json"
    status = json.loads(summary.read_text()).get("status", "unknown") if summary.is_file() else "not started"
    if status == "finished" and not stage1_checkpoint({"stage1": stage1, "init_from_cell": name}).is_file():
        return "finished without a best checkpoint"
    return status


def _check_stage1_finished(sweep: Sweep, ran: dict[str, tuple[str, str]] | None = None) -> None:
    """Before any stage-2 cell runs: every stage-1 cell it finetunes from has finished with a best checkpoint.

    ``ran`` maps stage-1 cell names to ``(status, reason)`` in stage 1's ledger once stage 1 has just run
    (:func:`ablations.runner.run_sweep` runs it first): the refusal then says how that cell ended and why."""
    stage1 = stage1_file(sweep)
    for name in stage1_unfinished(sweep):
        cell = _stage1_cells(stage1)[name]
        head = f"{sweep.path}: parameters.init_from_cell: stage-1 cell {name!r} of {stage1}"
        status, reason = (ran or {}).get(name, ("", ""))
        if ran is None:
            raise SweepError(
                f"{head} is {_stage1_status(stage1, name)}, so there is no best checkpoint in {cell.run_dir} to "
                f"finetune from; run `python launch.py sweep {stage1}` first"
            )
        if status == "done":  # done in the ledger, yet its run folder here holds no finished run with a checkpoint
            raise SweepError(
                f"{head} is done in stage 1's ledger, but its run folder {cell.run_dir} here is "
                f"{_stage1_status(stage1, name)}: was it trained on a machine whose run folders this one does not see?"
            )
        why = f" ({reason})" if reason else ""
        raise SweepError(
            f"{head} ended {status or 'without a record'}{why} when stage 1 ran, so there is no best checkpoint in "
            f"{cell.run_dir} to finetune from; stage 2 did not start. A failed cell is not run again: fix the cause, "
            f"then start stage 1 over (remove its ledger, {Path(cell.run_dir).parent / 'study.db'} by default) and "
            "run this command again"
        )


def _parameter(name: str, spec: dict, key: str, method: str) -> Parameter:
    """One parameter as W&B's schema reads it: its ``distribution`` named, or inferred as W&B infers it (``value``: a
    constant; ``values``: categorical, or categorical_w_probabilities with ``probabilities``; ``min`` and ``max``:
    int_uniform when both are integers, else uniform). A grid or ablation expands int_uniform and q_uniform into values
    as W&B's grid does; a search keeps the distribution, which ledger._suggest samples with its Optuna equivalent."""
    inferred = "distribution" not in spec
    distribution = _inferred_distribution(spec, key) if inferred else spec["distribution"]
    label = f"distribution {distribution}" + (" (inferred from the fields)" if inferred else "")
    if distribution in REFUSED_DISTRIBUTIONS:
        raise SweepError(f"{key}: {label} is W&B's, but {REFUSED_DISTRIBUTIONS[distribution]}. "
                         f"distribution must be one of {', '.join(DISTRIBUTIONS)}")  # fmt: skip
    if distribution not in DISTRIBUTION_FIELDS:
        refused = ", ".join(REFUSED_DISTRIBUTIONS)
        raise SweepError(f"{key}: distribution must be one of {', '.join(DISTRIBUTIONS)} (W&B's {refused} are refused "
                         f"with the reason), got {distribution!r}")  # fmt: skip
    # The fields W&B's schema forbids beside this distribution (it allows no additional properties).
    foreign = [
        field_ for field_ in PARAMETER_FIELDS if field_ not in (*DISTRIBUTION_FIELDS[distribution], "distribution")
    ]
    if distribution == "constant":
        if "value" not in spec:
            raise SweepError(f"{key}: distribution constant needs value")
        _no_fields(spec, foreign, key, "value")
        return Parameter(name, "value", (spec["value"],))
    if distribution == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            what = (
                "values must be a non-empty list"
                if inferred
                else "a categorical distribution needs a non-empty values list"
            )
            raise SweepError(f"{key}: {what}, got {values!r}")
        _no_fields(spec, foreign, key, "values")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise SweepError(f"{key}: values repeat an entry: {values!r}")
        return Parameter(name, "values", tuple(values), None if inferred else "categorical")
    low, high, q = _range(spec, distribution, key)
    _no_fields(spec, foreign, key, label)
    if method in CELL_METHODS:
        if distribution == "int_uniform":
            return Parameter(name, "values", tuple(range(low, high + 1)))
        if distribution == "q_uniform":  # W&B's grid: numpy's arange(min, max, q), so max itself is left out
            count = math.ceil((high - low) / q - Q_TOLERANCE)
            exact = isinstance(low, int) and isinstance(q, int)
            values = [low + k * q if exact else float(f"{low + k * q:.12g}") for k in range(count)]
            return Parameter(name, "values", tuple(values))
        raise SweepError(f"{key}: a {method} needs value or values (or int_uniform or q_uniform, which it expands as "
                         f"W&B's grid does); distribution {distribution} is for random and bayes search")  # fmt: skip
    if distribution in ("log_uniform", "q_log_uniform", "inv_log_uniform"):
        # W&B's natural-log bounds: log_uniform is exp(U(min, max)), inv_log_uniform exp(-U(min, max)); both are
        # log-uniform in value, over [exp(min), exp(max)] and [exp(-max), exp(-min)].
        if distribution == "inv_log_uniform":
            low, high = -high, -low
        try:
            low, high = math.exp(low), math.exp(high)
        except OverflowError:
            low = high = math.inf
        if not 0 < low < high < math.inf:
            raise SweepError(f"{key}: distribution {distribution} takes natural-log bounds; exp of min and max "
                             f"({spec['min']}, {spec['max']}) must be distinct positive floats")  # fmt: skip
    parameter = Parameter(name, "distribution", (), distribution, low, high, q)
    if q is not None and parameter.support[0] > parameter.support[1]:
        raise SweepError(f"{key}: distribution {distribution} has no multiple of q ({q}) between {low:g} and {high:g}")
    return parameter


def _inferred_distribution(spec: dict, key: str) -> str:
    """The distribution W&B's schema infers for a parameter that names none."""
    if "value" in spec and "values" in spec:
        raise SweepError(f"{key}: give exactly one of value, values or distribution, got value and values")
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if "min" in spec or "max" in spec:
        integers = all(isinstance(spec.get(b), int) and not isinstance(spec.get(b), bool) for b in ("min", "max"))
        return "int_uniform" if integers else "uniform"
    raise SweepError(f"{key}: give exactly one of value, values, min and max, or a distribution, got none "
                     f"(fields: {', '.join(map(str, spec)) or 'none'})")  # fmt: skip


def _range(spec: dict, distribution: str, key: str) -> tuple[Any, Any, Any]:
    """min, max and q (None unless a q_ form) of a ranged distribution, checked as W&B's schema checks them."""
    low, high = spec.get("min"), spec.get("max")
    for bound, value in (("min", low), ("max", high)):
        number = isinstance(value, int) if distribution == "int_uniform" else isinstance(value, int | float)
        if not number or isinstance(value, bool) or not math.isfinite(value):
            kind = "an integer" if distribution == "int_uniform" else "a number"
            raise SweepError(f"{key}: distribution {distribution} needs {bound} as {kind}, got {value!r}")
    if not low < high:
        raise SweepError(f"{key}: min ({low}) must be below max ({high})")
    if distribution.endswith("log_uniform_values") and low <= 0:
        raise SweepError(
            f"{key}: {distribution} needs min > 0 (its bounds are values, sampled on a log scale), got {low}"
        )
    if "q" not in DISTRIBUTION_FIELDS[distribution]:
        return low, high, None
    q = spec.get("q", 1)
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < math.inf:
        raise SweepError(f"{key}: distribution {distribution} needs q as a positive number, got {q!r}")
    return low, high, q


def _no_fields(spec: dict, fields: Sequence[str], key: str, shape: str) -> None:
    extra = [field_ for field_ in fields if field_ in spec]
    if extra:
        raise SweepError(f"{key}: {extra[0]!r} does not go with {shape}")


# ---------------------------------------------------------------------------------------------------------------------
# Cells: grid and ablation expansion, names, identity


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
    name = re.sub(r"[^A-Za-z0-9_.=,-]", "_", "-".join(parts))
    # The run folder is <name>-<id8>, within NAME_MAX_BYTES: a name too long for it is cut, and ends in a digest of
    # the whole so that names cut alike stay apart.
    if len(name) > NAME_MAX_BYTES - 9:
        name = f"{name[: NAME_MAX_BYTES - 18]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def cell_config(cell: Cell) -> Config:
    """The cell's resolved config: its variant and profile with the cell's overrides (group and tags included)."""
    from core.variants import load_variant

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
    from core.variants import load_variant

    try:
        cfg = load_variant(params["variant"], _overrides(params), params.get("profile"))
    except ConfigError as exc:
        raise SweepError(f"{where}: {exc}") from exc
    # Files every run of the cell would open: missing now, every cell would fail later, one by one.
    missing = missing_files(cfg) if _CHECK_FILES.get() else []
    if missing:
        raise SweepError(f"{where}: {missing[0][0]} names {missing[0][1]}, which does not exist")
    return cfg


def missing_files(cfg: Config) -> list[tuple[str, str]]:
    """``(key, path)`` of each data file or folder the config names that does not exist."""
    named = (("data.test_path", cfg.data.test_path), ("data.mnist", cfg.data.mnist), ("data.root", cfg.data.root),
             *(("data.train_path", part) for part in (cfg.data.train_path or "").split(",")))  # fmt: skip
    return [(key, str(path)) for key, path in named if path and not Path(path).exists()]


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
    return Cell(identity, name, params, axes, run_dir, overrides, cfg.train.seed)


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


def search_cell(sweep: Sweep, slot: int, values: dict[str, Any]) -> Cell:
    """Trial ``slot``'s cell: the constants with its sampled values, named ``trial=<slot>-<values>-seed=<seed>``."""
    params = {**{p.name: p.values[0] for p in sweep.parameters if p.kind == "value"}, **values}
    return _make_cell(sweep, params, values, f"{sweep.path}: trial {slot} ({values})", prefix=f"trial={slot}-")


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
        probes = p.values if p.kind == "values" else p.support  # the extreme values a trial can be given
        for value in probes:
            _load_params({**base, p.name: value}, f"{where}: parameters.{p.name}")
    first = {}
    for p in searched:
        value = _config_value(cfg, p.name)
        if p.kind == "values":
            if any(_text(value) == _text(choice) for choice in p.values):
                first[p.name] = next(choice for choice in p.values if _text(value) == _text(choice))
        elif p.holds(value):  # as the distribution gives it: an int_uniform's int, a q form's multiple of q
            first[p.name] = (
                int(value) if p.distribution == "int_uniform" else p.quantize(value) if p.q else float(value)
            )
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
