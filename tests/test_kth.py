"""KTH frame-folder reader on tiny trees written in the real layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from core.data.kth import DEFAULT_STRIDES, KTHDataset, index_kth, load_kth_frame, scan_kth
from core.io import DataError

WIDTH, HEIGHT = 160, 120  # KTH's native frame size


def frame_pixels(number: int, mode: str = "RGB") -> np.ndarray:
    """A frame whose first channel is a gradient shifted by the frame number, so frames and channels are tellable."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    first = (x + 2 * y + 11 * number) % 256
    if mode == "L":
        return first.astype(np.uint8)  # (H, W)
    # Other channels differ from the first, so reading the wrong channel fails the value checks.
    return np.stack([first, 255 - first, (3 * x) % 256], axis=-1).astype(np.uint8)  # (H, W, 3)


def make_clip(
    root: Path,
    action: str,
    person: int,
    numbers: list[int] | range,
    scenario: int = 1,
    ext: str = "png",
    mode: str = "RGB",
    padded: bool = True,
) -> Path:
    """Write one clip folder ``<root>/<action>/person<NN>_<action>_d<K>_uncomp`` with the given frame numbers."""
    folder = root / action / f"person{person:02d}_{action}_d{scenario}_uncomp"
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        name = f"image_{number:04d}.{ext}" if padded else f"image_{number}.{ext}"
        Image.fromarray(frame_pixels(number, mode), mode=mode).save(folder / name)
    return folder


