"""A config built from raw values: each key checked against the fields, each value coerced from its annotation, then
the cross-field rules (:func:`validate`), in one place."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from typing import Any, Literal

from core.config.names import NAME_MAX_BYTES, is_plain_name
from core.config.schema import (
    ALIASES,
    SECTIONS,
    UNUSED_FIELDS,
    Config,
    ConfigError,
    ModelConfig,
    field_types,
    valid_keys,
)


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys() + list(ALIASES), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid_keys())}"
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


# ---------------------------------------------------------------------------------------------------------------------
# Coercion


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    """Convert a YAML or command-line value to ``annotation``; a lossy or impossible conversion is a ConfigError."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key} must be {expected}, got {value!r}")

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key, where)
    if origin is Literal:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if text not in args:
            raise fail(f"one of {', '.join(map(repr, args))}")
        return text
    if origin is tuple:
        items = value.strip().removeprefix("[").removesuffix("]").split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise fail("a list")
        items = [item.strip() if isinstance(item, str) else item for item in items if item != ""]
        return tuple(coerce(item, args[0], f"{key}[{i}]", where) for i, item in enumerate(items))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail("true or false")
    if annotation is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise fail("an integer") from None
        if not number.is_integer():
            raise fail("an integer")
        return int(number)
    if annotation is float:
        if isinstance(value, bool):
            raise fail("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise fail("a number") from None
    if annotation is str:
        if isinstance(value, dict | list):
            raise fail("a string")
        return str(value)
    raise ConfigError(f"{where}: {key} has an unsupported type {annotation}")


# ---------------------------------------------------------------------------------------------------------------------
# Building


def set_key(tree: dict, dotted: str, value: Any, where: str) -> None:
    """Set ``section.field`` (or a top-level field) in a nested dict of raw values, checking the key exists."""
    dotted = ALIASES.get(dotted, dotted)
    if dotted not in valid_keys():
        raise _unknown_key(dotted, where)
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = (value, where)


def flatten(raw: dict, where: str, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested YAML mapping -> [(dotted key, value)], leaves being anything that is not a section mapping."""
    items = []
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if not prefix and key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: section {key!r} must be a mapping, got {value!r}")
            items += flatten(value, where, prefix=f"{key}.")
        else:
            items.append((dotted, value))
    return items


def build(cls: type, tree: dict) -> Any:
    hints = field_types(cls)
    kwargs = {}
    for name, entry in tree.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = build(annotation, entry)
        else:
            value, where = entry
            kwargs[name] = coerce(value, annotation, f"{cls_section(cls)}{name}", where)
    return cls(**kwargs)


def cls_section(cls: type) -> str:
    for name in SECTIONS:
        if field_types(Config)[name] is cls:
            return f"{name}."
    return ""


# ---------------------------------------------------------------------------------------------------------------------
# Cross-field rules, in one place


def validate(cfg: Config) -> Config:
    """Check ranges and cross-field rules; returns ``cfg`` unchanged or raises ConfigError naming the key."""
    d, m, l, t = cfg.data, cfg.model, cfg.loss, cfg.train
    rules = [
        (
            is_plain_name(cfg.variant),
            "variant",
            f"must be a name, since it names the run's folder (no '/', '\\', '..', absolute path or control "
            f"character, at most {NAME_MAX_BYTES} bytes): {cfg.variant!r}",
        ),  # fmt: skip
        (d.context_frames >= 1, "data.context_frames", "must be at least 1"),
        (
            d.total_frames > d.context_frames,
            "data.total_frames",
            f"must exceed data.context_frames ({d.context_frames})",
        ),
        (d.image_size >= 1 and d.channels >= 1, "data.image_size", "and data.channels must be positive"),
        (d.num_digits >= 1, "data.num_digits", "must be at least 1"),
        (d.val_size >= 1 and d.test_size >= 1, "data.val_size", "and data.test_size must be positive"),
        (d.num_workers >= 0, "data.num_workers", "must be 0 or more"),
        (d.val_seed != d.test_seed, "data.val_seed", f"must differ from data.test_seed ({d.test_seed})"),
        (
            set(d.val_persons) < set(range(1, 17)),
            "data.val_persons",
            f"must name some of the training persons 1-16, not all of them; got {list(d.val_persons)}",
        ),
        (d.dataset != "kth" or d.root is not None, "data.root", "must name the KTH frame folders when dataset is kth"),
        (
            d.train_path is None or d.dataset == "moving_mnist",
            "data.train_path",
            "is for Moving MNIST files; KTH trains on the frame folders under data.root",
        ),
        (len(m.hidden) >= 1 and min(m.hidden) >= 1, "model.hidden", "must list at least one positive size"),
        (not m.residual or len(m.hidden) >= 2, "model.residual", "needs at least 2 layers"),
        (not m.residual or len(set(m.hidden)) == 1, "model.residual", "needs equal hidden sizes in every layer"),
        (
            m.residual or m.residual_gate == "fixed",
            "model.residual_gate",
            f"'{m.residual_gate}' gates the residual skips, so it needs model.residual=true",
        ),  # fmt: skip
        (
            t.init_optimizer == "fresh" or t.init_from is not None,
            "train.init_optimizer",
            "'restore' reads Adam's state from train.init_from's checkpoint, so it needs train.init_from",
        ),  # fmt: skip
        (m.filter_size >= 1 and m.filter_size % 2 == 1, "model.filter_size", "must be odd and positive"),
        (m.window >= 1, "model.window", "must be at least 1"),
        (m.layer_norm_eps > 0, "model.layer_norm_eps", "must be positive"),
        (
            m.patch_size >= 1 and d.image_size % m.patch_size == 0,
            "model.patch_size",
            f"must divide data.image_size ({d.image_size})",
        ),  # fmt: skip
        (0 <= l.l1_weight <= 1, "loss.l1_weight", "must lie in [0, 1]"),
        (t.steps >= 0, "train.steps", "must be 0 or more"),
        (
            t.batch_size >= 1 and t.eval_batch_size >= 1,
            "train.batch_size",
            "and train.eval_batch_size must be positive",
        ),
        (math.isfinite(t.lr) and t.lr > 0, "train.lr", f"must be a positive finite number, not {t.lr}"),
        (
            math.isfinite(t.lr_min) and 0 <= t.lr_min <= t.lr,
            "train.lr_min",
            f"must lie in [0, train.lr={t.lr}], not {t.lr_min}",
        ),  # fmt: skip
        (0 <= t.lr_warmup <= t.steps, "train.lr_warmup", f"must lie in [0, train.steps={t.steps}], not {t.lr_warmup}"),
        (t.threads is None or t.threads >= 1, "train.threads", "must be at least 1 (or none)"),
        (
            not any(char in t.runs_dir for char in "\n\r\0"),
            "train.runs_dir",
            f"must not hold a line break or NUL (it reaches job scripts and logs as a path): {t.runs_dir!r}",
        ),  # fmt: skip
        (
            t.run_name is None or is_plain_name(t.run_name),
            "train.run_name",
            f"must be a folder name inside train.runs_dir (no '/', '\\', '..', absolute path or control character, "
            f"at most {NAME_MAX_BYTES} bytes), not {t.run_name!r}",
        ),  # fmt: skip
        (0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, "train.beta1", "and train.beta2 must lie in [0, 1)"),
        (0 <= t.sampling_start <= 1, "train.sampling_start", "must lie in [0, 1]"),
        (t.sampling_rate >= 0 and t.sampling_stop >= 0, "train.sampling_rate", "and train.sampling_stop must be >= 0"),
        (
            t.eval_every >= 1 and t.log_every >= 1 and t.checkpoint_every >= 1,
            "train.eval_every",
            "train.log_every and train.checkpoint_every must be positive",
        ),  # fmt: skip
        (cfg.tracking.frames >= 0, "tracking.frames", "must be 0 or more"),
    ]
    for field_name in UNUSED_FIELDS.get(m.name, ()):  # a switch another family's cell reads: refused, not ignored
        default = getattr(ModelConfig, field_name)
        rules.append((
            getattr(m, field_name) == default,
            f"model.{field_name}",
            f"means nothing for model.name {m.name!r} (its cell has no such part; only "
            f"{', '.join(n for n, unused in UNUSED_FIELDS.items() if field_name not in unused)} reads it): leave it at "
            f"its default ({json.dumps(list(default) if isinstance(default, tuple) else default)})",
        ))  # fmt: skip
    rules.append((
        m.name == "e3d_lstm" or m.conv == "2d" or m.window >= 2,
        "model.conv",
        f"'3d' gives {m.name} a temporal kernel of 2 frames, which needs model.window >= 2 (at window 1 its second "
        "tap would only ever see the zero pad)",
    ))  # fmt: skip
    rules += [
        (m.name != "predrnn" or len(set(m.hidden)) == 1, "model.hidden",
         f"must be one size in every layer for predrnn (its memory M passes from layer to layer as it is): "
         f"{list(m.hidden)}"),
        (m.name != "predrnnpp" or len(m.hidden) >= 2, "model.hidden",
         "needs at least 2 layers for predrnnpp (its gradient highway sits between the first two)"),
    ]  # fmt: skip
    for ok, key, message in rules:
        if not ok:
            raise ConfigError(f"{key} {message}")
    return cfg


# ---------------------------------------------------------------------------------------------------------------------
