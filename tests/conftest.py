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


@pytest.fixture
def calls(tmp_path, monkeypatch) -> Path:
    """The folder where the sweep tests' fake objectives leave one file per call (spawned workers inherit the
    environment, so they find it too)."""
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv("SWEEP_FAKE_DIR", str(folder))
    return folder
