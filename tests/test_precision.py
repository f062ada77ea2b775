"""bfloat16 autocast and torch.compile in the trainer: tested on the CPU, and on a GPU where there is one."""

import functools
import json

import pytest
import torch
from test_trainer import tiny

import core.models.recall as recall_module
from core.config import load
from core.models import build_model
from core.trainer import load_checkpoint, precision_context, train


def logged(run_dir, key):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row[key] for row in rows if key in row]


def small_model():
    torch.manual_seed(0)
    cfg = load(None, ["--model.hidden=4,4", "--model.filter_size=3", "--model.patch_size=4"])
    return build_model(cfg.model, channels=1, image_size=16), torch.rand(2, 6, 1, 16, 16)


def test_bf16_training_is_close_to_fp32_and_keeps_float32_weights(tmp_path, mnist_npz):
    fp32 = train(tiny(tmp_path, mnist_npz, "--train.log_every=1"), progress=False)
    bf16 = train(tiny(tmp_path, mnist_npz, "--train.log_every=1", "--train.precision=bf16"), progress=False)
    assert fp32.status == bf16.status == "finished"
    assert bf16.run_dir != fp32.run_dir  # precision is part of what a run computes: its own folder
    losses = logged(bf16.run_dir, "train/loss")
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    # Step 1 has the same weights and batch in both runs, only the forward pass's precision differs. Measured here:
    # 0.24759 vs 0.24747, 5e-4 relative; the validation MSEs differ by about 2e-4 relative.
    assert losses[0] == pytest.approx(logged(fp32.run_dir, "train/loss")[0], rel=5e-3)
    assert logged(bf16.run_dir, "val/mse") == pytest.approx(logged(fp32.run_dir, "val/mse"), rel=5e-3)
    state = load_checkpoint(bf16.run_dir)
    assert all(weight.dtype == torch.float32 for weight in state["model"].values())
    moments = [value for slot in state["optimizer"]["state"].values() for key, value in slot.items() if key != "step"]
    assert moments and all(value.dtype == torch.float32 for value in moments)
    summary = json.loads((bf16.run_dir / "summary.json").read_text())
    assert (summary["device"], summary["precision"], summary["compile"]) == ("cpu", "bf16", False)
    assert any((bf16.run_dir / "frames").glob("*.png"))  # the test pictures come from float32-cast predictions


@pytest.mark.parametrize("precision, expected", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_precision_context_runs_convolutions_in_that_precision(precision, expected):
    model, frames = small_model()
    seen = []
    model.cells[0].conv_x.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with precision_context(precision, torch.device("cpu")):
        out = model(frames, 3)
    assert seen and set(seen) == {expected} and out.dtype == expected


@pytest.mark.parametrize("fused", [True, False])
def test_recall_attends_in_float32_under_bf16_autocast(monkeypatch, fused):
    # The unfused path (CUDA's) calls the public attention, which autocast would otherwise run in bfloat16.
    monkeypatch.setattr(recall_module, "FUSED_CPU_BACKWARD", fused)
    history = recall_module.EideticHistory(torch.randn(2, 4, 2, 3, 3), capacity=3)
    history.append(torch.randn(2, 4, 2, 3, 3))
    query = torch.randn(2, 4, 2, 3, 3, requires_grad=True)
    reference = history.recall(query, 1.0)
    with precision_context("bf16", torch.device("cpu")):
        out = history.recall(query.to(torch.bfloat16), 1.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=0.02, rtol=0.02)  # only the query was rounded to bfloat16
    out.sum().backward()
    assert query.grad is not None and torch.isfinite(query.grad).all()


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_keys(tmp_path, mnist_npz, monkeypatch):
    # The "aot_eager" backend traces the model and its custom autograd Function exactly as the default backend does,
    # without inductor's code generation (90 s for this tiny model's first step on one core here, too slow to test).
    eager = train(tiny(tmp_path, mnist_npz, "--train.log_every=1", "--train.run_name=eager"), progress=False)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch.compiler.reset()
    compiled = train(tiny(tmp_path, mnist_npz, "--train.log_every=1", "--train.compile=true"), progress=False)
    assert compiled.status == "finished"
    assert logged(compiled.run_dir, "train/loss") == pytest.approx(logged(eager.run_dir, "train/loss"), abs=1e-4)
    assert logged(compiled.run_dir, "val/mse") == pytest.approx(logged(eager.run_dir, "val/mse"), rel=1e-4)
    for name in ("last.pt", "best.pt"):
        keys = load_checkpoint(compiled.run_dir / "checkpoints" / name)["model"]
        assert keys and not any(key.startswith("_orig_mod.") for key in keys)
    summary = json.loads((compiled.run_dir / "summary.json").read_text())
    assert summary["compile"] is True and summary["precision"] == "fp32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_training_on_cuda(tmp_path, mnist_npz):
    result = train(tiny(tmp_path, mnist_npz, "--train.device=cuda", "--train.precision=bf16"), progress=False)
    assert result.status == "finished" and torch.isfinite(torch.tensor(result.test["test/mse"]))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["precision"] == "bf16" and summary["gpu"]
    assert all(weight.dtype == torch.float32 for weight in load_checkpoint(result.run_dir)["model"].values())
