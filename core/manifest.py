"""A shipped checkpoint's manifest (``<name>.json``, written by :func:`core.shipped.ship`) read and checked, and the
weights file it names, its sha256 checked. No torch: resolving a config that finetunes from a shipped checkpoint
(``train.init_from: pretrained/<name>.json``, :mod:`core.variants`) reads only this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config import is_plain_name
from core.io import CheckpointError, sha256_of


def weights_file_name(name: str, digest: str) -> str:
    """The file name of shipped weights ``name`` whose sha256 is ``digest``: ``<name>-<sha8>.pt`` (its manifest is
    ``<name>.json`` beside it, :func:`manifest_beside`)."""
    return f"{name}-{digest[:8]}.pt"


def manifest_beside(weights: Path) -> Path:
    """The manifest of shipped weights ``<name>-<sha8>.pt`` (:func:`weights_file_name`): ``<name>.json`` beside it."""
    return weights.with_name(weights.stem.rsplit("-", 1)[0] + ".json")


def read_manifest(manifest_path: str | Path) -> dict[str, Any]:
    """A shipped checkpoint's manifest, its fields checked: ``file`` a plain file name (it lies beside the manifest),
    ``sha256`` 64 hex digits, ``check`` a mapping of ``threads`` (an int >= 1), ``sequences`` (an int >= 1) and
    ``mse`` (a number). Anything else is a CheckpointError naming the manifest and the key."""
    try:
        manifest = json.loads(Path(manifest_path).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{manifest_path}: not a readable shipped-checkpoint manifest ({error})") from error
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path}: not a shipped-checkpoint manifest (a JSON object)")
    check = manifest.get("check")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    fields = [
        ("file", manifest.get("file"), "a file name beside the manifest (no '/', '..' or absolute path)",
         lambda v: isinstance(v, str) and is_plain_name(v)),
        ("sha256", manifest.get("sha256"), "64 hex digits",
         lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)),
        ("check", check, "a mapping of threads, sequences and mse", lambda v: isinstance(v, dict)),
    ]  # fmt: skip
    if isinstance(check, dict):
        fields += [
            ("check.threads", check.get("threads"), "an int >= 1", lambda v: is_int(v) and v >= 1),
            ("check.sequences", check.get("sequences"), "an int >= 1", lambda v: is_int(v) and v >= 1),
            ("check.mse", check.get("mse"), "a number", lambda v: is_int(v) or isinstance(v, float)),
        ]
    for key, value, expected, ok in fields:
        if value is None:
            raise CheckpointError(f"{manifest_path}: {key} is missing (a shipped manifest holds {expected})")
        if not ok(value):
            raise CheckpointError(f"{manifest_path}: {key} is {value!r}, not {expected}")
    return manifest


def shipped_weights(manifest_path: str | Path) -> Path:
    """The checkpoint file a manifest names, beside it, after checking its sha256 (a CheckpointError naming the file
    when the manifest is unreadable or malformed (:func:`read_manifest`), the file missing, or its hash not the
    manifest's)."""
    return checked_weights(Path(manifest_path), read_manifest(manifest_path))


def checked_weights(manifest_path: Path, manifest: dict[str, Any]) -> Path:
    """The weights file ``manifest`` (read from ``manifest_path``) names, beside it, its sha256 checked."""
    name, expected = manifest["file"], manifest["sha256"]
    weights = manifest_path.parent / name
    if not weights.is_file():
        raise CheckpointError(f"{manifest_path}: names {name}, which is not beside it (make pretrain writes both)")
    digest = sha256_of(weights)
    if digest != expected:
        raise CheckpointError(f"{weights}: sha256 {digest} differs from its manifest's {expected} (damaged or "
                              "replaced: restore it with git checkout, or retrain with make pretrain)")  # fmt: skip
    return weights
