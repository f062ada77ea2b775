"""``make bench``: every benchmark, measured side by side in one run, printed as one table.

``--device cuda --precision bf16`` runs the conv3d rate and the training-step rows on a GPU in bfloat16 autocast; the
SSIM and generator rows always run on the CPU. The time-to-quality rows (about 15 minutes on 2 cores) train today's
demo profile and the time-to-quality study's choice side by side until each reaches a fixed validation MSE
(:func:`bench.time_to_quality.race`); ``--no-quality`` leaves them out.
"""

from __future__ import annotations

import argparse
import platform

import torch

from bench.bench_data import bench_generator
from bench.bench_metrics import bench_ssim
from bench.bench_train import bench_train, conv3d_rate
from bench.time_to_quality import CANDIDATES, race


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="where the training step runs: cpu (default), cuda, cuda:1")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="the trainer's train.precision")
    parser.add_argument("--no-quality", action="store_true", help="skip the time-to-quality rows (~15 min)")
    args = parser.parse_args(argv)
    cpu = args.device == "cpu"
    default = cpu and args.precision == "fp32"
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")  # fmt: skip
    if not default:
        gpu = f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else ""
        print(f"training step on {args.device}{gpu} in {args.precision}")
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
    peak = conv3d_rate(device=args.device, precision=args.precision)
    rows.append(("conv3d GFLOP/s, the model's largest conv shape", f"{peak:.0f}", "the machine's rate for this work"))
    for name, result in bench_train(device=args.device, precision=args.precision).items():
        reference = default and name.startswith("study")  # the reference port's times are CPU float32 ones
        note = "reference port: 65.6 s as shipped, 13.0 s with denormals flushed" if reference else ""
        rows.append((f"train step s: {name}", f"{result['step_s']:.2f}", note))
        flops = f"{result['gflop_per_step']:.0f} / {result['gflop_per_s']:.0f}"
        rows.append(("  GFLOP per step / achieved GFLOP/s", flops, f"achieved/peak {result['gflop_per_s'] / peak:.2f}"))
        rows.append(("  peak memory GiB, training step", f"{result['peak_gib']:.2f}",
                     "GPU, allocated" if not cpu else "resident set of the process"))  # fmt: skip
        rows.append(("  evaluation sequences/s", f"{result['eval_seq_per_s']:.1f}", "forward only, batch 4x"))
        rows.append(("  data time / step time", f"{result['data_share']:.2%}", "generated stream, one batch"))
    if not args.no_quality:
        threshold, budget = 145.0, 12.0
        for name, minutes in race(("demo", "pretrain"), threshold, budget).items():
            shown = f"{minutes:.1f}" if minutes is not None else f"> {budget:g}"
            rows.append((f"CPU-minutes to val MSE {threshold:g}: {name}", shown, CANDIDATES[name].note[:60]))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'benchmark':<{width}}  {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
