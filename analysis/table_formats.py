"""A built study table (:class:`StudyTable`: its rows of :class:`Cell`) and its formats: Markdown, LaTeX (booktabs),
HTML and CSV, with the caption and notes that state every convention. :mod:`analysis.tables` builds one from runs.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from analysis.labels import CONVENTIONS_NOTE, DATASET_LABELS, METRIC_LABELS, SSIM_CONVENTIONS

NOT_RUN = "–"  # a variant with no run on a dataset
PUBLISHED_SSIM_MARK = "†"  # a published SSIM under the release convention, in a table that is not


@dataclass(frozen=True)
class Cell:
    """One table cell: the mean and spread of a metric over the finished runs of a row on one dataset."""

    text: str  # as displayed, without bold
    mean: float = math.nan
    std: float = math.nan  # sample std over seeds (ddof=1); NaN with fewer than 2
    n: int = 0  # finished runs the numbers come from
    run_dirs: tuple[str, ...] = ()  # the run folders the numbers come from (finished runs only)
    bold: bool = False
    status: str = ""  # for a row with runs that did not finish: what became of them


@dataclass(frozen=True)
class Row:
    name: str
    kind: Literal["variant", "baseline", "published"]
    cells: Mapping[tuple[str, str], Cell]  # (dataset, metric or "seeds") -> cell
    axes: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""  # where a published row's numbers come from


@dataclass(frozen=True)
class StudyTable:
    """A study-shaped table, ready to write as Markdown, LaTeX or CSV."""

    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: tuple[Row, ...]
    test_sets: Mapping[str, str | None]  # dataset -> the test set every number of its columns was computed on
    ssim_conventions: Mapping[str, str | None]  # dataset -> the SSIM convention of its SSIM column
    caption: str  # Markdown and HTML: the title and every convention
    title: str = "E3D-LSTM variants"  # LaTeX's short caption starts with it; its conventions go to a notes paragraph

    @property
    def columns(self) -> list[tuple[str, str]]:
        """(dataset, metric) for each number column, then (dataset, "seeds"), dataset by dataset."""
        return [(dataset, metric) for dataset in self.datasets for metric in (*self.metrics, "seeds")]

    def cell(self, row_name: str, dataset: str, metric: str) -> Cell:
        """The cell of the row named ``row_name`` (the first, if published rows share a name with ours)."""
        for row in self.rows:
            if row.name == row_name:
                return row.cells.get((dataset, metric), Cell(NOT_RUN))
        raise KeyError(f"no row named {row_name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def _header(self, dataset: str, metric: str) -> str:
        label = "Seeds" if metric == "seeds" else METRIC_LABELS[metric]
        return label if len(self.datasets) == 1 else f"{label} ({DATASET_LABELS.get(dataset, dataset)})"

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table under a one-paragraph caption; best values in ``**bold**``."""
        headers = ["Variant", *(self._header(*column) for column in self.columns)]
        lines = [f"**Table.** {self.caption}", "", md_row(headers), md_row(["---"] + ["--:"] * len(self.columns))]
        for row in self.rows:
            texts = [row.cells.get(column, Cell(NOT_RUN)) for column in self.columns]
            lines.append(md_row([row.name, *(f"**{c.text}**" if c.bold else c.text for c in texts)]))
        return "\n".join(lines) + "\n"

    def to_latex(self, label: str = "tab:study") -> str:
        """A booktabs table sized for one column of a two-column paper: a one-sentence caption, the conventions in a
        notes paragraph under the bottom rule. A table with several datasets is a ``table*`` across both columns.

        Needs ``\\usepackage{booktabs}`` and ``\\usepackage{tabularx}`` (both in TeX Live's basic LaTeX sets; the
        written file says so in a comment at its top). Bold: ``\\textbf``. What makes it fit (a study table is many
        numbers wide): ``\\footnotesize``, ``\\tabcolsep`` 3pt, each ``± std`` one size smaller under its mean
        (``\\meanstd``, defined in the file, so a column is as wide as its means), a Seeds column of ``n`` or
        ``finished/all``, a status spanning the metric columns of a row that never finished, and a variant column
        (``tabularx``'s ``X``) that takes the width the numbers leave and wraps long names.
        """
        float_env = "table" if len(self.datasets) == 1 else "table*"  # 4 metrics x 2 datasets never fit one column
        width = len(self.metrics) + 1
        lines = [
            "% The study's table from mentalsim (`launch.py report`). Preamble: \\usepackage{booktabs} (rules) and",
            "% \\usepackage{tabularx} (the variant column takes the width the numbers leave), both in TeX Live's basic",
            "% LaTeX (Debian: texlive-latex-recommended). One dataset: fits a column of a two-column article; several:",
            "% a table* across both columns. The Markdown and CSV beside this file hold the same numbers.",
            "% \\meanstd{mean}{std} sets the std under its mean (narrow columns); to change that, define it before the",
            "% \\input, e.g. \\newcommand{\\meanstd}[2]{#1{\\scriptsize$\\pm$#2}} for both on one line.",
            r"\providecommand{\meanstd}[2]{\begin{tabular}[t]{@{}r@{}}#1\\[-1pt]{\scriptsize$\pm$#2}\end{tabular}}",
            rf"\begin{{{float_env}}}[t]",
            rf"\caption{{{self._latex_caption()}}}",
            rf"\label{{{_latex_escape(label)}}}",
            r"\smallskip",  # article puts no space below a caption set above its table
            r"\footnotesize",
            r"\setlength{\tabcolsep}{3pt}",
            # a wrapped variant name's further lines are indented, apart from the next row and from a std line
            r"\begin{tabularx}{\linewidth}{@{}>{\raggedright\arraybackslash\hangindent=1em\hangafter=1}X"
            + "r" * len(self.columns)
            + "@{}}",
            r"\toprule",
        ]
        if len(self.datasets) > 1:
            groups = [
                rf"\multicolumn{{{width}}}{{c}}{{{_latex_escape(DATASET_LABELS.get(d, d))}}}" for d in self.datasets
            ]
            lines.append(" & ".join(["", *groups]) + r" \\")
            lines.append(
                "".join(rf"\cmidrule(lr){{{2 + i * width}-{1 + (i + 1) * width}}}" for i in range(len(self.datasets)))
            )
        labels = [r"$n$" if metric == "seeds" else METRIC_LABELS[metric] for _, metric in self.columns]
        lines.append(" & ".join(["Variant", *labels]) + r" \\")
        previous_kind = None
        for row in self.rows:
            if row.kind != previous_kind:
                lines.append(r"\midrule")
                previous_kind = row.kind
            texts = [_latex_escape(row.name)]
            for dataset in self.datasets:
                cells = [row.cells.get((dataset, metric), Cell(NOT_RUN)) for metric in self.metrics]
                stopped = row.kind == "variant" and all(
                    c.n == 0 and c.status and c.text == cells[0].text for c in cells
                )
                if stopped:  # no run of the row finished: its status once, across the metric columns
                    texts.append(rf"\multicolumn{{{len(cells)}}}{{c}}{{{_latex_escape(cells[0].text)}}}")
                else:
                    texts += [_latex_number(cell) for cell in cells]
                texts.append(_latex_seeds(row.cells.get((dataset, "seeds"), Cell(NOT_RUN))))
            lines.append(" & ".join(texts) + r" \\")
        lines += [
            r"\bottomrule",
            r"\end{tabularx}",
            r"\par\smallskip\raggedright",
            self._latex_notes(),
            rf"\end{{{float_env}}}",
        ]
        return "\n".join(lines) + "\n"

    def _latex_caption(self) -> str:
        """One sentence: what the table compares, where, and what a cell is; the conventions go to the notes."""
        where = " and ".join(_latex_escape(DATASET_LABELS.get(d, d)) for d in self.datasets)
        return f"{_latex_escape(self.title)} on {where} (test scores; mean $\\pm$ std over seeds)."

    def _latex_notes(self) -> str:
        """The caption's conventions, condensed: test set and SSIM per dataset, the metrics' definitions, what a cell,
        bold and the reference rows mean, and which runs did not finish."""
        notes = [_dataset_note(d, self.test_sets, self.ssim_conventions) for d in self.datasets]
        notes.append(CONVENTIONS_NOTE)
        notes = [_latex_escape(note) for note in notes]
        notes.append(  # LaTeX already: math italics for the symbols of the Seeds column
            r"Cells: mean $\pm$ sample std (ddof=1) over the $n$ finished seeds; $a/b$: $a$ of $b$ runs finished. "
            r"Bold: the best mean per column (lower MSE/MAE, higher SSIM/PSNR is better), only where Welch's 95\% "
            r"interval of its gap to the next row excludes zero."
        )
        if any(row.kind == "baseline" for row in self.rows):
            notes.append(_latex_escape(BASELINES_NOTE))
        if any(row.kind == "published" for row in self.rows):
            notes.append(_latex_escape(_published_note(self.rows)))
        stopped = [
            f"{row.name}{'' if len(self.datasets) == 1 else ' on ' + DATASET_LABELS.get(d, d)} ({cell.status})"
            for row in self.rows
            if row.kind == "variant"
            for d in self.datasets
            if (cell := row.cells.get((d, "seeds"))) is not None and cell.status
        ]
        if stopped:
            notes.append(_latex_escape(f"Runs that did not finish: {'; '.join(stopped)}."))
        return " ".join(notes)

    def to_html(self, link: Callable[[str], str | None] | None = None) -> str:
        """An HTML ``<table>`` with the caption; bold as ``<strong>``. With ``link``, each number cell links to the
        page of the (first) run it came from (``link(run_dir)``) and lists all its run folders in its tooltip."""
        esc = html.escape
        head = "".join(f"<th>{esc(self._header(*column))}</th>" for column in self.columns)
        lines = [
            '<table class="study">',
            f"<caption>{esc(self.caption)}</caption>",
            f"<thead><tr><th>Variant</th>{head}</tr></thead>",
            "<tbody>",
        ]
        for row in self.rows:
            cells = []
            for column in self.columns:
                cell = row.cells.get(column, Cell(NOT_RUN))
                text = esc(cell.text)
                if cell.bold:
                    text = f"<strong>{text}</strong>"
                target = link(cell.run_dirs[0]) if link is not None and cell.run_dirs else None
                if target:
                    text = f'<a href="{esc(target)}" title="{esc(chr(10).join(cell.run_dirs))}">{text}</a>'
                css = ' class="stopped"' if cell.status and row.kind == "variant" else ""
                cells.append(f"<td{css}>{text}</td>")
            name = esc(row.name) + (f' <span class="source">({esc(row.source)})</span>' if row.source else "")
            lines.append(f'<tr class="{row.kind}"><th scope="row">{name}</th>{"".join(cells)}</tr>')
        lines += ["</tbody>", "</table>"]
        return "\n".join(lines) + "\n"

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per (table row, dataset, metric) with the raw mean, std, n, text, bold and run folders;
        the Seeds cells appear with metric ``seeds``."""
        records = []
        for row in self.rows:
            published = row.kind == "published"
            for dataset, metric in self.columns:
                cell = row.cells.get((dataset, metric))
                if cell is None:
                    continue
                records.append(
                    {
                        "row": row.name,
                        "kind": row.kind,
                        "dataset": dataset,
                        "metric": metric,
                        "mean": cell.mean,
                        "std": cell.std,
                        "n": cell.n,
                        "text": cell.text,
                        "bold": cell.bold,
                        "status": cell.status,
                        "test_set": self.test_sets.get(dataset) if not published else "their authors'",
                        "ssim_convention": self.ssim_conventions.get(dataset) if not published else "release",
                        "run_dirs": ";".join(cell.run_dirs),
                        "source": row.source if published else "",
                    }
                )
        return pd.DataFrame(records, columns=CSV_COLUMNS)

    def to_csv(self, path: str | Path | None = None) -> str:
        """:meth:`to_frame` as CSV (``run_dirs`` joined by ``;``, full float precision); also written to ``path``."""
        buffer = io.StringIO()
        self.to_frame().to_csv(buffer, index=False)  # floats as repr: they read back exactly
        text = buffer.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


CSV_COLUMNS = ("row", "kind", "dataset", "metric", "mean", "std", "n", "text", "bold", "status", "test_set",
               "ssim_convention", "run_dirs", "source")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Captions and notes


BASELINES_NOTE = "Copy last frame and blank frame: trivial predictions scored on the same test set."


def _dataset_note(dataset: str, test_sets: Mapping[str, str | None], conventions: Mapping[str, str | None]) -> str:
    """The test set and SSIM convention a dataset's columns were computed on."""
    convention = conventions.get(dataset)
    described = f"{convention} ({SSIM_CONVENTIONS[convention]})" if convention in SSIM_CONVENTIONS else "none"
    return (
        f"{DATASET_LABELS.get(dataset, dataset)}: test set {test_sets.get(dataset) or 'unknown'}; "
        f"SSIM convention {described}."
    )


