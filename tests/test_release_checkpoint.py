"""The release's TensorFlow checkpoints on our model, against the release itself: tests/fixtures/release_e3d holds
checkpoints its own graph and Adam wrote, with its predictions (see the README there). No TensorFlow needed."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer import tiny_overrides

from core.config import Config, DataConfig, ModelConfig, TrainConfig
from core.losses import prediction_loss
from core.models import build_model
from core.release_checkpoint import (
    RELEASE_L1_WEIGHT,
    ReleaseCheckpointError,
    _crc_update,
    crc32c,
    import_release,
    is_release_checkpoint,
    read_checkpoint,
    release_state,
)
from core.trainer import load_init_from, load_weights, restore_optimizer

FIXTURES = Path(__file__).parent / "fixtures" / "release_e3d"
VARIANTS = ("3d-ln", "3d-noln", "2d-ln", "2d-noln", "2d-noln-3ch")
PREFIX = "model.ckpt-2"
BETAS = (0.95, 0.9995)  # the release's Adam


def _fixture(variant: str) -> tuple[dict, ModelConfig]:
    stored = dict(np.load(FIXTURES / variant / "release.npz"))
    cfg = ModelConfig(
        hidden=tuple(int(h) for h in stored["hidden"]),
        conv="3d" if int(stored["kernel"][0]) == 2 else "2d",
        filter_size=int(stored["kernel"][1]),
        patch_size=int(stored["patch_size"]),
        layer_norm=bool(stored["layer_norm"]),
    )
    return stored, cfg


def _model(cfg: ModelConfig, stored: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(cfg, channels=int(stored["frames"].shape[-1]), image_size=int(stored["frames"].shape[2]))


def _ours(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 1, 4, 2, 3)  # release (B, T, H, W, C) -> ours (B, T, C, H, W)


def _test_predictions(model: torch.nn.Module, stored: dict) -> np.ndarray:
    """Test mode as the release runs it (its own predictions fed back), its output frames, in its layout."""
    with torch.no_grad():
        out = model(_ours(stored["frames"]), int(stored["context_frames"]))
    future = stored["predictions"].shape[1]
    return out[:, -future:].permute(0, 1, 3, 4, 2).numpy()  # (B, T-1, C, H, W) -> its last frames, (B, t, H, W, C)


def _imported(variant: str) -> tuple[dict, torch.nn.Module, object]:
    stored, cfg = _fixture(variant)
    model = _model(cfg, stored)
    channels = int(stored["frames"].shape[-1])
    state = release_state(read_checkpoint(FIXTURES / variant / PREFIX), model, channels=channels)
    model.load_state_dict(state.weights)
    return stored, model, state


@pytest.mark.parametrize("variant", VARIANTS)
def test_reader_gives_the_values_tensorflow_saved(variant):
    stored, _ = _fixture(variant)
    values = read_checkpoint(FIXTURES / variant / PREFIX)
    assert sorted(values) == list(stored["names"])
    columns = (stored["names"], stored["sums"], stored["abs_sums"], stored["first"])
    for name, total, absolute, first in zip(*columns, strict=True):
        value = values[name]
        assert value.dtype == np.float32
        assert value.astype(np.float64).sum() == pytest.approx(total, rel=1e-12, abs=1e-12)
        assert np.abs(value.astype(np.float64)).sum() == pytest.approx(absolute, rel=1e-12, abs=1e-12)
        assert value.reshape(-1)[0] == first
    # the .index or a .data file names the same checkpoint as its prefix
    assert read_checkpoint(FIXTURES / variant / f"{PREFIX}.index").keys() == values.keys()


def test_crc32c_known_value():
    assert crc32c(b"123456789") == 0xE3069283
    data = np.random.default_rng(0).integers(0, 256, 300_001, dtype=np.uint8).tobytes()  # numpy's lanes take over
    assert crc32c(data) == _crc_update(0xFFFFFFFF, data) ^ 0xFFFFFFFF  # byte by byte


@pytest.mark.parametrize("variant", VARIANTS)
def test_predictions_match_the_release(variant):
    """Layer norm on and off, 3-D (kt 2) and 2-D (kt 1) kernels, 1 and 3 channels (which the release folds into
    patches in another order): the release's test-mode outputs to 1e-5."""
    stored, model, state = _imported(variant)
    difference = np.abs(_test_predictions(model, stored) - stored["predictions"]).max()
    assert difference < 1e-5, difference
    assert state.step == 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_adam_state_continues_the_release_training(variant):
    """One more training step from the checkpoint, in torch with the restored moments and step, lands where the
    release's Adam does: its formula on its saved slots and its own gradients (of its summed loss
    ``sum(e^2)/2 + sum|e|`` over the batch, not divided by it). Its train op itself assigns the weights unordered
    against its reads (ref variables): the run recorded here landed up to 1.8e-4 from that, and reruns from the same
    checkpoint differed by up to 0.025 (measured; see the README)."""
    stored, model, state = _imported(variant)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=float(stored["lr"]), betas=BETAS)
    for index, slots in state.adam.items():
        optimizer.state[params[index]] = slots
    frames = _ours(stored["next_frames"])
    context = int(stored["context_frames"])
    teacher = torch.ones(frames.shape[0], frames.shape[1] - context - 1)  # the release's flags were all ones
    error = model(frames, context, teacher) - frames[:, 1:]
    loss = error.square().sum() / 2 + error.abs().sum()
    reported = float(stored["next_loss"])  # the release reports its loss divided by the batch
    assert float(loss.detach()) / frames.shape[0] == pytest.approx(reported, rel=1e-5)
    loss.backward()
    optimizer.step()
    after = _test_predictions(model, stored)
    difference = np.abs(after - stored["predictions_after_ordered_step"]).max()
    moved = np.abs(stored["predictions_after_ordered_step"] - stored["predictions"]).max()
    assert difference < 1e-5 and moved > 1000 * difference, (difference, moved)
    assert np.abs(after - stored["predictions_after_step"]).max() < 3e-4  # the train op's own run


