"""A slow, explicit transcription of PredRNN's spatiotemporal LSTM (Wang et al., NeurIPS 2017, equations (3)) and its
zigzag memory, for tests only.

It reads the weights of a :class:`core.models.PredRNN`, splits its convolutions into the paper's named kernels
(W_xg, W_hg, W'_xg, W_mg, ..., W_co, W_mo, W_1x1) and biases, and recomputes the forward pass gate by gate, nothing
fused: each kernel its own convolution (:func:`reference_convlstm.conv`: a sum over temporal taps of 2-D
convolutions, the time padding done by hand), the memory's zigzag written out (M^0_t = M^L_{t-1}), the stack and its
residuals as the study wired them, patches cut by strided slicing. :func:`unroll` is the stack, shared with
tests/reference_predrnnpp.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from reference_convlstm import conv
from reference_e3d import fed_frame, fold, skip_layers, unfold
from torch import Tensor, nn


def split(weight: Tensor, names: str, rows: int) -> dict[str, Tensor]:
    """A convolution's output rows (or a bias's entries), ``rows`` each, named in order by the space-separated
    ``names``."""
    return {name: weight[k * rows : (k + 1) * rows] for k, name in enumerate(names.split())}


def paper_weights(cell: nn.Module) -> dict[str, Tensor]:
    """The paper's named weights of one ST-LSTM cell; a prime is written ``p`` (W'_xi is ``Wp_xi``)."""
    n = cell.conv_h.weight.shape[1]
    w = {}
    w.update(split(cell.conv_x.weight, "W_xi W_xf W_xg Wp_xi Wp_xf Wp_xg W_xo", n))
    w.update(split(cell.conv_x.bias, "b_i b_f b_g bp_i bp_f bp_g b_o", n))
    w.update(split(cell.conv_h.weight, "W_hi W_hf W_hg W_ho", n))
    w.update(split(cell.conv_m.weight, "W_mi W_mf W_mg", n))
    w["W_co"], w["W_mo"] = cell.conv_o.weight[:, :n], cell.conv_o.weight[:, n:]  # its columns: [C, M]
    w["W_1x1_c"], w["W_1x1_m"] = cell.conv_last.weight[:, :n], cell.conv_last.weight[:, n:]
    return w


def st_lstm(w: dict[str, Tensor], forget_bias: float, x: Tensor, h: Tensor, c: Tensor, m: Tensor):
    """Equations (3): (H^l_t, C^l_t, M^l_t) from X_t, H^l_{t-1}, C^l_{t-1} and M^{l-1}_t."""
    g = torch.tanh(conv(w["W_xg"], w["b_g"], x) + conv(w["W_hg"], None, h))
    i = torch.sigmoid(conv(w["W_xi"], w["b_i"], x) + conv(w["W_hi"], None, h))
    f = torch.sigmoid(conv(w["W_xf"], w["b_f"], x) + conv(w["W_hf"], None, h) + forget_bias)
    c_new = f * c + i * g
    g_p = torch.tanh(conv(w["Wp_xg"], w["bp_g"], x) + conv(w["W_mg"], None, m))
    i_p = torch.sigmoid(conv(w["Wp_xi"], w["bp_i"], x) + conv(w["W_mi"], None, m))
    f_p = torch.sigmoid(conv(w["Wp_xf"], w["bp_f"], x) + conv(w["W_mf"], None, m) + forget_bias)
    m_new = f_p * m + i_p * g_p
    o = torch.sigmoid(
        conv(w["W_xo"], w["b_o"], x) + conv(w["W_ho"], None, h) + conv(w["W_co"], None, c_new)
        + conv(w["W_mo"], None, m_new)
    )  # fmt: skip
    h_new = o * torch.tanh(conv(w["W_1x1_c"], None, c_new) + conv(w["W_1x1_m"], None, m_new))
    return h_new, c_new, m_new


Step = Callable[[int, Tensor, Tensor], Tensor]


def unroll(model: nn.Module, frames: Tensor, context_frames: int, true_mask: Tensor | None, make_step) -> Tensor:
    """The stack written out: ``make_step(each layer's zero H)`` gives ``step(layer, input, H) -> H'`` for one time
    step, the layers called bottom to top; (B, T, C, H, W) -> (B, T-1, C, H, W)."""
    cfg = model.cfg
    p, window, layers = cfg.patch_size, cfg.window, len(cfg.hidden)
    x = fold(frames, p)
    batch, length, _, height, width = x.shape
    h = [x.new_zeros(batch, n, window, height, width) for n in cfg.hidden]
    step = make_step(list(h))
    gates = dict(model.skip_gates.items())
    fed = [torch.zeros_like(x[:, 0]) for _ in range(window - 1)]
    predictions = []
    # The residuals, written out: layer 2 adds H_0 (even: layer 4, ... too); the decoder adds H_{L-2}, each times its
    # gate when the skips are gated.
    layer_skips = skip_layers(cfg, layers)

    def gate(name: str) -> Tensor | float:
        return gates[name] if gates else 1.0

    for t in range(length - 1):
        fed.append(fed_frame(x, t, context_frames, true_mask, predictions))
        inputs = torch.stack(fed[len(fed) - window :], dim=2)  # (B, C*p*p, window, H', W'): frames t-window+1..t
        new_h = []
        for l in range(layers):
            if l > 0:
                inputs = new_h[l - 1] + gate(f"layer{l}") * new_h[l - 2] if l in layer_skips else new_h[l - 1]
            new_h.append(step(l, inputs, h[l]))
        h = new_h
        top = h[-1] + gate("decoder") * h[-2] if cfg.residual else h[-1]
        decoded = F.conv3d(top, model.decoder.weight, model.decoder.bias, stride=(window, 1, 1))
        predictions.append(decoded[:, :, 0])
    return unfold(torch.stack(predictions, dim=1), p)  # (T-1) x (B, C*p*p, H', W') -> (B, T-1, C, H, W)


def reference_forward(model: nn.Module, frames: Tensor, context_frames: int, true_mask: Tensor | None = None) -> Tensor:
    """PredRNN recomputed explicitly: (B, T, C, H, W) -> (B, T-1, C, H, W)."""
    weights = [paper_weights(cell) for cell in model.cells]
    forget_bias = model.cfg.forget_bias

    def make_step(zeros: list[Tensor]) -> Step:
        c = list(zeros)
        memory = [zeros[-1]]  # M: the top layer's at step t-1 when layer 0 reads it, else the layer below's at step t

        def step(layer: int, x: Tensor, h: Tensor) -> Tensor:
            h_new, c[layer], memory[0] = st_lstm(weights[layer], forget_bias, x, h, c[layer], memory[0])
            return h_new

        return step

    return unroll(model, frames, context_frames, true_mask, make_step)
