"""A report's section: one folder of runs (or one W&B group) and what was written from it. Filled by
:mod:`analysis.report`, rendered by :mod:`analysis.html`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.effects import best_weight
from analysis.tables import StudyTable


@dataclass
class Section:
    """One folder of runs (or one W&B group) and everything written from it."""

    title: str
    runs: pd.DataFrame
    folder: Path
    tables: list[StudyTable] = field(default_factory=list)
    effects: pd.DataFrame | None = None
    points: pd.DataFrame | None = None  # metric-versus-l1-weight, when the weight varies
    figure_titles: dict[str, str] = field(default_factory=dict)  # figure name (stem[-dataset]) -> title, in order
    figures: dict[str, Path] = field(default_factory=dict)  # figure name -> PNG
    figure_problems: dict[str, str] = field(default_factory=dict)  # figure name -> why it was not drawn
    written: list[Path] = field(default_factory=list)
    wandb_log: Path | None = None  # the W&B report run's transaction log, when logged

    @property
    def bests(self) -> dict[str, pd.Series]:
        """Per dataset, the run with the lowest best validation MSE among the l1-weight points (when the weight
        varies)."""
        if self.points is None:
            return {}
        found = {dataset: best_weight(points) for dataset, points in self.points.groupby("dataset", sort=True)}
        return {dataset: best for dataset, best in found.items() if best is not None}
