"""W&B's sweep schema, its parts that need no config: a parameter's distributions (each sampled by an Optuna equivalent,
or refused with the reason), its fields, and how a grid or ablation expands a ranged one into values
(:func:`parse_parameter`); the metric (:func:`parse_metric`); ``early_terminate`` as Optuna's pruner
(:func:`pruner_spec`). ``ablations/sweep_file.py`` reads the file and builds its cells.

Nothing here imports Optuna or torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.records import METRICS

if TYPE_CHECKING:
    from core.config import Config

METHODS = ("grid", "random", "bayes", "ablation")
CELL_METHODS = ("grid", "ablation")  # a fixed list of cells, enqueued up front
SEARCH_METHODS = ("bayes", "random")  # trials sampled one at a time, up to run_cap
GOALS = ("minimize", "maximize")
DEFAULT_METRIC = "val/mse"
METRIC_FIELDS = ("name", "goal", "target")
# W&B's other metric fields: the local ledger cannot do what they ask, so a file using them is refused, not run as if
# they were absent.
REFUSED_METRIC_FIELDS = {
    "impute": "Optuna leaves a failed or pruned trial out of its model instead of imputing a value for it; remove it",
    "impute_while_running": "Optuna's pruners read the running trials' reported values themselves; remove it",
}
# W&B's hyperband fields; s and strict have no Optuna counterpart (its HyperbandPruner derives its brackets itself).
EARLY_TERMINATE_FIELDS = ("type", "min_iter", "max_iter", "eta")
MEDIAN_STARTUP_TRIALS = 2  # the median pruner waits for this many finished trials before pruning any

# W&B's distributions sampled by an Optuna equivalent (search_space.suggest; sweeps/README.md has the table),
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
# Every field of a W&B parameter: ours, those of refused distributions (named in their refusal rather than as unknown),
# and ``parameters``, W&B's nesting (``model: {parameters: {residual: ...}}`` is our dotted key ``model.residual``).
PARAMETER_FIELDS = ("value", "values", "distribution", "min", "max", "q", "probabilities", "mu", "sigma", "a", "b",
                    "parameters")  # fmt: skip
Q_TOLERANCE = 1e-9  # relative slack when asking whether a bound is a multiple of q (0.3 / 0.1 is 2.9999999999999996)


class SweepError(ValueError):
    """A bad sweep file or ledger: the message names the file and the key."""


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


def flatten(raw: dict, where: str, prefix: str = "") -> list[tuple[str, Any]]:
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
        pairs.extend(flatten(spec["parameters"], where, f"{dotted}."))
    return pairs


def parse_parameter(name: str, spec: dict, key: str, method: str) -> Parameter:
    """One parameter as W&B's schema reads it: its ``distribution`` named, or inferred as W&B infers it (``value``: a
    constant; ``values``: categorical, or categorical_w_probabilities with ``probabilities``; ``min`` and ``max``:
    int_uniform when both are integers, else uniform). A grid or ablation expands int_uniform and q_uniform into values
    as W&B's grid does; a search keeps the distribution, which search_space.suggest samples by its Optuna equivalent.
    ``key`` (file and parameter) heads every error."""
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


def as_text(value: Any) -> str:
    """A parameter value as the command line and cell names write it (true, 0.5, 64,64, none): text the config reads
    back as the same value. Tables and legends show values to people instead (``core.axes.shown``: on, 0.5)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(as_text(v) for v in value)
    return str(value)


def metric_names() -> tuple[str, ...]:
    """The metrics a sweep ranks by: a run's best validation score of each metric (every evaluation logs ``val/mse``,
    ``val/mae``, ``val/psnr`` and ``val/ssim``, the pruner's intermediate values) and its test scores."""
    return (*(f"val/{name}" for name in METRICS), *(f"test/{name}" for name in METRICS))


def parse_metric(raw: Any, where: str) -> tuple[str, str, float | None]:
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


def pruner_spec(early_terminate: dict | None, cfg: Config, where: str) -> dict[str, Any]:
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
