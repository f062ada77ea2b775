"""The study's README Quick Start runs as written: the release's flags, no variant file."""

import shlex
from pathlib import Path

import numpy as np
import pytest

import launch
from ablations.release_flags import FLAGS, translate
from ablations.variants import load_variant
from core.config import load
from core.data.formats import write_release_npz
from core.trainer import load_checkpoint

QUICK_START = (
    "python launch.py train --is_training True --dataset_name mnist "
    "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
    "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz --save_dir checkpoints/_mnist_e3d_lstm "
    "--gen_frm_dir results/_mnist_e3d_lstm --model_name e3d_lstm --allow_gpu_growth True --img_channel 1 "
    "--img_width 64 --input_length 10 --total_length 20 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 "
    "--layer_norm True --sampling_stop_iter 50000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 "
    "--lr 0.001 --batch_size 4 --max_iterations 1 --display_interval 1 --test_interval 1 --snapshot_interval 10000"
)
TINY = {"--img_width": "16", "--input_length": "2", "--total_length": "4", "--num_hidden": "4,4"}
"""Sizes that train one step in a second; every flag of the Quick Start stays on the command line."""


def quick_start(**flags: str) -> list[str]:
    """The Quick Start's arguments after `python launch.py`, at the tiny sizes, with ``flags`` set (replaced where
    the Quick Start has them, else appended)."""
    args = shlex.split(QUICK_START)[2:]
    values = {**TINY, **{f"--{key}": value for key, value in flags.items()}}
    args = [values.get(args[i - 1], arg) if i and args[i - 1] in values else arg for i, arg in enumerate(args)]
    return args + [item for key, value in values.items() if key not in args for item in (key, value)]


def release_flags(**flags: str) -> list[str]:
    """The Quick Start's flags alone (no `train`), as :func:`quick_start` sets them."""
    return quick_start(**flags)[1:]


