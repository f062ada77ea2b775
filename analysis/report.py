"""A sweep's results, written beside its runs: tables, axis effects, figures and one self-contained HTML page.

``write_report([runs/demo, runs/search])`` writes, for each folder of runs (a *section*), into ``<out>/<section>/``
(``<out>/`` itself when there is one section):

- ``table.{md,tex,csv}`` (``table-2...`` when runs were scored on several test sets or conventions: never merged);
- ``effects.{md,csv}``: each axis's marginal effect (:mod:`analysis.effects`), when an axis varies, with the effect
  within each level of another axis where it depends on that axis, and ``interactions.csv``: the tests that decide it;
  effects.md ends with the sentences of :func:`analysis.baselines.baseline_losses` (where a row loses to a trivial
  baseline, frame by frame) and of :func:`analysis.plateau.plateau_sentences` (when each model trained from scratch
  left its plateau);
- ``<axis>.csv`` (``l1_weight.csv``, ``lr.csv``): every run as a point of metric against each number the section's runs
  vary (:func:`analysis.effects.searched_axes`), and the best value;
- ``runs.csv``: every run (finished or not) with its status, numbers, folder and the command that trains it again;
- ``figures/{loss,per_frame,qualitative,<axis>}.{png,pdf}`` (``<stem>-<dataset>`` when the section holds several
  datasets);

and ``<out>/report.html``: all of it in one file, images and GIFs embedded (:mod:`analysis.html`). The default
``<out>`` is ``<root>/report`` for one folder, ``<common parent>/report`` for several.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from analysis import figures
from analysis.baselines import baseline_losses
from analysis.collect import AXES, collect
from analysis.effects import effects_and_interactions, effects_markdown, search_points, searched_axes
from analysis.html import render_page
from analysis.labels import DATASET_LABELS
from analysis.plateau import plateau_sentences
from analysis.rows import row_axes, with_axes
from analysis.sections import Section
from analysis.table_formats import StudyTable
from analysis.tables import study_table
from core.io import DataError, atomic_write
from core.tracking import log_summary_run

FIGURES = {  # stem: (title, drawer)
    "loss": ("Training loss and validation MSE", figures.loss_figure),
    "per_frame": ("Test MSE and SSIM by predicted frame", figures.per_frame_figure),
    "qualitative": ("Predictions of the same test sequences", figures.qualitative_figure),
}

RUNS_CSV_COLUMNS = (
    "run_name", "status", "status_reason", *AXES, "step", "run_time_s", "best_val_mse", "mse", "mae", "ssim", "psnr",
    "test_set", "ssim_convention", "run_dir", "url", "command",
)  # fmt: skip
"""runs.csv's columns; the axes a section varies beyond the recorded ones follow the recorded axes."""


@dataclass
class Report:
    out_dir: Path
    sections: list[Section]
    html: Path

    def main_table(self) -> str:
        """The first section's first table as Markdown (what ``make sweep`` prints)."""
        return self.sections[0].tables[0].to_markdown() if self.sections and self.sections[0].tables else ""

    def tables_text(self) -> str:
        """Every section's tables as Markdown, each section headed by its title when there are several (what
        ``launch.py report`` prints, so ``make sweep`` ends with all of its sweeps' tables)."""
        parts = []
        for section in self.sections:
            head = [f"## {section.title}", ""] if len(self.sections) > 1 else []
            parts.extend("\n".join([*head, table.to_markdown()]) for table in section.tables)
        return "\n".join(parts)


