"""KTH Action stored as frame folders: index the tree into fixed-length windows, load them lazily as tensors.

Layout (one folder per recorded clip, frames numbered inside it)::

    <root>/<action>/person<NN>_<action>_d<K>_uncomp/image_<NNNN>.png|jpg

Persons 01-16 form the train split and 17-25 the test split. A window is ``seq_len`` frames with consecutive frame
numbers inside one folder; a gap in the numbering ends a run and no window crosses it. Windows sit where the release
puts them: it walks back from each clip's last frame, so the last window ends on the last frame, and the others end
``stride`` frames apart before it (``seq_len`` for boxing, handclapping, handwaving and walking; 3 for jogging and
running). Frames before the first window that fits are left out. Each frame is read with PIL,
reduced to its first channel, resized bilinearly to ``image_size`` x ``image_size`` and divided by 255.

Indexing only lists folders and parses names; pixels are read per item in ``KTHDataset.__getitem__``, because the full
dataset is several GB.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from core.io import DataError

KTH_ACTIONS: tuple[str, ...] = ("boxing", "handclapping", "handwaving", "walking", "jogging", "running")
"""The six action folders a KTH root may hold."""

TRAIN_PERSONS = range(1, 17)
"""Persons 01-16: the train split."""
TEST_PERSONS = range(17, 26)
"""Persons 17-25: the test split."""

DEFAULT_STRIDES: Mapping[str, int | None] = MappingProxyType(
    {
        # None means "seq_len": windows tile the run without overlap.
        "boxing": None,
        "handclapping": None,
        "handwaving": None,
        "walking": None,
        # Jogging and running clips are short (the person crosses the frame quickly), so a window ends every 3 frames
        # to get enough training windows out of them, as in the PredRNN / E3D-LSTM KTH protocol.
        "jogging": 3,
        "running": 3,
    }
)
"""Frames between the ends of consecutive windows, per action; None = non-overlapping (stride ``seq_len``)."""

EXPECTED_LAYOUT = "<root>/<action>/person<NN>_<action>_d<K>_uncomp/image_<NNNN>.png|jpg"

_SEQUENCE_DIR = re.compile(r"person(\d{2})_([a-z]+)_d(\d+)_uncomp")
# Any number of digits, so unpadded names (image_9, image_10) are accepted and sorted by number.
_FRAME_FILE = re.compile(r"image_(\d+)\.(?:png|jpg)", re.IGNORECASE)


@dataclass(frozen=True)
class KTHSequence:
    """One clip folder as found on disk: its frames sorted by frame number, no pixels read."""

    folder: Path
    person: int
    action: str
    scenario: int
    frame_numbers: tuple[int, ...]
    frame_files: tuple[str, ...]

    def runs(self) -> list[tuple[int, int]]:
        """Contiguous runs as ``(index of first frame, length)`` into ``frame_files``; a numbering gap starts a run."""
        runs: list[tuple[int, int]] = []
        start = 0
        for i in range(1, len(self.frame_numbers) + 1):
            if i == len(self.frame_numbers) or self.frame_numbers[i] != self.frame_numbers[i - 1] + 1:
                runs.append((start, i - start))
                start = i
        return runs


@dataclass(frozen=True)
class KTHWindow:
    """One item of the dataset: ``len(frame_files)`` consecutive frames of one folder, no pixels read."""

    folder: Path
    frame_files: tuple[str, ...]
    person: int
    action: str
    scenario: int
    first_frame: int
    """Frame number (from the file name) of the window's first frame."""

    @property
    def paths(self) -> list[Path]:
        """Full paths of the window's frames, in time order."""
        return [self.folder / name for name in self.frame_files]


def resolve_strides(strides: Mapping[str, int | None] | None, seq_len: int) -> dict[str, int]:
    """Merge ``strides`` over ``DEFAULT_STRIDES``, None becoming ``seq_len``; unknown actions or bad values raise."""
    merged = dict(DEFAULT_STRIDES)
    for action, stride in (strides or {}).items():
        if action not in KTH_ACTIONS:
            raise ValueError(f"strides: unknown action {action!r}; expected some of {', '.join(KTH_ACTIONS)}")
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1):
            raise ValueError(f"strides[{action!r}] = {stride!r}; expected a positive int, or None for seq_len")
        merged[action] = stride
    return {action: seq_len if stride is None else stride for action, stride in merged.items()}


