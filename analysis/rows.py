"""What makes a table row: the axes a set of runs varies, each run's values of them, and the rows' names and order.

Every study axis (:data:`core.axes.STUDY_AXES`) is a row axis; so is any other config key whose value differs among
the runs shown together (a sweep over ``train.lr`` gets rows "E3D-LSTM, lr=0.001" and "E3D-LSTM, lr=0.002"). Keys
that only say where or how a run executed are never axes (:func:`core.axes.is_axis_key`), and neither are the
identifiers: datasets are columns and seeds are averaged over.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.axes import IDENTITY, STUDY_AXES, Axis, axis, canonical, is_present, variant_name

_FIXED_KEYS = {key for a in (*STUDY_AXES, *IDENTITY) for key in (a.key, *a.reads)}


def row_axes(runs: pd.DataFrame) -> tuple[Axis, ...]:
    """The study's axes, then every other config key whose value differs among ``runs`` (by key)."""
    configs = [c for c in runs["config"] if isinstance(c, dict)] if "config" in runs else []
    keys = sorted({key for c in configs for key in c} - _FIXED_KEYS)
    varying = [key for key in keys if len({repr(c.get(key)) for c in configs}) > 1]
    return (*STUDY_AXES, *(axis(key) for key in varying))


def value(run: pd.Series, each: Axis) -> Any:
    """A run's value of an axis, canonical: a study axis from its column, any other from its ``config``."""
    if each in STUDY_AXES:
        return _canonical_or_none(run.get(each.name))
    config = run.get("config")
    return config.get(each.key) if isinstance(config, dict) else None


def with_axes(runs: pd.DataFrame, axes: tuple[Axis, ...]) -> pd.DataFrame:
    """``runs`` with a column of canonical values per axis (for grouping by them)."""
    return runs.assign(**{each.name: [value(run, each) for _, run in runs.iterrows()] for each in axes})


def row_key(run: pd.Series, axes: tuple[Axis, ...]) -> tuple:
    """A run's row: its axis values, or ``("run", run_dir)`` when they are unknown (an unreadable record)."""
    values = tuple(value(run, each) for each in axes)
    if not all(is_present(v) for v in values[: len(STUDY_AXES)]):
        return ("run", run["run_dir"])
    return values


def grouped(runs: pd.DataFrame, axes: tuple[Axis, ...]) -> list[tuple[tuple, pd.DataFrame]]:
    """``runs`` grouped by row (:func:`row_key`), in the study table's row order (:func:`row_order`)."""
    keyed: dict[tuple, list[Any]] = {}
    for index, run in runs.iterrows():
        keyed.setdefault(row_key(run, axes), []).append(index)
    return [(key, runs.loc[index]) for key, index in sorted(keyed.items(), key=lambda item: row_order(item[0], axes))]


def row_name(key: tuple, axes: tuple[Axis, ...]) -> str:
    return variant_name(dict(zip((a.name for a in axes), key, strict=True)), axes)


def row_order(key: tuple, axes: tuple[Axis, ...]) -> tuple:
    """The release's E3D-LSTM first, then by how many axes differ from it, then by name."""
    if key[0] == "run":
        return (len(axes) + 1, str(key))
    changed = sum(not each.is_release(value) for each, value in zip(axes, key, strict=True))
    return (changed, row_name(key, axes))


def run_name(run: pd.Series, axes: tuple[Axis, ...]) -> str:
    """A run's row name, or its folder's name when its axes are unknown."""
    key = row_key(run, axes)
    return str(run["run_name"]) if key[0] == "run" else row_name(key, axes)


def by_variant(runs: pd.DataFrame, axes: tuple[Axis, ...] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Runs grouped by row name (their values of ``axes``, by default :func:`row_axes` of ``runs``), in the study
    table's row order (the release's E3D-LSTM first, then by how many axes differ from it); runs without axes each
    under their folder name, last. Each group sorted by run folder: the figures' and the page's grouping."""
    axes = row_axes(runs) if axes is None else axes
    groups: dict[str, list[int]] = {}
    order: dict[str, tuple] = {}
    for index, run in runs.iterrows():
        key = row_key(run, axes)
        name = row_name(key, axes) if key[0] != "run" else run["run_name"]
        groups.setdefault(name, []).append(index)
        order[name] = row_order(key, axes)
    return [(name, runs.loc[groups[name]].sort_values("run_dir")) for name in sorted(groups, key=order.__getitem__)]


def _canonical_or_none(value: Any) -> Any:
    return canonical(value) if is_present(value) else None
