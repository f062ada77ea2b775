"""The study's README Quick Start and every script of its scripts/ folder run as written (the release's flags, no
variant file), or are refused with an error naming the flag and why."""

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

import launch
from ablations.release_flags import FLAGS, MODELS, REFUSED_MODELS, translate
from core.config import ALIASES, load
from core.data.formats import write_release_npz
from core.trainer import load_checkpoint
from core.variants import load_variant

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
        ("model_name", "predrnn", "not a model of the release or the study's fork"),
        ("model_name", "e3d_lstm_add", "not built here"),
        ("dataset_name", "bair", "not one of the release's datasets"),
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
    assert translate(release_flags()).overrides == translate(release_flags(model_name="e3d_lstm")).overrides


def test_the_forks_model_names_set_what_their_code_hard_codes_and_a_later_flag_wins():
    switches = {name: load(run.variant, run.overrides).model for name in MODELS
                for run in [translate(release_flags(model_name=name))]}  # fmt: skip
    assert {name: (m.conv, m.residual) for name, m in switches.items()} == SWITCHES
    run = translate([*release_flags(model_name="original_e3d_lstm"), "--model.conv=3d"])  # the fork's 2x5x5 runs
    assert load(run.variant, run.overrides).model.conv == "3d" and "edited by hand" in " ".join(run.notes)


def test_a_finetune_restores_adams_state_as_the_releases_saver_did():
    finetune = release_flags(pretrained_model="pretrain/model.ckpt-80000")
    run = translate(finetune)
    cfg = load(run.variant, run.overrides)
    assert (cfg.train.init_from, cfg.train.init_optimizer) == ("pretrain/model.ckpt-80000", "restore")
    assert any("Adam's state is restored" in note for note in run.notes)
    fresh = translate([*finetune, "--train.init_optimizer=fresh"])  # a later override wins
    assert load(fresh.variant, fresh.overrides).train.init_optimizer == "fresh"
    scratch = translate(release_flags())
    assert load(scratch.variant, scratch.overrides).train.init_optimizer == "fresh"


def test_log_dir_and_log_interval_are_accepted_with_a_note(study_folder, capsys):
    run = translate(release_flags(log_dir="logs/x", log_interval="500"))
    assert run.overrides == translate(release_flags()).overrides
    flags = [note.split(" does nothing")[0] for note in run.notes]
    assert flags == ["--allow_gpu_growth", "--log_dir", "--log_interval"]


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


