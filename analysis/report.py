"""The study's tables from a folder of runs, written beside them: ``<root>/report/table[-k].{md,tex,csv}``.

Runs on different test sets or under different SSIM conventions become separate tables, never one column.
"""

from __future__ import annotations

from pathlib import Path

from analysis.collect import collect
from analysis.tables import study_table
from core.io import atomic_write


def write_tables(root: str | Path, out_dir: str | Path | None = None, published: bool = True) -> list[Path]:
    """Collect the runs under ``root`` and write their tables as Markdown, LaTeX and CSV; returns the Markdown paths."""
    root = Path(root)
    runs = collect(root)
    if runs.empty:
        raise ValueError(f"{root}: no run folders (with summary.json or config.yaml) below this folder")
    out_dir = Path(out_dir) if out_dir is not None else root / "report"
    tables = study_table(runs, published=published, split_by_test_set=True)
    written = []
    for index, table in enumerate(tables):
        stem = out_dir / ("table" if len(tables) == 1 else f"table-{index + 1}")
        for suffix, text in ((".md", table.to_markdown()), (".tex", table.to_latex()), (".csv", table.to_csv())):
            with atomic_write(stem.with_suffix(suffix), "w") as handle:
                handle.write(text)
        written.append(stem.with_suffix(".md"))
    return written
