"""The sweep file: a YAML file in W&B's sweep schema, checked and expanded into cells.

The file is W&B's (``method``, ``metric``, ``parameters``, ``program``, ``command``, ...), so ``wandb sweep`` accepts
it too. Parameter names are the config's dotted keys (``model.conv``, ``loss.l1_weight``, ``train.seed``; W&B's nested
``model: {parameters: {conv: ...}}`` is flattened to them) or the release's flag names, plus ours: ``variant`` (the
variant file, required), ``profile``, and a stage-2 sweep's ``stage1`` (a grid or ablation file) and
``init_from_cell`` (the cell of it whose best checkpoint this sweep's cells finetune from). Each W&B distribution is
sampled by its Optuna equivalent or refused with the reason (``ablations/parameters.py``; sweeps/README.md).

``method: grid`` expands into the cartesian product of the ``values`` axes; ``method: ablation`` (ours) into the base
cell, then each axis changed alone. ``method: bayes`` and ``random`` search instead: their cells are trials the ledger
samples one at a time (:func:`search_cell`), up to ``run_cap``. A cell is its resolved config, resolved once here and
carried as ``cell.config``: its id is the config's hash and ends its run folder's name (:func:`stale_cell` tells a
worker when the files have changed under it).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ablations.parameters import (
    CELL_METHODS,
    METHODS,
    PARAMETER_FIELDS,
    SEARCH_METHODS,
    Parameter,
    SweepError,
    as_text,
    flatten,
    parse_metric,
    parse_parameter,
    pruner_spec,
)
from ablations.slurm_settings import LAUNCHER_PARAMETERS, PREFIX, launcher_parameter_problem, setting_names
from core.config import (
    ALIASES,
    NAME_MAX_BYTES,
    Config,
    ConfigError,
    config_files,
    config_hash,
    is_plain_name,
    read_yaml,
    valid_keys,
)
from core.variants import load_variant

# W&B's sweep schema rejects any other top-level key, so ours ride as constant parameters or command-line flags.
TOP_LEVEL_KEYS = (
    "apiVersion", "kind", "controller", "description", "program", "job", "image_uri", "entity", "project", "method",
    "command", "name", "run_cap", "metric", "metrics", "scheduler", "early_terminate", "parameters",
)  # fmt: skip
# Ours, not config keys: which variant file, under which profile; a stage-2 sweep's stage-1 file and the stage-1 cell
# whose best checkpoint its cells finetune from (train.init_from, resolved by the local runner only).
# The SLURM launcher's job settings (ablations/slurm_settings.py) too: constants, never part of a cell's config or id.
OWN_PARAMETERS = ("variant", "profile", "stage1", "init_from_cell", *LAUNCHER_PARAMETERS)
CELL_THREADS = 1  # torch threads a cell computes with unless its config says: the same result whatever the workers


# ---------------------------------------------------------------------------------------------------------------------
# The sweep file


@dataclass(frozen=True)
class Cell:
    """One cell (of a grid or ablation, or a search's trial): its parameters, a stable id, a readable name, and where
    its run lives."""

    id: str  # the hash of the cell's resolved config: the same config has the same id in every sweep, on every load
    name: str  # from its axis values, e.g. conv=3d-residual=true-l1_weight=0.5-seed=0 (a trial: trial=3-l1_weight=...)
    params: dict[str, Any]  # every parameter of the cell, constants included, as written in the file
    axes: dict[str, Any]  # the ones that vary across the grid
    run_dir: str
    overrides: tuple[str, ...]  # ``--key=value`` for load_variant, group and tags included: how ``config`` was made
    config: Config  # resolved once, when the sweep loaded; what the cell trains, and what its id hashes
    seed: int = 0  # its resolved config's train.seed (the ledger records it as the trial's attribute, not a parameter)
    sources: tuple[tuple[str, str], ...] = ()  # (path, sha256) of the variant file and the files it extends


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
    metric, goal, target = parse_metric(raw.get("metric"), where)
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


def _parameters(raw: Any, where: str, method: str) -> tuple[Parameter, ...]:
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{where}: parameters must be a non-empty mapping of parameter name to its spec")
    known = [*OWN_PARAMETERS, *valid_keys(), *ALIASES]
    pairs = flatten(raw, where)
    parameters = []
    for name, spec in pairs:
        key = f"{where}: parameters.{name}"
        if name not in known and not _is_launcher_setting(name):
            launcher = [f"{PREFIX}{setting}" for setting in setting_names()] if str(name).startswith(PREFIX) else []
            close = difflib.get_close_matches(str(name), [*known, *launcher], n=1, cutoff=0.6)
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
        parameters.append(parse_parameter(name, spec, key, method))
    seen: dict[str, str] = {}
    for name, _ in pairs:
        dotted = ALIASES.get(name, name)
        if dotted in seen:
            raise SweepError(f"{where}: parameters {seen[dotted]!r} and {name!r} both set {dotted}")
        seen[dotted] = name
    if "variant" not in seen:
        raise SweepError(f"{where}: parameters.variant is required (e.g. variant: {{value: ablations/.../x.yaml}})")
    for spec in parameters:
        if spec.name.startswith(PREFIX):
            _check_launcher_parameter(spec, f"{where}: parameters.{spec.name}")
        elif spec.name in OWN_PARAMETERS and (spec.kind == "distribution"
                                              or not all(isinstance(v, str) for v in spec.values)):  # fmt: skip
            raise SweepError(f"{where}: parameters.{spec.name} must be a file, profile or cell name as value or values")
    _check_stage(parameters, where)
    return tuple(parameters)


def is_own(name: str) -> bool:
    """Whether a sweep parameter is ours (variant, profile, a stage, a launcher setting), never a config key."""
    return name in OWN_PARAMETERS or name.startswith(PREFIX)


def _is_launcher_setting(name: str) -> bool:
    """``slurm.<name>`` for one of ours or submitit's (submitit is imported only for a name not ours)."""
    return name in LAUNCHER_PARAMETERS or (name.startswith(PREFIX) and name.removeprefix(PREFIX) in setting_names())


def _check_launcher_parameter(spec: Parameter, key: str) -> None:
    """A SLURM setting is one constant (every worker's job asks for the same), of the type the launcher needs."""
    if spec.kind != "value":
        raise SweepError(f"{key}: a SLURM setting is a constant {{value: X}}, not an axis or a distribution")
    problem = launcher_parameter_problem(spec.name, spec.values[0])
    if problem:
        raise SweepError(f"{key}: {problem}")


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


def check_stage1_finished(sweep: Sweep, ran: dict[str, tuple[str, str]] | None = None) -> None:
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


def _short_names(names: list[str]) -> dict[str, str]:
    """``model.conv`` -> ``conv`` unless two keys share their last part, which then keep the whole key."""
    dotted = {name: ALIASES.get(name, name) for name in names}
    leaves = [d.rsplit(".", 1)[-1] for d in dotted.values()]
    return {name: d.rsplit(".", 1)[-1] if leaves.count(d.rsplit(".", 1)[-1]) == 1 else d for name, d in dotted.items()}


def cell_name(axes: dict[str, Any], seed: int) -> str:
    """Readable and folder-safe, from the axis values (a variant by its file's stem) and the seed."""
    short = _short_names(list(axes))
    parts = [f"{short[k]}={Path(v).stem if k == 'variant' else as_text(v)}" for k, v in axes.items()]
    if "seed" not in {short[k] for k in axes}:
        parts.append(f"seed={seed}")  # repeats of a cell differ by seed alone: keep it in every name
    name = re.sub(r"[^A-Za-z0-9_.=,-]", "_", "-".join(parts))
    # The run folder is <name>-<id8>, within NAME_MAX_BYTES: a name too long for it is cut, and ends in a digest of
    # the whole so that names cut alike stay apart.
    if len(name) > NAME_MAX_BYTES - 9:
        name = f"{name[: NAME_MAX_BYTES - 18]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def _overrides(params: dict[str, Any]) -> list[str]:
    overrides = [f"--{key}={as_text(value)}" for key, value in params.items() if not is_own(key)]
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


def _load_params(params: dict[str, Any], where: str, extra: tuple[str, ...] = ()) -> Config:
    try:
        cfg = load_variant(params["variant"], [*_overrides(params), *extra], params.get("profile"))
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
    """A cell of ``params``, its config resolved once here (so a bad value fails here), named from ``axes`` after
    ``prefix``.

    Its identity is its resolved config: the id is the config's hash and ends the run folder's name, so a cell whose
    files (variant, base, profile) changed is a new cell in a new folder, and the old run stays on disk as stale. It
    computes with ``train.threads`` = 1 unless its config sets it, so its result is the same whatever the workers."""
    # A search's sampled floats are named to 4 significant digits (the config keeps them whole).
    shown = {k: float(f"{v:.4g}") if prefix and isinstance(v, float) else v for k, v in axes.items()}
    tags = ",".join(f"{key}={as_text(value)}" for key, value in zip(_short_names(list(axes)).values(), shown.values(),
                                                                  strict=True))  # fmt: skip
    # The sweep's group and tags are unhashed: they name where the run is shown, not what it computes.
    tracking = (f"--tracking.group={sweep.name}", *([f"--tracking.tags={tags}"] * bool(tags)))
    cfg = _load_params(params, where, tracking)
    pinned = () if cfg.train.threads is not None else (f"--train.threads={CELL_THREADS}",)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=cfg.train.threads or CELL_THREADS))
    name = prefix + cell_name(shown, cfg.train.seed)
    identity = config_hash(cfg)
    run_dir = str(Path(cfg.train.runs_dir) / sweep.name / f"{name}-{identity}")
    sources = tuple((str(path), _digest(path)) for path in config_files(params["variant"]))
    return Cell(identity, name, params, axes, run_dir, (*_overrides(params), *pinned, *tracking), cfg, cfg.train.seed,
                sources)  # fmt: skip


