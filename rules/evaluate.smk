# Evaluation: one job per run, writing one file per checkpoint; each checkpoint is evaluated
# on every step's test split and the static tasks. (One process per run rather than per
# checkpoint: importing torch and open_clip costs about 7 s a job on a laptop CPU.)


rule evaluate_run:
    input:
        models=lambda wildcards: [model_path(wildcards.run, s) for s in STEPS],
        steps_dir=f"{DATA}/steps",
        static=list(static_dirs().values()),
    output:
        expand(f"{TIC}/evals/{{{{run}}}}/{{step}}.csv", step=STEPS),
    params:
        steps=STEPS,
        static_sets=STATIC_SETS,
        dynamic_tasks=DYNAMIC_TASKS,
        cfg=evaluate_job(config, DYNAMIC_TASKS),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/evaluate/{{run}}.log",
    benchmark:
        f"{BENCH}/tic/evaluate/{{run}}.tsv"
    resources:
        **RESOURCES["evaluate"],
    threads: 1
    script:
        "../workflow_scripts/evaluate.py"
