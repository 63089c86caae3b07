# Data: synthesise the built-in world, or build a manifest from a real metadata table and
# download its images with img2dataset; then bucket rows into the declared steps and splits.

if SOURCE == "synthetic":

    rule synthesize_world:
        output:
            directory(f"{DATA}/shards"),
        params:
            cfg=subset(config["data"]["synthetic"], ["years", "samples_per_year", "image_size", "samples_per_shard",
                                                     "typical_colour"]),
            seed=config["seed"],
        conda:
            "../envs/ticlip.yaml"
        log:
            f"{LOGS}/data/synthesize_world.log",
        benchmark:
            f"{BENCH}/data/synthesize_world.tsv"
        resources:
            **RESOURCES["data"],
        threads: PARALLEL_THREADS
        priority: PRIORITY["all_cores"]
        script:
            "../workflow_scripts/synthesize.py"

    rule synthesize_static:
        output:
            directory(f"{DATA}/static/synthetic"),
        params:
            cfg=subset(config["data"]["synthetic"], ["static_samples", "image_size", "samples_per_shard"]),
            seed=config["seed"],
            static=True,
        conda:
            "../envs/ticlip.yaml"
        log:
            f"{LOGS}/data/synthesize_static.log",
        benchmark:
            f"{BENCH}/data/synthesize_static.tsv"
        resources:
            **RESOURCES["data"],
        threads: PARALLEL_THREADS
        priority: PRIORITY["all_cores"]
        script:
            "../workflow_scripts/synthesize.py"

else:

    rule prepare_metadata:
        input:
            metadata_files(),
        output:
            prepared=f"{DATA}/metadata/prepared.parquet",
            quarantine=f"{DATA}/metadata/quarantine.parquet",
            summary=f"{DATA}/metadata/summary.json",
        params:
            steps=STEPS,
            spec=METADATA_SPEC,
            split=config["data"]["split"],
            patterns=config["data"]["metadata"],
            url_policy=subset(config["data"]["download"], ["allowed_schemes", "allow_private_hosts", "resolve_hostnames"]),
        conda:
            "../envs/ticlip.yaml"
        log:
            f"{LOGS}/data/prepare_metadata.log",
        benchmark:
            f"{BENCH}/data/prepare_metadata.tsv"
        resources:
            **RESOURCES["data"],
        script:
            "../workflow_scripts/prepare_metadata.py"

    rule download:
        input:
            prepared=f"{DATA}/metadata/prepared.parquet",
        output:
            directory(f"{DATA}/shards"),
        params:
            spec=METADATA_SPEC,
            options=config["data"]["download"],
        conda:
            "../envs/ticlip.yaml"
        log:
            f"{LOGS}/data/download.log",
        benchmark:
            f"{BENCH}/data/download.tsv"
        resources:
            **RESOURCES["data"],
        threads: config["data"]["download"]["processes_count"]
        script:
            "../workflow_scripts/download.py"

    rule prepare_static_set:
        output:
            directory(f"{DATA}/static/{{static_set}}"),
        params:
            spec=lambda wildcards: STATIC_SETS[wildcards.static_set],
        conda:
            "../envs/ticlip.yaml"
        log:
            f"{LOGS}/data/static/{{static_set}}.log",
        benchmark:
            f"{BENCH}/data/static/{{static_set}}.tsv"
        resources:
            **RESOURCES["data"],
        script:
            "../workflow_scripts/prepare_static_set.py"


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
        dedup_against_test=config["data"]["dedup_against_test"],
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/data/bucket.log",
    benchmark:
        f"{BENCH}/data/bucket.tsv"
    resources:
        **RESOURCES["data"],
    script:
        "../workflow_scripts/bucket.py"


rule data_report:
    input:
        unpack(data_report_inputs),
    output:
        csv=report(f"{DATA}/report/data_report.csv", category="Data", labels={"output": "Per-step counts (CSV)"}),
        md=report(f"{DATA}/report/data_report.md", category="Data", labels={"output": "Per-step counts (Markdown)"}),
        figure=report(f"{DATA}/report/samples_per_year.png", caption="../report/data.rst", category="Data"),
    params:
        steps=STEPS,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/data/report.log",
    benchmark:
        f"{BENCH}/data/report.tsv"
    script:
        "../workflow_scripts/make_data_report.py"
