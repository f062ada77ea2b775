"""Eidetic recall: attention from the current step's recall gate over every past cell state of one layer.

The history grows by one window of cell states per step, so rebuilding it with ``torch.cat`` at every step would copy
O(T^2) data and keep each copy alive until backward. Instead :class:`EideticHistory` writes each cell state once into
a preallocated token buffer that lives outside autograd, and :class:`Recall` attends over a view of the buffer's filled
prefix. The cell states themselves are passed to :class:`Recall` as extra inputs only so that its backward can hand
each of them its share of the key/value gradient.

Tokens: a cell state ``(B, hidden, window, H', W')`` becomes ``P = window * H' * W'`` tokens of ``hidden`` features,
ordered (window, H', W'); the query uses the same order, so the output maps back onto the state's positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def attend(query: Tensor, keys: Tensor, scale: float) -> Tensor:
    """``softmax(scale * Q K^T) K``: (B, P, D) queries over (B, K, D) keys that are also the values -> (B, P, D)."""
    # A head axis makes these 4-D, which lets PyTorch pick a fused kernel (on CPU its flash kernel: ~6x faster than
    # the plain math here, and it never materialises the (P, K) weights).
    out = F.scaled_dot_product_attention(query[:, None], keys[:, None], keys[:, None], scale=scale)  # (B, 1, P, D)
    return out[:, 0]


# PyTorch's fused CPU attention called directly, so that backward reuses the forward's log-sum-exp instead of running
# the forward again (~20% of the recall's time, ~12% of a small model's step). These ops are private: they are used
# only where present and on CPU, and anything else recomputes through the public scaled_dot_product_attention.
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_CPU_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
FUSED_CPU_BACKWARD = _FLASH_CPU is not None and _FLASH_CPU_BACKWARD is not None


class Recall(torch.autograd.Function):
    """:func:`attend` with keys = values = the history, routing the key gradient to the history's states.

    ``forward(query, keys, scale, *states)``: ``query`` (B, P, D); ``keys`` (B, K, D), a view of the history buffer
    that holds exactly the ``states`` (each (B, D, window, H', W'), K = len(states) * P) as tokens. ``keys`` gets no
    gradient; each state gets the slice of the key/value gradient that belongs to its tokens.
    """

    @staticmethod
    def forward(ctx, query: Tensor, keys: Tensor, scale: float, *states: Tensor) -> Tensor:
        # Kept off save_for_backward on purpose: later steps write later slices of the same buffer, which bumps the
        # storage's version counter, although the prefix seen here is never written again.
        ctx.keys = keys
        ctx.scale = scale
        ctx.state_shape = states[0].shape
        ctx.state_dtypes = [state.dtype for state in states]  # under autocast they may differ from the buffer's
        ctx.fused = FUSED_CPU_BACKWARD and query.device.type == "cpu"
        if not ctx.fused:
            ctx.save_for_backward(query)
            # Autocast would run the public attention in bfloat16; the private CPU kernel below ignores autocast.
            with torch.autocast(query.device.type, enabled=False):
                return attend(query, keys, scale)
        # (B, 1, P, D) over (B, 1, K, D) -> out (B, 1, P, D), logsumexp (B, 1, P)
        out, logsumexp = _FLASH_CPU(query[:, None], keys[:, None], keys[:, None], scale=scale)
        ctx.save_for_backward(query, out, logsumexp)
        return out[:, 0]

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        need_query, need_states = ctx.needs_input_grad[0], ctx.needs_input_grad[3:]
        keys, scale = ctx.keys, ctx.scale
        if ctx.fused:
            query, out, logsumexp = ctx.saved_tensors
            q, k = query[:, None], keys[:, None]  # (B, 1, P, D), (B, 1, K, D)
            grad_q, grad_k, grad_v = _FLASH_CPU_BACKWARD(
                grad_out[:, None].contiguous(), q, k, k, out, logsumexp, 0.0, False, scale=scale
            )
            grad_query, grad_keys = grad_q[:, 0], (grad_k + grad_v)[:, 0]  # keys serve as values too
        else:
            # Recompute the attention with autograd on, on detached inputs, and let the fused kernel's backward do
            # the rest: nothing of the forward's attention is kept alive between forward and backward.
            (query,) = ctx.saved_tensors
            with torch.enable_grad(), torch.autocast(query.device.type, enabled=False):
                q = query.detach().requires_grad_()
                k = keys.detach().requires_grad_()
                grad_query, grad_keys = torch.autograd.grad(attend(q, k, scale), (q, k), grad_out.contiguous())
        grad_states: list[Tensor | None] = [None] * len(need_states)
        batch, dim, window, height, width = ctx.state_shape
        tokens = window * height * width
        for index, needed in enumerate(need_states):
            if needed:
                chunk = grad_keys[:, index * tokens : (index + 1) * tokens]  # (B, P, D)
                # (B, P, D) -> (B, window, H', W', D) -> (B, D, window, H', W'), the state's layout
                grad = chunk.reshape(batch, window, height, width, dim).permute(0, 4, 1, 2, 3)
                grad_states[index] = grad.to(ctx.state_dtypes[index])
        return grad_query if need_query else None, None, None, *grad_states


class EideticHistory:
    """The past cell states of one layer as attention keys: a token buffer filled one state per step.

    Starts holding ``initial`` (the zero start of the cell state); room for ``capacity`` states in all. One history
    serves one forward pass: backward reads the buffer, so a new forward must build a new history.
    """

    def __init__(self, initial: Tensor, capacity: int) -> None:
        batch, dim, window, height, width = initial.shape
        self.tokens = window * height * width  # P: tokens per state
        self.buffer = initial.new_empty(batch, capacity * self.tokens, dim)  # (B, capacity * P, D), outside autograd
        self.states: list[Tensor] = []
        self.append(initial)

    def append(self, state: Tensor) -> None:
        """Add a cell state (B, D, window, H', W'): copied once into the buffer, kept for gradient routing."""
        start = len(self.states) * self.tokens
        if start + self.tokens > self.buffer.shape[1]:
            raise ValueError(f"eidetic history is full ({len(self.states)} states)")
        batch, dim, window, height, width = state.shape
        slot = self.buffer[:, start : start + self.tokens]  # (B, P, D)
        with torch.no_grad():
            # (B, P, D) -> (B, window, H', W', D) view; state (B, D, window, H', W') -> (B, window, H', W', D)
            slot.view(batch, window, height, width, dim).copy_(state.permute(0, 2, 3, 4, 1))
        self.states.append(state)

    def keys(self) -> Tensor:
        """Every state so far as tokens: (B, len(states) * P, D), a view of the buffer (no copy)."""
        return self.buffer[:, : len(self.states) * self.tokens]

    def recall(self, query: Tensor, scale: float) -> Tensor:
        """Attention of ``query`` (B, D, window, H', W') over the history; the result has the query's layout."""
        batch, dim, window, height, width = query.shape
        # (B, D, window, H', W') -> (B, P, D); contiguous, since the fused kernel needs unit stride on D and a reshape
        # of the permuted channels-first tensor can return a view with stride P there.
        q = query.permute(0, 2, 3, 4, 1).reshape(batch, self.tokens, dim).contiguous()
        # Under autocast the gate may be bfloat16 while the history keeps the cell states' float32: attend in the
        # history's precision (the softmax over thousands of unscaled logits needs it); Recall keeps autocast out.
        out = Recall.apply(q.to(self.buffer.dtype), self.keys(), scale, *self.states)  # (B, P, D)
        return out.view(batch, window, height, width, dim).permute(0, 4, 1, 2, 3)  # -> (B, D, window, H', W')
