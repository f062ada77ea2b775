"""The run record (config.yaml, metrics.jsonl, summary.json, frames/) and what reaches W&B's offline files."""

import dataclasses
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from core.config import Config, from_dict, to_dict
from core.io import DataError
from core.pictures import BACKGROUND, CONTEXT_GAP, FRAME_GAP, SEQUENCE_GAP, frame_grid, frame_video
from core.records import read_metrics, read_run
from core.tracking import Tracker, axes, read_offline_run
from core.wandb_env import wandb_run_id
from core.wandb_log import read_log_records, read_offline_table

ROOT = Path(__file__).resolve().parents[1]


def _config(frames: int = 2) -> Config:
    cfg = Config(variant="e3d_test")
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, conv="2d", residual=True),
        train=dataclasses.replace(cfg.train, seed=3, init_from="runs/base/checkpoints/best.pt"),
        tracking=dataclasses.replace(cfg.tracking, group="sweep-a", tags=("unit",), frames=frames),
    )


def _sequences(seed: int, n: int = 3, t: int = 3, c: int = 1, size: int = 8) -> np.ndarray:
    """(N, T, C, H, W) float frames in [0, 1]."""
    return np.random.default_rng(seed).random((n, t, c, size, size))


# ---------------------------------------------------------------------------------------------------------------------
# Local run record


def test_disabled_mode_writes_the_run_record_and_nothing_of_wandb(tmp_path):
    cfg = _config(frames=2)
    run_dir = tmp_path / "run-1"
    logged = [
        ({"train/loss": 0.5, "train/eta": np.float32(0.25)}, 10),
        ({"val/mse": 12.5, "val/mse_by_frame": np.array([10.0, 15.0]), "val/ssim_convention": "ours"}, 20),
    ]
    context, target, pred = _sequences(0, t=2), _sequences(1), _sequences(2)
    with Tracker(run_dir, cfg, mode="disabled") as tracker:
        tracker.summary("running", test_set="generated")
        for metrics, step in logged:
            tracker.log(metrics, step=step)
        png, gif = tracker.log_frames("test", target, pred, context, step=20)
        tracker.summary("finished", metrics={"test/mse": 11.0}, baselines={"blank": {"mse": np.float64(30.0)}})

    run = read_run(run_dir)
    assert from_dict(run["config"]) == cfg
    rows = run["metrics"]
    assert [{k: v for k, v in row.items() if k != "time"} for row in rows] == [
        {"step": 10, "train/loss": 0.5, "train/eta": 0.25},
        {"step": 20, "val/mse": 12.5, "val/mse_by_frame": [10.0, 15.0], "val/ssim_convention": "ours"},
    ]
    assert 0 <= rows[0]["time"] <= rows[1]["time"]
    summary = run["summary"]
    assert summary["status"] == "finished"
    assert summary["metrics"] == {"test/mse": 11.0}
    assert summary["baselines"] == {"blank": {"mse": 30.0}} and summary["test_set"] == "generated"
    assert summary["axes"] == axes(cfg) and summary["axes"]["init"] == "finetuned"
    assert summary["wandb"] == {"mode": "disabled", "id": None, "dir": None, "complete": None}

    assert png == run_dir / "frames" / "test_step20.png" and gif == run_dir / "frames" / "test_step20.gif"
    # 2 sequences kept (tracking.frames) of 2 context + 3 predicted 8x8 frames.
    with Image.open(png) as image:
        assert image.mode == "L"
        assert image.size == (5 * 8 + 3 * FRAME_GAP + CONTEXT_GAP, 2 * (2 * 8 + FRAME_GAP) + SEQUENCE_GAP)
    with Image.open(gif) as animation:
        assert animation.n_frames == 5
        assert animation.size == (2 * 8 + FRAME_GAP, 2 * (8 + FRAME_GAP) + 4)
    assert not [path for path in run_dir.rglob("*") if "wandb" in path.name]


