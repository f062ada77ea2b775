"""A slow, explicit reference of the E3D-LSTM forward pass (design.md section 2), for tests only.

It reads the weights of an :class:`core.models.E3DLSTM` and recomputes its forward with nothing clever: patches cut
by strided slicing, the time padding done by hand as a sum over temporal taps of 2-D convolutions, layer norm from its
formula, the eidetic history rebuilt with ``torch.cat`` and attention written out per batch element.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fold(frames: Tensor, p: int) -> Tensor:
    """(B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p): channel c*p*p + i*p + j holds pixels (i::p, j::p) of channel c."""
    channels = frames.shape[2]
    parts = [frames[:, :, ch, i::p, j::p] for ch in range(channels) for i in range(p) for j in range(p)]
    return torch.stack(parts, dim=2)  # C*p*p x (B, T, H/p, W/p) -> (B, T, C*p*p, H/p, W/p)


def unfold(patches: Tensor, p: int) -> Tensor:
    """The inverse of :func:`fold`, pixel by pixel offset."""
    batch, length, folded, height, width = patches.shape
    channels = folded // (p * p)
    out = patches.new_zeros(batch, length, channels, height * p, width * p)
    for ch in range(channels):
        for i in range(p):
            for j in range(p):
                out[:, :, ch, i::p, j::p] = patches[:, :, ch * p * p + i * p + j]
    return out


def conv(module: nn.Conv3d, x: Tensor) -> Tensor:
    """TensorFlow "same" 3-D conv: output time i = bias + sum over taps tau of conv2d(x[time i + tau - before], W_tau),
    with x zero outside its window; for kt = 2, before = 0 (output i sees inputs i and i + 1)."""
    weight, bias = module.weight, module.bias
    taps, spatial = weight.shape[2], weight.shape[3]
    before = (taps - 1) // 2
    window = x.shape[2]
    outputs = []
    for i in range(window):
        total = bias.view(1, -1, 1, 1)
        for tau in range(taps):
            source = i + tau - before
            if 0 <= source < window:
                total = total + F.conv2d(x[:, :, source], weight[:, :, tau], padding=spatial // 2)
        outputs.append(total)
    return torch.stack(outputs, dim=2)  # window x (B, C, H', W') -> (B, C, window, H', W')


def layer_norm(module: nn.Module, x: Tensor) -> Tensor:
    """Normalise over every non-batch axis, then a per-channel gain and shift; identity when layer norm is off."""
    if isinstance(module, nn.Identity):
        return x
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean) / torch.sqrt(var + module.eps) * module.weight.view(shape) + module.bias.view(shape)


def attention(query: Tensor, history: list[Tensor], scale: float) -> Tensor:
    """softmax(scale * q k^T) v per batch element, keys = values = every state of ``history`` (B, D, window, H', W')."""
    batch, dim = query.shape[:2]
    out = torch.empty_like(query)
    for b in range(batch):
        q = query[b].reshape(dim, -1).T  # (P, D), positions in (window, H', W') order
        k = torch.cat([state[b].reshape(dim, -1).T for state in history], dim=0)  # (len(history) * P, D)
        weights = torch.softmax(q @ k.T * scale, dim=-1)
        out[b] = (weights @ k).T.reshape(query[b].shape)
    return out


def cell(model_cell: nn.Module, cfg, x, h, c, m, history):
    """One cell step from the equations; returns (H', C', M') where M' is what the paper's cell would pass on."""
    hidden = h.shape[1]
    gx = layer_norm(model_cell.norm_x, conv(model_cell.conv_x, x))
    gh = layer_norm(model_cell.norm_h, conv(model_cell.conv_h, h))
    part = [gx[:, k * hidden : (k + 1) * hidden] for k in range(7)]
    i_x, g_x, r_x, o_x, i_xm, g_xm, f_xm = part
    i_h, g_h, r_h, o_h = (gh[:, k * hidden : (k + 1) * hidden] for k in range(4))
    i = torch.sigmoid(i_x + i_h)
    r = torch.sigmoid(r_x + r_h)
    g = torch.tanh(g_x + g_h)
    if cfg.recall == "off":
        c_new = layer_norm(model_cell.norm_c, c) + i * g
    else:
        scale = 1.0 if cfg.recall == "released" else 1.0 / hidden**0.5
        c_new = layer_norm(model_cell.norm_c, c + attention(r, history, scale)) + i * g
    gm = layer_norm(model_cell.norm_m, conv(model_cell.conv_m, m))
    i_m, f_m, g_m, m_m = (gm[:, k * hidden : (k + 1) * hidden] for k in range(4))
    m_new = torch.sigmoid(f_xm + f_m + cfg.forget_bias) * torch.tanh(m_m) + torch.sigmoid(i_xm + i_m) * torch.tanh(
        g_xm + g_m
    )
    o_pre = o_x + o_h + conv(model_cell.conv_oc, c_new) + conv(model_cell.conv_om, m_new)
    o = torch.sigmoid(o_pre) if cfg.output_gate == "paper" else torch.sigmoid(torch.tanh(o_pre))
    w = model_cell.conv_out.weight[:, :, 0, 0, 0]  # (hidden, 2 * hidden): a 1x1x1 conv is a channel mix
    mixed = torch.einsum("oc,bcthw->bothw", w[:, :hidden], c_new) + torch.einsum(
        "oc,bcthw->bothw", w[:, hidden:], m_new
    )
    h_new = torch.tanh(mixed + model_cell.conv_out.bias.view(1, -1, 1, 1, 1)) * o
    return h_new, c_new, m_new


def skip_layers(cfg, layers: int) -> set[int]:
    """The layers that add H_{l-2} to their input, written out (not the model's rule): layer 2 (the study's wiring),
    or every even layer from 2 (``even``); none without residuals. The decoder's skip is separate."""
    if not cfg.residual:
        return set()
    return {2} if cfg.residual_layers == "study" else set(range(2, layers, 2))


def fed_frame(x: Tensor, t: int, context_frames: int, true_mask: Tensor | None, predictions: list[Tensor]) -> Tensor:
    """The frame the model reads at step t: the true one in the context, then its own last prediction, or under
    scheduled sampling the true frame where ``true_mask`` says so."""
    if t < context_frames:
        return x[:, t]
    if true_mask is None:
        return predictions[-1]
    keep = true_mask[:, t - context_frames].view(x.shape[0], 1, 1, 1)
    return keep * x[:, t] + (1 - keep) * predictions[-1]


def reference_forward(model: nn.Module, frames: Tensor, context_frames: int, true_mask: Tensor | None = None) -> Tensor:
    """The E3DLSTM forward recomputed explicitly: (B, T, C, H, W) -> (B, T-1, C, H, W)."""
    cfg = model.cfg
    p, window, layers = cfg.patch_size, cfg.window, len(cfg.hidden)
    x = fold(frames, p)
    batch, length, _, height, width = x.shape
    h = [x.new_zeros(batch, n, window, height, width) for n in cfg.hidden]
    c = [x.new_zeros(batch, n, window, height, width) for n in cfg.hidden]
    memory = x.new_zeros(batch, cfg.hidden[-1], window, height, width)
    histories = [[c[l]] for l in range(layers)]
    fed = [torch.zeros_like(x[:, 0]) for _ in range(window - 1)]
    predictions = []

    # The residuals, written out (not the model's rule): layer 2 adds H_0 (even: layer 4, ... too); decoder H_{L-2}.
    layer_skips = skip_layers(cfg, layers)

    for t in range(length - 1):
        fed.append(fed_frame(x, t, context_frames, true_mask, predictions))
        inputs = torch.stack(fed[len(fed) - window :], dim=2)  # (B, C*p*p, window, H', W'): frames t-window+1..t
        new_h = []
        for l in range(layers):
            if l > 0:
                inputs = new_h[l - 1] + new_h[l - 2] if l in layer_skips else new_h[l - 1]
            h_l, c_l, m_new = cell(model.cells[l], cfg, inputs, h[l], c[l], memory, histories[l])
            if cfg.memory_flow == "zigzag":
                memory = m_new
            new_h.append(h_l)
            c[l] = c_l
            histories[l] = histories[l] + [c_l]
        h = new_h
        top = h[-1] + h[-2] if cfg.residual else h[-1]
        decoded = F.conv3d(top, model.decoder.weight, model.decoder.bias, stride=(window, 1, 1))
        predictions.append(decoded[:, :, 0])
    return unfold(torch.stack(predictions, dim=1), p)  # (T-1) x (B, C*p*p, H', W') -> (B, T-1, C, H, W)
