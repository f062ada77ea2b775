"""A slow, explicit transcription of the ConvLSTM's equations (Shi et al., NeurIPS 2015, equations (3)), for tests only.

It reads the weights of a :class:`core.models.ConvLSTM`, splits its one convolution over [X, H] into the paper's
eight kernels W_xi, W_hi, W_xf, W_hf, W_xc, W_hc, W_xo, W_ho and four biases, and recomputes the forward pass gate by
gate, nothing fused: each convolution a sum over temporal taps of 2-D convolutions (the time padding done by hand),
the stack and its residuals written out as the study wired them, patches cut by strided slicing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from reference_e3d import fed_frame, fold, skip_layers, unfold
from torch import Tensor, nn


def conv(weight: Tensor, bias: Tensor | None, x: Tensor) -> Tensor:
    """TensorFlow "same" conv over the window: output time i = bias + sum over taps tau of conv2d(x[time i + tau],
    W_tau), with x zero past its window (a temporal kernel of 2 sees frames i and i + 1; of 1, frame i)."""
    taps, spatial, window = weight.shape[2], weight.shape[3], x.shape[2]
    outputs = []
    for i in range(window):
        total = x.new_zeros(1) if bias is None else bias.view(1, -1, 1, 1)
        for tau in range(taps):
            if i + tau < window:
                total = total + F.conv2d(x[:, :, i + tau], weight[:, :, tau], padding=spatial // 2)
        outputs.append(total)
    return torch.stack(outputs, dim=2)  # window x (B, O, H', W') -> (B, O, window, H', W')


def paper_weights(cell: nn.Module, in_channels: int) -> dict[str, Tensor]:
    """The paper's named weights from the cell: rows of its conv in gate order i, f, c (the candidate), o; columns
    X first, then H."""
    weight, bias = cell.conv.weight, cell.conv.bias
    hidden = weight.shape[0] // 4
    named = {}
    for k, gate in enumerate("ifco"):
        rows = slice(k * hidden, (k + 1) * hidden)
        named[f"W_x{gate}"] = weight[rows, :in_channels]
        named[f"W_h{gate}"] = weight[rows, in_channels:]
        named[f"b_{gate}"] = bias[rows]
    named["W_ci"], named["W_cf"], named["W_co"] = cell.peephole_i, cell.peephole_f, cell.peephole_o
    return named


def cell(w: dict[str, Tensor], forget_bias: float, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Equations (3): returns (H_t, C_t) from X_t, H_{t-1}, C_{t-1}."""
    i = torch.sigmoid(conv(w["W_xi"], w["b_i"], x) + conv(w["W_hi"], None, h) + w["W_ci"] * c)
    f = torch.sigmoid(conv(w["W_xf"], w["b_f"], x) + conv(w["W_hf"], None, h) + w["W_cf"] * c + forget_bias)
    c_new = f * c + i * torch.tanh(conv(w["W_xc"], w["b_c"], x) + conv(w["W_hc"], None, h))
    o = torch.sigmoid(conv(w["W_xo"], w["b_o"], x) + conv(w["W_ho"], None, h) + w["W_co"] * c_new)
    return o * torch.tanh(c_new), c_new


def reference_forward(model: nn.Module, frames: Tensor, context_frames: int, true_mask: Tensor | None = None) -> Tensor:
    """The ConvLSTM stack recomputed explicitly: (B, T, C, H, W) -> (B, T-1, C, H, W)."""
    cfg = model.cfg
    p, window, layers = cfg.patch_size, cfg.window, len(cfg.hidden)
    x = fold(frames, p)
    batch, length, folded, height, width = x.shape
    inputs_of = [folded, *cfg.hidden[:-1]]
    weights = [paper_weights(model.cells[l], inputs_of[l]) for l in range(layers)]
    h = [x.new_zeros(batch, n, window, height, width) for n in cfg.hidden]
    c = [x.new_zeros(batch, n, window, height, width) for n in cfg.hidden]
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
            h_l, c[l] = cell(weights[l], cfg.forget_bias, inputs, h[l], c[l])
            new_h.append(h_l)
        h = new_h
        top = h[-1] + gate("decoder") * h[-2] if cfg.residual else h[-1]
        decoded = F.conv3d(top, model.decoder.weight, model.decoder.bias, stride=(window, 1, 1))
        predictions.append(decoded[:, :, 0])
    return unfold(torch.stack(predictions, dim=1), p)  # (T-1) x (B, C*p*p, H', W') -> (B, T-1, C, H, W)
