"""Entry point: download the prepared manifest's images with img2dataset (resumable)."""
import json

from ticlip_core.data.download import download_shards
from ticlip_core.workflow_io import logged

# img2dataset starts its workers with "spawn": they re-import this file, and must not rerun it.
if __name__ == "__main__":
    with logged(snakemake.log[0]):
        columns = snakemake.params.spec["columns"]
        stats = download_shards(snakemake.input.prepared, snakemake.output[0], url_col=columns["url"],
                                caption_col=columns["caption"], options=snakemake.params.options)
        print(json.dumps(stats, indent=2))
