import numpy as np
import pytest


@pytest.fixture
def digits() -> np.ndarray:
    """Tiny stand-in for MNIST: 20 distinct 28x28 uint8 'digits', each a filled square of its own brightness."""
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    for k in range(20):
        images[k, 4:24, 4:24] = 10 * (k + 1)
    return images
