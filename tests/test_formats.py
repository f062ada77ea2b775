import numpy as np
import pytest

from core.data.formats import SequenceSet, read_release_npz, read_sequences, read_time_major_npy, write_release_npz
from core.io import DataError


def _sequences(num=3, length=6, channels=1, size=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num, length, channels, size, size), dtype=np.uint8)


def test_write_then_read_roundtrip(tmp_path):
    seqs = _sequences()
    write_release_npz(tmp_path / "a.npz", seqs, context_frames=2)
    data = read_release_npz(tmp_path / "a.npz")
    assert data.context_frames == 2 and data.frames.dtype == np.float32
    np.testing.assert_allclose(data.frames, seqs / 255, atol=1e-7)


def test_written_file_has_the_release_layout(tmp_path):
    write_release_npz(tmp_path / "a.npz", _sequences(num=3, length=6), context_frames=2, compress=False)
    with np.load(tmp_path / "a.npz") as archive:
        assert sorted(archive.files) == ["clips", "dims", "input_raw_data"]
        assert archive["input_raw_data"].shape == (18, 1, 8, 8) and archive["input_raw_data"].dtype == np.float32
        np.testing.assert_array_equal(archive["dims"], [[1, 8, 8]])
        np.testing.assert_array_equal(archive["clips"][0], [[0, 2], [6, 2], [12, 2]])
        np.testing.assert_array_equal(archive["clips"][1], [[2, 4], [8, 4], [14, 4]])


def test_three_dimensional_frames_get_a_channel(tmp_path):
    write_release_npz(tmp_path / "a.npz", _sequences()[:, :, 0], context_frames=3)
    assert read_release_npz(tmp_path / "a.npz").frames.shape == (3, 6, 1, 8, 8)


def test_two_files_concatenate(tmp_path):
    a, b = _sequences(seed=1), _sequences(num=2, seed=2)
    write_release_npz(tmp_path / "a.npz", a, 2)
    write_release_npz(tmp_path / "b.npz", b, 2)
    for paths in ([tmp_path / "a.npz", tmp_path / "b.npz"], f"{tmp_path / 'a.npz'},{tmp_path / 'b.npz'}"):
        data = read_release_npz(paths)
        np.testing.assert_allclose(data.frames, np.concatenate([a, b]) / 255, atol=1e-7)


def test_clips_are_followed_not_assumed(tmp_path):
    # Frames stored out of order: the clips decide which frames make each sequence.
    frames = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1) / 12  # frame k has value k/12
    clips = np.array([[[6, 2], [0, 2]], [[8, 3], [2, 3]]])  # seq 0 = frames 6,7 | 8,9,10; seq 1 = 0,1 | 2,3,4
    np.savez(tmp_path / "c.npz", input_raw_data=frames, dims=np.array([[1, 1, 1]]), clips=clips)
    data = read_release_npz(tmp_path / "c.npz")
    np.testing.assert_allclose(data.frames[:, :, 0, 0, 0] * 12, [[6, 7, 8, 9, 10], [0, 1, 2, 3, 4]])


def test_output_raw_data_holds_the_outputs(tmp_path):
    inputs = np.full((4, 1, 2, 2), 0.25, np.float32)
    outputs = np.full((6, 1, 2, 2), 0.75, np.float32)
    clips = np.array([[[0, 2], [2, 2]], [[0, 3], [3, 3]]])
    np.savez(tmp_path / "o.npz", input_raw_data=inputs, output_raw_data=outputs, dims=np.array([[1, 2, 2]]),
             clips=clips)  # fmt: skip
    data = read_release_npz(tmp_path / "o.npz")
    assert data.frames.shape == (2, 5, 1, 2, 2) and data.context_frames == 2
    np.testing.assert_allclose(data.frames[:, :2], 0.25)
    np.testing.assert_allclose(data.frames[:, 2:], 0.75)


def test_truncated_file_names_the_file(tmp_path):
    write_release_npz(tmp_path / "t.npz", _sequences(num=20, size=16), 2)
    raw = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"t\.npz: .*truncated"):
        read_release_npz(tmp_path / "t.npz")


def test_wrong_keys_name_the_key(tmp_path):
    np.savez(tmp_path / "w.npz", frames=np.zeros((4, 1, 2, 2)), dims=np.array([[1, 2, 2]]))
    with pytest.raises(DataError, match=r"w\.npz: missing key 'input_raw_data'; found \['dims', 'frames'\]"):
        read_release_npz(tmp_path / "w.npz")


@pytest.mark.parametrize(
    ("clips", "message"),
    [
        (np.array([[[0, 2]], [[2, 9]]]), r"clips\[1\] point past the 4 frames"),
        (np.array([[[0, 2], [1, 1]], [[2, 2], [3, 1]]]), r"clips hold sequences of different or zero lengths"),
        (np.zeros((2, 2)), r"clips must be \(2, N, 2\)"),
    ],
)
def test_bad_clips_are_named(tmp_path, clips, message):
    np.savez(tmp_path / "b.npz", input_raw_data=np.zeros((4, 1, 2, 2), np.float32), dims=np.array([[1, 2, 2]]),
             clips=clips)  # fmt: skip
    with pytest.raises(DataError, match=r"b\.npz: " + message):
        read_release_npz(tmp_path / "b.npz")


