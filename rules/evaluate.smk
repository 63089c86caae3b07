# Evaluation: one job per checkpoint, on every step's test split and the static tasks.


rule evaluate:
    input:
        model=f"{TIC}/models/{{method}}/{{step}}/model.pt",
        steps_dir=f"{DATA}/steps",
        static_dir=f"{DATA}/static",
    output:
        f"{TIC}/evals/{{method}}/{{step}}.csv",
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/evaluate/{{method}}/{{step}}.log",
    benchmark:
        f"{BENCH}/tic/evaluate/{{method}}/{{step}}.tsv"
    threads: 1
    script:
        "../workflow_scripts/evaluate.py"
