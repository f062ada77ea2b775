import json

import pytest
import torch

import core.trainer as trainer_module
from core.config import from_dict, load
from core.io import DataError
from core.models import build_model
from core.records import read_test_by_sequence
from core.trainer import CheckpointError, evaluate_checkpoint, load_checkpoint, train


def tiny(tmp_path, mnist_npz, *overrides):
    return load(None, tiny_overrides(tmp_path, mnist_npz, *overrides))


def tiny_overrides(tmp_path, mnist_npz, *overrides):
    return [
        f"--data.mnist={mnist_npz}", "--data.image_size=32", "--data.total_frames=6", "--data.context_frames=3",
        "--data.val_size=4", "--data.test_size=4", "--model.hidden=4,4", "--model.filter_size=3",
        "--model.patch_size=4", "--train.batch_size=2", "--train.steps=6", "--train.eval_every=3",
        "--train.checkpoint_every=2", "--train.log_every=2", "--train.eval_batch_size=4", "--train.sampling_stop=4",
        "--train.sampling_rate=0.25", "--tracking.wandb=disabled", "--tracking.frames=2",
        f"--train.runs_dir={tmp_path / 'runs'}", *overrides,
    ]  # fmt: skip


def weights(run_dir, name="last.pt"):
    return load_checkpoint(run_dir / "checkpoints" / name)["model"]


def test_train_writes_a_complete_run(tmp_path, mnist_npz):
    result = train(tiny(tmp_path, mnist_npz), progress=False)
    assert result.status == "finished" and result.step == 6
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert {"test/mse", "test/ssim", "test/psnr", "test/mae", "test/mse_by_frame"} <= set(summary["metrics"])
    assert len(summary["metrics"]["test/mse_by_frame"]) == 3
    assert set(summary["baselines"]) == {"copy_last_frame", "blank"}
    assert len(summary["baselines"]["copy_last_frame"]["ssim_by_frame"]) == 3  # per predicted frame, like the model's
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 6]
    # The probability of feeding the true frame, named as what it is (the release's "eta" reads as a time left).
    assert all(0 <= r["train/true_frame_prob"] <= 1 and "train/eta" not in r for r in rows if "train/loss" in r)
    assert [r["step"] for r in rows if "val/mse" in r] == [3, 6]
    state = load_checkpoint(result.run_dir)
    assert {"model", "optimizer", "rng", "step", "config"} <= set(state)
    assert state["config"]["model"]["hidden"] == [4, 4] and state["step"] == 6
    assert any((result.run_dir / "frames").glob("*.png")) and any((result.run_dir / "frames").glob("*.gif"))
    per_sequence = read_test_by_sequence(result.run_dir)  # each test sequence's score, in the test set's order
    assert per_sequence["test_set"] == summary["test_set"] and len(per_sequence["mse"]) == 4
    for name in ("mse", "mae", "psnr", "ssim"):  # the summary's means are these scores' means
        assert per_sequence[name].mean() == pytest.approx(summary["metrics"][f"test/{name}"], rel=1e-9)


def test_rerunning_a_finished_run_does_nothing(tmp_path, mnist_npz, monkeypatch):
    cfg = tiny(tmp_path, mnist_npz)
    first = train(cfg, progress=False)
    monkeypatch.setattr(trainer_module, "build_data", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = train(cfg, progress=False)
    assert again.status == "finished" and again.test["test/mse"] == first.test["test/mse"]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [(), ("--train.lr_schedule=cosine", "--train.lr_warmup=2", "--train.lr_min=1e-4")])
def test_kill_and_resume_gives_identical_weights(tmp_path, mnist_npz, monkeypatch, schedule):
    straight = train(tiny(tmp_path, mnist_npz, "--train.run_name=straight", *schedule), progress=False)
    real_loss = trainer_module.prediction_loss
    calls = {"n": 0}

    def dies_in_step_six(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # mid-step 6: the last checkpoint holds step 4
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    cfg = tiny(tmp_path, mnist_npz, "--train.run_name=killed", *schedule)
    monkeypatch.setattr(trainer_module, "prediction_loss", dies_in_step_six)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "runs" / "killed" / "checkpoints" / "last.pt")["step"] == 4
    assert json.loads((tmp_path / "runs" / "killed" / "summary.json").read_text())["status"] == "killed"
    monkeypatch.setattr(trainer_module, "prediction_loss", real_loss)
    resumed = train(cfg, progress=False)
    assert resumed.status == "finished"
    for key, value in weights(straight.run_dir).items():
        assert torch.equal(value, weights(resumed.run_dir)[key]), key
    rows = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [2, 4, 6]  # no duplicate rows after the resume