def test_importing_and_disabled_tracking_never_import_wandb(tmp_path):
    run_dir = str(tmp_path / "run")
    script = f"""
import sys
import core.records as records
import core.tracking as tracking
from core.config import Config
assert "wandb" not in sys.modules, "imported by import core.tracking"
with tracking.Tracker({run_dir!r}, Config(), mode="disabled") as tracker:
    tracker.log({{"train/loss": 1.0}}, step=1)
records.read_run({run_dir!r})
assert "wandb" not in sys.modules, "imported by a disabled tracker"
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_frame_grid_puts_truth_over_prediction_after_the_context():
    # Constant frames whose value names them: context 10+i, target 20+i, prediction 40+i; sequence s adds 60*s.
    n, tc, t, h, w = 2, 2, 3, 4, 5
    context = np.array([[np.full((1, h, w), 10 + 60 * s + i, np.uint8) for i in range(tc)] for s in range(n)])
    target = np.array([[np.full((1, h, w), 20 + 60 * s + i, np.uint8) for i in range(t)] for s in range(n)])
    pred = np.array([[np.full((1, h, w), 40 + 60 * s + i, np.uint8) for i in range(t)] for s in range(n)])
    grid = frame_grid(target, pred, context)
    assert grid.shape == (n * (2 * h + FRAME_GAP) + SEQUENCE_GAP, (tc + t) * w + 3 * FRAME_GAP + CONTEXT_GAP)
    lefts = [0, w + FRAME_GAP, 2 * w + FRAME_GAP + CONTEXT_GAP]
    lefts += [lefts[-1] + k * (w + FRAME_GAP) for k in (1, 2)]
    for s in range(n):
        top = s * (2 * h + FRAME_GAP + SEQUENCE_GAP)
        truth_row = grid[top : top + h]
        pred_row = grid[top + h + FRAME_GAP : top + 2 * h + FRAME_GAP]
        shift = 60 * s
        assert [int(truth_row[0, x]) - shift for x in lefts] == [10, 11, 20, 21, 22]
        assert [int(pred_row[0, x]) for x in lefts] == [BACKGROUND, BACKGROUND, 40 + shift, 41 + shift, 42 + shift]
        assert (pred_row[:, lefts[2] : lefts[2] + w] == 40 + 60 * s).all()

    rgb = frame_grid(np.repeat(target, 3, axis=2), np.repeat(pred, 3, axis=2), np.repeat(context, 3, axis=2))
    assert rgb.shape == (*grid.shape, 3) and (rgb[..., 1] == grid).all()
    video = frame_video(target, pred, context)
    assert video.shape == (tc + t, n * (h + FRAME_GAP) + 4, 2 * w + FRAME_GAP)
    assert video[0, 0, 0] == 10 and video[0, 0, w + FRAME_GAP] == 10  # context: the given frame on both sides
    assert video[3, 0, 0] == 21 and video[3, 0, w + FRAME_GAP] == 41  # frame 2 after the context: truth | prediction
    assert video[3, h + FRAME_GAP, w + FRAME_GAP] == 101  # the second sequence's row


def test_log_frames_rejects_bad_shapes_and_draws_nan_black(tmp_path):
    with Tracker(tmp_path / "run", _config(frames=1), mode="disabled") as tracker:
        with pytest.raises(DataError, match="target frames must have shape"):
            tracker.log_frames("val", np.zeros((3, 1, 8, 8)), np.zeros((3, 1, 8, 8)), None, step=1)
        pred = np.full((1, 2, 1, 8, 8), np.nan)
        png, _ = tracker.log_frames("val", np.ones((1, 2, 1, 8, 8)), pred, None, step=1)
    grid = np.asarray(Image.open(png))
    assert (grid[:8, :8] == 255).all() and (grid[8 + FRAME_GAP :, :8] == 0).all()


def test_a_crash_inside_the_block_marks_the_run_failed_and_propagates(tmp_path):
    with pytest.raises(ValueError, match="boom"), Tracker(tmp_path / "run", _config(), mode="disabled") as tracker:
        tracker.log({"train/loss": 1.0}, step=1)
        raise ValueError("boom")
    summary = read_run(tmp_path / "run")["summary"]
    assert summary["status"] == "failed" and summary["error"] == "ValueError: boom"

    with pytest.raises(KeyboardInterrupt), Tracker(tmp_path / "run2", _config(), mode="disabled"):
        raise KeyboardInterrupt
    assert read_run(tmp_path / "run2")["summary"]["status"] == "killed"

    # A status the trainer set (diverged) stands when the block ends normally.
    with Tracker(tmp_path / "run3", _config(), mode="disabled") as tracker:
        tracker.summary("diverged", reason="loss became nan")
    summary = read_run(tmp_path / "run3")["summary"]
    assert summary["status"] == "diverged" and summary["reason"] == "loss became nan"


def test_the_secret_of_an_error_message_is_not_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret-123")
    with pytest.raises(RuntimeError), Tracker(tmp_path / "run", _config(), mode="disabled"):
        raise RuntimeError("login failed with key secret-123")
    assert "secret-123" not in (tmp_path / "run" / "summary.json").read_text()


def test_bad_calls_are_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        Tracker(tmp_path / "run", _config(), mode="offlne")
    with Tracker(tmp_path / "run", _config(), mode="disabled") as tracker:
        with pytest.raises(ValueError, match="reserved"):
            tracker.log({"step": 1.0}, step=1)
        with pytest.raises(TypeError, match="val/nested"):
            tracker.log({"val/nested": {"a": 1.0}}, step=1)
        with pytest.raises(ValueError, match="status"):
            tracker.summary("done")
        with pytest.raises(ValueError, match="own"):
            tracker.summary("running", metrics=None, config_hash="x")
    with pytest.raises(RuntimeError, match="finished"):
        tracker.log({"train/loss": 1.0}, step=2)
    tracker.finish("failed")  # a second finish does nothing
    assert read_run(tmp_path / "run")["summary"]["status"] == "finished"


def test_metrics_reader_skips_a_cut_off_last_line_and_names_a_bad_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "time": 0.1, "train/loss": 2.0}\n{"step": 2, "time": 0.2, "train/loss": 1.0}\n{"st')
    assert [row["step"] for row in read_metrics(path)] == [1, 2]
    path.write_text('{"step": 1, "time": 0.1, "train/loss": NaN}')  # whole, only its newline lost
    assert np.isnan(read_metrics(path)[0]["train/loss"])
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(DataError, match="metrics.jsonl:2"):
        read_metrics(path)
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_resume_truncates_later_rows_and_repairs_a_cut_off_line(tmp_path):
    run_dir = tmp_path / "run"
    with Tracker(run_dir, _config(), mode="disabled") as tracker:
        for step in range(1, 6):
            tracker.log({"train/loss": 1.0 / step}, step=step)
        tracker.summary("running")
    first = read_run(run_dir)
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 6, "tra')  # the process was killed mid-line

    with Tracker(run_dir, _config(), mode="disabled", resume=True) as tracker:
        assert tracker.truncate_after(3) == 2
        tracker.log({"train/loss": 0.3}, step=4)
    run = read_run(run_dir)
    assert [row["step"] for row in run["metrics"]] == [1, 2, 3, 4]
    assert run["metrics"][3]["time"] >= run["metrics"][2]["time"]  # run time continues from the last kept row
    assert run["summary"]["started"] == first["summary"]["started"] and run["summary"]["resumes"] == 1

    # A fresh (not resumed) start in the same folder begins a new metrics file.
    with Tracker(run_dir, _config(), mode="disabled") as tracker:
        tracker.log({"train/loss": 9.0}, step=1)
    assert [row["train/loss"] for row in read_run(run_dir)["metrics"]] == [9.0]


def test_wandb_run_id_is_stable_safe_and_follows_the_config():
    cfg = _config()
    run_id = wandb_run_id("e3d/l1=0.67 seed 3", cfg)
    assert run_id == wandb_run_id("e3d/l1=0.67 seed 3", cfg)
    assert set(run_id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    other = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, l1_weight=0.5))
    assert run_id != wandb_run_id("e3d/l1=0.67 seed 3", other) and run_id != wandb_run_id("e3d-l1-0.67", cfg)
    # Two sweeps (W&B groups) holding the same cell under the same folder name are two W&B runs.
    grouped = [dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, group=g)) for g in ("a", "b")]
    assert len({run_id, *(wandb_run_id("e3d/l1=0.67 seed 3", c) for c in grouped)}) == 3


# ---------------------------------------------------------------------------------------------------------------------
# W&B's transaction log


def _framed(records: list[bytes], block: int = 32 * 1024) -> bytes:
    """A W&B transaction log in its real framing, written independently of the reader."""
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for record in records:
        rest, first = record, True
        while True:
            left = block - len(out) % block
            if left < 7:
                out += bytes(left)
                continue
            piece, rest = rest[: left - 7], rest[left - 7 :]
            kind = (1 if not rest else 2) if first else (4 if not rest else 3)
            out += struct.pack("<IHB", zlib.crc32(piece, zlib.crc32(bytes([kind]))), len(piece), kind) + piece
            first = False
            if not rest:
                break
    return bytes(out)


def test_log_framing_reader_handles_blocks_padding_and_a_torn_tail(tmp_path):
    # Sizes chosen so records span blocks and one block ends with a tail too short for a chunk header.
    records = [b"a" * 10, bytes(range(256)) * 300, b"", b"b" * (32 * 1024 - 7 - 7 - 10 - 7 - 3), b"c" * 5]
    path = tmp_path / "run-x.wandb"
    data = _framed(records)
    path.write_bytes(data)
    assert read_log_records(path) == (records, True)

    path.write_bytes(data[:-3])  # the last chunk half written
    assert read_log_records(path) == (records[:-1], False)

    corrupt = bytearray(data)
    corrupt[30] ^= 0xFF  # inside the first chunk's data
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match="checksum"):
        read_log_records(path)
    path.write_bytes(b"LEVELDB" + data[7:])
    with pytest.raises(DataError, match="not a W&B transaction log"):
        read_log_records(path)


def test_offline_reader_merges_the_parts_of_a_resumed_run(tmp_path):
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")

    def part(start: int, steps: list[int], exit_code: int | None) -> bytes:
        run = pb.Record()
        run.run.run_id, run.run.project, run.run.display_name = "r1", "p", "run"
        run.run.start_time.FromSeconds(start)
        item = run.run.config.update.add()
        item.key, item.value_json = "seed", json.dumps(start)
        records = [run]
        for step in steps:
            history = pb.Record()
            history.history.step.num = step
            for key, value in (("train/loss", 1.0 / step), ("_step", step)):
                entry = history.history.item.add()
                entry.nested_key.append(key)
                entry.value_json = json.dumps(value)
            summary = pb.Record()
            entry = summary.summary.update.add()
            entry.nested_key.extend(["nested", "loss"])
            entry.value_json = json.dumps(1.0 / step)
            records += [history, summary]
        if exit_code is not None:
            records.append(pb.Record(exit=pb.RunExitRecord(exit_code=exit_code)))
        return _framed([record.SerializeToString() for record in records])

    for name, start, steps, code in (("b", 200, [3, 4], 0), ("a", 100, [1, 2, 3, 4], None)):
        folder = tmp_path / "wandb" / f"offline-run-{name}-r1"
        folder.mkdir(parents=True)
        (folder / "run-r1.wandb").write_bytes(part(start, steps, code))
    run = read_offline_run(tmp_path)
    assert [row["_step"] for row in run["history"]] == [1, 2, 3, 4]
    assert run["history"][2]["train/loss"] == 1 / 3
    assert run["config"] == {"seed": 200} and run["summary"] == {"nested": {"loss": 0.25}}
    assert run["exit_code"] == 0 and run["complete"] and [p["exit_code"] for p in run["parts"]] == [None, 0]


def test_online_a_run_names_the_checkpoint_it_started_from_as_its_input_artifact(tmp_path, monkeypatch):
    """W&B's lineage: the producing run's model artifact (``<its W&B id>-model``) or a shipped file's stem, used by
    the run, online only (offline W&B refuses use_artifact; a disabled run has nothing to link)."""
    pytest.importorskip("wandb")
    producer = tmp_path / "runs" / "baseline" / "checkpoints" / "best.pt"
    producer.parent.mkdir(parents=True)
    producer.write_bytes(b"weights")
    (producer.parent.parent / "summary.json").write_text(json.dumps({"status": "finished", "wandb": {"id": "base-1"}}))
    shipped = tmp_path / "mmnist_e3d_baseline-s0-15bf0f58.pt"
    shipped.write_bytes(b"weights")
    used = []

    class OnlineRun:  # stands in for the server's run: what the tracker hands it
        def use_artifact(self, artifact):
            used.append((artifact.name, artifact.type, sorted(artifact.manifest.entries)))

    with Tracker(tmp_path / "runs" / "finetune", _config(), mode="disabled") as tracker:
        tracker.use_checkpoint(producer)  # disabled: nothing
        tracker._run, tracker.mode = OnlineRun(), "online"
        tracker.use_checkpoint(producer)
        tracker.use_checkpoint(shipped)
        tracker.use_checkpoint(tmp_path / "missing.pt")  # a release checkpoint's prefix, not a file: nothing
        tracker._run = None
    assert used == [("base-1-model", "model", ["best.pt"]),
                    ("mmnist_e3d_baseline-s0-15bf0f58", "model", ["mmnist_e3d_baseline-s0-15bf0f58.pt"])]  # fmt: skip


def test_offline_wandb_receives_config_history_summary_and_media(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    # Restored after the test; the tracker sets the mode variables itself.
    for name, value in (("WANDB_MODE", "offline"), ("WANDB_ERROR_REPORTING", "false"), ("WANDB_SILENT", "true")):
        monkeypatch.setenv(name, value)
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home" / name.lower()))
    monkeypatch.setenv("WANDB_API_KEY", "secret-123")
    monkeypatch.chdir(tmp_path)
    cfg = _config(frames=2)
    run_dir = tmp_path / "runs" / "e3d_test-seed3"
    try:
        with Tracker(run_dir, cfg, mode="offline") as tracker:
            tracker.log({"train/loss": 0.75, "train/eta": 1.0}, step=10)
            tracker.log({"train/loss": 0.5, "train/eta": 0.5}, step=20)
            tracker.log({"val/mse": 12.5, "val/mse_by_frame": [10.0, 15.0], "val/ssim_convention": "ours"}, step=20)
            tracker.log_frames("test", _sequences(1), _sequences(2), _sequences(0, t=2), step=20)
            tracker.log({"val/mse": 14.0, "val/ssim": 0.5}, step=30)  # worse than step 20's: not the summary's
            tracker.summary("finished", metrics={"test/mse": 11.0, "test/mse_by_frame": [9.0, 13.0]})
        with pytest.raises(ValueError), Tracker(tmp_path / "runs" / "crashed", cfg, mode="offline") as tracker:
            tracker.log({"train/loss": 1.0}, step=1)
            raise ValueError("boom")
    finally:
        wandb.teardown()

    summary = read_run(run_dir)["summary"]
    assert summary["wandb"]["mode"] == "offline" and summary["wandb"]["complete"] is True
    assert (run_dir / summary["wandb"]["dir"]).is_dir()
    run = read_offline_run(run_dir)
    assert run["id"] == summary["wandb"]["id"] == wandb_run_id(run_dir.name, cfg)
    assert (run["project"], run["group"], run["name"], run["tags"]) == ("mentalsim", "sweep-a", run_dir.name, ["unit"])
    assert run["job_type"] == "finetune"  # the config starts from a checkpoint
    assert run["summary"]["val/mse"] == {"min": 12.5} and run["summary"]["val/ssim"] == {"max": 0.5}  # as we rank
    assert run["exit_code"] == 0 and run["complete"]

    config = run["config"]
    for key, value in axes(cfg).items():
        assert config[key] == value, key
    assert (config["conv"], config["residual"], config["init"], config["seed"]) == ("2d", True, "finetuned", 3)
    assert {key: config[key] for key in to_dict(cfg)} == to_dict(cfg)

    history = {row["_step"]: row for row in run["history"]}
    assert sorted(history) == [10, 20, 30]
    assert (history[10]["train/loss"], history[10]["train/eta"]) == (0.75, 1.0)
    assert (history[20]["train/loss"], history[20]["val/mse"]) == (0.5, 12.5)
    curve = read_offline_table(history[20]["val/mse_by_frame_table"])
    assert curve == [{"frame": 1, "val/mse_by_frame": 10.0}, {"frame": 2, "val/mse_by_frame": 15.0}]
    image, video = history[20]["test/frames"], history[20]["test/video"]
    assert image["_type"] == "image-file" and video["_type"] == "video-file"
    with Image.open(image["local_path"]) as logged, Image.open(run_dir / "frames" / "test_step20.png") as local:
        assert logged.size == local.size == (image["width"], image["height"])
    assert Path(video["local_path"]).read_bytes() == (run_dir / "frames" / "test_step20.gif").read_bytes()

    assert run["summary"]["status"] == "finished" and run["summary"]["test/mse"] == 11.0
    assert run["summary"]["test/mse_by_frame"] == [9.0, 13.0] and run["summary"]["val/ssim_convention"] == "ours"

    crashed = read_offline_run(tmp_path / "runs" / "crashed")
    assert crashed["exit_code"] == 1 and crashed["summary"]["status"] == "failed"
    assert read_run(tmp_path / "runs" / "crashed")["summary"]["status"] == "failed"

    # W&B's own reader of its log, as an independent check of ours (its output format carries no promise).
    cli = shutil.which("wandb", path=str(Path(sys.executable).parent))
    if cli is not None:
        done = subprocess.run(
            [cli, "leet", "inspect", "--summary", "--json", str(run_dir / summary["wandb"]["dir"])],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            leet = json.loads(done.stdout)
            assert leet["run_id"] == run["id"] and leet["exit_code"] == 0
            assert {key: leet["config"][key] for key in axes(cfg)} == axes(cfg)
            assert leet["summary"]["train/loss"] == 0.5 and leet["summary"]["test/mse"] == 11.0

    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"secret-123" not in path.read_bytes(), path


def test_the_environment_decides_the_wandb_mode_unless_the_config_says(tmp_path, monkeypatch):
    from core.wandb_env import wandb_mode_from_env

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode_from_env() == "offline"  # nothing set: no account needed
    for value, mode in (("online", "online"), ("run", "online"), ("dryrun", "offline"), ("Disabled", "disabled")):
        monkeypatch.setenv("WANDB_MODE", value)
        assert wandb_mode_from_env() == mode
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE='sometimes' is not a W&B mode"):
        wandb_mode_from_env()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = _config()
    with Tracker(tmp_path / "from-env", cfg) as tracker:  # tracking.wandb unset: the environment's
        assert tracker.mode == "disabled"
    assert not (tmp_path / "from-env" / "wandb").exists()
    monkeypatch.setenv("WANDB_MODE", "online")
    explicit = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, wandb="disabled"))
    with Tracker(tmp_path / "explicit", explicit) as tracker:  # the config (or command line) says: it wins
        assert tracker.mode == "disabled"


ROOT = Path(__file__).resolve().parents[1]


def _offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A child process's environment for offline W&B with its folders under tmp_path."""
    import os

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false", **extra}
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        env[name] = str(tmp_path / "home" / name.lower())
    return env


