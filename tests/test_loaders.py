import numpy as np
import pytest
import torch

from core.data.formats import SequenceSet
from core.data.loaders import (
    MovingMNISTStream,
    SequenceDataset,
    moving_mnist_set,
    sequence_loader,
    stream_loader,
    to_unit_float,
)
from core.data.mnist import read_user_mnist
from core.data.moving_mnist import MovingMNISTSpec
from core.io import DataError


def _take(loader, count):
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            return batches
    raise AssertionError("loader ended early")


def test_stream_batches_are_unit_float_bchw(digits):
    stream = MovingMNISTStream(digits, batch_size=3, seed=0, spec=MovingMNISTSpec(seq_len=6, canvas=32))
    batch = next(iter(stream_loader(stream)))
    assert batch.shape == (3, 6, 1, 32, 32) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1 and batch.max() > 0


def test_stream_is_endless_distinct_and_resumable(digits):
    spec = MovingMNISTSpec(seq_len=4, canvas=32)
    batches = _take(stream_loader(MovingMNISTStream(digits, 2, seed=1, spec=spec)), 6)
    assert not torch.equal(batches[0], batches[1])
    resumed = _take(stream_loader(MovingMNISTStream(digits, 2, seed=1, spec=spec, start_batch=4)), 2)
    assert torch.equal(resumed[0], batches[4]) and torch.equal(resumed[1], batches[5])
    other_seed = _take(stream_loader(MovingMNISTStream(digits, 2, seed=2, spec=spec)), 1)
    assert not torch.equal(other_seed[0], batches[0])


def test_stream_order_is_the_same_with_workers(digits):
    spec = MovingMNISTSpec(seq_len=4, canvas=32)
    serial = _take(stream_loader(MovingMNISTStream(digits, 2, seed=7, spec=spec)), 5)
    parallel = _take(stream_loader(MovingMNISTStream(digits, 2, seed=7, spec=spec), num_workers=2), 5)
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b)


def test_fixed_set_and_loader(digits):
    data = moving_mnist_set(digits, num=5, seed=3, spec=MovingMNISTSpec(seq_len=8), context_frames=3)
    assert data.frames.shape == (5, 8, 1, 64, 64) and data.frames.dtype == np.uint8 and data.context_frames == 3
    batches = list(sequence_loader(SequenceDataset(data), batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    torch.testing.assert_close(torch.cat(batches), torch.from_numpy(data.frames).float() / 255)


def test_shuffled_loader_is_seeded():
    frames = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1, 1).repeat(2, axis=1)  # sequence k holds value k
    dataset = SequenceDataset(SequenceSet(frames, 1, "ramp"))

    def order(seed):
        return [int(v * 255) for b in sequence_loader(dataset, 4, shuffle=True, seed=seed) for v in b[:, 0].flatten()]

    assert order(0) == order(0) and sorted(order(0)) == list(range(10)) and order(0) != order(1)


def test_to_unit_float_scales_uint8_only():
    assert to_unit_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_unit_float(np.array([0.5], np.float64)).dtype == torch.float32


def test_random_batch_stream_is_seeded_and_resumable():
    from core.data.loaders import RandomBatchStream

    frames = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1, 1).repeat(2, axis=1)  # sequence k holds value k
    dataset = SequenceDataset(SequenceSet(frames, 1, "ramp"))
    batches = _take(stream_loader(RandomBatchStream(dataset, 4, seed=5)), 4)
    assert all(b.shape == (4, 2, 1, 1, 1) for b in batches)
    resumed = _take(stream_loader(RandomBatchStream(dataset, 4, seed=5, start_batch=2)), 2)
    assert torch.equal(resumed[0], batches[2]) and torch.equal(resumed[1], batches[3])
    assert len({int(v * 255) for b in batches for v in b[:, 0].flatten()}) > 4  # draws spread over the dataset


def test_no_training_batch_repeats_a_fixed_sets_sequences(digits):
    """numpy pads seeds with zeros (SeedSequence([2, 0]) is SeedSequence(2)), so an untagged batch 0 of training seed
    2 would be the validation set's first sequences (val_seed 2, the same digits), and batch 0 of seed 1 would move
    exactly like the test set (test_seed 1)."""
    spec = MovingMNISTSpec(seq_len=6, canvas=32)
    for seed in range(4):
        fixed = to_unit_float(moving_mnist_set(digits, 3, seed, spec, context_frames=3).frames)  # (3, T, 1, H, W)
        for index in range(3):
            batch = MovingMNISTStream(digits, batch_size=3, seed=seed, spec=spec).batch(index)
            assert not torch.equal(batch, fixed), (seed, index)


def test_user_mnist_npz_that_is_really_an_npy_says_so(tmp_path):
    np.save(tmp_path / "digits.npy", np.zeros((4, 28, 28), np.uint8))
    (tmp_path / "digits.npy").rename(tmp_path / "digits.npz")
    with pytest.raises(DataError, match=r"digits\.npz: holds a single \.npy array \(uint8 \(4, 28, 28\)\), not an "):
        read_user_mnist(tmp_path / "digits.npz")