def _visible_entries(folder: Path) -> list[os.DirEntry]:
    """Entries of ``folder`` sorted by name, without hidden ones (.DS_Store, ._* files, .git)."""
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _scan_sequence(folder: Path, action: str) -> KTHSequence:
    """Parse one clip folder's name and its frame file names."""
    match = _SEQUENCE_DIR.fullmatch(folder.name)
    if match is None:
        raise DataError(
            f"{folder}: folder name does not match person<NN>_<action>_d<K>_uncomp (e.g. person01_{action}_d1_uncomp)"
        )
    person, name_action, scenario = int(match[1]), match[2], int(match[3])
    if name_action != action:
        raise DataError(f"{folder}: folder names action {name_action!r} but sits in the {action!r} folder")
    if person not in TRAIN_PERSONS and person not in TEST_PERSONS:
        raise DataError(f"{folder}: person id {person:02d} is out of range; KTH persons are 01-25")

    numbered: dict[int, str] = {}
    for entry in _visible_entries(folder):
        frame = _FRAME_FILE.fullmatch(entry.name)
        if frame is None or not entry.is_file():
            raise DataError(
                f"{folder / entry.name}: unexpected entry in a sequence folder; expected image_<NNNN>.png|jpg files"
            )
        number = int(frame[1])
        if number in numbered:
            # e.g. image_0007.png beside image_0007.jpg, or image_7.png beside image_0007.png: which one is frame 7?
            raise DataError(f"{folder}: frame number {number} appears twice ({numbered[number]}, {entry.name})")
        numbered[number] = entry.name
    order = sorted(numbered)  # by number, so image_10 comes after image_9 whatever the padding
    return KTHSequence(
        folder=folder,
        person=person,
        action=action,
        scenario=scenario,
        frame_numbers=tuple(order),
        frame_files=tuple(numbered[n] for n in order),
    )


def scan_kth(root: str | os.PathLike) -> list[KTHSequence]:
    """Walk a KTH root once and return every clip folder (both splits), sorted by action then folder name.

    Only names are read. Plain files directly under the root or under an action folder (archives, READMEs, the
    original .avi files) are ignored; every sub-folder must be a known action / a well-named clip folder.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: KTH root does not exist; expected layout {EXPECTED_LAYOUT}")
    if not root.is_dir():
        raise DataError(f"{root}: KTH root is not a folder; expected layout {EXPECTED_LAYOUT}")

    action_dirs = [e for e in _visible_entries(root) if e.is_dir()]
    for entry in action_dirs:
        if entry.name not in KTH_ACTIONS:
            raise DataError(f"{root / entry.name}: unknown action folder; expected one of {', '.join(KTH_ACTIONS)}")
    if not action_dirs:
        raise DataError(
            f"{root}: no action folders found; expected layout {EXPECTED_LAYOUT} "
            f"with <action> one of {', '.join(KTH_ACTIONS)}"
        )

    sequences = [
        _scan_sequence(root / action_dir.name / entry.name, action_dir.name)
        for action_dir in action_dirs
        for entry in _visible_entries(root / action_dir.name)
        if entry.is_dir()
    ]
    if not any(seq.frame_files for seq in sequences):
        raise DataError(
            f"{root}: no frames found ({len(sequences)} clip folders, all empty or none); "
            f"expected layout {EXPECTED_LAYOUT}"
        )
    return sequences


def index_kth(
    root: str | os.PathLike,
    split: Literal["train", "test"],
    seq_len: int = 30,
    strides: Mapping[str, int | None] | None = None,
    persons: Collection[int] | None = None,
) -> list[KTHWindow]:
    """Return the windows of ``seq_len`` consecutive frames for one split, in folder order then time order.

    Within each contiguous run of a folder, windows end at the run's last frame and every ``s`` frames before it
    while they fit, with ``s`` the action's stride (``DEFAULT_STRIDES`` updated by ``strides``): the release's
    placement. ``persons`` keeps only those persons of the split (e.g. the training persons held out for validation).
    Raises DataError when the split has no window.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    stride_of = resolve_strides(strides, seq_len)
    split_persons = TRAIN_PERSONS if split == "train" else TEST_PERSONS
    if persons is not None and not set(persons) <= set(split_persons):
        raise ValueError(f"persons {sorted(set(persons) - set(split_persons))} are not {split} persons")
    wanted = set(split_persons if persons is None else persons)

    sequences = [seq for seq in scan_kth(root) if seq.person in wanted]
    windows: list[KTHWindow] = []
    for seq in sequences:
        stride = stride_of[seq.action]
        for run_start, run_len in seq.runs():
            last_first = run_start + run_len - seq_len  # the window that ends on the run's last frame
            for first in reversed(range(last_first, run_start - 1, -stride)):
                windows.append(
                    KTHWindow(
                        folder=seq.folder,
                        frame_files=seq.frame_files[first : first + seq_len],
                        person=seq.person,
                        action=seq.action,
                        scenario=seq.scenario,
                        first_frame=seq.frame_numbers[first],
                    )
                )
    if not windows:
        longest = max((length for seq in sequences for _, length in seq.runs()), default=0)
        raise DataError(
            f"{root}: no {split} windows of seq_len={seq_len}: found {len(sequences)} clip folders of persons "
            f"{', '.join(f'{p:02d}' for p in sorted(wanted))}, longest contiguous run {longest} frames"
        )
    return windows