def test_the_readme_table_names_every_release_flag():
    """The section "Coming from the study's or the release's code" (docs/coming-from-the-release.md, linked from the
    README) lists every flag :data:`FLAGS` translates and every alias of a config key, and every --model_name of the
    fork."""
    readme = (Path(launch.__file__).parent / "docs" / "coming-from-the-release.md").read_text()
    section = readme.split("## Coming from the study's or the release's code", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`--(\w+)", section))
    assert set(FLAGS) | set(ALIASES) - {"wandb"} <= named
    assert all(f"`{name}`" in section for name in [*MODELS, *REFUSED_MODELS])


STUDY_SCRIPTS = {
    "3Denc_2Dlstm_3Ddec_kth_train.sh": (
        "--is_training True --dataset_name action --train_data_paths data/kth --valid_data_paths data/kth "
        "--log_dir logs/_3Denc_2Dlstm_3Ddec_kth_train --save_dir checkpoints/_3Denc_2Dlstm_3Ddec_kth_train "
        "--gen_frm_dir results/_3Denc_2Dlstm_3Ddec_kth_train --model_name e3d_lstm --allow_gpu_growth True "
        "--img_channel 1 --img_width 128 --input_length 10 --total_length 30 --filter_size 5 "
        "--num_hidden 64,64,64,64 --patch_size 8 --layer_norm True --reverse_input False "
        "--sampling_stop_iter 100000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00001 --lr 0.001 "
        "--batch_size 2 --max_iterations 200000 --display_interval 10000 --test_interval 10000 "
        "--snapshot_interval 2500 --log_interval 2500"
    ),
    "3Denc_2Dlstm_3Ddec_mm_train_4layer_add.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--pretrained_model mm_e3d_lstm_pretrain/model.ckpt-80000 --log_dir logs/_mm_orig_2D_fixed_dec "
        "--save_dir checkpoints/_mm_orig_2D_fixed_dec --gen_frm_dir results/_mm_orig_2D_fixed_dec "
        "--model_name e3d_lstm --allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 "
        "--total_length 20 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True "
        "--sampling_stop_iter 50000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 "
        "--batch_size 4 --max_iterations 80000 --display_interval 500 --test_interval 500 "
        "--snapshot_interval 500 --log_interval 500"
    ),
    "3Denc_2Dlstm_3Ddec_mm_train_4layer_concat.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--log_dir logs/_3Denc_2Dlstm_3Ddec_l2l1loss_4layer_concat "
        "--save_dir checkpoints/_mnist_3Denc_2Dlstm_3Ddec_4layer_concat "
        "--gen_frm_dir results/_mnist_3Denc_2Dlstm_3Ddec_4layer_concat --model_name e3d_lstm_concat "
        "--allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 --total_length 20 "
        "--filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True --sampling_stop_iter 50000 "
        "--sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 --batch_size 4 "
        "--max_iterations 80000 --display_interval 500 --test_interval 500 --snapshot_interval 500 "
        "--log_interval 500"
    ),
    "3Denc_2Dlstm_3Ddec_mm_train_fixed_dec.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--pretrained_model mm_e3d_lstm_pretrain/model.ckpt-80000 --log_dir logs/_mm_orig_2D_fixed_dec "
        "--save_dir checkpoints/_mm_orig_2D_fixed_dec --gen_frm_dir results/_mm_orig_2D_fixed_dec "
        "--model_name e3d_lstm --allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 "
        "--total_length 20 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True "
        "--sampling_stop_iter 50000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 "
        "--batch_size 4 --max_iterations 80000 --display_interval 500 --test_interval 500 "
        "--snapshot_interval 500 --log_interval 500"
    ),
    "3Denc_2Dlstm_3Ddec_mm_train_from_scratch.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--log_dir logs/_3Denc_2Dlstm_3Ddec_l2l1loss_from_scratch "
        "--save_dir checkpoints/_mnist_3Denc_2Dlstm_3Ddec_from_scratch "
        "--gen_frm_dir results/_mnist_3Denc_2Dlstm_3Ddec_from_scratch --model_name e3d_lstm "
        "--allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 --total_length 20 "
        "--filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True --sampling_stop_iter 50000 "
        "--sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 --batch_size 4 "
        "--max_iterations 80000 --display_interval 500 --test_interval 500 --snapshot_interval 500 "
        "--log_interval 500"
    ),
    "e3d_lstm_kth_test.sh": (
        "--is_training False --dataset_name action --train_data_paths data/kth --valid_data_paths data/kth "
        "--pretrained_model kth_e3d_lstm_pretrain/model.ckpt-200000 --log_dir logs/_kth_e3d_lstm_test "
        "--save_dir checkpoints/_kth_e3d_lstm --gen_frm_dir results/_kth_e3d_lstm --model_name e3d_lstm "
        "--allow_gpu_growth True --img_channel 1 --img_width 128 --input_length 10 --total_length 30 "
        "--filter_size 5 --num_hidden 64,64,64,64 --patch_size 8 --layer_norm True --reverse_input False "
        "--sampling_stop_iter 100000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00001 --lr 0.001 "
        "--batch_size 2 --max_iterations 1 --display_interval 1 --test_interval 1 --snapshot_interval 5000"
    ),
    "e3d_lstm_kth_train.sh": (
        "--is_training True --dataset_name action --train_data_paths data/kth --valid_data_paths data/kth "
        "--pretrained_model kth_e3d_lstm_pretrain/model.ckpt-200000 --save_dir checkpoints/_kth_e3d_lstm "
        "--gen_frm_dir results/_kth_e3d_lstm --model_name e3d_lstm --allow_gpu_growth True --img_channel 1 "
        "--img_width 128 --input_length 10 --total_length 30 --filter_size 5 --num_hidden 64,64,64,64 "
        "--patch_size 8 --layer_norm True --reverse_input False --sampling_stop_iter 100000 "
        "--sampling_start_value 1.0 --sampling_delta_per_iter 0.00001 --lr 0.001 --batch_size 2 "
        "--max_iterations 50000 --display_interval 10 --test_interval 100 --snapshot_interval 100"
    ),
    "e3d_lstm_mm_test.sh": (
        "--is_training False --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--pretrained_model mm_e3d_lstm_pretrain/model.ckpt-80000 --log_dir logs/_mnist_e3d_lstm_test "
        "--save_dir checkpoints/_mnist_e3d_lstm --gen_frm_dir results/_mnist_e3d_lstm "
        "--model_name original_e3d_lstm_residuals --allow_gpu_growth True --img_channel 1 --img_width 64 "
        "--input_length 10 --total_length 20 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 "
        "--layer_norm True --sampling_stop_iter 50000 --sampling_start_value 1.0 "
        "--sampling_delta_per_iter 0.00002 --lr 0.001 --batch_size 4 --max_iterations 5 --display_interval 1 "
        "--test_interval 1 --snapshot_interval 10000 --log_interval 1"
    ),
    "e3d_lstm_mm_train.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--log_dir logs/_mnist_e3d_lstm_train --save_dir checkpoints/_mnist_e3d_lstm "
        "--gen_frm_dir results/_mnist_e3d_lstm --model_name e3d_lstm --allow_gpu_growth True --img_channel 1 "
        "--img_width 64 --input_length 10 --total_length 20 --filter_size 5 --num_hidden 64,64,64,64 "
        "--patch_size 4 --layer_norm True --sampling_stop_iter 50000 --sampling_start_value 1.0 "
        "--sampling_delta_per_iter 0.00002 --lr 0.001 --batch_size 4 --max_iterations 10000 "
        "--display_interval 50 --test_interval 50 --snapshot_interval 100 --log_interval 50"
    ),
    "kth_155kernel.sh": (
        "--is_training True --dataset_name action --train_data_paths data/kth --valid_data_paths data/kth "
        "--log_dir logs/_kth_155kernel_NEW --save_dir checkpoints/_kth_155kernel_NEW "
        "--gen_frm_dir results/_kth_155kernel_NEW --model_name original_e3d_lstm --allow_gpu_growth True "
        "--img_channel 1 --img_width 128 --input_length 10 --total_length 30 --filter_size 5 "
        "--num_hidden 64,64,64,64 --patch_size 8 --layer_norm True --reverse_input False "
        "--sampling_stop_iter 100000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00001 --lr 0.001 "
        "--batch_size 2 --max_iterations 200000 --display_interval 500 --test_interval 500 "
        "--snapshot_interval 500 --log_interval 500"
    ),
    "kth_finetune_residuals.sh": (
        "--is_training True --dataset_name action --train_data_paths data/kth --valid_data_paths data/kth "
        "--pretrained_model kth_e3d_lstm_pretrain/model.ckpt-200000 --log_dir logs/_kth_finetune_residuals "
        "--save_dir checkpoints/_kth_finetune_residuals --gen_frm_dir results/_kth_finetune_residuals "
        "--model_name original_e3d_lstm_residuals --allow_gpu_growth True --img_channel 1 --img_width 128 "
        "--input_length 10 --total_length 30 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 8 "
        "--layer_norm True --reverse_input False --sampling_stop_iter 100000 --sampling_start_value 1.0 "
        "--sampling_delta_per_iter 0.00001 --lr 0.00001 --batch_size 2 --max_iterations 200000 "
        "--display_interval 500 --test_interval 500 --snapshot_interval 500 --log_interval 500"
    ),
    "kth_orig_3D_baseline.sh": (
        "--is_training True --dataset_name action --train_data_paths data/kth --valid_data_paths data/kth "
        "--log_dir logs/_kth_baseline_NEW --save_dir checkpoints/_kth_baseline_NEW "
        "--gen_frm_dir results/_kth_baseline_NEW --model_name original_e3d_lstm --allow_gpu_growth True "
        "--img_channel 1 --img_width 128 --input_length 10 --total_length 30 --filter_size 5 "
        "--num_hidden 64,64,64,64 --patch_size 8 --layer_norm True --reverse_input False "
        "--sampling_stop_iter 100000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00001 --lr 0.001 "
        "--batch_size 2 --max_iterations 200000 --display_interval 500 --test_interval 500 "
        "--snapshot_interval 500 --log_interval 500"
    ),
    "kth_residuals_scratch.sh": (
        "--is_training True --dataset_name action --train_data_paths data/kth --valid_data_paths data/kth "
        "--log_dir logs/_kth_residuals_scratch --save_dir checkpoints/_kth_residuals_scratch "
        "--gen_frm_dir results/_kth_residuals_scratch --model_name original_e3d_lstm_residuals "
        "--allow_gpu_growth True --img_channel 1 --img_width 128 --input_length 10 --total_length 30 "
        "--filter_size 5 --num_hidden 64,64,64,64 --patch_size 8 --layer_norm True --reverse_input False "
        "--sampling_stop_iter 100000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00001 --lr 0.001 "
        "--batch_size 2 --max_iterations 200000 --display_interval 500 --test_interval 500 "
        "--snapshot_interval 500 --log_interval 500"
    ),
    "mm_orig_2D_fixed_dec_train.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--pretrained_model mm_e3d_lstm_pretrain/model.ckpt-80000 --log_dir logs/_mm_orig_2D_fixed_dec "
        "--save_dir checkpoints/_mm_orig_2D_fixed_dec --gen_frm_dir results/_mm_orig_2D_fixed_dec "
        "--model_name e3d_lstm --allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 "
        "--total_length 20 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True "
        "--sampling_stop_iter 50000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 "
        "--batch_size 4 --max_iterations 80000 --display_interval 500 --test_interval 500 "
        "--snapshot_interval 500 --log_interval 500"
    ),
    "mm_orig_2D_with_attn_155kernel_train.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--log_dir logs/_mm_orig_3D_with_attn_155kernel --save_dir checkpoints/_mm_orig_3D_with_attn_155kernel "
        "--gen_frm_dir results/_mm_orig_3D_with_attn_155_kernel --model_name original_e3d_lstm "
        "--allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 --total_length 20 "
        "--filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True --sampling_stop_iter 50000 "
        "--sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 --batch_size 4 "
        "--max_iterations 80000 --display_interval 500 --test_interval 500 --snapshot_interval 500 "
        "--log_interval 500"
    ),
    "mm_orig_3D_fine_tune_residuals_train.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--log_dir logs/_mm_orig_3D_residuals_fine_tune_l2only_second "
        "--pretrained_model mm_e3d_lstm_pretrain/model.ckpt-80000 "
        "--save_dir checkpoints/_mm_orig_3D_residuals_fine_tune_l2only_second "
        "--gen_frm_dir results/_mm_orig_3D_residuals_fine_tune_l2only_second "
        "--model_name original_e3d_lstm_residuals --allow_gpu_growth True --img_channel 1 --img_width 64 "
        "--input_length 10 --total_length 20 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 "
        "--layer_norm True --sampling_stop_iter 50000 --sampling_start_value 1.0 "
        "--sampling_delta_per_iter 0.00002 --lr 0.000001 --batch_size 4 --max_iterations 30000 "
        "--display_interval 500 --test_interval 500 --snapshot_interval 500 --log_interval 500"
    ),
    "mm_orig_3D_fixed_dec_train.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--pretrained_model mm_e3d_lstm_pretrain/model.ckpt-80000 --log_dir logs/_mm_orig_3D_fixed_dec "
        "--save_dir checkpoints/_mm_orig_3D_fixed_dec --gen_frm_dir results/_mm_orig_3D_fixed_dec "
        "--model_name original_e3d_lstm --allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 "
        "--total_length 20 --filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True "
        "--sampling_stop_iter 50000 --sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 "
        "--batch_size 4 --max_iterations 80000 --display_interval 500 --test_interval 500 "
        "--snapshot_interval 500 --log_interval 500"
    ),
    "mm_orig_3D_residuals_l1_only.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--log_dir logs/_mm_orig_3D_residuals_l1_only --save_dir checkpoints/_mm_orig_3D_residuals_l1_only "
        "--gen_frm_dir results/_mm_orig_3D_residuals_l1_only --model_name original_e3d_lstm_residuals "
        "--allow_gpu_growth True --img_channel 1 --img_width 64 --input_length 10 --total_length 20 "
        "--filter_size 5 --num_hidden 64,64,64,64 --patch_size 4 --layer_norm True --sampling_stop_iter 50000 "
        "--sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.0001 --batch_size 4 "
        "--max_iterations 30000 --display_interval 500 --test_interval 500 --snapshot_interval 500 "
        "--log_interval 500"
    ),
    "mm_orig_3D_with_attn_train.sh": (
        "--is_training True --dataset_name mnist "
        "--train_data_paths data/moving-mnist-example/moving-mnist-train.npz "
        "--valid_data_paths data/moving-mnist-example/moving-mnist-valid.npz "
        "--log_dir logs/_mm_orig_3D_with_attn --save_dir checkpoints/_mm_orig_3D_with_attn "
        "--gen_frm_dir results/_mm_orig_3D_with_attn --model_name original_e3d_lstm --allow_gpu_growth True "
        "--img_channel 1 --img_width 64 --input_length 10 --total_length 20 --filter_size 5 "
        "--num_hidden 64,64,64,64 --patch_size 4 --layer_norm True --sampling_stop_iter 50000 "
        "--sampling_start_value 1.0 --sampling_delta_per_iter 0.00002 --lr 0.001 --batch_size 4 "
        "--max_iterations 80000 --display_interval 500 --test_interval 500 --snapshot_interval 500 "
        "--log_interval 500"
    ),
}
"""The run.py flags of every script in the study's scripts/ folder, as each passes them (after the shell's quoting:
e3d_lstm_mm_test.sh writes 'False'). Paths are relative to the study's checkout, where each script `cd ..`s."""
SCRIPT_SIZES = ["--img_width", "8", "--patch_size", "2", "--num_hidden", "3,3", "--filter_size", "3", "--input_length",
                "3", "--total_length", "6", "--max_iterations", "1", "--test_interval", "1", "--snapshot_interval", "1",
                "--display_interval", "1"]  # fmt: skip
"""Appended after each script's flags (the last value wins): the model of the shipped release checkpoint
tests/fixtures/release_e3d/3d-ln (8x8 frames, patch 2, 2 x 3 hidden, 3x3 kernels, 3 frames in, 3 out), 1 iteration."""
REFUSED_SCRIPTS = {
    "3Denc_2Dlstm_3Ddec_mm_train_4layer_concat.sh": "--model_name e3d_lstm_concat: the study's 3D-encoder / 2D-LSTM",
    "mm_orig_3D_fixed_dec_train.sh": "--model_name original_e3d_lstm: with --pretrained_model the fork's "
    "original_e3d_lstm_net.py froze the decoder",
}
"""Scripts refused, and the start of the error each gets."""
SWITCHES = {"e3d_lstm": ("3d", False), "original_e3d_lstm": ("2d", False), "original_e3d_lstm_residuals": ("3d", True)}
"""--model_name -> (model.conv, model.residual) the run gets."""
RELEASE_FIXTURE = Path(__file__).parent / "fixtures" / "release_e3d" / "3d-ln"


@pytest.fixture
def study_checkout(tmp_path, monkeypatch) -> Path:
    """A folder laid out as the study's scripts expect: the Moving MNIST example files (release npz: 4 train and 2
    valid sequences of 6 8x8 frames, 3 of them input), a KTH frame tree data/kth (persons 01 to train, 16 to validate,
    17 to test; boxing and walking, 6 frames each), and the release's checkpoints mm_e3d_lstm_pretrain/model.ckpt-80000
    and kth_e3d_lstm_pretrain/model.ckpt-200000 (both the shipped 3d-ln fixture, renamed)."""
    from test_kth import make_clip

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rng = np.random.default_rng(0)
    for name, num in (("train", 4), ("valid", 2)):
        path = tmp_path / "data" / "moving-mnist-example" / f"moving-mnist-{name}.npz"
        write_release_npz(path, rng.integers(0, 256, (num, 6, 8, 8), dtype=np.uint8), context_frames=3)
    for person in (1, 16, 17):
        for action in ("boxing", "walking"):
            make_clip(tmp_path / "data" / "kth", action, person, range(1, 7), mode="L")
    for folder, step in (("mm_e3d_lstm_pretrain", 80000), ("kth_e3d_lstm_pretrain", 200000)):
        (tmp_path / folder).mkdir()
        for file in RELEASE_FIXTURE.glob("model.ckpt-2.*"):
            shutil.copy(file, tmp_path / folder / file.name.replace("ckpt-2.", f"ckpt-{step}."))
    return tmp_path


@pytest.mark.parametrize("script", sorted(STUDY_SCRIPTS))
def test_every_study_script_runs_or_is_refused_naming_the_flag(study_checkout, capsys, script):
    """Each script's flags, sizes shrunk after them: 1 iteration trained (checkpoint in --save_dir, the test's frames
    in --gen_frm_dir) or the release checkpoint evaluated (report and frames in --gen_frm_dir), on the model its
    --model_name means; or an error that names the flag and says why."""
    args = shlex.split(STUDY_SCRIPTS[script])
    flags = dict(zip(args[::2], args[1::2], strict=True))
    code = launch.main(["train", *args, *SCRIPT_SIZES])
    captured = capsys.readouterr()
    if script in REFUSED_SCRIPTS:
        assert code == 2 and f"error: command line: {REFUSED_SCRIPTS[script]}" in captured.err
        assert not (study_checkout / "checkpoints").exists()
        return
    assert code == 0, captured.err
    assert ("note: --log_dir does nothing here" in captured.err) == ("--log_dir" in flags)
    results = study_checkout / flags["--gen_frm_dir"]
    conv, residual = SWITCHES[flags["--model_name"]]
    if flags["--is_training"] == "False":  # the release's checkpoint, imported onto the flags' model and scored
        imported = load_checkpoint(results / f"{Path(flags['--pretrained_model']).name}.pt")
        assert (imported["config"]["model"]["conv"], imported["config"]["model"]["residual"]) == (conv, residual)
        assert len(list(results.glob("eval-*-ours.json"))) == 1 and not (study_checkout / "checkpoints").exists()
        return
    state = load_checkpoint(study_checkout / flags["--save_dir"] / "checkpoints" / "last.pt")
    cfg = state["config"]
    assert state["step"] == 1 and (cfg["model"]["conv"], cfg["model"]["residual"]) == (conv, residual)
    assert cfg["train"]["init_from"] == flags.get("--pretrained_model") and cfg["train"]["lr"] == float(flags["--lr"])
    assert cfg["data"]["dataset"] == ("kth" if flags["--dataset_name"] == "action" else "moving_mnist")
    assert {"test_step1.png", "test_step1.gif"} <= {path.name for path in results.iterdir()}


def test_eval_takes_the_release_checkpoint_with_the_model_named(study_checkout, capsys):
    """`launch.py eval .../model.ckpt-N` imports the release's checkpoint onto the model that --variant and overrides,
    or the release's flags, describe; without them it says what it needs."""
    prefix = "mm_e3d_lstm_pretrain/model.ckpt-80000"
    sizes = ["--model.hidden=3,3", "--model.filter_size=3", "--model.patch_size=2", "--data.image_size=8",
             "--data.context_frames=3", "--data.total_frames=6"]  # fmt: skip
    valid = "data/moving-mnist-example/moving-mnist-valid.npz"
    assert launch.main(["eval", prefix, "--data", valid]) == 2
    assert "--variant FILE" in capsys.readouterr().err
    baseline = str(Path(launch.__file__).parent / "ablations" / "moving_mnist" / "e3d_baseline.yaml")
    assert launch.main(["eval", prefix, "--variant", baseline, "--data", valid, *sizes, "--model.hidden=4,4"]) == 2
    assert "does not fit this model" in capsys.readouterr().err  # the fixture's hidden sizes are 3,3
    assert not (study_checkout / "mm_e3d_lstm_pretrain" / "eval").exists()

    assert launch.main(["eval", prefix, "--variant", baseline, "--data", valid, "--out", "ours", *sizes]) == 0
    assert "imported mm_e3d_lstm_pretrain/model.ckpt-80000 as ours/model.ckpt-80000.pt" in capsys.readouterr().out
    by_variant = json.loads((study_checkout / "ours" / "eval-moving-mnist-valid-ours.json").read_text())
    release = ["--dataset_name", "mnist", "--num_hidden", "3,3", "--filter_size", "3", "--patch_size", "2",
               "--img_width", "8", "--input_length", "3", "--total_length", "6",
               "--valid_data_paths", valid]  # fmt: skip
    assert launch.main(["eval", prefix, *release]) == 0  # the test file from --valid_data_paths; out: beside it
    by_flags = json.loads((study_checkout / "mm_e3d_lstm_pretrain" / "eval" / "eval-moving-mnist-valid-ours.json")
                          .read_text())  # fmt: skip
    assert by_flags["metrics"]["test/mse"] == pytest.approx(by_variant["metrics"]["test/mse"], rel=1e-6)

    ours = str(study_checkout / "ours" / "model.ckpt-80000.pt")
    assert launch.main(["eval", ours, "--num_hidden", "3,3"]) == 2
    assert "a checkpoint of ours carries its own config" in capsys.readouterr().err
