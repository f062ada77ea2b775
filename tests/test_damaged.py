"""Damaged run folders and data files that do not fit the model: each is a clear error naming the file, or (in a
report) a row of its own, and nothing is overwritten or deleted."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_analysis import record_run

import launch
from analysis.collect import collect
from core.config import load, to_yaml
from core.data.formats import write_release_npz
from core.io import DataError
from core.models import build_model
from core.records import read_run
from core.trainer import evaluate_checkpoint, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]

DAMAGE = {
    "config.yaml": "model:\n  hidden: [4, 4\ntrain: {seed: 0\n",  # cut off inside a flow sequence
    "list_summary.json": '["finished", 6]',
    "summary.json": '{"status": "finished", "step": 6, "metr',  # cut off mid-write
}


def _damage(run_dir: Path, case: str, cfg=None) -> Path:
    """Write one damaged record file into ``run_dir`` (with a good config.yaml of ``cfg`` beside a bad summary)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    name = "summary.json" if case.endswith("summary.json") else case
    if name == "summary.json" and cfg is not None:
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    (run_dir / name).write_text(DAMAGE[case])
    return run_dir / name


def _config(tmp_path, mnist_npz, *overrides):
    return load(None, [f"--data.mnist={mnist_npz}", f"--train.runs_dir={tmp_path / 'runs'}", "--train.run_name=fixed",
                       "--tracking.wandb=disabled", *overrides])  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Damaged run folders


@pytest.mark.parametrize("case", list(DAMAGE))
def test_read_run_names_the_damaged_file(tmp_path, case):
    damaged = _damage(tmp_path / "run", case)
    what = {"config.yaml": "not valid YAML", "list_summary.json": "a JSON list", "summary.json": "not valid JSON"}
    with pytest.raises(DataError, match=rf"{damaged}: .*{what[case]}"):
        read_run(tmp_path / "run")


@pytest.mark.parametrize("case", list(DAMAGE))
def test_train_refuses_a_damaged_run_folder_and_says_how_to_go_on(tmp_path, mnist_npz, case):
    cfg = _config(tmp_path, mnist_npz)
    run_dir = tmp_path / "runs" / "fixed"
    damaged = _damage(run_dir, case, cfg)
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    with pytest.raises(DataError) as caught:
        train(cfg, progress=False)
    message = str(caught.value)
    assert str(damaged) in message
    assert f"mv {run_dir} {run_dir}.damaged" in message and "start again" in message
    assert {name: (run_dir / name).read_bytes() for name in before} == before  # nothing overwritten or deleted


