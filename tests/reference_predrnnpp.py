"""A slow, explicit transcription of PredRNN++ (Wang et al., ICML 2018): the Causal LSTM (equations (1)) and the
Gradient Highway Unit (equations (2)) between the first and second layer, for tests only.

It reads the weights of a :class:`core.models.PredRNNpp`, splits its convolutions back into the paper's W_1 .. W_5
(each over the concatenation the paper writes, its columns in that order) and the GHU's W_px, W_pz, W_sx, W_sz, and
recomputes the forward pass gate by gate: each of W_1 .. W_5 one convolution over the concatenation it reads, built by
``torch.cat`` here (the model splits them by input instead), the gates' biases added to their pre-activations, the
GHU's update written out. The stack, the zigzag memory's start and the residuals are
:func:`reference_predrnn.unroll`'s.
"""

from __future__ import annotations

import torch
from reference_convlstm import conv
from reference_predrnn import Step, unroll
from torch import Tensor, nn


def paper_weights(cell: nn.Module) -> dict[str, Tensor]:
    """W_1 .. W_5 of one Causal LSTM cell, rows (gates) in the paper's order g, i, f (and o for W_4), columns the
    concatenation the paper convolves; ``bias_1`` .. ``bias_4`` the gates' biases in the same order."""
    n = cell.conv_hc.weight.shape[0] // 3  # this layer's hidden channels
    wx, bx, whc, wc, wm = (
        cell.conv_x.weight,
        cell.conv_x.bias,
        cell.conv_hc.weight,
        cell.conv_c.weight,
        cell.conv_m.weight,
    )

    def rows(weight: Tensor, k: int, count: int = 1) -> Tensor:
        return weight[k * n : (k + count) * n]

    return {
        "W_1": torch.cat([rows(wx, 0, 3), whc], dim=1),  # [X, H_{t-1}, C_{t-1}] -> g, i, f
        "bias_1": rows(bx, 0, 3),
        "W_2": torch.cat([rows(wx, 3, 3), rows(wc, 0, 3), rows(wm, 0, 3)], dim=1),  # [X, C_t, M^{k-1}_t] -> g', i', f'
        "bias_2": rows(bx, 3, 3),
        "W_3": rows(wm, 3),  # M^{k-1}_t -> the memory's candidate
        "W_4": torch.cat([rows(wx, 6), rows(wc, 3), cell.conv_om.weight], dim=1),  # [X, C_t, M_t] -> o
        "bias_4": rows(bx, 6),
        "W_5": cell.conv_last.weight,  # [C_t, M_t], 1x1
    }


def causal_lstm(w: dict[str, Tensor], forget_bias: float, x: Tensor, h: Tensor, c: Tensor, m: Tensor):
    """Equations (1): (H^k_t, C^k_t, M^k_t) from X_t, H^k_{t-1}, C^k_{t-1} and M^{k-1}_t."""
    g, i, f = conv(w["W_1"], w["bias_1"], torch.cat([x, h, c], dim=1)).chunk(3, dim=1)
    c_new = torch.sigmoid(f + forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
    g_p, i_p, f_p = conv(w["W_2"], w["bias_2"], torch.cat([x, c_new, m], dim=1)).chunk(3, dim=1)
    m_new = torch.sigmoid(f_p + forget_bias) * torch.tanh(conv(w["W_3"], None, m)) + torch.sigmoid(i_p) * torch.tanh(
        g_p
    )
    o = torch.tanh(conv(w["W_4"], w["bias_4"], torch.cat([x, c_new, m_new], dim=1)))
    h_new = o * torch.tanh(conv(w["W_5"], None, torch.cat([c_new, m_new], dim=1)))
    return h_new, c_new, m_new


def ghu_weights(highway: nn.Module) -> dict[str, Tensor]:
    n = highway.conv_z.weight.shape[1]
    wx, bx, wz = highway.conv_x.weight, highway.conv_x.bias, highway.conv_z.weight
    return {"W_px": wx[:n], "b_p": bx[:n], "W_sx": wx[n:], "b_s": bx[n:], "W_pz": wz[:n], "W_sz": wz[n:]}


def ghu(w: dict[str, Tensor], x: Tensor, z: Tensor) -> Tensor:
    """Equations (2): Z_t from X_t and Z_{t-1}."""
    p = torch.tanh(conv(w["W_px"], w["b_p"], x) + conv(w["W_pz"], None, z))
    s = torch.sigmoid(conv(w["W_sx"], w["b_s"], x) + conv(w["W_sz"], None, z))
    return s * p + (1 - s) * z


def reference_forward(model: nn.Module, frames: Tensor, context_frames: int, true_mask: Tensor | None = None) -> Tensor:
    """PredRNN++ recomputed explicitly: (B, T, C, H, W) -> (B, T-1, C, H, W)."""
    weights = [paper_weights(cell) for cell in model.cells]
    highway = ghu_weights(model.cells[1].highway)
    forget_bias = model.cfg.forget_bias

    def make_step(zeros: list[Tensor]) -> Step:
        c = list(zeros)
        memory, z = [zeros[-1]], [zeros[0]]  # M (zigzag, as PredRNN's) and the highway's Z

        def step(layer: int, x: Tensor, h: Tensor) -> Tensor:
            if layer == 1:  # Z_t = GHU(H^0_t, Z_{t-1}) is the second layer's input
                z[0] = ghu(highway, x, z[0])
                x = z[0]
            h_new, c[layer], memory[0] = causal_lstm(weights[layer], forget_bias, x, h, c[layer], memory[0])
            return h_new

        return step

    return unroll(model, frames, context_frames, true_mask, make_step)
