"""The figures as a paper prints them: print widths at 300 dpi, legible fonts, TrueType fonts in the PDFs, and one
colour and marker per variant whatever else a figure shows. Runs are tracker records (no training)."""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image
from test_analysis import record_run

from analysis import figures
from analysis.collect import collect
from analysis.report import write_report
from analysis.style import (
    COLUMN_WIDTH_IN,
    DPI,
    FIGURE_COLUMNS,
    KNOWN_VARIANTS,
    MIN_FONT_PT,
    PALETTE,
    STYLE_SLOTS,
    style_slot,
    variant_style,
)
from core.axes import axis
from core.io import DataError

VARIANTS = {  # folder: overrides; E3D-LSTM over two seeds
    "e3d_seed0": (),
    "e3d_seed1": ("--train.seed=1",),
    "e2d": ("--model.conv=2d",),
    "residual": ("--model.residual=true",),
    "l1_half": ("--loss.l1_weight=0.5",),
    "long": ("--model.residual=true", "--loss.l1_weight=0.42", "--train.init_from=source.pt"),  # a two-line name
}
NAMES = {  # a run folder's row name: the study's known variants, and one that takes a hashed slot
    "e3d_seed0": "E3D-LSTM",
    "e2d": "E2D-LSTM",
    "residual": "E3D-LSTM + residuals",
    "l1_half": "E3D-LSTM, l1+l2 (w=0.5)",
    "long": "E3D-LSTM + residuals, l1+l2 (w=0.42), finetuned",
}
STEP = 20  # record_run's last logged step: the final test's frames are frames/test_step20.npz


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """Finished runs of several variants, each with its final test frames (the same ground truth, its own
    predictions), and a pruned run."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, size=(2, 4, 1, 32, 32), dtype=np.uint8)  # (N, Tc, C, H, W)
    target = rng.integers(0, 256, size=(2, 10, 1, 32, 32), dtype=np.uint8)  # (N, T, C, H, W): long strips
    for k, (name, overrides) in enumerate(VARIANTS.items()):
        mse = 40.0 + 5 * k
        run_dir = record_run(root, name, overrides, {"mse": mse, "mae": 2 * mse, "psnr": 20.0, "ssim": 0.8})
        pred = np.clip(target.astype(int) + 10 * k, 0, 255).astype(np.uint8)
        (run_dir / "frames").mkdir(exist_ok=True)
        np.savez_compressed(run_dir / "frames" / f"test_step{STEP}.npz", target=target, pred=pred, context=context)
    record_run(root, "pruned", ("--loss.l1_weight=0.25",), status="pruned")
    return root


@pytest.fixture(scope="module")
def report(runs_dir, tmp_path_factory):
    return write_report([runs_dir], tmp_path_factory.mktemp("out") / "report", published=False)


def drawers():
    """Each figure kind of :data:`analysis.style.FIGURE_COLUMNS` and how to draw it from collected runs."""
    return {
        "loss": figures.loss_figure,
        "per_frame": figures.per_frame_figure,
        "qualitative": figures.qualitative_figure,
        "search": lambda runs: figures.search_figure(runs, axis("l1_weight")),
    }


def test_every_kind_of_figure_has_a_column():
    assert set(drawers()) == set(FIGURE_COLUMNS)
    assert set(FIGURE_COLUMNS.values()) <= set(COLUMN_WIDTH_IN)


@pytest.mark.parametrize("kind", sorted(FIGURE_COLUMNS))
def test_png_is_its_column_wide_at_300_dpi_with_fonts_of_7_pt_or_more(runs_dir, tmp_path, kind):
    figure = drawers()[kind](collect(runs_dir))
    png, pdf = figures.save_figure(figure, tmp_path / kind)
    with Image.open(png) as image:
        width, height = image.size
        dpi = image.info["dpi"]
        pixels = np.asarray(image.convert("L"))
    border = np.concatenate([pixels[:3].ravel(), pixels[-3:].ravel(), pixels[:, :3].ravel(), pixels[:, -3:].ravel()])
    assert border.min() > 200, f"{kind}: something runs off the page (a cut-off label)"
    assert width == round(COLUMN_WIDTH_IN[FIGURE_COLUMNS[kind]] * DPI), kind
    assert 0.5 * DPI < height < 10 * DPI, kind  # fits a page
    assert dpi == pytest.approx((DPI, DPI), abs=0.01)
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert len(texts) > 3, "the figure holds text"
    small = {t.get_text(): t.get_fontsize() for t in texts if t.get_fontsize() < MIN_FONT_PT}
    assert not small, f"{kind}: text under {MIN_FONT_PT} pt: {small}"


def test_the_report_writes_each_figure_at_its_column_width(report):
    folder = report.out_dir / "figures"
    expected = {"loss": "loss", "per_frame": "per_frame", "qualitative": "qualitative", "l1_weight": "search"}
    assert set(report.sections[0].figures) == set(expected)
    for stem, kind in expected.items():
        with Image.open(folder / f"{stem}.png") as image:
            assert image.size[0] == round(COLUMN_WIDTH_IN[FIGURE_COLUMNS[kind]] * DPI), stem


def pdf_font_subtypes(path: Path) -> list[str]:
    """The ``/Subtype`` of every font dictionary in a PDF: in its plain objects and in its zlib-compressed streams
    (where a writer using object streams would put them)."""
    raw = path.read_bytes()
    chunks = [raw]
    for stream in re.finditer(rb"stream\r?\n(.*?)endstream", raw, re.DOTALL):
        with contextlib.suppress(zlib.error):  # a stream not Flate-compressed holds no font dictionary we could miss
            chunks.append(zlib.decompress(stream.group(1)))
    subtypes = []
    for chunk in chunks:
        for font in re.finditer(rb"/Type\s*/Font\b(.{0,400})", chunk, re.DOTALL):
            match = re.search(rb"/Subtype\s*/(\w+)", font.group(1))
            if match:
                subtypes.append(match.group(1).decode())
    return subtypes


@pytest.mark.parametrize("kind", ["per_frame", "search"])
def test_pdf_embeds_truetype_not_type3_fonts(runs_dir, tmp_path, kind):
    _, pdf = figures.save_figure(drawers()[kind](collect(runs_dir)), tmp_path / kind)
    subtypes = pdf_font_subtypes(pdf)
    assert subtypes, "no font dictionary found: the search would pass on anything"
    assert "Type3" not in subtypes and b"/Type3" not in pdf.read_bytes()
    assert {"TrueType", "CIDFontType2"} & set(subtypes), subtypes
    if shutil.which("pdffonts") is None and os.environ.get("CI") == "true":
        pytest.fail("pdffonts is not installed; .ci/run should have installed Debian's poppler-utils")
    if shutil.which("pdffonts"):  # poppler-utils (CI installs it): the same question asked of a real PDF reader
        listing = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
        assert "Type 3" not in listing and "TrueType" in listing


def test_type3_search_finds_matplotlibs_default(tmp_path):
    """The check above can fail: matplotlib's own default writes Type 3 fonts, and it finds them."""
    with matplotlib.rc_context({"pdf.fonttype": 3}):
        figure = matplotlib.figure.Figure()
        figure.text(0.5, 0.5, "Type 3 text")
        figure.savefig(tmp_path / "type3.pdf")
    assert "Type3" in pdf_font_subtypes(tmp_path / "type3.pdf")


