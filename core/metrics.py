"""Video-prediction metrics (MSE, MAE, PSNR, SSIM) with their conventions written down, and the trivial baselines.

Inputs are predictions and targets of shape ``(N, T, C, H, W)``: N sequences of T predicted frames, values in [0, 1],
as numpy arrays or torch tensors. The work runs in torch on the input's device; results come back as numpy and
python values. The conventions, each chosen so our numbers can be set beside the E3D-LSTM release's:

- Predictions are clipped to [0, 1] before every metric. Targets must already lie in [0, 1]; values within
  ``TARGET_TOLERANCE`` outside it are clamped in, anything further, NaN or inf in either input is a ``DataError``.
- MSE per frame: the sum over channels and pixels (C, H, W) of the squared error on [0, 1] values, one number per
  (sequence, frame). The per-frame curve is its mean over sequences, shape (T,); the scalar is the mean over sequences
  and frames. (The release's log line "mse per seq" is T times this.) MAE likewise with the absolute error.
- PSNR per frame: both frames quantised to uint8 by truncation, ``floor(x * 255)`` after clipping and computed in the
  input's precision (as ``(x * 255).astype(np.uint8)`` does), differences taken in int32 so nothing wraps around, then
  ``20 log10(255) - 10 log10(mean squared difference over C, H, W)``, averaged like MSE. A perfect frame would score
  +inf: every frame is capped at ``PSNR_PERFECT_DB``.
- SSIM per frame: scikit-image's ``structural_similarity(p, t, data_range=R, channel_axis=0)`` on the (C, H, W) frame
  (7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, the mean over the windows that lie wholly inside the
  frame, then over channels), reproduced to within 1e-4 (measured: below 1e-12) by a batched float64 version.
  ``ssim_convention="ours"`` uses R = 1, the range of [0, 1] frames; ``"release"`` uses R = 2, what old scikit-image
  silently assumed for float images and what the release, the E3D study and OpenSTL report. R = 2 inflates SSIM.
  Frames must be at least 7x7.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.io import DataError
from core.records import METRICS

Frames = np.ndarray | torch.Tensor

BASELINES = ("copy_last_frame", "blank")
"""The trivial predictions reported beside every trained model."""

SSIM_CONVENTIONS: dict[str, float] = {"ours": 1.0, "release": 2.0}
"""SSIM convention name -> the ``data_range`` handed to the SSIM constants."""

PSNR_PERFECT_DB = 100.0
"""PSNR of a frame with no quantised error (+inf in exact arithmetic); also the cap on every frame's PSNR."""

TARGET_TOLERANCE = 1e-6
"""How far outside [0, 1] a target value may lie (float noise from resizing or dividing) before it is an error."""

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03

_WINDOW_AREA = SSIM_WINDOW * SSIM_WINDOW
# scikit-image's use_sample_covariance=True: window covariances divide by n - 1, not n.
_COV_NORM = _WINDOW_AREA / (_WINDOW_AREA - 1)
# Values per block of work (whole sequences where they fit). Small on CPU, where speed is flat from 10 to 120 frames of
# 64x64 (measured) and the float64 scratch stays at tens of megabytes; large on a GPU so each kernel has enough work.
_BLOCK_ELEMENTS_CPU = 1 << 17
_BLOCK_ELEMENTS_GPU = 1 << 22


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__ would compare arrays, which is ambiguous
class Scores:
    """Means over sequences and frames of each metric, the per-frame curves (means over sequences), the per-sequence
    means (over frames; what a paired interval over test sequences needs), and the context."""

    mse: float
    mae: float
    psnr: float
    ssim: float
    mse_by_frame: np.ndarray = field(repr=False)
    mae_by_frame: np.ndarray = field(repr=False)
    psnr_by_frame: np.ndarray = field(repr=False)
    ssim_by_frame: np.ndarray = field(repr=False)
    num_sequences: int
    ssim_convention: str
    by_sequence: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # name -> (N,) in update order

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        """Flat, JSON-serialisable: ``{prefix + "mse": float, ..., prefix + "mse_by_frame": [float, ...], ...}``.

        Also holds ``num_sequences`` and ``ssim_convention``, so a table can refuse to mix conventions.
        """
        out: dict[str, Any] = {f"{prefix}{name}": float(getattr(self, name)) for name in METRICS}
        for name in METRICS:
            out[f"{prefix}{name}_by_frame"] = [float(v) for v in getattr(self, f"{name}_by_frame")]
        out[f"{prefix}num_sequences"] = int(self.num_sequences)
        out[f"{prefix}ssim_convention"] = self.ssim_convention
        return out


