"""Entry point: a local copy of a public dataset (official layout) -> static evaluation shards
(retrieval sets with every caption of each image)."""
import json

from ticlip_core.data.datasets import RetrievalSet, load_dataset, write_shards
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    dataset = load_dataset(spec["format"], spec["path"], spec["split"], **spec["options"])
    # retrieval sets: every caption of an image goes into its metadata json as ``captions`` (the
    # ``caption`` / .txt is the first), so static retrieval can be scored against all of them
    summary = write_shards(dataset, snakemake.output[0])
    summary["skipped"] = getattr(dataset, "skipped", {})
    if isinstance(dataset, RetrievalSet):
        summary["captions"] = sum(len(s.captions) for s in dataset)
    print(json.dumps(summary, indent=2, default=str))
