"""What each speed change bought: the study-size training step with one change undone at a time, each in a fresh
process, side by side in one run (``python -m bench.bench_changes``; about ten minutes on 2 cores).

Every variant computes the same function (the loss of the second step, after one update from the same start, is
printed beside its time to show it), so the time and memory differences are what the change buys:

- ``recall backward by autograd``: the recall's backward recomputes attention with the public
  ``scaled_dot_product_attention`` and autograd, instead of calling the fused CPU flash kernel's backward directly;
- ``recall written out``: the recall as the release and the reference port write it, matmul, softmax, matmul over the
  concatenated history, every attention map kept for backward; ``... , denormals not flushed`` as they run it;
- ``padded conv3d``: the two-frame "same" convolution pads the input with a zero frame and runs one conv3d, instead
  of computing the last output frame on its own (which skips multiplying the zero pad);
- ``history re-concatenated``: the eidetic history's keys are rebuilt by concatenation at every recall, instead of
  living in a preallocated buffer filled once per step;
- ``denormals not flushed``: subnormal floats computed at full cost.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.bench_train import SIZES

STUDY = SIZES["study (4x64, 64x64, patch 4, batch 4)"]


def _recall_by_autograd() -> None:
    import core.models.recall as recall

    recall.FUSED_CPU_BACKWARD = False


def _padded_conv3d() -> None:
    import torch.nn.functional as F

    from core.models.e3d_lstm import CellConv

    def forward(self, x):  # (B, C, window, H', W') + one zero frame after -> (B, O, window, H', W')
        return F.conv3d(
            F.pad(x, (0, 0, 0, 0, 0, self.kernel_size[0] - 1)), self.weight, self.bias, padding=self.padding
        )

    CellConv.forward = forward


def _tokens(state):
    batch, dim = state.shape[:2]
    return state.permute(0, 2, 3, 4, 1).reshape(batch, -1, dim)  # (B, D, window, H', W') -> (B, P, D)


def _history_concatenated() -> None:
    import torch

    from core.models.recall import EideticHistory

    EideticHistory.keys = lambda self: torch.cat([_tokens(s.detach()) for s in self.states], dim=1)  # (B, K, D)


def _recall_written_out() -> None:
    import torch

    from core.models.recall import EideticHistory

    def recall(self, query, scale):
        batch, dim, window, height, width = query.shape
        keys = torch.cat([_tokens(s) for s in self.states], dim=1)  # (B, K, D), through autograd
        weights = torch.softmax(_tokens(query) @ keys.transpose(1, 2) * scale, dim=-1)  # (B, P, K), kept for backward
        out = weights @ keys  # (B, P, D)
        return out.view(batch, window, height, width, dim).permute(0, 4, 1, 2, 3)  # -> (B, D, window, H', W')

    EideticHistory.recall = recall


CHANGES = {  # name: (undo the change, flush denormals)
    "this code": (None, True),
    "recall backward by autograd": (_recall_by_autograd, True),
    "recall written out": (_recall_written_out, True),
    "recall written out, denormals not flushed": (_recall_written_out, False),
    "padded conv3d": (_padded_conv3d, True),
    "history re-concatenated": (_history_concatenated, True),
    "denormals not flushed": (None, False),
}


def measure_change(name: str, steps: int, threads: int) -> dict:
    undo, flush = CHANGES[name]
    if undo is not None:
        undo()
    from bench.bench_train import measure

    return measure(*STUDY, steps=steps, threads=threads, flush_denormal=flush)


def bench_changes(steps: int = 2, threads: int = 2) -> dict[str, dict]:
    """Per change undone: the study-size step's median seconds, peak GiB and first two losses (see the module doc)."""
    results = {}
    for name in CHANGES:
        call = f"measure_change({name!r}, {steps}, {threads})"
        code = f"import json; from bench.bench_changes import measure_change; print(json.dumps({call}))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    results = bench_changes()
    ours = results["this code"]
    print(f"{'study-size training step, with':<42}  {'s/step':>7}  {'x ours':>6}  {'peak GiB':>8}  loss at step 2")
    for name, result in results.items():
        ratio = result["step_s"] / ours["step_s"]
        print(f"{name:<42}  {result['step_s']:>7.2f}  {ratio:>6.2f}  {result['peak_gib']:>8.2f}  "
              f"{result['losses'][1]:.8f}")  # fmt: skip


if __name__ == "__main__":
    main()