def write_report(
    roots: Sequence[str | Path] = (),
    out_dir: str | Path | None = None,
    published: bool = True,
    collected: Sequence[tuple[str, pd.DataFrame]] = (),
    link: Callable[[pd.Series], str | None] | None = None,
    wandb: str | None = None,
    project: str | None = None,
) -> Report:
    """Collect the runs under each of ``roots`` (and/or take ``collected`` runs, e.g. from W&B: ``(title, runs)``) and
    write a section for each, then the HTML page.

    Args:
        published: add design.md's published rows to the tables.
        link: where a run's link points (default: its folder, relative to the report; its W&B page when it has one).
        wandb: ``offline`` or ``online``: also log each section's tables and figures as one W&B run (job type
            ``report``) in ``project`` (default: ``$WANDB_PROJECT``, else mentalsim), grouped with the sweep's runs
            (the group is the sweep folder's name).
    """
    sources = [(str(root), collect(root), Path(root)) for root in roots]
    sources += [(title, runs, None) for title, runs in collected]
    if not sources:
        raise ValueError("nothing to report: give a folder of runs")
    for title, runs, _ in sources:
        if runs.empty:
            raise ValueError(f"{title}: no run folders (with summary.json or config.yaml) below this folder")
    if out_dir is None:
        folders = [folder.resolve() for _, _, folder in sources if folder is not None]
        if not folders:
            raise ValueError("give out_dir: the runs come from no local folder")
        out_dir = folders[0] / "report" if len(sources) == 1 else Path(_common_parent(folders)) / "report"
    out_dir = Path(out_dir)
    used: set[str] = set()
    sections = []
    for title, runs, _ in sources:
        folder = out_dir if len(sources) == 1 else out_dir / _slug(title, used)
        sections.append(_write_section(title, runs, folder, published))
    if wandb:
        for section in sections:
            section.wandb_log = _log_to_wandb(section, wandb, project)
    html_path = out_dir / "report.html"
    with atomic_write(html_path, "w") as handle:
        handle.write(render_page(sections, html_path, link))
    return Report(out_dir, sections, html_path)


def _write_tables(tables: list[StudyTable], folder: Path) -> list[Path]:
    """Each table as Markdown, LaTeX and CSV. A LaTeX table's label names its section's folder (``tab:baselines``,
    ``tab:finetune-2``), so a paper can ``\\input`` the tables of several sections side by side."""
    written = []
    for index, table in enumerate(tables):
        stem = folder / ("table" if len(tables) == 1 else f"table-{index + 1}")
        label = "tab:" + re.sub(r"[^A-Za-z0-9]+", "-", folder.name).strip("-") + (f"-{index + 1}" * (len(tables) > 1))
        for suffix, text in ((".md", table.to_markdown()), (".tex", table.to_latex(label)), (".csv", table.to_csv())):
            _write_text(stem.with_suffix(suffix), text)
        written.append(stem.with_suffix(".md"))
    return written


