"""core.metrics: hand-computed MSE/MAE/PSNR, SSIM against scikit-image, streaming, baselines and bad input."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from core import metrics
from core.io import DataError
from core.metrics import (
    BASELINES,
    METRICS,
    PSNR_PERFECT_DB,
    MetricAccumulator,
    Scores,
    baseline_predictions,
    blank_frame,
    copy_last_frame,
    evaluate,
    evaluate_baselines,
    frame_scores,
)

PEAK_DB = 20 * math.log10(255)  # PSNR of a mean squared error of 1 (in uint8 steps)


def _frames(num_sequences=1, num_frames=1, channels=1, height=8, width=8, value=0.0):
    return np.full((num_sequences, num_frames, channels, height, width), value, dtype=np.float64)


def _skimage_ssim(pred, target, data_range):
    """scikit-image's SSIM of each (C, H, W) frame, in float64: (N, T, C, H, W) -> (N, T)."""
    out = np.empty(pred.shape[:2])
    for seq in range(pred.shape[0]):
        for step in range(pred.shape[1]):
            out[seq, step] = structural_similarity(
                pred[seq, step].astype(np.float64),
                target[seq, step].astype(np.float64),
                data_range=data_range,
                channel_axis=0,
            )
    return out


def _digits(rng, num_frames, channels=1, size=32):
    """Moving-MNIST-like frames: a black canvas with two sparse bright 12x12 strokes merged by max."""
    frames = np.zeros((num_frames, channels, size, size), dtype=np.float32)
    for frame in frames:
        for _ in range(2):
            top, left = rng.integers(0, size - 12, 2)
            stroke = (rng.random((channels, 12, 12)) ** 0.2) * (rng.random((12, 12)) < 0.4)
            frame[:, top : top + 12, left : left + 12] = np.maximum(frame[:, top : top + 12, left : left + 12], stroke)
    return frames


def _structured_pairs(channels):
    """(name, pred, target) pairs of (N, T, C, H, W) frames where float32 SSIM would go wrong or edge cases hide."""
    rng = np.random.default_rng(1)
    levels = rng.random(6)
    constant = np.broadcast_to(levels[:, None, None, None], (6, channels, 24, 24))
    ramp = np.linspace(0, 1, 24)[None, None, None, :] * (0.3 + 0.7 * levels[:, None, None, None])
    gradient = np.broadcast_to(ramp, (6, channels, 24, 24))
    digits = _digits(rng, 6, channels)
    noisy = np.clip(digits + 0.02 * rng.standard_normal(digits.shape), 0, 1)
    pairs = [
        ("constant", constant, constant[::-1]),
        ("gradient", gradient, gradient[::-1]),
        ("gradient_shifted", gradient, np.clip(gradient + 0.05, 0, 1)),
        ("digits", digits, _digits(rng, 6, channels)),
        ("digits_noisy", digits, noisy),
        ("digits_dimmed", digits, 0.999 * digits),
        ("digits_moved", digits, np.roll(digits, 1, axis=-1)),
        ("blank_vs_digits", np.zeros_like(digits), digits),
    ]
    # (6, C, H, W) -> (2, 3, C, H, W): two sequences of three frames
    return [(name, p.reshape(2, 3, *p.shape[1:]), t.reshape(2, 3, *t.shape[1:])) for name, p, t in pairs]


# ---------------------------------------------------------------- MSE and MAE


def test_mse_and_mae_sum_over_pixels_of_one_frame():
    pred, target = _frames(), _frames()
    pred[0, 0, 0, 2, 3] = 0.5
    pred[0, 0, 0, 5, 1] = 0.25
    scores = evaluate(pred, target)
    assert scores.mse == pytest.approx(0.5**2 + 0.25**2)  # 0.3125
    assert scores.mae == pytest.approx(0.5 + 0.25)


