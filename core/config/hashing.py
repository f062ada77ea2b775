"""What a run computes, apart from where and how it ran: the config's hash (a run's id) and the fields it leaves
out, and a recorded config read back as the run had it (fields added since at the value every run had before them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from core.config.building import build, flatten, set_key, validate
from core.config.schema import UNUSED_FIELDS, Config, ModelConfig, to_dict

UNHASHED = {"train.runs_dir", "train.run_name", "train.device", "train.compile", "data.num_workers", "data.data_dir",
             "tracking.wandb", "tracking.project", "tracking.group", "tracking.tags", "tracking.frames",
             "tracking.artifacts", "tracking.frames_dir"}  # fmt: skip
"""Fields that change where or how a run is recorded or executed, not what it computes: left out of the hash."""
BEFORE_FIELD = {"fidelity": 1, "model.layer_norm_eps": 1e-5, "train.precision": "fp32", "data.val_persons": [16],
                "train.threads": None, "train.lr_schedule": "constant", "train.lr_warmup": 0,
                "train.lr_min": 0.0, "model.residual_gate": "fixed", "train.init_optimizer": "fresh",
                "data.train_path": None, "model.residual_layers": "even"}  # fmt: skip
"""Fields added after runs were recorded, with the value every run had before them. A record without the field is
read with this value, and the hash leaves the field out at this value, so every run recorded before it keeps its id
(its folder is found again) while every run of today's code (fidelity 2) hashes apart from all of them. (Fidelity-1
KTH runs validated on test windows, which no value of data.val_persons describes; their fidelity says so.)"""


def inert_fields(flat: Mapping[str, Any]) -> set[str]:
    """Fields whose value changes nothing that a config ``flat`` (``{dotted key: value}``) computes:
    model.residual_layers without residuals or below 5 layers, where both wirings take the same skips; the switches
    of another family's cell (``UNUSED_FIELDS``: a ConvLSTM has no recall to scale). The hash leaves them out and a
    report reads them at their default, so a run recorded before the field and one of today's with the same
    computation keep one id and one row."""
    inert = {f"model.{name}" for name in UNUSED_FIELDS.get(flat.get("model.name", ModelConfig.name), ())}
    if not flat.get("model.residual", False) or len(flat.get("model.hidden", ModelConfig.hidden)) < 5:
        inert.add("model.residual_layers")
    return inert


def hashed_fields(cfg: Config) -> dict:
    """What ``cfg`` computes, as nested dicts: every field except the :data:`UNHASHED` ones and those at their
    :data:`BEFORE_FIELD` value. :func:`config_hash` hashes it, and a shipped checkpoint stores it, so a field added
    later (unhashed, or at the value runs had before it) changes neither a run's id nor a shipped file's bytes.
    :func:`from_dict` reads it back as ``cfg`` with the unhashed fields at their defaults."""
    out: dict = {}
    items = flatten(to_dict(cfg), "config")
    inert = inert_fields(dict(items))
    for dotted, value in items:
        if dotted in UNHASHED or dotted in inert or BEFORE_FIELD.get(dotted, object()) == value:
            continue
        section, _, name = dotted.rpartition(".")
        (out.setdefault(section, {}) if section else out)[name] = value
    return out


def config_hash(cfg: Config, length: int = 8) -> str:
    """A stable short hash of what the run computes, so a re-run finds the same run folder."""
    flat = dict(flatten(hashed_fields(cfg), "hash"))
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:length]


def from_dict(raw: dict, where: str = "config") -> Config:
    """Rebuild a Config from :func:`to_dict`'s output (e.g. a checkpoint's), with the same strict key checks. A key
    the record predates gets the value every run had before it (:data:`BEFORE_FIELD`), not today's default, unless it
    changes nothing in this config (:func:`inert_fields`): then today's default, so the config equals today's."""
    tree: dict = {}
    items = flatten(raw, where)
    for dotted, value in items:
        set_key(tree, dotted, value, where)
    present = {dotted for dotted, _ in items}
    inert = inert_fields(dict(items))  # absent and changing nothing here: today's default, as a run of today records
    for dotted, value in BEFORE_FIELD.items():
        if dotted not in present and dotted not in inert:
            set_key(tree, dotted, value, where)
    return validate(build(Config, tree))
