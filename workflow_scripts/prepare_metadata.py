"""Entry point: metadata tables -> manifest of rows in the declared steps (to download) and the
quarantine of every other row with its reason, URLs the download policy refuses included
(``params.url_policy``: ``allowed_schemes``, ``allow_private_hosts``, ``resolve_hostnames`` of
``data.download``)."""
import json

from ticlip_core.data.bucketing import parse_steps
from ticlip_core.data.download import source_renames
from ticlip_core.data.manifest import write_manifest
from ticlip_core.data.metadata import read_metadata
from ticlip_core.data.url_policy import REFUSAL_REASONS, UrlPolicy
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    spec, split = snakemake.params.spec, snakemake.params.split
    policy = UrlPolicy.from_options(snakemake.params.url_policy)
    metadata = read_metadata(list(snakemake.params.patterns))
    # columns img2dataset writes itself (DataComp's sha256, YFCC's key) are kept under another name
    renamed = source_renames(metadata.columns, spec["columns"]["url"], spec["columns"]["caption"])
    summary = write_manifest(
        metadata, snakemake.output.prepared, snakemake.output.quarantine, rename=renamed,
        steps=parse_steps(snakemake.params.steps), columns=spec["columns"], timestamp=spec["timestamp"],
        val_fraction=split["val_fraction"], test_fraction=split["test_fraction"], url_policy=policy)
    refused = {r: summary["excluded"][r] for r in REFUSAL_REASONS if summary["excluded"][r]}
    if refused:
        print(f"URL policy {policy.as_dict()} quarantined {sum(refused.values())} rows: {refused} "
              f"(each with its reason_detail in {snakemake.output.quarantine})")
    summary["renamed_columns"] = renamed
    with open(snakemake.output.summary, "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