def test_dims_disagreeing_with_frames(tmp_path):
    np.savez(tmp_path / "d.npz", input_raw_data=np.zeros((4, 1, 2, 2), np.float32), dims=np.array([[1, 3, 3]]),
             clips=np.array([[[0, 2]], [[2, 2]]]))  # fmt: skip
    with pytest.raises(DataError, match=r"d\.npz: dims \[\[1, 3, 3\]\] disagree"):
        read_release_npz(tmp_path / "d.npz")


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_values_outside_unit_range(tmp_path, bad):
    frames = np.zeros((4, 1, 2, 2), np.float32)
    frames[3, 0, 1, 1] = bad
    np.savez(
        tmp_path / "v.npz", input_raw_data=frames, dims=np.array([[1, 2, 2]]), clips=np.array([[[0, 2]], [[2, 2]]])
    )
    with pytest.raises(DataError, match=r"v\.npz: frame values must lie in \[0, 1\]"):
        read_release_npz(tmp_path / "v.npz")


def test_writer_never_leaves_half_a_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.npz"
    write_release_npz(target, _sequences(), 2)
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        write_release_npz(target, _sequences(seed=5), 2)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npz"]


def test_writer_checks_shape_and_context(tmp_path):
    with pytest.raises(DataError, match=r"x\.npz: sequences must be"):
        write_release_npz(tmp_path / "x.npz", np.zeros((2, 3, 4)), 1)
    with pytest.raises(DataError, match=r"x\.npz: context_frames=6"):
        write_release_npz(tmp_path / "x.npz", _sequences(), 6)


def test_time_major_npy(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (20, 5, 16, 16), dtype=np.uint8)  # (T, N, H, W)
    np.save(tmp_path / "mnist_test_seq.npy", frames)
    data = read_time_major_npy(tmp_path / "mnist_test_seq.npy")
    assert data.frames.shape == (5, 20, 1, 16, 16) and data.context_frames == 10
    np.testing.assert_array_equal(data.frames[3, 7, 0], frames[7, 3])


def test_time_major_npy_errors(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((20, 5, 16, 16), np.float32))
    with pytest.raises(DataError, match=r"f\.npy: expected uint8 \(T, N, H, W\)"):
        read_time_major_npy(tmp_path / "f.npy")
    (tmp_path / "g.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"g\.npy: truncated or not an \.npy"):
        read_time_major_npy(tmp_path / "g.npy")
    with pytest.raises(DataError, match=r"missing\.npy: no such file"):
        read_time_major_npy(tmp_path / "missing.npy")


def test_read_sequences_dispatches_by_format(tmp_path):
    write_release_npz(tmp_path / "a.npz", _sequences(), 2)
    np.save(tmp_path / "b.npy", np.zeros((6, 3, 8, 8), np.uint8))
    assert read_sequences(tmp_path / "a.npz").context_frames == 2
    assert read_sequences(tmp_path / "a.npz", context_frames=4).context_frames == 4
    assert read_sequences(tmp_path / "b.npy", context_frames=3).frames.shape == (3, 6, 1, 8, 8)
    with pytest.raises(DataError, match=r"c\.h5: unknown sequence format"):
        read_sequences(tmp_path / "c.h5")


def test_a_file_whose_name_lies_about_its_format_says_what_it_holds(tmp_path):
    np.save(tmp_path / "frames.npy", np.zeros((6, 3, 8, 8), np.uint8))
    (tmp_path / "frames.npy").rename(tmp_path / "renamed.npz")
    found = r"holds a single \.npy array \(uint8 \(6, 3, 8, 8\)\), not the release's \.npz archive"
    with pytest.raises(DataError, match=rf"renamed\.npz: {found} .*name it \.npy"):
        read_sequences(tmp_path / "renamed.npz")
    write_release_npz(tmp_path / "release.npz", _sequences(), 2)
    (tmp_path / "release.npz").rename(tmp_path / "renamed.npy")
    found = r"holds an \.npz \(zip\) archive \(keys \['clips', 'dims', 'input_raw_data'\]\), not a single \.npy array"
    with pytest.raises(DataError, match=rf"renamed\.npy: {found} .*name it \.npz"):
        read_sequences(tmp_path / "renamed.npy")
    (tmp_path / "text.npz").write_text("frames,as,text\n")
    with pytest.raises(DataError, match=r"text\.npz: is neither an \.npz \(zip\) archive nor an \.npy array"):
        read_sequences(tmp_path / "text.npz")


def test_sequence_set_checks_rank_and_context():
    with pytest.raises(DataError, match=r"src: sequences must be \(N, T, C, H, W\)"):
        SequenceSet(np.zeros((2, 3, 4, 4)), 1, "src")
    with pytest.raises(DataError, match=r"src: context_frames=3 must lie in \[1, 2\]"):
        SequenceSet(np.zeros((2, 3, 1, 4, 4)), 3, "src")