@pytest.mark.slow
def test_a_run_killed_outright_resumes_with_its_whole_history_in_wandb(tmp_path, mnist_npz):
    import os
    import signal
    import time

    from test_trainer import tiny_overrides

    pytest.importorskip("wandb")
    command = [sys.executable, "launch.py", "train", "ablations/moving_mnist/e3d_baseline.yaml", "--quiet",
               *tiny_overrides(tmp_path, mnist_npz, "--train.steps=40", "--train.log_every=1",
                               "--train.checkpoint_every=5", "--train.eval_every=1000", "--tracking.wandb=offline",
                               "--tracking.frames=0", "--train.run_name=killed")]  # fmt: skip
    env = _offline_env(tmp_path, OMP_NUM_THREADS="1")
    run_dir = tmp_path / "runs" / "killed"
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        rows = read_metrics(run_dir / "metrics.jsonl")
        if rows and rows[-1]["step"] >= 12 and (run_dir / "checkpoints" / "last.pt").is_file():
            break
        time.sleep(0.01)
    assert child.poll() is None, "the run ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)  # kill -9: no handler runs, W&B's log is cut wherever it was
    child.wait()
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=300)

    local = [row["step"] for row in read_metrics(run_dir / "metrics.jsonl") if "train/loss" in row]
    assert local == list(range(1, 41))
    logs = sorted((run_dir / "wandb").rglob("*.wandb"))
    assert len(logs) == 2  # one per process
    resumed = max((read_offline_run(log) for log in logs), key=lambda run: run["parts"][0]["start_time"])
    # The resumed process's own log holds the whole history, the steps before the kill included.
    assert [row["_step"] for row in resumed["history"] if "train/loss" in row] == local
    merged = read_offline_run(run_dir)
    assert [row["_step"] for row in merged["history"] if "train/loss" in row] == local and merged["complete"]


