"""Where a model loses to a trivial baseline, predicted frame by predicted frame, said in words.

design.md reports the two trivial baselines (copy the last context frame, predict a blank frame) beside every trained
model. A row of the study table (a variant: its finished seeds' mean per-frame curve) that is worse than a baseline
scored on the same test set at every predicted frame, or at some, is said so, metric by metric, e.g. "E3D-LSTM +
residuals, finetuned loses to the blank frame on MAE and SSIM at every predicted frame (mean of 2 seeds)". Everything
is computed from the run records: runs without per-frame curves, or whose baselines were recorded without theirs
(records older than the curves), give no sentence, and a model that loses at no frame gives none either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.collect import BASELINES
from analysis.labels import DATASET_LABELS, LOWER_IS_BETTER, METRIC_LABELS, TABLE_METRICS
from analysis.rows import grouped, row_axes, row_name
from core.axes import is_present

BASELINE_NAMES = {"copy_last_frame": "copied last frame", "blank": "blank frame"}
"""How a sentence names each trivial baseline ("loses to the copied last frame")."""


def baseline_losses(runs: pd.DataFrame, metrics: Sequence[str] = TABLE_METRICS) -> list[str]:
    """A sentence per (row, baseline, frames lost) where a row's mean per-frame test curve is worse than the
    baseline's on the same test set (lower MSE/MAE, higher SSIM/PSNR is better), the metrics that share those frames
    named together; in the study table's row order, per dataset and test set."""
    axes = row_axes(runs)
    finished = runs[runs["status"] == "finished"]
    groups = list(finished.groupby(["dataset", "test_set"], dropna=False, sort=True))
    lines = []
    for (dataset, _), scored in groups:
        on = f" on {DATASET_LABELS.get(dataset, dataset)}" if len(groups) > 1 else ""
        curves = _baseline_curves(scored, metrics)
        if not curves:
            continue
        for key, seeds in grouped(scored, axes):
            if key[0] == "run":  # an unreadable record: no row to name
                continue
            lost: dict[tuple[str, str], list[str]] = {}  # (baseline, where) -> metrics
            for metric in metrics:
                model = _mean_curve(seeds[f"{metric}_by_frame"])
                for baseline in BASELINES:
                    reference = curves.get((baseline, metric))
                    if model is None or reference is None or len(reference) != len(model):
                        continue
                    worse = model > reference if LOWER_IS_BETTER[metric] else model < reference
                    if worse.any():
                        lost.setdefault((baseline, _frames(worse)), []).append(METRIC_LABELS[metric])
            mean_of = f" (mean of {len(seeds)} seeds)" if len(seeds) > 1 else ""
            for (baseline, where), names in sorted(lost.items(), key=lambda item: BASELINES.index(item[0][0])):
                lines.append(
                    f"{row_name(key, axes)}{on} loses to the {BASELINE_NAMES[baseline]} on {_listed(names)} "
                    f"{where}{mean_of}."
                )
    return lines


def _baseline_curves(runs: pd.DataFrame, metrics: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
    """Each baseline's per-frame curve per metric, the mean over the runs that recorded it (one test set: the same
    curve in each); a (baseline, metric) whose recorded curves differ in length is left out."""
    stored = [curves for curves in runs["baseline_curves"] if isinstance(curves, dict)]
    found = {}
    for baseline in BASELINES:
        for metric in metrics:
            curves = [c[baseline][metric] for c in stored if metric in (c.get(baseline) or {})]
            if curves and len({len(curve) for curve in curves}) == 1:
                found[(baseline, metric)] = np.mean(np.array(curves, dtype=float), axis=0)
    return found


def _mean_curve(curves: pd.Series) -> np.ndarray | None:
    """The mean of a row's per-frame curves over its finished seeds; None without one, or when their lengths differ."""
    present: list[Any] = [curve for curve in curves if isinstance(curve, list) and curve]
    if not present or len({len(curve) for curve in present}) != 1:
        return None
    mean = np.mean(np.array(present, dtype=float), axis=0)
    return mean if all(is_present(float(v)) for v in mean) else None


def _frames(worse: np.ndarray) -> str:
    """``at every predicted frame``, or ``at predicted frames 1-3 and 7 of 10`` (1-based)."""
    if worse.all():
        return "at every predicted frame"
    lost = [int(i) + 1 for i in np.flatnonzero(worse)]
    runs: list[list[int]] = []
    for frame in lost:
        if runs and frame == runs[-1][-1] + 1:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    spans = [str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs]
    noun = "frame" if len(lost) == 1 else "frames"
    return f"at predicted {noun} {_listed(spans)} of {len(worse)}"


def _listed(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