def test_mse_sums_over_channels():
    pred, target = _frames(channels=3), _frames(channels=3, value=0.1)
    # 3 channels x 64 pixels, each off by 0.1
    assert evaluate(pred, target).mse == pytest.approx(3 * 64 * 0.01)
    assert evaluate(pred, target).mae == pytest.approx(3 * 64 * 0.1)


def test_curves_are_means_over_sequences_and_scalars_over_frames_too():
    pred, target = _frames(num_sequences=2, num_frames=3), _frames(num_sequences=2, num_frames=3)
    # frame k of sequence 0 is off by 0.1 (k + 1) at one pixel; sequence 1 by twice that
    for step in range(3):
        pred[0, step, 0, 0, 0] = 0.1 * (step + 1)
        pred[1, step, 0, 0, 0] = 0.2 * (step + 1)
    scores = evaluate(pred, target)
    expected_mse = [(0.01 + 0.04) / 2, (0.04 + 0.16) / 2, (0.09 + 0.36) / 2]
    expected_mae = [(0.1 + 0.2) / 2, (0.2 + 0.4) / 2, (0.3 + 0.6) / 2]
    np.testing.assert_allclose(scores.mse_by_frame, expected_mse, rtol=1e-12)
    np.testing.assert_allclose(scores.mae_by_frame, expected_mae, rtol=1e-12)
    assert scores.mse == pytest.approx(np.mean(expected_mse))
    assert scores.mae == pytest.approx(np.mean(expected_mae))
    assert scores.num_sequences == 2
    for name in METRICS:
        curve = getattr(scores, f"{name}_by_frame")
        assert curve.shape == (3,) and curve.dtype == np.float64
    # per-frame PSNR falls as the error grows
    assert np.all(np.diff(scores.psnr_by_frame) < 0)


def test_frame_scores_are_per_sequence_and_frame():
    pred, target = _frames(num_sequences=2, num_frames=2), _frames(num_sequences=2, num_frames=2)
    pred[1, 0, 0, 4, 4] = 0.5
    mse = frame_scores(pred, target, metrics=("mse",))["mse"]
    assert mse.dtype == torch.float64
    np.testing.assert_allclose(mse.numpy(), [[0.0, 0.0], [0.25, 0.0]])


def test_predictions_are_clipped_before_scoring():
    target = _frames()
    target[0, 0, 0, :4] = 1.0
    pred = target.copy()
    pred[0, 0, 0, :4] = 1.5  # clipped to 1: no error
    pred[0, 0, 0, 4:] = -0.5  # clipped to 0: no error
    scores = evaluate(pred, target)
    assert scores.mse == 0.0
    assert scores.mae == 0.0
    assert scores.psnr == PSNR_PERFECT_DB
    assert scores.ssim == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- PSNR


def test_psnr_of_one_pixel_off_by_ten_levels():
    pred, target = _frames(), _frames()
    pred[0, 0, 0, 3, 3] = 10.5 / 255  # quantises to 10
    # mean squared error over 64 pixels: 10^2 / 64
    assert evaluate(pred, target).psnr == pytest.approx(PEAK_DB - 10 * math.log10(100 / 64))  # 46.19 dB


def test_psnr_differences_do_not_wrap_around_in_uint8():
    pred, target = _frames(), _frames()
    target[0, 0, 0, 0, 0] = 1.0  # 255 against 0: in uint8, 0 - 255 wraps to 1
    int32 = PEAK_DB - 10 * math.log10(255**2 / 64)  # = 10 log10(64), 18.06 dB
    wrapped = PEAK_DB - 10 * math.log10(1 / 64)  # 66.19 dB, what uint8 arithmetic reports
    psnr = evaluate(pred, target).psnr
    assert psnr == pytest.approx(int32)
    assert abs(psnr - wrapped) > 40


def test_psnr_quantises_by_truncation_not_rounding():
    pred, target = _frames(), _frames()
    target[0, 0, 0, 0, 0] = 10.2 / 255  # truncates (and rounds) to 10
    pred[0, 0, 0, 0, 0] = 11.9 / 255  # truncates to 11, would round to 12
    assert evaluate(pred, target).psnr == pytest.approx(PEAK_DB - 10 * math.log10(1 / 64))


