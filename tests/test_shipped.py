"""Shipped checkpoints: a tiny trained run shipped, verified, tampered with."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from test_trainer import tiny, tiny_overrides

from analysis.collect import collect
from core.config import ConfigError, config_hash, from_dict
from core.shipped import CHECK_SEQUENCES, cpu_kind, cpu_name, ship, verify
from core.trainer import CheckpointError, evaluate_checkpoint, load_checkpoint, train
from core.variants import load_variant


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, mnist_npz):
    root = tmp_path_factory.mktemp("ship")
    run = train(tiny(root, mnist_npz, "--data.test_size=8"), progress=False)
    return run, ship(run.run_dir, root / "pretrained", "tiny_baseline", command="python launch.py train tiny.yaml")


def test_a_shipped_checkpoint_is_small_named_by_its_hash_and_described(shipped):
    run, manifest_path = shipped
    manifest = json.loads(manifest_path.read_text())
    weights = manifest_path.parent / manifest["file"]
    assert weights.name == f"tiny_baseline-{manifest['sha256'][:8]}.pt"
    state = load_checkpoint(weights)
    assert "optimizer" not in state and "rng" not in state and state["step"] == 6
    assert weights.stat().st_size < (run.run_dir / "checkpoints" / "best.pt").stat().st_size
    assert manifest["config"]["model"]["hidden"] == [4, 4] and manifest["command"].startswith("python launch.py")
    assert manifest["test"]["test/mse"] == run.test["test/mse"] and manifest["threads"] >= 1 and manifest["cpu"]
    assert manifest["cpu_kind"].startswith(manifest["cpu"]) and "avx512f" in manifest["cpu_kind"]
    assert [row["step"] for row in manifest["validation"]] == [3, 6]
    logged = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(row["step"], row["train/loss"]) for row in logged if "train/loss" in row]
    assert [(row["step"], row["loss"]) for row in manifest["training"]] == losses and losses
    assert manifest["check"]["sequences"] == CHECK_SEQUENCES
    # The test set has 8 sequences: the check scores all of them, so it is the test MSE of the shipped weights.
    evaluated = evaluate_checkpoint(weights, device="cpu", out_dir=manifest_path.parent / "eval")
    assert manifest["check"]["mse"] == pytest.approx(evaluated["metrics"]["test/mse"], rel=1e-6)


def test_verify_recomputes_the_check_and_refuses_a_changed_file(shipped, tmp_path):
    _, manifest_path = shipped
    result = verify(manifest_path)
    assert result["measured"] == pytest.approx(result["expected"], abs=1e-4)
    manifest = json.loads(manifest_path.read_text())
    copy = tmp_path / manifest["file"]
    state = torch.load(manifest_path.parent / manifest["file"], weights_only=True)
    next(iter(state["model"].values())).add_(1.0)
    torch.save(state, copy)
    (tmp_path / "tiny_baseline.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="sha256 .* differs from its manifest's"):
        verify(tmp_path / "tiny_baseline.json")


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped", "a\nb"])
def test_a_shipped_name_cannot_lead_its_files_out_of_their_folder(shipped, tmp_path, name):
    run, _ = shipped
    with pytest.raises(CheckpointError, match=r"ship --name .* names the shipped files"):
        ship(run.run_dir, tmp_path / "out", name, command="")
    assert not any(tmp_path.rglob("*escaped*")) and not (tmp_path / "out").exists()


def test_only_a_finished_run_is_shipped(tmp_path, mnist_npz):
    run = train(tiny(tmp_path, mnist_npz), progress=False)
    summary = run.run_dir / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "pruned"}))
    with pytest.raises(CheckpointError, match="only a finished run is shipped"):
        ship(run.run_dir, tmp_path / "out", "x", command="")


def test_ship_and_verify_from_the_command_line(shipped, tmp_path, capsys):
    import launch

    run, _ = shipped
    assert launch.main(["ship", str(run.run_dir), "--name", "again", "--out", str(tmp_path)]) == 0
    manifest = tmp_path / "again.json"
    assert json.loads(manifest.read_text())["command"] == f"python launch.py train {run.run_dir / 'config.yaml'}"
    assert launch.main(["verify", str(manifest)]) == 0
    # the same run shipped under another name and folder is the same bytes (make pretrain reproduces the files)
    first = json.loads((shipped[1]).read_text())
    assert json.loads(manifest.read_text())["sha256"] == first["sha256"]
    assert first["config"]["train"]["runs_dir"] == "runs" and first["config"]["train"]["run_name"] is None
    assert "sha256 ok; check MSE" in capsys.readouterr().out
    tampered = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**tampered, "check": {**tampered["check"], "mse": tampered["check"]["mse"] + 1}}))
    assert launch.main(["verify", str(manifest)]) == 2
    assert "missed their recorded check MSE" in capsys.readouterr().err


def test_a_run_recorded_under_an_older_or_newer_config_schema_ships_the_same_bytes(shipped, tmp_path):
    run, manifest_path = shipped
    first = json.loads(manifest_path.read_text())
    # The same training recorded elsewhere, by a version of the code that lacked a field added since (an unhashed
    # one, and one at the value runs had before it) and set unhashed fields of its own.
    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy)
    state = torch.load(copy / "checkpoints" / "last.pt", weights_only=True)
    config = state["config"]
    del config["tracking"]["artifacts"], config["train"]["lr_warmup"]
    config["tracking"]["tags"], config["train"]["runs_dir"], config["data"]["num_workers"] = ["elsewhere"], "/x", 3
    torch.save(state, copy / "checkpoints" / "last.pt")
    again = json.loads(ship(copy, tmp_path / "out", "tiny_baseline", command="").read_text())
    assert again["sha256"] == first["sha256"]
    stored = load_checkpoint(manifest_path.parent / first["file"])["config"]
    assert "tracking" not in stored and "lr_warmup" not in stored["train"]  # what the run computed, no more
    assert config_hash(from_dict(stored)) == json.loads((run.run_dir / "summary.json").read_text())["config_hash"]


def test_a_variant_finetunes_from_a_manifest_as_the_checkpoint_file_it_names(shipped, tmp_path, mnist_npz):
    run, manifest_path = shipped
    manifest = json.loads(manifest_path.read_text())
    variant = manifest_path.parent.parent / "finetune.yaml"
    variant.write_text("variant: tiny_finetuned\ntrain: {init_from: pretrained/tiny_baseline.json}\n")
    cfg = load_variant(variant, tiny_overrides(tmp_path, mnist_npz, "--data.test_size=8", "--train.steps=0"))
    assert cfg.train.init_from.endswith(f"pretrained/{manifest['file']}")
    # 0 steps from the shipped weights: the checkpoint scored as it is, a row named "pretrained"
    scored = train(cfg, progress=False)
    summary = json.loads((scored.run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["axes"]["init"] == "pretrained"
    first_row = json.loads((scored.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first_row["step"] == 0 and summary["best_val_mse"] == pytest.approx(first_row["val/mse"])
    assert summary["metrics"]["test/mse"] == pytest.approx(manifest["test"]["test/mse"], rel=1e-6)
    finetuned = load_variant(variant, tiny_overrides(tmp_path, mnist_npz))
    assert finetuned.train.init_from == cfg.train.init_from


def test_init_from_names_the_shipped_file_of_the_runs_variant_and_seed(shipped, tmp_path, mnist_npz):
    """``pretrained/{variant}-s{seed}.json`` (make sweep's score profile) finds each seed's own file; a 0-step run
    from it reports its pretraining's curves (analysis.collect), from which the plateau sentence is read."""
    run, _ = shipped
    pretrained = tmp_path / "pretrained"
    files = {seed: json.loads(ship(run.run_dir, pretrained, f"tiny-s{seed}", command="").read_text())["file"]
             for seed in (0, 1)}  # fmt: skip
    variant = tmp_path / "score.yaml"
    variant.write_text("variant: tiny\ntrain: {init_from: 'pretrained/{variant}-s{seed}.json'}\n")
    for seed in (0, 1):
        cfg = load_variant(variant, tiny_overrides(tmp_path, mnist_npz, "--train.steps=0", f"--train.seed={seed}"))
        assert Path(cfg.train.init_from) == pretrained / files[seed]
    scored = train(cfg, progress=False)
    row = collect(scored.run_dir).iloc[0]
    logged = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["loss_history"] == [(r["step"], r["train/loss"]) for r in logged if "train/loss" in r]
    assert row["val_history"] == [(r["step"], r["val/mse"]) for r in logged if "val/mse" in r]
    assert row["init"] == "pretrained" and len(row["val_history"]) == 2
    variant.write_text("variant: tiny\ntrain: {init_from: 'pretrained/{name}-s{seed}.json'}\n")
    with pytest.raises(ConfigError, match=r"score\.yaml: train\.init_from .* names \{name\}; it may name \{variant\}"):
        load_variant(variant, tiny_overrides(tmp_path, mnist_npz))
    variant.write_text("variant: tiny\ntrain: {init_from: 'pretrained/{variant-s{seed}.json'}\n")
    with pytest.raises(ConfigError, match=r"score\.yaml: train\.init_from .* is not a path with \{variant\}"):
        load_variant(variant, tiny_overrides(tmp_path, mnist_npz))


def test_a_manifest_whose_checkpoint_changed_or_vanished_is_refused_at_load(shipped, tmp_path, mnist_npz):
    _, manifest_path = shipped
    manifest = json.loads(manifest_path.read_text())
    (tmp_path / "pretrained").mkdir()
    state = torch.load(manifest_path.parent / manifest["file"], weights_only=True)
    next(iter(state["model"].values())).add_(1.0)
    torch.save(state, tmp_path / "pretrained" / manifest["file"])
    (tmp_path / "pretrained" / "tiny_baseline.json").write_text(json.dumps(manifest))
    variant = tmp_path / "finetune.yaml"
    variant.write_text("train: {init_from: pretrained/tiny_baseline.json}\n")
    with pytest.raises(ConfigError, match=r"finetune\.yaml: train\.init_from: .* sha256 .* differs"):
        load_variant(variant, tiny_overrides(tmp_path, mnist_npz))
    (tmp_path / "pretrained" / manifest["file"]).unlink()
    with pytest.raises(ConfigError, match=f"names {manifest['file']}, which is not beside it"):
        load_variant(variant, tiny_overrides(tmp_path, mnist_npz))
    variant.write_text("train: {init_from: pretrained/nothing.json}\n")
    with pytest.raises(ConfigError, match="names pretrained/nothing.json, which is neither beside it"):
        load_variant(variant, tiny_overrides(tmp_path, mnist_npz))


def test_a_manifest_whose_file_leads_out_of_its_folder_is_refused(shipped, tmp_path, mnist_npz):
    """``file`` is a plain name beside the manifest: ``../x.pt`` or ``/abs/x.pt``, even with the right sha256, would
    make a manifest vouch for a file it does not sit beside."""
    _, manifest_path = shipped
    manifest = json.loads(manifest_path.read_text())
    (tmp_path / "pretrained").mkdir()
    outside = tmp_path / "outside.pt"
    shutil.copyfile(manifest_path.parent / manifest["file"], outside)
    variant = tmp_path / "finetune.yaml"
    variant.write_text("train: {init_from: pretrained/tiny_baseline.json}\n")
    for name in ("../outside.pt", str(outside)):
        bad = tmp_path / "pretrained" / "tiny_baseline.json"
        bad.write_text(json.dumps({**manifest, "file": name}))
        with pytest.raises(CheckpointError, match=rf"{bad}: file is {re.escape(repr(name))}, not a file name"):
            verify(bad)
        with pytest.raises(ConfigError, match=rf"train\.init_from: .*file is {re.escape(repr(name))}, not a file"):
            load_variant(variant, tiny_overrides(tmp_path, mnist_npz))


MALFORMED = {
    "check": lambda m: {k: v for k, v in m.items() if k != "check"},
    "file": lambda m: {**m, "file": 5},
    "check.threads": lambda m: {**m, "check": {**m["check"], "threads": "x"}},
    "sha256": lambda m: {**m, "sha256": "abc"},
    "check.mse": lambda m: {**m, "check": {**m["check"], "mse": "1.0"}},
}


@pytest.mark.parametrize("key", list(MALFORMED))
def test_a_malformed_manifest_is_an_error_naming_the_key_not_a_traceback(shipped, tmp_path, capsys, key):
    import launch

    _, manifest_path = shipped
    manifest = json.loads(manifest_path.read_text())
    shutil.copyfile(manifest_path.parent / manifest["file"], tmp_path / manifest["file"])
    bad = tmp_path / "tiny_baseline.json"
    bad.write_text(json.dumps(MALFORMED[key](manifest)))
    with pytest.raises(CheckpointError, match=rf"{bad}: {re.escape(key)} "):
        verify(bad)
    assert launch.main(["verify", str(bad)]) == 2
    assert f"error: {bad}: {key} " in capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(ROOT.glob("ablations/*/pretrained/*.json"))


def test_the_showcase_baselines_are_shipped_small():
    """The study's stage-1 rows (E3D-LSTM, E2D-LSTM, residuals at 2 seeds) in 60 MiB, the other families in 20 more."""
    assert {p.stem for p in SHIPPED} >= {"mmnist_e3d_baseline-s0", "mmnist_e2d-s0", "mmnist_convlstm-s0"}
    sizes = {"study": 0, "families": 0}
    for manifest in SHIPPED:
        m = json.loads(manifest.read_text())
        family = m["config"]["model"].get("name", "e3d_lstm")
        sizes["study" if family == "e3d_lstm" else "families"] += (manifest.parent / m["file"]).stat().st_size
    assert sizes["study"] <= 60 * 2**20 and sizes["families"] <= 20 * 2**20, sizes


@pytest.mark.parametrize("manifest", SHIPPED, ids=lambda p: p.stem)
def test_a_shipped_baseline_is_named_by_its_variant_and_seed_and_says_how_to_retrain_it(manifest):
    """``<variant>-s<seed>.json``, which the score profile's ``pretrained/{variant}-s{seed}.json`` finds; its command
    is make pretrain's for that variant and seed."""
    m = json.loads(manifest.read_text())
    cfg = from_dict(m["config"], str(manifest))
    assert manifest.stem == m["name"] == f"{cfg.variant}-s{cfg.train.seed}"
    assert m["file"] == f"{m['name']}-{m['sha256'][:8]}.pt"
    assert f"--train.seed={cfg.train.seed} " in m["command"] and m["command"].endswith(f"--train.run_name={m['name']}")
    variant_file = cfg.variant.removeprefix("mmnist_")
    assert f"ablations/moving_mnist/{variant_file}.yaml --profile pretrain" in m["command"]


@pytest.mark.parametrize("manifest", SHIPPED, ids=lambda p: p.stem)
def test_a_shipped_baseline_matches_its_checksum_and_its_recorded_check_mse(manifest):
    result = verify(manifest)  # the sha256, then the test MSE of the first 64 test sequences, one thread
    # The CPU kind it was shipped from computes the same float32 sums: 1e-4. Another kind's kernels may round
    # differently, which moves an MSE near 100 in its 4th-6th significant digit, not more.
    recorded = json.loads(manifest.read_text())
    same_kind = recorded.get("cpu_kind", recorded["cpu"]) == (cpu_kind() if "cpu_kind" in recorded else cpu_name())
    assert result["measured"] == pytest.approx(result["expected"], abs=1e-4 if same_kind else 1e-2)


def test_the_shipped_e3d_baseline_beats_the_blank_frame_at_every_predicted_frame():
    manifest = json.loads((ROOT / "ablations/moving_mnist/pretrained/mmnist_e3d_baseline-s0.json").read_text())
    model, blank = manifest["test"]["test/mse_by_frame"], manifest["baselines"]["blank"]["mse_by_frame"]
    assert len(model) == len(blank) == manifest["config"]["data"]["total_frames"] - manifest["config"]["data"][
        "context_frames"]  # fmt: skip
    assert all(m < b for m, b in zip(model, blank, strict=True)), list(zip(model, blank, strict=True))
    assert manifest["test_set"].endswith("2000 sequences)")  # the whole generated test set


def test_shipped_with_its_optimizer_a_finetune_continues_adams_state(shipped, tmp_path, mnist_npz):
    """``ship --with-optimizer`` keeps Adam's per-weight state, which ``train.init_optimizer=restore`` continues; the
    manifest says so. Without it, restore is refused with the way out."""
    run, _ = shipped
    manifest_path = ship(run.run_dir, tmp_path / "pretrained", "tiny_adam", command="", with_optimizer=True)
    manifest = json.loads(manifest_path.read_text())
    state = load_checkpoint(manifest_path.parent / manifest["file"])
    own = load_checkpoint(run.run_dir / "checkpoints" / "last.pt")["optimizer"]["state"]
    assert manifest["optimizer"] is True and "param_groups" not in state["optimizer"]
    assert all(torch.equal(state["optimizer"]["state"][i]["exp_avg"], own[i]["exp_avg"]) for i in own)
    restored = train(tiny(tmp_path, mnist_npz, f"--train.init_from={manifest_path.parent / manifest['file']}",
                          "--train.init_optimizer=restore", "--train.steps=1"), progress=False)  # fmt: skip
    summary = json.loads((restored.run_dir / "summary.json").read_text())
    assert summary["init_from"]["optimizer_restored"] == len(own)
    assert json.loads(shipped[1].read_text())["optimizer"] is False
