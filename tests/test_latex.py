"""The written LaTeX table compiled by a real pdflatex in the smallest paper it is meant for: one column of
``\\documentclass[twocolumn]{article}`` (229.5 pt at 10 pt). Needs Debian's texlive-latex-base and
texlive-latex-recommended (booktabs); without pdflatex the tests skip on a developer machine and fail under CI=true."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_analysis import KTH_TEST, mmnist_study, record_run

from analysis.collect import collect
from analysis.tables import study_table

# The preamble the written file's header comment asks for, and nothing else: a missing package is an error here.
WRAPPER = r"""\documentclass[twocolumn]{article}
\usepackage{booktabs}
\usepackage{tabularx}
\begin{document}
\typeout{COLUMNWIDTH=\the\columnwidth}
\typeout{TEXTWIDTH=\the\textwidth}
\input{table}
\end{document}
"""
VARIANT_PROBE = r"\typeout{VARIANTWIDTH=\the\hsize}"  # the variant column's final width, reported by TeX


def _pdflatex() -> str:
    found = shutil.which("pdflatex")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is not installed; .ci/run should have installed texlive-latex-recommended")
        pytest.skip("no pdflatex on PATH (apt-get install texlive-latex-base texlive-latex-recommended)")
    return found


def compile_table(latex: str, folder: Path) -> dict[str, float]:
    """Compile ``latex`` (a written table) in the wrapper; fail on a TeX error or on any line wider than its box.
    Returns the widths TeX reported, in pt: ``column``, ``text`` and ``variant`` (the wrapped name column)."""
    folder.mkdir(parents=True, exist_ok=True)
    assert latex.count(r"\arraybackslash") == 1
    (folder / "table.tex").write_text(latex.replace(r"\arraybackslash", r"\arraybackslash" + VARIANT_PROBE))
    (folder / "paper.tex").write_text(WRAPPER)
    done = subprocess.run(
        [_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "paper.tex"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    log = (folder / "paper.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    too_wide = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)
    assert not too_wide, f"the table is wider than its column by {max(map(float, too_wide))} pt"
    assert "X Columns too narrow" not in log
    widths = {name: float(value) for name, value in re.findall(r"^(COLUMN|TEXT|VARIANT)WIDTH=([\d.]+)pt$", log, re.M)}
    return {name.lower(): widths[name] for name in ("COLUMN", "TEXT", "VARIANT")}  # the last variant width is final


def test_the_study_table_fits_one_column(tmp_path):
    """Four metrics with ± std, a failed and a diverged row, baselines and a published row, in 229.5 pt."""
    mmnist_study(tmp_path / "runs")
    latex = study_table(collect(tmp_path / "runs"), published=True).to_latex()
    assert latex.count(r"\begin{table}") == 1  # one column, not table*
    widths = compile_table(latex, tmp_path / "tex")
    assert widths["column"] == pytest.approx(229.5)
    assert widths["variant"] >= 80, "the variant names would wrap every word or two"


def test_long_variant_names_and_wide_numbers_still_fit(tmp_path):
    """The widest table a study writes: names of four axes, three-digit means with two-digit stds, a pruned row."""
    root = tmp_path / "runs"
    axes = ("--model.memory_flow=zigzag", "--model.recall=scaled", "--model.output_gate=paper", "--loss.l1_weight=0")
    for seed, scale in enumerate((1.0, 1.07)):
        record_run(
            root,
            f"long{seed}",
            (*axes, f"--train.seed={seed}"),
            {"mse": 198.0 * scale, "mae": 565.8 * scale, "psnr": 13.23 * scale, "ssim": 0.015 * scale},
        )
        record_run(
            root,
            f"base{seed}",
            (f"--train.seed={seed}",),
            {"mse": 107.1 * scale, "mae": 246.7 * scale, "psnr": 15.98 * scale, "ssim": 0.572 * scale},
        )
    record_run(root, "pruned", ("--model.residual=true", "--train.init_from=runs/base/checkpoints/best.pt", *axes),
               status="pruned")  # fmt: skip
    table = study_table(collect(root), published=True)
    assert any(len(row.name) > 60 for row in table.rows)
    latex = table.to_latex()
    assert r"\multicolumn{4}{c}{pruned}" in latex
    widths = compile_table(latex, tmp_path / "tex")
    assert widths["variant"] >= 80


def test_two_datasets_span_both_columns(tmp_path):
    record_run(tmp_path / "runs", "m", ())
    record_run(tmp_path / "runs", "k", ("--data.dataset=kth", "--data.root=/data/kth"), test_set=KTH_TEST)
    latex = study_table(collect(tmp_path / "runs"), published=True).to_latex()
    assert r"\begin{table*}" in latex
    widths = compile_table(latex, tmp_path / "tex")
    assert widths["variant"] >= 150 and widths["text"] > 2 * widths["column"]


def test_two_sections_tables_input_into_one_paper(tmp_path):
    """Each section's table has its own label (from its folder), so a paper can \\input two of them; the published
    SSIM's dagger is math mode, so the PDF has no Type 3 (bitmap) font even without cm-super."""
    from analysis.report import write_report

    for name in ("baselines", "finetune"):
        mmnist_study(tmp_path / name)
    write_report([tmp_path / "baselines", tmp_path / "finetune"], out_dir=tmp_path / "report", published=True)
    tables = sorted((tmp_path / "report").glob("*/table.tex"))
    labels = [re.search(r"\\label\{([^}]*)\}", table.read_text()).group(1) for table in tables]
    assert labels == ["tab:baselines", "tab:finetune"]
    assert all(r"$^\dagger$" in table.read_text() and r"\dag}" not in table.read_text() for table in tables)
    paper = WRAPPER.replace(r"\input{table}", "\n".join(rf"\input{{{t.parent.name}/table}}" for t in tables))
    (tmp_path / "report/paper.tex").write_text(paper)
    done = subprocess.run([_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "paper.tex"],
                          cwd=tmp_path / "report", capture_output=True, text=True, timeout=120)  # fmt: skip
    log = (tmp_path / "report/paper.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert "multiply defined" not in log
    if shutil.which("pdffonts"):
        fonts = subprocess.run(["pdffonts", str(tmp_path / "report/paper.pdf")], capture_output=True, text=True)
        assert "Type 3" not in fonts.stdout
