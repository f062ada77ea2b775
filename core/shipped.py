"""Shipped checkpoints: a trained run's weights, small, with what it takes to trust them.

:func:`ship` writes two files for a finished run:

- ``<name>-<sha8>.pt``: the weights, the step and the config fields that decide what the run computed
  (:func:`core.config.hashed_fields`; no RNG state, and no optimiser state unless shipped ``with_optimizer``, so a
  finetune can continue Adam's with ``train.init_optimizer: restore``: a fraction of the run's own checkpoint), named by
  the first 8 hex digits of its sha256, so a retrained baseline is a new file and whatever names it (a finetune
  sweep's ``train.init_from``) is a new config, never mistaken for the old one;
- ``<name>.json``: the manifest: that file and its sha256, the resolved config, the command that trained it, the CPU
  and thread count it trained on, its validation and training-loss histories, the trainer's test summary, and a
  check: the test MSE of the first :data:`CHECK_SEQUENCES` test sequences, which :func:`verify` recomputes.

Both are written under temporary names and renamed. Loading goes through :func:`core.checkpoints.load_checkpoint`'s
weights-only unpickler; :mod:`core.manifest` reads a manifest and finds its weights without torch.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from core.checkpoints import load_checkpoint, load_weights
from core.config import from_dict, hashed_fields, name_problem, to_dict
from core.data.sources import build_data
from core.evaluation import evaluate_model, torch_threads
from core.io import CheckpointError, atomic_write, sha256_of
from core.manifest import checked_weights, manifest_beside, read_manifest, weights_file_name
from core.models import build_model

CHECK_SEQUENCES = 64
"""Test sequences the manifest's check scores: enough to catch wrong weights, quick enough for a unit test."""


def cpu_name() -> str:
    """The CPU's model name as ``lscpu`` shows it (``AMD EPYC``), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_kind() -> str:
    """What decides a CPU's float32 sums: its model name, family and model, and whether it has AVX-512
    (``AMD EPYC, family 23 model 49, no avx512f``). Two runs reproduce each other's bytes only on the same kind: an
    E3D-LSTM retrained on the EPYC without AVX-512 ended at other weights than the file shipped from one with it."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return cpu_name()
    avx512 = "avx512f" if "avx512f" in fields.get("flags", "").split() else "no avx512f"
    return f"{cpu_name()}, family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {avx512}"


def check_mse(state: dict[str, Any], threads: int = 1) -> float:
    """Test MSE of a checkpoint's weights on the first :data:`CHECK_SEQUENCES` sequences of its config's test set,
    computed in float32 with ``threads`` torch threads."""
    cfg = from_dict(state["config"], state.get("path", "checkpoint"))
    with torch_threads(threads):
        model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size)
        load_weights(model, state)
        data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed)
        subset = Subset(data.test, range(min(CHECK_SEQUENCES, len(data.test))))
        return float(evaluate_model(model, subset, data.context_frames, 16, torch.device("cpu")).scores.mse)


def ship(run_dir: str | Path, out_dir: str | Path, name: str, command: str, with_optimizer: bool = False) -> Path:
    """Write ``run_dir``'s final weights (``checkpoints/last.pt``, which its test scored) as
    ``<out_dir>/<name>-<sha8>.pt`` with its manifest ``<out_dir>/<name>.json`` (see the module's doc); returns the
    manifest's path. The run must have finished. ``with_optimizer`` keeps Adam's per-weight state (its moments and
    step counts; three times the weights' size), not its learning rate, which a finetune's config sets."""
    if (problem := name_problem(name)) is not None:
        raise CheckpointError(f"ship --name {name!r} {problem}: it names the shipped files in {out_dir}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("status") != "finished":
        raise CheckpointError(f"{run_dir}: only a finished run is shipped (status: {summary.get('status', 'none')})")
    # The final weights: the ones the summary's test numbers score (the trainer tests the model it ends with).
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    if int(state["step"]) != int(summary.get("step", -1)):
        raise CheckpointError(f"{run_dir}: checkpoints/last.pt holds step {state['step']}, the summary's test step "
                              f"{summary.get('step')}: not the weights its test scored")  # fmt: skip
    slim = {key: state[key] for key in ("format", "step", "best_val_mse", "model")}
    if with_optimizer:
        slim["optimizer"] = {"state": state["optimizer"]["state"]}
    # What the run computed, no more: the same bytes from any run folder, and after fields are added to the config.
    slim["config"] = hashed_fields(from_dict(state["config"], state["path"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".{name}.pt.partial"
    with atomic_write(staging) as handle:
        torch.save(slim, handle)
    digest = sha256_of(staging)
    weights = out_dir / weights_file_name(name, digest)
    os.replace(staging, weights)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    manifest = {
        "name": name,
        "file": weights.name,
        "sha256": digest,
        "step": int(slim["step"]),
        "optimizer": with_optimizer,
        "command": command,
        "cpu": cpu_name(),
        "cpu_kind": cpu_kind(),
        "threads": summary.get("threads"),
        "torch": torch.__version__,
        "config": to_dict(from_dict(slim["config"], str(weights))),
        "test_set": summary.get("test_set"),
        "test": summary.get("metrics"),
        "baselines": summary.get("baselines"),
        "validation": [
            {"step": row["step"], "mse": row["val/mse"], "ssim": row.get("val/ssim")}
            for row in history
            if "val/mse" in row
        ],
        "training": [{"step": row["step"], "loss": row["train/loss"]} for row in history if "train/loss" in row],
        "check": {"sequences": CHECK_SEQUENCES, "threads": 1, "mse": check_mse({**slim, "path": str(weights)})},
    }
    path = manifest_beside(weights)
    with atomic_write(path, "w") as handle:
        json.dump(manifest, handle, indent=1)
    return path


def verify(manifest_path: str | Path) -> dict[str, float]:
    """Check a shipped checkpoint against its manifest: its fields, the file's sha256, then the check's MSE
    recomputed. Returns ``{"expected": ..., "measured": ...}``; a malformed manifest, a wrong hash or an unreadable
    file is a CheckpointError."""
    manifest = read_manifest(manifest_path)
    weights = checked_weights(Path(manifest_path), manifest)
    check = manifest["check"]
    measured = check_mse(load_checkpoint(weights), check["threads"])
    return {"expected": float(check["mse"]), "measured": measured}
