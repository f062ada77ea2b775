"""The shared stack leaves the E3D-LSTM as it was: outputs, weight names and config hashes pinned from the code before
the stack was split out of core/models/e3d_lstm.py (issue 26), so a refactor of the stack cannot move them."""

import dataclasses

import pytest
import torch

from ablations.variants import ROOT
from core.config import ModelConfig, config_hash, load
from core.models import E3DLSTM, RecurrentStack, build_model
from core.variants import load_variant

# (sum, sum of squares, one value) of the float64 forward pass below, computed on the pre-stack code.
PINNED_OUTPUTS = {
    "released": ({}, (-24.96289448693294, 448.93199549872156, 0.5986795195514023)),
    "2d": (dict(conv="2d"), (-306.4066655078159, 427.5450421800724, -0.3974138434133338)),
    "residual-4": (dict(hidden=(4, 4, 4, 4), residual=True), (571.1784211931205, 786.46450490999, 1.2163583342533604)),
    "gated-3-zigzag": (
        dict(hidden=(4, 4, 4), residual=True, residual_gate="zero", memory_flow="zigzag"),
        (-3.5577017490168146, 698.5459796676068, 0.5630321442685623),
    ),
    "off-paper-window3": (
        dict(recall="off", output_gate="paper", window=3, patch_size=2),
        (-144.9389919165757, 1005.2901967194563, 0.6876595697846523),
    ),
    "even-5": (
        dict(hidden=(4,) * 5, residual=True, residual_layers="even"),
        (-264.2486197039198, 755.6363504738924, -0.7380880260358637),
    ),
}


@pytest.fixture(autouse=True)
def _flush_denormals():
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def pinned_forward(changes: dict) -> tuple[E3DLSTM, torch.Tensor]:
    """Seeded init, every parameter moved off it (skip gates to 0.7), a mixed scheduled-sampling mask, float64."""
    cfg = dataclasses.replace(ModelConfig(hidden=(4, 4), filter_size=3, patch_size=4), **changes)
    torch.manual_seed(0)
    model = build_model(cfg, 1, 16).to(torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for gate in model.skip_gates.values():
            gate.fill_(0.7)
    x = torch.rand(2, 6, 1, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        return model, model(x, 3, mask)


@pytest.mark.parametrize("case", PINNED_OUTPUTS)
def test_e3d_outputs_are_the_pre_stack_codes(case):
    changes, expected = PINNED_OUTPUTS[case]
    model, pred = pinned_forward(changes)
    assert isinstance(model, RecurrentStack)
    got = (pred.sum().item(), pred.square().sum().item(), pred[0, -1, 0, 5, 7].item())
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_e3d_weight_names_are_the_pre_stack_codes():
    """The shipped checkpoints' keys: the stack keeps cells.<l>.*, decoder.* and skip_gates.* in that order."""
    model, _ = pinned_forward(dict(hidden=(4, 4, 4), residual=True, residual_gate="zero"))
    cell = ["conv_x", "conv_h", "conv_m", "conv_oc", "conv_om", "conv_out"]
    norms = ["norm_x", "norm_h", "norm_m", "norm_c"]
    per_layer = [f"{name}.{kind}" for name in cell + norms for kind in ("weight", "bias")]
    expected = [f"cells.{l}.{name}" for l in range(3) for name in per_layer]
    expected += ["decoder.weight", "decoder.bias", "skip_gates.decoder", "skip_gates.layer2"]  # ParameterDict sorts
    assert list(model.state_dict()) == expected


PINNED_HASHES = {  # config_hash before the stack and the convlstm family
    (): "4639e8fe",
    ("--model.conv=2d",): "99e1e1d0",
    ("--model.residual=true", "--model.residual_gate=zero"): "695f093d",
    ("--model.recall=off", "--model.memory_flow=zigzag", "--model.output_gate=paper"): "eda4c413",
}
PINNED_VARIANT_HASHES = {
    ("e3d_baseline", None): "54e0d11f",
    ("e3d_baseline", "demo"): "39e3018f",
    ("e2d", None): "fe1937db",
    ("e2d", "demo"): "4aa23ae0",
    ("residual", "demo"): "05261c3f",
    ("residual_gated", "demo"): "deb72605",
    ("l1_only", "demo"): "6ce0d2fd",
}


@pytest.mark.parametrize("overrides", PINNED_HASHES)
def test_e3d_config_hashes_are_unchanged(overrides):
    assert config_hash(load(None, list(overrides))) == PINNED_HASHES[overrides]


@pytest.mark.parametrize(("variant", "profile"), PINNED_VARIANT_HASHES)
def test_e3d_variant_hashes_are_unchanged(variant, profile):
    cfg = load_variant(ROOT / "moving_mnist" / f"{variant}.yaml", profile=profile)
    assert config_hash(cfg) == PINNED_VARIANT_HASHES[(variant, profile)]
