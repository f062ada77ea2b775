"""The E3D-LSTM release's command line (its ``run.py`` flags, which the study's scripts pass), as a variant and our
overrides, so ``python launch.py train <the release's flags>`` runs with no variant file.

Most of the release's flags are aliases of config keys (:data:`core.config.ALIASES`: ``--num_hidden``, ``--lr``, ...)
and pass through. The flags below are the rest: they pick the variant (``--dataset_name``), the command
(``--is_training``), the data files, where the run is written, or only tuned TensorFlow. Each is either translated,
accepted with a note that it does nothing here, or refused with a reason that names it (:data:`FLAGS`).
``--model_name`` also takes the model names of the study's fork (:data:`MODELS`), so its scripts run as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.axes import SHAPE_KEYS
from core.config import ALIASES, Config, ConfigError, coerce, is_plain_name, load, parse_overrides, to_dict

ROOT = Path(__file__).resolve().parent
DATASETS = {"mnist": "moving_mnist", "action": "kth", "kth": "kth"}
"""The release's --dataset_name values (``action`` is KTH Action) -> our data.dataset."""
BASELINES = {dataset: ROOT / dataset / "e3d_baseline.yaml" for dataset in ("moving_mnist", "kth")}
"""The variant a --dataset_name implies: that dataset's E3D-LSTM baseline (the release's model and settings)."""

FLAGS = {
    "is_training": "True trains; False evaluates --pretrained_model on --valid_data_paths (launch.py eval)",
    "dataset_name": "picks the variant: mnist -> ablations/moving_mnist/e3d_baseline.yaml, action (or kth) -> "
    "ablations/kth/e3d_baseline.yaml",
    "train_data_paths": "Moving MNIST: data.train_path (train on the file's sequences); KTH: data.root",
    "valid_data_paths": "Moving MNIST: data.test_path (the test file; validation uses data.val_size training "
    "sequences); KTH: must equal --train_data_paths (test persons 17-25 come from the same folders)",
    "save_dir": "the run folder, holding checkpoints/ and the whole run record: train.runs_dir = its parent, "
    "train.run_name = its name",
    "gen_frm_dir": "tracking.frames_dir: the test's frames are copied there (they stay in the run's frames/); "
    "evaluating, the eval's JSON and frames go there",
    "model_name": "the model (model.name e3d_lstm): e3d_lstm, the release's E3D-LSTM, is the variant's model as it "
    "is; the study's fork adds original_e3d_lstm (model.conv=2d, model.residual=false: its committed code has 1x5x5 "
    "kernels) and original_e3d_lstm_residuals (model.conv=3d, model.residual=true); e3d_lstm_concat and e3d_lstm_add "
    "are refused (not built here), and so is original_e3d_lstm with --pretrained_model in training (its decoder "
    "froze)",
    "n_gpu": "multiplies the batch, as the release's run.py did: train.batch_size = batch_size x n_gpu, on one device "
    "(the study's run.py forced 4 GPUs, so --n_gpu 4 reproduces its effective batch; without the flag nothing is "
    "multiplied)",
    "num_save_samples": "tracking.frames: test sequences drawn in the frame grids and GIF",
    "scheduled_sampling": "True: the schedule of the sampling flags; False: train.sampling_start=0 and "
    "train.sampling_rate=0 (the model always feeds back its own predictions, as the release did)",
    "reverse_input": "False is accepted (our default); True is refused: the release also trained on each batch "
    "reversed in time, an augmentation we do not have",
    "stride": "1 is accepted (the release's only value); any other is refused: the cell's convolutions have stride 1",
    "allow_gpu_growth": "accepted, does nothing: it tuned TensorFlow's GPU memory allocation",
    "model_graph": "accepted, does nothing: it tuned TensorFlow's graph",
    "log_dir": "accepted, does nothing: it named TensorBoard's folder; the run's logs (metrics.jsonl, summary.json, "
    "W&B's offline folder) are written inside the run folder (--save_dir)",
    "log_interval": "accepted, does nothing: it spaced TensorBoard's summaries of the training loss; the training loss "
    "is logged every train.log_every steps (--display_interval)",
}
"""The release's flags that are not plain aliases of a config key, and what each becomes (the table in
docs/coming-from-the-release.md)."""
IGNORED = ("allow_gpu_growth", "model_graph", "log_dir", "log_interval")
"""Flags accepted with a note that they do nothing here."""
MODELS = {
    "e3d_lstm": [],
    "original_e3d_lstm": [("model.conv", "2d"), ("model.residual", "false")],
    "original_e3d_lstm_residuals": [("model.conv", "3d"), ("model.residual", "true")],
}
"""--model_name -> the switches its code hard-codes (set before the other flags, so an override after them wins).
``e3d_lstm`` is the release's model: the variant's, as it is. The other two are the study's fork's
``src/models/original_e3d_lstm_net.py`` and ``original_e3d_lstm_residuals.py`` as committed: the release's network
with kernels ``[1, 5, 5]`` (the fork edited that line by hand between runs: its kth_155kernel.sh and
kth_orig_3D_baseline.sh pass the same flags), and with ``[2, 5, 5]`` and the study's residual wiring."""
MODEL_NOTES = {
    "original_e3d_lstm": "model.conv=2d, model.residual=false: the study's fork as committed has 1x5x5 kernels in "
    "original_e3d_lstm_net.py, which it edited by hand between runs (its scripts named 3D pass the same "
    "flags as those named 155kernel); add --model.conv=3d after the flags for 2x5x5 kernels",
    "original_e3d_lstm_residuals": "model.conv=3d, model.residual=true: the study's residual wiring (layer 2 takes "
    "H_1 + H_0, the decoder H_{L-1} + H_{L-2})",
}
REFUSED_MODELS = {
    "e3d_lstm_concat": "the study's 3D-encoder / 2D-LSTM experiment whose decoder reads every layer's hidden state "
    "concatenated, with a square-rooted l2 loss, is not built here",
    "e3d_lstm_add": "the study's 3D-encoder / 2D-LSTM experiment whose decoder reads the sum of every layer's hidden "
    "state, with a doubled l2 loss, is not built here",
}
"""The fork's other --model_name values (its ``model_factory.networks_map``), and why each is refused."""


