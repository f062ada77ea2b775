"""The study's table from collected runs (:func:`analysis.collect.collect`): Markdown, LaTeX (booktabs) and CSV.

One row per variant (its axis values except dataset and seed), named from those values (:func:`variant_name`); per
dataset the columns MSE, MAE, SSIM, PSNR and Seeds. A cell is the mean over the finished seeds, ``± std`` (the sample
standard deviation, ddof=1) when there are two or more; a variant whose runs all stopped shows their status instead of
numbers, and the Seeds column says how many of its runs finished and what became of the others. Below the variants:
the trivial baselines (copy-last-frame, blank) the runs recorded on the same test set, then optionally the published
numbers of design.md section 1, marked ``(published)``, never bold.

Honest comparisons: every table states its test set and SSIM convention per dataset in its caption (LaTeX: in the
notes under it, its caption being one sentence); runs of one dataset evaluated on different test sets or under different
SSIM conventions never share a column: :func:`study_table` raises :class:`IncomparableRunsError` naming them, or with
``split_by_test_set=True`` returns one table per test set and convention. Two runs with the same axes and
seed (e.g. two sweeps with different profiles collected together) raise too, rather than being averaged as if they
were two seeds. Every cell keeps the run folders it came from (the CSV's
``run_dirs`` column; each folder's ``config.yaml`` and the collected ``command`` regenerate it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.collect import BASELINES
from analysis.labels import BASELINE_LABELS, DATASET_LABELS, LOWER_IS_BETTER, PUBLISHED, TABLE_METRICS
from analysis.rows import grouped, row_axes, row_key, row_name, with_axes
from analysis.stats import excludes_zero, gap_interval
from analysis.table_formats import NOT_RUN, PUBLISHED_SSIM_MARK, Cell, Row, StudyTable, study_caption
from core.axes import Axis, is_present


class IncomparableRunsError(ValueError):
    """Runs that one table column would merge but must not: different test sets or metric conventions."""


# ---------------------------------------------------------------------------------------------------------------------
# Building


def study_table(
    runs: pd.DataFrame,
    metrics: Sequence[str] = TABLE_METRICS,
    baselines: bool = True,
    published: bool = False,
    split_by_test_set: bool = False,
    title: str | None = None,
) -> StudyTable | list[StudyTable]:
    """The study's table over ``runs`` (a :func:`analysis.collect.collect` frame, filtered as you like).

    Args:
        metrics: the metric columns per dataset, from ``mse``, ``mae``, ``ssim``, ``psnr``.
        baselines: add the copy-last-frame and blank rows the runs recorded on the same test set.
        published: add design.md section 1's published rows for the table's datasets.
        split_by_test_set: return a list of tables, one per (test set, SSIM convention), instead of raising
            :class:`IncomparableRunsError` when the runs of a dataset were scored on several.
        title: the caption's head; by default "E3D-LSTM variants", or "Recurrent model variants" where the runs
            include another model family (ConvLSTM, PredRNN, ...).
    """
    unknown = [m for m in metrics if m not in LOWER_IS_BETTER]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(TABLE_METRICS)}")
    if runs.empty:
        raise ValueError("no runs to tabulate")
    if title is None:  # "E3D-LSTM variants", or "Recurrent model variants" once another family has rows
        families = set(runs["family"].dropna()) if "family" in runs else set()
        title = "E3D-LSTM variants" if families <= {"e3d_lstm"} else "Recurrent model variants"
    if split_by_test_set:
        return [_build(group, tuple(metrics), baselines, published, title) for group in _split_by_test_set(runs)]
    _check_comparable(runs)
    return _build(runs, tuple(metrics), baselines, published, title)


def _finished(runs: pd.DataFrame) -> pd.Series:
    return runs["status"] == "finished"


def _check_comparable(runs: pd.DataFrame) -> None:
    """Raise unless all runs of each dataset share one test set and their finished runs one SSIM convention."""
    problems = []
    for dataset, group in runs.groupby("dataset", dropna=False, sort=True):
        test_sets = {ts for ts in group["test_set"] if is_present(ts)}
        conventions = {c for c in group.loc[_finished(group), "ssim_convention"] if is_present(c)}
        if len(test_sets) <= 1 and len(conventions) <= 1:
            continue
        lines = []
        for (test_set, convention), part in group.groupby(["test_set", "ssim_convention"], dropna=False, sort=True):
            folders = ", ".join(part["run_dir"].head(3)) + (" ..." if len(part) > 3 else "")
            shown = convention if is_present(convention) else "none (not finished)"
            lines.append(f"  test set {test_set!r}, SSIM convention {shown}: {len(part)} runs ({folders})")
        problems.append(f"dataset {dataset}:\n" + "\n".join(lines))
    if problems:
        raise IncomparableRunsError(
            "these runs were scored on different test sets or under different SSIM conventions, and one table column "
            "never merges them:\n" + "\n".join(problems) + "\nselect runs scored alike, or pass split_by_test_set=True "
            "for one table each"
        )


def _split_by_test_set(runs: pd.DataFrame) -> list[pd.DataFrame]:
    """Groups of runs scored alike: finished runs by (test set, convention); each unfinished run joins the groups of its
    test set (or, without one, of its dataset), else a group of its own; a run with neither (an unreadable record)
    joins every group rather than making a table of its own."""
    finished = runs[_finished(runs)]
    keys = sorted({(ts, c) for ts, c in zip(finished["test_set"], finished["ssim_convention"], strict=True)}, key=str)
    groups: dict[Any, list[int]] = {
        key: list(finished.index[(finished["test_set"] == key[0]) & (finished["ssim_convention"] == key[1])])
        for key in keys
    }
    datasets = {key: set(finished.loc[index, "dataset"]) for key, index in groups.items()}
    unfinished = runs[~_finished(runs)]
    known = pd.Series(  # runs with a test set or a dataset to place them by
        [is_present(t) or is_present(d) for t, d in zip(unfinished["test_set"], unfinished["dataset"], strict=True)],
        index=unfinished.index,
        dtype=bool,
    )
    for index, run in unfinished[known].iterrows():
        homes = [key for key in keys if is_present(run["test_set"]) and key[0] == run["test_set"]]
        if not homes and not is_present(run["test_set"]):
            homes = [key for key in keys if run["dataset"] in datasets[key]]
        if not homes:
            homes = [(run["test_set"], None)]
            groups.setdefault(homes[0], [])
        for key in homes:
            groups[key].append(index)
    for index in unfinished.index[~known]:
        for members in groups.values() or [groups.setdefault((None, None), [])]:
            members.append(index)
    return [runs.loc[sorted(index)] for index in groups.values()]


def _dataset_order(datasets: Iterable[Any]) -> tuple[str, ...]:
    known = list(DATASET_LABELS)
    present = {d for d in datasets if is_present(d)}
    return tuple(sorted(present, key=lambda d: (known.index(d) if d in known else len(known), str(d))))


def _build(
    runs: pd.DataFrame, metrics: tuple[str, ...], with_baselines: bool, with_published: bool, title: str
) -> StudyTable:
    axes = row_axes(runs)
    runs = with_axes(runs, axes)
    datasets = _dataset_order(runs["dataset"])
    if not datasets:
        datasets = ("unknown",)
    finished = runs[_finished(runs)]
    test_sets = {d: _single(runs.loc[runs["dataset"] == d, "test_set"]) for d in datasets}
    conventions = {d: _single(finished.loc[finished["dataset"] == d, "ssim_convention"]) for d in datasets}
    _check_duplicate_seeds(runs, axes)

    raw_rows: list[tuple[str, str, dict, Any]] = []  # (name, kind, {(dataset, metric): Cell without bold}, axes|source)
    for key, group in grouped(runs, axes):
        if key[0] == "run":
            values: dict[str, Any] = {}
            name = f"{group['run_name'].iloc[0]} (unreadable record)"
        else:
            values = dict(zip((a.name for a in axes), key, strict=True))
            name = row_name(key, axes)
        cells = {}
        for dataset in datasets:
            on_dataset = group if key[0] == "run" else group[group["dataset"] == dataset]
            cells.update(_variant_cells(on_dataset, dataset, metrics))
        raw_rows.append((name, "variant", cells, values))

    if with_baselines:
        for baseline in BASELINES:
            cells = {}
            for dataset in datasets:
                on_dataset = finished[finished["dataset"] == dataset]
                for metric in metrics:
                    cells[(dataset, metric)] = _number_cell(on_dataset, f"{baseline}_{metric}", metric)
                cells[(dataset, "seeds")] = Cell("")
            if any(cell.n for cell in cells.values()):
                raw_rows.append((BASELINE_LABELS[baseline], "baseline", cells, {}))

    if with_published:
        for entry in PUBLISHED:
            if entry.dataset not in datasets:
                continue
            cells = {}
            for metric in metrics:
                if metric in entry.values:
                    value = float(entry.values[metric])
                    mark = (
                        PUBLISHED_SSIM_MARK
                        if metric == "ssim" and conventions.get(entry.dataset) != entry.ssim_convention
                        else ""
                    )
                    cells[(entry.dataset, metric)] = Cell(mark, mean=value, status="published")  # text: see below
            cells[(entry.dataset, "seeds")] = Cell("")
            raw_rows.append((f"{entry.name} (published)", "published", cells, entry.source))

    rows = _formatted(raw_rows, datasets, metrics)
    caption = study_caption(title, datasets, test_sets, conventions, with_published, rows)
    return StudyTable(datasets, metrics, tuple(rows), test_sets, conventions, caption, title)


def _single(values: pd.Series) -> str | None:
    present = sorted({v for v in values if is_present(v)}, key=str)
    return present[0] if len(present) == 1 else None if not present else " / ".join(map(str, present))


def _check_duplicate_seeds(runs: pd.DataFrame, axes: tuple[Axis, ...]) -> None:
    counts: dict[tuple, list[str]] = {}
    for _, run in runs.iterrows():
        key = row_key(run, axes)
        if key[0] != "run":
            counts.setdefault((key, run["dataset"], run["seed"]), []).append(run["run_dir"])
    clashes = {key: dirs for key, dirs in counts.items() if len(dirs) > 1}
    if clashes:
        lines = [
            f"  {row_name(key, axes)} on {dataset}, seed {seed}: {', '.join(dirs)}"
            for (key, dataset, seed), dirs in clashes.items()
        ]
        raise IncomparableRunsError(
            "several runs share their axes and seed (every config key that varies among these runs is an axis, so "
            "these trained the same config: the same run twice, e.g. in two sweeps), and a cell would average them "
            "as if they were seeds:\n"
            + "\n".join(lines)
            + "\nreport each sweep folder as a section of its own (`launch.py report runs/demo runs/search`)"
        )


def _variant_cells(group: pd.DataFrame, dataset: str, metrics: tuple[str, ...]) -> dict[tuple[str, str], Cell]:
    if group.empty:
        return {(dataset, metric): Cell(NOT_RUN) for metric in (*metrics, "seeds")}
    done = group[_finished(group)]
    stopped = group[~_finished(group)]
    status_counts = stopped["status"].fillna("unknown").value_counts().sort_index()
    status = ", ".join(f"{count} {name}" for name, count in status_counts.items())
    cells = {}
    for metric in metrics:
        if done.empty:
            cells[(dataset, metric)] = Cell(", ".join(status_counts.index), status=status)
        else:
            cells[(dataset, metric)] = _number_cell(done, metric, metric, status)
    seeds = f"{len(done)}" if stopped.empty else f"{len(done)} of {len(group)} ({status})"
    cells[(dataset, "seeds")] = Cell(
        seeds, mean=float(len(done)), n=len(done), run_dirs=tuple(done["run_dir"]), status=status
    )
    return cells


def _number_cell(runs: pd.DataFrame, column: str, metric: str, status: str = "") -> Cell:
    """Mean and sample std of ``column`` over ``runs`` with a value; the text is filled in by :func:`_formatted`."""
    have = runs[runs[column].notna()] if column in runs else runs.iloc[:0]
    values = have[column].to_numpy(dtype=float) if len(have) else np.array([])
    if len(values) == 0:
        return Cell(NOT_RUN, status=status)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return Cell("", mean=float(np.mean(values)), std=std, n=len(values), run_dirs=tuple(have["run_dir"]), status=status)


def _decimals(metric: str, values: list[float]) -> int:
    """SSIM 3 decimals, PSNR 2; MSE and MAE three significant digits of the column's smallest value, at least 1."""
    if metric == "ssim":
        return 3
    if metric == "psnr":
        return 2
    smallest = min((abs(v) for v in values if v != 0 and math.isfinite(v)), default=1.0)
    return int(min(6, max(1, 2 - math.floor(math.log10(smallest)))))


