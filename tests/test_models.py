"""The model package: registry, patching, the E3D-LSTM against a slow explicit reference, its switches, scheduled
sampling, the eidetic recall's custom autograd, and the parameter count at the study's size."""

import dataclasses
import itertools
import math

import pytest
import torch
from reference_e3d import attention, reference_forward
from torch import nn

from core.config import ModelConfig
from core.models import E3DLSTM, build_model, model_names, patch_fold, patch_unfold, recall, register_model, registry
from core.models.e3d_lstm import CellConv
from core.models.recall import EideticHistory

BATCH, LENGTH, CONTEXT, SIZE = 2, 6, 3, 16


@pytest.fixture(autouse=True)
def _flush_denormals():
    """As the trainer does: the released unscaled recall makes subnormal softmax weights, which crawl on CPU."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def tiny(**changes) -> ModelConfig:
    """A model small enough for a test: 2 x 4 hidden, 3x3 kernels, 16x16 frames folded by 4 to 4x4x16."""
    return dataclasses.replace(ModelConfig(hidden=(4, 4), filter_size=3, patch_size=4), **changes)


def make(cfg: ModelConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> E3DLSTM:
    """The model with every parameter (biases and norm gains included) moved off its init, so no term hides."""
    torch.manual_seed(seed)
    model = build_model(cfg, 1, SIZE).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def frames(seed: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, T, 1, H, W) uniform in [0, 1]."""
    return torch.rand(BATCH, LENGTH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def mixed_mask(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, T - context - 1): sample 0 gets the true frame at the first free step, sample 1 at the second."""
    return torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Registry


def test_registry_builds_from_model_config():
    model = build_model(tiny(), channels=1, image_size=SIZE)
    assert isinstance(model, E3DLSTM) and "e3d_lstm" in model_names()
    assert model.cfg == tiny()


def test_unknown_model_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"unknown model 'phydnet'; valid names: convlstm, e3d_lstm, predrnn, predrnnpp"
    ):
        build_model(tiny(name="phydnet"), 1, SIZE)


def test_duplicate_registration_raises(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    with pytest.raises(ValueError, match="already registered"):
        register_model("e3d_lstm")(E3DLSTM)

    @register_model("constant")
    def constant(cfg, channels, image_size):
        return nn.Identity()

    assert "constant" in model_names()
    assert isinstance(build_model(tiny(name="constant"), 1, SIZE), nn.Identity)


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_predicts_every_next_frame(name):
    model = build_model(tiny(name=name), 1, SIZE)
    pred = model(frames(), CONTEXT, torch.ones(BATCH, LENGTH - CONTEXT - 1))
    assert pred.shape == (BATCH, LENGTH - 1, 1, SIZE, SIZE) and torch.isfinite(pred).all()
    pred.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------------
# Patching and the cell's convolution


def test_patch_fold_layout_and_inverse():
    p, channels = 4, 3
    x = torch.randn(2, 3, channels, 8, 12)
    folded = patch_fold(x, p)
    assert folded.shape == (2, 3, channels * p * p, 2, 3)
    for c, h, w in itertools.product(range(channels), range(8), range(12)):
        assert torch.equal(folded[:, :, c * p * p + (h % p) * p + w % p, h // p, w // p], x[:, :, c, h, w])
    assert torch.equal(patch_unfold(folded, p), x)


def test_cell_conv_pads_time_as_tensorflow():
    """kt = 2: output time i sees inputs i and i + 1 (0 before, 1 after), so the last input reaches both outputs."""
    conv = CellConv(1, 1, temporal=2, spatial=3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    first, last = torch.zeros(1, 1, 2, 5, 5), torch.zeros(1, 1, 2, 5, 5)
    first[0, 0, 0, 2, 2], last[0, 0, 1, 2, 2] = 1.0, 1.0
    assert conv(first)[0, 0, :, 2, 2].tolist() == [1.0, 0.0]
    assert conv(last)[0, 0, :, 2, 2].tolist() == [1.0, 1.0]
    assert CellConv(1, 1, temporal=1, spatial=3)(first).shape == first.shape


# ---------------------------------------------------------------------------------------------------------------------
# Every axis combination: shapes, finiteness, gradients

AXES = {
    "conv": ("3d", "2d"),
    "residual": (False, True),
    "memory_flow": ("released", "zigzag"),
    "recall": ("released", "scaled", "off"),
    "output_gate": ("released", "paper"),
    "layer_norm": (True, False),
}
COMBINATIONS = [dict(zip(AXES, values, strict=True)) for values in itertools.product(*AXES.values())]


@pytest.mark.parametrize("axes", COMBINATIONS, ids=lambda axes: "-".join(str(v) for v in axes.values()))
def test_every_axis_combination_runs_and_trains(axes):
    model = make(tiny(**axes))
    pred = model(frames(), CONTEXT, mixed_mask())
    assert pred.shape == (BATCH, LENGTH - 1, 1, SIZE, SIZE)
    assert torch.isfinite(pred).all()
    pred.square().mean().backward()
    grads = dict(model.named_parameters())
    assert all(p.grad is not None for p in grads.values())
    # With the released memory flow every conv_m sees only the zero start, so its kernel's gradient is exactly zero
    # (its bias still matters); every other parameter, and every one under zigzag, must get a nonzero gradient.
    idle = {name for name in grads if name.endswith("conv_m.weight")} if axes["memory_flow"] == "released" else set()
    assert all(grads[name].grad.abs().max() == 0 for name in idle)
    assert [name for name, p in grads.items() if name not in idle and p.grad.abs().max() == 0] == []
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules()) == axes["layer_norm"]


# ---------------------------------------------------------------------------------------------------------------------
# Against the slow explicit reference (float64)

REFERENCE_CASES = {
    "released": (dict(), True),
    "released-free-running": (dict(), False),
    "scaled": (dict(recall="scaled"), True),
    "off-no-norm": (dict(recall="off", layer_norm=False), True),
    "no-norm": (dict(layer_norm=False), False),
    "residual-4-layers-zigzag-paper": (
        dict(hidden=(4, 4, 4, 4), residual=True, memory_flow="zigzag", output_gate="paper"),
        True,
    ),
    "residual-3-layers": (dict(hidden=(4, 4, 4), residual=True), True),
    "residual-6-layers-study": (dict(hidden=(4,) * 6, residual=True), True),
    "residual-5-layers-even": (dict(hidden=(4,) * 5, residual=True, residual_layers="even"), True),
    "2d-zigzag-unequal": (dict(conv="2d", memory_flow="zigzag", hidden=(3, 5, 4)), True),
    "window-3-forget-bias": (dict(window=3, forget_bias=0.5, patch_size=2), True),
    "window-1": (dict(window=1), True),
}


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_matches_reference(case):
    _check_against_reference(case)


@pytest.mark.parametrize("case", ["released", "scaled"])
def test_matches_reference_either_recall_backward(case, recall_backward):
    _check_against_reference(case)


def _check_against_reference(case: str) -> None:
    changes, with_mask = REFERENCE_CASES[case]
    model = make(tiny(**changes), dtype=torch.float64)
    x = frames(dtype=torch.float64)
    mask = mixed_mask(torch.float64) if with_mask else None
    weights = torch.randn(BATCH, LENGTH - 1, 1, SIZE, SIZE, dtype=torch.float64)
    params = list(model.parameters())

    pred = model(x, CONTEXT, mask)
    grads = torch.autograd.grad((pred * weights).sum(), params)
    expected = reference_forward(model, x, CONTEXT, mask)
    expected_grads = torch.autograd.grad((expected * weights).sum(), params)

    torch.testing.assert_close(pred, expected, rtol=1e-10, atol=1e-11)
    for (name, _), grad, expected_grad in zip(model.named_parameters(), grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


# ---------------------------------------------------------------------------------------------------------------------
# Each switch changes what it should


def _differs(base: ModelConfig, **change) -> bool:
    """Whether the output changes when only ``change`` changes, weights kept."""
    model = make(base)
    other = build_model(dataclasses.replace(base, **change), 1, SIZE)
    other.load_state_dict(model.state_dict())
    x = frames()
    with torch.no_grad():
        return not torch.allclose(model(x, CONTEXT), other(x, CONTEXT), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("base", "change"),
    [
        (tiny(), dict(residual=True)),
        (tiny(hidden=(4, 4, 4)), dict(residual=True)),
        (tiny(), dict(memory_flow="zigzag")),
        (tiny(), dict(recall="scaled")),
        (tiny(), dict(recall="off")),
        (tiny(recall="scaled"), dict(recall="off")),
        (tiny(), dict(output_gate="paper")),
    ],
    ids=["residual-2", "residual-3", "memory_flow", "recall-scaled", "recall-off", "scaled-vs-off", "output_gate"],
)
def test_switch_changes_output(base, change):
    assert _differs(base, **change)


def test_initialised_as_released():
    """TensorFlow's conv defaults (Glorot-uniform kernels, zero biases); layer norm gains 1, shifts 0."""
    model = build_model(tiny(), 1, SIZE)
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            fan_in, fan_out = (module.weight[0].numel(), module.weight[:, 0].numel())
            assert module.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) and module.bias.abs().max() == 0
        if isinstance(module, nn.GroupNorm):
            assert module.weight.eq(1).all() and module.bias.eq(0).all() and module.num_groups == 1


