"""What each axis does: marginal effects over the grid, and the search's metric-versus-l1-weight points.

The marginal effect of setting an axis to ``value`` instead of its ``reference`` is the mean, over every combination of
the other axes where both were run, of ``metric(value) - metric(reference)`` (each cell first averaged over its
finished seeds): a paired difference, so an unbalanced grid compares like with like. Its spread is the sample standard
deviation (ddof=1) of those paired differences, and ``pairs`` says how many there were. The reference is the release's
value of the axis when it was run (3d, no residuals, ...), else the smallest value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.tables import (
    DATASET_LABELS,
    LOWER_IS_BETTER,
    METRIC_LABELS,
    RELEASE_AXES,
    ROW_AXES,
    TABLE_METRICS,
    md_row,
    variant_name,
)

AXIS_LABELS = {
    "conv": "convolution",
    "residual": "residual connections",
    "memory_flow": "memory flow",
    "recall": "recall",
    "output_gate": "output gate",
    "l1_weight": "l1 weight",
    "init": "initialisation",
}

EFFECT_COLUMNS = ("dataset", "axis", "value", "reference", "change", "metric", "effect", "std", "pairs", "better")

POINT_COLUMNS = ("dataset", "l1_weight", "status", "best_val_mse", "step", "mse", "ssim", "psnr", "run_dir", "name")


def varying_axes(runs: pd.DataFrame) -> list[str]:
    """The row axes that take more than one value among the finished runs, in :data:`ROW_AXES` order."""
    finished = runs[runs["status"] == "finished"]
    return [axis for axis in ROW_AXES if finished[axis].dropna().map(_key).nunique() > 1]


def axis_effects(runs: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS) -> pd.DataFrame:
    """Marginal effects (columns :data:`EFFECT_COLUMNS`), one row per (dataset, axis, non-reference value, metric).

    ``better`` is True when the change improves the metric on average (lower MSE/MAE, higher SSIM/PSNR), False when it
    worsens it, None without pairs. Axes with a single value among the finished runs have no rows.
    """
    records: list[dict[str, Any]] = []
    finished = runs[runs["status"] == "finished"]
    for dataset, on_dataset in finished.groupby("dataset", sort=True):
        cells = on_dataset.assign(**{axis: on_dataset[axis].map(_key) for axis in ROW_AXES})
        cells = cells.groupby(list(ROW_AXES), dropna=False)[list(metrics)].mean().reset_index()
        for axis in varying_axes(on_dataset):
            values = sorted(cells[axis].dropna().unique(), key=_order)
            reference = _key(RELEASE_AXES[axis]) if _key(RELEASE_AXES[axis]) in values else values[0]
            others = [a for a in ROW_AXES if a != axis]
            base = cells[cells[axis] == reference].set_index(others)
            for value in values:
                if value == reference:
                    continue
                value, reference = _native(value), _native(reference)
                change = f"{AXIS_LABELS.get(axis, axis)}: {_shown(reference)} → {_shown(value)}"
                changed = cells[cells[axis] == value].set_index(others)
                paired = pd.merge(changed, base, left_index=True, right_index=True, suffixes=("", "_reference"))
                for metric in metrics:
                    diffs = (paired[metric] - paired[f"{metric}_reference"]).dropna().to_numpy(dtype=float)
                    effect = float(diffs.mean()) if len(diffs) else math.nan
                    records.append(
                        {
                            "dataset": dataset,
                            "axis": axis,
                            "value": value,
                            "reference": reference,
                            "change": change,
                            "metric": metric,
                            "effect": effect,
                            "std": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan,
                            "pairs": len(diffs),
                            "better": None if not len(diffs) else bool((effect < 0) == LOWER_IS_BETTER[metric]),
                        }
                    )
    return pd.DataFrame(records, columns=list(EFFECT_COLUMNS))


def effects_tables(effects: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """The effects as text tables, one per dataset: ``(caption, header, rows)``; a row per axis change, a column per
    metric (``Δ ± std``), then the number of pairs."""
    tables = []
    for dataset, on_dataset in effects.groupby("dataset", sort=True):
        metrics = list(dict.fromkeys(on_dataset["metric"]))
        header = ["Change", *(f"Δ {METRIC_LABELS[m]} ({'lower' if LOWER_IS_BETTER[m] else 'higher'} is better)"
                              for m in metrics), "Pairs"]  # fmt: skip
        rows = []
        for change, group in on_dataset.groupby("change", sort=False):  # strings: False and 0.0 would be one key
            by_metric = group.set_index("metric")
            texts = [effect_text(by_metric.loc[m, "effect"], by_metric.loc[m, "std"], m) for m in metrics]
            rows.append([change, *texts, str(int(group["pairs"].max()))])
        tables.append((f"Axis effects on {DATASET_LABELS.get(dataset, dataset)}. {EFFECTS_NOTE}", header, rows))
    return tables


def effects_markdown(effects: pd.DataFrame) -> str:
    """:func:`effects_tables` as Markdown tables, each under its caption."""
    blocks = []
    for caption, header, rows in effects_tables(effects):
        lines = [f"**{caption}**", "", md_row(header), md_row(["---"] + ["--:"] * (len(header) - 1))]
        blocks.append("\n".join(lines + [md_row(row) for row in rows]) + "\n")
    return "\n".join(blocks)


EFFECTS_NOTE = (
    "Mean paired difference (changed minus reference) over the combinations of the other axes where both were run, "
    "each cell averaged over its finished seeds first; ± the sample standard deviation of the differences (ddof=1, two "
    "or more pairs)."
)


def effect_text(effect: float, std: float, metric: str) -> str:
    """``+1.23 ± 0.45`` at the metric's decimals; ``–`` without pairs."""
    if not math.isfinite(effect):
        return "–"
    decimals = 3 if metric == "ssim" else 2
    text = f"{effect:+.{decimals}f}"
    return text if not math.isfinite(std) else f"{text} ± {std:.{decimals}f}"


def weight_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run as a point of the metric-versus-l1-weight plot (columns :data:`POINT_COLUMNS`), finished or not:
    ``best_val_mse`` is what a search ranks by (a pruned trial has it, but no test scores); sorted by weight."""
    have = runs[runs["l1_weight"].notna()]
    points = pd.DataFrame(
        {
            "dataset": have["dataset"],
            "l1_weight": have["l1_weight"].astype(float),
            "status": have["status"],
            "best_val_mse": have["best_val_mse"],
            "step": have["step"],
            "mse": have["mse"],
            "ssim": have["ssim"],
            "psnr": have["psnr"],
            "run_dir": have["run_dir"],
            "name": [variant_name(dict(run[list(ROW_AXES)])) for _, run in have.iterrows()],
        },
        columns=list(POINT_COLUMNS),
    )
    return points.sort_values(["dataset", "l1_weight", "run_dir"]).reset_index(drop=True)


def best_weight(points: pd.DataFrame) -> pd.Series | None:
    """The point with the lowest best validation MSE (finished or pruned), or None when no run validated."""
    ranked = points[points["best_val_mse"].notna()]
    return None if ranked.empty else ranked.loc[ranked["best_val_mse"].idxmin()]


def _key(value: Any) -> Any:
    """Axis values as hashable, comparable keys: weights rounded so 0.1 + 0.2 and 0.3 are one value."""
    if isinstance(value, float | np.floating) and not isinstance(value, bool):
        return round(float(value), 9)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _order(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