def present(args: list[str]) -> bool:
    """Whether a command line holds any of the release's own flags (beyond the aliases of config keys)."""
    return any(arg.removeprefix("--").split("=", 1)[0].replace("-", "_") in FLAGS for arg in args if arg[:2] == "--")


@dataclass
class ReleaseRun:
    """A release command line as our terms: a variant file and overrides, and what to run."""

    variant: Path
    overrides: list[str]  # --key=value, for core.config.load
    evaluate: bool = False  # --is_training False
    checkpoint: str | None = None  # --pretrained_model, when evaluating
    test_path: str | None = None  # --valid_data_paths, when evaluating
    frames_dir: str | None = None  # --gen_frm_dir, when evaluating
    notes: list[str] = field(default_factory=list)


def _refuse(flag: str, value: str, why: str) -> ConfigError:
    return ConfigError(f"command line: --{flag} {value}: {why}")


def _boolean(flag: str, value: str) -> bool:
    return coerce(value, bool, f"--{flag}", "command line")


def translate(args: list[str], variant: str | Path | None = None, profile: str | None = None) -> ReleaseRun:
    """Translate the release's flags in ``args`` (other overrides pass through) for ``variant``, or for the baseline
    variant that ``--dataset_name`` implies. Raises ConfigError naming a refused flag and why."""
    passed: list[tuple[str, str]] = []
    release: dict[str, str] = {}
    for key, value in parse_overrides(args):
        if key in FLAGS:
            if key in release:
                raise ConfigError(f"command line: --{key} given twice")
            release[key] = value
        else:
            passed.append((key, value))
    notes = [f"--{flag} does nothing here: {FLAGS[flag].split(': ', 1)[1]}" for flag in IGNORED if flag in release]
    evaluate = "is_training" in release and not _boolean("is_training", release["is_training"])
    pretrained = [value for key, value in passed if ALIASES.get(key, key) == "train.init_from"]  # --pretrained_model
    model = _model(release.get("model_name", "e3d_lstm"), finetuning=bool(pretrained) and not evaluate, notes=notes)
    if "reverse_input" in release and _boolean("reverse_input", release["reverse_input"]):
        raise _refuse("reverse_input", release["reverse_input"], "the release also trained on each batch reversed in "
                      "time; we have no such augmentation (pass False, or leave the flag out)")  # fmt: skip
    if "stride" in release and coerce(release["stride"], int, "--stride", "command line") != 1:
        raise _refuse("stride", release["stride"], "the cell's convolutions have stride 1, as the release's did")

    dataset = _dataset(release, variant)
    if variant is None:
        variant = BASELINES[dataset]
    ours: list[tuple[str, str]] = []
    train_paths, valid_paths = release.get("train_data_paths"), release.get("valid_data_paths")
    if dataset == "kth":
        if train_paths and valid_paths and Path(train_paths) != Path(valid_paths):
            raise _refuse("valid_data_paths", valid_paths, f"KTH's test persons (17-25) are read from the frame "
                          f"folders of --train_data_paths ({train_paths}), which must be the same folder")  # fmt: skip
        if train_paths or valid_paths:
            ours.append(("data.root", train_paths or valid_paths))
    else:
        if train_paths and not evaluate:
            ours.append(("data.train_path", train_paths))
        if valid_paths and not evaluate:
            ours.append(("data.test_path", valid_paths))
    if "save_dir" in release:
        ours += _run_folder(release["save_dir"])
    if "gen_frm_dir" in release and not evaluate:
        ours.append(("tracking.frames_dir", release["gen_frm_dir"]))
    if "num_save_samples" in release:
        ours.append(("tracking.frames", release["num_save_samples"]))
    if "scheduled_sampling" in release and not _boolean("scheduled_sampling", release["scheduled_sampling"]):
        ours += [("train.sampling_start", "0"), ("train.sampling_rate", "0")]  # after the sampling flags: they win
    checkpoint = None
    if evaluate:
        if not pretrained:
            raise ConfigError("command line: --is_training False evaluates --pretrained_model, which is missing")
        checkpoint = pretrained[-1]  # the last wins, as for every override
        passed = [(key, value) for key, value in passed if ALIASES.get(key, key) != "train.init_from"]
    elif pretrained:
        # The release's Saver restored every variable, Adam's moments and step count with the weights, and the study's
        # finetunes went on from them: so does a finetune here (a later --train.init_optimizer=fresh wins).
        model = [*model, ("train.init_optimizer", "restore")]
        notes.append("--pretrained_model: Adam's state is restored with the weights, as the release's Saver did "
                     "(train.init_optimizer=restore; add --train.init_optimizer=fresh for a fresh Adam)")  # fmt: skip
    overrides = [f"--{key}={value}" for key, value in [*model, *passed, *ours]]
    if "n_gpu" in release:
        overrides = _batch_times_gpus(release["n_gpu"], variant, overrides, profile, notes)
    if evaluate and dataset == "kth" and valid_paths:
        notes.append(f"--valid_data_paths {valid_paths}: KTH is evaluated on the test persons under the checkpoint's "
                     "data.root")  # fmt: skip
    test_path = valid_paths if evaluate and dataset != "kth" else None
    frames_dir = release.get("gen_frm_dir") if evaluate else None
    return ReleaseRun(Path(variant), overrides, evaluate, checkpoint, test_path, frames_dir, notes)


