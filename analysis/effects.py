"""What each axis does: marginal effects over the grid, and the metric against each searched number (the l1 weight).

The marginal effect of setting an axis to ``value`` instead of its ``reference`` is the mean of
``metric(value) - metric(reference)`` over every pair of finished runs that share the other axes and the seed (a
seed fixes the initial weights and the data stream, so each pair differs in the axis alone): a paired difference, so
an unbalanced grid compares like with like. ``pairs`` says how many pairs there were, ``std`` is their sample standard
deviation (ddof=1), and ``low``/``high`` the 95% t interval of the mean (:mod:`analysis.stats`), which carries the
seed noise and the spread over the other axes' cells. ``interval`` says what it is over: ``seeds`` (pairs of two or
more seeds), ``cells of one seed`` (every pair shares one seed, so the interval holds how the effect varies across
the other axes, not the seed noise), ``<n> test sequences`` (one pair, scored sequence by sequence). ``verdict``
says it in a word: ``better`` or ``worse`` when the interval excludes zero, ``noise`` when it does not, ``one pair``
when there is no interval. The reference is the release's value of the axis when it was run (3d, no residuals, ...),
else the smallest value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.labels import DATASET_LABELS, LOWER_IS_BETTER, METRIC_LABELS, TABLE_METRICS
from analysis.rows import row_axes, run_name, with_axes
from analysis.stats import excludes_zero, mean_interval
from analysis.tables import md_row
from core.axes import Axis, canonical, shown
from core.records import read_test_by_sequence

EFFECT_COLUMNS = ("dataset", "axis", "value", "reference", "change", "metric", "effect", "std", "low", "high", "pairs",
                  "interval", "better", "verdict")  # fmt: skip

POINT_COLUMNS = ("dataset", "value", "status", "best_val_mse", "step", "mse", "ssim", "psnr", "run_dir", "name")
"""A search point's columns; ``value`` is named for the axis (``l1_weight``, ``lr``)."""


def varying_axes(runs: pd.DataFrame, axes: tuple[Axis, ...] | None = None) -> list[Axis]:
    """The row axes (:func:`analysis.rows.row_axes`) that take more than one value among the finished runs."""
    axes = row_axes(runs) if axes is None else axes
    finished = with_axes(runs[runs["status"] == "finished"], axes)
    return [each for each in axes if finished[each.name].dropna().map(repr).nunique() > 1]