def test_psnr_of_perfect_frames_is_capped():
    target = np.random.default_rng(0).random((2, 2, 1, 8, 8))
    scores = evaluate(target, target)
    assert PSNR_PERFECT_DB == 100.0
    np.testing.assert_array_equal(scores.psnr_by_frame, [PSNR_PERFECT_DB, PSNR_PERFECT_DB])
    # errors below one quantisation step vanish: still perfect, though the MSE is not zero
    pred = np.floor(target * 255) / 255 + 0.4 / 255
    scores = evaluate(pred, target)
    assert scores.psnr == PSNR_PERFECT_DB
    assert scores.mse > 0


# ---------------------------------------------------------------- SSIM


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("convention", "data_range"), [("ours", 1.0), ("release", 2.0)])
def test_ssim_matches_scikit_image_on_random_frames(channels, convention, data_range):
    rng = np.random.default_rng(channels)
    pred = rng.random((2, 3, channels, 16, 21), dtype=np.float32)
    target = np.clip(pred + 0.3 * rng.standard_normal(pred.shape).astype(np.float32), 0, 1)
    ours = frame_scores(pred, target, convention, metrics=("ssim",))["ssim"].numpy()
    reference = _skimage_ssim(pred, target, data_range)
    assert ours.shape == (2, 3)
    assert np.abs(ours - reference).max() < 1e-4
    assert evaluate(pred, target, convention).ssim == pytest.approx(reference.mean(), abs=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("convention", "data_range"), [("ours", 1.0), ("release", 2.0)])
def test_ssim_matches_scikit_image_on_structured_frames(channels, convention, data_range):
    for name, pred, target in _structured_pairs(channels):
        ours = frame_scores(pred, target, convention, metrics=("ssim",))["ssim"].numpy()
        reference = _skimage_ssim(pred, target, data_range)
        assert np.abs(ours - reference).max() < 1e-4, name


@pytest.mark.parametrize(("convention", "data_range"), [("ours", 1.0), ("release", 2.0)])
def test_ssim_matches_scikit_image_on_flat_frames_at_many_levels(convention, data_range):
    # Flat windows are where E[x^2] - E[x]^2 cancels: float32 misses by up to 5e-4 here (measured), float64 does not.
    levels = np.random.default_rng(9).random((2, 200))
    pred = np.broadcast_to(levels[0, :, None, None, None], (200, 1, 8, 8))[None].astype(np.float32)
    target = np.broadcast_to(levels[1, :, None, None, None], (200, 1, 8, 8))[None].astype(np.float32)
    ours = frame_scores(pred, target, convention, metrics=("ssim",))["ssim"].numpy()
    assert np.abs(ours - _skimage_ssim(pred, target, data_range)).max() < 1e-4


def test_ssim_of_identical_frames_is_one():
    rng = np.random.default_rng(2)
    frames = np.concatenate([rng.random((1, 2, 3, 12, 12)), np.full((1, 2, 3, 12, 12), 0.3)])
    for convention in ("ours", "release"):
        np.testing.assert_allclose(
            frame_scores(frames, frames, convention, metrics=("ssim",))["ssim"].numpy(), 1.0, atol=1e-12
        )


def test_release_convention_inflates_ssim():
    rng = np.random.default_rng(3)
    pred, target = rng.random((1, 2, 1, 16, 16)), rng.random((1, 2, 1, 16, 16))
    ours, release = evaluate(pred, target, "ours").ssim, evaluate(pred, target, "release").ssim
    assert release > ours + 0.01
    assert ours == pytest.approx(_skimage_ssim(pred, target, 1.0).mean(), abs=1e-4)


