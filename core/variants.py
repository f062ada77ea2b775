"""A variant file resolved to its config: :func:`core.config.load`, then a ``train.init_from`` that names another
variant file or a shipped checkpoint's manifest resolved to the weights it means. No torch: ``launch.py config`` and
``launch.py sweep --dry-run`` resolve configs without it.

A finetuning variant names the variant it starts from in ``train.init_from`` (``e3d_baseline.yaml``); it resolves to
that variant's run folder under the same profile, seed and command-line overrides, which must have been trained first.
Or it names a shipped checkpoint's manifest (``pretrained/mmnist_e3d_baseline-s0.json``), which resolves to the
checkpoint file it names, ``<name>-<sha8>.pt``, after checking its sha256. Its path may name the run's variant and
seed, ``pretrained/{variant}-s{seed}.json``, so one profile scores each stage-1 row at each seed from its own file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from core.axes import SHAPE_KEYS
from core.config import ALIASES, Config, ConfigError, load, parse_overrides
from core.io import CheckpointError
from core.manifest import shipped_weights
from core.records import run_dir_for

SHARED_WITH_SOURCE = (
    *("data.", "tracking.", "train.seed", "train.runs_dir", "train.device", "train.precision", "train.compile"),
    *("train.threads", *sorted(SHAPE_KEYS)),
)
"""Overrides that a finetuning variant's source run gets too: where data and runs are, how runs execute, and every key
that changes weight shapes (core.axes.SHAPE_KEYS), so the source's weights fit."""


def load_variant(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> Config:
    """Load a variant like :func:`core.config.load`, then resolve an ``init_from`` that names another variant file."""
    cfg = load(path, overrides, profile)
    return resolve_init_from(cfg, Path(path), overrides or [], profile)


INIT_FROM_FIELDS = ("variant", "seed")
"""What ``train.init_from`` may name in braces: the run's variant and its ``train.seed``."""


def resolve_init_from(cfg: Config, path: Path, overrides: list[str], profile: str | None) -> Config:
    init = cfg.train.init_from
    if init and ("{" in init or "}" in init):
        init = _filled(init, cfg, path)
    if init and init.endswith(".json"):
        return _with_init(cfg, _shipped(init, path))
    if not init or not init.endswith((".yaml", ".yml")):
        return cfg
    source = (path.parent / init) if not Path(init).is_absolute() else Path(init)
    if not source.is_file():
        raise ConfigError(f"{path}: train.init_from names {init}, which is not a file next to it")
    # Overrides that say where the data and runs are, how runs execute (device, precision, compile) and what the
    # weights look like apply to the source run too; those that change how this variant trains (lr, steps, loss,
    # residual, ...) do not.
    kept = [f"--{key}={value}" for key, value in parse_overrides(overrides)
            if ALIASES.get(key, key).startswith(SHARED_WITH_SOURCE)]  # fmt: skip
    source_cfg = load_variant(source, kept, profile)
    return _with_init(cfg, run_dir_for(source_cfg))


def _filled(init: str, cfg: Config, path: Path) -> str:
    """``init_from`` with ``{variant}`` and ``{seed}`` filled in from the run's config."""
    fields = {"variant": cfg.variant, "seed": cfg.train.seed}
    try:
        return init.format_map(fields)
    except KeyError as error:
        raise ConfigError(f"{path}: train.init_from {init!r} names {{{error.args[0]}}}; it may name "
                          f"{', '.join('{' + f + '}' for f in INIT_FROM_FIELDS)}") from error  # fmt: skip
    except (ValueError, IndexError) as error:
        raise ConfigError(f"{path}: train.init_from {init!r} is not a path with {{variant}} or {{seed}} in it "
                          f"({error})") from error  # fmt: skip


def _shipped(init: str, path: Path) -> Path:
    """A shipped checkpoint's manifest (``pretrained/mmnist_e3d_baseline-s0.json``, beside the variant file or from the
    working folder) as the checkpoint file it names, ``<name>-<sha8>.pt``, its sha256 checked: a retrained baseline
    is a new file name, so every config that finetunes from it is a new cell."""
    candidates = [Path(init)] if Path(init).is_absolute() else [path.parent / init, Path(init)]
    manifest = next((c for c in candidates if c.is_file()), None)
    if manifest is None:
        raise ConfigError(f"{path}: train.init_from names {init}, which is neither beside it nor in the working folder "
                          "(make pretrain writes the shipped baselines)")  # fmt: skip
    try:
        weights = shipped_weights(manifest)
    except CheckpointError as error:
        raise ConfigError(f"{path}: train.init_from: {error}") from error
    return Path(os.path.relpath(weights)) if weights.resolve().is_relative_to(Path.cwd()) else weights


def _with_init(cfg: Config, source: Path) -> Config:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(source)))
