# Data: synthesise the built-in world (or, later, download), then bucket rows into steps.


rule synthesize_world:
    output:
        directory(f"{DATA}/shards"),
    params:
        cfg=config["data"]["synthetic"],
        seed=config["seed"],
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/data/synthesize_world.log",
    benchmark:
        f"{BENCH}/data/synthesize_world.tsv"
    threads: workflow.cores
    script:
        "../workflow_scripts/synthesize.py"


rule synthesize_static:
    output:
        directory(f"{DATA}/static"),
    params:
        cfg=config["data"]["synthetic"],
        seed=config["seed"],
        static=True,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/data/synthesize_static.log",
    benchmark:
        f"{BENCH}/data/synthesize_static.tsv"
    threads: workflow.cores
    script:
        "../workflow_scripts/synthesize.py"


rule bucket:
    input:
        shards=f"{DATA}/shards",
    output:
        manifest=f"{DATA}/manifest.parquet",
        quarantine=f"{DATA}/quarantine.parquet",
        summary=f"{DATA}/bucket_summary.json",
        steps=directory(f"{DATA}/steps"),
    params:
        steps=STEPS,
        split=config["data"]["split"],
        samples_per_shard=config["data"]["samples_per_shard"],
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/data/bucket.log",
    benchmark:
        f"{BENCH}/data/bucket.tsv"
    script:
        "../workflow_scripts/bucket.py"
