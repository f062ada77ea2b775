"""The training loss: a weighted mix of l1 and l2 on every predicted frame.

``loss = w * mean|e| + (1 - w) * mean(e^2)`` with ``w = loss.l1_weight`` in [0, 1] and ``e = prediction - target`` on
[0, 1] values, means over every predicted pixel. ``w = 0`` is l2 only, ``w = 1`` l1 only.

The E3D-LSTM release sums instead: ``sum(e^2) / 2 + sum|e|``, an l2:l1 weighting of 0.5:1. Sums and means differ
by a constant factor (the pixel count), which only rescales the learning rate, so the release's mix is
``w = 1 / (1 + 0.5) = 2/3``.
"""

from __future__ import annotations

import torch

from core.config import RELEASE_L1_WEIGHT

__all__ = ["RELEASE_L1_WEIGHT", "prediction_loss"]


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, l1_weight: float) -> dict[str, torch.Tensor]:
    """Mean over all elements: ``{"loss", "l1", "l2"}`` scalar tensors for ``pred`` and ``target`` of one shape."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    error = pred - target
    l1 = error.abs().mean()
    l2 = error.square().mean()
    return {"loss": l1_weight * l1 + (1 - l1_weight) * l2, "l1": l1, "l2": l2}
