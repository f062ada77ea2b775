"""The PredRNN and PredRNN++ families: each against a float64 transcription of its paper's equations
(tests/reference_predrnn.py, tests/reference_predrnnpp.py) at several switch settings, outputs and every parameter's
gradient; the E3D-LSTM's switches refused and left out of their hashes; their variants and row names."""

import dataclasses

import pytest
import torch
from reference_predrnn import reference_forward as predrnn_reference
from reference_predrnnpp import reference_forward as predrnnpp_reference
from test_convlstm import BATCH, CONTEXT, LENGTH, SIZE, frames, make  # the same sizes and weight shake

from ablations.variants import ROOT
from core.config import E3D_ONLY, ConfigError, ModelConfig, config_hash, hashed_fields, load
from core.models import PredRNN, PredRNNpp, build_model
from core.variants import load_variant

FAMILIES = {"predrnn": (PredRNN, predrnn_reference), "predrnnpp": (PredRNNpp, predrnnpp_reference)}


def tiny(family: str, **changes) -> ModelConfig:
    """2 x 4 hidden, 3x3 kernels, 16x16 frames folded by 4 to 4x4x16."""
    return dataclasses.replace(ModelConfig(name=family, hidden=(4, 4), filter_size=3, patch_size=4), **changes)


REFERENCE_CASES = {
    "paper-2d-window-1": (dict(conv="2d", window=1), True),
    "2d-window-2-free-running": (dict(conv="2d"), False),
    "3d": (dict(), True),
    "3d-window-3-forget-bias": (dict(window=3, forget_bias=0.0, patch_size=2), True),
    "3d-3-layers": (dict(hidden=(4, 4, 4)), True),
    "3d-residual-4-layers": (dict(hidden=(4, 4, 4, 4), residual=True), True),
    "2d-residual-3-layers-gated": (dict(conv="2d", hidden=(4, 4, 4), residual=True, residual_gate="zero"), True),
    "3d-residual-5-layers-even-gated": (
        dict(hidden=(4,) * 5, residual=True, residual_layers="even", residual_gate="zero"),
        False,
    ),
}


def check_against_reference(family: str, changes: dict, with_mask: bool) -> None:
    model = make(tiny(family, **changes))
    reference = FAMILIES[family][1]
    x = frames()
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64) if with_mask else None
    weights = torch.randn(BATCH, LENGTH - 1, 1, SIZE, SIZE, dtype=torch.float64)
    params = list(model.parameters())

    pred = model(x, CONTEXT, mask)
    grads = torch.autograd.grad((pred * weights).sum(), params)
    expected = reference(model, x, CONTEXT, mask)
    expected_grads = torch.autograd.grad((expected * weights).sum(), params)

    torch.testing.assert_close(pred, expected, rtol=1e-10, atol=1e-10)
    for (name, _), grad, expected_grad in zip(model.named_parameters(), grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("case", REFERENCE_CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_matches_the_papers_equations(family, case):
    check_against_reference(family, *REFERENCE_CASES[case])


@pytest.mark.parametrize("hidden", [(6, 3, 4), (8, 4, 4, 4)])
def test_predrnnpp_with_layers_of_different_widths(hidden):
    """W_3 maps the memory to each layer's width: the paper's Moving MNIST model is 128, 64, 64, 64."""
    check_against_reference("predrnnpp", dict(hidden=hidden), True)
    check_against_reference("predrnnpp", dict(hidden=hidden, conv="2d", window=1), False)


@pytest.mark.parametrize("changes", [dict(), dict(conv="2d", residual=True), dict(residual=True, residual_gate="zero")])
@pytest.mark.parametrize("family", FAMILIES)
def test_trains_every_parameter(family, changes):
    model = make(tiny(family, hidden=(4, 4, 4), **changes), torch.float32)
    pred = model(frames(torch.float32), CONTEXT, torch.ones(BATCH, LENGTH - CONTEXT - 1))
    assert pred.shape == (BATCH, LENGTH - 1, 1, SIZE, SIZE) and torch.isfinite(pred).all()
    pred.square().mean().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0] == []


@pytest.mark.parametrize("family", FAMILIES)
def test_initialised_as_the_stack_with_one_bias_per_gate(family):
    """Glorot kernels and zero biases, as the stack's other families; only the convolution over X has biases."""
    model = build_model(tiny(family), 1, SIZE)
    assert isinstance(model, FAMILIES[family][0])
    biased = {name for name, _ in model.named_parameters() if name.endswith("bias")}
    expected = {"cells.0.conv_x.bias", "cells.1.conv_x.bias", "decoder.bias"}
    assert biased == expected | ({"cells.1.highway.conv_x.bias"} if family == "predrnnpp" else set())
    assert not any(p.any() for name, p in model.named_parameters() if name in biased)


def test_the_memory_zigzags():
    """Layer 0 at step t reads the top layer's M of step t-1: shifting only the top layer's memory gates (its i' and
    f' biases) leaves layer 0's H at step 0 as it was and changes it at step 1 (both steps feed true frames)."""
    model = make(tiny("predrnn", hidden=(4, 4, 4)))
    bottom: list[torch.Tensor] = []
    model.cells[0].register_forward_hook(lambda module, args, out: bottom.append(out[0]))
    model(frames(), CONTEXT)
    with torch.no_grad():
        model.cells[2].conv_x.bias[3 * 4 : 5 * 4].add_(1.0)  # rows i, f, g, i', f', g', o of 4 channels each
    model(frames(), CONTEXT)
    steps = LENGTH - 1
    assert torch.equal(bottom[0], bottom[steps])
    assert not torch.allclose(bottom[1], bottom[steps + 1])


# ---------------------------------------------------------------------------------------------------------------------
# Config: the E3D-LSTM's switches refused, left out of the hash; sizes the memory and the highway need


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "override",
    ["--model.recall=off", "--model.memory_flow=zigzag", "--model.output_gate=paper", "--model.layer_norm=false",
     "--model.layer_norm_eps=1e-5"],
)  # fmt: skip
def test_e3d_switches_are_refused(family, override):
    key = override[2:].split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key} means nothing for model.name '{family}'.*e3d_lstm"):
        load(None, [f"--model.name={family}", override])


