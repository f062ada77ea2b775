from pathlib import Path

import numpy as np
import pytest
import torch

# Tests use tiny tensors: one thread is as fast, and immune to the stalls a second thread suffers when another
# process holds the other core. Denormals flushed as in every real run.
torch.set_num_threads(1)
torch.set_flush_denormal(True)


@pytest.fixture
def digits() -> np.ndarray:
    """Tiny stand-in for MNIST: 20 distinct 28x28 uint8 'digits', each a filled square of its own brightness."""
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    for k in range(20):
        images[k, 4:24, 4:24] = 10 * (k + 1)
    return images


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory) -> Path:
    """A tiny MNIST file in the ``x_train``/``x_test`` npz layout: 20 train and 10 test 'digits' (bright rectangles);
    read-only, shared by every test."""
    rng = np.random.default_rng(0)
    digits = np.zeros((30, 28, 28), np.uint8)
    for k in range(30):
        r, c = rng.integers(2, 12, size=2)
        digits[k, r : r + 14, c : c + 10] = rng.integers(120, 256)
    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    np.savez(path, x_train=digits[:20], x_test=digits[20:])
    return path


@pytest.fixture
def calls(tmp_path, monkeypatch) -> Path:
    """The folder where the sweep tests' fake objectives leave one file per call (spawned workers inherit the
    environment, so they find it too)."""
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv("SWEEP_FAKE_DIR", str(folder))
    return folder
