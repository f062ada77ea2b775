"""The released file formats of Moving MNIST, read and written without pickle.

Release npz (the E3D-LSTM release's ``moving-mnist-{train,valid,test}.npz``; the original TensorFlow code reads what
``write_release_npz`` writes):

- ``input_raw_data``: float32 ``(frames, C, H, W)`` in [0, 1], every sequence's frames one after another;
- ``dims``: int ``(1, 3)`` = (C, H, W) (a second row, if present, gives the dims of ``output_raw_data``);
- ``clips``: int ``(2, N, 2)``; ``clips[0, i]`` = (start, length) of sequence i's input frames, ``clips[1, i]`` the
  same for its output frames, which index ``output_raw_data`` when the file has one and ``input_raw_data`` otherwise.

The release accepts several files joined by a comma and concatenates them; ``read_release_npz`` takes a list (or the
same comma-joined string) and does the same.

``mnist_test_seq.npy`` (Srivastava et al.'s fixed 10,000-sequence test set): uint8 ``(20, 10000, 64, 64)``, time first.

Every reader returns a :class:`SequenceSet` of ``(N, T, C, H, W)`` frames.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.io import DataError, atomic_write

RELEASE_KEYS = ("input_raw_data", "dims", "clips")
NPZ_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first local header, or an empty archive's end record
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class SequenceSet:
    """Fixed video sequences: ``frames`` is ``(N, T, C, H, W)``, uint8 in [0, 255] or float32 in [0, 1]."""

    frames: np.ndarray
    context_frames: int  # leading frames given to the model; the rest are to be predicted
    source: str  # where they came from, for error messages and run records

    def __post_init__(self) -> None:
        if self.frames.ndim != 5:
            raise DataError(f"{self.source}: sequences must be (N, T, C, H, W), got shape {self.frames.shape}")
        if not 0 < self.context_frames < self.frames.shape[1]:
            raise DataError(
                f"{self.source}: context_frames={self.context_frames} must lie in [1, {self.frames.shape[1] - 1}] "
                f"for sequences of {self.frames.shape[1]} frames"
            )

    def __len__(self) -> int:
        return len(self.frames)


def file_kind(path: str | Path) -> str:
    """What a file holds by its first bytes, whatever its name says: ``"npz"`` (a zip archive), ``"npy"`` (one numpy
    array) or ``"other"``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(NPY_MAGIC))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if head.startswith(NPZ_MAGICS):
        return "npz"
    return "npy" if head == NPY_MAGIC else "other"


def found_in(path: str | Path) -> str:
    """What a file holds, in words (``holds a single .npy array (uint8 (20, 5, 64, 64))``...), for an error saying it
    is not what its name or its reader expected."""
    kind = file_kind(path)
    if kind == "npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, EOFError, ValueError):
            return "holds a single .npy array (whose header cannot be read)"
        return f"holds a single .npy array ({array.dtype} {array.shape})"
    if kind == "npz":
        try:
            with zipfile.ZipFile(path) as archive:
                keys = sorted(name.removesuffix(".npy") for name in archive.namelist())
        except (OSError, zipfile.BadZipFile):
            return "holds an .npz (zip) archive (whose index cannot be read)"
        return f"holds an .npz (zip) archive (keys {keys})"
    with open(path, "rb") as handle:
        head = handle.read(8)
    return f"is neither an .npz (zip) archive nor an .npy array (it starts with {head!r})"


