"""W&B's offline transaction log (``<run>/wandb/offline-run-<time>-<id>/run-<id>.wandb``), read without a server.

W&B 0.31 keeps an offline run's config, history and summary only inside that file (media beside it under
``files/media/``). Its records are protobufs of wandb's own; this module never imports wandb: the caller passes W&B's
protobuf module in (:func:`core.tracking.read_offline_run`, since ``core/tracking.py`` is the one module that imports
wandb).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.io import DataError

# W&B 0.31 has no public reader of offline runs. Its .wandb file is a LevelDB-style log: a 7-byte file header
# (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header (crc32 of the type byte and
# the data, data length, type: full, first, middle or last piece of a record); a block tail too short for a header is
# zero padding. Each record is a protobuf ``wandb.proto.wandb_internal_pb2.Record``.

_LOG_BLOCK = 32 * 1024
_FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
_LOG_IDENT, _LOG_MAGIC, _LOG_VERSION = b":W&B", 0xBEE1, 0
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_log_records(path: str | Path) -> tuple[list[bytes], bool]:
    """The records (raw bytes) of a W&B transaction log, and whether it ended cleanly.

    A file still being written, or cut off by a crash, ends in a partial chunk or record: those are left out and the
    flag is False. A checksum mismatch before the last chunk, or chunks out of order, is a DataError.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size:
        return [], False
    ident, magic, version = _FILE_HEADER.unpack_from(data)
    if ident != _LOG_IDENT or magic != _LOG_MAGIC:
        raise DataError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    if version != _LOG_VERSION:
        raise DataError(f"{path}: W&B log format version {version}, this reader knows {_LOG_VERSION}")
    records: list[bytes] = []
    pieces: list[bytes] | None = None  # the record being assembled from first/middle chunks
    pos, clean = _FILE_HEADER.size, True
    while pos < len(data):
        block_left = _LOG_BLOCK - pos % _LOG_BLOCK
        if block_left < _CHUNK_HEADER.size:
            pos += block_left
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            clean = False
            break
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if crc == length == kind == 0:  # zero fill: nothing more in this block
            pos += block_left
            continue
        end = pos + _CHUNK_HEADER.size + length
        if end > len(data):
            clean = False
            break
        payload = data[pos + _CHUNK_HEADER.size : end]
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            if end == len(data):  # a torn last write
                clean = False
                break
            raise DataError(f"{path}: checksum mismatch in the chunk at byte {pos}")
        if length > block_left - _CHUNK_HEADER.size:
            raise DataError(f"{path}: the chunk at byte {pos} crosses a block boundary")
        pos = end
        if kind == _FULL and pieces is None:
            records.append(payload)
        elif kind == _FIRST and pieces is None:
            pieces = [payload]
        elif kind in (_MIDDLE, _LAST) and pieces is not None:
            pieces.append(payload)
            if kind == _LAST:
                records.append(b"".join(pieces))
                pieces = None
        else:
            raise DataError(f"{path}: chunk of type {kind} out of order at byte {pos - length - _CHUNK_HEADER.size}")
    if pieces is not None:
        clean = False
    return records, clean


