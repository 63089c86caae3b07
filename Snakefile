# ticlip: continual training of CLIP models, from data to the papers' tables and figures.
# This file only validates the config, includes the rules and declares the final targets.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "ticlip_core/schemas/config.schema.yaml")

# A run (onstart: not a dry-run, nor a job on a cluster node) holds results/ for its lifetime, so a
# second run on the same folder from another working directory is refused (ticlip_core/results_lock.py).
onstart:
    if workflow.is_main_process:
        from ticlip_core.results_lock import hold_results_lock

        hold_results_lock(config["results"])


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/tic.smk"
include: "rules/clclip.smk"
include: "rules/memclip.smk"
include: "rules/findings.smk"


rule all:
    input:
        tic_outputs(),
        clclip_outputs(),
        memclip_outputs(),
        findings_outputs(),
    default_target: True
