"""Training-step time (forward, backward, Adam) and peak memory of the E3D-LSTM at the study's size and the demo's.

Each size runs in its own process, so its peak resident memory is its own; the step time is the median of the timed
steps after one warm-up step.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

SIZES = {
    # name: (hidden, image size, patch, batch, total frames, context frames)
    "study (4x64, 64x64, patch 4, batch 4)": ((64, 64, 64, 64), 64, 4, 4, 20, 10),
    "demo (2x32, 64x64, patch 8, batch 4)": ((32, 32), 64, 8, 4, 20, 10),
}


def _measure(hidden, image_size, patch, batch, total, context, steps, threads) -> dict:
    """Runs inside the child process."""
    import resource

    import torch

    from core.config import ModelConfig
    from core.losses import prediction_loss
    from core.models import build_model

    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=tuple(hidden), patch_size=patch), channels=1, image_size=image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995))
    frames = torch.rand(batch, total, 1, image_size, image_size)
    mask = torch.zeros(batch, total - context - 1)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = prediction_loss(model(frames, context, mask), frames[:, 1:], 2 / 3)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step_s": statistics.median(times[1:]), "peak_gib": peak_kib / 2**20, "threads": threads}


def bench_train(steps: int = 2, threads: int = 2) -> dict[str, dict]:
    """Median step seconds and peak resident GiB per size, each measured in a fresh process."""
    results = {}
    for name, size in SIZES.items():
        code = (
            "import json, sys; from bench.bench_train import _measure; "
            f"print(json.dumps(_measure(*{size!r}, steps={steps}, threads={threads})))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


if __name__ == "__main__":
    for name, result in bench_train().items():
        print(f"{name}: {result['step_s']:.2f} s/step, peak {result['peak_gib']:.2f} GiB")
