# ticlip: continual training of CLIP models, from data to the papers' tables and figures.
# This file only validates the config, includes the rules and declares the final targets.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "ticlip_core/schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/clclip.smk"


rule all:
    input:
        tic_outputs(),
        clclip_outputs(),
    default_target: True