def test_the_cosine_schedule_sets_each_steps_learning_rate(tmp_path, mnist_npz, monkeypatch):
    seen = []
    real_step = torch.optim.Adam.step

    def records_lr(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", records_lr)
    cfg = tiny(tmp_path, mnist_npz, "--train.lr=0.01", "--train.lr_schedule=cosine", "--train.lr_warmup=2",
               "--train.lr_min=0.001")  # fmt: skip
    train(cfg, progress=False)
    # warm-up 0.005, 0.01; then cosine from 0.01 at step 2 to 0.001 at step 5 (the last)
    assert seen == pytest.approx([0.005, 0.01, 0.01, 0.00775, 0.00325, 0.001])


def test_a_finished_model_worse_than_the_blank_frame_is_flagged_with_its_numbers_kept(tmp_path, mnist_npz):
    assert trainer_module.worse_than_blank(150.0, 149.0) is None
    assert "worse than the blank frame's 149.00 by over 10%" in trainer_module.worse_than_blank(654.0, 149.0)
    result = train(tiny(tmp_path, mnist_npz, "--train.lr=1e6"), progress=False)  # far too high: no NaN, garbage
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.status == summary["status"] == "finished"
    assert summary["metrics"]["test/mse"] > 1.1 * summary["baselines"]["blank"]["mse"]
    assert "worse than the blank frame" in summary["reason"]


def test_a_run_folder_has_one_writer_and_its_lock_dies_with_its_process(tmp_path, mnist_npz):
    import os
    import subprocess
    import sys

    from core.io import FolderBusy, folder_lock

    cfg = tiny(tmp_path, mnist_npz, "--train.run_name=locked")
    run_dir = tmp_path / "runs" / "locked"
    busy = rf"locked: \S+ pid {os.getpid()} \(since .*\) is training in this folder"
    with folder_lock(run_dir), pytest.raises(FolderBusy, match=busy):
        train(cfg, progress=False)
    assert not (run_dir / "summary.json").exists()  # refused before writing anything
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from core.io import folder_lock\n"
                               f"with folder_lock({str(run_dir)!r}):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderBusy, match=f"pid {holder.pid} "):
        train(cfg, progress=False)
    holder.kill()  # kill -9: no cleanup runs, the kernel drops the lock
    holder.wait()
    assert train(cfg, progress=False).status == "finished"


def test_a_run_killed_after_its_test_resumes_without_a_second_test_row_or_temporary_files(tmp_path, mnist_npz):
    cfg = tiny(tmp_path, mnist_npz)
    run_dir = train(cfg, progress=False).run_dir
    summary = run_dir / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "running"}))  # kill -9 before it
    leftovers = [run_dir / "checkpoints" / ".last.pt.4242.0badf00d.tmp", run_dir / ".summary.json.4242.cafe0123.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    assert train(cfg, progress=False).status == "finished"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("test/mse" in row for row in rows) == 1
    assert not any(path.exists() for path in leftovers)


def test_nan_loss_stops_the_run_as_diverged(tmp_path, mnist_npz, monkeypatch):
    real_loss = trainer_module.prediction_loss

    def nan_at_step_three(pred, target, weight):
        losses = real_loss(pred, target, weight)
        nan_at_step_three.calls += 1
        if nan_at_step_three.calls == 3:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    nan_at_step_three.calls = 0
    monkeypatch.setattr(trainer_module, "prediction_loss", nan_at_step_three)
    result = train(tiny(tmp_path, mnist_npz), progress=False)
    assert result.status == "diverged" and result.step == 3
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and "nan" in summary["reason"] and summary["step"] == 3
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["step"] == 2  # the NaN weights never saved


def test_finetune_from_a_run_and_shape_mismatch(tmp_path, mnist_npz):
    base = train(tiny(tmp_path, mnist_npz), progress=False)
    tuned = train(tiny(tmp_path, mnist_npz, f"--train.init_from={base.run_dir}", "--model.residual=true",
                       "--train.lr=1e-5", "--train.steps=2"), progress=False)  # fmt: skip
    assert tuned.status == "finished"
    with pytest.raises(CheckpointError, match=r"does not fit this model \(.*shape mismatch"):
        train(tiny(tmp_path, mnist_npz, f"--train.init_from={base.run_dir}", "--model.hidden=8,8"), progress=False)


def _as_fidelity_1(checkpoint, out):
    """Rewrite a checkpoint as the code before fidelity 2 wrote it: no fidelity and no layer_norm_eps in its config."""
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]["fidelity"], state["config"]["model"]["layer_norm_eps"]
    torch.save(state, out)
    return out