def axis_effects(runs: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame:
    """Marginal effects (columns :data:`EFFECT_COLUMNS`), one row per (dataset, axis, non-reference value, metric).

    ``better`` is True when the change improves the metric on average (lower MSE/MAE, higher SSIM/PSNR), False when it
    worsens it, None without pairs. Axes with a single value among the finished runs have no rows.
    """
    records: list[dict[str, Any]] = []
    axes = row_axes(runs)
    names = [each.name for each in axes]
    finished = with_axes(runs[runs["status"] == "finished"], axes)
    for dataset, on_dataset in finished.groupby("dataset", sort=True):
        # Unhashable and missing values become their repr, so every axis can be a groupby key; one value per
        # (axes, seed): the same run recorded twice is not two pairs.
        runs_by = on_dataset.assign(**{name: on_dataset[name].map(repr) for name in names}, seed=on_dataset["seed"])
        by_cell = runs_by.groupby([*names, "seed"], dropna=False)
        cells = by_cell[list(metrics)].mean().join(by_cell["run_dir"].first()).reset_index()
        for each in varying_axes(on_dataset, axes):
            values = {repr(v): v for v in on_dataset[each.name].dropna()}
            ordered = sorted(values, key=lambda text: _order(values[text]))
            release = repr(canonical(each.release))
            reference = release if release in values else ordered[0]
            keys = [name for name in names if name != each.name] + ["seed"]
            base = cells[cells[each.name] == reference].set_index(keys)
            for value in ordered:
                if value == reference:
                    continue
                change = f"{each.label}: {shown(values[reference])} → {shown(values[value])}"
                changed = cells[cells[each.name] == value].set_index(keys)
                paired = pd.merge(changed, base, left_index=True, right_index=True, suffixes=("", "_reference"))
                seeds = paired.index.get_level_values("seed").nunique()
                one_pair = (
                    _by_sequence(paired["run_dir"].iloc[0], paired["run_dir_reference"].iloc[0])
                    if len(paired) == 1 else None
                )  # fmt: skip
                for metric in metrics:
                    diffs = (paired[metric] - paired[f"{metric}_reference"]).dropna().to_numpy(dtype=float)
                    effect, low, high = mean_interval(diffs)
                    interval = "" if len(diffs) < 2 else "seeds" if seeds > 1 else ONE_SEED
                    if len(diffs) == 1 and one_pair is not None and metric in one_pair:
                        # One pair of trained models: the interval of its mean difference over the test sequences.
                        _, low, high = mean_interval(one_pair[metric])
                        interval = f"{len(one_pair[metric])} test sequences"
                    records.append(
                        {
                            "dataset": dataset,
                            "axis": each.name,
                            "value": values[value],
                            "reference": values[reference],
                            "change": change,
                            "metric": metric,
                            "effect": effect,
                            "std": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan,
                            "low": low,
                            "high": high,
                            "pairs": len(diffs),
                            "interval": interval,
                            "better": None if not len(diffs) else bool((effect < 0) == LOWER_IS_BETTER[metric]),
                            "verdict": _verdict(effect, low, high, metric),
                        }
                    )
    return pd.DataFrame(records, columns=list(EFFECT_COLUMNS))


def _by_sequence(changed_dir: str, reference_dir: str) -> dict[str, np.ndarray] | None:
    """Per test sequence, changed minus reference, for each metric; None unless both runs recorded their scores on the
    same test set (same name, same count): only then do sequences pair one to one."""
    changed, reference = read_test_by_sequence(changed_dir), read_test_by_sequence(reference_dir)
    if changed is None or reference is None or changed["test_set"] != reference["test_set"]:
        return None
    if len(changed["mse"]) != len(reference["mse"]) or len(changed["mse"]) < 2:
        return None
    return {name: changed[name] - reference[name] for name in changed if name != "test_set"}


def _verdict(effect: float, low: float, high: float, metric: str) -> str:
    if not math.isfinite(effect):
        return "no pairs"
    if not (math.isfinite(low) and math.isfinite(high)):
        return "one pair"
    if not excludes_zero(low, high):
        return "noise"
    return "better" if (effect < 0) == LOWER_IS_BETTER[metric] else "worse"


def effects_tables(effects: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """The effects as text tables, one per dataset: ``(caption, header, rows)``; a row per axis change, a column per
    metric (``Δ [95% interval]``), then the number of pairs."""
    tables = []
    for dataset, on_dataset in effects.groupby("dataset", sort=True):
        metrics = list(dict.fromkeys(on_dataset["metric"]))
        header = ["Change", *(f"Δ {METRIC_LABELS[m]} ({'lower' if LOWER_IS_BETTER[m] else 'higher'} is better)"
                              for m in metrics), "Pairs"]  # fmt: skip
        rows = []
        for change, group in on_dataset.groupby("change", sort=False):  # strings: False and 0.0 would be one key
            by_metric = group.set_index("metric")
            texts = [effect_text(by_metric.loc[m, "effect"], by_metric.loc[m, "low"], by_metric.loc[m, "high"], m)
                     for m in metrics]  # fmt: skip
            pairs = str(int(group["pairs"].max()))
            rows.append([change, *texts, pairs + MARKS.get(_interval_kind(group["interval"].iloc[0]), "")])
        tables.append((f"Axis effects on {DATASET_LABELS.get(dataset, dataset)}. {EFFECTS_NOTE}", header, rows))
    return tables


def effects_markdown(effects: pd.DataFrame) -> str:
    """:func:`effects_tables` as Markdown tables, each under its caption, then :func:`verdicts` as a list."""
    blocks = []
    for caption, header, rows in effects_tables(effects):
        lines = [f"**{caption}**", "", md_row(header), md_row(["---"] + ["--:"] * (len(header) - 1))]
        blocks.append("\n".join(lines + [md_row(row) for row in rows]) + "\n")
    return "\n".join(blocks) + "\n" + "".join(f"- {line}\n" for line in verdicts(effects))


EFFECTS_NOTE = (
    "Mean paired difference (changed minus reference) over the pairs of finished runs that share the other axes and "
    "the seed; in brackets its 95% confidence interval (Student t over the pairs), which holds the seed noise. An "
    "interval that contains 0 is an effect not distinguishable from seed noise. ‡ every pair shares one seed: the "
    "interval holds how the effect varies across the other axes' cells, not the seed noise. † one pair of trained "
    "models: its interval is over the test sequences (each scored by both models), so it holds the test set's noise "
    "but not the seed noise; one pair without per-sequence scores has no interval."
)

ONE_SEED = "cells of one seed"
MARKS = {"sequences": "†", "one seed": "‡"}
"""The pairs column's mark for an interval that is not over seeds (see :data:`EFFECTS_NOTE`)."""


def _interval_kind(interval: Any) -> str:
    """``seeds``, ``one seed`` (pairs across the other axes' cells, all of one seed), ``sequences`` (one pair's test
    sequences) or ``""`` (no interval)."""
    if not isinstance(interval, str) or not interval:
        return ""
    return "sequences" if interval.endswith("test sequences") else "one seed" if interval == ONE_SEED else "seeds"


def effect_text(effect: float, low: float, high: float, metric: str) -> str:
    """``+1.23 [-0.45, +2.91]`` at the metric's decimals; the mean alone for one pair; ``–`` without pairs."""
    if not math.isfinite(effect):
        return "–"
    decimals = 3 if metric == "ssim" else 2
    text = f"{effect:+.{decimals}f}"
    return text if not math.isfinite(low) else f"{text} [{low:+.{decimals}f}, {high:+.{decimals}f}]"


def verdicts(effects: pd.DataFrame, metric: str = "mse") -> list[str]:
    """One sentence per axis change on ``metric`` (per dataset when there are several), saying whether the effect
    exceeds seed noise at this budget."""
    chosen = effects[effects["metric"] == metric]
    several = chosen["dataset"].nunique() > 1
    lines = []
    for _, row in chosen.iterrows():
        on = f" on {DATASET_LABELS.get(row['dataset'], row['dataset'])}" if several else ""
        label, size = METRIC_LABELS[metric], abs(row["effect"])
        decimals = 3 if metric == "ssim" else 2
        bounds = f"95% CI {row['low']:+.{decimals}f} to {row['high']:+.{decimals}f}"
        noise = "seed noise"
        interval = f"{bounds}, {row['pairs']} pairs"
        kind = _interval_kind(row.get("interval"))
        if kind == "sequences":
            noise = "the test set's noise (one trained pair: seed noise not measured, run more seeds)"
            interval = f"{bounds} over {row['interval']}"
        elif kind == "one seed":
            noise = "its spread across the other axes (one seed: seed noise not measured, run more seeds)"
            interval = f"{bounds}, {row['pairs']} pairs of one seed"
        what = {
            "better": f"{'lowers' if LOWER_IS_BETTER[metric] else 'raises'} {label} by {size:.{decimals}f} "
            f"({interval}): beyond {noise}",
            "worse": f"{'raises' if LOWER_IS_BETTER[metric] else 'lowers'} {label} by {size:.{decimals}f} "
            f"({interval}): beyond {noise}, for the worse",
            "noise": f"changes {label} by {row['effect']:+.{decimals}f} ({interval}): not distinguishable from {noise}"
            " at this budget",
            "one pair": f"changes {label} by {row['effect']:+.{decimals}f} on one pair: no interval (run more seeds)",
            "no pairs": "was never run both ways on the same other axes and seed",
        }[row["verdict"]]
        lines.append(f"{row['change']}{on}: {what}.")
    return lines


def searched_axes(runs: pd.DataFrame) -> list[Axis]:
    """The row axes of numbers (not switches) that take two or more values among ``runs``: what a search varies, or a
    grid over a number (the l1 weight, a learning rate), each drawn as metric against value."""
    axes = row_axes(runs)
    valued = with_axes(runs, axes)
    numeric = [
        each for each in axes
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in valued[each.name].dropna())
        and valued[each.name].dropna().nunique() > 1
    ]  # fmt: skip
    return numeric


def search_points(runs: pd.DataFrame, axis: Axis) -> pd.DataFrame:
    """Every run as a point of the metric-versus-``axis`` plot (columns :data:`POINT_COLUMNS`, the axis's name for
    ``value``), finished or not: ``best_val_mse`` is what a search ranks by (a pruned trial has it, but no test
    scores); sorted by value."""
    axes = row_axes(runs)
    valued = with_axes(runs, axes)
    have = valued[valued[axis.name].notna()]
    points = pd.DataFrame(
        {
            "dataset": have["dataset"],
            axis.name: have[axis.name].astype(float),
            "status": have["status"],
            "best_val_mse": have["best_val_mse"],
            "step": have["step"],
            "mse": have["mse"],
            "ssim": have["ssim"],
            "psnr": have["psnr"],
            "run_dir": have["run_dir"],
            "name": [run_name(run, axes) for _, run in have.iterrows()],
        },
        columns=[axis.name if column == "value" else column for column in POINT_COLUMNS],
    )
    return points.sort_values(["dataset", axis.name, "run_dir"]).reset_index(drop=True)


def best_point(points: pd.DataFrame) -> pd.Series | None:
    """The point with the lowest best validation MSE (finished or pruned), or None when no run validated."""
    ranked = points[points["best_val_mse"].notna()]
    return None if ranked.empty else ranked.loc[ranked["best_val_mse"].idxmin()]


def _order(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))