class MetricAccumulator:
    """Sums per-frame metrics over batches of sequences; ``compute()`` gives the means over all sequences seen.

    All batches must have the same frame count and frame shape. The running sums stay on the first batch's device and
    each ``update`` synchronises with it once (to check its input), never per frame.
    """

    def __init__(self, ssim_convention: str = "ours") -> None:
        _data_range(ssim_convention)
        self.ssim_convention = ssim_convention
        self._sums: torch.Tensor | None = None  # (len(METRICS), T) float64: per-frame sums over sequences
        self._frame_shape: tuple[int, ...] | None = None  # (T, C, H, W) of the first batch
        self._by_sequence: list[torch.Tensor] = []  # per batch: (len(METRICS), B) float64 means over frames
        self.num_sequences = 0

    def update(self, pred: Frames, target: Frames) -> None:
        """Add one batch of ``(N, T, C, H, W)`` predictions and targets; a bad batch raises and adds nothing."""
        scores = frame_scores(pred, target, self.ssim_convention)
        frame_shape = tuple(pred.shape[1:])
        if self._frame_shape is not None and frame_shape != self._frame_shape:
            raise DataError(
                f"pred frames have shape (T, C, H, W) = {frame_shape} but earlier batches had {self._frame_shape}"
            )
        batch_sums = torch.stack([scores[name].sum(0) for name in METRICS])  # (metrics, T)
        self._by_sequence.append(torch.stack([scores[name].mean(1) for name in METRICS]).cpu())  # (metrics, B)
        if self._sums is None:
            self._sums = batch_sums
            self._frame_shape = frame_shape
        else:
            self._sums += batch_sums.to(self._sums.device)
        self.num_sequences += int(pred.shape[0])

    def compute(self) -> Scores:
        """The means over every sequence given to ``update`` so far."""
        if self._sums is None:
            raise RuntimeError("MetricAccumulator.compute() called before any update()")
        curves = (self._sums / self.num_sequences).cpu().numpy()  # (metrics, T) float64
        by_frame = {}
        for row, name in zip(curves, METRICS, strict=True):
            curve = row.copy()
            curve.setflags(write=False)  # Scores is frozen: so are its arrays
            by_frame[f"{name}_by_frame"] = curve
        means = {name: float(curve.mean()) for name, curve in zip(METRICS, curves, strict=True)}
        rows = torch.cat(self._by_sequence, dim=1).numpy()  # (metrics, N)
        by_sequence = {name: row.copy() for name, row in zip(METRICS, rows, strict=True)}
        for row in by_sequence.values():
            row.setflags(write=False)
        return Scores(**means, **by_frame, num_sequences=self.num_sequences, ssim_convention=self.ssim_convention,
                      by_sequence=by_sequence)  # fmt: skip


def evaluate(pred: Frames, target: Frames, ssim_convention: str = "ours") -> Scores:
    """Means over sequences and frames, and per-frame curves, of all metrics for ``(N, T, C, H, W)`` inputs."""
    accumulator = MetricAccumulator(ssim_convention)
    accumulator.update(pred, target)
    return accumulator.compute()