def _published_note(rows: Iterable[Row]) -> str:
    rows = list(rows)
    marked = any(PUBLISHED_SSIM_MARK in cell.text for row in rows for cell in row.cells.values())
    return (
        "(published): numbers as printed by their authors, on their own test sets, SSIM under the release "
        "convention; not recomputed here and never bold."
        + (f" {PUBLISHED_SSIM_MARK}: not comparable with our SSIM column's convention." if marked else "")
    )


def study_caption(
    title: str,
    datasets: tuple[str, ...],
    test_sets: Mapping[str, str | None],
    conventions: Mapping[str, str | None],
    with_published: bool,
    rows: list[Row],
) -> str:
    """The Markdown and HTML caption: the title and every convention (LaTeX: :meth:`StudyTable._latex_notes`)."""
    parts = [f"{title}.", *(_dataset_note(dataset, test_sets, conventions) for dataset in datasets)]
    parts.append(CONVENTIONS_NOTE)
    parts.append(
        "Cells: mean ± sample standard deviation (ddof=1) over seeds, the mean alone for one seed; Seeds: finished "
        "runs (of all runs, with what became of the others). Bold: the best mean per column among our rows, baselines "
        "included (lowest MSE/MAE, highest SSIM/PSNR), only where it beats the next row beyond seed noise (Welch's "
        "95% interval of the gap excludes zero; a row with one seed has no measured noise and is never bold)."
    )
    if any(row.kind == "baseline" for row in rows):
        parts.append(BASELINES_NOTE)
    if with_published and any(row.kind == "published" for row in rows):
        parts.append(_published_note(rows))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------------
# Writers' helpers


def md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
    PUBLISHED_SSIM_MARK: r"$^\dagger$",  # math mode: Computer Modern's dagger, no Type 3 font without cm-super
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text))


def _latex_number(cell: Cell) -> str:
    """``mean ± std`` as ``\\meanstd{mean}{std}`` (the written file defines it: the std one size smaller, under the
    mean, so that a column is as wide as its means), or the cell's text as it is."""
    mean, spread, std = cell.text.partition(" ± ")
    text = rf"\meanstd{{{_latex_escape(mean)}}}{{{_latex_escape(std)}}}" if spread else _latex_escape(cell.text)
    return rf"\textbf{{{text}}}" if cell.bold else text


def _latex_seeds(cell: Cell) -> str:
    """Finished seeds, or ``finished/all`` where some runs stopped (what became of them is in the notes)."""
    finished, of, rest = cell.text.partition(" of ")
    return _latex_escape(f"{finished}/{rest.split(' ', 1)[0]}" if of else cell.text)
