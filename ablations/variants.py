"""The study's rows as named variants: one YAML file per row under ``ablations/<dataset>/``, each extending its
dataset's ``base.yaml``, which holds the ``paper`` and ``demo`` profiles.

A finetuning variant names the variant it starts from in ``train.init_from`` (``e3d_baseline.yaml``); it resolves to
that variant's run folder under the same profile, seed and command-line overrides, which must have been trained first.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from core.axes import SHAPE_KEYS
from core.config import ALIASES, Config, ConfigError, load, parse_overrides
from core.trainer import run_dir_for

ROOT = Path(__file__).resolve().parent
SHARED_WITH_SOURCE = (
    *("data.", "tracking.", "train.seed", "train.runs_dir", "train.device", "train.precision", "train.compile"),
    *("train.threads", *sorted(SHAPE_KEYS)),
)
"""Overrides that a finetuning variant's source run gets too: where data and runs are, how runs execute, and every key
that changes weight shapes (core.axes.SHAPE_KEYS), so the source's weights fit."""


def variant_files() -> list[Path]:
    """Every variant file (the ``base.yaml`` files are not variants)."""
    return sorted(p for p in ROOT.glob("*/*.yaml") if p.name != "base.yaml")


def load_variant(path: str | Path, overrides: list[str] | None = None, profile: str | None = None) -> Config:
    """Load a variant like :func:`core.config.load`, then resolve an ``init_from`` that names another variant file."""
    cfg = load(path, overrides, profile)
    return resolve_init_from(cfg, Path(path), overrides or [], profile)


def resolve_init_from(cfg: Config, path: Path, overrides: list[str], profile: str | None) -> Config:
    init = cfg.train.init_from
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
    run = run_dir_for(source_cfg)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(run)))