def _digest(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def stale_cell(cell: Cell) -> str | None:
    """Why ``cell`` must not train any more, or None: its files (its variant, the files that variant extends, a variant
    or manifest its ``train.init_from`` names) now resolve to another config than the one the sweep loaded, whose hash
    names the cell's run folder. Training the config they give now in that folder would record one config under
    another's id; training the old one would run what the files no longer say. A file edited without changing the
    config (a comment) is no reason."""
    where = f"cell {cell.name}"
    try:
        now = config_hash(load_variant(cell.params["variant"], list(cell.overrides), cell.params.get("profile")))
    except ConfigError as exc:
        now, why = None, f"its files no longer load ({exc})"
    if now == cell.id:
        return None
    changed = [path for path, digest in cell.sources if _digest(path) != digest]
    which = " and ".join(changed) or "a file its config reads (a variant or manifest its train.init_from names)"
    if now is not None:
        why = f"it now resolves to config {now}, not {cell.id}"
    return (
        f"{where}: {which} changed since the sweep was loaded, and {why}; not trained. Run the sweep again: the "
        "edited config is then a new cell, in a folder of its own"
    )


def _with_cells(sweep: Sweep, combos: list[dict[str, Any]]) -> Sweep:
    axes_names = [p.name for p in sweep.parameters if p.kind == "values"]
    cells = []
    for params in combos:
        axes = {name: params[name] for name in axes_names}
        label = ", ".join(f"{k}={as_text(v)}" for k, v in axes.items()) or "the only cell"
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
    own = [p.name for p in searched if is_own(p.name)]
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
            if any(as_text(value) == as_text(choice) for choice in p.values):
                first[p.name] = next(choice for choice in p.values if as_text(value) == as_text(choice))
        elif p.holds(value):  # as the distribution gives it: an int_uniform's int, a q form's multiple of q
            first[p.name] = (
                int(value) if p.distribution == "int_uniform" else p.quantize(value) if p.q else float(value)
            )
    return dataclasses.replace(
        sweep,
        folder=str(Path(cfg.train.runs_dir) / sweep.name),
        run_cap=raw["run_cap"],
        seed=cfg.train.seed,
        pruner=pruner_spec(raw.get("early_terminate"), cfg, where),
        first=first,
    )


def _config_value(cfg: Config, name: str) -> Any:
    value = cfg
    for part in ALIASES.get(name, name).split("."):
        value = getattr(value, part)
    return value
