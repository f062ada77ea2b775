"""Torch datasets and loaders. Every batch is float32 ``(B, T, C, H, W)`` in [0, 1].

- :class:`MovingMNISTStream`: an endless stream of freshly generated training batches. Batch ``k`` is a pure function
  of ``(seed, k)``, so a resumed run sees exactly the batches an uninterrupted run would, and workers split the stream
  by batch index without changing its order.
- :class:`SequenceDataset`: fixed sequences (validation and test sets) from any :class:`~core.data.formats.SequenceSet`.
- :func:`moving_mnist_set`: a fixed generated set, e.g. the validation set (train digits) or the test set (test digits).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from core.data.formats import SequenceSet
from core.data.moving_mnist import MovingMNISTSpec, generate


def to_unit_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] frames -> float32 tensor in [0, 1] (same shape)."""
    # Converted in numpy, which runs on the calling thread: a torch op here would wake torch's thread pool for a few
    # microseconds of work, which costs a whole scheduler slice when the other cores are busy training.
    if frames.dtype == np.uint8:
        return torch.from_numpy(np.divide(frames, 255, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))


class SequenceDataset(Dataset):
    """Fixed sequences; item ``i`` is float32 ``(T, C, H, W)`` in [0, 1]."""

    def __init__(self, sequences: SequenceSet):
        self.sequences = sequences

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_unit_float(self.sequences.frames[index])


class BatchStream(IterableDataset):
    """An endless stream of batches in which batch ``k`` is a pure function of ``(seed, k)``.

    ``start_batch`` skips ahead in constant time, which is how a resumed run picks up the stream where it stopped.
    Use it with ``DataLoader(stream, batch_size=None)``; with workers, worker ``w`` of ``n`` makes batches
    ``k = w (mod n)``, and the loader's round-robin keeps them in order.
    """

    start_batch: int = 0

    def batch(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self) -> Iterator[torch.Tensor]:
        worker = get_worker_info()
        step, offset = (1, 0) if worker is None else (worker.num_workers, worker.id)
        index = self.start_batch + offset
        while True:
            yield self.batch(index)
            index += step


TRAIN_STREAM_TAG = 0x7472_6169  # "trai": keeps training batches out of the fixed sets' seed streams (see below)


class MovingMNISTStream(BatchStream):
    """Endless generated Moving MNIST batches, float32 ``(batch_size, T, 1, canvas, canvas)`` in [0, 1]; batch ``k``
    is generated from ``SeedSequence([seed, k, TRAIN_STREAM_TAG])``.

    The tag is there because numpy pads entropy with zeros: ``SeedSequence([s, 0])`` *is* ``SeedSequence(s)``, so
    without it training batch 0 of seed 2 was the validation set's first sequences (val_seed 2, the same digits), and
    batch 0 of seed 1 moved exactly like the test set's first sequences (test_seed 1). A fixed set's seed is one
    word; the stream's are three, the last non-zero, so no training batch shares a fixed set's stream.
    """

    def __init__(
        self,
        digits: np.ndarray,
        batch_size: int,
        seed: int,
        spec: MovingMNISTSpec | None = None,
        start_batch: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.digits, self.batch_size, self.seed = digits, batch_size, seed
        self.spec = spec or MovingMNISTSpec()
        self.start_batch = start_batch

    def batch(self, index: int) -> torch.Tensor:
        """Batch number ``index`` of the stream: float32 ``(B, T, 1, H, W)``."""
        frames = generate(self.digits, self.batch_size, np.random.SeedSequence([self.seed, index, TRAIN_STREAM_TAG]), self.spec)
        return to_unit_float(frames[:, :, None])  # (B, T, H, W) -> (B, T, 1, H, W)


class RandomBatchStream(BatchStream):
    """Endless batches of a map-style dataset's items, drawn with replacement; batch ``k`` from ``(seed, k)``."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, start_batch: int = 0):
        self.dataset, self.batch_size, self.seed, self.start_batch = dataset, batch_size, seed, start_batch

    def batch(self, index: int) -> torch.Tensor:
        picks = np.random.default_rng([self.seed, index]).integers(0, len(self.dataset), size=self.batch_size)
        return torch.stack([self.dataset[int(i)] for i in picks])  # (B, T, C, H, W)


def moving_mnist_set(
    digits: np.ndarray, num: int, seed: int, spec: MovingMNISTSpec | None = None, context_frames: int = 10
) -> SequenceSet:
    """A fixed generated set of ``num`` sequences, uint8 ``(num, T, 1, H, W)``."""
    frames = generate(digits, num, seed, spec)[:, :, None]  # (N, T, H, W) -> (N, T, 1, H, W)
    return SequenceSet(frames, context_frames, f"moving-mnist(num={num}, seed={seed})")


def stream_loader(stream: MovingMNISTStream, num_workers: int = 0) -> DataLoader:
    """A loader over an endless stream (each item is already a batch)."""
    return DataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=num_workers > 0)


def sequence_loader(
    dataset: Dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0, seed: int = 0
) -> DataLoader:
    """A loader over fixed sequences; shuffling, when asked for, is seeded."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator)