def test_a_fresh_adam_does_not_continue_the_release_training():
    """The control of the test above: without the restored state the same step lands elsewhere."""
    stored, model, _ = _imported("3d-ln")
    optimizer = torch.optim.Adam(model.parameters(), lr=float(stored["lr"]), betas=BETAS)
    frames = _ours(stored["next_frames"])
    context = int(stored["context_frames"])
    error = model(frames, context, torch.ones(frames.shape[0], frames.shape[1] - context - 1)) - frames[:, 1:]
    (error.square().sum() / 2 + error.abs().sum()).backward()
    optimizer.step()
    assert np.abs(_test_predictions(model, stored) - stored["predictions_after_ordered_step"]).max() > 1e-3


def test_moving_average_weights_are_mapped_but_are_not_the_trained_ones():
    stored, model, state = _imported("3d-ln")
    assert state.ema.keys() == state.weights.keys()
    model.load_state_dict(state.ema)
    assert np.abs(_test_predictions(model, stored) - stored["predictions"]).max() > 1e-4


def test_adam_moments_are_first_and_second():
    _, _, state = _imported("3d-ln")
    for slots in state.adam.values():
        assert float(slots["step"]) == 2.0
        assert (slots["exp_avg_sq"] >= 0).all()
        assert slots["exp_avg"].shape == slots["exp_avg_sq"].shape
    assert any((slots["exp_avg"] < 0).any() for slots in state.adam.values())


# ---------------------------------------------------------------------------------------------------------------------
# Refusals