def _formatted(
    raw_rows: list[tuple[str, str, dict, Any]], datasets: tuple[str, ...], metrics: tuple[str, ...]
) -> list[Row]:
    """Fill in the number texts (decimals per column) and bold the best mean per column among our rows, when it is
    better than the next beyond seed noise (:func:`_beyond_noise`)."""
    texts: dict[tuple[int, tuple[str, str]], Cell] = {}
    for dataset in datasets:
        for metric in metrics:
            column = (dataset, metric)
            cells = [(i, row[2][column]) for i, row in enumerate(raw_rows) if column in row[2]]
            numbers = [(i, c) for i, c in cells if c.n > 0]  # ours (variants and baselines) with a value
            decimals = _decimals(metric, [c.mean for _, c in cells if math.isfinite(c.mean)])
            shown = {i: _mean_std_text(c, decimals, raw_rows[i][1] == "baseline") for i, c in numbers}
            ranked = sorted(numbers, key=lambda item: item[1].mean, reverse=not LOWER_IS_BETTER[metric])
            exact = {i for i, _ in numbers if raw_rows[i][1] == "baseline"}  # no seed noise on a fixed test set
            best = ranked[0][0] if len(ranked) > 1 and _beyond_noise(ranked[0], ranked[1], exact) else None
            for i, cell in numbers:
                texts[(i, column)] = Cell(shown[i], cell.mean, cell.std, cell.n, cell.run_dirs, i == best, cell.status)
            for i, cell in cells:
                if raw_rows[i][1] == "published":  # the printed number at the column's decimals, then its mark
                    texts[(i, column)] = Cell(f"{cell.mean:.{decimals}f}{cell.text}", cell.mean, status=cell.status)
    rows = []
    for i, (name, kind, cells, extra) in enumerate(raw_rows):
        filled = {column: texts.get((i, column), cell) for column, cell in cells.items()}
        if kind == "published":
            rows.append(Row(name, "published", filled, source=extra))
        else:
            rows.append(Row(name, kind, filled, axes=extra))  # type: ignore[arg-type]
    return rows


def _beyond_noise(first: tuple[int, Cell], second: tuple[int, Cell], exact: set[int]) -> bool:
    """Whether the best cell of a column is better than the runner-up beyond seed noise: Welch's 95% interval of the
    gap excludes zero. A row with one finished seed has no measured noise, so it never decides."""
    (i, a), (j, b) = first, second
    _, low, high = gap_interval(a.mean, 0.0 if i in exact else a.std, a.n, b.mean, 0.0 if j in exact else b.std, b.n)
    return excludes_zero(low, high)


def _mean_std_text(cell: Cell, decimals: int, baseline: bool = False) -> str:
    """``mean ± std``, or the mean alone for one run (or a baseline scored alike by every run: same test set)."""
    text = f"{cell.mean:.{decimals}f}"
    if cell.n < 2 or (baseline and cell.std <= 1e-9 * max(1.0, abs(cell.mean))):
        return text
    return f"{text} ± {cell.std:.{decimals}f}"
