"""E3D-LSTM (Wang et al., ICLR 2019) as released, with the release's deviations from the paper behind switches.

The cell only: patching, the window, the unroll, the residuals and the decoder are the shared stack's
(:mod:`core.models.stack`). States are (B, channels, window, H', W'). The equations are in design.md section 2; the
switches (``ModelConfig``: conv, layer_norm, residual, memory_flow, recall, output_gate) default to the release's
behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import ModelConfig
from core.models.recall import EideticHistory
from core.models.registry import register_model
from core.models.stack import CellConv, RecurrentStack, patch_fold, patch_unfold, temporal_kernel

__all__ = ["CellConv", "E3DCell", "E3DLSTM", "LayerNorm", "patch_fold", "patch_unfold"]


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
        temporal, spatial = temporal_kernel(cfg), cfg.filter_size
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


@dataclass
class _E3DState:
    """What the E3D stack carries besides each layer's H: each layer's C, the memory M (one, zigzagging up the stack
    and on in time, or held at its zero start) and each layer's eidetic history (None when recall is off)."""

    c: list[Tensor]
    m: Tensor
    histories: list[EideticHistory | None]


@register_model("e3d_lstm")
class E3DLSTM(RecurrentStack):
    """A stack of E3D cells on the shared stack (:class:`core.models.stack.RecurrentStack`), predicting every next
    frame: ``forward(frames, context_frames, true_mask=None)`` (B, T, C, H, W) -> (B, T-1, C, H, W)."""

    def make_cell(self, layer: int, in_channels: int) -> nn.Module:
        hidden = list(self.cfg.hidden)
        # The memory each layer receives: zigzag, from the layer below (layer 0: from the top, one step earlier);
        # released, always the zero start, which has the top layer's width.
        memory_in = [hidden[-1]] + hidden[:-1] if self.cfg.memory_flow == "zigzag" else [hidden[-1]] * len(hidden)
        return E3DCell(in_channels, hidden[layer], memory_in[layer], self.cfg)

    def start(self, h: list[Tensor], length: int) -> _E3DState:
        c = list(h)  # zero starts; states are replaced, never written in place, so sharing the zeros is safe
        batch, _, window, height, width = h[-1].shape
        m = h[-1].new_zeros(batch, self.cfg.hidden[-1], window, height, width)
        # Room for every state a layer makes: the zero start plus one per step.
        recall = self.cfg.recall != "off"
        return _E3DState(c, m, [EideticHistory(state, capacity=length) if recall else None for state in c])

    def advance(self, layer: int, inputs: Tensor, h: Tensor, state: _E3DState) -> Tensor:
        history = state.histories[layer]
        h_new, state.c[layer], state.m = self.cells[layer](inputs, h, state.c[layer], state.m, history)
        if history is not None:
            history.append(state.c[layer])  # C'_t: from step t + 1 on, this layer recalls it too
        return h_new