@pytest.fixture
def study_folder(tmp_path, monkeypatch) -> Path:
    """A working folder holding the Quick Start's data files: 3 train and 2 valid tiny sequences, release npz."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rng = np.random.default_rng(0)
    for name, num in (("train", 3), ("valid", 2)):
        path = tmp_path / "data" / "moving-mnist-example" / f"moving-mnist-{name}.npz"
        write_release_npz(path, rng.integers(0, 256, (num, 4, 16, 16), dtype=np.uint8), context_frames=2)
    return tmp_path


def test_the_quick_start_trains_and_then_evaluates_its_checkpoint(study_folder, capsys):
    assert launch.main(quick_start()) == 0
    captured = capsys.readouterr()
    assert "note: --allow_gpu_growth does nothing here" in captured.err
    run = study_folder / "checkpoints" / "_mnist_e3d_lstm"
    checkpoint = run / "checkpoints" / "last.pt"
    assert f"finished: {Path('checkpoints/_mnist_e3d_lstm')} (step 1)" in captured.out
    state = load_checkpoint(checkpoint)
    assert state["step"] == 1 and state["config"]["model"]["hidden"] == [4, 4]
    assert state["config"]["data"]["train_path"] == "data/moving-mnist-example/moving-mnist-train.npz"
    assert (run / "config.yaml").is_file() and (run / "summary.json").is_file()  # the whole run record
    frames = {path.name for path in (study_folder / "results" / "_mnist_e3d_lstm").iterdir()}
    assert frames == {"test_step1.png", "test_step1.gif", "test_step1.npz"}
    assert frames <= {path.name for path in (run / "frames").iterdir()}

    evaluate = quick_start(is_training="False") + ["--pretrained_model", str(checkpoint)]
    assert launch.main(evaluate) == 0
    assert "moving-mnist-valid.npz" in capsys.readouterr().out
    written = {path.name for path in (study_folder / "results" / "_mnist_e3d_lstm").iterdir()}
    assert {"eval-moving-mnist-valid-ours.json", "eval-moving-mnist-valid-ours.png"} <= written

    assert launch.main(evaluate[:-2] + ["--num_hidden", "8,8", "--pretrained_model", str(checkpoint)]) == 2
    assert "model.hidden" in capsys.readouterr().err  # a flag that contradicts the checkpoint


def test_evaluating_needs_the_checkpoint(study_folder, capsys):
    assert launch.main(quick_start(is_training="False")) == 2
    assert "--pretrained_model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, why",
    [
        ("model_name", "predrnn", "only e3d_lstm"),
        ("dataset_name", "bair", "not one of the release's datasets"),
        ("log_dir", "logs/x", "inside the run folder"),
        ("reverse_input", "True", "reversed in time"),
        ("stride", "2", "stride 1"),
        ("n_gpu", "0", "at least 1"),
        ("is_training", "maybe", "true or false"),
        ("save_dir", "/", "folder name"),
    ],
)
def test_a_refused_flag_errors_naming_it_and_why(study_folder, capsys, flag, value, why):
    assert launch.main(quick_start(**{flag: value})) == 2
    err = capsys.readouterr().err
    assert f"--{flag}" in err and why in err
    assert not (study_folder / "checkpoints").exists()


def test_flags_translate_to_our_keys():
    run = translate(release_flags(n_gpu="4", scheduled_sampling="False", num_save_samples="2", reverse_input="False"))
    assert run.variant.name == "e3d_baseline.yaml" and run.variant.parent.name == "moving_mnist"
    cfg = load(run.variant, run.overrides)
    assert cfg.train.batch_size == 16  # batch_size x n_gpu, as the release's run.py drew it
    assert (cfg.train.sampling_start, cfg.train.sampling_rate) == (0.0, 0.0)
    assert cfg.tracking.frames == 2 and cfg.model.layer_norm is True
    assert (cfg.train.runs_dir, cfg.train.run_name) == ("checkpoints", "_mnist_e3d_lstm")
    assert cfg.data.test_path.endswith("moving-mnist-valid.npz")
    kth = translate(["--dataset_name", "action", "--train_data_paths", "data/kth", "--valid_data_paths", "data/kth"])
    assert load(kth.variant, kth.overrides).data.root == "data/kth"
    assert set(FLAGS) >= {"is_training", "save_dir", "gen_frm_dir", "n_gpu", "scheduled_sampling", "log_dir"}


def test_config_from_release_writes_a_variant_that_gives_the_same_config(study_folder, capsys):
    flags = shlex.join(release_flags(n_gpu="2"))
    out = study_folder / "variants" / "quick_start.yaml"
    assert launch.main(["config", "--from-release", flags, "--out", str(out)]) == 0
    run = translate(release_flags(n_gpu="2"))
    assert load_variant(out) == load_variant(run.variant, run.overrides)
    assert load_variant(out).train.batch_size == 8
    assert launch.main(["config", "--from-release", flags]) == 0
    printed = capsys.readouterr().out
    assert "extends: " in printed and "hidden:" in printed and "# note: --allow_gpu_growth" in printed


def test_the_flags_also_override_a_variant_file_of_their_dataset(study_folder, capsys):
    kth = str(Path(launch.__file__).parent / "ablations" / "kth" / "e3d_baseline.yaml")
    assert launch.main(["train", kth, "--dataset_name", "mnist"]) == 2
    assert "--dataset_name mnist: the variant" in capsys.readouterr().err
    run = translate(release_flags(), Path(launch.__file__).parent / "ablations" / "moving_mnist" / "residual.yaml")
    assert load(run.variant, run.overrides).model.residual is True


def test_a_training_file_is_what_the_run_trains_and_validates_on(study_folder):
    from core.data.formats import read_release_npz
    from core.data.sources import build_data

    run = translate(release_flags())
    cfg = load(run.variant, run.overrides)
    data = build_data(cfg.data, batch_size=4, seed=0)  # no MNIST digits needed: both sets are files
    known = read_release_npz(cfg.data.train_path).frames  # (3, 4, 1, 16, 16) float32
    batch = next(data.train_batches(0))  # (4, 4, 1, 16, 16)
    assert batch.shape == (4, 4, 1, 16, 16)
    assert all(any(np.array_equal(sequence.numpy(), seen) for seen in known) for sequence in batch)
    assert len(data.val) == 3 and len(data.test) == 2 and "moving-mnist-valid.npz" in data.test_name
