"""Batched SSIM throughput against scikit-image's per-frame loop, side by side on the same frames."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from skimage.metrics import structural_similarity

from core.metrics import SSIM_CONVENTIONS, frame_scores

FRAMES_PER_SEQUENCE = 10


def _best_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up: first-call allocations and lazy initialisation are not what we measure
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def bench_ssim(num_frames: int = 2000, repeats: int = 3, threads: int = 2, ssim_convention: str = "ours") -> dict:
    """Frames per second of our batched SSIM and of scikit-image's loop over the same 64x64 single-channel frames.

    The frames are ``num_frames // 10`` sequences of 10 random float32 frames, on CPU with ``threads`` torch threads;
    each side is warmed up, then timed as the best of ``repeats`` runs. Also returns the largest per-frame difference
    between the two, as a check that the fast path computes the same thing.
    """
    num_sequences = max(1, num_frames // FRAMES_PER_SEQUENCE)
    rng = np.random.default_rng(0)
    shape = (num_sequences, FRAMES_PER_SEQUENCE, 1, 64, 64)
    pred = rng.random(shape, dtype=np.float32)
    target = rng.random(shape, dtype=np.float32)
    data_range = SSIM_CONVENTIONS[ssim_convention]
    frames = num_sequences * FRAMES_PER_SEQUENCE

    def ours() -> np.ndarray:
        return frame_scores(pred, target, ssim_convention, metrics=("ssim",))["ssim"].numpy()

    def reference() -> np.ndarray:
        scores = np.empty((num_sequences, FRAMES_PER_SEQUENCE))
        for seq in range(num_sequences):
            for step in range(FRAMES_PER_SEQUENCE):
                scores[seq, step] = structural_similarity(
                    pred[seq, step], target[seq, step], data_range=data_range, channel_axis=0
                )
        return scores

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours_seconds = _best_seconds(ours, repeats)
        reference_seconds = _best_seconds(reference, repeats)
        max_abs_diff = float(np.abs(ours() - reference()).max())
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "frames": frames,
        "threads": threads,
        "ours_frames_per_s": frames / ours_seconds,
        "skimage_frames_per_s": frames / reference_seconds,
        "speedup": reference_seconds / ours_seconds,
        "max_abs_diff": max_abs_diff,
    }


if __name__ == "__main__":
    result = bench_ssim()
    print(
        f"ssim 64x64x1, {result['frames']} frames, {result['threads']} threads: "
        f"ours {result['ours_frames_per_s']:.0f} frames/s, scikit-image {result['skimage_frames_per_s']:.0f} frames/s, "
        f"{result['speedup']:.1f}x, max |diff| {result['max_abs_diff']:.1e}"
    )
