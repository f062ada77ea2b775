"""A report's section: one folder of runs (or one W&B group) and what was written from it. Filled by
:mod:`analysis.report`, rendered by :mod:`analysis.html`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.effects import best_point
from analysis.table_formats import StudyTable
from core.axes import Axis


@dataclass
class Section:
    """One folder of runs (or one W&B group) and everything written from it."""

    title: str
    runs: pd.DataFrame
    folder: Path
    tables: list[StudyTable] = field(default_factory=list)
    effects: pd.DataFrame | None = None
    interactions: pd.DataFrame | None = None  # whether each axis's effect differs between another axis's levels
    baseline_losses: list[str] = field(default_factory=list)  # where a row loses to a trivial baseline, in words
    plateau: list[str] = field(default_factory=list)  # when each model trained from scratch left its plateau
    points: dict[str, pd.DataFrame] = field(default_factory=dict)  # searched axis name -> metric-versus-value points
    searched: dict[str, Axis] = field(default_factory=dict)  # searched axis name -> its axis
    figure_titles: dict[str, str] = field(default_factory=dict)  # figure name (stem[-dataset]) -> title, in order
    figures: dict[str, Path] = field(default_factory=dict)  # figure name -> PNG
    figure_problems: dict[str, str] = field(default_factory=dict)  # figure name -> why it was not drawn
    written: list[Path] = field(default_factory=list)
    wandb_log: Path | None = None  # the W&B report run's transaction log, when logged

    @property
    def bests(self) -> dict[str, dict[str, pd.Series]]:
        """Per searched axis and per dataset, the run with the lowest best validation MSE among the axis's points."""
        found = {}
        for name, points in self.points.items():
            per_dataset = {dataset: best_point(group) for dataset, group in points.groupby("dataset", sort=True)}
            found[name] = {dataset: best for dataset, best in per_dataset.items() if best is not None}
        return found