def _copy(tmp_path: Path, variant: str = "3d-ln") -> Path:
    shutil.copytree(FIXTURES / variant, tmp_path / variant)
    return tmp_path / variant / PREFIX


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_data_shard_is_refused_naming_it(tmp_path):
    prefix = _copy(tmp_path)
    shard = prefix.with_name(prefix.name + ".data-00000-of-00001")
    _flip(shard, shard.stat().st_size // 2)
    with pytest.raises(ReleaseCheckpointError, match=r"model\.ckpt-2\.data-00000-of-00001: .*checksum"):
        read_checkpoint(prefix)


def test_a_damaged_index_is_refused_naming_it(tmp_path):
    prefix = _copy(tmp_path)
    index = prefix.with_name(prefix.name + ".index")
    _flip(index, 100)
    with pytest.raises(ReleaseCheckpointError, match=r"model\.ckpt-2\.index: .*checksum"):
        read_checkpoint(prefix)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 4, bytes(64)])
def test_a_file_that_is_no_v2_index_is_refused(tmp_path, content):
    (tmp_path / "model.ckpt-5.index").write_bytes(content)
    with pytest.raises(ReleaseCheckpointError, match=r"model\.ckpt-5\.index: not a TensorFlow checkpoint V2 index"):
        read_checkpoint(tmp_path / "model.ckpt-5")


def test_a_v1_checkpoint_or_missing_shard_is_refused(tmp_path):
    (tmp_path / "model.ckpt-7").write_bytes(b"\x00" * 32)  # V1: one file, no .index
    with pytest.raises(ReleaseCheckpointError, match=r"model\.ckpt-7\.index: no such file .*V1"):
        read_checkpoint(tmp_path / "model.ckpt-7")
    prefix = _copy(tmp_path)
    prefix.with_name(prefix.name + ".data-00000-of-00001").unlink()
    with pytest.raises(ReleaseCheckpointError, match=r"data-00000-of-00001: no such file"):
        read_checkpoint(prefix)


def test_a_truncated_shard_is_refused(tmp_path):
    prefix = _copy(tmp_path)
    shard = prefix.with_name(prefix.name + ".data-00000-of-00001")
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(ReleaseCheckpointError, match=r"data-00000-of-00001: variable .* runs past its end"):
        read_checkpoint(prefix)


def test_what_does_not_map_is_listed():
    stored, cfg = _fixture("3d-noln")
    values = read_checkpoint(FIXTURES / "3d-noln" / PREFIX)
    with_norms = _model(dataclasses.replace(cfg, layer_norm=True), stored)
    with pytest.raises(ReleaseCheckpointError, match=r"weights no release variable fills: \['cells.0.norm_c.bias'"):
        release_state(values, with_norms)
    wider = _model(dataclasses.replace(cfg, hidden=(4, 2)), stored)
    with pytest.raises(ReleaseCheckpointError, match=r"e3d0/conv3d/kernel \(2, 3, 3, 3, 12\) -> .*shapes differ"):
        release_state(values, wider)
    model = _model(cfg, stored)
    with pytest.raises(ReleaseCheckpointError, match=r"map nowhere: \['generator/e3d-lstm/extra'\]"):
        release_state({**values, "generator/e3d-lstm/extra": np.zeros(3, np.float32)}, model)
    without_slot = {name: value for name, value in values.items() if name != "Variable_7"}
    with pytest.raises(ReleaseCheckpointError, match=r"Adam's slots do not line up"):
        release_state(without_slot, model)


# ---------------------------------------------------------------------------------------------------------------------
# Importing as a checkpoint of ours


def _config(variant: str, **train) -> Config:
    stored, model = _fixture(variant)
    frames = stored["frames"]  # (B, T, H, W, C)
    data = DataConfig(context_frames=int(stored["context_frames"]), total_frames=frames.shape[1],
                      image_size=frames.shape[2], channels=frames.shape[-1])  # fmt: skip
    fields = dict(batch_size=frames.shape[0], lr=float(stored["lr"]), beta1=BETAS[0], beta2=BETAS[1])
    return Config(data=data, model=model, train=TrainConfig(**{**fields, **train}))