def test_layer_norm_off_has_no_norm_parameters():
    on, off = build_model(tiny(), 1, SIZE), build_model(tiny(layer_norm=False), 1, SIZE)
    norm_names = {name for name in dict(on.named_parameters()) if ".norm_" in name}
    assert len(norm_names) == 2 * 4 * 2  # 2 layers x 4 norms x (gain, shift)
    assert set(dict(on.named_parameters())) - set(dict(off.named_parameters())) == norm_names


def test_layer_norm_of_the_zero_memory_branch_is_the_releases():
    """Released memory flow: conv_m sees zeros, so its norm sees the bias alone. The release's layer norm (variance
    epsilon 1e-12, over every non-batch axis) scales a bias spread by 1e-3 to unit variance; 1e-5 would flatten it."""
    cell = make(tiny()).cells[0]
    hidden = 4
    with torch.no_grad():
        cell.conv_m.bias.copy_(1e-3 * torch.randn(4 * hidden, generator=torch.Generator().manual_seed(3)))
        zero_memory = torch.zeros(2, hidden, 2, 4, 4)  # (B, C_m, window, H', W')
        out = cell.norm_m(cell.conv_m(zero_memory))
    # By hand: every position holds the bias; statistics over (channels, window, H', W') of one sample.
    x = cell.conv_m.bias.double().view(1, -1, 1, 1, 1).expand(2, -1, 2, 4, 4)
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    var = x.var(dim=(1, 2, 3, 4), unbiased=False, keepdim=True)
    gain, shift = (p.double().view(1, -1, 1, 1, 1) for p in (cell.norm_m.weight, cell.norm_m.bias))
    release = (x - mean) / torch.sqrt(var + 1e-12) * gain + shift
    torch.testing.assert_close(out.double(), release, rtol=1e-4, atol=1e-4)
    flattened = (x - mean) / torch.sqrt(var + 1e-5) * gain + shift
    assert (release - flattened).abs().max() > 0.5  # what eps 1e-5 did to this branch