def _model(name: str, finetuning: bool, notes: list[str]) -> list[tuple[str, str]]:
    """The switches --model_name ``name`` implies (:data:`MODELS`), with a note saying what they are; a refused name
    errors. ``finetuning``: training from --pretrained_model."""
    if name in REFUSED_MODELS:
        raise _refuse("model_name", name, f"{REFUSED_MODELS[name]} (model.name e3d_lstm only)")
    if name not in MODELS:
        raise _refuse("model_name", name, f"not a model of the release or the study's fork ({', '.join(MODELS)})")
    if name == "original_e3d_lstm" and finetuning:
        raise _refuse("model_name", name, "with --pretrained_model the fork's original_e3d_lstm_net.py froze the "
                      "decoder (trainable=False) and finetuned the rest; we have no frozen decoder. Train from "
                      "scratch (no --pretrained_model), or finetune every weight with "
                      "--model_name e3d_lstm")  # fmt: skip
    if name in MODEL_NOTES:
        notes.append(f"--model_name {name}: {MODEL_NOTES[name]}")
    return MODELS[name]


def _dataset(release: dict[str, str], variant: str | Path | None) -> str:
    name = release.get("dataset_name")
    if name is not None and name not in DATASETS:
        raise _refuse("dataset_name", name, f"not one of the release's datasets ({', '.join(DATASETS)})")
    if variant is None:
        if name is None:
            raise ConfigError("command line: the release's flags need --dataset_name (mnist or action) to pick the "
                              "baseline variant, or a variant file before them")  # fmt: skip
        return DATASETS[name]
    dataset = load(variant, ["--data.root=."]).data.dataset  # a placeholder root: a KTH variant names none yet
    if name is not None and DATASETS[name] != dataset:
        raise _refuse("dataset_name", name, f"the variant {variant} is a {dataset} variant")
    return dataset