def frame_scores(
    pred: Frames, target: Frames, ssim_convention: str = "ours", metrics: Sequence[str] = METRICS
) -> dict[str, torch.Tensor]:
    """No reduction: each requested metric per (sequence, frame), an ``(N, T)`` float64 tensor on the input's device.

    Works through the input in blocks of a few frames, so memory stays bounded however many sequences there are.
    """
    data_range = _data_range(ssim_convention)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown or not metrics:
        raise DataError(f"unknown metrics {unknown or list(metrics)}; choose from {list(METRICS)}")
    pred_t = _as_tensor(pred, "pred")
    target_t = _as_tensor(target, "target")
    _check_shapes(pred_t, target_t)
    device = pred.device if isinstance(pred, torch.Tensor) else target_t.device
    num_sequences, num_frames, channels, height, width = pred_t.shape
    out = torch.empty((len(metrics), num_sequences, num_frames), dtype=torch.float64, device=device)
    checks = []  # per block: (sum of pred, min of target, max of target), read back once at the end
    block_elements = _BLOCK_ELEMENTS_GPU if device.type == "cuda" else _BLOCK_ELEMENTS_CPU
    scratch = _Scratch(device)
    with torch.no_grad():
        for seqs, frames in _blocks(num_sequences, num_frames, channels * height * width, block_elements):
            pred_block = _compute_dtype(pred_t[seqs, frames].to(device, non_blocking=True))
            target_block = _compute_dtype(target_t[seqs, frames].to(device, non_blocking=True))
            target_low, target_high = torch.aminmax(target_block)
            checks.append(torch.stack([pred_block.sum(dtype=torch.float64), target_low.double(), target_high.double()]))
            out[:, seqs, frames] = _score_block(pred_block, target_block, data_range, metrics, scratch)
        _raise_on_bad_values(pred_t, target_t, torch.stack(checks).tolist())
    return dict(zip(metrics, out, strict=True))


def copy_last_frame(context: Frames, num_future: int) -> Frames:
    """The last context frame repeated: ``(N, T_ctx, C, H, W)`` -> ``(N, num_future, C, H, W)``.

    Returns a broadcast view of ``context`` (no copy; read-only for numpy), of the same kind as the input.
    """
    _check_baseline_args(context, num_future)
    shape = (context.shape[0], num_future, *context.shape[2:])
    last = context[:, -1:]  # (N, 1, C, H, W)
    if isinstance(context, torch.Tensor):
        return last.expand(shape)
    return np.broadcast_to(last, shape)


def blank_frame(context: Frames, num_future: int) -> Frames:
    """All-zero frames: ``(N, T_ctx, C, H, W)`` -> ``(N, num_future, C, H, W)`` of the context's dtype (and device).

    Returns a broadcast view of one zero (no memory per frame; read-only for numpy), of the same kind as the input.
    """
    _check_baseline_args(context, num_future)
    shape = (context.shape[0], num_future, *context.shape[2:])
    if isinstance(context, torch.Tensor):
        return torch.zeros((), dtype=context.dtype, device=context.device).expand(shape)
    return np.broadcast_to(np.zeros((), dtype=context.dtype), shape)


def baseline_predictions(sequences: Frames, context_frames: int) -> dict[str, Frames]:
    """Each baseline's prediction (name in ``BASELINES`` -> ``(N, T - context_frames, C, H, W)``) for whole sequences.

    ``sequences`` is ``(N, T, C, H, W)``; the first ``context_frames`` are the context, the rest
    (``sequences[:, context_frames:]``) the target the predictions are scored against.
    """
    if _ndim(sequences) != 5:
        raise DataError(f"sequences must be 5-D (N, T, C, H, W), got shape {tuple(sequences.shape)}")
    num_frames = sequences.shape[1]
    if not 0 < context_frames < num_frames:
        raise DataError(
            f"context_frames must be between 1 and {num_frames - 1} for sequences of shape "
            f"{tuple(sequences.shape)}, got {context_frames}"
        )
    context = sequences[:, :context_frames]
    num_future = num_frames - context_frames
    return {"copy_last_frame": copy_last_frame(context, num_future), "blank": blank_frame(context, num_future)}


