"""E3D-LSTM (Wang et al., ICLR 2019) as released, with the release's deviations from the paper behind switches.

Shapes: frames (B, T, C, H, W); inside the model frames are folded space-to-depth to (B, T, C*p*p, H', W') with
H' = H/p, W' = W/p. The cell sees a window of the last ``window`` fed frames, so its input and states are 5-D
(B, channels, window, H', W') and its convolutions are 3-D. The equations are in design.md section 2; the switches
(``ModelConfig``: conv, layer_norm, residual, memory_flow, recall, output_gate) default to the release's behaviour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import ModelConfig
from core.models.recall import EideticHistory
from core.models.registry import register_model


def patch_fold(frames: Tensor, patch: int) -> Tensor:
    """Space-to-depth: (B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p).

    Pixel (h, w) of channel c lands in channel ``c*p*p + (h % p)*p + (w % p)`` at (h // p, w // p). For one channel
    this is the release's order (its channel index is ``((h % p)*p + w % p)*C + c``; they differ only for C > 1).
    """
    return F.pixel_unshuffle(frames, patch)  # (B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p)


def patch_unfold(patches: Tensor, patch: int) -> Tensor:
    """Depth-to-space, the inverse of :func:`patch_fold`: (B, T, C*p*p, H/p, W/p) -> (B, T, C, H, W)."""
    return F.pixel_shuffle(patches, patch)  # (B, T, C*p*p, H/p, W/p) -> (B, T, C, H, W)


class CellConv(nn.Conv3d):
    """A 3-D convolution with kernel (kt, k, k), kt in {1, 2}, stride 1 and TensorFlow's "same" padding.

    TensorFlow pads an even kernel unevenly, the extra frame after: for kt = 2 the time axis gets 0 frames before and
    1 after, so output time i = W_0 * x_i + W_1 * x_(i+1), the last output seeing only the last input (the pad is
    zero). Spatial padding is k // 2 on each side (k is odd).
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: int, spatial: int) -> None:
        if temporal not in (1, 2):
            raise ValueError(f"temporal kernel must be 1 or 2, got {temporal}")
        super().__init__(
            in_channels, out_channels, (temporal, spatial, spatial), padding=(0, spatial // 2, spatial // 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel_size[0] == 1:
            return super().forward(x)
        # The last output is computed on its own instead of padding the input: that skips multiplying W_1 with the
        # zero pad frame, a quarter of the work at window 2 (~15% faster forward and backward here on CPU).
        last = F.conv3d(x[:, :, -1:], self.weight[:, :, :1], self.bias, padding=self.padding)  # (B, O, 1, H', W')
        if x.shape[2] == 1:
            return last
        inner = super().forward(x)  # valid in time: (B, C, window, H', W') -> (B, O, window - 1, H', W')
        return torch.cat([inner, last], dim=2)  # (B, O, window, H', W')


class LayerNorm(nn.GroupNorm):
    """The release's layer norm: statistics over every non-batch axis, gain and shift per channel, variance epsilon
    ``eps`` (the release hard-codes 1e-12). Always computed in float32, autocast or not: under bfloat16 a variance
    next to 1e-12 would not survive, and the release's zero-memory branch is exactly that case (below).

    The epsilon matters in the release's memory setting: M stays at its zero start, so the memory branch normalises
    the conv's bias alone, a pattern of tiny variance that 1e-12 scales to unit variance and 1e-5 flattens.
    """

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__(1, channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.weight.dtype)  # bfloat16 under autocast -> the weights' float32 (float64 stays float64)
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)  # (B, C, ...) -> same


def _layer_norm(channels: int, cfg: ModelConfig) -> nn.Module:
    """:class:`LayerNorm` with the config's epsilon, or the identity when ``cfg.layer_norm`` is off."""
    return LayerNorm(channels, cfg.layer_norm_eps) if cfg.layer_norm else nn.Identity()


class E3DCell(nn.Module):
    """One E3D-LSTM layer for one step: (X, H, C, M, history) -> (H', C', M passed on)."""

    def __init__(self, in_channels: int, hidden: int, memory_channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        temporal, spatial = (2 if cfg.conv == "3d" else 1), cfg.filter_size
        self.conv_x = CellConv(in_channels, 7 * hidden, temporal, spatial)
        self.conv_h = CellConv(hidden, 4 * hidden, temporal, spatial)
        self.conv_m = CellConv(memory_channels, 4 * hidden, temporal, spatial)
        self.conv_oc = CellConv(hidden, hidden, temporal, spatial)
        self.conv_om = CellConv(hidden, hidden, temporal, spatial)
        self.conv_out = nn.Conv3d(2 * hidden, hidden, kernel_size=1)
        self.norm_x = _layer_norm(7 * hidden, cfg)
        self.norm_h = _layer_norm(4 * hidden, cfg)
        self.norm_m = _layer_norm(4 * hidden, cfg)
        self.norm_c = _layer_norm(hidden, cfg)
        self.recall_scale = 1.0 if cfg.recall == "released" else hidden**-0.5  # unused when recall is off
        self.paper_gate = cfg.output_gate == "paper"
        self.memory_flows = cfg.memory_flow == "zigzag"
        self.forget_bias = cfg.forget_bias

    def forward(
        self, x: Tensor, h: Tensor, c: Tensor, m: Tensor, history: EideticHistory | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C_in, window, H', W'); h, c (B, hidden, ...); m (B, C_m, ...); history None when recall is off."""
        i_x, g_x, r_x, o_x, i_xm, g_xm, f_xm = self.norm_x(self.conv_x(x)).chunk(7, dim=1)
        i_h, g_h, r_h, o_h = self.norm_h(self.conv_h(h)).chunk(4, dim=1)
        i = torch.sigmoid(i_x + i_h)
        r = torch.sigmoid(r_x + r_h)
        g = torch.tanh(g_x + g_h)
        recalled = c if history is None else c + history.recall(r, self.recall_scale)
        c_new = self.norm_c(recalled) + i * g

        i_m, f_m, g_m, m_m = self.norm_m(self.conv_m(m)).chunk(4, dim=1)
        i_mem = torch.sigmoid(i_xm + i_m)
        f_mem = torch.sigmoid(f_xm + f_m + self.forget_bias)
        g_mem = torch.tanh(g_xm + g_m)
        m_new = f_mem * torch.tanh(m_m) + i_mem * g_mem  # the release's tanh(m_m) where the paper has M

        o = o_x + o_h + self.conv_oc(c_new) + self.conv_om(m_new)
        o = torch.sigmoid(o) if self.paper_gate else torch.sigmoid(torch.tanh(o))  # the release: sig(tanh(.))
        h_new = torch.tanh(self.conv_out(torch.cat([c_new, m_new], dim=1))) * o
        # The release returns the incoming memory, so M never leaves its zero start; zigzag passes M' on.
        return h_new, c_new, (m_new if self.memory_flows else m)


@register_model("e3d_lstm")
class E3DLSTM(nn.Module):
    """A stack of E3D cells unrolled over time, predicting every next frame.

    ``forward(frames, context_frames, true_mask=None)``: frames (B, T, C, H, W) -> predictions (B, T-1, C, H, W) of
    frames 1..T-1, no output nonlinearity. Step t feeds frame t while t < context_frames; after that the model's own
    prediction of frame t, or, with ``true_mask`` (B, T - context_frames - 1) of 0/1 (scheduled sampling),
    ``mask * true frame + (1 - mask) * prediction``. Branches depend on shapes and config only, never on tensor
    values, so a forward pass makes no host-device synchronisation.
    """

    def __init__(self, cfg: ModelConfig, channels: int, image_size: int) -> None:
        super().__init__()
        if image_size % cfg.patch_size:
            raise ValueError(f"patch_size {cfg.patch_size} must divide image_size {image_size}")
        if cfg.residual and (len(cfg.hidden) < 2 or len(set(cfg.hidden)) != 1):
            raise ValueError(f"residual needs at least 2 layers of equal hidden sizes, got {cfg.hidden}")
        self.cfg = cfg
        hidden = list(cfg.hidden)
        folded = channels * cfg.patch_size**2
        # The memory each layer receives: zigzag, from the layer below (layer 0: from the top, one step earlier);
        # released, always the zero start, which has the top layer's width.
        memory_in = [hidden[-1]] + hidden[:-1] if cfg.memory_flow == "zigzag" else [hidden[-1]] * len(hidden)
        inputs = [folded] + hidden[:-1]
        self.cells = nn.ModuleList(E3DCell(inputs[l], hidden[l], memory_in[l], cfg) for l in range(len(hidden)))
        # Collapses the window to one frame: kernel and stride (window, 1, 1).
        self.decoder = nn.Conv3d(hidden[-1], folded, kernel_size=(cfg.window, 1, 1), stride=(cfg.window, 1, 1))
        # residual_gate zero: one learnable scalar per skip ("layer<l>", "decoder"), multiplying the H_{l-2} it adds.
        # Registered last, so their parameters follow every other one (an optimizer state of the same model without
        # them is a prefix of this one's). Started at 0: the skips are off until training opens them.
        gated = cfg.residual and cfg.residual_gate == "zero"
        skips = [position for position in range(2, len(hidden) + 1) if gated and self._takes_skip(position)]
        self.skip_gates = nn.ParameterDict({self._skip_name(p): nn.Parameter(torch.zeros(())) for p in skips})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The release's initialisation (TensorFlow's conv defaults): Glorot-uniform kernels, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def _takes_skip(self, position: int) -> bool:
        """Residual wiring: the decoder (position L) always adds the top two layers' outputs, H_{L-1} + H_{L-2}, as
        the study's code does at every depth (L = 3: H_2 + H_1). Of the layers, ``residual_layers: study`` skips at
        layer 2 only (H_1 + H_0), as the study's code; ``even`` at every even position from 2 on (L = 6: layers 2 and
        4), our generalisation. Both are the study's 4-layer wiring below 5 layers.
        """
        if not self.cfg.residual or position < 2:
            return False
        if position == len(self.cells):
            return True
        return position == 2 if self.cfg.residual_layers == "study" else position % 2 == 0

    def _skip_name(self, position: int) -> str:
        return "decoder" if position == len(self.cells) else f"layer{position}"

    def _skip(self, h: list[Tensor], position: int) -> Tensor:
        """What position ``position`` (a layer, or the decoder at ``len(cells)``) reads: H_{l-1}, plus H_{l-2} where
        it takes a skip, times its gate where the skips are gated."""
        below = h[position - 1]
        if not self._takes_skip(position):
            return below
        gate = self.skip_gates[self._skip_name(position)] if self.skip_gates else None
        return below + (h[position - 2] if gate is None else gate * h[position - 2])

    def fresh_weights(self) -> set[str]:
        """Weights a checkpoint of a model without them may lack when finetuning: the skip gates, which then start
        at 0 (so the finetune's first step computes what the checkpoint's model computed)."""
        return {f"skip_gates.{name}" for name in self.skip_gates}

    def forward(self, frames: Tensor, context_frames: int, true_mask: Tensor | None = None) -> Tensor:
        batch, length = frames.shape[:2]
        if not 1 <= context_frames < length:
            raise ValueError(f"context_frames must lie in [1, {length - 1}], got {context_frames}")
        if true_mask is not None and tuple(true_mask.shape) != (batch, length - context_frames - 1):
            raise ValueError(
                f"true_mask must have shape {(batch, length - context_frames - 1)}, got {tuple(true_mask.shape)}"
            )
        cfg, layers = self.cfg, len(self.cells)
        x = patch_fold(frames, cfg.patch_size)  # (B, T, C, H, W) -> (B, T, C*p*p, H', W')
        height, width = x.shape[-2:]
        h = [x.new_zeros(batch, n, cfg.window, height, width) for n in cfg.hidden]
        c = list(h)  # zero starts; states are replaced, never written in place, so sharing the zeros is safe
        m = x.new_zeros(batch, cfg.hidden[-1], cfg.window, height, width)
        # Room for every state a layer makes: the zero start plus one per step.
        histories = [EideticHistory(c[l], capacity=length) if cfg.recall != "off" else None for l in range(layers)]
        fed = [torch.zeros_like(x[:, 0])] * (cfg.window - 1)  # zero frames before the first
        predictions: list[Tensor] = []
        for t in range(length - 1):
            if t < context_frames:
                frame = x[:, t]
            elif true_mask is None:
                frame = predictions[-1]
            else:
                keep = true_mask[:, t - context_frames].to(x.dtype).view(batch, 1, 1, 1)
                frame = keep * x[:, t] + (1 - keep) * predictions[-1]
            fed = [*fed, frame][-cfg.window :]
            inputs = torch.stack(fed, dim=2)  # window x (B, C*p*p, H', W') -> (B, C*p*p, window, H', W')
            for l, cell in enumerate(self.cells):
                if l > 0:
                    inputs = self._skip(h, l)
                h[l], c[l], m = cell(inputs, h[l], c[l], m, histories[l])
                if histories[l] is not None:
                    histories[l].append(c[l])  # C'_t: from step t + 1 on, this layer recalls it too
            top = self._skip(h, layers)
            predictions.append(self.decoder(top).squeeze(2))  # (B, C*p*p, 1, H', W') -> (B, C*p*p, H', W')
        out = torch.stack(predictions, dim=1)  # (T-1) x (B, C*p*p, H', W') -> (B, T-1, C*p*p, H', W')
        return patch_unfold(out, cfg.patch_size)  # -> (B, T-1, C, H, W)