def test_checkpoints_from_before_fidelity_2_say_so(tmp_path, mnist_npz):
    base = train(tiny(tmp_path, mnist_npz), progress=False)
    old = _as_fidelity_1(base.run_dir / "checkpoints" / "last.pt", tmp_path / "old.pt")
    with pytest.warns(UserWarning, match=r"old\.pt: trained by fidelity-1 code, before the release fixes"):
        tuned = train(tiny(tmp_path, mnist_npz, f"--train.init_from={old}", "--train.steps=2"), progress=False)
    summary = json.loads((tuned.run_dir / "summary.json").read_text())
    assert summary["init_from"] == {"checkpoint": str(old), "step": 6, "fidelity": 1}
    # Evaluated, an old checkpoint runs with the epsilon it was trained with (1e-5), not today's default.
    assert from_dict(load_checkpoint(old)["config"]).model.layer_norm_eps == 1e-5
    odd = train(tiny(tmp_path, mnist_npz, "--model.hidden=4,4,4", "--model.residual=true", "--train.steps=2"),
                progress=False)  # fmt: skip
    old_odd = _as_fidelity_1(odd.run_dir / "checkpoints" / "last.pt", tmp_path / "old_odd.pt")
    with pytest.raises(CheckpointError, match=r"old_odd\.pt: a 3-layer residual model trained by fidelity-1 code"):
        evaluate_checkpoint(old_odd, device="cpu")


def test_a_different_config_in_the_same_folder_is_refused(tmp_path, mnist_npz):
    train(tiny(tmp_path, mnist_npz, "--train.run_name=fixed"), progress=False)
    with pytest.raises(ValueError, match="holds a run of a different config"):
        train(tiny(tmp_path, mnist_npz, "--train.run_name=fixed", "--loss.l1_weight=0.1"), progress=False)


def _listing(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != ".lock"}  # fmt: skip


REFUSED_INPUTS = {
    "missing init_from": (CheckpointError, r"missing\.pt: no such checkpoint", "--train.init_from={}/missing.pt"),
    "unreadable init_from": (CheckpointError, r"junk\.pt: not a readable checkpoint", "--train.init_from={}/junk.pt"),
    "test file not an npz": (DataError, r"junk\.npz", "--data.test_path={}/junk.npz"),
}