def test_layer_norms_run_in_float32_under_bfloat16_autocast():
    cell = make(tiny()).cells[0]
    x = torch.randn(2, 7 * 4, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv_out = cell.conv_x(torch.randn(2, 16, 2, 4, 4))
        normed = cell.norm_x(conv_out)
        direct = cell.norm_x(x)
    assert conv_out.dtype == torch.bfloat16 and normed.dtype == torch.float32
    torch.testing.assert_close(direct, cell.norm_x(x), rtol=0, atol=0)  # float32 input: the same as without autocast


class _Probe(nn.Module):
    """Stands in for a cell: records its input and returns the hidden state ``value`` everywhere."""

    def __init__(self, value: float, seen: list) -> None:
        super().__init__()
        self.value, self.seen = value, seen

    def forward(self, x, h, c, m, history):
        self.seen.append(float(x.flatten()[0]))
        return torch.full_like(h, self.value), c, m


@pytest.mark.parametrize(
    "layers, residual_layers, layer_inputs, decoder_input",
    [
        # Layer l outputs H_l = 10**l, so every sum names its terms: 11 is H_1 + H_0, 1100 is H_3 + H_2.
        (2, "study", {1: 1}, 11),  # decoder: H_1 + H_0
        (3, "study", {1: 1, 2: 11}, 110),  # layer 2: H_1 + H_0; decoder: H_2 + H_1 (always, as in the study's code)
        (4, "study", {1: 1, 2: 11, 3: 100}, 1100),  # the study's own 4-layer wiring
        (5, "study", {1: 1, 2: 11, 3: 100, 4: 1000}, 11000),  # layer 2 and the decoder only, at any depth
        (6, "study", {1: 1, 2: 11, 3: 100, 4: 1000, 5: 10000}, 110000),
        (4, "even", {1: 1, 2: 11, 3: 100}, 1100),  # the same as the study's below 5 layers
        (5, "even", {1: 1, 2: 11, 3: 100, 4: 1100}, 11000),  # every even layer too
        (6, "even", {1: 1, 2: 11, 3: 100, 4: 1100, 5: 10000}, 110000),
    ],
)
def test_residual_wiring_is_the_studys(layers, residual_layers, layer_inputs, decoder_input):
    cfg = tiny(hidden=(4,) * layers, residual=True, residual_layers=residual_layers, recall="off")
    model = build_model(cfg, 1, SIZE)
    seen: list[list[float]] = [[] for _ in range(layers)]
    model.cells = nn.ModuleList(_Probe(10.0**l, seen[l]) for l in range(layers))
    decoded: list[float] = []
    model.decoder.register_forward_pre_hook(lambda module, args: decoded.append(float(args[0].flatten()[0])))
    with torch.no_grad():
        model(frames(), CONTEXT)
    for l, expected in layer_inputs.items():
        assert seen[l] == [expected] * (LENGTH - 1), f"layer {l}"
    assert decoded == [decoder_input] * (LENGTH - 1)
    plain = build_model(tiny(hidden=(4,) * layers, recall="off"), 1, SIZE)
    plain.cells = nn.ModuleList(_Probe(10.0**l, []) for l in range(layers))
    plain_decoded: list[float] = []
    plain.decoder.register_forward_pre_hook(lambda module, args: plain_decoded.append(float(args[0].flatten()[0])))
    with torch.no_grad():
        plain(frames(), CONTEXT)
    assert plain_decoded == [10.0 ** (layers - 1)] * (LENGTH - 1)  # no residuals: the top layer alone


@pytest.mark.parametrize("memory_flow", ["released", "zigzag"])
def test_memory_reaching_each_cell(memory_flow):
    """Released: every cell's conv_m only ever sees zeros. Zigzag: after the very first cell, it sees M' values."""
    model = make(tiny(hidden=(4, 4, 4), memory_flow=memory_flow))
    seen: list[torch.Tensor] = []
    for cell in model.cells:
        cell.conv_m.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        model(frames(), CONTEXT)
    assert len(seen) == 3 * (LENGTH - 1)
    assert seen[0].abs().max() == 0  # the zero start
    if memory_flow == "released":
        assert all(m.abs().max() == 0 for m in seen)
    else:
        assert all(m.abs().max() > 0 for m in seen[1:])


# ---------------------------------------------------------------------------------------------------------------------
# Scheduled sampling and free running


def test_all_true_mask_is_teacher_forcing():
    model, x = make(tiny()), frames()
    with torch.no_grad():
        sampled = model(x, CONTEXT, torch.ones(BATCH, LENGTH - CONTEXT - 1))
        teacher = model(x, LENGTH - 1)  # every step fed its true frame
    torch.testing.assert_close(sampled, teacher, rtol=0, atol=0)


def test_free_running_ignores_future_frames():
    model, x = make(tiny()), frames()
    changed = x.clone()
    changed[:, CONTEXT:] = torch.rand_like(changed[:, CONTEXT:])
    with torch.no_grad():
        free = model(x, CONTEXT)
        torch.testing.assert_close(model(changed, CONTEXT), free, rtol=0, atol=0)
        torch.testing.assert_close(model(x, CONTEXT, torch.zeros(BATCH, LENGTH - CONTEXT - 1)), free, rtol=0, atol=0)
        # fed true frames, the same model does look at them
        ones = torch.ones(BATCH, LENGTH - CONTEXT - 1)
        assert not torch.allclose(model(changed, CONTEXT, ones), model(x, CONTEXT, ones))


def test_mask_picks_per_sequence():
    """Sample 0 fed the truth at every free step and sample 1 its own predictions, in one batch."""
    model, x = make(tiny()), frames()
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    with torch.no_grad():
        mixed = model(x, CONTEXT, mask)
        torch.testing.assert_close(mixed[0], model(x, LENGTH - 1)[0], rtol=0, atol=0)
        torch.testing.assert_close(mixed[1], model(x, CONTEXT)[1], rtol=0, atol=0)


def test_forward_rejects_bad_arguments():
    model = build_model(tiny(), 1, SIZE)
    with pytest.raises(ValueError, match="true_mask"):
        model(frames(), CONTEXT, torch.ones(BATCH, LENGTH - CONTEXT))
    with pytest.raises(ValueError, match="context_frames"):
        model(frames(), 0)
    with pytest.raises(ValueError, match="patch_size"):
        build_model(tiny(patch_size=3), 1, SIZE)


# ---------------------------------------------------------------------------------------------------------------------
# The eidetic recall: custom autograd and the history buffer


def _recall_through_history(scale: float):
    def run(query: torch.Tensor, *states: torch.Tensor) -> torch.Tensor:
        # a fresh history per call, so the buffer always holds the (perturbed) states gradcheck passes
        history = EideticHistory(states[0], capacity=len(states) + 1)
        for state in states[1:]:
            history.append(state)
        return history.recall(query, scale)

    return run


@pytest.fixture(params=[True, False], ids=["fused-cpu-backward", "recomputed-backward"])
def recall_backward(request, monkeypatch):
    """Both backward paths of the recall: the fused CPU kernel's own, and recomputation through public SDPA."""
    if request.param and not recall.FUSED_CPU_BACKWARD:
        pytest.skip("this PyTorch has no fused CPU attention ops")
    monkeypatch.setattr(recall, "FUSED_CPU_BACKWARD", request.param)
    return request.param


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_recall_matches_plain_attention_and_gradcheck(scale, recall_backward):
    generator = torch.Generator().manual_seed(0)
    shape = (2, 3, 2, 2, 2)  # (B, D, window, H', W')
    query = torch.rand(shape, generator=generator, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    run = _recall_through_history(scale)
    torch.testing.assert_close(run(query, *states), attention(query, states, scale), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(run, (query, *states))
    # the zero start needs no gradient: None for it, the rest still routed
    assert torch.autograd.gradcheck(lambda q, *s: run(q, states[0].detach(), *s), (query, *states[1:]))


def test_history_is_one_buffer_never_concatenated(monkeypatch):
    """Each step attends over a growing prefix view of one buffer per layer, allocated once per forward."""
    seen: list[tuple[int, int, int, int]] = []
    original = EideticHistory.recall

    def spy(self, query, scale):
        keys = self.keys()
        seen.append((id(self), self.buffer.data_ptr(), keys.data_ptr(), keys.shape[1]))
        assert keys._base is self.buffer
        return original(self, query, scale)

    monkeypatch.setattr(EideticHistory, "recall", spy)
    model = make(tiny())
    model(frames(), CONTEXT).sum().backward()
    tokens = 2 * 4 * 4  # window x H' x W'
    for layer in range(2):
        calls = seen[layer::2]
        assert len({(history, buffer) for history, buffer, _, _ in calls}) == 1
        assert all(pointer == buffer for _, buffer, pointer, _ in calls)
        assert [keys for *_, keys in calls] == [(t + 1) * tokens for t in range(LENGTH - 1)]


# ---------------------------------------------------------------------------------------------------------------------
# Size


def expected_parameters(in_channels: int, hidden: int, layers: int, temporal: int, spatial: int, window: int) -> int:
    """Equal-width stack: per cell conv_x (7h), conv_h, conv_m (4h), conv_oc, conv_om (h), 1x1 mix, 4 norms; decoder."""
    kernel = temporal * spatial * spatial

    def conv(cin: int, cout: int, volume: int) -> int:
        return cin * cout * volume + cout

    def cell(cin: int) -> int:
        convs = conv(cin, 7 * hidden, kernel) + 2 * conv(hidden, 4 * hidden, kernel) + 2 * conv(hidden, hidden, kernel)
        return convs + conv(2 * hidden, hidden, 1) + 2 * (7 + 4 + 4 + 1) * hidden

    return cell(in_channels) + (layers - 1) * cell(hidden) + conv(hidden, in_channels, window)


@pytest.mark.parametrize(
    ("changes", "image_size", "expected", "design"),
    [
        (dict(), 64, 12_898_832, 12.9e6),  # Moving MNIST: 64x64x1 folded by 4 -> 16 channels
        (dict(patch_size=8), 128, 13_980_224, 14.0e6),  # KTH: 128x128x1 folded by 8 -> 64 channels
        (dict(conv="2d"), 64, None, None),
    ],
    ids=["moving-mnist", "kth", "e2d"],
)
def test_parameter_count_at_study_size(changes, image_size, expected, design):
    cfg = dataclasses.replace(ModelConfig(), **changes)
    count = sum(p.numel() for p in build_model(cfg, 1, image_size).parameters())
    temporal = 2 if cfg.conv == "3d" else 1
    assert count == expected_parameters(cfg.patch_size**2, 64, 4, temporal, 5, 2)
    if expected is not None:
        assert count == expected
        assert math.isclose(count, design, abs_tol=0.05e6)  # design.md's rounded figure


def test_runs_under_bfloat16_autocast_close_to_float32():
    # The recall attends in the history's float32 while autocast computes the convolutions in bfloat16.
    model, x = make(tiny()), frames()
    reference = model(x, CONTEXT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, CONTEXT, mixed_mask())
        teacher = model(x, CONTEXT)
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert teacher.dtype == torch.bfloat16
    torch.testing.assert_close(teacher.float(), reference, atol=0.05, rtol=0.05)


# ---------------------------------------------------------------------------------------------------------------------
# Zero-started residual gates


@pytest.mark.parametrize("layers", [2, 3, 4])
def test_zero_gated_residuals_start_as_the_model_without_skips(layers):
    """A finetune that adds gated skips to a model trained without them computes exactly that model at step 0, the
    mask of scheduled sampling included; the study's fixed skips do not (the shock the gate exists to avoid)."""
    plain = make(tiny(hidden=(4,) * layers))
    gated = build_model(tiny(hidden=(4,) * layers, residual=True, residual_gate="zero"), 1, SIZE)
    assert sorted(gated.fresh_weights()) == sorted(
        f"skip_gates.{name}" for name in (["layer2"] if layers >= 3 else []) + ["decoder"]
    )
    gated.load_state_dict({**plain.state_dict(), **{k: v for k, v in gated.state_dict().items() if "gate" in k}})
    fixed = build_model(tiny(hidden=(4,) * layers, residual=True), 1, SIZE)
    fixed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        expected = plain(frames(), CONTEXT, mixed_mask())
        assert torch.allclose(gated(frames(), CONTEXT, mixed_mask()), expected, rtol=0, atol=1e-6)
        assert not torch.allclose(fixed(frames(), CONTEXT, mixed_mask()), expected, atol=1e-3)


def test_residual_gates_learn_and_scale_the_skip():
    """The gates get gradients from the first step, and a gate at 1 is the study's fixed skip."""
    gated = make(tiny(hidden=(4, 4, 4), residual=True, residual_gate="zero"))
    with torch.no_grad():
        for gate in gated.skip_gates.values():
            gate.zero_()
    gated(frames(), CONTEXT).square().mean().backward()
    assert all(gate.grad is not None and gate.grad.abs() > 0 for gate in gated.skip_gates.values())
    fixed = build_model(tiny(hidden=(4, 4, 4), residual=True), 1, SIZE)
    fixed.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    with torch.no_grad():
        for gate in gated.skip_gates.values():
            gate.fill_(1.0)
        assert torch.allclose(gated(frames(), CONTEXT), fixed(frames(), CONTEXT), rtol=0, atol=1e-6)
    # the gates follow every other weight, so an optimizer state of the model without them is a prefix
    names = [name for name, _ in gated.named_parameters()]
    assert names[-len(gated.skip_gates) :] == [f"skip_gates.{name}" for name in gated.skip_gates]
