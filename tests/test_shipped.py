"""Shipped checkpoints: a tiny trained run shipped, verified, tampered with."""

import json

import pytest
import torch
from test_trainer import tiny

from core.shipped import CHECK_SEQUENCES, ship, verify
from core.trainer import CheckpointError, evaluate_checkpoint, load_checkpoint, train


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
    assert [row["step"] for row in manifest["validation"]] == [3, 6]
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
    assert "sha256 ok; check MSE" in capsys.readouterr().out
    tampered = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**tampered, "check": {**tampered["check"], "mse": tampered["check"]["mse"] + 1}}))
    assert launch.main(["verify", str(manifest)]) == 2
    assert "missed their recorded check MSE" in capsys.readouterr().err
