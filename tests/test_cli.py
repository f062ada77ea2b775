import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import launch
from core.data.formats import read_release_npz

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def user_mnist(tmp_path) -> Path:
    """A user MNIST npz whose train digits are all brightness 100 and test digits all 200."""
    path = tmp_path / "mine.npz"
    train, test = np.zeros((6, 28, 28), np.uint8), np.zeros((4, 28, 28), np.uint8)
    train[:, 5:20, 5:20], test[:, 5:20, 5:20] = 100, 200
    np.savez(path, x_train=train, x_test=test)
    return path


def test_data_moving_mnist_writes_a_release_file_of_the_split(tmp_path, user_mnist, capsys):
    def argv(out: Path) -> list[str]:
        return ["data", "moving-mnist", "--split", "test", "--num", "12", "--seed", "1", "--out", str(out),
                "--mnist", str(user_mnist), "--length", "8", "--context-frames", "3"]  # fmt: skip

    assert launch.main(argv(tmp_path / "mm-test.npz")) == 0
    data = read_release_npz(tmp_path / "mm-test.npz")
    assert data.frames.shape == (12, 8, 1, 64, 64) and data.context_frames == 3
    assert set(np.unique(np.round(data.frames * 255))) == {0, 200}  # test digits only
    assert f"wrote {tmp_path / 'mm-test.npz'}" in capsys.readouterr().out
    assert launch.main(argv(tmp_path / "again.npz")) == 0  # same seed, same file
    np.testing.assert_array_equal(read_release_npz(tmp_path / "again.npz").frames, data.frames)


def test_data_info_describes_a_file(tmp_path, user_mnist, capsys):
    out = tmp_path / "mm.npz"
    launch.main(
        ["data", "moving-mnist", "--split", "train", "--num", "3", "--out", str(out), "--mnist", str(user_mnist)]
    )
    capsys.readouterr()
    assert launch.main(["data", "info", str(out)]) == 0
    assert "3 sequences x 20 frames (10 context), frames (1, 64, 64)" in capsys.readouterr().out


def test_bad_arguments_are_clear_errors(tmp_path, user_mnist, capsys):
    base = ["data", "moving-mnist", "--split", "test", "--num", "2", "--mnist", str(user_mnist), "--out",
            str(tmp_path / "x.npz")]  # fmt: skip
    assert launch.main([*base, "--context-frames", "20"]) == 2
    assert "--context-frames 20 must lie in [1, 19]" in capsys.readouterr().err
    assert launch.main([*base, "--canvas", "16"]) == 2
    assert "canvas must be at least 28" in capsys.readouterr().err
    assert launch.main(["data", "info", str(tmp_path / "none.npz")]) == 2
    assert "none.npz: no such file" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_launch_runs_as_a_script(tmp_path, user_mnist):
    out = tmp_path / "s.npz"
    result = subprocess.run(
        [sys.executable, "launch.py", "data", "moving-mnist", "--split", "train", "--num", "2", "--out", str(out),
         "--mnist", str(user_mnist)],  # fmt: skip
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_release_npz(out).frames.shape == (2, 20, 1, 64, 64)


def _tiny_train_args(tmp_path, mnist: Path) -> list[str]:
    return ["--data.mnist", str(mnist), "--data.image_size=32", "--data.total_frames=6", "--data.context_frames=3",
            "--data.val_size=4", "--data.test_size=4", "--num_hidden", "4,4", "--filter_size", "3", "--patch_size",
            "4", "--batch_size", "2", "--max_iterations", "4", "--test_interval", "2", "--display_interval", "2",
            "--wandb", "disabled", f"--train.runs_dir={tmp_path / 'runs'}", "--quiet"]  # fmt: skip


def test_train_eval_and_config_from_the_command_line(tmp_path, user_mnist, capsys):
    variant = str(ROOT / "ablations" / "moving_mnist" / "e3d_baseline.yaml")
    assert launch.main(["train", variant, "--profile", "demo", *_tiny_train_args(tmp_path, user_mnist)]) == 0
    out = capsys.readouterr().out
    assert "finished: " in out and "copy_last_frame" in out and "blank" in out
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("mmnist_e3d_baseline-s0-")

    test_file = tmp_path / "test.npz"
    assert launch.main(["data", "moving-mnist", "--split", "test", "--num", "3", "--length", "6", "--context-frames",
                        "3", "--canvas", "32", "--mnist", str(user_mnist), "--out", str(test_file)]) == 0  # fmt: skip
    assert launch.main(["eval", str(run), "--data", str(test_file), "--ssim-convention", "release"]) == 0
    report = run / "eval" / "eval-test-release.json"
    assert report.is_file() and f"wrote {report}" in capsys.readouterr().out
    assert (run / "eval" / "eval-test-release.png").is_file()
    assert launch.main(["eval", str(run / "checkpoints" / "last.pt"), "--out", str(tmp_path / "elsewhere"),
                        "--precision", "bf16"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "elsewhere" / "eval-test-ours.json").read_text())["precision"] == "bf16"
    assert json.loads(report.read_text())["precision"] == "fp32"  # the run's own

    assert launch.main(["report", str(tmp_path / "runs"), "--no-published"]) == 0
    table = capsys.readouterr().out
    assert "| E3D-LSTM, l2 only |" in table and "| blank frame |" in table and "(published)" not in table
    written = {p.name for p in (tmp_path / "runs" / "report").iterdir()}
    assert {"table.md", "table.tex", "table.csv", "runs.csv", "report.html", "figures"} <= written

    assert launch.main(["config", variant, "--profile", "demo", "--show", "--model.residual=true"]) == 0
    shown = capsys.readouterr().out
    assert "residual: true" in shown and "# the study's residuals" in shown


def test_train_rejects_unknown_keys_with_a_suggestion(tmp_path, capsys):
    variant = str(ROOT / "ablations" / "moving_mnist" / "e3d_baseline.yaml")
    assert launch.main(["train", variant, "--model.residul=true"]) == 2
    assert "did you mean 'model.residual'" in capsys.readouterr().err


def test_train_takes_the_variant_as_a_flag_like_a_wandb_agent_passes_it(tmp_path, user_mnist, capsys):
    # `wandb agent` runs `python launch.py train ${args}`, each sweep parameter as --name=value.
    variant = str(ROOT / "ablations" / "moving_mnist" / "e3d_baseline.yaml")
    args = ["train", f"--variant={variant}", "--profile=demo", "--model.residual=true",
            *_tiny_train_args(tmp_path, user_mnist)]  # fmt: skip
    assert launch.main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert "residual: true" in (run / "config.yaml").read_text()
    with pytest.raises(SystemExit):
        launch.main(["train", "--profile=demo"])
    assert "needs a variant file" in capsys.readouterr().err


def test_a_diverged_run_exits_non_zero_and_says_why(tmp_path, user_mnist, capsys, monkeypatch):
    import core.trainer as trainer_module

    real_loss = trainer_module.prediction_loss

    def nan_loss(pred, target, weight):
        losses = real_loss(pred, target, weight)
        return {**losses, "loss": losses["loss"] * float("nan")}

    monkeypatch.setattr(trainer_module, "prediction_loss", nan_loss)
    variant = str(ROOT / "ablations" / "moving_mnist" / "e3d_baseline.yaml")
    assert launch.main(["train", variant, "--profile", "demo", *_tiny_train_args(tmp_path, user_mnist)]) == 2
    err = capsys.readouterr().err
    assert "the run diverged (loss became nan by step 1); lower train.lr" in err
