"""The E3D-LSTM release's TensorFlow checkpoints, read without TensorFlow and mapped onto our model.

Reading (:func:`read_checkpoint`): TensorFlow's checkpoint V2 is a prefix ``P`` naming two kinds of file. ``P.index``
is an SSTable (LevelDB's table format: blocks of prefix-compressed key/value entries, each block followed by a
compression byte and a masked CRC32C, a 48-byte footer ending in a magic number); its empty key holds a
``BundleHeaderProto`` (shard count, endianness) and every other key is a variable's name holding a
``BundleEntryProto`` (dtype, shape, shard, offset, size, masked CRC32C). ``P.data-SSSSS-of-NNNNN`` holds the raw
tensors, little-endian, row-major. Everything is checked (magic, block checksums, tensor checksums, sizes); anything
else (V1 checkpoints, compressed blocks, sliced or string tensors, big-endian bundles) is refused with an error
naming the file.

Mapping (:func:`release_state`): the release builds every variable under ``generator/e3d-lstm/``. In layer ``l``'s
scope ``e3d<l>``, ``conv3d``, ``conv3d_1`` ... ``conv3d_5`` are the cell's convolutions in the order its ``__call__``
makes them (H, X, M, C' for the gate, M' for the gate, the 1x1 over [C', M']), and ``hidden``, ``inputs``,
``self_attn``, ``global_memory`` hold the layer norms' ``gamma``/``beta``; the top-level ``conv3d`` is the decoder.
Its own Adam (``model_factory.adam_updates``) passes the name as ``tf.Variable``'s second positional argument, which
is ``trainable``, so the slots are saved as ``Variable`` (the update count plus one), then ``Variable_<2j+1>`` (the
second moment) and ``Variable_<2j+2>`` (the first moment) of the j-th trainable weight in creation order. Its
``ExponentialMovingAverage`` shadows (``<weight>/ExponentialMovingAverage``, which its own test never reads) map onto
the same weights as an alternative set.

Kernels are TensorFlow's channels-last ``(kt, k, k, in, out)``, ours ``(out, in, kt, k, k)``. With C > 1 frame
channels the release folds a patch pixel q = (h % p)*p + w % p of channel c into channel ``q*C + c``, ours into
``c*p*p + q``: the first layer's input channels and the decoder's outputs are reordered.

The release's Adam divides by ``sqrt(v_hat + 1e-8)`` where torch's divides by ``sqrt(v_hat) + eps``; the moments and
the step carry over exactly, the epsilon's place is torch's (one torch step from a fixture lands within 1e-6 of the
release's formula; tests/fixtures/release_e3d/README.md). Its gradients are those of its summed loss
``sum(e^2)/2 + sum|e|`` over the batch, not divided by it; our loss is a mean, so :func:`import_release` rescales the
moments into our loss's gradient units (:func:`moment_scale`), without which a restored Adam would take steps about
a million times too small until its moments forgot the release's.

Importing (:func:`import_release`): the release's checkpoint as a checkpoint of ours, for ``train.init_from`` (a path
ending in ``.ckpt-N``) or ``launch.py import-release``.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from core.checkpoints import CHECKPOINT_FORMAT
from core.config import RELEASE_L1_WEIGHT, Config, to_dict
from core.io import CheckpointError
from core.models import build_model


class ReleaseCheckpointError(CheckpointError):
    """A TensorFlow checkpoint this module cannot read or cannot map onto the model; the message names the file."""


# ---------------------------------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), as TensorFlow's table and bundle checksums use it, masked as LevelDB masks stored CRCs.

_CRC_TABLE = np.zeros(256, dtype=np.uint32)
for _byte in range(256):
    _value = _byte
    for _ in range(8):
        _value = (_value >> 1) ^ 0x82F63B78 if _value & 1 else _value >> 1
    _CRC_TABLE[_byte] = _value
_CRC_LIST = [int(v) for v in _CRC_TABLE]
_LANES = 4096  # long buffers are cut into this many chunks whose CRCs numpy computes side by side


def _crc_update(state: int, data: bytes) -> int:
    """The raw (no initial or final inversion) reflected CRC32C register after feeding ``data``."""
    table = _CRC_LIST
    for byte in data:
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


def _zeros_operator(length: int) -> list[int]:
    """The register after feeding ``length`` zero bytes is linear in the register before: the images of its 32 bits."""
    states = np.array([1 << bit for bit in range(32)], dtype=np.uint32)
    for _ in range(length):
        states = _CRC_TABLE[states & 0xFF] ^ (states >> 8)
    return [int(s) for s in states]


def _apply(operator: list[int], state: int) -> int:
    result, bit = 0, 0
    while state:
        if state & 1:
            result ^= operator[bit]
        state >>= 1
        bit += 1
    return result


def crc32c(data: bytes) -> int:
    """CRC32C of ``data``. Buffers past 64 KiB are fed as 4096 chunks at once (numpy, one step per byte of a chunk)
    and combined: the register is affine in its start, ``f(s, chunk) = f(0, chunk) ^ Z(s)`` with Z linear."""
    if len(data) < 1 << 16:
        return _crc_update(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    chunk = len(data) // _LANES
    lanes = np.frombuffer(data, dtype=np.uint8, count=chunk * _LANES).reshape(_LANES, chunk)  # (lanes, bytes)
    states = np.zeros(_LANES, dtype=np.uint32)
    for column in lanes.T:
        states = _CRC_TABLE[(states ^ column) & 0xFF] ^ (states >> 8)
    operator, state = _zeros_operator(chunk), 0xFFFFFFFF
    for lane_state in states:
        state = _apply(operator, state) ^ int(lane_state)
    return _crc_update(state, data[chunk * _LANES :]) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------------------------------
# Protocol buffers' wire format, the few messages a bundle uses


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ReleaseCheckpointError(f"{where}: truncated or malformed varint")
        byte = buf[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, where: str) -> list[tuple[int, int | bytes]]:
    """A message's (field number, value) pairs: varints and fixed-width values as ints, length-delimited as bytes."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise ReleaseCheckpointError(f"{where}: unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ReleaseCheckpointError(f"{where}: truncated protobuf message")
        fields.append((number, value))
    return fields


