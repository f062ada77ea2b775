"""What each axis does: marginal effects over the grid, where they depend on another axis, and the metric against
each searched number (the l1 weight).

The marginal effect of setting an axis to ``value`` instead of its ``reference`` is the mean of
``metric(value) - metric(reference)`` over every pair of finished runs that share the other axes and the seed (a
seed fixes the initial weights and the data stream, so each pair differs in the axis alone): a paired difference, so
an unbalanced grid compares like with like. ``pairs`` says how many pairs there were, ``std`` is their sample standard
deviation (ddof=1), and ``low``/``high`` the 95% t interval of the mean (:mod:`analysis.stats`), which carries the
seed noise and the spread over the other axes' cells. ``interval`` says what it is over: ``seeds`` (pairs of two or
more seeds), ``cells of one seed`` (every pair shares one seed, so the interval holds how the effect varies across
the other axes, not the seed noise), ``<n> test sequences`` (one pair, scored sequence by sequence). ``verdict``
says it in a word: ``better`` or ``worse`` when the interval excludes zero, ``noise`` when it does not, ``one pair``
when there is no interval, ``depends`` when the effect differs between the levels of another axis (below). The
reference is the release's value of the axis when it was run (3d, no residuals, ...), else the smallest value.

**Interactions.** A mean over pairs that mix the levels of another varying axis can average two effects of opposite
sign into one "not distinguishable from noise" (or one effect beyond noise that holds at one level only). So for each
axis change, metric and other varying axis, the pairs are grouped by that axis's level and the groups' mean paired
differences compared (:func:`analysis.stats.levels_differ`): for two levels, Welch's 95% t interval of the difference
of the two within-level effects (the effect at the other axis's non-reference level minus at its reference level);
for three or more, Welch's one-way test at the 5% level. Welch's, since nothing says the seed noise is the same at
each level (a residual model's is not the plain one's). Each within-level mean's noise is the spread of its own pairs
(the seeds, and the cells of any further axis). Pairs of two levels that share a seed are treated as independent: if
the shared seed makes them alike, the test is conservative. The tests are not corrected for multiplicity (one per
axis change, metric and other axis; a study has few); read a lone borderline one with that in mind. An interaction
beyond noise gives the pooled row the verdict ``depends`` and ``interaction`` the other axis's label (no pooled
verdict: its mean averages effects that differ), and adds, for every metric, a row per level of that axis with the
effect within it: its own pairs, mean, interval and verdict (``within`` names the level, e.g. ``residual connections
off``; ``interaction`` names the axis where the interaction is beyond noise on that row's metric). With one pair per
level (one seed per cell) there is no replication within a level, and the test is not made: its verdict is
``untestable``, and the report says so beside the pooled verdict.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.labels import DATASET_LABELS, LOWER_IS_BETTER, METRIC_LABELS, TABLE_METRICS
from analysis.rows import row_axes, run_name, with_axes
from analysis.stats import LevelsTest, excludes_zero, levels_differ, mean_interval
from analysis.table_formats import md_row
from core.axes import CELL_AXES, IDENTITY, Axis, at_paper_cell, canonical, shown
from core.config import MODEL_FAMILIES
from core.records import read_test_by_sequence

EFFECT_COLUMNS = ("dataset", "axis", "value", "reference", "change", "metric", "effect", "std", "low", "high", "pairs",
                  "interval", "better", "verdict", "within", "interaction")  # fmt: skip
"""An effect's columns: ``within`` is empty on a pooled row, the other axis's level on a within-level row;
``interaction`` names the other axis whose levels the effect differs across beyond noise (empty when none)."""

INTERACTION_COLUMNS = ("dataset", "axis", "value", "reference", "change", "metric", "by", "by_label", "levels", "pairs",
                       "test", "difference", "low", "high", "statistic", "dof", "p", "verdict")  # fmt: skip
"""An interaction test's columns: the change's effect on ``metric`` compared across the levels of axis ``by`` (in
order, its reference first) with the pairs at each (both as comma-separated text); ``test`` ``welch t`` (two levels:
``difference`` is the effect at the second level minus at the first, ``low``/``high`` its 95% interval) or ``welch
anova`` (three or more: ``statistic`` is F); ``verdict`` ``differs``, ``same`` or ``untestable`` (a level with fewer
than two pairs)."""

DEPENDS = "depends"
"""The verdict of a pooled effect that differs between the levels of another axis beyond noise."""

POINT_COLUMNS = ("dataset", "value", "status", "best_val_mse", "step", "mse", "ssim", "psnr", "run_dir", "name")
"""A search point's columns; ``value`` is named for the axis (``l1_weight``, ``lr``)."""


