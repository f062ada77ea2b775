"""How the report's figures look on paper: their print width, fonts and resolution, and one colour and marker per
variant.

- :data:`COLUMN_WIDTH_IN` and :data:`FIGURE_COLUMNS`: each kind of figure is drawn at the width it is printed at, one
  column (3.3 in) or two (6.9 in, the text width of two-column venues), so ``\\includegraphics[width=\\columnwidth]``
  keeps its text at the sizes below; PNGs are written at :data:`DPI`.
- :data:`PAPER_RC`: fonts 8 pt (axis labels), 9 pt (titles), 7 pt (tick labels, legends) at print size; TrueType
  (Type 42) fonts in PDF and PostScript, since some venues reject the Type 3 fonts matplotlib embeds by default.
  :func:`paper_style` applies it for one figure, never globally.
- :func:`variant_style`: a variant's (colour, marker), the same in every figure, section and report, whatever other
  variants a figure shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import matplotlib
from matplotlib import cycler

from core.axes import variant_name

Column = Literal["single", "double"]

COLUMN_WIDTH_IN: dict[Column, float] = {"single": 3.3, "double": 6.9}
"""Print widths in inches: a column of a two-column paper (3.3 in), and its full text width (6.9 in)."""

FIGURE_COLUMNS: dict[str, Column] = {
    "loss": "double",  # two panels (training loss, validation MSE) and a legend entry per run
    "per_frame": "double",  # two panels (MSE, SSIM) and a legend entry per variant
    "qualitative": "double",  # a row of frames per variant: a column would shrink each frame to a few millimetres
    "search": "single",  # one scatter panel (l1 weight, learning rate, ...)
}
"""Which width each kind of figure is drawn at: several panels or frame strips span both columns, one panel fits one."""

DPI = 300
"""PNG resolution: print quality at the figures' print sizes (a two-column figure is 2070 px wide)."""

MIN_FONT_PT = 7
"""The smallest text any figure holds, at print size."""

PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
"""Okabe and Ito's colour-blind-safe colours, without their yellow (unreadable on white). Grey is left to the trivial
baselines."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
"""8 markers against 7 colours: coprime, so the first 56 style slots are 56 different (colour, marker) pairs."""

STYLE_SLOTS = len(PALETTE) * len(MARKERS)

KNOWN_VARIANTS: tuple[str, ...] = tuple(
    variant_name(values)
    for values in (
        {"conv": "3d"},  # the release's E3D-LSTM
        {"conv": "2d"},
        {"conv": "3d", "residual": True},
        {"conv": "3d", "residual": True, "init": "finetuned"},
        {"conv": "3d", "l1_weight": 1.0},
        {"conv": "3d", "l1_weight": 0.0},
        {"conv": "3d", "init": "finetuned"},
        {"conv": "3d", "l1_weight": 0.0, "init": "finetuned"},
        {"conv": "3d", "residual": True, "l1_weight": 0.0, "init": "finetuned"},
        {"conv": "3d", "l1_weight": 0.0, "init": "pretrained"},
        {"conv": "2d", "l1_weight": 0.0, "init": "pretrained"},
        {"conv": "2d", "residual": True},
        # ours: the same skips behind gates that start at 0, each placed so its colour differs from the plain row
        # it is drawn beside (the finetuned gated rows sit on their controls at make sweep's length)
        {"conv": "3d", "residual": "gated", "init": "finetuned"},
        {"conv": "3d", "residual": "gated", "l1_weight": 0.0, "init": "finetuned"},
        {"conv": "2d", "residual": "gated"},
        {"conv": "3d", "residual": "gated"},
    )
)
"""The study's rows (ablations/<dataset>/*.yaml), then the showcase's (``make sweep``), in a fixed order: each takes
the style slot of its position, so they never share a pair and keep it whatever else is drawn. Named by
:func:`core.axes.variant_name`, as the tables and figures name rows."""

PAPER_RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 9,
    "figure.titlesize": 9,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "grid.linewidth": 0.4,
    "savefig.dpi": DPI,
    "axes.prop_cycle": cycler(color=PALETTE),  # anything not styled per variant still draws from the same colours
}
"""matplotlib settings for a figure printed at its width (:data:`COLUMN_WIDTH_IN`)."""


@contextmanager
def paper_style() -> Iterator[None]:
    """Apply :data:`PAPER_RC` while a figure is drawn and saved (fonts are read when text is made, the font type when
    the PDF is written); matplotlib's settings outside are left alone."""
    with matplotlib.rc_context(PAPER_RC):
        yield


def figure_width(kind: str) -> float:
    """The print width in inches of a kind of figure (a key of :data:`FIGURE_COLUMNS`)."""
    return COLUMN_WIDTH_IN[FIGURE_COLUMNS[kind]]


def style_slot(name: str) -> int:
    """A variant's place among the :data:`STYLE_SLOTS` (colour, marker) pairs: its position in :data:`KNOWN_VARIANTS`,
    else a slot after them picked by a hash of its name (sha256, so the same in every process and run; two unknown
    variants can share a slot, which is the price of not depending on what else a figure shows)."""
    if name in KNOWN_VARIANTS:
        return KNOWN_VARIANTS.index(name)
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    free = STYLE_SLOTS - len(KNOWN_VARIANTS)
    return len(KNOWN_VARIANTS) + digest % free


def variant_style(name: str) -> tuple[str, str]:
    """A variant's (or any row label's) colour and marker, the same in every figure: see :func:`style_slot`."""
    slot = style_slot(name)
    return PALETTE[slot % len(PALETTE)], MARKERS[slot % len(MARKERS)]