# TensorFlow's DataType enum -> the numpy dtype of its little-endian bytes (the numeric types a checkpoint holds)
_DTYPES = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
    6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"), 17: np.dtype("<u2"), 19: np.dtype("<f2"),
    22: np.dtype("<u4"), 23: np.dtype("<u8"),
}  # fmt: skip


@dataclass(frozen=True)
class _Entry:
    dtype: np.dtype
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int | None


def _entry(name: str, buf: bytes, where: str) -> _Entry:
    dtype, shape, shard, offset, size, crc = None, (), 0, 0, 0, None
    for number, value in _fields(buf, where):
        if number == 1:
            if value not in _DTYPES:
                raise ReleaseCheckpointError(f"{where}: variable {name!r} has TensorFlow dtype {value}, not numeric")
            dtype = _DTYPES[value]
        elif number == 2:
            dims = []
            for dim_number, dim in _fields(value, where):
                if dim_number == 2:  # Dim {size = 1; name = 2}
                    dims.append(next((int(v) for n, v in _fields(dim, where) if n == 1), 0))
                elif dim_number == 3 and dim:
                    raise ReleaseCheckpointError(f"{where}: variable {name!r} has an unknown rank")
            shape = tuple(dims)
        elif number == 3:
            shard = value
        elif number == 4:
            offset = value
        elif number == 5:
            size = value
        elif number == 6:
            crc = value
        elif number == 7:
            raise ReleaseCheckpointError(f"{where}: variable {name!r} is saved in slices (partitioned); not supported")
    if dtype is None:
        raise ReleaseCheckpointError(f"{where}: variable {name!r} has no dtype")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        raise ReleaseCheckpointError(f"{where}: variable {name!r} has {size} bytes, its shape {shape} needs {expected}")
    return _Entry(dtype, shape, shard, offset, size, crc)


# ---------------------------------------------------------------------------------------------------------------------
# The SSTable of the .index file

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48  # two block handles padded to 40 bytes, then the 8-byte magic