@pytest.mark.parametrize("family", FAMILIES)
def test_sizes_the_memory_and_the_window_need(family):
    if family == "predrnn":
        with pytest.raises(ConfigError, match=r"model.hidden must be one size in every layer for predrnn"):
            load(None, ["--model.name=predrnn", "--model.hidden=8,4"])
    else:
        load(None, ["--model.name=predrnnpp", "--model.hidden=8,4"])
    with pytest.raises(ConfigError, match=rf"model.conv '3d' gives {family}.*model.window >= 2"):
        load(None, [f"--model.name={family}", "--model.window=1"])
    load(None, [f"--model.name={family}", "--model.window=1", "--model.conv=2d"])
    if family == "predrnnpp":
        with pytest.raises(ConfigError, match=r"model.hidden needs at least 2 layers for predrnnpp"):
            load(None, ["--model.name=predrnnpp", "--model.hidden=8"])
    else:
        load(None, ["--model.name=predrnn", "--model.hidden=8"])


def test_hash_leaves_the_e3d_switches_out_and_the_family_in():
    hashes = {config_hash(load(None, [f"--model.name={name}"])) for name in ("e3d_lstm", "convlstm", *FAMILIES)}
    assert len(hashes) == 4
    for family in FAMILIES:
        cfg = load(None, [f"--model.name={family}"])
        assert set(E3D_ONLY).isdisjoint(hashed_fields(cfg)["model"]) and hashed_fields(cfg)["model"]["name"] == family
        assert config_hash(load(None, [f"--model.name={family}", "--model.residual=true"])) != config_hash(cfg)


@pytest.mark.parametrize("profile", [None, "demo", "paper"])
@pytest.mark.parametrize("family", FAMILIES)
def test_variant_is_the_papers_model(family, profile):
    cfg = load_variant(ROOT / "moving_mnist" / f"{family}.yaml", profile=profile)
    assert (cfg.variant, cfg.model.name, cfg.model.conv, cfg.model.window) == (f"mmnist_{family}", family, "2d", 1)
    assert not cfg.model.residual


def test_rows_name_the_family_and_its_axes():
    from core.axes import recorded_axes, variant_name
    from core.config import to_dict

    values = recorded_axes(to_dict(load(None, ["--model.name=predrnn", "--model.residual=true"])))
    assert values["family"] == "predrnn" and variant_name(values) == "PredRNN, 3D kernels, residuals"
    values = recorded_axes(to_dict(load(None, ["--model.name=predrnnpp", "--model.conv=2d"])))
    assert variant_name(values) == "PredRNN++"
    assert variant_name({**values, "residual": "gated"}).startswith("PredRNN++, gated")
