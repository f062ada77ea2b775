import numpy as np
import pytest

from core.data.moving_mnist import DIGIT_SIZE, MovingMNISTSpec, bounce, generate, render


def test_same_seed_same_sequences_other_seed_differs(digits):
    a, b = generate(digits, 16, seed=3), generate(digits, 16, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generate(digits, 16, seed=4))


def test_smaller_set_is_a_prefix_of_a_larger_one(digits):
    np.testing.assert_array_equal(generate(digits, 5, seed=9), generate(digits, 40, seed=9)[:5])


def test_seed_sequence_is_not_mutated(digits):
    seed = np.random.SeedSequence([1, 2])
    np.testing.assert_array_equal(generate(digits, 4, seed), generate(digits, 4, seed))


def test_shape_dtype_and_configurable_spec(digits):
    spec = MovingMNISTSpec(seq_len=7, canvas=40, num_digits=3)
    frames = generate(digits, 6, seed=0, spec=spec)
    assert frames.shape == (6, 7, 40, 40) and frames.dtype == np.uint8


def test_each_digit_stays_whole_inside_the_canvas(digits):
    # One digit per sequence: every frame must hold the whole 20x20 square of one brightness, never clipped.
    frames = generate(digits, 50, seed=1, spec=MovingMNISTSpec(num_digits=1, seq_len=30))
    lit = (frames > 0).sum(axis=(2, 3))
    assert (lit == 20 * 20).all()
    # The square keeps its brightness over the whole sequence: the same digit all along.
    brightness = frames.max(axis=(2, 3))
    assert (brightness == brightness[:, :1]).all()


def test_digits_merge_by_maximum():
    dark, bright = np.full((28, 28), 50, np.uint8), np.full((28, 28), 200, np.uint8)
    corners = np.array([[[[0, 0]], [[10, 10]]]])  # (1 sequence, 2 digits, 1 frame, (row, col))
    frame = render(np.stack([bright, dark])[None], corners, canvas=64)[0, 0]
    assert frame[5, 5] == 200 and frame[20, 20] == 200  # bright alone, and the overlap takes the maximum
    assert frame[30, 30] == 50 and frame[50, 50] == 0
    frame = render(np.stack([dark, bright])[None], corners, canvas=64)[0, 0]
    assert frame[20, 20] == 200 and frame[5, 5] == 50


def test_speed_is_constant_between_bounces():
    rng = np.random.default_rng(0)
    theta = rng.random(200) * 2 * np.pi
    velocity = np.stack([np.sin(theta), np.cos(theta)], axis=-1) * 0.1
    path = bounce(rng.random((200, 2)), velocity, seq_len=40)  # (200, 40, 2)
    steps = np.linalg.norm(np.diff(path, axis=1), axis=-1)  # (200, 39)
    touching = ((path <= 0) | (path >= 1)).any(axis=-1)  # frames where a wall was hit
    free = ~(touching[:, 1:] | touching[:, :-1])
    assert free.mean() > 0.5
    np.testing.assert_allclose(steps[free], 0.1, atol=1e-12)
    assert (steps <= 0.1 + 1e-12).all()
    assert (path >= 0).all() and (path <= 1).all()


def test_bounce_clamps_and_reverses():
    path = bounce(np.array([0.5, 0.95]), np.array([0.0, 0.1]), seq_len=4)
    np.testing.assert_allclose(path[:, 1], [1.0, 0.9, 0.8, 0.7])
    np.testing.assert_allclose(path[:, 0], 0.5)
    path = bounce(np.array([0.05, 0.5]), np.array([-0.1, 0.0]), seq_len=3)
    np.testing.assert_allclose(path[:, 0], [0.0, 0.1, 0.2])


def test_digit_moves_at_most_speed_times_range_pixels_per_frame(digits):
    # Corners are floor(position * 36): a move of 0.1 shifts a corner by at most ceil(3.6) = 4 pixels per axis.
    frames = generate(digits, 40, seed=2, spec=MovingMNISTSpec(num_digits=1, seq_len=20))
    lit_rows, lit_cols = frames.max(axis=3) > 0, frames.max(axis=2) > 0  # (40, 20, 64) each
    rows, cols = np.argmax(lit_rows, axis=2) - 4, np.argmax(lit_cols, axis=2) - 4  # squares start 4 px in
    assert rows.min() >= 0 and rows.max() <= 64 - DIGIT_SIZE and cols.min() >= 0 and cols.max() <= 64 - DIGIT_SIZE
    shifts = np.maximum(np.abs(np.diff(rows, axis=1)), np.abs(np.diff(cols, axis=1)))
    assert shifts.max() == 4 and (shifts > 0).mean() > 0.9


@pytest.mark.parametrize(
    "kwargs", [{"seq_len": 0}, {"canvas": 20}, {"num_digits": 0}, {"speed": 1.5}], ids=lambda k: next(iter(k))
)
def test_bad_spec_names_the_field(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MovingMNISTSpec(**kwargs)


def test_bad_digits_are_refused():
    with pytest.raises(ValueError, match=r"digits must be uint8 \(K, 28, 28\)"):
        generate(np.zeros((3, 32, 32), np.uint8), 2, seed=0)
