"""Time the synthesis of the default synthetic dataset (world + static set).

Usage: python benchmarks/bench_synthesize.py [--workers N] [--repeats 3] [--samples-per-year 1500]

Prints the median wall time over the repeats and the throughput in samples per second.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from ticlip_core.data.synthetic import DEFAULTS, synthesize_static, synthesize_world


def time_once(workers: int, samples_per_year: int, image_size: int) -> tuple[float, int]:
    """Synthesise world + static set into a temporary folder; returns (seconds, samples)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        world = synthesize_world(os.path.join(tmp, "world"), seed=0, samples_per_year=samples_per_year,
                                 image_size=image_size, workers=workers)
        static = synthesize_static(os.path.join(tmp, "static"), seed=0, image_size=image_size,
                                   num_samples=DEFAULTS["static_samples"], workers=workers)
        return time.perf_counter() - start, world["samples"] + static["samples"]


def main() -> None:
    """Parse the options, run the timings and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples-per-year", type=int, default=DEFAULTS["samples_per_year"])
    parser.add_argument("--image-size", type=int, default=DEFAULTS["image_size"])
    args = parser.parse_args()
    runs = [time_once(args.workers, args.samples_per_year, args.image_size) for _ in range(args.repeats)]
    seconds = statistics.median(s for s, _ in runs)
    samples = runs[0][1]
    print(f"synthesised {samples} samples ({args.image_size}x{args.image_size}) with "
          f"{args.workers} worker(s); runs: {', '.join(f'{s:.2f}s' for s, _ in runs)}")
    print(f"median: {seconds:.2f} s, {samples / seconds:.0f} samples/s")


if __name__ == "__main__":
    main()