def _block(data: bytes, handle: bytes, where: str) -> bytes:
    """A block's contents from its handle (offset, size varints), after checking its trailer: 1 byte compression
    type (0: none) and the masked CRC32C of contents plus that byte."""
    offset, pos = _varint(handle, 0, where)
    size, _ = _varint(handle, pos, where)
    if offset + size + 5 > len(data):
        raise ReleaseCheckpointError(f"{where}: a block runs past the end of the file (truncated?)")
    contents, kind = data[offset : offset + size], data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if masked_crc32c(data[offset : offset + size + 1]) != stored:
        raise ReleaseCheckpointError(f"{where}: a block's checksum does not match (damaged file)")
    if kind != 0:
        raise ReleaseCheckpointError(f"{where}: compressed blocks (type {kind}) are not supported")
    return contents


def _block_entries(block: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """A block's (key, value) pairs: each entry is shared, unshared, value length (varints), key suffix, value;
    the block ends with its restart offsets (uint32 each) and their count."""
    if len(block) < 4:
        raise ReleaseCheckpointError(f"{where}: a block is too short")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 * (restarts + 1)
    if end < 0:
        raise ReleaseCheckpointError(f"{where}: a block's restart array is malformed")
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        length, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + length > end:
            raise ReleaseCheckpointError(f"{where}: a block entry is malformed")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def _index_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def checkpoint_prefix(path: str | Path) -> Path:
    """A checkpoint's prefix from the prefix itself, its ``.index`` or one of its ``.data-*`` files."""
    path = Path(path)
    name = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", path.name)
    return path.with_name(name)


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a TensorFlow checkpoint V2 (a prefix, or its ``.index``/``.data-*`` file), by name, as
    numpy arrays of the saved dtype and shape, bit for bit; checksums verified. A ReleaseCheckpointError naming the
    file for anything else."""
    prefix = checkpoint_prefix(path)
    index = _index_path(prefix)
    if not index.is_file():
        hint = " (a TensorFlow V1 checkpoint is one file; only V2, a .index beside .data-* shards, is read)"
        raise ReleaseCheckpointError(f"{index}: no such file{hint if prefix.is_file() else ''}")
    data = index.read_bytes()
    where = str(index)
    if len(data) < _FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise ReleaseCheckpointError(f"{where}: not a TensorFlow checkpoint V2 index (no SSTable magic at its end)")
    footer = data[len(data) - _FOOTER :]
    _, pos = _varint(footer, 0, where)  # metaindex offset
    _, pos = _varint(footer, pos, where)  # metaindex size
    index_handle = footer[pos:]
    entries = []
    for _, handle in _block_entries(_block(data, index_handle, where), where):
        entries.extend(_block_entries(_block(data, handle, where), where))
    if not entries or entries[0][0] != b"":
        raise ReleaseCheckpointError(f"{where}: no bundle header (the empty key); not a checkpoint V2 index")
    shards, endianness = 1, 0
    for number, value in _fields(entries[0][1], where):
        if number == 1:
            shards = value
        elif number == 2:
            endianness = value
    if endianness != 0:
        raise ReleaseCheckpointError(f"{where}: a big-endian bundle; only little-endian is supported")
    values: dict[str, np.ndarray] = {}
    shard_bytes: dict[int, bytes] = {}
    for key, value in entries[1:]:
        name = key.decode("utf-8", errors="replace")
        entry = _entry(name, value, where)
        if not 0 <= entry.shard < shards:
            raise ReleaseCheckpointError(f"{where}: variable {name!r} is in shard {entry.shard} of {shards}")
        if entry.shard not in shard_bytes:
            shard_path = prefix.with_name(f"{prefix.name}.data-{entry.shard:05d}-of-{shards:05d}")
            if not shard_path.is_file():
                raise ReleaseCheckpointError(f"{shard_path}: no such file (a shard of {where})")
            shard_bytes[entry.shard] = shard_path.read_bytes()
        shard = shard_bytes[entry.shard]
        shard_where = f"{prefix.name}.data-{entry.shard:05d}-of-{shards:05d}"
        raw = shard[entry.offset : entry.offset + entry.size]
        if len(raw) != entry.size:
            raise ReleaseCheckpointError(f"{prefix.parent / shard_where}: variable {name!r} runs past its end")
        if entry.crc is not None and masked_crc32c(raw) != entry.crc:
            raise ReleaseCheckpointError(f"{prefix.parent / shard_where}: variable {name!r} fails its checksum")
        values[name] = np.frombuffer(raw, dtype=entry.dtype).reshape(entry.shape).copy()
    return values


# ---------------------------------------------------------------------------------------------------------------------
# Mapping onto our model

SCOPE = "generator/e3d-lstm/"
EMA_SUFFIX = "/ExponentialMovingAverage"
# The cell's variables in the order its __call__ creates them (TensorFlow scope -> our module); norms only with LN.
_CELL_ORDER = (
    ("conv3d", "conv_h"), ("hidden", "norm_h"), ("conv3d_1", "conv_x"), ("inputs", "norm_x"),
    ("self_attn", "norm_c"), ("conv3d_2", "conv_m"), ("global_memory", "norm_m"), ("conv3d_3", "conv_oc"),
    ("conv3d_4", "conv_om"), ("conv3d_5", "conv_out"),
)  # fmt: skip
_LEAF = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


def _our_name(tf_name: str) -> str | None:
    """Our state_dict name for a release weight's name, or None when it is not one."""
    if not tf_name.startswith(SCOPE):
        return None
    parts = tf_name[len(SCOPE) :].split("/")
    if len(parts) == 2 and parts[0] == "conv3d" and parts[1] in ("kernel", "bias"):
        return f"decoder.{_LEAF[parts[1]]}"
    if len(parts) == 3 and re.fullmatch(r"e3d\d+", parts[0]) and parts[2] in _LEAF:
        module = dict(_CELL_ORDER).get(parts[1])
        is_conv = parts[1].startswith("conv3d")
        if module is not None and (parts[2] in ("kernel", "bias")) == is_conv:
            return f"cells.{int(parts[0][3:])}.{module}.{_LEAF[parts[2]]}"
    return None


def _creation_key(tf_name: str) -> tuple[int, int, int]:
    """Sorts the release's weights into the order it creates them: layer by layer, each cell in ``_CELL_ORDER``,
    kernel/gamma before bias/beta, the decoder last."""
    parts = tf_name[len(SCOPE) :].split("/")
    leaf = 0 if parts[-1] in ("kernel", "gamma") else 1
    if len(parts) == 2:
        return (1 << 30, 0, leaf)
    return (int(parts[0][3:]), [scope for scope, _ in _CELL_ORDER].index(parts[1]), leaf)


def _to_ours(value: np.ndarray) -> torch.Tensor:
    """A release array as our weight: TensorFlow's channels-last conv kernel (kt, k, k, in, out) becomes torch's
    (out, in, kt, k, k); biases, gammas and betas are per channel in both."""
    tensor = torch.from_numpy(np.ascontiguousarray(value)).to(torch.float32)
    if tensor.dim() == 5:
        tensor = tensor.permute(4, 3, 0, 1, 2)  # (kt, k, k, in, out) -> (out, in, kt, k, k)
    return tensor.contiguous()


@dataclass
class ReleaseState:
    """A release checkpoint on our model: ``weights`` (a full state_dict, fresh weights excepted), ``ema`` (the
    release's moving-average shadows of the same weights, or None), Adam's per-weight ``adam`` state keyed by the
    weight's index in ``model.parameters()`` (torch's Adam layout: step, exp_avg, exp_avg_sq), None when the
    checkpoint has no slots, and ``step``, the training iterations behind it."""

    weights: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    adam: dict[int, dict[str, torch.Tensor]] | None
    step: int


def _patch_order(channels: int, patch: int) -> torch.Tensor:
    """For each of our folded channels ``c*p*p + q`` (q = (h % p)*p + w % p, :func:`core.models.e3d_lstm.patch_fold`),
    the release's index of the same pixel, ``q*C + c``; the identity for one channel."""
    return torch.tensor([q * channels + c for c in range(channels) for q in range(patch * patch)])


def release_state(
    values: dict[str, np.ndarray], model: nn.Module, where: str = "checkpoint", channels: int = 1
) -> ReleaseState:
    """Maps every variable of a release checkpoint (:func:`read_checkpoint`) onto ``model``'s state_dict; a
    variable that maps nowhere, a weight left unfilled (its ``fresh_weights()`` excepted) or a shape that differs
    is a ReleaseCheckpointError listing them. ``channels``: the frames' channels, whose folded order differs (the
    first layer's input and the decoder's output channels are reordered)."""
    own = model.state_dict()
    order = _patch_order(channels, model.cfg.patch_size) if channels > 1 else None

    def converted(ours: str, value: np.ndarray) -> torch.Tensor:
        tensor = _to_ours(value)
        if order is not None and ours == "cells.0.conv_x.weight":
            tensor = tensor[:, order].contiguous()  # (out, C*p*p in the release's order, ...) -> ours
        elif order is not None and ours.startswith("decoder."):
            tensor = tensor[order].contiguous()  # (C*p*p in the release's order, ...) -> ours
        return tensor

    fresh = set(getattr(model, "fresh_weights", set)())
    weights_tf = sorted((n for n in values if _our_name(n) is not None), key=_creation_key)
    problems: list[str] = []
    used: set[str] = set()
    weights: dict[str, torch.Tensor] = {}
    for tf_name in weights_tf:
        ours = _our_name(tf_name)
        if ours not in own:
            problems.append(f"{tf_name} -> {ours}, which this model lacks")
            continue
        tensor = _to_ours(values[tf_name])
        if tuple(tensor.shape) == tuple(own[ours].shape):
            tensor = converted(ours, values[tf_name])
        if tuple(tensor.shape) != tuple(own[ours].shape):
            problems.append(f"{tf_name} {values[tf_name].shape} -> {ours} {tuple(own[ours].shape)}: shapes differ")
            continue
        weights[ours] = tensor
        used.add(tf_name)
    unfilled = sorted(set(own) - set(weights) - fresh)
    if unfilled:
        problems.append(f"weights no release variable fills: {unfilled}")

    ema = None
    shadows = [n for n in values if n.endswith(EMA_SUFFIX) and n[: -len(EMA_SUFFIX)] in used]
    if shadows:
        ema = {
            _our_name(n[: -len(EMA_SUFFIX)]): converted(_our_name(n[: -len(EMA_SUFFIX)]), values[n]) for n in shadows
        }
        used.update(shadows)

    adam, step = None, 0
    slots = [n for n in values if re.fullmatch(r"Variable(_\d+)?", n)]
    if slots:
        expected = {"Variable"} | {f"Variable_{i}" for i in range(1, 2 * len(weights_tf) + 1)}
        if set(slots) != expected or values["Variable"].shape != ():
            problems.append(
                f"Adam's slots do not line up with the {len(weights_tf)} weights: expected Variable (the step) and "
                f"Variable_1..Variable_{2 * len(weights_tf)}, found {len(slots)} Variable* entries"
            )
        else:
            index = {name: position for position, (name, _) in enumerate(model.named_parameters())}
            count = float(values["Variable"])  # the release's t: 1 before any update, one more after each
            step = int(round(count)) - 1
            adam = {}
            for j, tf_name in enumerate(weights_tf):
                ours = _our_name(tf_name)
                second, first = values[f"Variable_{2 * j + 1}"], values[f"Variable_{2 * j + 2}"]
                if second.shape != values[tf_name].shape or first.shape != values[tf_name].shape:
                    problems.append(f"Adam's Variable_{2 * j + 1}/_{2 * j + 2} are not shaped like {tf_name}")
                    continue
                if ours in weights and ours in index:
                    adam[index[ours]] = {
                        "step": torch.tensor(float(step), dtype=torch.float32),
                        "exp_avg": converted(ours, first),
                        "exp_avg_sq": converted(ours, second),
                    }
            used.update(slots)
    unused = sorted(set(values) - used)
    if unused:
        problems.append(f"release variables that map nowhere: {unused[:20]}{' ...' if len(unused) > 20 else ''}")
    if problems:
        raise ReleaseCheckpointError(f"{where}: does not fit this model: " + "; ".join(problems))
    return ReleaseState(weights, ema, adam, step)


# ---------------------------------------------------------------------------------------------------------------------
# Importing as a checkpoint of ours

_RELEASE_NAME = re.compile(r"\.ckpt-\d+(\.index|\.data-\d{5}-of-\d{5})?$")


def is_release_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` names a TensorFlow checkpoint the release's way: ``<prefix>.ckpt-<step>`` (or its files)."""
    return bool(_RELEASE_NAME.search(str(path)))


def moment_scale(cfg: Config, release_batch: int | None = None) -> float:
    """Our loss's gradient per the release's: at the release's mix (``loss.l1_weight`` 2/3) our
    ``w * mean|e| + (1 - w) * mean(e^2)`` is exactly ``2 / (3 N)`` times its ``sum(e^2)/2 + sum|e|``, N the elements
    it summed: ``release_batch`` (default ours) x (total_frames - 1) x channels x image_size^2. At another mix the
    losses differ, and the moments are rescaled by the same factor, the right magnitude."""
    d = cfg.data
    batch = release_batch if release_batch is not None else cfg.train.batch_size
    elements = batch * (d.total_frames - 1) * d.channels * d.image_size**2
    return RELEASE_L1_WEIGHT / elements


def import_release(
    path: str | Path,
    cfg: Config,
    weights: Literal["trained", "ema"] = "trained",
    release_batch: int | None = None,
) -> dict:
    """The release's checkpoint ``path`` (``model.ckpt-N``, :func:`read_checkpoint`) as a checkpoint of ours for
    ``cfg``'s model: its ``weights`` (``ema``: the release's moving averages), its step, and Adam's state (the
    moments rescaled by :func:`moment_scale`, lr and betas ``cfg.train``'s) when it has its slots; the release's
    source under ``"release"``. A ReleaseCheckpointError for what cannot be read or mapped."""
    prefix = checkpoint_prefix(path)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size)
    state = release_state(read_checkpoint(prefix), model, where=str(prefix), channels=cfg.data.channels)
    chosen = state.weights if weights == "trained" else state.ema
    if chosen is None:
        raise ReleaseCheckpointError(f"{prefix}: holds no ExponentialMovingAverage weights")
    step = state.step if state.adam is not None else int(re.search(r"ckpt-(\d+)$", prefix.name).group(1))
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "best_val_mse": math.inf,
        "config": to_dict(cfg),
        "model": chosen,
        "release": {"checkpoint": str(prefix), "weights": weights},
    }
    if state.adam is not None:
        scale = moment_scale(cfg, release_batch)
        params = list(model.parameters())
        optimizer = torch.optim.Adam(params, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))
        for index, slots in state.adam.items():
            optimizer.state[params[index]] = {
                "step": slots["step"],
                "exp_avg": slots["exp_avg"] * scale,
                "exp_avg_sq": slots["exp_avg_sq"] * scale**2,
            }
        checkpoint["optimizer"] = optimizer.state_dict()
        checkpoint["release"]["moment_scale"] = scale
    return checkpoint


def ship_release(
    path: str | Path,
    cfg: Config,
    out: str | Path,
    command: str,
    weights: Literal["trained", "ema"] = "trained",
    release_batch: int | None = None,
    check: bool = True,
) -> Path:
    """Write :func:`import_release`'s checkpoint to ``out`` (``FILE.pt``) and a manifest ``FILE.json`` beside it, as
    :func:`core.shipped.ship` writes them (file, sha256, step, config, command, the check MSE on the first test
    sequences, unless ``check`` is off), plus the release files' sha256; returns the manifest's path."""
    import json

    from core.io import atomic_write, sha256_of
    from core.shipped import CHECK_SEQUENCES, check_mse, cpu_kind, cpu_name

    prefix, out = checkpoint_prefix(path), Path(out)
    checkpoint = import_release(prefix, cfg, weights, release_batch)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as handle:
        torch.save(checkpoint, handle)
    sources = sorted(prefix.parent.glob(f"{prefix.name}.*"))
    manifest = {
        "name": out.stem,
        "file": out.name,
        "sha256": sha256_of(out),
        "step": int(checkpoint["step"]),
        "optimizer": "optimizer" in checkpoint,
        "command": command,
        "cpu": cpu_name(),
        "cpu_kind": cpu_kind(),
        "threads": 1,
        "torch": torch.__version__,
        "config": to_dict(cfg),
        "release": {
            **checkpoint["release"],
            "files": {p.name: sha256_of(p) for p in sources if p.suffix == ".index" or ".data-" in p.name},
        },
    }
    if check:
        mse = check_mse({**checkpoint, "path": str(out)})
        manifest["check"] = {"sequences": CHECK_SEQUENCES, "threads": 1, "mse": mse}
    manifest_path = out.with_suffix(".json")
    with atomic_write(manifest_path, "w") as handle:
        json.dump(manifest, handle, indent=1)
    return manifest_path