def reference_resize(channel: np.ndarray, size: int) -> np.ndarray:
    """OpenCV INTER_LINEAR written out: half-pixel centres, source coordinate clamped at the borders."""

    def taps(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(out_len) + 0.5) * in_len / out_len - 0.5, 0.0)
        low = np.minimum(np.floor(src).astype(int), in_len - 1)
        high = np.minimum(low + 1, in_len - 1)
        return low, high, src - low

    y0, y1, wy = taps(size, channel.shape[0])
    x0, x1, wx = taps(size, channel.shape[1])
    c = channel.astype(np.float64)
    rows = c[y0] * (1 - wy)[:, None] + c[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def expected_frame(number: int, size: int = 128) -> np.ndarray:
    return reference_resize(frame_pixels(number, "L"), size) / 255.0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Persons 01, 02 (train) and 17 (test); a non-overlapping action, a stride-3 action, RGB and L, png and jpg."""
    root = tmp_path / "kth"
    make_clip(root, "boxing", 1, range(1, 11))  # 10 frames
    make_clip(root, "boxing", 2, range(1, 9), scenario=3, mode="L")  # 8 frames
    make_clip(root, "boxing", 17, range(1, 13))  # 12 frames
    make_clip(root, "jogging", 1, range(1, 11), scenario=2)  # 10 frames
    make_clip(root, "jogging", 17, range(1, 10), ext="jpg")  # 9 frames
    return root


def starts(windows: list, action: str, person: int) -> list[int]:
    return [w.first_frame for w in windows if w.action == action and w.person == person]


def test_split_by_person(tree: Path) -> None:
    train = index_kth(tree, "train", seq_len=4)
    test = index_kth(tree, "test", seq_len=4)
    assert {w.person for w in train} == {1, 2}
    assert {w.person for w in test} == {17}
    assert {w.action for w in train} == {w.action for w in test} == {"boxing", "jogging"}


def test_split_boundaries(tmp_path: Path) -> None:
    root = tmp_path / "kth"
    for person in (1, 16, 17, 25):
        make_clip(root, "handclapping", person, range(1, 5))
    assert [w.person for w in index_kth(root, "train", seq_len=4)] == [1, 16]
    assert [w.person for w in index_kth(root, "test", seq_len=4)] == [17, 25]


def test_window_starts_non_overlapping_and_stride_3(tree: Path) -> None:
    assert DEFAULT_STRIDES["boxing"] is None and DEFAULT_STRIDES["jogging"] == 3
    train = index_kth(tree, "train", seq_len=4)
    assert starts(train, "boxing", 1) == [3, 7]  # 10 frames: 7-10 ends on the last frame, then 3-6; 1-2 left out
    assert starts(train, "boxing", 2) == [1, 5]  # 8 frames exactly
    assert starts(train, "jogging", 1) == [1, 4, 7]  # every 3 frames: 7-10 is the last that fits
    assert len(train) == 7
    test = index_kth(tree, "test", seq_len=4)
    assert starts(test, "boxing", 17) == [1, 5, 9]
    assert starts(test, "jogging", 17) == [3, 6]  # 9 frames: 6-9 ends on the last frame, then 3-6
    window = train[1]
    assert window.frame_files == ("image_0007.png", "image_0008.png", "image_0009.png", "image_0010.png")
    assert window.folder == tree / "boxing" / "person01_boxing_d1_uncomp"
    assert (window.person, window.action, window.scenario) == (1, "boxing", 1)


def release_windows(root: Path, persons: range, seq_len: int) -> list[tuple[str, int]]:
    """The release's walk, written out: every frame of every clip folder in one list, an index walking back from the
    end, a window wherever the ``seq_len`` frames up to it are one folder's consecutive numbers; after a window the
    index steps back by ``seq_len`` (boxing, handclapping, handwaving, walking) or 3 (jogging, running), else by 1.
    Returns (folder name, first frame number) pairs, sorted."""
    names, folders, actions = [], [], []
    for action in ("boxing", "handclapping", "handwaving", "walking", "jogging", "running"):
        for folder in sorted((root / action).glob("person*")) if (root / action).is_dir() else []:
            if int(folder.name[6:8]) in persons:
                for frame in sorted(folder.iterdir()):
                    names.append(int(frame.name[6:10]))
                    folders.append(folder.name)
                    actions.append(action)
    found, index = [], len(names) - 1
    while index >= seq_len - 1:
        first = index - seq_len + 1
        if folders[index] == folders[first] and names[index] - names[first] == seq_len - 1:
            found.append((folders[first], names[first]))
            index -= seq_len - 1 if actions[index] not in ("jogging", "running") else 2
        index -= 1
    return sorted(found)


@pytest.mark.parametrize("seq_len", [4, 7, 20])
def test_windows_sit_where_the_release_puts_them(tmp_path: Path, seq_len: int) -> None:
    """A tree with known frame numbers (gaps, clips shorter and longer than a window): the same windows, frame by
    frame, as the release's walk back from each clip's last frame."""
    root = tmp_path / "kth"
    make_clip(root, "boxing", 3, range(1, 66), mode="L")  # 65 frames: at 20, windows 46-65, 26-45, 6-25
    make_clip(root, "walking", 3, [*range(1, 30), *range(33, 51)], mode="L")  # a gap after frame 29
    make_clip(root, "jogging", 4, range(5, 41), mode="L")  # numbering starts at 5
    make_clip(root, "running", 4, range(1, 9), scenario=2, mode="L")  # shorter than most windows
    make_clip(root, "handclapping", 18, range(1, 31), mode="L")  # a test person
    windows = index_kth(root, "train", seq_len=seq_len)
    assert sorted((w.folder.name, w.first_frame) for w in windows) == release_windows(root, range(1, 17), seq_len)
    for window in windows:
        numbers = [int(name[6:10]) for name in window.frame_files]
        assert numbers == list(range(window.first_frame, window.first_frame + seq_len))
    if seq_len == 20:
        assert starts(windows, "boxing", 3) == [6, 26, 46]
        assert starts(windows, "walking", 3) == [10]  # run 1-29 ends on 29; run 33-50 is too short
        assert starts(windows, "jogging", 4) == [6, 9, 12, 15, 18, 21]  # every 3 back from 21-40
        assert starts(windows, "running", 4) == []
        assert starts(index_kth(root, "test", seq_len=20), "handclapping", 18) == [11]


def test_persons_pick_part_of_a_split(tree: Path) -> None:
    assert {w.person for w in index_kth(tree, "train", seq_len=4, persons=[2])} == {2}
    assert len(KTHDataset(tree, "train", seq_len=4, persons=[1])) == 5
    with pytest.raises(ValueError, match=r"persons \[17\] are not train persons"):
        index_kth(tree, "train", seq_len=4, persons=[1, 17])


def test_strides_override(tree: Path) -> None:
    train = index_kth(tree, "train", seq_len=4, strides={"boxing": 2, "jogging": None})
    assert starts(train, "boxing", 1) == [1, 3, 5, 7]
    assert starts(train, "jogging", 1) == [3, 7]
    with pytest.raises(ValueError, match="dancing"):
        index_kth(tree, "train", seq_len=4, strides={"dancing": 2})
    with pytest.raises(ValueError, match="positive"):
        index_kth(tree, "train", seq_len=4, strides={"boxing": 0})


def test_gap_breaks_windows(tmp_path: Path) -> None:
    root = tmp_path / "kth"
    make_clip(root, "walking", 3, [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12])  # frame 6 missing
    make_clip(root, "running", 3, [*range(1, 7), *range(8, 15)])  # frame 7 missing
    windows = index_kth(root, "train", seq_len=4)
    assert starts(windows, "walking", 3) == [2, 9]  # run 1-5 ends on 5, run 7-12 on 12; 5-8 would span the gap
    assert starts(windows, "running", 3) == [3, 8, 11]  # run 1-6: 3-6 only; run 8-14: 11-14 and 8-11
    for window in windows:
        numbers = [int(name[6:10]) for name in window.frame_files]
        assert numbers == list(range(window.first_frame, window.first_frame + 4))


def test_frames_sorted_by_number_not_string(tmp_path: Path) -> None:
    root = tmp_path / "kth"
    make_clip(root, "handwaving", 5, range(1, 13), padded=False)  # image_1 ... image_12
    windows = index_kth(root, "train", seq_len=4)
    assert [w.frame_files for w in windows] == [
        ("image_1.png", "image_2.png", "image_3.png", "image_4.png"),
        ("image_5.png", "image_6.png", "image_7.png", "image_8.png"),
        ("image_9.png", "image_10.png", "image_11.png", "image_12.png"),
    ]
    item = KTHDataset(root, "train", seq_len=4)[2]
    for t, number in enumerate([9, 10, 11, 12]):
        np.testing.assert_allclose(item[t, 0].numpy(), expected_frame(number), atol=1e-5)


def test_item_shape_dtype_and_values(tree: Path) -> None:
    dataset = KTHDataset(tree, "train", seq_len=4)
    assert len(dataset) == 7
    for index in (0, 1, 2):  # person 01 RGB png, then person 02 grayscale png
        item = dataset[index]
        assert item.shape == (4, 1, 128, 128) and item.dtype == torch.float32
        assert item.min() >= 0.0 and item.max() <= 1.0
        first = dataset.windows[index].first_frame
        for t in range(4):
            np.testing.assert_allclose(item[t, 0].numpy(), expected_frame(first + t), atol=1e-5)


def test_image_size_and_constant_frame(tmp_path: Path) -> None:
    path = tmp_path / "image_0001.png"
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), (200, 30, 90), dtype=np.uint8)).save(path)
    frame = load_kth_frame(path, image_size=64)
    assert frame.shape == (1, 64, 64) and frame.dtype == torch.float32
    torch.testing.assert_close(frame, torch.full((1, 64, 64), 200 / 255))
    # Same size in and out: bilinear at scale 1 samples pixel centres exactly, so the frame comes back unchanged.
    square = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 256
    Image.fromarray(square.astype(np.uint8), mode="L").save(path)
    np.testing.assert_allclose(load_kth_frame(path, image_size=64)[0].numpy(), square / 255, atol=1e-6)


def test_jpg_and_mixed_formats_load(tmp_path: Path) -> None:
    root = tmp_path / "kth"
    folder = make_clip(root, "running", 20, range(1, 4), ext="jpg", mode="L")
    make_clip(root, "running", 20, range(4, 7))  # same folder continues in RGB png
    flat = folder / "image_0007.jpg"
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), (180, 40, 220), dtype=np.uint8)).save(flat, quality=95)
    dataset = KTHDataset(root, "test", seq_len=7, image_size=32)
    assert len(dataset) == 1
    item = dataset[0]
    assert item.shape == (7, 1, 32, 32)
    for t, number in enumerate(range(1, 7)):
        # jpg is lossy: allow a few grey levels on average, exact for png.
        tolerance = 1e-5 if t >= 3 else 4 / 255
        error = np.abs(item[t, 0].numpy() - expected_frame(number, 32)).mean()
        assert error <= tolerance, (number, error)
    assert abs(item[6].mean().item() - 180 / 255) < 3 / 255


def test_dataloader_batches_with_workers(tree: Path) -> None:
    dataset = KTHDataset(tree, "train", seq_len=4)
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(clone) == len(dataset)
    loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=2)
    batches = list(loader)
    assert [tuple(b.shape) for b in batches] == [(2, 4, 1, 128, 128)] * 3 + [(1, 4, 1, 128, 128)]
    torch.testing.assert_close(batches[1][0], dataset[2])


def test_hidden_files_and_loose_files_ignored(tree: Path) -> None:
    (tree / ".DS_Store").write_bytes(b"\0")
    (tree / "boxing" / ".DS_Store").write_bytes(b"\0")
    (tree / "boxing" / "person01_boxing_d1_uncomp.avi").write_bytes(b"\0")
    (tree / "boxing" / "person01_boxing_d1_uncomp" / ".DS_Store").write_bytes(b"\0")
    (tree / "boxing" / "person01_boxing_d1_uncomp" / "._image_0001.png").write_bytes(b"\0")
    assert len(index_kth(tree, "train", seq_len=4)) == 7


# ---- errors: each must name the path at fault ----


def test_root_missing_or_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as info:
        KTHDataset(missing, "train")
    assert str(missing) in str(info.value)
    a_file = tmp_path / "kth.tar"
    a_file.write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder") as info:
        index_kth(a_file, "train")
    assert str(a_file) in str(info.value)


def test_empty_tree(tmp_path: Path) -> None:
    root = tmp_path / "kth"
    root.mkdir()
    (root / "README").write_text("frames go here")
    with pytest.raises(DataError, match="no action folders") as info:
        scan_kth(root)
    assert str(root) in str(info.value) and "person<NN>_<action>_d<K>_uncomp/image_<NNNN>" in str(info.value)
    (root / "boxing" / "person01_boxing_d1_uncomp").mkdir(parents=True)
    (root / "walking").mkdir()
    with pytest.raises(DataError, match="no frames found") as info:
        scan_kth(root)
    assert str(root) in str(info.value) and "<root>/<action>/" in str(info.value)


@pytest.mark.parametrize(
    ("folder_name", "message"),
    [
        ("p01_boxing", "does not match"),
        ("person1_boxing_d1_uncomp", "does not match"),
        ("person01_boxing_d1", "does not match"),
        ("person01_walking_d1_uncomp", "'walking' but sits in the 'boxing'"),
        ("person00_boxing_d1_uncomp", "out of range"),
        ("person26_boxing_d1_uncomp", "out of range"),
    ],
)
def test_bad_clip_folder(tree: Path, folder_name: str, message: str) -> None:
    bad = tree / "boxing" / folder_name
    bad.mkdir()
    with pytest.raises(DataError, match=message) as info:
        index_kth(tree, "train", seq_len=4)
    assert str(bad) in str(info.value)


def test_unknown_action_folder(tree: Path) -> None:
    bad = tree / "dancing"
    bad.mkdir()
    with pytest.raises(DataError, match="unknown action folder") as info:
        index_kth(tree, "test", seq_len=4)
    assert str(bad) in str(info.value) and "handclapping" in str(info.value)


@pytest.mark.parametrize("name", ["image_0011.bmp", "notes.txt", "image_x.png", "frame_0011.png", "subfolder"])
def test_unexpected_entry_in_clip_folder(tree: Path, name: str) -> None:
    bad = tree / "jogging" / "person17_jogging_d1_uncomp" / name
    if name == "subfolder":
        bad.mkdir()
    else:
        bad.write_bytes(b"x")
    with pytest.raises(DataError, match="unexpected entry") as info:
        index_kth(tree, "train", seq_len=4)  # the whole tree is checked, not only the requested split
    assert str(bad) in str(info.value)


def test_duplicate_frame_number(tree: Path) -> None:
    folder = tree / "boxing" / "person02_boxing_d3_uncomp"
    Image.fromarray(frame_pixels(3)).save(folder / "image_0003.jpg")
    with pytest.raises(DataError, match="frame number 3 appears twice") as info:
        index_kth(tree, "train", seq_len=4)
    assert str(folder) in str(info.value)


def test_split_without_windows(tree: Path) -> None:
    with pytest.raises(DataError, match="no train windows of seq_len=11") as info:
        KTHDataset(tree, "train", seq_len=11)
    text = str(info.value)
    assert str(tree) in text and "found 3 clip folders" in text and "longest contiguous run 10 frames" in text
    assert len(index_kth(tree, "test", seq_len=11)) == 1  # person 17 boxing has 12 frames


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_corrupt_image_named_at_load(tree: Path, content: bytes | str) -> None:
    path = tree / "boxing" / "person01_boxing_d1_uncomp" / "image_0008.png"  # in window 1 (frames 7-10), not 0 (3-6)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    dataset = KTHDataset(tree, "train", seq_len=4)  # indexing reads no pixels, so it still succeeds
    dataset[0]
    with pytest.raises(DataError, match="cannot read image") as info:
        dataset[1]
    assert str(path) in str(info.value)


def test_bad_arguments(tree: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        index_kth(tree, "val", seq_len=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seq_len"):
        index_kth(tree, "train", seq_len=0)
    with pytest.raises(ValueError, match="image_size"):
        KTHDataset(tree, "train", seq_len=4, image_size=0)


def _kth_data(root: Path, *overrides: str):
    from core.config import load
    from core.data.sources import build_data

    cfg = load(None, ["--data.dataset=kth", f"--data.root={root}", "--data.total_frames=4", "--data.context_frames=2",
                      "--data.image_size=16", *overrides])  # fmt: skip
    return build_data(cfg.data, batch_size=2, seed=0)


def _persons(dataset) -> list[int]:
    windows = dataset.dataset.windows if hasattr(dataset, "dataset") else dataset.windows
    indices = dataset.indices if hasattr(dataset, "indices") else range(len(windows))
    return sorted({windows[i].person for i in indices})


def test_validation_is_held_out_training_persons_never_test_persons(tmp_path: Path) -> None:
    root = tmp_path / "kth"
    for person in (1, 2, 3, 17, 18):
        make_clip(root, "boxing", person, range(1, 13), mode="L")  # 3 windows of 4 each
        make_clip(root, "jogging", person, range(1, 9), mode="L")  # 2 windows of 4 (ends 8, 5)
    data = _kth_data(root, "--data.val_persons=2,3")
    assert _persons(data.train.dataset) == [1] and _persons(data.val) == [2, 3] and _persons(data.test) == [17, 18]
    assert len(data.val) == 2 * 5
    # Cut to val_size, the windows are spread over every person and action, not the first ones (all boxing).
    cut = _kth_data(root, "--data.val_persons=2,3", "--data.val_size=4")
    assert len(cut.val) == 4 and _persons(cut.val) == [2, 3]
    assert {cut.val.dataset.windows[i].action for i in cut.val.indices} == {"boxing", "jogging"}
    # No held-out person: the release's training set, validated on a sample of it.
    release = _kth_data(root, "--data.val_persons=[]", "--data.val_size=3")
    assert _persons(release.train.dataset) == [1, 2, 3] and set(_persons(release.val)) <= {1, 2, 3}
    with pytest.raises(DataError, match=r"data.val_persons=\[16\]"):
        _kth_data(root)  # the default holds out person 16, who is not in this tree
