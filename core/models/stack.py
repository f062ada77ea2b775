"""What every stacked recurrent predictor shares: patch folding, the temporal window and its convolution, the unroll
over time with scheduled sampling, the residual wiring between layers and the decoder. A family adds only its cell.

Shapes: frames (B, T, C, H, W); inside the model frames are folded space-to-depth to (B, T, C*p*p, H', W') with
H' = H/p, W' = W/p. A cell sees a window of the last ``window`` fed frames, so its input and states are 5-D
(B, channels, window, H', W') and its convolutions are 3-D (:class:`CellConv`): ``conv: 3d`` is a temporal kernel of
2 over the window, ``conv: 2d`` a temporal kernel of 1, a per-frame 2-D convolution inside the same window machinery
(the study's "E2D"). The decoder collapses the window to one frame. design.md section 2 has the wiring.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import ModelConfig


def patch_fold(frames: Tensor, patch: int) -> Tensor:
    """Space-to-depth: (B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p).

    Pixel (h, w) of channel c lands in channel ``c*p*p + (h % p)*p + (w % p)`` at (h // p, w // p). For one channel
    this is the release's order (its channel index is ``((h % p)*p + w % p)*C + c``; they differ only for C > 1).
    """
    return F.pixel_unshuffle(frames, patch)  # (B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p)


def patch_unfold(patches: Tensor, patch: int) -> Tensor:
    """Depth-to-space, the inverse of :func:`patch_fold`: (B, T, C*p*p, H/p, W/p) -> (B, T, C, H, W)."""
    return F.pixel_shuffle(patches, patch)  # (B, T, C*p*p, H/p, W/p) -> (B, T, C, H, W)


def temporal_kernel(cfg: ModelConfig) -> int:
    """The cell convolutions' kernel in time: 2 for ``conv: 3d`` (the release's), 1 for ``2d``."""
    return 2 if cfg.conv == "3d" else 1


class CellConv(nn.Conv3d):
    """A 3-D convolution with kernel (kt, k, k), kt in {1, 2}, stride 1 and TensorFlow's "same" padding.

    TensorFlow pads an even kernel unevenly, the extra frame after: for kt = 2 the time axis gets 0 frames before and
    1 after, so output time i = W_0 * x_i + W_1 * x_(i+1), the last output seeing only the last input (the pad is
    zero). Spatial padding is k // 2 on each side (k is odd). ``bias=False`` where a gate's one bias is another
    convolution's (a cell whose paper writes one bias per gate over several convolutions).
    """

    def __init__(self, in_channels: int, out_channels: int, temporal: int, spatial: int, bias: bool = True) -> None:
        if temporal not in (1, 2):
            raise ValueError(f"temporal kernel must be 1 or 2, got {temporal}")
        super().__init__(
            in_channels, out_channels, (temporal, spatial, spatial), padding=(0, spatial // 2, spatial // 2), bias=bias
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


class RecurrentStack(nn.Module):
    """A stack of recurrent cells unrolled over time, predicting every next frame; a family subclasses it with its
    cell (:meth:`make_cell`), the state it carries besides each layer's H (:meth:`start`) and one layer's step
    (:meth:`advance`).

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
        self.image_size = image_size
        hidden = list(cfg.hidden)
        folded = channels * cfg.patch_size**2
        inputs = [folded] + hidden[:-1]
        self.cells = nn.ModuleList(self.make_cell(l, inputs[l]) for l in range(len(hidden)))
        # Collapses the window to one frame: kernel and stride (window, 1, 1).
        self.decoder = nn.Conv3d(hidden[-1], folded, kernel_size=(cfg.window, 1, 1), stride=(cfg.window, 1, 1))
        # residual_gate zero: one learnable scalar per skip ("layer<l>", "decoder"), multiplying the H_{l-2} it adds.
        # Registered last, so their parameters follow every other one (an optimizer state of the same model without
        # them is a prefix of this one's). Started at 0: the skips are off until training opens them.
        gated = cfg.residual and cfg.residual_gate == "zero"
        skips = [position for position in range(2, len(hidden) + 1) if gated and self._takes_skip(position)]
        self.skip_gates = nn.ParameterDict({self._skip_name(p): nn.Parameter(torch.zeros(())) for p in skips})
        self.reset_parameters()

    # -- what a family provides -------------------------------------------------------------------------------------

    def make_cell(self, layer: int, in_channels: int) -> nn.Module:
        """Layer ``layer``'s cell, reading ``in_channels`` channels (the folded frames, or H of the layer below)."""
        raise NotImplementedError

    def start(self, h: list[Tensor], length: int) -> Any:
        """The family's state besides each layer's H at the zero start; ``h`` holds the zero H of each layer
        (B, hidden_l, window, H', W'), ``length`` the frames of this forward pass."""
        raise NotImplementedError

    def advance(self, layer: int, inputs: Tensor, h: Tensor, state: Any) -> Tensor:
        """One step of layer ``layer``: its input (B, C_in, window, H', W') and H -> H', updating ``state``."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """The release's initialisation (TensorFlow's conv defaults): Glorot-uniform kernels, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
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
        state = self.start(h, length)
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
            for l in range(layers):
                if l > 0:
                    inputs = self._skip(h, l)
                h[l] = self.advance(l, inputs, h[l], state)
            top = self._skip(h, layers)
            predictions.append(self.decoder(top).squeeze(2))  # (B, C*p*p, 1, H', W') -> (B, C*p*p, H', W')
        out = torch.stack(predictions, dim=1)  # (T-1) x (B, C*p*p, H', W') -> (B, T-1, C*p*p, H', W')
        return patch_unfold(out, cfg.patch_size)  # -> (B, T-1, C, H, W)