def test_paper_settings_do_not_leak(runs_dir, tmp_path):
    before = dict(matplotlib.rcParams)
    figures.save_figure(figures.per_frame_figure(collect(runs_dir)), tmp_path / "f")
    assert matplotlib.rcParams["pdf.fonttype"] == before["pdf.fonttype"]
    assert dict(matplotlib.rcParams) == before


def line_styles(figure) -> dict[str, tuple[str, str]]:
    """Each labelled variant line's (colour, marker), keyed by its row name (the label without its count)."""
    styles = {}
    for panel in figure.axes:
        for line in panel.get_lines():
            label = line.get_label()
            if not label.startswith("_") and line.get_marker() not in (None, "None", ""):
                name = re.sub(r"( \((n=\d+|seed \d+)\))?( \[\w+\])?$", "", label)
                styles[name] = (matplotlib.colors.to_hex(line.get_color()), line.get_marker())
    return styles


def test_a_variant_keeps_its_colour_and_marker_across_figures_and_subsets(runs_dir):
    runs = collect(runs_dir)
    everything = line_styles(figures.per_frame_figure(runs))
    without_e3d = line_styles(figures.per_frame_figure(runs[runs["conv"] == "2d"]))
    reversed_subset = runs[runs["run_name"].isin(["l1_half", "e2d", "residual"])].iloc[::-1]  # no release row
    subset = line_styles(figures.per_frame_figure(reversed_subset))
    losses = line_styles(figures.loss_figure(runs))
    assert set(everything) == set(NAMES.values()) and NAMES["l1_half"] not in KNOWN_VARIANTS
    assert set(without_e3d) == {NAMES["e2d"]} and len(subset) == 3
    assert set(losses) == {*NAMES.values(), "E3D-LSTM, l1+l2 (w=0.25)"}  # the pruned run has a loss line too
    for drawn in (without_e3d, subset, losses):
        for name, style in drawn.items():
            assert style == everything.get(name, style) == variant_style(name), name
    assert len(set(everything.values())) == len(everything), "two variants of one figure share a style"
    matplotlib.pyplot.close("all")