def test_ssim_of_a_frame_is_the_mean_over_its_channels():
    rng = np.random.default_rng(4)
    pred, target = rng.random((1, 1, 3, 10, 10)), rng.random((1, 1, 3, 10, 10))
    per_channel = [
        structural_similarity(pred[0, 0, c], target[0, 0, c], data_range=1.0) for c in range(3)
    ]  # 2-D frames: no channel axis
    assert evaluate(pred, target).ssim == pytest.approx(np.mean(per_channel), abs=1e-12)


# ---------------------------------------------------------------- inputs, blocks and streaming


def test_torch_and_numpy_inputs_agree_and_results_are_plain_values():
    rng = np.random.default_rng(5)
    pred, target = rng.random((2, 2, 1, 9, 9), dtype=np.float32), rng.random((2, 2, 1, 9, 9), dtype=np.float32)
    from_numpy = evaluate(pred, target)
    pred_tensor = torch.from_numpy(pred).requires_grad_()  # a model's output still attached to its graph
    from_torch = evaluate(pred_tensor, torch.from_numpy(target))
    assert isinstance(from_torch.mse, float) and isinstance(from_torch.ssim_by_frame, np.ndarray)
    for name in METRICS:
        assert getattr(from_torch, name) == getattr(from_numpy, name)
    # float64 input scores the same frames to within float32 rounding
    assert evaluate(pred.astype(np.float64), target.astype(np.float64)).mse == pytest.approx(from_numpy.mse, rel=1e-6)


def test_small_blocks_give_the_same_scores(monkeypatch):
    rng = np.random.default_rng(6)
    pred, target = rng.random((3, 5, 2, 8, 8)), rng.random((3, 5, 2, 8, 8))
    whole = frame_scores(pred, target)
    for budget in (2 * 64 * 2, 2 * 64 * 5 * 2):  # two frames a block (sequences split); two sequences a block
        monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS_CPU", budget)
        blocked = frame_scores(pred, target)
        for name in METRICS:
            np.testing.assert_allclose(blocked[name].numpy(), whole[name].numpy(), rtol=1e-12, atol=1e-12)


def test_accumulator_over_batches_equals_one_call():
    rng = np.random.default_rng(7)
    pred, target = rng.random((7, 4, 1, 10, 10)), rng.random((7, 4, 1, 10, 10))
    accumulator = MetricAccumulator("release")
    for start, stop in ((0, 3), (3, 4), (4, 7)):
        accumulator.update(pred[start:stop], target[start:stop])
    streamed, whole = accumulator.compute(), evaluate(pred, target, "release")
    assert streamed.num_sequences == whole.num_sequences == 7
    assert streamed.ssim_convention == "release"
    for name in METRICS:
        assert getattr(streamed, name) == pytest.approx(getattr(whole, name), rel=1e-12)
        np.testing.assert_allclose(getattr(streamed, f"{name}_by_frame"), getattr(whole, f"{name}_by_frame"))


def test_accumulator_rejects_a_bad_batch_without_counting_it():
    rng = np.random.default_rng(8)
    accumulator = MetricAccumulator()
    accumulator.update(rng.random((2, 3, 1, 8, 8)), rng.random((2, 3, 1, 8, 8)))
    before = accumulator.compute()
    with pytest.raises(DataError, match=r"\(T, C, H, W\) = \(4, 1, 8, 8\).*\(3, 1, 8, 8\)"):
        accumulator.update(rng.random((2, 4, 1, 8, 8)), rng.random((2, 4, 1, 8, 8)))
    bad_target = rng.random((2, 3, 1, 8, 8))
    bad_target[1, 2, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="target contains 1 NaN"):
        accumulator.update(rng.random((2, 3, 1, 8, 8)), bad_target)
    after = accumulator.compute()
    assert after.num_sequences == 2
    assert after.mse == before.mse


def test_compute_before_update_is_an_error():
    with pytest.raises(RuntimeError, match="before any update"):
        MetricAccumulator().compute()


