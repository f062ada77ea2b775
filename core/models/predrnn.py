"""PredRNN (Wang et al., NeurIPS 2017) on the shared stack: the spatiotemporal LSTM (ST-LSTM) and its zigzag memory.

The cell only: patching, the window, the unroll, the residuals and the decoder are the shared stack's
(:mod:`core.models.stack`). The paper's equations (3), layer l at step t, with * a convolution and o the Hadamard
product; X is the frames (l = 0) or H^{l-1}_t, and M^{l-1}_t is the memory of the layer below at the same step, the
bottom layer reading the top layer's of step t-1 (M^0_t = M^L_{t-1}, the zigzag):

    g = tanh(W_xg * X + W_hg * H^l_{t-1} + b_g)
    i = sig(W_xi * X + W_hi * H^l_{t-1} + b_i)
    f = sig(W_xf * X + W_hf * H^l_{t-1} + b_f + forget_bias)
    C^l_t = f o C^l_{t-1} + i o g
    g' = tanh(W'_xg * X + W_mg * M^{l-1}_t + b'_g)
    i' = sig(W'_xi * X + W_mi * M^{l-1}_t + b'_i)
    f' = sig(W'_xf * X + W_mf * M^{l-1}_t + b'_f + forget_bias)
    M^l_t = f' o M^{l-1}_t + i' o g'
    o = sig(W_xo * X + W_ho * H^l_{t-1} + W_co * C^l_t + W_mo * M^l_t + b_o)
    H^l_t = o o tanh(W_1x1 * [C^l_t, M^l_t])

One bias per gate, as the paper writes them (on the convolution over X; the others have none), and the 1x1
convolution has none. Where the public code differs we follow the paper: thuml's predrnn-pytorch (and OpenSTL's
port) has no biases at all and an optional layer norm after each convolution (off in their Moving MNIST scripts);
PredRNN-V2's decoupling loss and reverse scheduled sampling belong to a later paper. Both ports add 1 to the forget
gates' pre-activations: ``forget_bias`` (default 1), the paper's b_f and b'_f shifted by a constant.

States and the input are (B, channels, window, H', W'): with ``conv: 2d`` and ``window: 1`` this is exactly the
paper's cell; ``conv: 3d`` convolves a temporal kernel of 2 over the window of the last frames, as the E3D-LSTM does.
The memory passes between layers, so every layer has the same hidden size (the config refuses others).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.config import ModelConfig
from core.models.registry import register_model
from core.models.stack import CellConv, RecurrentStack, temporal_kernel


class STLSTMCell(nn.Module):
    """One ST-LSTM layer for one step: (X, H, C, M from below) -> (H', C', M')."""

    def __init__(self, in_channels: int, hidden: int, cfg: ModelConfig) -> None:
        super().__init__()
        temporal, spatial = temporal_kernel(cfg), cfg.filter_size
        self.conv_x = CellConv(in_channels, 7 * hidden, temporal, spatial)  # i, f, g, i', f', g', o: every gate's bias
        self.conv_h = CellConv(hidden, 4 * hidden, temporal, spatial, bias=False)  # i, f, g, o
        self.conv_m = CellConv(hidden, 3 * hidden, temporal, spatial, bias=False)  # i', f', g'
        self.conv_o = CellConv(2 * hidden, hidden, temporal, spatial, bias=False)  # W_co, W_mo over [C', M']
        self.conv_last = CellConv(2 * hidden, hidden, 1, 1, bias=False)  # W_1x1 over [C', M']
        self.forget_bias = cfg.forget_bias

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C_in, window, H', W'); h, c, m (B, hidden, window, H', W') -> H', C', M' of h's shape."""
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).chunk(7, dim=1)  # 7 x (B, hidden, window, H', W')
        i_h, f_h, g_h, o_h = self.conv_h(h).chunk(4, dim=1)
        i_m, f_m, g_m = self.conv_m(m).chunk(3, dim=1)
        i = torch.sigmoid(i_x + i_h)
        f = torch.sigmoid(f_x + f_h + self.forget_bias)
        c_new = f * c + i * torch.tanh(g_x + g_h)
        i_mem = torch.sigmoid(i_xm + i_m)
        f_mem = torch.sigmoid(f_xm + f_m + self.forget_bias)
        m_new = f_mem * m + i_mem * torch.tanh(g_xm + g_m)
        both = torch.cat([c_new, m_new], dim=1)  # (B, 2*hidden, window, H', W')
        o = torch.sigmoid(o_x + o_h + self.conv_o(both))
        return o * torch.tanh(self.conv_last(both)), c_new, m_new


@dataclass
class ZigzagState:
    """What a stack with a zigzag memory carries besides each layer's H: each layer's C, the memory M last written
    (by the layer below at this step, or the top layer at the step before), and a family's extra state."""

    c: list[Tensor]
    m: Tensor
    z: Tensor | None = None  # PredRNN++'s gradient highway


def check_equal_hidden(cfg: ModelConfig) -> None:
    if len(set(cfg.hidden)) != 1:
        raise ValueError(f"{cfg.name}'s memory M passes between layers: every layer needs the same hidden size, "
                         f"got {cfg.hidden}")  # fmt: skip


@register_model("predrnn")
class PredRNN(RecurrentStack):
    """A stack of ST-LSTM cells with the zigzag memory on the shared stack (:class:`core.models.stack.RecurrentStack`),
    predicting every next frame: ``forward(frames, context_frames, true_mask=None)`` (B, T, C, H, W) ->
    (B, T-1, C, H, W)."""

    def make_cell(self, layer: int, in_channels: int) -> nn.Module:
        check_equal_hidden(self.cfg)
        return STLSTMCell(in_channels, self.cfg.hidden[layer], self.cfg)

    def start(self, h: list[Tensor], length: int) -> ZigzagState:
        return ZigzagState(c=list(h), m=h[-1])  # zeros; replaced, never written in place, so sharing is safe

    def advance(self, layer: int, inputs: Tensor, h: Tensor, state: ZigzagState) -> Tensor:
        h_new, state.c[layer], state.m = self.cells[layer](inputs, h, state.c[layer], state.m)
        return h_new
