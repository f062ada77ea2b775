"""The study's figures from collected runs (:func:`analysis.collect.collect`), as PNG and PDF (matplotlib, Agg).

- :func:`loss_figure`: training loss over steps, one line per run, with validation MSE beside it;
- :func:`per_frame_figure`: test MSE and SSIM over the predicted frame index, one line per variant (mean over seeds),
  the trivial baselines dashed;
- :func:`qualitative_figure`: a ground-truth row, then each variant's predictions of the same test sequences;
- :func:`search_figure`: best validation MSE (and test MSE where scored) against a number the runs vary (the l1
  weight, a learning rate), from a search or grid.

Each returns the matplotlib figure; :func:`save_figure` writes it as ``<stem>.png`` and ``<stem>.pdf`` atomically.
Runs that did not finish are drawn as such (dashed loss line, hollow or crossed points, a label naming the status),
never dropped in silence.

Each figure is drawn at its print width (:data:`analysis.style.FIGURE_COLUMNS`: one column, 3.3 in, or two, 6.9 in)
with print-size fonts, PNGs at 300 dpi and TrueType fonts in PDFs (:mod:`analysis.style`); a variant has the same
colour and marker in every figure (:func:`analysis.style.variant_style`).
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the machines this runs on

import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from analysis.collect import BASELINES  # noqa: E402
from analysis.effects import best_point, search_points  # noqa: E402
from analysis.labels import BASELINE_LABELS, METRIC_LABELS  # noqa: E402
from analysis.rows import by_variant, row_axes, row_key, run_name  # noqa: E402
from analysis.style import DPI, figure_width, paper_style, variant_style  # noqa: E402
from core.axes import Axis, is_present  # noqa: E402
from core.io import DataError, atomic_write  # noqa: E402
from core.records import read_frames  # noqa: E402

FORMATS = ("png", "pdf")
EMA = 0.6  # smoothing of plotted training loss (weight of the previous value); the raw loss is drawn faintly behind
QUALITATIVE_SEQUENCES = 2  # test sequences in the qualitative grid
CONTEXT_SHOWN = 3  # last context frames shown before the predictions in the qualitative grid
VALIDATION_COLOR = "0.35"  # the search figure's points: dark grey, no variant's colour (they mix variants)
TEST_COLOR = "black"
NAME_WRAP = 34  # characters: a longer row name takes two lines beside its strip in the qualitative grid
PANEL_HEIGHT_IN = 2.2  # the plotting area of a row of panels, at print size; legends and notes add to it
BASELINE_STYLES = (":", "--")  # copy last frame, blank frame: grey, dashed, in every figure
SEED_LINES = ("-", "-.", ":")  # a variant's 1st, 2nd, 3rd... seed in the loss figure (its colour is the variant's)


def save_figure(figure: Figure, stem: str | Path) -> list[Path]:
    """Write ``figure`` as ``<stem>.png`` (300 dpi) and ``<stem>.pdf`` (TrueType fonts), each atomically and at the
    figure's own size (its print width: no tight cropping), and close it; returns the paths."""
    stem = Path(stem)
    paths = []
    with paper_style():  # the PDF's font type is read when it is written, tick labels made when it is drawn
        for fmt in FORMATS:
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt, dpi=DPI, metadata=_metadata(fmt))
            path = stem.with_name(f"{stem.name}.{fmt}")
            with atomic_write(path, "wb") as handle:
                handle.write(buffer.getvalue())
            paths.append(path)
    plt.close(figure)
    return paths


