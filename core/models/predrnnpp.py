"""PredRNN++ (Wang et al., ICML 2018) on the shared stack: the Causal LSTM and the Gradient Highway Unit (GHU).

The cell only: patching, the window, the unroll, the residuals and the decoder are the shared stack's
(:mod:`core.models.stack`). The paper's equations (1) and (2), layer k at step t, with * a convolution over the
concatenation in brackets and o the Hadamard product; X is the frames (k = 0), the GHU's Z_t (k = 1) or H^{k-1}_t,
and M^{k-1}_t the memory of the layer below at the same step, the bottom layer reading the top layer's of step t-1:

    (g, i, f) = (tanh, sig, sig) W_1 * [X, H^k_{t-1}, C^k_{t-1}]
    C^k_t = f o C^k_{t-1} + i o g                                       (the temporal memory first,
    (g', i', f') = (tanh, sig, sig) W_2 * [X, C^k_t, M^{k-1}_t]
    M^k_t = f' o tanh(W_3 * M^{k-1}_t) + i' o g'                         then the spatial memory, reading it)
    o = tanh(W_4 * [X, C^k_t, M^k_t])
    H^k_t = o o tanh(W_5 * [C^k_t, M^k_t])                                (W_5 is 1x1)

The GHU between the first and the second layer, its input X the first layer's H^0_t:

    P = tanh(W_px * X + W_pz * Z_{t-1}),  S = sig(W_sx * X + W_sz * Z_{t-1}),  Z_t = S o P + (1 - S) o Z_{t-1}

The paper writes no biases; we give each gate's pre-activation one (on the convolution over X; W_3 and W_5 have
none), as the authors' TensorFlow release does (OpenSTL's port has no biases). ``forget_bias`` (default 1) is added to
f and f', as the public code does (the constant shift of their biases). Where the public code (the authors'
TensorFlow release, thuml's PyTorch port and OpenSTL's) departs from the paper we follow the paper: its output gate
also reads H^k_{t-1}, its g' leaves out M^{k-1}_t, and it has an optional layer norm after each convolution. With
those two terms and our biases at 0, this cell computes what OpenSTL's does (measured: outputs to 6e-14 in float64,
its weights mapped in).

States and the input are (B, channels, window, H', W'): with ``conv: 2d`` and ``window: 1`` this is exactly the
paper's cell; ``conv: 3d`` convolves a temporal kernel of 2 over the window of the last frames, as the E3D-LSTM does.
W_3 maps the memory from the layer below to this layer's width, so layers may differ in size (the paper's Moving
MNIST model is 128, 64, 64, 64; PredRNN's M is added as it is and needs one size); the GHU needs a second layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.config import ModelConfig
from core.models.predrnn import ZigzagState
from core.models.registry import register_model
from core.models.stack import CellConv, RecurrentStack, temporal_kernel


class CausalLSTMCell(nn.Module):
    """One Causal LSTM layer for one step: (X, H, C, M from below) -> (H', C', M')."""

    def __init__(self, in_channels: int, hidden: int, memory_channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        temporal, spatial = temporal_kernel(cfg), cfg.filter_size
        # W_1 .. W_4 split by what they read: X (every gate, with the gates' biases), [H, C] (W_1), C' (W_2 and W_4),
        # M from below (W_2 and W_3), M' (W_4).
        self.conv_x = CellConv(in_channels, 7 * hidden, temporal, spatial)  # g, i, f, g', i', f', o
        self.conv_hc = CellConv(2 * hidden, 3 * hidden, temporal, spatial, bias=False)  # g, i, f
        self.conv_c = CellConv(hidden, 4 * hidden, temporal, spatial, bias=False)  # g', i', f', o
        self.conv_m = CellConv(memory_channels, 4 * hidden, temporal, spatial, bias=False)  # g', i', f', and W_3
        self.conv_om = CellConv(hidden, hidden, temporal, spatial, bias=False)  # o
        self.conv_last = CellConv(2 * hidden, hidden, 1, 1, bias=False)  # W_5 over [C', M']
        self.forget_bias = cfg.forget_bias

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C_in, window, H', W'); h, c (B, hidden, window, H', W'); m (B, memory_channels, window, H', W'), the
        layer below's (or the top layer's at the step before) -> H', C', M' of h's shape."""
        g_x, i_x, f_x, g_xm, i_xm, f_xm, o_x = self.conv_x(x).chunk(7, dim=1)  # 7 x (B, hidden, window, H', W')
        g_hc, i_hc, f_hc = self.conv_hc(torch.cat([h, c], dim=1)).chunk(3, dim=1)  # [H, C]: (B, 2*hidden, ...)
        c_new = torch.sigmoid(f_x + f_hc + self.forget_bias) * c + torch.sigmoid(i_x + i_hc) * torch.tanh(g_x + g_hc)
        g_c, i_c, f_c, o_c = self.conv_c(c_new).chunk(4, dim=1)
        g_m, i_m, f_m, m_m = self.conv_m(m).chunk(4, dim=1)
        f_mem = torch.sigmoid(f_xm + f_c + f_m + self.forget_bias)
        m_new = f_mem * torch.tanh(m_m) + torch.sigmoid(i_xm + i_c + i_m) * torch.tanh(g_xm + g_c + g_m)
        o = torch.tanh(o_x + o_c + self.conv_om(m_new))
        h_new = o * torch.tanh(self.conv_last(torch.cat([c_new, m_new], dim=1)))  # [C', M']: (B, 2*hidden, ...)
        return h_new, c_new, m_new


class GradientHighway(nn.Module):
    """The GHU for one step: (X, Z) -> Z'."""

    def __init__(self, hidden: int, cfg: ModelConfig) -> None:
        super().__init__()
        temporal, spatial = temporal_kernel(cfg), cfg.filter_size
        self.conv_x = CellConv(hidden, 2 * hidden, temporal, spatial)  # P, S (their biases)
        self.conv_z = CellConv(hidden, 2 * hidden, temporal, spatial, bias=False)  # P, S

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x, z (B, hidden, window, H', W') -> Z' of z's shape."""
        p_x, s_x = self.conv_x(x).chunk(2, dim=1)
        p_z, s_z = self.conv_z(z).chunk(2, dim=1)
        switch = torch.sigmoid(s_x + s_z)
        return switch * torch.tanh(p_x + p_z) + (1 - switch) * z


@register_model("predrnnpp")
class PredRNNpp(RecurrentStack):
    """A stack of Causal LSTM cells with the zigzag memory and the GHU between its first two layers, on the shared
    stack (:class:`core.models.stack.RecurrentStack`), predicting every next frame:
    ``forward(frames, context_frames, true_mask=None)`` (B, T, C, H, W) -> (B, T-1, C, H, W)."""

    def make_cell(self, layer: int, in_channels: int) -> nn.Module:
        hidden = self.cfg.hidden
        if len(hidden) < 2:
            raise ValueError(f"predrnnpp's gradient highway sits between layers 1 and 2: it needs 2 layers or more, "
                             f"got {self.cfg.hidden}")  # fmt: skip
        cell = CausalLSTMCell(in_channels, hidden[layer], hidden[layer - 1], self.cfg)  # M from below (layer 0: top)
        if layer == 1:  # the highway feeds layer 1: its weights live in that cell (cells.1.highway)
            cell.highway = GradientHighway(hidden[0], self.cfg)
        return cell

    def start(self, h: list[Tensor], length: int) -> ZigzagState:
        return ZigzagState(c=list(h), m=h[-1], z=h[0])  # zeros; replaced, never written in place

    def advance(self, layer: int, inputs: Tensor, h: Tensor, state: ZigzagState) -> Tensor:
        cell = self.cells[layer]
        if layer == 1:  # the second layer reads the highway's Z_t, which reads the first layer's H_t
            state.z = cell.highway(inputs, state.z)
            inputs = state.z
        h_new, state.c[layer], state.m = cell(inputs, h, state.c[layer], state.m)
        return h_new
