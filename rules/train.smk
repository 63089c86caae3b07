# Training: one job per (run, step); a warm-starting method depends on its previous step.


rule train_step:
    input:
        unpack(train_inputs),
    output:
        model=f"{TIC}/models/{{run}}/{{step}}/model.pt",
        log=f"{TIC}/models/{{run}}/{{step}}/train_log.csv",
        compute=f"{TIC}/models/{{run}}/{{step}}/compute.json",
    params:
        method=lambda wildcards: RUNS[wildcards.run].method,
        cfg=lambda wildcards: train_job(config, RUNS[wildcards.run], STEPS.index(wildcards.step)),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/train/{{run}}/{{step}}.log",
    benchmark:
        f"{BENCH}/tic/train/{{run}}/{{step}}.tsv"
    resources:
        **RESOURCES["train"],
    threads: config["train"]["threads"]
    script:
        "../workflow_scripts/train_step.py"