def _paper(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw a figure under :func:`analysis.style.paper_style` (text takes its size from the settings when made)."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs) -> Figure:
        with paper_style():
            return draw(*args, **kwargs)

    return drawn


def _metadata(fmt: str) -> dict[str, str | None]:
    # No creation date in the PDF, so two reports of the same runs are the same files.
    return {"CreationDate": None} if fmt == "pdf" else {}


def run_label(run: pd.Series, with_seed: bool, axes: tuple[Axis, ...]) -> str:
    """A run's legend label: its row's name, the seed when several runs share it, and its status unless finished."""
    label = run_name(run, axes)
    if with_seed and is_present(run["seed"]):
        label += f" (seed {int(run['seed'])})"
    if run["status"] != "finished":
        label += f" [{run['status']}]"
    return label


@_paper
def loss_figure(runs: pd.DataFrame) -> Figure:
    """Training loss over steps (log scale, EMA-smoothed over the raw values drawn faintly) and validation MSE, one
    line per run in its variant's colour and marker, its seeds told apart by the line; runs that did not finish are
    dashed and labelled with their status. A shipped checkpoint scored as it is (0 steps) shows its pretraining's
    curves when its manifest has them (:mod:`analysis.collect`); when no run has a curve, a DataError says so and
    nothing is drawn."""
    if not any(_listed(h) for h in runs["loss_history"]) and not any(len(_listed(h)) > 1 for h in runs["val_history"]):
        raise DataError("no run trained a step (checkpoints scored as they are): no training curve to draw")
    figure, (loss_axis, val_axis) = plt.subplots(
        1, 2, figsize=(figure_width("loss"), PANEL_HEIGHT_IN), layout="constrained"
    )
    axes = row_axes(runs)
    with_seed = _several_seeds(runs, axes)
    seen: dict[str, int] = {}  # runs drawn so far per variant
    for _, run in _ordered(runs).iterrows():
        name = run_name(run, axes)
        color, marker = variant_style(name)
        rank = seen[name] = seen.get(name, -1) + 1
        style = SEED_LINES[rank % len(SEED_LINES)] if run["status"] == "finished" else "--"
        label = run_label(run, with_seed, axes)
        history = _listed(run["loss_history"])
        if history:
            steps, losses = np.array(history, dtype=float).T
            loss_axis.plot(steps, losses, color=color, alpha=0.2, linewidth=0.6)
            loss_axis.plot(steps, _ema(losses), color=color, linestyle=style, marker=marker,
                           markevery=max(1, len(steps) // 6), label=label)  # fmt: skip
        validation = _listed(run["val_history"])
        if validation:  # labelled here when the run has no loss curve (a manifest with its validations only)
            steps, values = np.array(validation, dtype=float).T
            val_axis.plot(steps, values, color=color, linestyle=style, marker=marker, label=None if history else label)
    loss_axis.set(xlabel="training step", ylabel="training loss", title="Training loss")
    if not loss_axis.lines:  # shipped checkpoints whose manifests predate the training-loss history
        loss_axis.text(0.5, 0.5, "no training loss in these records", ha="center", va="center",
                       transform=loss_axis.transAxes)  # fmt: skip
    else:
        loss_axis.set_yscale("log")
        loss_axis.yaxis.set_major_formatter(ScalarFormatter())
        loss_axis.yaxis.set_minor_formatter(ScalarFormatter())
    val_axis.set(xlabel="training step", ylabel="MSE per frame", title="Validation MSE")
    _baseline_lines(val_axis, runs, "mse", " (on the test set)")
    _legend(figure, loss_axis, val_axis)
    return figure


@_paper
def per_frame_figure(runs: pd.DataFrame) -> Figure:
    """Test MSE and SSIM per predicted frame: one line per variant in its colour and marker (mean over its finished
    seeds, shaded ± std when there are several), and in every panel both trivial baselines on the same test set (copy
    last frame dotted, blank frame dashed, grey: :func:`_baseline_curves`). Variants without a finished run are listed
    in the title instead of drawn."""
    figure, panels = plt.subplots(1, 2, figsize=(figure_width("per_frame"), PANEL_HEIGHT_IN), layout="constrained")
    axes = row_axes(runs)
    finished = runs[(runs["status"] == "finished") & runs["mse_by_frame"].notna()]
    for metric, axis in zip(("mse", "ssim"), panels, strict=True):
        for name, group in by_variant(finished, axes):
            curves = np.array([c for c in group[f"{metric}_by_frame"] if c is not None], dtype=float)
            if curves.size == 0:
                continue
            color, marker = variant_style(name)
            frames = np.arange(1, curves.shape[1] + 1)
            mean = curves.mean(axis=0)
            axis.plot(frames, mean, color=color, marker=marker, label=f"{name} (n={len(curves)})")
            if len(curves) > 1:
                spread = curves.std(axis=0, ddof=1)
                axis.fill_between(frames, mean - spread, mean + spread, color=color, alpha=0.15, linewidth=0)
        _baseline_curves(axis, finished, metric)
        axis.set(xlabel="predicted frame", ylabel=METRIC_LABELS[metric], title=f"Test {METRIC_LABELS[metric]} by frame")
        axis.xaxis.get_major_locator().set_params(integer=True)
    missing = sorted({run_label(run, False, axes) for _, run in runs[runs["status"] != "finished"].iterrows()})
    note = None
    if missing:
        text = "not finished, not drawn: " + "; ".join(missing)
        note = figure.suptitle(_wrapped(text, figure), fontsize="medium", color="firebrick")
    _legend(figure, *panels, note=note)
    return figure


@_paper
def qualitative_figure(runs: pd.DataFrame, sequences: int = QUALITATIVE_SEQUENCES) -> Figure:
    """For each of the first ``sequences`` test sequences: the ground truth (the last context frames, then the future),
    then one row per variant (its first finished seed) with its predictions of the same frames.

    Raises :class:`core.io.DataError` when no finished run saved its test frames, or when two runs' saved ground
    truths differ (they were not scored on the same sequences).
    """
    chosen: list[tuple[str, dict[str, np.ndarray], str]] = []
    drawn = runs[(runs["status"] == "finished") & runs["frames_file"].notna()]
    for name, group in by_variant(drawn, row_axes(runs)):
        run = group.iloc[0]
        chosen.append((name, read_frames(run["frames_file"]), run["frames_file"]))
    if not chosen:
        raise DataError("no finished run saved its test frames (frames/test_step<step>.npz): nothing to draw")
    truth, truth_file = chosen[0][1], chosen[0][2]
    count = min(sequences, min(len(frames["target"]) for _, frames, _ in chosen))
    for _, frames, path in chosen[1:]:
        if not np.array_equal(frames["target"][:count], truth["target"][:count]):
            raise DataError(f"{path} and {truth_file} hold different ground truths: not the same test sequences")
    context = truth.get("context")
    shown_context = 0 if context is None else min(CONTEXT_SHOWN, context.shape[1])
    future = truth["target"].shape[1]
    rows = count * (len(chosen) + 1)
    width = figure_width("qualitative")
    figure, axes = plt.subplots(rows, 1, figsize=(width, rows), layout="constrained", squeeze=False)
    figure.get_layout_engine().set(h_pad=0.02, hspace=0.0)  # strips close together: they are one grid
    for s in range(count):
        first = s * (len(chosen) + 1)
        past = None if not shown_context else context[s, -shown_context:]
        strips = [("ground truth", _strip(truth["target"][s], past, shown_context))]
        strips += [(name, _strip(frames["pred"][s], None, shown_context)) for name, frames, _ in chosen]
        for offset, (label, image) in enumerate(strips):
            axis = axes[first + offset, 0]
            axis.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            # Against the left of its slot: the layout leaves room for the row name beside the slot, and a strip
            # shrunk to keep its aspect would otherwise move away from the name's room (and its name off the figure).
            axis.set_anchor("W")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_ylabel(_wrapped_name(label), rotation=0, ha="right", va="center")
            if offset == 0:
                axis.set_title(
                    f"test sequence {s + 1}: {shown_context} last context frames, then {future} predicted", loc="left"
                )
    # The height that shows each strip at the width left beside the longest row label, so frames keep their aspect.
    renderer = figure.canvas.get_renderer()
    labels = [axis.yaxis.label.get_window_extent(renderer) for axis in axes[:, 0]]
    label_in = max(box.width for box in labels) / figure.dpi
    name_in = max(box.height for box in labels) / figure.dpi  # a row is at least as tall as its (two-line) name
    title_in = axes[0, 0].title.get_window_extent(renderer).height / figure.dpi + 0.08
    strip_height, strip_width = axes[0, 0].images[0].get_array().shape[:2]
    row_in = max((width - label_in - 0.25) * strip_height / strip_width, name_in) + 0.03  # 0.25 in: pads, label gap
    figure.set_size_inches(width, rows * row_in + count * title_in + 0.1)
    return figure


@_paper
def search_figure(runs: pd.DataFrame, searched: Axis) -> Figure:
    """Best validation MSE against a searched number (the l1 weight, a learning rate), one point per run: filled when
    finished (with its test MSE as a cross), hollow when pruned, a red x at the top when failed or diverged; the best
    value starred. (Points are runs of any variant, so they take neutral colours, not a variant's.)"""
    points = search_points(runs, searched)
    x = searched.name
    figure, axis = plt.subplots(figsize=(figure_width("search"), PANEL_HEIGHT_IN), layout="constrained")
    validated = points[points["best_val_mse"].notna()]
    finished = validated[validated["status"] == "finished"]
    stopped = validated[validated["status"] != "finished"]
    axis.scatter(finished[x], finished["best_val_mse"], s=14, color=VALIDATION_COLOR,
                 label="best validation MSE (finished)")  # fmt: skip
    if not stopped.empty:
        axis.scatter(
            stopped[x], stopped["best_val_mse"], s=14, facecolors="none", edgecolors=VALIDATION_COLOR,
            label="best validation MSE (pruned or stopped)",
        )  # fmt: skip
    scored = points[points["mse"].notna()]
    if not scored.empty:
        axis.scatter(scored[x], scored["mse"], s=18, marker="x", color=TEST_COLOR, label="test MSE")
    lost = points[points["best_val_mse"].isna()]
    if not lost.empty:
        top = axis.get_ylim()[1] if len(axis.collections) else 1.0
        axis.scatter(lost[x], [top] * len(lost), s=18, marker="x", color="firebrick", label="no validation (failed)")
    best = best_point(points)
    if best is not None:
        axis.scatter([best[x]], [best["best_val_mse"]], marker="*", s=90, color="gold", edgecolors="black",
                     linewidths=0.5, zorder=5, label=f"best: {searched.label} {best[x]:.3g}")  # fmt: skip
    _baseline_lines(axis, runs, "mse", " (test set)")
    axis.set(xlabel=searched.label, ylabel="MSE per frame", title=f"MSE against the {searched.label}")
    _legend(figure, axis)
    return figure


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def _strip(frames: np.ndarray, past: np.ndarray | None, context_slots: int) -> np.ndarray:
    """``(T, C, H, W)`` uint8 frames side by side after ``context_slots`` slots (``past`` frames, or blank), 2 px
    apart: ``(H, W')`` for grey frames, ``(H, W', 3)`` for colour."""
    t, c, h, w = frames.shape
    gap = 2
    slots = context_slots + t
    image = np.full((h, slots * (w + gap) - gap, c), 255, dtype=np.uint8)  # white gaps and empty slots
    shown = list(past) if past is not None else []
    for k, frame in enumerate([*shown, *frames]):
        slot = k if past is not None else context_slots + k
        image[:, slot * (w + gap) : slot * (w + gap) + w] = frame.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    return image[..., 0] if c == 1 else image


def _listed(value) -> list:
    """A history column's list; a missing one (None, or NaN once pandas has it) is empty."""
    return value if isinstance(value, list) else []


def _ema(values: np.ndarray) -> np.ndarray:
    smoothed = np.empty_like(values)
    current = values[0]
    for i, value in enumerate(values):
        current = EMA * current + (1 - EMA) * value if math.isfinite(value) else current
        smoothed[i] = current
    return smoothed


def _baseline_lines(axis, runs: pd.DataFrame, metric: str, note: str = "", only: tuple[str, ...] = BASELINES) -> None:
    """Dashed levels for the trivial baselines' mean test score (those in ``only``); ``note`` is added to their
    labels."""
    for baseline, style in zip(BASELINE_LABELS, BASELINE_STYLES, strict=True):
        values = runs[f"{baseline}_{metric}"].dropna() if f"{baseline}_{metric}" in runs else pd.Series(dtype=float)
        if baseline not in only or values.empty:
            continue
        axis.axhline(values.mean(), color="gray", linestyle=style, linewidth=1, label=BASELINE_LABELS[baseline] + note)


def _baseline_curves(axis, runs: pd.DataFrame, metric: str) -> None:
    """Both trivial baselines per predicted frame (mean over the runs that recorded their curves), dashed grey; a
    baseline whose curve no run stored (records from before the curves were) is drawn as its level instead."""
    stored = [c for c in runs["baseline_curves"] if isinstance(c, dict)] if "baseline_curves" in runs else []
    levels = []
    for baseline, style in zip(BASELINE_LABELS, BASELINE_STYLES, strict=True):
        curves = [c[baseline][metric] for c in stored if metric in (c.get(baseline) or {})]
        if curves and len({len(curve) for curve in curves}) == 1:
            mean = np.mean(np.array(curves, dtype=float), axis=0)
            axis.plot(np.arange(1, len(mean) + 1), mean, color="gray", linestyle=style, linewidth=1,
                      label=BASELINE_LABELS[baseline])  # fmt: skip
        else:
            levels.append(baseline)
    if levels:
        _baseline_lines(axis, runs, metric, only=tuple(levels))


def _legend(figure: Figure, *axes: Axes, note: Text | None = None) -> None:
    """One legend for ``axes`` under them, in as many columns as fit the figure's width; the figure grows by the
    legend's height (and the ``note`` title's), so its panels keep :data:`PANEL_HEIGHT_IN` and its width stays put."""
    handles: dict[str, object] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    width, height = figure.get_size_inches()
    renderer = figure.canvas.get_renderer()
    extra = 0.0 if note is None else note.get_window_extent(renderer).height / figure.dpi + 0.05
    if handles:
        for columns in range(min(4, len(handles)), 0, -1):  # the most columns whose legend fits the width
            legend = figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=columns)
            box = legend.get_window_extent(renderer)
            if box.width / figure.dpi <= width - 0.1 or columns == 1:
                break
            legend.remove()
        extra += box.height / figure.dpi + 0.05
    figure.set_size_inches(width, height + extra)


def _wrapped(text: str, figure: Figure) -> str:
    """``text`` broken into lines that fit the figure's width at the body font size (DejaVu Sans: about 0.6 em a
    character)."""
    per_line = int(figure.get_size_inches()[0] * 72 / (0.6 * plt.rcParams["font.size"]))
    return textwrap.fill(text, per_line)


def _wrapped_name(name: str) -> str:
    """A row name on at most two lines, broken after a comma where it is long."""
    if len(name) <= NAME_WRAP or ", " not in name:
        return name
    head, _, tail = name.rpartition(", ")
    while len(head) > NAME_WRAP and ", " in head:
        head, _, more = head.rpartition(", ")
        tail = f"{more}, {tail}"
    return f"{head},\n{tail}"


def _ordered(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.sort_values("run_dir")


def _several_seeds(runs: pd.DataFrame, axes: tuple[Axis, ...]) -> bool:
    keys = [key for _, run in runs.iterrows() if (key := row_key(run, axes))[0] != "run"]
    return len(keys) != len(set(keys))
