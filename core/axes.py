"""The axes: the one table of what an ablation varies, read by every layer; nothing else spells an axis.

An :class:`Axis` is a config key with what each layer needs to show it: the name it has in run records, W&B's config
and the analysis frames (``conv``), a label for tables, legends and effects ("convolution"), the release's value (a
row names only the axes off it), how a row names another value ("residuals", "l1 only"), and whether it changes
weight shapes (cells that differ in such an axis cannot finetune from one another).

- :data:`STUDY_AXES` are the study's axes and the release-vs-paper switches: every run records them (summary.json's
  ``axes``, W&B's top-level config keys), every table has a row axis for each.
- :data:`IDENTITY` (dataset, seed) identify a run without making a row: datasets are columns, seeds are averaged.
- Any other config key is an axis too (:func:`axis`): its name is the key's last part (``train.lr`` -> ``lr``), its
  release value the config's default, and a row names it ``lr=0.002``. A report makes it a row axis when it varies
  among the runs it shows.

This module is plain Python (no torch, no W&B), so the analysis side reads it without the model's dependencies.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from core.config import (
    BEFORE_FIELD,
    MODEL_FAMILIES,
    RELEASE_L1_WEIGHT,
    UNHASHED,
    Config,
    inert_fields,
    to_dict,
    valid_keys,
)


def canonical(value: Any) -> Any:
    """An axis value as a hashable, comparable key: floats rounded to 9 decimals (so 0.1 + 0.2 and 0.3 are one
    value), lists as tuples, numpy scalars as Python's."""
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):  # numpy scalars
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, list | tuple):
        return tuple(canonical(v) for v in value)
    return value