def load_kth_frame(path: str | os.PathLike, image_size: int = 128) -> torch.Tensor:
    """Read one frame as float32 ``(1, image_size, image_size)`` in [0, 1]: first channel, bilinear resize, /255.

    The resize is ``interpolate(bilinear, align_corners=False, antialias=False)``, which samples like OpenCV's
    INTER_LINEAR. The result is not rounded back to 8 bits as ``cv2.resize`` on a uint8 image would be (so values
    differ from that pipeline by at most half a grey level).
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                # Palette indices are not intensities; expand to the colours they stand for first.
                image = image.convert("RGB")
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                raise DataError(f"{path}: image mode {image.mode!r}; expected 8-bit grayscale or RGB")
            channel = np.asarray(image.getchannel(0), dtype=np.float32)  # (H, W), 0..255
    except DataError:
        raise
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read image ({err}); expected a readable png or jpg frame") from err
    pixels = torch.from_numpy(channel)[None, None]  # (H, W) -> (1, 1, H, W): interpolate wants batch and channel dims
    resized = F.interpolate(
        pixels, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False
    )
    return resized[0] / 255.0  # (1, 1, S, S) -> (1, S, S)


class KTHDataset(Dataset):
    """KTH windows as float32 tensors ``(seq_len, 1, image_size, image_size)`` in [0, 1], read lazily per item.

    The tree is indexed once at construction (names only). Items hold no open files, so the dataset pickles into
    DataLoader workers; a DataLoader batch is ``(B, seq_len, 1, image_size, image_size)``. The first 10 frames of the
    default 30 are the model's input and the last 20 its target; splitting them is the caller's job.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: Literal["train", "test"],
        seq_len: int = 30,
        image_size: int = 128,
        strides: Mapping[str, int | None] | None = None,
        persons: Collection[int] | None = None,
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.root = Path(root)
        self.split = split
        self.seq_len = seq_len
        self.image_size = image_size
        self.windows = index_kth(self.root, split, seq_len=seq_len, strides=strides, persons=persons)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Load window ``index`` as ``(seq_len, 1, image_size, image_size)`` float32."""
        frames = [load_kth_frame(path, self.image_size) for path in self.windows[index].paths]
        return torch.stack(frames)  # T x (1, S, S) -> (T, 1, S, S)
