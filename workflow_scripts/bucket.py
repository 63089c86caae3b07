"""Entry point: manifest of the shards -> declared steps and splits -> per-step shards."""
import json

from ticlip_core.data.bucketing import assign_steps, parse_steps, summarise, write_step_shards
from ticlip_core.data.shards import read_shard_metadata
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    steps = parse_steps(snakemake.params.steps)
    split = snakemake.params.split
    assigned = assign_steps(read_shard_metadata(snakemake.input.shards), steps, split["val_fraction"],
                            split["test_fraction"], dedup_against_test=snakemake.params.dedup_against_test)
    summary = summarise(assigned, steps)
    write_step_shards(assigned, snakemake.input.shards, snakemake.output.steps, snakemake.params.samples_per_shard)
    assigned.to_parquet(snakemake.output.manifest, index=False)
    assigned[assigned["excluded"].notna()].to_parquet(snakemake.output.quarantine, index=False)
    with open(snakemake.output.summary, "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