def test_under_a_wandb_agent_the_variant_stays_a_name(tmp_path):
    """`wandb agent` hands its parameters to the run through a file W&B reads at init; they overwrite the config's keys
    of the same name, so `variant` becomes the file path. The summary keeps the name, and the report reads it."""
    pytest.importorskip("wandb")
    from analysis.wandb_source import collect_wandb_offline

    params = tmp_path / "sweep-params.yaml"
    params.write_text("variant:\n  value: ablations/moving_mnist/e2d.yaml\nmodel.conv:\n  value: 2d\n")
    script = (
        "import dataclasses, sys; from core.config import load; from core.tracking import Tracker\n"
        "cfg = load(None, ['--variant=e2d', '--model.conv=2d'])\n"
        "with Tracker(sys.argv[1], cfg, mode='offline') as tracker:\n"
        "    tracker.summary('finished', metrics={'test/mse': 1.0})\n"
    )
    env = _offline_env(tmp_path, WANDB_SWEEP_PARAM_PATH=str(params), WANDB_SWEEP_ID="abc123")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "runs" / "cell")], cwd=ROOT, env=env, check=True,
                   timeout=120)  # fmt: skip
    run = read_offline_run(tmp_path / "runs" / "cell")
    assert run["config"]["variant"] == "ablations/moving_mnist/e2d.yaml"  # what the agent did to the config
    assert run["config"]["model.conv"] == "2d" and run["config"]["model"]["conv"] == "2d"
    assert run["summary"]["variant"] == "e2d"
    rows = collect_wandb_offline(tmp_path / "runs")
    assert list(rows["variant"]) == ["e2d"]