def test_scores_to_dict_is_flat_prefixed_and_json_ready():
    pred, target = _frames(num_frames=2), _frames(num_frames=2)
    pred[0, 1, 0, 0, 0] = 0.5
    scores = evaluate(pred, target)
    plain = scores.to_dict()
    assert plain["mse"] == 0.125 and plain["mse_by_frame"] == [0.0, 0.25]
    assert plain["psnr_by_frame"][0] == PSNR_PERFECT_DB
    assert plain["num_sequences"] == 1 and plain["ssim_convention"] == "ours"
    prefixed = scores.to_dict("test/")
    assert set(prefixed) == {f"test/{key}" for key in plain}
    assert set(plain) == {*METRICS, *(f"{name}_by_frame" for name in METRICS), "num_sequences", "ssim_convention"}
    assert json.loads(json.dumps(prefixed)) == prefixed


def test_scores_are_frozen():
    scores = evaluate(_frames(), _frames())
    assert isinstance(scores, Scores)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.mse = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        scores.mse_by_frame[0] = 1.0


# ---------------------------------------------------------------- baselines


def test_copy_last_frame_repeats_the_last_context_frame():
    context = np.arange(2 * 3 * 1 * 2 * 2, dtype=np.float32).reshape(2, 3, 1, 2, 2)
    future = copy_last_frame(context, 4)
    assert future.shape == (2, 4, 1, 2, 2)
    for step in range(4):
        np.testing.assert_array_equal(future[:, step], context[:, 2])
    tensor_future = copy_last_frame(torch.from_numpy(context), 4)
    assert isinstance(tensor_future, torch.Tensor)
    np.testing.assert_array_equal(tensor_future.numpy(), future)


def test_blank_frame_is_zeros_of_the_context_dtype():
    context = np.ones((2, 3, 1, 4, 4), dtype=np.float32)
    blank = blank_frame(context, 5)
    assert blank.shape == (2, 5, 1, 4, 4) and blank.dtype == np.float32
    assert not blank.any()
    tensor_blank = blank_frame(torch.ones(2, 3, 1, 4, 4, dtype=torch.float64), 5)
    assert tensor_blank.dtype == torch.float64 and tensor_blank.shape == (2, 5, 1, 4, 4)
    assert not tensor_blank.any()


def test_baseline_predictions_and_scores():
    sequences = np.zeros((2, 5, 1, 8, 8))
    sequences[:, :, 0, 2, 2] = 0.5  # a pixel that stays put: copy-last-frame predicts it exactly
    sequences[0, 3:, 0, 6, 6] = 1.0  # a pixel that appears after the context
    predictions = baseline_predictions(sequences, context_frames=3)
    assert tuple(predictions) == BASELINES
    for prediction in predictions.values():
        assert prediction.shape == (2, 2, 1, 8, 8)
    scores = evaluate_baselines(sequences, context_frames=3)
    # copy-last-frame misses only the appearing pixel, in sequence 0: MSE per frame (1 + 0) / 2 sequences
    np.testing.assert_allclose(scores["copy_last_frame"].mse_by_frame, [0.5, 0.5])
    # blank misses the static pixel (0.25) everywhere and the appearing one in sequence 0
    np.testing.assert_allclose(scores["blank"].mse_by_frame, [(0.25 + 1.0 + 0.25) / 2] * 2)
    assert scores["blank"].mae == pytest.approx((0.5 + 1.0 + 0.5) / 2)
    # a scene that never changes is predicted perfectly by copying
    still = evaluate_baselines(np.full((1, 4, 1, 8, 8), 0.7), context_frames=2)["copy_last_frame"]
    assert still.mse == 0.0 and still.psnr == PSNR_PERFECT_DB and still.ssim == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- bad input


def _bad(pred, target, match, **kwargs):
    with pytest.raises(DataError, match=match):
        evaluate(pred, target, **kwargs)


def test_wrong_rank_is_an_error():
    _bad(np.zeros((3, 8, 8)), np.zeros((3, 8, 8)), r"pred must be 5-D .* got shape \(3, 8, 8\)")
    _bad(_frames(), np.zeros((1, 1, 8, 8)), r"target must be 5-D .* got shape \(1, 1, 8, 8\)")


