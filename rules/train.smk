# Training: one job per (method, step); a warm-starting method depends on its previous step.


rule train_step:
    input:
        unpack(train_inputs),
    output:
        model=f"{TIC}/models/{{method}}/{{step}}/model.pt",
        log=f"{TIC}/models/{{method}}/{{step}}/train_log.csv",
        compute=f"{TIC}/models/{{method}}/{{step}}/compute.json",
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/train/{{method}}/{{step}}.log",
    benchmark:
        f"{BENCH}/tic/train/{{method}}/{{step}}.tsv"
    threads: config["train"]["threads"]
    script:
        "../workflow_scripts/train_step.py"