def test_release_names_are_recognised():
    assert is_release_checkpoint("runs/mnist/model.ckpt-80000")
    assert is_release_checkpoint("model.ckpt-80000.index")
    assert not is_release_checkpoint("pretrained/e3d-s0.json") and not is_release_checkpoint("last.pt")


@pytest.mark.parametrize("variant", ["3d-ln", "2d-noln"])
def test_imported_checkpoint_finetunes_on_with_our_loss(variant):
    """Through train.init_from's path (load_init_from, load_weights, restore_optimizer) and our mean loss at the
    release's mix: the moments rescaled to our loss's units continue the release's training as its own train op did."""
    stored, _ = _fixture(variant)
    cfg = _config(variant, init_from=str(FIXTURES / variant / PREFIX), init_optimizer="restore")
    source = load_init_from(cfg)
    assert source["step"] == 2 and source["path"].endswith(PREFIX) and source["config"]["model"]["conv"] in ("3d", "2d")
    model = _model(cfg.model, stored)
    load_weights(model, source, finetune=True)
    assert np.abs(_test_predictions(model, stored) - stored["predictions"]).max() < 1e-5
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))
    assert restore_optimizer(optimizer, model, source) == len(list(model.parameters()))
    frames = _ours(stored["next_frames"])
    context = cfg.data.context_frames
    pred = model(frames, context, torch.ones(frames.shape[0], frames.shape[1] - context - 1))
    prediction_loss(pred, frames[:, 1:], RELEASE_L1_WEIGHT)["loss"].backward()
    optimizer.step()
    difference = np.abs(_test_predictions(model, stored) - stored["predictions_after_ordered_step"]).max()
    assert difference < 1e-5, difference


def test_import_saves_as_our_checkpoint(tmp_path):
    cfg = _config("3d-ln")
    checkpoint = import_release(FIXTURES / "3d-ln" / f"{PREFIX}.index", cfg, weights="ema")
    torch.save(checkpoint, tmp_path / "imported.pt")
    from core.trainer import load_checkpoint

    loaded = load_checkpoint(tmp_path / "imported.pt")
    assert loaded["release"]["weights"] == "ema" and loaded["step"] == 2
    assert set(loaded["optimizer"]["state"]) == set(range(len(loaded["model"])))
    with pytest.raises(ReleaseCheckpointError, match=r"conv3d_1/kernel \(2, 3, 3, 4, 21\) -> .* shapes differ"):
        import_release(FIXTURES / "3d-ln" / PREFIX, Config(data=DataConfig(channels=3), model=cfg.model))


