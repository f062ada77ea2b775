"""Pictures of predictions: a grid of frames (PNG) and an animation (GIF), ground truth beside prediction."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from core.io import DataError, atomic_write

# Frame pictures. Cells are separated by background gray, which also fills the prediction row under the context
# frames, so an empty cell reads as "no frame" rather than as a black frame (Moving MNIST backgrounds are black).
BACKGROUND = 128
FRAME_GAP = 2  # pixels between neighbouring frames
CONTEXT_GAP = 6  # pixels between the last context frame and the first predicted one
SEQUENCE_GAP = 6  # pixels between the two-row blocks of different sequences
PROGRESS_BAR = 4  # pixels: height of the GIF's time bar
BAR_TRACK, BAR_CONTEXT, BAR_PREDICTION = 64, 176, 255  # the bar's gray levels: empty, during context, predicting
GIF_FRAME_MS = 200  # 5 frames per second: slow enough to follow a digit


def save_frames(folder: Path, stem: str, target: Any, pred: Any, context: Any | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (:func:`frame_grid`) and ``<stem>.gif`` (:func:`frame_video`) into ``folder``.

    Frames are ``(N, T, C, H, W)`` in [0, 1] or uint8; returns the two paths.
    """
    target, pred = as_frames(target, "target"), as_frames(pred, "pred")
    context = None if context is None else as_frames(context, "context")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    png, gif = Path(folder) / f"{stem}.png", Path(folder) / f"{stem}.gif"
    write_png(png, frame_grid(target, pred, context))
    write_gif(gif, frame_video(target, pred, context))
    return png, gif


def frame_grid(target: np.ndarray, pred: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """One picture of predictions: ``(height, width)`` uint8 for C = 1, ``(height, width, 3)`` for C = 3.

    Inputs are uint8 ``(N, T, C, H, W)`` (context ``(N, Tc, C, H, W)``). Each sequence is two rows: the ground truth
    (context frames, then target frames) over the prediction (empty under the context). Columns are time, with
    ``FRAME_GAP`` pixels between frames and ``CONTEXT_GAP`` where prediction begins; ``SEQUENCE_GAP`` between sequences.
    """
    n, t, c, h, w = target.shape
    tc = 0 if context is None else context.shape[1]
    truth = target if context is None else np.concatenate([context, target], axis=1)  # (N, Tc+T, C, H, W)
    lefts = [i * (w + FRAME_GAP) + (CONTEXT_GAP - FRAME_GAP if tc and i >= tc else 0) for i in range(tc + t)]
    block = 2 * h + FRAME_GAP  # one sequence's two rows
    canvas = np.full((n * block + (n - 1) * SEQUENCE_GAP, lefts[-1] + w, c), BACKGROUND, dtype=np.uint8)
    for s in range(n):
        top = s * (block + SEQUENCE_GAP)
        for i, left in enumerate(lefts):
            canvas[top : top + h, left : left + w] = truth[s, i].transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
        for i in range(t):
            left = lefts[tc + i]
            canvas[top + h + FRAME_GAP : top + block, left : left + w] = pred[s, i].transpose(1, 2, 0)
    return canvas[..., 0] if c == 1 else canvas


def frame_video(target: np.ndarray, pred: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """An animation of predictions: ``(Tc + T, height, width)`` uint8 for C = 1, ``(..., 3)`` for C = 3.

    Each sequence is one row, ground truth on the left and prediction on the right (during the context both show the
    context frame the model is given); a bar along the bottom fills with time, brighter once prediction begins.
    """
    n, t, c, h, w = target.shape
    tc = 0 if context is None else context.shape[1]
    truth = target if context is None else np.concatenate([context, target], axis=1)  # (N, Tc+T, C, H, W)
    shown = pred if context is None else np.concatenate([context, pred], axis=1)  # (N, Tc+T, C, H, W)
    total, width = tc + t, 2 * w + FRAME_GAP
    bar_top = n * h + n * FRAME_GAP
    video = np.full((total, bar_top + PROGRESS_BAR, width, c), BACKGROUND, dtype=np.uint8)
    for s in range(n):
        top = s * (h + FRAME_GAP)
        video[:, top : top + h, :w] = truth[s].transpose(0, 2, 3, 1)  # (T, C, H, W) -> (T, H, W, C)
        video[:, top : top + h, w + FRAME_GAP :] = shown[s].transpose(0, 2, 3, 1)
    for k in range(total):
        video[k, bar_top:] = BAR_TRACK
        video[k, bar_top:, : round(width * (k + 1) / total)] = BAR_CONTEXT if k < tc else BAR_PREDICTION
    return video[..., 0] if c == 1 else video


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` image as PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def write_gif(path: Path, video: np.ndarray, frame_ms: int = GIF_FRAME_MS) -> None:
    """Write a uint8 ``(T, H, W)`` or ``(T, H, W, 3)`` animation as a looping GIF, atomically."""
    import imageio.v3 as iio

    data = iio.imwrite("<bytes>", video, extension=".gif", duration=frame_ms, loop=0, is_batch=True)
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def as_frames(frames: Any, name: str) -> np.ndarray:
    """``(N, T, C, H, W)`` frames (numpy, or anything with ``.detach()``) as uint8, values in [0, 1] scaled by 255."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 5 or frames.shape[2] not in (1, 3):
        raise DataError(f"{name} frames must have shape (N, T, C, H, W) with C = 1 or 3, got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    # NaN (a diverged model's output) is drawn black rather than failing the picture.
    scaled = np.nan_to_num(np.clip(frames.astype(np.float64), 0.0, 1.0), nan=0.0) * 255
    return np.rint(scaled).astype(np.uint8)
