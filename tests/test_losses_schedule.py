import pytest
import torch

from core.losses import RELEASE_L1_WEIGHT, prediction_loss
from core.schedule import learning_rate, sampling_eta, true_frame_mask


def test_loss_weights_mix_l1_and_l2():
    pred, target = torch.tensor([0.5, 0.0, 1.0, 0.25]), torch.tensor([0.0, 0.0, 0.5, 0.25])
    # errors 0.5, 0, 0.5, 0: mean|e| = 0.25, mean e^2 = 0.125
    for weight, expected in ((0.0, 0.125), (1.0, 0.25), (0.5, 0.1875), (RELEASE_L1_WEIGHT, 2 / 3 * 0.25 + 0.125 / 3)):
        losses = prediction_loss(pred, target, weight)
        assert losses["loss"].item() == pytest.approx(expected)
        assert losses["l1"].item() == pytest.approx(0.25) and losses["l2"].item() == pytest.approx(0.125)


def test_release_weight_matches_its_sum_of_terms():
    # The release minimises sum(e^2)/2 + sum|e|; ours with w = 2/3 is the same objective up to a constant factor.
    error = torch.randn(1000)
    release = (error.square().sum() / 2 + error.abs().sum()) / error.numel()
    ours = prediction_loss(error, torch.zeros(1000), RELEASE_L1_WEIGHT)["loss"]
    assert (ours / release).item() == pytest.approx(2 / 3)


def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"prediction shape \(2,\) differs from target shape \(3,\)"):
        prediction_loss(torch.zeros(2), torch.zeros(3), 0.5)


def _release_eta(iterations: int, start: float, rate: float, stop: int) -> list[float]:
    """The release's loop, written out: eta starts at ``start`` and each iteration 1, 2, ... lowers it before use."""
    eta, used = start, []
    for iteration in range(1, iterations + 1):
        eta = eta - rate if iteration < stop else 0.0
        used.append(max(eta, 0.0))
    return used


def test_sampling_eta_follows_the_release_iteration_by_iteration():
    release = {"start": 1.0, "rate": 2e-5, "stop": 50000}
    assert sampling_eta(0, **release) == pytest.approx(1 - 2e-5, abs=1e-12)  # the release's iteration 1
    assert sampling_eta(1, **release) == pytest.approx(1 - 4e-5, abs=1e-12)  # iteration 2
    assert sampling_eta(49998, **release) == pytest.approx(2e-5, abs=1e-9)  # iteration 49,999: the last above 0
    assert sampling_eta(49999, **release) == 0.0  # iteration 50,000
    assert sampling_eta(80000, **release) == 0.0
    small = {"start": 1.0, "rate": 0.1, "stop": 7}
    assert [sampling_eta(s, **small) for s in range(12)] == pytest.approx(_release_eta(12, **small), abs=1e-12)
    assert sampling_eta(600, start=0.5, rate=1e-3, stop=10**6) == 0.0  # clamped at zero before stop


def test_true_frame_mask_is_seeded_by_step_and_follows_eta():
    a, b = true_frame_mask(5, 0, 0.5, 4, 9), true_frame_mask(5, 0, 0.5, 4, 9)
    assert a.shape == (4, 9) and torch.equal(a, b)
    assert not torch.equal(a, true_frame_mask(6, 0, 0.5, 4, 9))
    assert not torch.equal(a, true_frame_mask(5, 1, 0.5, 4, 9))
    assert true_frame_mask(0, 0, 1.0, 3, 5).eq(1).all() and true_frame_mask(0, 0, 0.0, 3, 5).eq(0).all()
    share = true_frame_mask(7, 3, 0.3, 200, 50).mean().item()
    assert 0.27 < share < 0.33


def test_learning_rate_is_constant_or_warms_up_then_follows_a_cosine_to_its_floor():
    assert [learning_rate(s, 0.002, "constant", 10) for s in (0, 5, 9)] == [0.002] * 3
    cosine = [learning_rate(s, 1.0, "cosine", 11, warmup=0, lr_min=0.1) for s in range(11)]
    assert cosine[0] == 1.0 and cosine[-1] == pytest.approx(0.1) and cosine[5] == pytest.approx(0.55)
    assert all(a > b for a, b in zip(cosine, cosine[1:], strict=False))  # strictly falling
    assert learning_rate(20, 1.0, "cosine", 11, lr_min=0.1) == pytest.approx(0.1)  # past the horizon: the floor
    assert [learning_rate(s, 1.0, "cosine", 10, warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        learning_rate(0, 1.0, "linear", 10)