def evaluate_baselines(sequences: Frames, context_frames: int, ssim_convention: str = "ours") -> dict[str, Scores]:
    """``evaluate`` of each baseline (name in ``BASELINES`` -> Scores) on the frames after ``context_frames``."""
    predictions = baseline_predictions(sequences, context_frames)
    target = sequences[:, context_frames:]
    return {name: evaluate(prediction, target, ssim_convention) for name, prediction in predictions.items()}


def _data_range(ssim_convention: str) -> float:
    if ssim_convention not in SSIM_CONVENTIONS:
        raise DataError(f"unknown ssim_convention {ssim_convention!r}; choose from {list(SSIM_CONVENTIONS)}")
    return SSIM_CONVENTIONS[ssim_convention]


def _ndim(frames: Any) -> int:
    return frames.ndim if isinstance(frames, np.ndarray | torch.Tensor) else -1


def _as_tensor(frames: Frames, name: str) -> torch.Tensor:
    """A tensor sharing memory with ``frames`` (numpy arrays are wrapped, not copied)."""
    if isinstance(frames, np.ndarray):
        if not np.issubdtype(frames.dtype, np.floating):
            raise DataError(f"{name} must hold floats in [0, 1], got dtype {frames.dtype} (shape {frames.shape})")
        if any(stride < 0 for stride in frames.strides):
            frames = np.ascontiguousarray(frames)  # torch has no negative strides (e.g. x[::-1]): the one copy we make
        with warnings.catch_warnings():
            # Read-only arrays (e.g. the baselines' broadcast views) are safe to wrap: nothing here writes to them.
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(frames)
    if isinstance(frames, torch.Tensor):
        if not frames.is_floating_point():
            raise DataError(
                f"{name} must hold floats in [0, 1], got dtype {frames.dtype} (shape {tuple(frames.shape)})"
            )
        return frames
    raise DataError(f"{name} must be a numpy array or a torch tensor, got {type(frames).__name__}")


def _check_shapes(pred: torch.Tensor, target: torch.Tensor) -> None:
    for name, frames in (("pred", pred), ("target", target)):
        if frames.ndim != 5:
            raise DataError(f"{name} must be 5-D (N, T, C, H, W), got shape {tuple(frames.shape)}")
    if pred.shape != target.shape:
        raise DataError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.numel() == 0:
        raise DataError(f"pred has no values: shape {tuple(pred.shape)}")
    height, width = pred.shape[-2:]
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise DataError(
            f"pred frames are {height}x{width} pixels (shape {tuple(pred.shape)}); SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} "
            f"window needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}"
        )


def _check_baseline_args(context: Frames, num_future: int) -> None:
    if _ndim(context) != 5 or context.shape[1] < 1:
        raise DataError(f"context must be 5-D (N, T, C, H, W) with T >= 1, got shape {tuple(context.shape)}")
    if num_future < 1:
        raise DataError(f"num_future must be at least 1, got {num_future}")


def _compute_dtype(frames: torch.Tensor) -> torch.Tensor:
    # Half precision cannot hold x * 255 exactly enough to quantise; everything else keeps the input's precision.
    return frames.float() if frames.dtype in (torch.float16, torch.bfloat16) else frames