def shown(value: Any) -> str:
    """A value as a table or legend shows it to people: on/off, 0.002, 32,32. Command lines and cell names write the
    text a config reads back instead (``ablations.parameters.as_text``: true/false)."""
    value = canonical(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(shown(v) for v in value)
    return str(value)


def _identity(value: Any) -> Any:
    return value


@dataclasses.dataclass(frozen=True)
class Axis:
    name: str
    """the column in run records and analysis frames, and W&B's top-level config key ("conv")"""
    key: str
    """the dotted config key it reads ("model.conv")"""
    label: str
    """for tables, legends and effects ("convolution")"""
    release: Any
    """the release's value: a row's name mentions only the axes off it"""
    shapes: bool = False
    """changes weight shapes: cells that differ in it cannot finetune from one another"""
    phrase: Callable[[Any], str] | None = None
    """how a row names a value off the release's; default ``name=value``"""
    read: Callable[[Any], Any] = _identity
    """the axis value from the config value"""
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    """the axis value from the whole config, where one key does not say it (``init``)"""
    reads: tuple[str, ...] = ()
    """other config keys ``derive`` reads that belong to this axis alone, so they make no axis of their own"""

    def of(self, config: Mapping[str, Any] | None) -> Any:
        """This axis's value in a resolved config given as nested dicts (``to_dict``, config.yaml); None if absent."""
        if self.derive is not None:
            return self.derive(config or {})
        node: Any = config
        for part in self.key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None if self.read is _identity else self.read(None)
            node = node[part]
        return self.read(node)

    def is_release(self, value: Any) -> bool:
        return canonical(value) == canonical(self.release)

    def describe(self, value: Any) -> str:
        """How a row names ``value``: ``residuals``, ``l1 only``, ``lr=0.002``."""
        return self.phrase(value) if self.phrase is not None else f"{self.name}={shown(value)}"


def _init(config: Mapping[str, Any]) -> str:
    """``scratch`` without ``train.init_from``; with it, ``finetuned``, or ``pretrained`` when the run trains 0 steps
    (the checkpoint scored as it is, as the showcase scores its shipped baselines)."""
    train = config.get("train") or {}
    if not train.get("init_from"):
        return "scratch"
    return "pretrained" if train.get("steps") == 0 else "finetuned"


def _residual(config: Mapping[str, Any]) -> Any:
    """``False`` without residual skips, ``True`` with the study's fixed ones, ``"gated"`` with zero-started gates
    (``model.residual_gate: zero``): one axis of three levels, so each kind of skip is compared with none."""
    model = config.get("model") or {}
    if "residual" not in model:
        return None
    if not model["residual"]:
        return False
    return "gated" if model.get("residual_gate", "fixed") == "zero" else True


def _residual_phrase(value: Any) -> str:
    return "gated residuals" if value == "gated" else "residuals" if value else "plain"


def _weight(value: Any) -> str:
    weight = float(value)
    return "l1 only" if weight == 1 else "l2 only" if weight == 0 else f"l1+l2 (w={weight:.2g})"


def _family(value: Any) -> Any:
    """``model.name``, with a record that predates the field read as the only family there was then."""
    return "e3d_lstm" if value is None else value


def _family_label(value: Any) -> str:
    return MODEL_FAMILIES.get(value, str(value))


PAPER_CONV = {"e3d_lstm": "3d", "convlstm": "2d", "predrnn": "2d", "predrnnpp": "2d"}
"""Each family's kernel in its paper: a row names the kernel only where it is off its family's paper's."""

PAPER_WINDOW = {"e3d_lstm": 2, "convlstm": 1, "predrnn": 1, "predrnnpp": 1}
"""Each family's temporal window in its paper (the frames its cell sees at a step): named only where it is off it."""

CELL_AXES = ("conv", "window")
"""The axes that, with the family, make a family's cell: families compared as their papers built them differ in them."""


def at_paper_cell(family: Any, conv: Any, window: Any) -> bool:
    """Whether a row's kernel and window are its family's paper's (a value not recorded counts as the paper's)."""
    family = family if is_present(family) else "e3d_lstm"
    return (not is_present(conv) or conv == PAPER_CONV.get(family)) and (
        not is_present(window) or window == PAPER_WINDOW.get(family))  # fmt: skip


STUDY_AXES: tuple[Axis, ...] = (
    Axis("family", "model.name", "model", "e3d_lstm", shapes=True, phrase=_family_label, read=_family),
    Axis("conv", "model.conv", "convolution", "3d", shapes=True, phrase=lambda v: f"{v} convolution"),
    Axis(
        "residual",
        "model.residual",
        "residual connections",
        False,
        phrase=_residual_phrase,
        derive=_residual,
        reads=("model.residual_gate",),
    ),
    Axis("memory_flow", "model.memory_flow", "memory flow", "released", phrase=lambda v: f"{v} memory flow"),
    Axis("recall", "model.recall", "recall", "released", phrase=lambda v: "no recall" if v == "off" else f"{v} recall"),
    Axis("output_gate", "model.output_gate", "output gate", "released", phrase=lambda v: f"{v} output gate"),
    Axis("l1_weight", "loss.l1_weight", "l1 weight", RELEASE_L1_WEIGHT, phrase=_weight),
    Axis("init", "train.init_from", "initialisation", "scratch", phrase=str, derive=_init),
)
"""The study's axes and the release-vs-paper switches, in the order a row's name and a table's rows use."""

IDENTITY: tuple[Axis, ...] = (
    Axis("dataset", "data.dataset", "dataset", "moving_mnist"),
    Axis("seed", "train.seed", "seed", 0),
)
"""What identifies a run without making a table row: datasets are columns, seeds are averaged over."""

RECORDED: tuple[Axis, ...] = (IDENTITY[0], *STUDY_AXES, IDENTITY[1])
"""What every run records as its axes (summary.json, W&B's config), in this order."""


SHAPE_KEYS = frozenset({"model.name", "model.hidden", "model.conv", "model.filter_size", "model.window",
                        "model.patch_size", "model.layer_norm", "data.channels"})  # fmt: skip
"""Config keys whose value changes the model's weight shapes."""

_RESERVED = frozenset({"step", "status", "name", "variant", "mse", "mae", "ssim", "psnr", "test_set", "command"})


def axis(key: str) -> Axis:
    """The axis of a dotted config key (or of an axis name from the table): the table's entry, else one derived."""
    for known in RECORDED:
        if key in (known.name, known.key):
            return known
    return _derived(key)


@functools.cache
def _derived(key: str) -> Axis:
    if key not in valid_keys():
        raise KeyError(f"{key!r} is not a config key")
    last = key.rsplit(".", 1)[-1]
    taken = {a.name for a in RECORDED} | _RESERVED
    name = last if last not in taken else key.replace(".", "_")
    default = Axis(name, key, name, None).of(to_dict(Config()))
    return Axis(name, key, last.replace("_", " "), default, shapes=key in SHAPE_KEYS)


def is_axis_key(key: str) -> bool:
    """Whether a dotted config key can be an axis: it changes what a run computes (``core.config.UNHASHED`` lists
    those that say where or how a run is recorded or executed), and it is not the variant's name."""
    return key != "variant" and key not in UNHASHED


def axis_values(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A resolved config (nested dicts, as config.yaml holds it) as ``{dotted key: canonical value}`` for every key
    that can be an axis; a key the record predates reads as the value runs had before it (``BEFORE_FIELD``)."""
    values: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{name}.")
            elif is_axis_key(f"{prefix}{name}"):
                values[f"{prefix}{name}"] = canonical(value)

    walk(config or {}, "")
    for key, before in BEFORE_FIELD.items():
        values.setdefault(key, canonical(before))
    for key, default in _defaults().items():  # a field added later without a BEFORE_FIELD entry: its default
        values.setdefault(key, default)
    for key in inert_fields(values):  # a value that computes nothing here (a BEFORE_FIELD fill included): the default
        values[key] = _defaults()[key]
    return values


@functools.cache
def _defaults() -> dict[str, Any]:
    return {key: canonical(axis(key).release) for key in valid_keys() if is_axis_key(key)}


def recorded_axes(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every run's recorded axes and its variant, from its resolved config as nested dicts."""
    config = config or {}
    return {"variant": config.get("variant"), **{a.name: a.of(config) for a in RECORDED}}


def variant_name(values: Mapping[str, Any], axes: tuple[Axis, ...] = STUDY_AXES) -> str:
    """A readable name from a row's axis values: the study's axes where they differ from the release's E3D-LSTM, any
    other axis always (it is a row axis only where it varies, and its release value is nobody's to remember).

    ``{"conv": "3d"}`` -> "E3D-LSTM"; ``{"conv": "2d"}`` -> "E2D-LSTM"; residuals, finetuned, l1 weight 1 ->
    "E3D-LSTM + residuals, l1 only, finetuned"; with ``train.lr`` an axis: "E3D-LSTM, lr=0.002". Another family is
    named by its label, then its kernel where it is off its paper's (:data:`PAPER_CONV`), then its residuals:
    ``{"family": "convlstm", "conv": "3d", "residual": True}`` -> "ConvLSTM, 3D kernels, residuals".
    """
    family = values.get("family")
    details = []
    if not is_present(family) or family == "e3d_lstm":
        name = "E2D-LSTM" if values.get("conv") == "2d" else "E3D-LSTM"
        if values.get("residual"):
            name += f" + {_residual_phrase(values['residual'])}"
    else:  # another family: "ConvLSTM, 3D kernels, residuals"
        name = _family_label(family)
        conv = values.get("conv")
        if is_present(conv) and conv != PAPER_CONV.get(family, "2d"):
            details.append(f"{str(conv).upper()} kernels")
        if values.get("residual"):
            details.append(_residual_phrase(values["residual"]))
    for each in axes:
        value = values.get(each.name)
        if each.name in ("family", "conv", "residual") or not is_present(value):
            continue
        if each.key == "model.window" and value == PAPER_WINDOW.get(family if is_present(family) else "e3d_lstm"):
            continue  # its family's paper's window, as its kernel: part of the family's name
        if each not in STUDY_AXES or not each.is_release(value):  # another key is named whenever it is a row axis
            details.append(each.describe(value))
    return ", ".join([name, *details])


def is_present(value: Any) -> bool:
    """Neither None nor NaN (a missing value in a record or a pandas frame)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))
