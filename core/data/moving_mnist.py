"""Moving MNIST, generated as in Srivastava et al. 2015, vectorised in numpy and deterministic from a seed.

Each digit's position starts uniform in [0, 1]^2 with a direction theta uniform in [0, 2 pi), moves ``speed`` (0.1)
per frame and bounces at 0 and 1 (the position is clamped and that velocity component negated). The position is
recorded after each move, as the original generator did. A digit's top-left corner is ``floor(position * (canvas -
28))``; digits are merged by maximum. Train sequences draw train digits, test sequences test digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGIT_SIZE = 28


@dataclass(frozen=True)
class MovingMNISTSpec:
    """The shape of generated sequences."""

    seq_len: int = 20  # frames per sequence (10 in + 10 out in the study)
    canvas: int = 64  # frame height and width in pixels
    num_digits: int = 2  # digits per sequence
    speed: float = 0.1  # distance per frame in units of the free range [0, 1]

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {self.seq_len}")
        if self.canvas < DIGIT_SIZE:
            raise ValueError(f"canvas must be at least {DIGIT_SIZE} pixels to hold a digit, got {self.canvas}")
        if self.num_digits < 1:
            raise ValueError(f"num_digits must be at least 1, got {self.num_digits}")
        if not 0 <= self.speed <= 1:
            raise ValueError(f"speed must lie in [0, 1], got {self.speed}")


def bounce(position: np.ndarray, velocity: np.ndarray, seq_len: int) -> np.ndarray:
    """Positions after each of ``seq_len`` moves, bouncing off 0 and 1.

    ``position`` and ``velocity``: ``(..., 2)`` as (row, col). Returns ``(..., seq_len, 2)``.
    """
    path = np.empty((*position.shape[:-1], seq_len, 2))
    for t in range(seq_len):
        position = position + velocity
        low, high = position < 0, position > 1
        velocity = np.where(low | high, -velocity, velocity)
        position = np.clip(position, 0.0, 1.0)
        path[..., t, :] = position
    return path


def render(digits: np.ndarray, corners: np.ndarray, canvas: int) -> np.ndarray:
    """Paste digits at integer corners, merging by maximum.

    ``digits``: uint8 ``(num, num_digits, 28, 28)``; ``corners``: int ``(num, num_digits, seq_len, 2)`` top-left
    (row, col) in ``[0, canvas - 28]``. Returns uint8 ``(num, seq_len, canvas, canvas)``.
    """
    num, num_digits, seq_len, _ = corners.shape
    frames = np.zeros((num, seq_len, canvas, canvas), dtype=np.uint8)
    # A writable view of every 28x28 window of every frame: (num, seq_len, rows, cols, 28, 28). Within one digit slot
    # each frame receives exactly one window, so the fancy-indexed writes below never collide.
    windows = np.lib.stride_tricks.as_strided(
        frames,
        shape=(num, seq_len, canvas - DIGIT_SIZE + 1, canvas - DIGIT_SIZE + 1, DIGIT_SIZE, DIGIT_SIZE),
        strides=frames.strides + frames.strides[2:],
        writeable=True,
    )
    seq_index = np.arange(num)[:, None]  # (num, 1)
    time_index = np.arange(seq_len)[None, :]  # (1, seq_len)
    for slot in range(num_digits):
        rows, cols = corners[:, slot, :, 0], corners[:, slot, :, 1]  # (num, seq_len)
        patch = digits[:, slot, None]  # (num, 1, 28, 28), broadcast over time
        if slot:
            patch = np.maximum(windows[seq_index, time_index, rows, cols], patch)
        windows[seq_index, time_index, rows, cols] = patch
    return frames


def generate(
    digits: np.ndarray, num: int, seed: int | np.random.SeedSequence, spec: MovingMNISTSpec | None = None
) -> np.ndarray:
    """``num`` Moving MNIST sequences drawn from ``digits`` (uint8 ``(K, 28, 28)``): uint8 ``(num, T, canvas, canvas)``.

    The same digits, seed and spec give the same sequences, and a smaller ``num`` gives a prefix of a larger one
    (digits, start positions and directions each come from their own random stream, drawn sequence by sequence).
    """
    spec = spec or MovingMNISTSpec()
    if digits.ndim != 3 or digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or digits.dtype != np.uint8:
        raise ValueError(f"digits must be uint8 (K, 28, 28), got {digits.dtype} {digits.shape}")
    seed = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # Children built by hand rather than with ``seed.spawn``, which would mutate the caller's SeedSequence.
    digit_rng, position_rng, angle_rng = (
        np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, child)))
        for child in range(3)
    )
    chosen = digits[digit_rng.integers(0, len(digits), size=(num, spec.num_digits))]  # (num, num_digits, 28, 28)
    free = spec.canvas - DIGIT_SIZE
    start = position_rng.random((num, spec.num_digits, 2))
    theta = angle_rng.random((num, spec.num_digits)) * 2 * np.pi
    velocity = np.stack([np.sin(theta), np.cos(theta)], axis=-1) * spec.speed  # (num, num_digits, 2)
    path = bounce(start, velocity, spec.seq_len)
    corners = np.floor(path * free).astype(np.intp)  # (num, num_digits, seq_len, 2)
    return render(chosen, corners, spec.canvas)
