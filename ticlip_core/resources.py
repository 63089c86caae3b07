"""What a job asks a cluster for: one entry of the config's ``resources:`` block as Snakemake resources.

The names are the ones snakemake-executor-plugin-slurm turns into sbatch options: ``gpu`` and
``gpu_model`` (``--gpus=<gpu_model>:<gpu>``), ``cpus_per_gpu`` (``--cpus-per-gpu``), ``mem_mb``
(``--mem``) and ``runtime`` in minutes (``-t``). A CPU job gets no GPU keys, and the plugin then
asks ``--cpus-per-task=<the rule's threads>``.

The local executor schedules by cores alone: a resource not limited with ``--resources`` never
holds a job back, so a GPU or memory request does not stop a run on a CPU-only laptop.
"""
from __future__ import annotations


def job_resources(block: dict) -> dict:
    """Snakemake ``resources:`` of a job from ``config["resources"][<kind>]`` (validated, defaults filled)."""
    resources = {"mem_mb": block["mem_mb"], "runtime": block["runtime"]}
    if block.get("gpu"):
        resources["gpu"] = block["gpu"]
        resources["cpus_per_gpu"] = block["cpus_per_gpu"]
        if block.get("gpu_model"):
            resources["gpu_model"] = block["gpu_model"]
    return resources