def open_npz(path: str | Path, expected: str = "an .npz archive") -> np.lib.npyio.NpzFile:
    """Open an .npz archive without pickle; a file that holds something else is a DataError naming it, saying what it
    holds and what was ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if file_kind(path) != "npz":
        raise DataError(f"{path}: {found_in(path)}, not {expected}")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: truncated or not an npz file ({exc})") from exc


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    expected = (
        f"the release's .npz archive (keys {', '.join(RELEASE_KEYS)}); if it holds time-major (T, N, H, W) frames, "
        "name it .npy"
    )
    return open_npz(path, expected)


def _member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    if key not in archive.files:
        raise DataError(f"{path}: missing key {key!r}; found {sorted(archive.files)} (expected {list(RELEASE_KEYS)})")
    try:
        return archive[key]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: key {key!r} is truncated or unreadable ({exc})") from exc


def _read_one_release_npz(path: Path) -> tuple[np.ndarray, int]:
    """One release npz -> (float32 (N, T, C, H, W), input length)."""
    with _open_npz(path) as archive:
        inputs = _member(archive, "input_raw_data", path)
        dims = _member(archive, "dims", path)
        clips = _member(archive, "clips", path)
        outputs = _member(archive, "output_raw_data", path) if "output_raw_data" in archive.files else inputs
    for key, array in (("input_raw_data", inputs), ("output_raw_data", outputs)):
        if array.ndim != 4:
            raise DataError(f"{path}: {key} must be (frames, C, H, W), got shape {array.shape}")
    if dims.ndim != 2 or dims.shape[1] != 3 or tuple(dims[0]) != inputs.shape[1:]:
        raise DataError(f"{path}: dims {dims.tolist()} disagree with input_raw_data frames of shape {inputs.shape[1:]}")
    if outputs.shape[1:] != inputs.shape[1:]:
        raise DataError(
            f"{path}: output_raw_data frames {outputs.shape[1:]} differ from input frames {inputs.shape[1:]}"
        )
    if clips.ndim != 3 or clips.shape[0] != 2 or clips.shape[2] != 2 or clips.shape[1] == 0:
        raise DataError(f"{path}: clips must be (2, N, 2) with N >= 1, got shape {clips.shape}")
    input_len, output_len = int(clips[0, 0, 1]), int(clips[1, 0, 1])
    if (clips[0, :, 1] != input_len).any() or (clips[1, :, 1] != output_len).any() or input_len < 1:
        raise DataError(f"{path}: clips hold sequences of different or zero lengths; all must match the first")
    for half, source, name in ((0, inputs, "input_raw_data"), (1, outputs, "input/output_raw_data")):
        starts = clips[half, :, 0]
        if starts.min() < 0 or starts.max() + clips[half, 0, 1] > len(source):
            raise DataError(f"{path}: clips[{half}] point past the {len(source)} frames of {name}")
    # Gather each clip's frames: (N, len) frame indices -> (N, len, C, H, W).
    take_in = clips[0, :, :1] + np.arange(input_len)
    take_out = clips[1, :, :1] + np.arange(output_len)
    frames = np.concatenate([inputs[take_in], outputs[take_out]], axis=1).astype(np.float32, copy=False)
    low, high = float(frames.min()), float(frames.max())
    if not (0 <= low and high <= 1):  # also catches NaN, for which both comparisons fail
        raise DataError(f"{path}: frame values must lie in [0, 1], found min {low} and max {high}")
    return frames, input_len


def read_release_npz(paths: str | Path | list[str | Path]) -> SequenceSet:
    """Read one or several release npz files (a list, or one comma-joined string) into one SequenceSet."""
    if isinstance(paths, str) and "," in paths:
        paths = paths.split(",")
    paths = [Path(p) for p in (paths if isinstance(paths, list | tuple) else [paths])]
    parts = [_read_one_release_npz(path) for path in paths]
    shapes = {frames.shape[1:] for frames, _ in parts}
    lengths = {input_len for _, input_len in parts}
    if len(shapes) > 1 or len(lengths) > 1:
        raise DataError(f"{', '.join(map(str, paths))}: files hold sequences of different shapes {shapes} or lengths")
    frames = parts[0][0] if len(parts) == 1 else np.concatenate([frames for frames, _ in parts])
    return SequenceSet(frames, lengths.pop(), ",".join(map(str, paths)))


def write_release_npz(path: str | Path, sequences: np.ndarray, context_frames: int, compress: bool = True) -> None:
    """Write ``(N, T, C, H, W)`` or ``(N, T, H, W)`` sequences (uint8, or float in [0, 1]) in the release's npz format.

    The file is written under a temporary name and renamed, so it is never seen half-written.
    """
    path = Path(path)
    if sequences.ndim == 4:
        sequences = sequences[:, :, None]  # (N, T, H, W) -> (N, T, 1, H, W)
    if sequences.ndim != 5:
        raise DataError(f"{path}: sequences must be (N, T, C, H, W) or (N, T, H, W), got shape {sequences.shape}")
    num, length = sequences.shape[:2]
    if not 0 < context_frames < length:
        raise DataError(f"{path}: context_frames={context_frames} must lie in [1, {length - 1}]")
    frames = sequences.reshape(num * length, *sequences.shape[2:])  # (N, T, C, H, W) -> (N*T, C, H, W)
    frames = frames.astype(np.float32) / 255 if frames.dtype == np.uint8 else frames.astype(np.float32)
    starts = np.arange(num) * length
    clips = np.stack(
        [
            np.stack([starts, np.full(num, context_frames)], axis=1),
            np.stack([starts + context_frames, np.full(num, length - context_frames)], axis=1),
        ]
    ).astype(np.int32)  # (2, N, 2)
    dims = np.array([frames.shape[1:]], dtype=np.int32)  # (1, 3)
    save = np.savez_compressed if compress else np.savez
    with atomic_write(path) as handle:
        save(handle, input_raw_data=frames, dims=dims, clips=clips)


def read_time_major_npy(path: str | Path, context_frames: int = 10) -> SequenceSet:
    """Read ``mnist_test_seq.npy``-style uint8 ``(T, N, H, W)`` frames as ``(N, T, 1, H, W)`` (memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if file_kind(path) != "npy":
        raise DataError(
            f"{path}: {found_in(path)}, not a single .npy array of time-major (T, N, H, W) frames; if it is a "
            "release file, name it .npz"
        )
    try:
        frames = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: truncated or not an .npy file ({exc})") from exc
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 (T, N, H, W) frames, got {frames.dtype} {frames.shape}")
    return SequenceSet(frames.transpose(1, 0, 2, 3)[:, :, None], context_frames, str(path))  # -> (N, T, 1, H, W)


def read_sequences(path: str | Path, context_frames: int | None = None) -> SequenceSet:
    """Open fixed sequences by their format: a release ``.npz`` (or comma-joined list) or a time-major ``.npy``."""
    text = str(path)
    if text.endswith(".npz") or ("," in text and all(p.endswith(".npz") for p in text.split(","))):
        data = read_release_npz(text)
        if context_frames is not None and context_frames != data.context_frames:
            data = SequenceSet(data.frames, context_frames, data.source)
        return data
    if text.endswith(".npy"):
        return read_time_major_npy(path, 10 if context_frames is None else context_frames)
    raise DataError(f"{path}: unknown sequence format; expected a release .npz or a time-major .npy")
