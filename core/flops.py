"""FLOP counting: torch's ``FlopCounterMode`` (convolutions and matmuls; elementwise work and norms are not counted, as
is usual), taught the CPU flash-attention kernels the recall calls directly, with the formulas of PyTorch's fused
attention. The benchmarks (bench/) and a sweep's plan (``ablations.plan.measure``) both count with it, so their
figures agree. Torch is imported when a counter is made, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch.utils.flop_counter import FlopCounterMode


def flop_counter() -> FlopCounterMode:
    """A ``torch.utils.flop_counter.FlopCounterMode`` (no display) that also counts
    ``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward; use it as a context manager and read
    ``get_total_flops()``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = forward
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    return FlopCounterMode(display=False, custom_mapping=mapping)
