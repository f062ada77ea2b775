"""The search space, as Optuna sees a sweep: a grid's axes as categorical parameters (so importances and
optuna-dashboard see them), and a search's sampler, pruner and each W&B distribution sampled by its Optuna
equivalent. The seed is never a parameter (:func:`is_seed`): a seed is a repeat of a cell, not a setting to rank.

Optuna is imported lazily, here and in ``ablations/ledger.py`` only.
"""

from __future__ import annotations

import warnings
from typing import Any

from ablations.parameters import SweepError, as_text
from ablations.sweep_file import Cell, Sweep
from core.config import ALIASES


def optuna_module():
    """Optuna, imported on first use, its per-trial INFO lines silenced (they would drown our progress lines)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def grid_distributions(sweep: Sweep, trials) -> dict[str, Any]:
    """Each axis of a grid or ablation but the seed as a categorical over its values in the file's order
    (:func:`choice`).

    Optuna holds one distribution per parameter name in a study and refuses another: an axis the study has recorded
    keeps its recorded distribution, even after the file changed its values (see :func:`grid_params`)."""
    optuna = optuna_module()
    recorded = {name: distribution for trial in trials for name, distribution in trial.distributions.items()}
    return {p.name: recorded.get(p.name) or optuna.distributions.CategoricalDistribution([choice(v) for v in p.values])
            for p in sweep.parameters if p.kind == "values" and not is_seed(p.name)}  # fmt: skip


def grid_params(cell: Cell, distributions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cell's axis values but its seed as Optuna parameters, with their distributions. A value its axis's
    distribution lacks (a value added to the file after the study recorded the axis) is left out: that cell goes
    without the parameter."""
    categorical = optuna_module().distributions.CategoricalDistribution
    params, chosen = {}, {}
    for name, value in cell.axes.items():
        if is_seed(name):
            continue
        distribution = distributions[name]
        if isinstance(distribution, categorical) and choice(value) in distribution.choices:
            params[name], chosen[name] = choice(value), distribution
    return params, chosen


def is_seed(name: str) -> bool:
    """Whether a sweep parameter is the seed (``train.seed``, by any of its names): a trial's attribute, never one of
    its Optuna parameters."""
    return ALIASES.get(name, name) == "train.seed"


def sampler(sweep: Sweep, worker: int):
    """TPE (bayes) or random sampling, seeded; worker k samples with seed + k, so workers do not repeat each other.

    TPE samples at random for its first max(2, min(10, run_cap // 4)) trials (Optuna's default of 10 would leave a
    small search entirely random); constant_liar keeps concurrent workers from proposing the same point."""
    optuna = optuna_module()
    seed = sweep.seed + worker
    if sweep.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, (sweep.run_cap or 0) // 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def pruner(sweep: Sweep):
    optuna = optuna_module()
    spec = dict(sweep.pruner)
    kind = spec.pop("type", "median")
    return optuna.pruners.HyperbandPruner(**spec) if kind == "hyperband" else optuna.pruners.MedianPruner(**spec)


def choice(value: Any) -> Any:
    """A value as Optuna holds it: lists (hidden sizes) as their text, since categorical choices must be scalars."""
    return as_text(value) if isinstance(value, list | tuple | dict) else value


def suggest(trial, sweep: Sweep) -> dict[str, Any]:
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
            choices = [choice(v) for v in p.values]
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