def _write_section(title: str, everything: pd.DataFrame, folder: Path, published: bool) -> Section:
    """Tables, effects and figures of the section's current runs; runs.csv and the page's run list hold stale runs
    too (a sweep's runs whose config is no longer one of its cells), marked so."""
    section = Section(title, everything, folder)
    runs = everything[everything["status"] != "stale"]
    section.tables = study_table(runs, published=published, split_by_test_set=True)
    section.written += _write_tables(section.tables, folder)
    section.effects, section.interactions = effects_and_interactions(runs)
    section.baseline_losses = baseline_losses(runs)
    section.plateau = plateau_sentences(runs)
    if not section.effects.empty:
        text = effects_markdown(section.effects, section.interactions)
        if section.baseline_losses:
            text += "\nAgainst the trivial baselines (test set, per predicted frame):\n\n"
            text += "".join(f"- {line}\n" for line in section.baseline_losses)
        if section.plateau:
            text += f"\n{section.plateau[0]}\n\n" + "".join(f"- {line}\n" for line in section.plateau[1:])
        _write_text(folder / "effects.md", text)
        section.effects.to_csv(folder / "effects.csv", index=False)
        section.interactions.to_csv(folder / "interactions.csv", index=False)
        section.written += [folder / "effects.md", folder / "effects.csv", folder / "interactions.csv"]
    for searched in searched_axes(runs):
        section.searched[searched.name] = searched
        section.points[searched.name] = search_points(runs, searched)
        _write_text(folder / f"{searched.name}.csv", section.points[searched.name].to_csv(index=False))
        section.written.append(folder / f"{searched.name}.csv")
    extra = [each for each in row_axes(runs) if each.name not in AXES]
    columns = [*RUNS_CSV_COLUMNS[:3], *AXES, *(each.name for each in extra), *RUNS_CSV_COLUMNS[3 + len(AXES) :]]
    _write_text(folder / "runs.csv", with_axes(everything, tuple(extra))[columns].to_csv(index=False))
    section.written.append(folder / "runs.csv")

    # Figures per dataset when a section holds several (their frames and test sets differ); runs without a dataset
    # (unreadable records) are listed with each.
    datasets = sorted(runs["dataset"].dropna().unique(), key=str)
    for dataset in datasets or [None]:
        subset = runs if len(datasets) <= 1 else runs[(runs["dataset"] == dataset) | runs["dataset"].isna()]
        suffix = "" if len(datasets) <= 1 else f"-{dataset}"
        label = "" if len(datasets) <= 1 else f" ({DATASET_LABELS.get(dataset, dataset)})"
        drawers = {stem: (title, draw) for stem, (title, draw) in FIGURES.items()}
        for searched in searched_axes(subset):  # each number the runs vary, drawn against the metric
            drawers[searched.name] = (
                f"MSE against the {searched.label}",
                partial(figures.search_figure, searched=searched),
            )
        for stem, (title, draw) in drawers.items():
            key = stem + suffix
            section.figure_titles[key] = title + label
            try:
                paths = figures.save_figure(draw(subset), folder / "figures" / key)
            except DataError as error:
                section.figure_problems[key] = str(error)
                continue
            section.figures[key] = paths[0]
            section.written += paths
    return section


def _log_to_wandb(section: Section, mode: str, project: str | None) -> Path | None:
    group = Path(section.title).name
    tables = {"study_table" if i == 0 else f"study_table_{i + 1}": _rows(table.to_frame())
              for i, table in enumerate(section.tables)}  # fmt: skip
    if section.effects is not None and not section.effects.empty:
        tables["axis_effects"] = _rows(section.effects)
    if section.interactions is not None and not section.interactions.empty:
        tables["axis_interactions"] = _rows(section.interactions)
    for name, points in section.points.items():
        tables[f"{name}_points"] = _rows(points)
    tables["runs"] = _rows(section.runs[list(RUNS_CSV_COLUMNS)])
    images = {f"figures/{stem}": path for stem, path in section.figures.items()}
    return log_summary_run(section.folder, f"report-{group}", project, group, tables, images, mode)


def _rows(frame: pd.DataFrame) -> tuple[list[str], list[list]]:
    """A DataFrame as W&B table columns and rows of plain values (None for missing ones); a column holding values of
    several kinds (an axis's ``3d``, ``True``, ``0.5``) as text, since a W&B column has one type."""
    cleaned = frame.astype(object).where(frame.notna(), None)
    rows = [[_scalar_or_text(v) for v in row] for row in cleaned.itertuples(index=False)]
    for j in range(len(frame.columns)):
        if len({_kind(row[j]) for row in rows if row[j] is not None}) > 1:
            for row in rows:
                row[j] = None if row[j] is None else str(row[j])
    return [str(c) for c in frame.columns], rows


def _kind(value) -> str:
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


def _scalar_or_text(value):
    """A W&B table cell: a numpy scalar as its Python value; a number, text or None as it is; anything else as text."""
    if hasattr(value, "item"):
        return value.item()
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def _slug(title: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(title).name or title).strip("-.") or "section"
    slug, k = base, 2
    while slug in used:
        slug, k = f"{base}-{k}", k + 1
    used.add(slug)
    return slug


def _common_parent(folders: list[Path]) -> str:
    return os.path.commonpath([str(f) for f in folders])