def test_shape_mismatch_is_an_error():
    _bad(_frames(width=9), _frames(), r"pred shape \(1, 1, 1, 8, 9\) differs from target shape \(1, 1, 1, 8, 8\)")


def test_nan_and_inf_are_errors():
    pred = _frames(num_frames=2)
    pred[0, 1, 0, 3, 4] = np.nan
    _bad(pred, _frames(num_frames=2), r"pred contains 1 NaN or inf values \(the first, nan, at index \(0, 1, 0, 3, 4\)")
    pred = _frames()
    pred[0, 0, 0, 0, 0] = np.inf  # clipping would hide it
    _bad(pred, _frames(), "pred contains 1 NaN or inf")
    target = _frames()
    target[0, 0, 0, 1, 1] = -np.inf
    _bad(_frames(), target, r"target contains 1 NaN or inf values \(the first, -inf")


def test_targets_outside_the_unit_range_are_errors():
    target = _frames()
    target[0, 0, 0, 0, 0] = 1.5
    _bad(_frames(), target, r"target has values outside \[0, 1\]: min 0, max 1\.5 \(shape \(1, 1, 1, 8, 8\)\)")
    target = np.full((1, 1, 1, 8, 8), 255.0)  # a uint8-scaled frame
    _bad(_frames(), target, "max 255")
    target = _frames()
    target[0, 0, 0, 0, 0] = -0.01
    _bad(_frames(), target, "min -0.01")
    # float noise within the tolerance is clamped, not an error
    target = _frames(value=1 + 1e-7)
    assert evaluate(_frames(value=1.0), target).mse == pytest.approx(0.0, abs=1e-10)


def test_non_float_input_is_an_error():
    _bad(np.zeros((1, 1, 1, 8, 8), dtype=np.uint8), _frames(), "pred must hold floats in .* got dtype uint8")
    _bad(_frames(), torch.zeros(1, 1, 1, 8, 8, dtype=torch.int64), "target must hold floats .* torch.int64")
    _bad([[0.0]], _frames(), "pred must be a numpy array or a torch tensor, got list")


def test_frames_smaller_than_the_ssim_window_are_errors():
    _bad(_frames(height=6), _frames(height=6), r"pred frames are 6x8 pixels \(shape \(1, 1, 1, 6, 8\)\)")


def test_empty_input_is_an_error():
    _bad(_frames(num_sequences=0), _frames(num_sequences=0), r"pred has no values: shape \(0, 1, 1, 8, 8\)")


def test_unknown_convention_and_metric_are_errors():
    _bad(
        _frames(),
        _frames(),
        "unknown ssim_convention 'skimage'; choose from \\['ours', 'release'\\]",
        ssim_convention="skimage",
    )
    with pytest.raises(DataError, match="unknown ssim_convention 'old'"):
        MetricAccumulator("old")
    with pytest.raises(DataError, match=r"unknown metrics \['lpips'\]"):
        frame_scores(_frames(), _frames(), metrics=("mse", "lpips"))


def test_bad_baseline_arguments_are_errors():
    with pytest.raises(DataError, match=r"context_frames must be between 1 and 4 .* shape \(1, 5, 1, 8, 8\), got 5"):
        baseline_predictions(np.zeros((1, 5, 1, 8, 8)), context_frames=5)
    with pytest.raises(DataError, match=r"sequences must be 5-D .* got shape \(5, 8, 8\)"):
        baseline_predictions(np.zeros((5, 8, 8)), context_frames=2)
    with pytest.raises(DataError, match="num_future must be at least 1, got 0"):
        copy_last_frame(np.zeros((1, 2, 1, 8, 8)), 0)
    with pytest.raises(DataError, match=r"context must be 5-D .* got shape \(2, 1, 8, 8\)"):
        blank_frame(np.zeros((2, 1, 8, 8)), 3)