def test_cli_train_on_a_damaged_config_is_an_error_not_a_traceback(tmp_path, capsys):
    runs = tmp_path / "runs"
    damaged = _damage(runs / "fixed", "config.yaml")
    variant = ROOT / "ablations" / "moving_mnist" / "e3d_baseline.yaml"
    code = launch.main(["train", str(variant), "--profile", "demo", f"--train.runs_dir={runs}",
                        "--train.run_name=fixed", "--tracking.wandb=disabled", "--quiet"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert f"error: {damaged}: not valid YAML" in error and f"mv {runs / 'fixed'} {runs / 'fixed'}.damaged" in error
    assert damaged.read_text() == DAMAGE["config.yaml"]


def test_report_keeps_damaged_runs_as_rows_and_goes_on(tmp_path, capsys):
    runs = tmp_path / "runs"
    record_run(runs, "good")
    damaged = {case: _damage(runs / case.replace(".", "_"), case) for case in DAMAGE}
    frame = collect(runs).set_index("run_name")
    assert frame.loc["good", "status"] == "finished"
    for case, path in damaged.items():
        row = frame.loc[path.parent.name]
        assert row["status"] == "unreadable" and str(path) in row["status_reason"], (case, row["status_reason"])
    assert "a JSON list" in frame.loc["list_summary_json", "status_reason"]
    assert launch.main(["report", str(runs), "--no-published", "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "| E3D-LSTM |" in out and out.count("unreadable") >= len(DAMAGE)
    runs_csv = (tmp_path / "report" / "runs.csv").read_text()
    assert all(str(path) in runs_csv for path in damaged.values())


def test_a_summary_field_of_the_wrong_type_is_an_unreadable_row(tmp_path):
    record_run(tmp_path, "good")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "summary.json").write_text(json.dumps({"status": "finished", "metrics": [1.0, 2.0]}))
    frame = collect(tmp_path).set_index("run_name")
    assert frame.loc["good", "status"] == "finished" and frame.loc["odd", "status"] == "unreadable"
    assert frame.loc["odd", "status_reason"].startswith(f"{tmp_path / 'odd'}: a field of summary.json or config.yaml")


@pytest.mark.parametrize("value", ["abc", [1.0], {"mean": 1.0}, True])
def test_a_finished_run_whose_test_metric_is_not_a_number_is_an_unreadable_row(tmp_path, value):
    """Not a finished row with an MSE of NaN and no reason: the record says it finished, but its number is not one."""
    record_run(tmp_path, "good")
    summary = json.loads((tmp_path / "good" / "summary.json").read_text())
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "summary.json").write_text(
        json.dumps({**summary, "metrics": {**summary["metrics"], "test/mse": value}})
    )
    frame = collect(tmp_path).set_index("run_name")
    assert frame.loc["good", "status"] == "finished" and frame.loc["odd", "status"] == "unreadable"
    assert frame.loc["odd", "status_reason"] == f"summary.json: test/mse is {value!r}, not a number"


# ---------------------------------------------------------------------------------------------------------------------
# Evaluating on a data file that does not fit the model


@pytest.fixture
def small_model(tmp_path, mnist_npz) -> Path:
    """An untrained checkpoint of a model for 32-pixel, 8-frame sequences (4 context frames)."""
    cfg = load(None, [f"--data.mnist={mnist_npz}", "--data.image_size=32", "--data.total_frames=8",
                      "--data.context_frames=4", "--model.hidden=4", "--model.filter_size=3", "--model.patch_size=4",
                      "--tracking.frames=0", "--tracking.wandb=disabled"])  # fmt: skip
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size)
    path = tmp_path / "small.pt"
    save_checkpoint(path, model, torch.optim.Adam(model.parameters()), 0, cfg, 1.0)
    return path


def _sequences(length: int, size: int, context: int, path: Path) -> Path:
    frames = np.random.default_rng(0).integers(0, 256, (2, length, 1, size, size), dtype=np.uint8)
    write_release_npz(path, frames, context_frames=context)
    return path


def test_eval_refuses_frames_of_another_size(small_model, tmp_path, capsys):
    data = _sequences(20, 64, 4, tmp_path / "big.npz")
    with pytest.raises(DataError) as caught:
        evaluate_checkpoint(small_model, data, device="cpu", out_dir=tmp_path / "eval")
    message = str(caught.value)
    assert str(data) in message and "20 frames" in message and "64x64" in message
    assert "32x32" in message and "8 frames" in message and "data.image_size" in message
    assert not (tmp_path / "eval").exists()
    assert launch.main(["eval", str(small_model), "--data", str(data), "--device", "cpu"]) == 2
    assert f"error: {data}" in capsys.readouterr().err


def test_eval_refuses_other_context_frames_and_too_few_frames(small_model, tmp_path):
    other_context = _sequences(8, 32, 2, tmp_path / "context2.npz")
    with pytest.raises(DataError, match=r"context2\.npz: .*data\.context_frames.*: 2 context frames, not 4"):
        evaluate_checkpoint(small_model, other_context, device="cpu", out_dir=tmp_path / "eval")
    short = _sequences(6, 32, 4, tmp_path / "short.npz")
    with pytest.raises(DataError, match=r"short\.npz: .*6 frames.*8 frames"):
        evaluate_checkpoint(small_model, short, device="cpu", out_dir=tmp_path / "eval")


def test_eval_cuts_longer_sequences_to_the_models_length_and_says_so(small_model, tmp_path, capsys):
    data = _sequences(12, 32, 4, tmp_path / "long.npz")
    assert launch.main(["eval", str(small_model), "--data", str(data), "--device", "cpu",
                        "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "note:" in out and "first 8 of its 12 frames" in out
    report = json.loads((tmp_path / "eval" / "eval-long-ours.json").read_text())
    assert "first 8 of its 12 frames" in report["note"]
    assert len(report["metrics"]["test/mse_by_frame"]) == 4  # the model's 4 predicted frames, not 8


def test_a_run_killed_with_minus_nine_shows_as_interrupted_not_running_forever(tmp_path):
    import subprocess
    import sys

    from analysis.collect import run_row

    run_dir = tmp_path / "runs" / "killed"
    script = (
        "import time\nfrom core.io import folder_lock\nfrom core.tracking import Tracker\n"
        "from core.config import load\n"
        f"with folder_lock({str(run_dir)!r}):\n"
        f"    tracker = Tracker({str(run_dir)!r}, load(None), mode='disabled')\n"
        "    tracker.summary('running')\n    print('training', flush=True)\n    time.sleep(60)\n"
    )
    trainer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert trainer.stdout.readline().strip() == "training"
    assert run_row(run_dir)["status"] == "running"  # alive: its lock is held
    trainer.kill()
    trainer.wait()
    row = run_row(run_dir)
    assert row["status"] == "interrupted" and "no process holds the run folder's lock" in row["status_reason"]


def _full_disk_save(obj, handle, *args, **kwargs):
    """torch.save on a full disk: half the bytes land, then torch's own error, with ENOSPC only in its chain."""
    import errno

    handle.write(b"PK\x03\x04 half a checkpoint")
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as cause:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0") from cause


def test_a_full_disk_is_named_and_the_last_good_checkpoint_is_kept(tmp_path, mnist_npz, monkeypatch, capsys):
    from test_trainer import tiny_overrides

    from core.io import DiskFull

    cfg = load(None, tiny_overrides(tmp_path, mnist_npz))
    result = train(cfg, progress=False)
    last = result.run_dir / "checkpoints" / "last.pt"
    good = last.read_bytes()
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size)
    monkeypatch.setattr(torch, "save", _full_disk_save)
    with pytest.raises(DiskFull, match=f"disk full at {last}: nothing was replaced, the last good last.pt is kept"):
        save_checkpoint(last, model, torch.optim.Adam(model.parameters()), 6, cfg, 1.0)
    assert last.read_bytes() == good and not list(last.parent.glob(".*.tmp"))
    # from the command line: an error that says so, not torch's traceback
    variant = tmp_path / "tiny.yaml"
    variant.write_text("variant: tiny\n")
    args = ["train", str(variant), *tiny_overrides(tmp_path, mnist_npz, "--train.run_name=full"), "--quiet"]
    assert launch.main(args) == 2
    assert "disk full at" in capsys.readouterr().err