@pytest.mark.slow
def test_import_release_from_the_command_line_then_finetune(tmp_path, mnist_npz):
    """``launch.py import-release`` writes our checkpoint and a manifest that verifies; a variant finetunes from that
    manifest, and another straight from the release's ``model.ckpt-2`` with Adam's state restored. The weights do not
    depend on the frame size, so the fixture's model runs on the tiny trainer's 32x32 frames (patch 2)."""
    import json

    import launch
    from core.shipped import verify
    from core.trainer import train
    from core.variants import load_variant

    overrides = tiny_overrides(tmp_path, mnist_npz, "--model.hidden=3,3", "--model.patch_size=2", "--data.test_size=8",
                               "--train.steps=2", "--train.eval_every=2")  # fmt: skip
    (tmp_path / "release.yaml").write_text("variant: release_import\n")
    out = tmp_path / "pretrained" / "release-s0.pt"
    argv = ["import-release", str(FIXTURES / "3d-ln" / PREFIX), "--variant", str(tmp_path / "release.yaml")]
    assert launch.main([*argv, "--out", str(out), *overrides]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["file"] == out.name and manifest["step"] == 2 and manifest["optimizer"]
    assert sorted(manifest["release"]["files"]) == [f"{PREFIX}.data-00000-of-00001", f"{PREFIX}.index"]
    checked = verify(out.with_suffix(".json"))
    assert checked["measured"] == pytest.approx(checked["expected"], rel=1e-6)

    (tmp_path / "finetune.yaml").write_text(
        "variant: release_finetuned\ntrain: {init_from: pretrained/release-s0.json, init_optimizer: restore}\n"
    )
    cfg = load_variant(tmp_path / "finetune.yaml", overrides)
    assert cfg.train.init_from.endswith("release-s0.pt")
    first = json.loads((train(cfg, progress=False).run_dir / "summary.json").read_text())
    assert first["status"] == "finished" and first["init_from"]["optimizer_restored"] == 42

    direct = load_variant(tmp_path / "release.yaml", [*overrides, f"--train.init_from={FIXTURES / '3d-ln' / PREFIX}",
                                                     "--train.init_optimizer=restore"])  # fmt: skip
    second = json.loads((train(direct, progress=False).run_dir / "summary.json").read_text())
    assert second["status"] == "finished" and second["init_from"]["step"] == 2
    assert second["metrics"]["test/mse"] == pytest.approx(first["metrics"]["test/mse"], rel=1e-5)


def test_a_gated_residual_model_takes_the_release_weights_and_starts_its_gates_fresh():
    """The study's finetune: the release's weights into a model with zero-started skip gates, which compute what the
    release computed until training opens them; Adam's state covers every other weight."""
    stored, cfg = _fixture("3d-ln")
    gated = dataclasses.replace(cfg, residual=True, residual_gate="zero")
    model = _model(gated, stored)
    source = import_release(FIXTURES / "3d-ln" / PREFIX, dataclasses.replace(_config("3d-ln"), model=gated))
    assert load_weights(model, source, finetune=True) == ["skip_gates.decoder"]
    optimizer = torch.optim.Adam(model.parameters())
    assert restore_optimizer(optimizer, model, source) == len(list(model.parameters())) - 1
    assert np.abs(_test_predictions(model, stored) - stored["predictions"]).max() < 1e-5


def test_the_release_flags_evaluate_a_release_checkpoint_as_the_release_did(tmp_path, monkeypatch, capsys):
    """``--is_training False --pretrained_model .../model.ckpt-N``: the release's own checkpoint, imported onto the
    flags' model, scored on --valid_data_paths; its predictions are the release's (so its MSE is theirs)."""
    import launch
    from core.data.formats import write_release_npz
    from core.trainer import load_checkpoint

    stored, model_cfg = _fixture("3d-ln")
    frames = stored["frames"]  # (B, T, H, W, C): the release's inputs, as a test file of 2 sequences
    context = int(stored["context_frames"])
    monkeypatch.chdir(tmp_path)
    write_release_npz("valid.npz", _ours(frames).numpy(), context)
    flags = ["train", "--is_training", "False", "--dataset_name", "mnist", "--valid_data_paths", "valid.npz",
             "--gen_frm_dir", "results", "--pretrained_model", str(FIXTURES / "3d-ln" / PREFIX),
             "--num_hidden", ",".join(str(h) for h in model_cfg.hidden), "--filter_size", str(model_cfg.filter_size),
             "--patch_size", str(model_cfg.patch_size), "--img_width", str(frames.shape[2]), "--img_channel", "1",
             "--input_length", str(context), "--total_length", str(frames.shape[1]),
             "--layer_norm", "True"]  # fmt: skip
    assert launch.main(flags) == 0, capsys.readouterr().err
    imported = tmp_path / "results" / f"{PREFIX}.pt"
    assert f"imported {FIXTURES / '3d-ln' / PREFIX} as results/{PREFIX}.pt" in capsys.readouterr().out
    report = json.loads(next((tmp_path / "results").glob("eval-valid-ours.json")).read_text())
    predictions = np.clip(stored["predictions"], 0, 1)
    truth = frames[:, context:]
    mse = float(((predictions - truth) ** 2).sum(axis=(2, 3, 4)).mean())
    assert report["metrics"]["test/mse"] == pytest.approx(mse, rel=1e-4)
    assert load_checkpoint(imported)["release"]["checkpoint"].endswith(PREFIX)
