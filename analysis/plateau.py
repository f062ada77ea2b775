"""When each model trained from scratch left its plateau, said in words.

The study's training-loss figure shows the residual model leaving the early plateau first (near iteration 2,000,
against about 8,000 for the baseline and E2D-LSTM). Here a run leaves its plateau at the first validation whose MSE
is :data:`DROP` below its first validation's: the plateau's level, since every model has reached the blank-frame-like
guess by then. Only runs trained from scratch count, and 0-step runs scoring a shipped checkpoint, whose histories are
their pretraining's (:mod:`analysis.collect`); a finetune starts below any plateau. Each row gets one sentence giving
every seed's step, so the seeds' spread is in view, e.g. "E3D-LSTM, pretrained: step 1,500 (seed 0), 2,000 (seed 1)".
"""

from __future__ import annotations

import pandas as pd

from analysis.rows import grouped, row_axes, row_name

DROP = 0.05
"""How far below the first validation's MSE a run must fall to have left the plateau (a fraction of it)."""


def plateau_step(validation: list[tuple[int, float]], drop: float = DROP) -> int | None:
    """The first step whose validation MSE is ``drop`` below the first validation's, or None (no such step, or
    fewer than two validations)."""
    if len(validation) < 2:
        return None
    level = validation[0][1] * (1 - drop)
    return next((int(step) for step, mse in validation[1:] if mse <= level), None)


def plateau_sentences(runs: pd.DataFrame, drop: float = DROP) -> list[str]:
    """A sentence per row of runs trained from scratch (or shipped ones scored as they are, with their pretraining's
    histories), in the study table's row order, each seed's plateau step named; nothing when no run has two
    validations."""
    axes = row_axes(runs)
    eligible = runs[runs["init"].isin(["scratch", "pretrained"])] if "init" in runs else runs.iloc[:0]
    lines = []
    for key, seeds in grouped(eligible, axes):
        if key[0] == "run":  # an unreadable record: no row to name
            continue
        steps = []
        for _, run in seeds.sort_values("seed").iterrows():
            validation = list(run["val_history"] or [])
            if len(validation) < 2:
                continue
            step = plateau_step(validation, drop)
            where = f"step {step:,}" if step is not None else f"not by step {int(validation[-1][0]):,}"
            steps.append(f"{where} (seed {run['seed']})")
        if steps:
            lines.append(f"{row_name(key, axes)}: {', '.join(steps)}.")
    if not lines:
        return []
    return [f"Validation MSE first {drop:.0%} below its first evaluation's (leaving the plateau):", *lines]
