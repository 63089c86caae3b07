"""Entry point: a local copy of a public dataset (official layout) -> static evaluation shards."""
import json

from ticlip_core.data.datasets import load_dataset, write_shards
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    dataset = load_dataset(spec["format"], spec["path"], spec["split"], **spec["options"])
    summary = write_shards(dataset, snakemake.output[0])
    summary["skipped"] = getattr(dataset, "skipped", {})
    print(json.dumps(summary, indent=2, default=str))
