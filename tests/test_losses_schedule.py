import pytest
import torch

from core.losses import RELEASE_L1_WEIGHT, prediction_loss
from core.schedule import sampling_eta, true_frame_mask


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


def test_sampling_eta_at_given_steps():
    release = {"start": 1.0, "rate": 2e-5, "stop": 50000}
    assert sampling_eta(0, **release) == 1.0
    assert sampling_eta(10000, **release) == pytest.approx(0.8)
    assert sampling_eta(49999, **release) == pytest.approx(1 - 2e-5 * 49999)
    assert sampling_eta(50000, **release) == 0.0
    assert sampling_eta(80000, **release) == 0.0
    assert sampling_eta(600, start=0.5, rate=1e-3, stop=10**6) == 0.0  # clamped at zero before stop


def test_true_frame_mask_is_seeded_by_step_and_follows_eta():
    a, b = true_frame_mask(5, 0, 0.5, 4, 9), true_frame_mask(5, 0, 0.5, 4, 9)
    assert a.shape == (4, 9) and torch.equal(a, b)
    assert not torch.equal(a, true_frame_mask(6, 0, 0.5, 4, 9))
    assert not torch.equal(a, true_frame_mask(5, 1, 0.5, 4, 9))
    assert true_frame_mask(0, 0, 1.0, 3, 5).eq(1).all() and true_frame_mask(0, 0, 0.0, 3, 5).eq(0).all()
    share = true_frame_mask(7, 3, 0.3, 200, 50).mean().item()
    assert 0.27 < share < 0.33
