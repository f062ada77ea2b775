"""ConvLSTM (Shi et al., NeurIPS 2015) on the shared stack, with the paper's peephole terms.

The cell only: patching, the window, the unroll, the residuals and the decoder are the shared stack's
(:mod:`core.models.stack`). The paper's equations (3), with * a convolution and o the Hadamard product:

    i = sig(W_xi * X + W_hi * H + W_ci o C + b_i)
    f = sig(W_xf * X + W_hf * H + W_cf o C + b_f + forget_bias)
    C' = f o C + i o tanh(W_xc * X + W_hc * H + b_c)
    o = sig(W_xo * X + W_ho * H + W_co o C' + b_o)
    H' = o o tanh(C')

The convolutions over X and H are one convolution over their concatenation [X, H] (one bias per gate, as the paper
writes it). The peephole weights W_c. are full tensors the shape of one sequence's state (hidden, window, H', W'), as
the paper's Hadamard terms are; they start at 0 and are learned. ``forget_bias`` (default 1) is added to the forget
gate's pre-activation, as TensorFlow's LSTM cells and the PredRNN family's public code do: with the zero-initialised
bias it starts the cell remembering, and it is the paper's b_f shifted by a constant. OpenSTL's ConvLSTM has neither
peepholes nor that shift (nor biases): with the peepholes at 0, ``forget_bias=0`` and zero biases this cell computes
what it does (measured: the same outputs and gradients to 2e-15 in float64, its weights mapped in).

States and the input are (B, channels, window, H', W'): with ``conv: 2d`` and ``window: 1`` this is exactly the
paper's cell; ``conv: 3d`` convolves a temporal kernel of 2 over the window of the last frames, as the E3D-LSTM
does (:class:`core.models.stack.CellConv`). The E3D-LSTM's own switches (layer norm, memory flow, recall, output
gate) mean nothing here: the config refuses them (``core.config.UNUSED_FIELDS``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.config import ModelConfig
from core.models.registry import register_model
from core.models.stack import CellConv, RecurrentStack, temporal_kernel


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer for one step: (X, H, C) -> (H', C')."""

    def __init__(self, in_channels: int, hidden: int, state_shape: tuple[int, int, int], cfg: ModelConfig) -> None:
        super().__init__()
        self.conv = CellConv(in_channels + hidden, 4 * hidden, temporal_kernel(cfg), cfg.filter_size)
        # The peepholes W_ci, W_cf, W_co: one weight per channel and position of a state (hidden, window, H', W').
        self.peephole_i = nn.Parameter(torch.zeros(hidden, *state_shape))
        self.peephole_f = nn.Parameter(torch.zeros(hidden, *state_shape))
        self.peephole_o = nn.Parameter(torch.zeros(hidden, *state_shape))
        self.forget_bias = cfg.forget_bias

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C_in, window, H', W'); h, c (B, hidden, window, H', W') -> H', C' of h's shape."""
        gates = self.conv(torch.cat([x, h], dim=1))  # (B, C_in + hidden, window, H', W') -> (B, 4*hidden, ...)
        i_xh, f_xh, g_xh, o_xh = gates.chunk(4, dim=1)
        i = torch.sigmoid(i_xh + self.peephole_i * c)
        f = torch.sigmoid(f_xh + self.peephole_f * c + self.forget_bias)
        c_new = f * c + i * torch.tanh(g_xh)
        o = torch.sigmoid(o_xh + self.peephole_o * c_new)
        return o * torch.tanh(c_new), c_new


@register_model("convlstm")
class ConvLSTM(RecurrentStack):
    """A stack of ConvLSTM cells on the shared stack (:class:`core.models.stack.RecurrentStack`), predicting every
    next frame: ``forward(frames, context_frames, true_mask=None)`` (B, T, C, H, W) -> (B, T-1, C, H, W)."""

    def make_cell(self, layer: int, in_channels: int) -> nn.Module:
        side = self.image_size // self.cfg.patch_size
        return ConvLSTMCell(in_channels, self.cfg.hidden[layer], (self.cfg.window, side, side), self.cfg)

    def start(self, h: list[Tensor], length: int) -> list[Tensor]:
        return list(h)  # each layer's C at its zero start; replaced, never written in place, so sharing is safe

    def advance(self, layer: int, inputs: Tensor, h: Tensor, state: list[Tensor]) -> Tensor:
        h_new, state[layer] = self.cells[layer](inputs, h, state[layer])
        return h_new
