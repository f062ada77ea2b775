"""The ConvLSTM family: against a float64 transcription of the paper's equations (tests/reference_convlstm.py) at
several switch settings, outputs and gradients; the E3D-LSTM's switches refused and left out of its hash."""

import dataclasses

import pytest
import torch
from reference_convlstm import reference_forward

from ablations.variants import ROOT
from core.config import E3D_ONLY, ConfigError, ModelConfig, config_hash, load
from core.models import ConvLSTM, build_model
from core.variants import load_variant

BATCH, LENGTH, CONTEXT, SIZE = 2, 6, 3, 16


def tiny(**changes) -> ModelConfig:
    """2 x 4 hidden, 3x3 kernels, 16x16 frames folded by 4 to 4x4x16, the ConvLSTM family."""
    return dataclasses.replace(ModelConfig(name="convlstm", hidden=(4, 4), filter_size=3, patch_size=4), **changes)


def make(cfg: ModelConfig, dtype: torch.dtype = torch.float64) -> ConvLSTM:
    """Every parameter (biases, peepholes and skip gates included) moved off its init, so no term hides."""
    torch.manual_seed(0)
    model = build_model(cfg, 1, SIZE).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def frames(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(BATCH, LENGTH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1), dtype=dtype)


REFERENCE_CASES = {
    "paper-2d-window-1": (dict(conv="2d", window=1), True),
    "2d-window-2-free-running": (dict(conv="2d"), False),
    "3d": (dict(), True),
    "3d-window-3-forget-bias": (dict(window=3, forget_bias=0.0, patch_size=2), True),
    "3d-residual-4-layers": (dict(hidden=(4, 4, 4, 4), residual=True), True),
    "2d-residual-3-layers-gated": (dict(conv="2d", hidden=(4, 4, 4), residual=True, residual_gate="zero"), True),
    "3d-residual-5-layers-even": (dict(hidden=(4,) * 5, residual=True, residual_layers="even"), False),
    "2d-unequal": (dict(conv="2d", hidden=(3, 5, 4)), True),
}


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_matches_the_papers_equations(case):
    changes, with_mask = REFERENCE_CASES[case]
    model = make(tiny(**changes))
    x = frames()
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64) if with_mask else None
    weights = torch.randn(BATCH, LENGTH - 1, 1, SIZE, SIZE, dtype=torch.float64)
    params = list(model.parameters())

    pred = model(x, CONTEXT, mask)
    grads = torch.autograd.grad((pred * weights).sum(), params)
    expected = reference_forward(model, x, CONTEXT, mask)
    expected_grads = torch.autograd.grad((expected * weights).sum(), params)

    torch.testing.assert_close(pred, expected, rtol=1e-10, atol=1e-10)
    for (name, _), grad, expected_grad in zip(model.named_parameters(), grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("changes", [dict(), dict(conv="2d", residual=True), dict(residual=True, residual_gate="zero")])
def test_trains_every_parameter(changes):
    model = make(tiny(**changes), torch.float32)
    pred = model(frames(torch.float32), CONTEXT, torch.ones(BATCH, LENGTH - CONTEXT - 1))
    assert pred.shape == (BATCH, LENGTH - 1, 1, SIZE, SIZE) and torch.isfinite(pred).all()
    pred.square().mean().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0] == []


def test_initialised_as_released_with_peepholes_at_zero():
    """Glorot kernels and zero biases as the stack's other families; peepholes start at 0, learned from there."""
    model = build_model(tiny(), 1, SIZE)
    cell = model.cells[0]
    assert cell.conv.weight.shape == (16, 16 + 4, 2, 3, 3) and not cell.conv.bias.any()
    assert cell.peephole_i.shape == (4, 2, 4, 4) and not any(p.any() for p in (cell.peephole_f, cell.peephole_o))


def test_conv_and_residual_change_the_output():
    base = make(tiny())
    x = frames()
    for change in (dict(conv="2d"), dict(residual=True)):
        other = build_model(dataclasses.replace(tiny(), **change), 1, SIZE).to(torch.float64)
        shared = {k: v for k, v in base.state_dict().items() if other.state_dict()[k].shape == v.shape}
        other.load_state_dict({**other.state_dict(), **shared})
        with torch.no_grad():
            assert not torch.allclose(base(x, CONTEXT), other(x, CONTEXT), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Config: the E3D-LSTM's switches refused, left out of the hash; the family hashes apart


@pytest.mark.parametrize(
    "override",
    ["--model.recall=off", "--model.memory_flow=zigzag", "--model.output_gate=paper", "--model.layer_norm=false",
     "--model.layer_norm_eps=1e-5"],
)  # fmt: skip
def test_e3d_switches_are_refused_for_convlstm(override):
    key = override[2:].split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key} means nothing for model.name 'convlstm'.*e3d_lstm"):
        load(None, ["--model.name=convlstm", override])
    load(None, [override])  # the E3D-LSTM reads it


def test_3d_convlstm_needs_a_window():
    with pytest.raises(ConfigError, match=r"model.conv '3d' gives convlstm.*model.window >= 2"):
        load(None, ["--model.name=convlstm", "--model.window=1"])
    load(None, ["--model.name=convlstm", "--model.window=1", "--model.conv=2d"])


def test_hash_leaves_the_e3d_switches_out_and_the_family_in():
    convlstm = load(None, ["--model.name=convlstm"])
    assert config_hash(convlstm) != config_hash(load(None, []))
    hashed = dataclasses.asdict(convlstm.model)
    assert set(E3D_ONLY) <= set(hashed)
    from core.config import hashed_fields

    assert set(E3D_ONLY).isdisjoint(hashed_fields(convlstm)["model"]) and hashed_fields(convlstm)["model"]["name"]
    assert config_hash(load(None, ["--model.name=convlstm", "--model.residual=true"])) != config_hash(convlstm)


@pytest.mark.parametrize("profile", [None, "demo", "paper"])
def test_variant_is_the_papers_convlstm(profile):
    cfg = load_variant(ROOT / "moving_mnist" / "convlstm.yaml", profile=profile)
    assert (cfg.variant, cfg.model.name, cfg.model.conv, cfg.model.window) == ("mmnist_convlstm", "convlstm", "2d", 1)
    assert not cfg.model.residual


def test_rows_name_the_family_and_its_axes():
    from core.axes import axis, recorded_axes, variant_name
    from core.config import to_dict

    family = axis("model.name")
    assert (family.name, family.shapes, family.of({})) == ("family", True, "e3d_lstm")
    config = to_dict(load(None, ["--model.name=convlstm", "--model.residual=true"]))
    values = recorded_axes(config)
    assert values["family"] == "convlstm" and variant_name(values) == "ConvLSTM, 3D kernels, residuals"
    assert variant_name({**values, "conv": "2d", "residual": False, "l1_weight": 0.0}) == "ConvLSTM, l2 only"
    assert variant_name({**values, "family": "e3d_lstm"}) == "E3D-LSTM + residuals"
