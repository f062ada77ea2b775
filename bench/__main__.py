"""``make bench``: every benchmark, measured side by side in one run, printed as one table."""

from __future__ import annotations

import platform

import torch

from bench.bench_data import bench_generator
from bench.bench_metrics import bench_ssim
from bench.bench_train import bench_train, conv3d_rate


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")  # fmt: skip
    rows = []
    ssim = bench_ssim()
    rows.append(("SSIM, 64x64 frames/s: ours", f"{ssim['ours_frames_per_s']:,.0f}", ""))
    rows.append(("SSIM, 64x64 frames/s: scikit-image loop", f"{ssim['skimage_frames_per_s']:,.0f}", ""))
    rows.append(
        ("SSIM speed-up (ours / scikit-image)", f"{ssim['speedup']:.1f}x", f"max |diff| {ssim['max_abs_diff']:.1e}")
    )
    gen = bench_generator()
    rows.append(("Moving MNIST 20x64x64 seq/s, one core, bulk", f"{gen['bulk_seq_per_s']:,.0f}", "goal >= 2,000"))
    rows.append((f"Moving MNIST seq/s, one core, stream batch {gen['stream_batch_size']}",
                 f"{gen['stream_seq_per_s']:,.0f}", ""))  # fmt: skip
    peak = conv3d_rate()
    rows.append(("conv3d GFLOP/s, the model's largest conv shape", f"{peak:.0f}", "the machine's rate for this work"))
    for name, result in bench_train().items():
        note = "reference port: 65.6 s as shipped, 13.0 s with denormals flushed" if name.startswith("study") else ""
        rows.append((f"train step s: {name}", f"{result['step_s']:.2f}", note))
        flops = f"{result['gflop_per_step']:.0f} / {result['gflop_per_s']:.0f}"
        rows.append(("  GFLOP per step / achieved GFLOP/s", flops, f"achieved/peak {result['gflop_per_s'] / peak:.2f}"))
        rows.append(("  peak memory GiB", f"{result['peak_gib']:.2f}", ""))
        rows.append(("  evaluation sequences/s", f"{result['eval_seq_per_s']:.1f}", "forward only, batch 4x"))
        rows.append(("  data time / step time", f"{result['data_share']:.2%}", "generated stream, one batch"))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'benchmark':<{width}}  {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
