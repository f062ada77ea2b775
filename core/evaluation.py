"""A model scored on a dataset: its predictions fed back on themselves, the metrics (and the trivial baselines) in one
pass, under the run's precision (:func:`precision_context`) and thread count (:func:`torch_threads`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from core.metrics import BASELINES, METRICS, MetricAccumulator, Scores, baseline_predictions


def check_precision(precision: str, device: torch.device) -> None:
    """A clear error for bfloat16 on a GPU that cannot run it (before Ampere, autocast would fail or crawl)."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"train.precision is bf16 but {torch.cuda.get_device_name(device)} has no bfloat16; use fp32")


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Where forward passes and losses run: ``bf16`` is bfloat16 autocast (convolutions and matmuls in bfloat16,
    weights and their gradients float32); ``fp32`` changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's intra-op threads set to ``count`` inside the block (unchanged for None), as they were after it."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def predict_future(model: torch.nn.Module, frames: torch.Tensor, context_frames: int) -> torch.Tensor:
    """The model's predictions of frames ``context_frames..T-1`` from the first ``context_frames``, fed back on
    themselves: ``(B, T, C, H, W)`` -> ``(B, T - context_frames, C, H, W)``."""
    return model(frames, context_frames)[:, context_frames - 1 :]


@dataclass
class Evaluation:
    scores: Scores  # the model's
    pictures: dict[str, np.ndarray]  # the first sequences' context, target and pred, for frame grids
    baselines: dict[str, dict] | None = None  # copy-last-frame and blank: means and per-frame curves, same sequences


def evaluate_model(
    model: torch.nn.Module,
    dataset: Dataset,
    context_frames: int,
    batch_size: int,
    device: torch.device,
    ssim_convention: str = "ours",
    keep: int = 0,
    num_workers: int = 0,
    progress: bool = False,
    baselines: bool = False,
    precision: str = "fp32",
) -> Evaluation:
    """Metrics of the model's predictions on ``dataset``, and the first ``keep`` sequences' frames (``context``,
    ``target``, ``pred``, each ``(keep, T', C, H, W)``) for pictures. With ``baselines``, the trivial predictions are
    scored in the same pass, so the sequences are read once (KTH reads them from disk). ``precision`` is the
    forward pass's (see :func:`precision_context`); metrics are computed on its predictions cast to float32."""
    was_training = model.training
    model.eval()
    scores = MetricAccumulator(ssim_convention)
    trivial = {name: MetricAccumulator(ssim_convention) for name in BASELINES} if baselines else {}
    kept: dict[str, list[torch.Tensor]] = {"context": [], "target": [], "pred": []}
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    for frames in tqdm(loader, desc="evaluating", unit="batch", leave=False, disable=not progress):
        frames = frames.to(device, non_blocking=True)
        with precision_context(precision, device):
            pred = predict_future(model, frames, context_frames)
        pred = pred.float()  # (B, T', C, H, W); bfloat16 under autocast
        target = frames[:, context_frames:]
        scores.update(pred, target)
        if trivial:
            for name, guess in baseline_predictions(frames, context_frames).items():
                trivial[name].update(guess, target)
        if sum(len(x) for x in kept["pred"]) < keep:
            kept["context"].append(frames[:, :context_frames].cpu())
            kept["target"].append(target.cpu())
            kept["pred"].append(pred.clamp(0, 1).cpu())
    model.train(was_training)
    pictures = {name: torch.cat(parts)[:keep].numpy() for name, parts in kept.items() if parts}
    trivial_scores = {name: _baseline_scores(acc.compute()) for name, acc in trivial.items()} if baselines else None
    return Evaluation(scores.compute(), pictures, trivial_scores)


def _baseline_scores(scores: Scores) -> dict[str, float | list[float]]:
    """A baseline's means (``mse``...) and per-frame curves (``mse_by_frame``...), as stored in summary.json."""
    means: dict[str, float | list[float]] = {name: float(getattr(scores, name)) for name in METRICS}
    return means | {f"{name}_by_frame": [float(v) for v in getattr(scores, f"{name}_by_frame")] for name in METRICS}
