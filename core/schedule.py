"""Scheduled sampling: how often the model is fed the true frame instead of its own prediction while training.

Training step ``s`` (counted from 0) is the release's iteration ``s + 1``, which lowers eta before it is used, so
``eta(s) = max(0, start - rate * (s + 1))`` while ``s + 1 < stop``, and 0 from iteration ``stop`` on (the release:
start 1.0, rate 2e-5, stop 50k: eta is 1 - 2e-5 at the first step and 0 from iteration 50,000, step 49,999).
At step ``s`` each sequence of the batch, at each predicted step past the context, independently receives the true
next frame with probability ``eta(s)``. The draw is a pure function of ``(seed, step)``, so a
resumed run draws exactly what an uninterrupted one would. At test time the model always feeds back its predictions.
"""

from __future__ import annotations

import math

import torch


def sampling_eta(step: int, start: float, rate: float, stop: int) -> float:
    """Probability of feeding the true frame at training step ``step`` (0-based; the release's iteration step + 1)."""
    iteration = step + 1
    if iteration >= stop:
        return 0.0
    return max(0.0, start - rate * iteration)


def true_frame_mask(
    step: int, seed: int, eta: float, batch_size: int, steps_past_context: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """float32 ``(batch_size, steps_past_context)`` of 1 (feed the true frame) or 0 (feed the prediction)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)  # one stream per (seed, step)
    draws = torch.rand(batch_size, steps_past_context, generator=generator)
    return (draws < eta).float().to(device, non_blocking=True)


def learning_rate(step: int, lr: float, schedule: str, steps: int, warmup: int = 0, lr_min: float = 0.0) -> float:
    """The learning rate of training step ``step`` (0-based) of ``steps``. ``constant``: ``lr``. ``cosine``: linear
    warm-up ``lr * (step + 1) / warmup`` over the first ``warmup`` steps, then ``lr_min + (lr - lr_min) * (1 +
    cos(pi * p)) / 2`` with ``p`` rising from 0 at step ``warmup`` to 1 at the last step. A pure function of the step,
    so a resumed run needs no scheduler state."""
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r} (constant or cosine)")
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - 1 - warmup))
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