def offline_run_files(path: str | Path) -> list[Path]:
    """The .wandb transaction logs at ``path``: a .wandb file, a W&B run folder, a ``wandb`` folder or a run folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    unique = {file.resolve(): file for file in path.rglob("*.wandb") if file.is_file()}
    return sorted(unique.values())


def read_run_logs(path: str | Path, load_proto: Callable[[], Any]) -> dict[str, Any]:
    """Config, history and summary of a W&B run from its transaction logs, without a server.

    ``path`` as for :func:`offline_run_files`; all logs found must belong to one run id. A resumed run has one log per
    process: they are read in order of start time, a later part's history replacing the earlier parts' rows from its
    first step on (as :meth:`core.tracking.Tracker.truncate_after` does locally), config and summary updated in order.

    Returns ``{"id", "project", "group", "job_type", "name", "tags", "config", "history", "summary", "console",
    "artifacts", "exit_code", "complete", "parts"}``: history is a list of rows (dicts with ``_step``, ``_runtime``,
    ``_timestamp`` and the logged keys), config and summary dicts without W&B's internal ``_wandb`` entries, console
    the captured terminal output of all parts, artifacts ``{"name", "type", "aliases", "files"}`` per logged one.
    Media values (``{"_type": "image-file", "path": ...}``, tables, videos) get a ``local_path``: the absolute path of
    the file. ``complete`` is whether the last part holds its exit record. ``load_proto`` returns W&B's protobuf
    module (``wandb.proto.wandb_internal_pb2``).
    """
    files = offline_run_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no W&B transaction log (.wandb) found")
    pb = load_proto()

    parts = sorted((_decode_log(pb, file) for file in files), key=lambda part: (part["start_time"], str(part["file"])))
    ids = sorted({part["id"] for part in parts if part["id"]})
    if len(ids) > 1:
        raise DataError(f"{path}: transaction logs of several runs ({', '.join(ids)}); pass one run's folder")
    out: dict[str, Any] = {"id": ids[0] if ids else None, "tags": []}
    out.update(dict.fromkeys(("project", "group", "job_type", "name")))
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict] = []
    for part in parts:
        for key in ("project", "group", "job_type", "name"):
            out[key] = part[key] or out[key]
        out["tags"] = part["tags"] or out["tags"]
        for op, keys, value in part["config"]:
            _apply(config, op, keys, value)
        touched = set()
        for op, keys, value in part["summary"]:
            _apply(summary, op, keys, value)
            touched.add(keys[0])
        for key in touched & summary.keys():
            _add_local_paths(summary[key], part["media_root"])
        if part["history"]:
            first = part["history"][0]["_step"]
            history = [row for row in history if row["_step"] < first] + part["history"]
    last = parts[-1]
    out.update(
        config=config,
        history=history,
        summary=summary,
        console="".join(line for part in parts for line in part["console"]),
        artifacts=[artifact for part in parts for artifact in part["artifacts"]],
        exit_code=last["exit_code"],
        complete=last["exit_code"] is not None,
        parts=[
            {"file": str(p["file"]), "start_time": p["start_time"], "exit_code": p["exit_code"], "clean": p["clean"]}
            for p in parts
        ],
    )
    return out


def read_offline_table(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a table-file value from :func:`read_run_logs` (e.g. a per-frame curve), as dicts by column."""
    table = json.loads(Path(value["local_path"]).read_text(encoding="utf-8"))
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]


def _decode_log(pb: Any, file: Path) -> dict[str, Any]:
    """One transaction log's records in order: run identity, config and summary operations, history rows, exit."""
    records, clean = read_log_records(file)
    part: dict[str, Any] = {
        "file": file,
        "media_root": file.parent / "files",
        "clean": clean,
        "id": None,
        "project": None,
        "group": None,
        "job_type": None,
        "name": None,
        "tags": [],
        "start_time": "",
        "config": [],
        "summary": [],
        "history": [],
        "console": [],
        "artifacts": [],
        "exit_code": None,
    }
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            part.update(id=run.run_id or None, project=run.project or None, group=run.run_group or None,
                        job_type=run.job_type or None)  # fmt: skip
            part.update(name=run.display_name or None, tags=list(run.tags))
            if run.HasField("start_time"):
                part["start_time"] = run.start_time.ToDatetime().isoformat()
            part["config"] += _operations(run.config)
            part["summary"] += _operations(run.summary)
        elif kind == "config":
            part["config"] += _operations(record.config)
        elif kind == "summary":
            part["summary"] += _operations(record.summary)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _apply(row, "set", _item_keys(item), _item_value(item))
            row["_step"] = record.history.step.num if record.history.HasField("step") else row.get("_step")
            for value in row.values():
                _add_local_paths(value, part["media_root"])
            part["history"].append(row)
        elif kind in ("output_raw", "output"):
            part["console"].append(getattr(record, kind).line)
        elif kind == "artifact":
            artifact = record.artifact
            files = sorted(entry.path for entry in artifact.manifest.contents)
            part["artifacts"].append({"name": artifact.name, "type": artifact.type, "aliases": list(artifact.aliases),
                                      "files": files})  # fmt: skip
        elif kind == "exit":
            part["exit_code"] = int(record.exit.exit_code)
    return part


def _operations(update_record: Any) -> list[tuple[str, list[str], Any]]:
    """A config or summary record's updates and removals as ``(op, key path, value)``, W&B's internals left out."""
    ops = [("set", _item_keys(item), _item_value(item)) for item in update_record.update]
    ops += [("remove", _item_keys(item), None) for item in update_record.remove]
    return [op for op in ops if op[1] and not op[1][0].startswith("_wandb")]


def _item_keys(item: Any) -> list[str]:
    return list(item.nested_key) if len(item.nested_key) else [item.key]


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    # History items may carry a typed value instead of JSON text.
    field = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if field is None or field == "none":
        return None
    value = getattr(item, field)
    return json.loads(value) if field == "json" else value


def _apply(tree: dict, op: str, keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if op == "remove":
                return
            child = node[key] = {}
        node = child
    if op == "set":
        node[keys[-1]] = value
    else:
        node.pop(keys[-1], None)


def _add_local_paths(value: Any, media_root: Path) -> None:
    if isinstance(value, dict) and isinstance(value.get("_type"), str) and isinstance(value.get("path"), str):
        value["local_path"] = str((media_root / value["path"]).resolve())