def _blocks(num_sequences: int, num_frames: int, frame_elements: int, budget: int) -> Iterator[tuple[slice, slice]]:
    """(sequences, frames) slices covering the input, each about ``budget`` values: whole sequences where they fit."""
    frames_per_block = max(1, budget // frame_elements)
    if frames_per_block >= num_frames:
        step = frames_per_block // num_frames
        for start in range(0, num_sequences, step):
            yield slice(start, start + step), slice(None)
        return
    for seq in range(num_sequences):
        for start in range(0, num_frames, frames_per_block):
            yield slice(seq, seq + 1), slice(start, start + frames_per_block)


def _raise_on_bad_values(pred: torch.Tensor, target: torch.Tensor, checks: list[list[float]]) -> None:
    """Raise on NaN/inf in either input or targets outside [0, 1]; ``checks`` rows are (pred sum, target min, max)."""
    pred_sums, target_mins, target_maxs = zip(*checks, strict=True)
    # A non-finite sum means NaN/inf, except for a float64 overflow of huge finite values, hence the exact count.
    if not all(math.isfinite(value) for value in pred_sums):
        _raise_if_not_finite(pred, "pred")
    if not all(math.isfinite(value) for value in target_mins + target_maxs):
        _raise_if_not_finite(target, "target")
    low, high = min(target_mins), max(target_maxs)
    if low < -TARGET_TOLERANCE or high > 1 + TARGET_TOLERANCE:
        raise DataError(
            f"target has values outside [0, 1]: min {low:.6g}, max {high:.6g} (shape {tuple(target.shape)}); "
            "targets must be frames scaled to [0, 1]"
        )


def _raise_if_not_finite(frames: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(frames)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in np.unravel_index(int(bad.flatten().to(torch.uint8).argmax()), frames.shape))
        value = float(frames[first])
        raise DataError(
            f"{name} contains {count} NaN or inf values (the first, {value}, at index {first}; shape "
            f"{tuple(frames.shape)})"
        )


class _Scratch:
    """Named float64 buffers, reused from block to block of one call (the first block is the largest).

    On CPU a fresh multi-megabyte tensor per intermediate costs more in page faults than the arithmetic on it
    (measured: SSIM about twice as slow, and erratic), so the SSIM maps and their window sums live here.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: Sequence[int]) -> torch.Tensor:
        """A tensor of ``shape`` in buffer ``name``; its old contents are garbage."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[name] = torch.empty(numel, dtype=torch.float64, device=self.device)
        return buffer[:numel].view(shape)


def _score_block(
    pred: torch.Tensor, target: torch.Tensor, data_range: float, metrics: Sequence[str], scratch: _Scratch
) -> torch.Tensor:
    """No reduction over frames: ``(n, t, C, H, W)`` pred and target -> ``(len(metrics), n, t)`` float64."""
    num_sequences, num_frames, channels, height, width = pred.shape
    planes = num_sequences * num_frames * channels
    # Maps whose 7x7 window sums SSIM needs, one (H, W) plane per channel of each frame. x^2 + y^2 is one map because
    # SSIM only uses the sum of the two variances. float64: in float32, E[x^2] - E[x]^2 on flat windows cancels to
    # errors of ~1e-3 in SSIM on constant frames (measured), ten times the tolerance.
    maps = scratch.take("maps", (planes, 4, height, width))
    x, y, sum_sq, prod = maps.unbind(1)  # each (planes, H, W)
    x.copy_(pred.reshape(planes, height, width)).clamp_(0, 1)  # (n, t, C, H, W) -> (n*t*C, H, W)
    y.copy_(target.reshape(planes, height, width)).clamp_(0, 1)  # (n, t, C, H, W) -> (n*t*C, H, W)
    results = {}
    if "mse" in metrics or "mae" in metrics:
        error = (x - y).reshape(num_sequences, num_frames, -1)  # (n*t*C, H, W) -> (n, t, C*H*W)
        results["mse"] = error.square().sum(-1)
        results["mae"] = error.abs_().sum(-1)
    if "psnr" in metrics:
        results["psnr"] = _psnr(pred, target)
    if "ssim" in metrics:
        torch.mul(x, x, out=sum_sq).addcmul_(y, y)
        torch.mul(x, y, out=prod)
        ssim = _ssim_of_maps(maps, data_range, scratch)  # (n*t*C,)
        results["ssim"] = ssim.reshape(num_sequences, num_frames, channels).mean(-1)  # (n*t*C,) -> (n, t, C) -> (n, t)
    return torch.stack([results[name] for name in metrics])


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """No reduction over frames: PSNR in dB of uint8-quantised ``(n, t, C, H, W)`` frames -> ``(n, t)`` float64."""
    # float -> int32 conversion truncates toward zero, which is floor on clipped, non-negative values.
    diff = pred.clamp(0, 1).mul_(255).to(torch.int32) - target.clamp(0, 1).mul_(255).to(torch.int32)
    squared = diff.mul_(diff).flatten(2)  # (n, t, C, H, W) -> (n, t, C*H*W); at most 255^2 per value
    mean_squared = squared.sum(-1, dtype=torch.int64).to(torch.float64) / squared.shape[-1]
    psnr = 20 * math.log10(255) - 10 * torch.log10(mean_squared)
    # A perfect frame gives +inf; the cap also bounds one-pixel errors in huge frames, which stay comparable.
    return psnr.clamp_(max=PSNR_PERFECT_DB)


def _ssim_of_maps(maps: torch.Tensor, data_range: float, scratch: _Scratch) -> torch.Tensor:
    """Mean over interior windows of the SSIM map: ``(P, [x, y, x^2 + y^2, x*y], H, W)`` float64 -> ``(P,)``.

    Works on window sums, not means: with s = n * mean (n = 49 pixels) every term of SSIM's ratio gains the same
    factor n^2, which cancels, so the divisions by n are skipped. The constants are scaled by n^2 to match.
    """
    sums = _window_sums(maps, scratch)  # (P, 4, H - 6, W - 6)
    sum_x, sum_y, sum_sq, sum_xy = sums.unbind(1)  # each (P, H - 6, W - 6)
    n = _WINDOW_AREA
    c1 = (SSIM_K1 * data_range * n) ** 2
    c2 = (SSIM_K2 * data_range * n) ** 2
    # The window sums' partial sums are no longer needed: their buffers hold the products.
    mean_product = torch.mul(sum_x, sum_y, out=scratch.take("pairs", sum_x.shape))  # n^2 ux uy
    mean_squares = torch.mul(sum_x, sum_x, out=scratch.take("fours", sum_x.shape))
    mean_squares.addcmul_(sum_y, sum_y)  # n^2 (ux^2 + uy^2)
    covariance = sum_xy.mul_(n).sub_(mean_product).mul_(2 * _COV_NORM).add_(c2)  # n^2 (2 vxy + C2)
    variances = sum_sq.mul_(n).sub_(mean_squares).mul_(_COV_NORM).add_(c2)  # n^2 (vx + vy + C2)
    luminance = mean_product.mul_(2).add_(c1)  # n^2 (2 ux uy + C1)
    luminance_norm = mean_squares.add_(c1)  # n^2 (ux^2 + uy^2 + C1)
    ssim_map = luminance.mul_(covariance).div_(luminance_norm.mul_(variances))
    return ssim_map.mean((-2, -1))


def _window_sums(maps: torch.Tensor, scratch: _Scratch) -> torch.Tensor:
    """Sums over every 7x7 window wholly inside the frame: ``(..., H, W)`` -> ``(..., H - 6, W - 6)``.

    Separable, each axis by doubling: pairs, then fours, then two overlapping fours minus their shared middle value.
    Four additions per axis instead of the 49 of a direct 7x7 pool (F.avg_pool2d, about three times slower on CPU).
    Partial sums go to the scratch buffers "pairs" and "fours", the result to "columns".
    """
    sums = maps
    for dim, sevens_name in ((-2, "rows"), (-1, "columns")):
        length = sums.shape[dim]
        pairs = scratch.take("pairs", _shortened(sums.shape, dim, 1))
        torch.add(sums.narrow(dim, 0, length - 1), sums.narrow(dim, 1, length - 1), out=pairs)  # x[i] + x[i+1]
        fours = scratch.take("fours", _shortened(sums.shape, dim, 3))
        torch.add(pairs.narrow(dim, 0, length - 3), pairs.narrow(dim, 2, length - 3), out=fours)  # x[i..i+3]
        sevens = scratch.take(sevens_name, _shortened(sums.shape, dim, 6))
        torch.add(fours.narrow(dim, 0, length - 6), fours.narrow(dim, 3, length - 6), out=sevens)  # x[i+3] twice
        sums = sevens.sub_(sums.narrow(dim, 3, length - 6))
    return sums


def _shortened(shape: Sequence[int], dim: int, by: int) -> list[int]:
    shortened = list(shape)
    shortened[dim] -= by
    return shortened
