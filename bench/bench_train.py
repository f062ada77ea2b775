"""Training-step time (forward, backward, Adam), achieved GFLOP/s against the machine's conv3d rate, peak memory,
evaluation throughput and data time, for the E3D-LSTM at the study's size and the demo's, and for each other recurrent
family (ConvLSTM, PredRNN, PredRNN++, in its paper's cell: a per-frame 2D kernel over a window of 1 frame) at the
study's size, so the families' rows compare like for like.

Each size runs in its own process, so its peak resident memory is its own; times are medians after a warm-up.
``device`` and ``precision`` (``fp32`` or ``bf16``, the trainer's autocast) choose where and how the step runs; on a
GPU each timed call waits for the device to finish, and peak memory is the GPU's peak allocation.
FLOPs are counted with :func:`core.flops.flop_counter` (torch's flop counter: convolutions and attention; elementwise
work and norms are not counted, as is usual), with the formulas of PyTorch's fused attention applied to the CPU flash
kernels the recall calls directly.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from core.flops import flop_counter

SIZES = {
    # name: (hidden, image size, patch, batch, total frames, context frames[, model family; default e3d_lstm])
    "study (4x64, 64x64, patch 4, batch 4)": ((64, 64, 64, 64), 64, 4, 4, 20, 10),
    "demo (2x32, 64x64, patch 8, batch 4)": ((32, 32), 64, 8, 4, 20, 10),
    "ConvLSTM, study size (2D, window 1)": ((64, 64, 64, 64), 64, 4, 4, 20, 10, "convlstm"),
    "PredRNN, study size (2D, window 1)": ((64, 64, 64, 64), 64, 4, 4, 20, 10, "predrnn"),
    "PredRNN++, study size (2D, window 1)": ((64, 64, 64, 64), 64, 4, 4, 20, 10, "predrnnpp"),
}

PAPER_CELL = {"conv": "2d", "window": 1}
"""The cell of every family but the E3D-LSTM as its variant files train it, its paper's: a per-frame 5x5 kernel over a
window of 1 frame. The E3D-LSTM keeps the config's defaults, 2x5x5 kernels over a window of 2 frames."""


def _median_seconds(work, repeats: int, device: str = "cpu") -> float:
    def timed() -> None:
        work()
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(device)  # kernels run asynchronously: time them, not their launch

    timed()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        timed()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv3d_rate(threads: int = 2, repeats: int = 5, device: str = "cpu", precision: str = "fp32") -> float:
    """GFLOP/s of the model's largest convolution at the study size: conv_x of a 64-channel layer (64 -> 448
    channels, kernel 2x5x5, on a (4, 64, 2, 16, 16) input), forward only, in ``precision``'s dtype."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    x = torch.randn(4, 64, 2, 16, 16, device=device, dtype=dtype)
    weight = torch.randn(448, 64, 2, 5, 5, device=device, dtype=dtype)
    flops = 2 * 4 * 448 * 1 * 16 * 16 * 64 * 2 * 5 * 5  # one valid output frame in time
    seconds = _median_seconds(lambda: F.conv3d(x, weight, padding=(0, 2, 2)), repeats * 10, device)
    return flops / seconds / 1e9


def measure(
    hidden,
    image_size,
    patch,
    batch,
    total,
    context,
    steps,
    threads,
    device: str = "cpu",
    precision: str = "fp32",
    flush_denormal: bool = True,
    family: str = "e3d_lstm",
) -> dict:
    """Runs inside the child process, for model ``family`` in its paper's cell (:data:`PAPER_CELL`); ``losses`` are
    the first two steps' (from the same seed every time: the second one shows that the first step's gradients and
    update were the same)."""
    import resource

    import numpy as np
    import torch

    from core.config import ModelConfig
    from core.data.loaders import MovingMNISTStream
    from core.data.moving_mnist import MovingMNISTSpec
    from core.evaluation import check_precision, precision_context
    from core.losses import prediction_loss
    from core.models import build_model

    torch.set_flush_denormal(flush_denormal)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    where = torch.device(device)
    check_precision(precision, where)
    cell = {} if family == "e3d_lstm" else PAPER_CELL
    config = ModelConfig(name=family, hidden=tuple(hidden), patch_size=patch, **cell)
    model = build_model(config, channels=1, image_size=image_size)
    model = model.to(where)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995))
    digits = np.random.default_rng(0).integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    stream = MovingMNISTStream(digits, batch, 0, MovingMNISTSpec(seq_len=total, canvas=image_size))
    frames = stream.batch(0).to(where)
    mask = torch.zeros(batch, total - context - 1, device=where)

    losses = []

    def step() -> None:
        with precision_context(precision, where):  # as the trainer runs it: forward and loss under autocast
            loss = prediction_loss(model(frames, context, mask).float(), frames[:, 1:], 2 / 3)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if len(losses) < 2:
            losses.append(loss.item())

    if where.type == "cuda":
        torch.cuda.reset_peak_memory_stats(where)
    step_s = _median_seconds(step, steps, device)
    # The training step's peak, before the FLOP-counting pass and the larger evaluation batch below.
    if where.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(where) / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with flop_counter() as counter:
        step()
    with torch.no_grad(), precision_context(precision, where):
        eval_frames = torch.cat([stream.batch(k) for k in range(4)]).to(where)  # (4B, T, 1, H, W)
        eval_s = _median_seconds(lambda: model(eval_frames, context), max(1, steps // 2), device)
    data_s = _median_seconds(lambda: stream.batch(1), 20)
    return {
        "step_s": step_s,
        "gflop_per_step": counter.get_total_flops() / 1e9,
        "eval_seq_per_s": len(eval_frames) / eval_s,
        "data_share": data_s / step_s,
        "peak_gib": peak_gib,
        "threads": threads,
        "losses": losses,
    }


def bench_train(steps: int = 2, threads: int = 2, device: str = "cpu", precision: str = "fp32") -> dict[str, dict]:
    """Per size: median step seconds, GFLOP per step and achieved GFLOP/s, evaluation sequences/s, data time as a
    share of the step, peak GiB (resident on a CPU, allocated on a GPU); each size in a fresh process."""
    results = {}
    for name, size in SIZES.items():
        shape, family = size[:6], size[6] if len(size) > 6 else "e3d_lstm"
        code = (
            "import json; from bench.bench_train import measure; "
            f"print(json.dumps(measure(*{shape!r}, steps={steps}, threads={threads}, device={device!r}, "
            f"precision={precision!r}, family={family!r})))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["gflop_per_s"] = result["gflop_per_step"] / result["step_s"]
        results[name] = result
    return results


if __name__ == "__main__":
    peak = conv3d_rate()
    print(f"conv3d (largest model shape): {peak:.0f} GFLOP/s")
    for name, r in bench_train().items():
        print(f"{name}: {r['step_s']:.2f} s/step, {r['gflop_per_s']:.0f} GFLOP/s ({r['gflop_per_s'] / peak:.2f} of "
              f"conv3d), eval {r['eval_seq_per_s']:.1f} seq/s, data {r['data_share']:.1%}, "
              f"peak {r['peak_gib']:.2f} GiB")  # fmt: skip