def varying_axes(runs: pd.DataFrame, axes: tuple[Axis, ...] | None = None) -> list[Axis]:
    """The row axes (:func:`analysis.rows.row_axes`) that take more than one value among the finished runs."""
    axes = row_axes(runs) if axes is None else axes
    finished = with_axes(runs[runs["status"] == "finished"], axes)
    return [each for each in axes if finished[each.name].dropna().map(repr).nunique() > 1]


def axis_effects(runs: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame:
    """Marginal effects (columns :data:`EFFECT_COLUMNS`), one row per (dataset, axis, non-reference value, metric),
    then, where the effect differs between the levels of another axis (:func:`axis_interactions`), a row per level of
    that axis.

    ``better`` is True when the change improves the metric on average (lower MSE/MAE, higher SSIM/PSNR), False when it
    worsens it, None without pairs or without a pooled verdict. Axes with a single value among the finished runs have
    no rows; the seed and the dataset are never axes.
    """
    return effects_and_interactions(runs, metrics)[0]


def axis_interactions(runs: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame:
    """For each axis change, metric and other varying axis, whether the change's effect differs between that axis's
    levels beyond noise (columns :data:`INTERACTION_COLUMNS`; see the module's docstring for the test)."""
    return effects_and_interactions(runs, metrics)[1]


def effects_and_interactions(
    runs: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`axis_effects` and :func:`axis_interactions` of ``runs``, computed together (the second decides which
    within-level rows the first has)."""
    records: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    identity = {each.name for each in IDENTITY}
    axes = tuple(each for each in row_axes(runs) if each.name not in identity)  # a seed is a repeat, never an axis
    names = [each.name for each in axes]
    finished = with_axes(runs[runs["status"] == "finished"], axes)
    for dataset, on_dataset in finished.groupby("dataset", sort=True):
        # Unhashable and missing values become their repr, so every axis can be a groupby key; one value per
        # (axes, seed): the same run recorded twice is not two pairs.
        runs_by = on_dataset.assign(**{name: on_dataset[name].map(repr) for name in names}, seed=on_dataset["seed"])
        by_cell = runs_by.groupby([*names, "seed"], dropna=False)
        cells = by_cell[list(metrics)].mean().join(by_cell["run_dir"].first()).reset_index()
        varying = varying_axes(on_dataset, axes)
        for each in varying:
            values, ordered = _levels(on_dataset, each)
            reference = ordered[0]
            for value in ordered[1:]:
                show = (lambda v: MODEL_FAMILIES.get(v, shown(v))) if each.name == "family" else shown
                change = f"{each.label}: {show(values[reference])} → {show(values[value])}"
                paired, cell_axes = _pairs(cells, names, each, reference, value)
                common = {"dataset": dataset, "axis": each.name, "value": values[value],
                          "reference": values[reference]}  # fmt: skip
                split: dict[str, tuple[Axis, list[tuple[str, pd.DataFrame]]]] = {}
                depends: dict[str, list[str]] = {metric: [] for metric in metrics}
                for other in varying:
                    if other is each or other.name in cell_axes:
                        continue
                    other_values, other_ordered = _levels(on_dataset, other)
                    at = paired.index.get_level_values(other.name)
                    groups = [(level, paired[at == level]) for level in other_ordered if (at == level).any()]
                    if len(groups) < 2:
                        continue
                    named = [(shown(other_values[level]), group) for level, group in groups]
                    for metric in metrics:
                        result = levels_differ([_differences(group, metric) for _, group in groups])
                        tests.append(_test_record(common, change, metric, other, other_values, groups, result))
                        if result.differs:
                            depends[metric].append(other.label)
                            split[other.name] = (other, named)
                for record in _effect_records(paired, metrics, common, change):
                    labels = depends[record["metric"]]
                    if labels:  # opposite or unequal effects averaged: no pooled verdict
                        record.update(verdict=DEPENDS, better=None, interaction=" and ".join(labels))
                    records.append(record)
                for other, groups in split.values():
                    for level, group in groups:
                        within = f"{other.label} {level}"
                        for record in _effect_records(group, metrics, common, f"{change}, with {within}", within):
                            record["interaction"] = other.label if other.label in depends[record["metric"]] else ""
                            records.append(record)
    return pd.DataFrame(records, columns=list(EFFECT_COLUMNS)), pd.DataFrame(tests, columns=list(INTERACTION_COLUMNS))


def _pairs(cells: pd.DataFrame, names: list[str], each: Axis, reference: str, value: str
           ) -> tuple[pd.DataFrame, tuple[str, ...]]:  # fmt: skip
    """The cells at ``value`` of ``each`` joined with those at ``reference`` that share every other axis and the seed,
    and the axes left out of that match. Families whose kernel and window differ with the family (each run in its
    paper's cell: E3D-LSTM 2x5x5 over 2 frames, the others 5x5 over 1) share no such pair; they are then compared as
    their papers built them, each at its own kernel and window (:data:`core.axes.CELL_AXES`)."""
    for cell_axes in ((), CELL_AXES) if each.name == "family" else ((),):
        keys = [name for name in names if name != each.name and name not in cell_axes] + ["seed"]
        pool = cells[_at_paper_cells(cells)] if cell_axes else cells
        base = pool[pool[each.name] == reference].set_index(keys)
        changed = pool[pool[each.name] == value].set_index(keys)
        paired = pd.merge(changed, base, left_index=True, right_index=True, suffixes=("", "_reference"))
        if len(paired):
            break
    return paired, cell_axes


def _at_paper_cells(cells: pd.DataFrame) -> pd.Series:
    """Which cells (axis values as their repr) sit at their family's paper's kernel and window."""

    def value(row: pd.Series, name: str) -> Any:
        try:
            return ast.literal_eval(row[name]) if name in row else None
        except (ValueError, SyntaxError):  # nan: not recorded
            return None

    return cells.apply(lambda row: at_paper_cell(*(value(row, name) for name in ("family", *CELL_AXES))), axis=1)


def _levels(runs: pd.DataFrame, each: Axis) -> tuple[dict[str, Any], list[str]]:
    """An axis's values among ``runs`` by their repr, and those reprs in order, its reference first: the release's
    value when it was run (3d, no residuals, ...), else the smallest value."""
    values = {repr(v): v for v in runs[each.name].dropna()}
    ordered = sorted(values, key=lambda text: _order(values[text]))
    release = repr(canonical(each.release))
    reference = release if release in values else ordered[0]
    return values, [reference, *(text for text in ordered if text != reference)]


def _differences(paired: pd.DataFrame, metric: str) -> np.ndarray:
    """Each pair's changed minus reference value of ``metric`` (pairs without it left out)."""
    return (paired[metric] - paired[f"{metric}_reference"]).dropna().to_numpy(dtype=float)


def _effect_records(
    paired: pd.DataFrame, metrics: Sequence[str], common: dict[str, Any], change: str, within: str = ""
) -> list[dict[str, Any]]:
    """An effect row per metric (columns :data:`EFFECT_COLUMNS`) from ``paired`` (a row per pair: the changed run's
    metrics, then the reference run's with the suffix ``_reference``)."""
    seeds = paired.index.get_level_values("seed").nunique()
    one_pair = (
        _by_sequence(paired["run_dir"].iloc[0], paired["run_dir_reference"].iloc[0]) if len(paired) == 1 else None
    )
    records = []
    for metric in metrics:
        diffs = _differences(paired, metric)
        effect, low, high = mean_interval(diffs)
        interval = "" if len(diffs) < 2 else "seeds" if seeds > 1 else ONE_SEED
        if len(diffs) == 1 and one_pair is not None and metric in one_pair:
            # One pair of trained models: the interval of its mean difference over the test sequences.
            _, low, high = mean_interval(one_pair[metric])
            interval = f"{len(one_pair[metric])} test sequences"
        records.append(
            {
                **common,
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
                "within": within,
                "interaction": "",
            }
        )
    return records


def _test_record(
    common: dict[str, Any],
    change: str,
    metric: str,
    other: Axis,
    other_values: dict[str, Any],
    groups: list[tuple[str, pd.DataFrame]],
    result: LevelsTest,
) -> dict[str, Any]:
    """An interaction test as a row of :data:`INTERACTION_COLUMNS`."""
    return {
        **common,
        "change": change,
        "metric": metric,
        "by": other.name,
        "by_label": other.label,
        "levels": ", ".join(shown(other_values[level]) for level, _ in groups),
        "pairs": ", ".join(str(len(_differences(group, metric))) for _, group in groups),
        "test": result.test,
        "difference": result.difference,
        "low": result.low,
        "high": result.high,
        "statistic": result.statistic,
        "dof": result.dof,
        "p": result.p,
        "verdict": "differs" if result.differs else "same" if result.testable else "untestable",
    }


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


def effects_tables(
    effects: pd.DataFrame, interactions: pd.DataFrame | None = None
) -> list[tuple[str, list[str], list[list[str]]]]:
    """The effects as text tables, one per dataset: ``(caption, header, rows)``; a row per axis change (then, where
    its effect depends on another axis, a row per level of that axis), a column per metric (``Δ [95% interval]``, or
    ``depends on <axis>`` where there is no pooled verdict), then the number of pairs; with ``interactions``, a pooled
    row whose interaction could not be tested is marked :data:`UNTESTED_MARK`."""
    untested = set()
    if interactions is not None and not interactions.empty:
        chosen = interactions[interactions["verdict"] == "untestable"]
        untested = {(d, c) for d, c in zip(chosen["dataset"], chosen["change"], strict=True)}
    tables = []
    for dataset, on_dataset in effects.groupby("dataset", sort=True):
        metrics = list(dict.fromkeys(on_dataset["metric"]))
        header = ["Change", *(f"Δ {METRIC_LABELS[m]} ({'lower' if LOWER_IS_BETTER[m] else 'higher'} is better)"
                              for m in metrics), "Pairs"]  # fmt: skip
        rows = []
        for change, group in on_dataset.groupby("change", sort=False):  # strings: False and 0.0 would be one key
            by_metric = group.set_index("metric")
            texts = [_cell_text(by_metric.loc[m], m) if m in by_metric.index else "–" for m in metrics]
            pairs = str(int(group["pairs"].max())) + MARKS.get(_interval_kind(group["interval"].iloc[0]), "")
            rows.append([change, *texts, pairs + (UNTESTED_MARK if (dataset, change) in untested else "")])
        tables.append((f"Axis effects on {DATASET_LABELS.get(dataset, dataset)}. {EFFECTS_NOTE}", header, rows))
    return tables


def _cell_text(row: pd.Series, metric: str) -> str:
    if row["verdict"] == DEPENDS:
        return f"depends on {row['interaction']}"
    return effect_text(row["effect"], row["low"], row["high"], metric)


def effects_markdown(effects: pd.DataFrame, interactions: pd.DataFrame | None = None) -> str:
    """:func:`effects_tables` as Markdown tables, each under its caption, then :func:`verdicts` as a list."""
    blocks = []
    for caption, header, rows in effects_tables(effects, interactions):
        lines = [f"**{caption}**", "", md_row(header), md_row(["---"] + ["--:"] * (len(header) - 1))]
        blocks.append("\n".join(lines + [md_row(row) for row in rows]) + "\n")
    return "\n".join(blocks) + "\n" + "".join(f"- {line}\n" for line in verdicts(effects, interactions=interactions))


EFFECTS_NOTE = (
    "Mean paired difference (changed minus reference) over the pairs of finished runs that share the other axes and "
    "the seed; in brackets its 95% confidence interval (Student t over the pairs), which holds the seed noise. An "
    "interval that contains 0 is an effect not distinguishable from seed noise. ‡ every pair shares one seed: the "
    "interval holds how the effect varies across the other axes' cells, not the seed noise. † one pair of trained "
    "models: its interval is over the test sequences (each scored by both models), so it holds the test set's noise "
    'but not the seed noise; one pair without per-sequence scores has no interval. "depends on": the effect differs '
    "between the levels of that axis beyond noise (Welch's 95% interval of the difference of the within-level effects "
    'excludes 0; for three or more levels, Welch\'s one-way test), so no pooled value is given: the rows "with ..." '
    "give the effect within each level. § whether the effect depends on another axis could not be tested: one pair "
    "at a level of it, no replication within a level."
)

ONE_SEED = "cells of one seed"
MARKS = {"sequences": "†", "one seed": "‡"}
"""The pairs column's mark for an interval that is not over seeds (see :data:`EFFECTS_NOTE`)."""
UNTESTED_MARK = "§"
"""The pairs column's mark for a pooled effect whose dependence on another axis could not be tested."""


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
    decimals = _decimals(metric)
    text = f"{effect:+.{decimals}f}"
    return text if not math.isfinite(low) else f"{text} [{low:+.{decimals}f}, {high:+.{decimals}f}]"


def _decimals(metric: str) -> int:
    return 3 if metric == "ssim" else 2


def verdicts(effects: pd.DataFrame, metric: str = "mse", interactions: pd.DataFrame | None = None) -> list[str]:
    """One sentence per axis change on ``metric`` (per dataset when there are several), saying whether the effect
    exceeds seed noise at this budget. Where it depends on another axis: a sentence saying so (with ``interactions``,
    the difference and its interval), then one per level of that axis; with ``interactions``, a pooled verdict whose
    dependence on another axis could not be tested says so."""
    chosen = effects[effects["metric"] == metric]
    several = chosen["dataset"].nunique() > 1
    tests = (
        interactions[interactions["metric"] == metric]
        if interactions is not None and not interactions.empty
        else pd.DataFrame(columns=list(INTERACTION_COLUMNS))
    )
    pooled_interaction: dict[tuple, set[str]] = {}  # (dataset, axis, value) -> the axes its pooled effect depends on
    lines = []
    for _, row in chosen.iterrows():
        on = f" on {DATASET_LABELS.get(row['dataset'], row['dataset'])}" if several else ""
        key = (row["dataset"], row["axis"], repr(row["value"]))
        within = row.get("within") if isinstance(row.get("within"), str) else ""
        if within:
            # A level's own effect is said where the pooled one on this metric depends on that axis.
            if row.get("interaction") and row["interaction"] in pooled_interaction.get(key, set()):
                lines.append(f"{row['change']}{on}: {_verdict_words(row, metric)}.")
            continue
        same = tests[(tests["dataset"] == row["dataset"]) & (tests["change"] == row["change"])]
        if row["verdict"] == DEPENDS:
            pooled_interaction[key] = set(row["interaction"].split(" and "))
            lines.append(f"{row['change']}{on}: {_depends_words(row, metric, same)}.")
            continue
        line = f"{row['change']}{on}: {_verdict_words(row, metric)}."
        untested = same[same["verdict"] == "untestable"]
        if not untested.empty:
            labels = " or ".join(dict.fromkeys(untested["by_label"]))
            line += (f" Whether it depends on {labels} cannot be tested: one pair at a level of it (no replication "
                     "within a level; run more seeds).")  # fmt: skip
        lines.append(line)
    return lines


def _verdict_words(row: pd.Series, metric: str) -> str:
    """What an effect row says in words: its size, its interval and whether it exceeds the noise it holds."""
    label, size = METRIC_LABELS[metric], abs(row["effect"])
    decimals = _decimals(metric)
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
    return {
        "better": f"{'lowers' if LOWER_IS_BETTER[metric] else 'raises'} {label} by {size:.{decimals}f} "
        f"({interval}): beyond {noise}",
        "worse": f"{'raises' if LOWER_IS_BETTER[metric] else 'lowers'} {label} by {size:.{decimals}f} "
        f"({interval}): beyond {noise}, for the worse",
        "noise": f"changes {label} by {row['effect']:+.{decimals}f} ({interval}): not distinguishable from {noise}"
        " at this budget",
        "one pair": f"changes {label} by {row['effect']:+.{decimals}f} on one pair: no interval (run more seeds)",
        "no pairs": "was never run both ways on the same other axes and seed",
    }[row["verdict"]]


def _depends_words(row: pd.Series, metric: str, tests: pd.DataFrame) -> str:
    """A pooled effect without a verdict: which axes it depends on, by how much, and where its levels' rows are."""
    label, decimals = METRIC_LABELS[metric], _decimals(metric)
    parts = []
    for _, test in tests[tests["verdict"] == "differs"].iterrows():
        levels = test["levels"].split(", ")
        pairs = test["pairs"].split(", ")
        if test["test"] == "welch t" and test["low"] != test["high"]:
            parts.append(
                f"{test['by_label']} (with {test['by_label']} {levels[1]} minus {levels[0]}: "
                f"{test['difference']:+.{decimals}f}, 95% CI {test['low']:+.{decimals}f} to "
                f"{test['high']:+.{decimals}f}, Welch's t over {pairs[1]} and {pairs[0]} pairs)"
            )
        elif test["test"] == "welch t":
            parts.append(f"{test['by_label']} (with {test['by_label']} {levels[1]} minus {levels[0]}: "
                         f"{test['difference']:+.{decimals}f}, exact: no spread within either level)")  # fmt: skip
        else:
            parts.append(
                f"{test['by_label']} (Welch's one-way test over its {len(levels)} levels, {' / '.join(pairs)} pairs: "
                f"F = {test['statistic']:.2f}, p = {test['p']:.3g})"
            )
    which = " and on ".join(parts) if parts else f"{row['interaction']} (beyond noise)"
    return (
        f"its effect on {label} depends on {which}: the within-level effects differ beyond the noise within each "
        f"level, so no pooled verdict (the mean over all {row['pairs']} pairs, {row['effect']:+.{decimals}f}, "
        "averages effects that differ); its effect within each level follows"
    )


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