def test_under_a_wandb_agent_a_run_goes_online_unless_wandb_mode_says(monkeypatch):
    """`wandb agent` sets WANDB_SWEEP_ID and WANDB_RUN_ID, not WANDB_MODE: its runs must reach its controller."""
    from core.wandb_env import wandb_mode_from_env

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    assert wandb_mode_from_env() == "offline"
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    assert wandb_mode_from_env() == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert wandb_mode_from_env() == "offline"


@pytest.mark.slow
def test_a_run_that_wandb_agent_starts_is_the_agents_with_its_console_and_no_bar(tmp_path, mnist_npz, monkeypatch,
                                                                                   capfd):  # fmt: skip
    """wandb's own agent code (``Agent._command_run``: the sweep file's command, a cell's parameters as the controller
    sends them, the environment it builds) starts the run; offline here only to stay off the network. W&B's run id
    is the agent's, the output is one line per evaluation (no progress bar's redraws), and W&B captured it."""
    from test_trainer import tiny_overrides

    wandb_agent = pytest.importorskip("wandb.wandb_agent")
    overrides = tiny_overrides(tmp_path, mnist_npz, "--train.run_name=agent", "--tracking.frames=0",
                               "--tracking.wandb=offline")  # fmt: skip
    args = {"variant": {"value": "ablations/moving_mnist/e3d_baseline.yaml"}}
    args |= {key: {"value": value} for key, value in (o.removeprefix("--").split("=", 1) for o in overrides)}
    env = _offline_env(tmp_path, OMP_NUM_THREADS="1", WANDB_SWEEP_ID="abc123", WANDB_DIR=str(tmp_path / "agent"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the agent runs `/usr/bin/env python`: this one
    # _command_run sets WANDB_RUN_ID and WANDB_SWEEP_PARAM_PATH in this process's environment: set here first, so
    # they are undone after the test (left behind, W&B would read the sweep's parameters into later tests' runs).
    for name, value in {**env, "WANDB_RUN_ID": "", "WANDB_SWEEP_PARAM_PATH": ""}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    agent = SimpleNamespace(_sweep_command=["${env}", "python", "${program}", "train", "${args}"], _in_jupyter=False,
                            _function=None, _forward_signals=False, _run_processes={})  # fmt: skip
    wandb_agent.Agent._command_run(agent, {"run_id": "agentflat01", "program": "launch.py", "args": args})
    assert agent._run_processes["agentflat01"].wait(timeout=300) == 0
    out = capfd.readouterr()
    assert "\r" not in out.out + out.err and "agent: step 6/6, val MSE " in out.out
    run = read_offline_run(tmp_path / "runs" / "agent")
    assert run["id"] == "agentflat01" and "agent: step 6/6, val MSE " in run["console"]


def test_under_wandb_agent_wandb_is_started_online_with_the_agents_run_id(tmp_path, monkeypatch):
    """What the tracker hands wandb.init under the agent's environment, no WANDB_MODE set: online, the agent's run."""
    import core.tracking as tracking

    for name in ("WANDB_MODE", "WANDB_CONSOLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    monkeypatch.setenv("WANDB_RUN_ID", "agentflat01")
    seen = {}

    class Stop(Exception):
        pass

    def init(**kwargs):
        seen.update(kwargs, mode=os.environ["WANDB_MODE"])
        raise Stop

    def wandb_for(mode):  # as core.tracking._wandb_for: the mode goes to the environment before init
        os.environ["WANDB_MODE"] = mode
        return SimpleNamespace(init=init, Settings=dict)

    monkeypatch.setattr(tracking, "_wandb_for", wandb_for)
    with pytest.raises(Stop):
        Tracker(tmp_path / "run", _config())
    assert seen["mode"] == "online" and seen["id"] == "agentflat01"


@pytest.mark.slow
def test_a_quiet_run_gives_wandb_its_console_output_and_on_request_its_checkpoints_and_frames(tmp_path, mnist_npz):
    from test_trainer import tiny_overrides

    pytest.importorskip("wandb")
    command = [sys.executable, "launch.py", "train", "ablations/moving_mnist/e3d_baseline.yaml", "--quiet",
               *tiny_overrides(tmp_path, mnist_npz, "--tracking.wandb=offline", "--tracking.artifacts=true",
                               "--train.run_name=kept")]  # fmt: skip
    subprocess.run(command, cwd=ROOT, env=_offline_env(tmp_path, OMP_NUM_THREADS="1"), check=True, timeout=300)
    run = read_offline_run(tmp_path / "runs" / "kept")
    assert "kept: step 6/6, val MSE " in run["console"] and "kept: test MSE " in run["console"]  # captured by W&B
    artifacts = {artifact["type"]: artifact for artifact in run["artifacts"]}
    assert artifacts["model"]["files"] == ["best.pt", "last.pt"] and "final" in artifacts["model"]["aliases"]
    assert artifacts["predictions"]["files"] == ["test_step6.gif", "test_step6.npz", "test_step6.png"]
    # The validation's predictions at every evaluation, each at its step (W&B's media slider).
    media_steps = [row["_step"] for row in run["history"] if "val/frames" in row]
    assert media_steps == [
        row["step"] for row in read_metrics(tmp_path / "runs/kept/metrics.jsonl") if "val/mse" in row
    ]
    assert artifacts["model"]["name"] == f"{run['id']}-model"
    # Every best/ number comes from the one evaluation with the lowest validation MSE (wandb#4812).
    evaluations = [row for row in read_metrics(tmp_path / "runs" / "kept" / "metrics.jsonl") if "val/mse" in row]
    best = min(evaluations, key=lambda row: row["val/mse"])
    assert len(evaluations) >= 2 and run["summary"]["best/step"] == best["step"]
    assert {key: run["summary"][f"best/{key}"] for key in ("val/mse", "val/ssim", "val/psnr")} == {
        key: best[key] for key in ("val/mse", "val/ssim", "val/psnr")}  # fmt: skip


def test_wandb_mode_online_from_the_environment_reaches_wandb(tmp_path, monkeypatch):
    """W&B's own settings, read at init, see the environment's online mode when the config says nothing (the run
    would go online; here init is stopped before it reaches a server)."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "online")
    seen = {}

    class Stop(Exception):
        pass

    def init(**kwargs):
        seen.update(mode=wandb.Settings().mode, project=kwargs["project"])
        raise Stop

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setenv("WANDB_PROJECT", "their-project")
    with pytest.raises(Stop):
        Tracker(tmp_path / "run", _config())  # tracking.wandb and tracking.project unset
    assert seen == {"mode": "online", "project": "their-project"}
