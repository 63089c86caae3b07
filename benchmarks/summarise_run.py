"""Summarise a finished run's Snakemake benchmark files: time per rule and method, peak RSS.

Usage: python benchmarks/summarise_run.py [results/benchmarks]
Prints the summed wall time (s) of the jobs of each rule (and, for training and evaluation,
of each method), and the largest peak resident memory (max_rss, MB) of any job.
"""
import sys
from pathlib import Path

import pandas as pd


def load(bench_dir: Path) -> pd.DataFrame:
    """One row per job: its rule group (path under the benchmark dir), method if any, s, max_rss."""
    frames = []
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        df = pd.read_csv(tsv, sep="\t")
        rel = tsv.relative_to(bench_dir).parts
        df["rule"] = "/".join(rel[:2]) if len(rel) > 2 else rel[0].removesuffix(".tsv")
        df["method"] = rel[2] if len(rel) > 3 else ""
        df["job"] = str(tsv.relative_to(bench_dir))
        frames.append(df)
    if not frames:
        raise SystemExit(f"no benchmark files under {bench_dir}")
    return pd.concat(frames, ignore_index=True)


def main(bench_dir: str = "results/benchmarks") -> None:
    jobs = load(Path(bench_dir))
    print(jobs.groupby(["rule", "method"])["s"].agg(["count", "sum", "max"]).round(1).to_string())
    top = jobs.loc[jobs["max_rss"].idxmax()]
    print(f"\njobs: {len(jobs)}, summed job time: {jobs['s'].sum():.0f} s, "
          f"largest peak RSS: {top['max_rss']:.0f} MB ({top['job']})")


if __name__ == "__main__":
    main(*sys.argv[1:])