def _run_folder(save_dir: str) -> list[tuple[str, str]]:
    folder = Path(save_dir)
    if not is_plain_name(folder.name):
        raise _refuse("save_dir", save_dir, "must end in a folder name: it becomes the run folder")
    return [("train.runs_dir", str(folder.parent)), ("train.run_name", folder.name)]


def _batch_times_gpus(
    value: str, variant: str | Path, overrides: list[str], profile: str | None, notes: list[str]
) -> list[str]:
    """``overrides`` with train.batch_size multiplied by --n_gpu (the variant's batch size when no flag sets it)."""
    gpus = coerce(value, int, "--n_gpu", "command line")
    if gpus < 1:
        raise _refuse("n_gpu", value, "must be at least 1")
    batch = load(variant, overrides, profile).train.batch_size
    kept = [arg for arg in overrides if ALIASES.get(_key(arg), _key(arg)) != "train.batch_size"]
    notes.append(f"--n_gpu {gpus}: train.batch_size = {batch} x {gpus} = {batch * gpus} on one device, the "
                 "release's effective batch")  # fmt: skip
    return [*kept, f"--train.batch_size={batch * gpus}"]


def _key(arg: str) -> str:
    return arg[2:].split("=", 1)[0].replace("-", "_")


def explicit_keys(overrides: list[str]) -> list[str]:
    """The dotted config keys that ``overrides`` set."""
    return [ALIASES.get(_key(arg), _key(arg)) for arg in overrides]


def check_against(cfg: Config, checkpoint_cfg: Config, keys: list[str], checkpoint: str) -> None:
    """Refuse flags that contradict the checkpoint being evaluated (its weights' shapes and its frames)."""
    frames = {"data.image_size", "data.context_frames", "data.total_frames"}
    ours, theirs = _flat(cfg), _flat(checkpoint_cfg)
    for key in keys:
        if key in SHAPE_KEYS | frames and ours[key] != theirs[key]:
            raise ConfigError(f"command line: {key} {ours[key]} disagrees with the checkpoint {checkpoint}, trained "
                              f"with {key} {theirs[key]}; leave the flag out or match it")  # fmt: skip


def _flat(cfg: Config) -> dict:
    return {f"{section}.{key}": value for section, values in to_dict(cfg).items() if isinstance(values, dict)
            for key, value in values.items()}  # fmt: skip


def as_variant_yaml(cfg: Config, run: ReleaseRun, base: Path, command: str, profile: str | None = None) -> str:
    """A variant file that gives ``cfg``: ``extends`` the variant the flags imply (``base``, as the file will find it)
    and sets every key the flags set, at its typed value."""
    import yaml

    keys = list(dict.fromkeys(explicit_keys(run.overrides)))
    flat = _flat(cfg)
    tree: dict = {"extends": str(base)}
    for key in keys:
        if key in flat:
            section, name = key.split(".", 1)
            tree.setdefault(section, {})[name] = flat[key]
        else:
            tree[key] = getattr(cfg, key)
    header = [
        "# The release's flags as a variant (launch.py config --from-release):",
        *(f"#   {line}" for line in _wrapped(command)),
        "# Train it with: python launch.py train THIS_FILE" + (f" --profile {profile}" if profile else ""),
    ]
    if run.evaluate:
        header.append(f"# --is_training False evaluates: python launch.py eval {run.checkpoint}"
                      + (f" --data {run.test_path}" if run.test_path else "")
                      + (f" --out {run.frames_dir}" if run.frames_dir else ""))  # fmt: skip
    header += [f"# note: {note}" for note in run.notes]

    class Dumper(yaml.SafeDumper):
        """Block mappings, lists on one line ([64, 64])."""

    Dumper.add_representer(list, lambda dumper, items: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", items, flow_style=True))  # fmt: skip
    return "\n".join(header) + "\n" + yaml.dump(tree, Dumper=Dumper, sort_keys=False, default_flow_style=False)


def _wrapped(text: str, width: int = 112) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines
