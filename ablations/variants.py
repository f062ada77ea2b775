"""The study's rows as named variants: one YAML file per row under ``ablations/<dataset>/``, each extending its
dataset's ``base.yaml``, which holds the ``paper`` and ``demo`` profiles. :func:`core.variants.load_variant` resolves
one to its config (a finetuning variant's ``train.init_from`` included).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def variant_files() -> list[Path]:
    """Every variant file (the ``base.yaml`` files are not variants)."""
    return sorted(p for p in ROOT.glob("*/*.yaml") if p.name != "base.yaml")