def test_known_variants_take_fixed_distinct_styles():
    assert KNOWN_VARIANTS[:2] == ("E3D-LSTM", "E2D-LSTM")
    assert variant_style("E3D-LSTM") == (PALETTE[0], "o")
    styles = [variant_style(name) for name in KNOWN_VARIANTS]
    assert len(set(styles)) == len(styles)
    unknown = [f"E3D-LSTM, lr={k / 1000:g}" for k in range(1, 40)]
    assert all(len(KNOWN_VARIANTS) <= style_slot(name) < STYLE_SLOTS for name in unknown)
    assert len({variant_style(name) for name in unknown}) > 20  # spread over the free pairs


def test_an_unknown_variants_style_is_the_same_in_another_process():
    """Not Python's hash() (salted per process): a report written tomorrow colours a variant as today's did."""
    code = "from analysis.style import variant_style; print(variant_style('E3D-LSTM, model.window=3'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).parents[1],
        ).stdout  # fmt: skip
        for seed in ("1", "2")
    }
    assert outputs == {f"{variant_style('E3D-LSTM, model.window=3')}\n"}


def test_no_training_curve_is_drawn_when_no_run_trained_a_step(runs_dir):
    """Checkpoints scored as they are (0 steps) have one validation and no loss history: an empty figure would say
    nothing. A shipped checkpoint whose manifest kept its validations only (no losses) is drawn from them."""
    runs = collect(runs_dir)
    assert figures.loss_figure(runs) is not None  # trained runs: drawn
    scored = runs.assign(loss_history=[[] for _ in range(len(runs))], val_history=[[(0, 120.0)]] * len(runs))
    with pytest.raises(DataError, match="no run trained a step"):
        figures.loss_figure(scored)
    shipped = scored.assign(val_history=[[(500, 145.0), (1000, 131.0)]] * len(runs))
    figure = figures.loss_figure(shipped)
    loss_axis, val_axis = figure.axes[:2]
    assert not loss_axis.lines and [t.get_text() for t in loss_axis.texts] == ["no training loss in these records"]
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == [text.get_text() for text in figures.loss_figure(runs).legends[0].get_texts()]  # every run named
