"""A run's data, built from its typed :class:`~core.config.DataConfig`: the training stream, validation and test sets.

- Moving MNIST: an endless generated training stream (training digits), a generated validation set (training
  digits, ``val_seed``) and a test set, either generated from the test digits (``test_seed``; fixed across runs) or
  read from ``test_path`` (a release npz, or ``mnist_test_seq.npy``). With ``train_path`` (release npz files, the
  release's ``train_data_paths``) it trains on that file's sequences instead, drawn at random with replacement, and
  validates on ``val_size`` of them spread evenly through the file (as KTH with no ``val_persons``: the file holds no
  held-out sequences, and the test file must not choose the checkpoint).
- KTH: windows of the training persons drawn at random for training, windows of the held-out training persons
  ``val_persons`` for validation (never a test person: a search or a checkpoint choice never sees test data), every
  test window for test. With ``val_persons`` empty the model trains on all of persons 01-16, as the release did, and
  validates on a fixed sample of its own training windows. A set cut to ``val_size`` or ``test_size`` keeps windows
  evenly spaced through it (every action and person), not the first ones (which would all be boxing).

Training batch ``k`` is always a pure function of ``(seed, k)``, so a resumed run continues the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from core.config import DataConfig
from core.data.formats import SequenceSet, read_sequences
from core.data.loaders import BatchStream, MovingMNISTStream, RandomBatchStream, SequenceDataset, moving_mnist_set
from core.data.moving_mnist import MovingMNISTSpec
from core.io import DataError


@dataclass
class RunData:
    """What a run trains, validates and tests on."""

    train: BatchStream  # its start_batch is set by train_batches
    val: Dataset
    test: Dataset
    context_frames: int
    test_name: str  # which test set, stated beside every number computed on it
    num_workers: int = 0

    def train_batches(self, start_batch: int, pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """The training stream from batch ``start_batch`` on, each batch float32 ``(B, T, C, H, W)``; with
        ``pin_memory`` (for a CUDA device) in page-locked memory, so the copy to the device can overlap compute."""
        self.train.start_batch = start_batch
        workers = self.num_workers
        loader = DataLoader(
            self.train, batch_size=None, num_workers=workers, persistent_workers=workers > 0, pin_memory=pin_memory
        )
        return iter(loader)


def build_data(cfg: DataConfig, batch_size: int, seed: int) -> RunData:
    """The training stream (seeded by ``seed``), the fixed validation set and the test set that ``cfg`` describes."""
    if cfg.dataset == "moving_mnist":
        return _moving_mnist(cfg, batch_size, seed)
    return _kth(cfg, batch_size, seed)


def _moving_mnist(cfg: DataConfig, batch_size: int, seed: int) -> RunData:
    from core.data.mnist import load_digits

    if cfg.channels != 1:
        raise DataError(f"data.channels must be 1 for Moving MNIST, got {cfg.channels}")
    # The digits are read only when something is generated: a run on files needs no MNIST (nor a 28-pixel canvas).
    generates = not (cfg.train_path and cfg.test_path)
    digits, spec = None, None
    if generates:
        digits = load_digits(cfg.data_dir, cfg.mnist)
        spec = MovingMNISTSpec(seq_len=cfg.total_frames, canvas=cfg.image_size, num_digits=cfg.num_digits)
    if cfg.train_path:
        sequences = SequenceDataset(_checked_file(cfg, cfg.train_path))
        train: BatchStream = RandomBatchStream(sequences, batch_size, seed)
        val: Dataset = _spread(sequences, cfg.val_size)
    else:
        train = MovingMNISTStream(digits["train"], batch_size, seed, spec)
        val = SequenceDataset(moving_mnist_set(digits["train"], cfg.val_size, cfg.val_seed, spec, cfg.context_frames))
    if cfg.test_path:
        test = _checked_file(cfg, cfg.test_path, cfg.test_size)
        test_name = f"{cfg.test_path} ({len(test)} sequences)"
    else:
        test = moving_mnist_set(digits["test"], cfg.test_size, cfg.test_seed, spec, cfg.context_frames)
        test_name = f"generated Moving MNIST test set (test digits, seed {cfg.test_seed}, {cfg.test_size} sequences)"
    return RunData(train, val, SequenceDataset(test), cfg.context_frames, test_name, cfg.num_workers)


def _checked_file(cfg: DataConfig, path: str, size: int | None = None) -> SequenceSet:
    """The sequences of ``path`` (data.train_path or data.test_path), checked against the config's shapes and cut to
    ``size`` sequences when it is given."""
    sequences = read_sequences(path)
    expected = (cfg.total_frames, cfg.channels, cfg.image_size, cfg.image_size)
    if tuple(sequences.frames.shape[1:]) != expected:
        raise DataError(
            f"{path}: sequences are (T, C, H, W) = {tuple(sequences.frames.shape[1:])}, but the config asks for "
            f"{expected} (data.total_frames, data.channels, data.image_size)"
        )
    if sequences.context_frames != cfg.context_frames:
        raise DataError(
            f"{path}: the file's sequences have {sequences.context_frames} context frames, the config "
            f"data.context_frames={cfg.context_frames}"
        )
    if size is not None and len(sequences) > size:
        sequences = SequenceSet(sequences.frames[:size], sequences.context_frames, sequences.source)
    return sequences


def _kth(cfg: DataConfig, batch_size: int, seed: int) -> RunData:
    from core.data.kth import TRAIN_PERSONS, KTHDataset

    if cfg.channels != 1:
        raise DataError(f"data.channels must be 1 for KTH (the first channel is used), got {cfg.channels}")
    held_out = sorted(cfg.val_persons)
    trained = [person for person in TRAIN_PERSONS if person not in held_out]
    train = KTHDataset(cfg.root, "train", seq_len=cfg.total_frames, image_size=cfg.image_size, persons=trained)
    if held_out:
        try:
            val = KTHDataset(cfg.root, "train", seq_len=cfg.total_frames, image_size=cfg.image_size, persons=held_out)
        except DataError as err:
            raise DataError(f"{err} (the validation persons, data.val_persons={held_out})") from err
    else:
        val = train
    test = KTHDataset(cfg.root, "test", seq_len=cfg.total_frames, image_size=cfg.image_size)
    test_name = f"KTH test persons 17-25 under {cfg.root} ({min(len(test), cfg.test_size)} windows of {cfg.total_frames})"
    stream = RandomBatchStream(train, batch_size, seed)
    return RunData(
        stream, _spread(val, cfg.val_size), _spread(test, cfg.test_size), cfg.context_frames, test_name, cfg.num_workers
    )


def _spread(dataset: Dataset, size: int) -> Dataset:
    """``dataset`` cut to ``size`` items evenly spaced through it (the whole of it when it is not larger)."""
    if len(dataset) <= size:
        return dataset
    return Subset(dataset, np.linspace(0, len(dataset) - 1, size).round().astype(int).tolist())
