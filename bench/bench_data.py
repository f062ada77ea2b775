"""Moving MNIST generator throughput on one core: bulk generation, and the training stream's small batches."""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from core.data.loaders import MovingMNISTStream
from core.data.moving_mnist import generate


def _digits(real: bool) -> np.ndarray:
    if real:
        from core.data.mnist import load_digits

        return load_digits()["train"]
    return np.random.default_rng(0).integers(0, 256, (1000, 28, 28), dtype=np.uint8)


def _best_rate(work, count: int, repeats: int = 3) -> float:
    work()  # warm-up
    best = min(_timed(work) for _ in range(repeats))
    return count / best


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def bench_generator(num: int = 4000, stream_batches: int = 500, batch_size: int = 4, real_digits: bool = False) -> dict:
    """Sequences of 20x64x64 per second on one core: one bulk call, and the training stream at ``batch_size``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(affinity)})
    try:
        digits = _digits(real_digits)
        bulk = _best_rate(lambda: generate(digits, num, seed=0), num)
        stream = MovingMNISTStream(digits, batch_size, seed=0)
        streamed = _best_rate(lambda: [stream.batch(k) for k in range(stream_batches)], stream_batches * batch_size)
    finally:
        torch.set_num_threads(threads)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, affinity)
    return {"bulk_seq_per_s": bulk, "stream_seq_per_s": streamed, "stream_batch_size": batch_size}


if __name__ == "__main__":
    result = bench_generator()
    print(f"generator: {result['bulk_seq_per_s']:.0f} seq/s bulk, {result['stream_seq_per_s']:.0f} seq/s streamed "
          f"(batch {result['stream_batch_size']}), one core")  # fmt: skip