@pytest.mark.parametrize("case", list(REFUSED_INPUTS))
def test_a_run_refused_for_its_inputs_leaves_no_run_folder(tmp_path, mnist_npz, case):
    """A missing or unreadable init_from checkpoint, or a test file that is not an npz, is refused before the run
    records anything: no folder holding only ``.lock`` is left in runs_dir."""
    error, message, override = REFUSED_INPUTS[case]
    (tmp_path / "runs").mkdir()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(error, match=message):
        train(tiny(tmp_path, mnist_npz, override.format(tmp_path)), progress=False)
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_refused_resume_keeps_its_run_folder_as_it_was(tmp_path, mnist_npz, monkeypatch):
    real_loss = trainer_module.prediction_loss
    calls = {"n": 0}

    def dies_in_step_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the last checkpoint holds step 2
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    cfg = tiny(tmp_path, mnist_npz, "--train.run_name=killed")
    monkeypatch.setattr(trainer_module, "prediction_loss", dies_in_step_three)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    run_dir = tmp_path / "runs" / "killed"
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"cut off")
    before = _listing(run_dir)
    assert {"config.yaml", "summary.json", "metrics.jsonl"} <= set(before)
    with pytest.raises(CheckpointError, match=r"last\.pt: not a readable checkpoint"):
        train(cfg, progress=False)
    assert _listing(run_dir) == before
    # a folder that held only its lock before (left by older code) is not this run's to remove either
    (tmp_path / "runs" / "old").mkdir()
    (tmp_path / "runs" / "old" / ".lock").write_text("")
    with pytest.raises(CheckpointError):
        train(tiny(tmp_path, mnist_npz, "--train.run_name=old", f"--train.init_from={tmp_path}/x.pt"), progress=False)
    assert (tmp_path / "runs" / "old" / ".lock").is_file()


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"broken\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="no checkpoints/best.pt or checkpoints/last.pt"):
        load_checkpoint(tmp_path)
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"foreign\.pt: not a mentalsim checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_a_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    cfg = load(None, ["--model.hidden=8,8", "--model.filter_size=3", "--model.patch_size=4"])
    model = build_model(cfg.model, channels=1, image_size=16)
    frames = torch.rand(2, 6, 1, 16, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = (model(frames, 3, torch.ones(2, 2)) - frames[:, 1:]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2


def test_trains_on_a_kth_tree(tmp_path):
    from test_kth import make_clip

    root = tmp_path / "kth"
    for person in (1, 2, 17):
        make_clip(root, "walking", person, range(1, 9))
        make_clip(root, "running", person, range(1, 9), ext="jpg")
    cfg = load(None, [
        "--data.dataset=kth", f"--data.root={root}", "--data.image_size=32", "--data.total_frames=6",
        "--data.context_frames=3", "--data.val_size=2", "--data.val_persons=2", "--model.hidden=4,4",
        "--model.filter_size=3", "--model.patch_size=8", "--train.batch_size=2", "--train.steps=2",
        "--train.eval_every=2", "--tracking.wandb=disabled", f"--train.runs_dir={tmp_path / 'runs'}",
    ])  # fmt: skip
    result = train(cfg, progress=False)
    assert (
        result.status == "finished"
        and "KTH test persons 17-25" in json.loads((result.run_dir / "summary.json").read_text())["test_set"]
    )
    assert result.test["test/num_sequences"] == 2  # person 17: one window of 6 frames in 8, for each action


def test_a_zero_gated_residual_finetune_starts_where_its_baseline_ended(tmp_path, mnist_npz):
    """Scored at step 0, skips behind zero-started gates leave the baseline's validation MSE as it was; the study's
    fixed skips change it. The gates are recorded as the weights the finetune started fresh."""
    base = train(tiny(tmp_path, mnist_npz), progress=False)
    scored = {}
    for gate in ("zero", "fixed"):
        cell = tiny(tmp_path, mnist_npz, f"--train.init_from={base.run_dir}", "--model.residual=true",
                    f"--model.residual_gate={gate}", "--train.steps=0")  # fmt: skip
        scored[gate] = train(cell, progress=False)
    assert scored["zero"].best_val_mse == pytest.approx(base.best_val_mse, rel=0, abs=1e-6)
    assert abs(scored["fixed"].best_val_mse - base.best_val_mse) > 1e-3
    summary = json.loads((scored["zero"].run_dir / "summary.json").read_text())
    assert summary["init_from"]["fresh_weights"] == ["skip_gates.decoder"]
    tuned = train(tiny(tmp_path, mnist_npz, f"--train.init_from={base.run_dir}", "--model.residual=true",
                       "--model.residual_gate=zero", "--train.steps=2"), progress=False)  # fmt: skip
    assert float(weights(tuned.run_dir)["skip_gates.decoder"]) != 0.0  # the gate trains


def test_init_optimizer_restore_continues_adams_state(tmp_path, mnist_npz):
    """train.init_optimizer=restore takes the checkpoint's Adam moments and step counts (the study's finetune); the
    gates a finetune adds start without state; a checkpoint without optimizer state is a clear error."""
    base = train(tiny(tmp_path, mnist_npz), progress=False)
    source = load_checkpoint(base.run_dir / "checkpoints" / "best.pt")
    cfg = tiny(tmp_path, mnist_npz, f"--train.init_from={base.run_dir}", "--model.residual=true",
               "--model.residual_gate=zero", "--train.init_optimizer=restore", "--train.steps=0")  # fmt: skip
    model = build_model(cfg.model, 1, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    trainer_module.load_weights(model, source, finetune=True)
    params = list(model.parameters())
    assert trainer_module.restore_optimizer(optimizer, model, source) == len(params) - 1
    for index, saved in source["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(optimizer.state[params[int(index)]][key], saved[key])
    assert params[-1] not in optimizer.state  # the decoder's gate: no state, as Adam starts any weight
    assert optimizer.param_groups[0]["lr"] == cfg.train.lr  # this run's learning rate, not the checkpoint's
    summary = json.loads((train(cfg, progress=False).run_dir / "summary.json").read_text())
    assert summary["init_from"]["optimizer_restored"] == len(params) - 1
    weights_only = tmp_path / "weights_only.pt"
    torch.save({k: v for k, v in source.items() if k not in ("optimizer", "path")}, weights_only)
    with pytest.raises(CheckpointError, match=r"weights_only\.pt: carries no optimizer state"):
        train(tiny(tmp_path, mnist_npz, f"--train.init_from={weights_only}", "--train.init_optimizer=restore",
                   "--train.steps=1"), progress=False)  # fmt: skip
