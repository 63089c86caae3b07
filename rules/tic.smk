# The TiC-CLIP study (Garg et al.): one training job per (run, step), one evaluation job per run,
# Table 2, the LR ablation and the figures. Paths and config checks shared by every study: common.smk.
# Every method trains step 0 the same way with the same seed (common random numbers), so runs in
# SHARED_FIRST get a copy of one first-step job's checkpoint instead of training it again.

ruleorder: share_first_step > train_step


rule train_step:
    input:
        unpack(train_inputs),
    output:
        model=f"{TIC}/seed{{seed}}/models/{{run}}/{{step}}/model.pt",
        log=f"{TIC}/seed{{seed}}/models/{{run}}/{{step}}/train_log.csv",
        compute=f"{TIC}/seed{{seed}}/models/{{run}}/{{step}}/compute.json",
        # the step's final AdamW state, which a continuing next step starts from (train.carry_optimizer);
        # kept, so that rerunning a later step alone never reruns this one (1-2 MB: stored row-sparse)
        **({"optimizer": optimizer_path("{run}", "{step}", "{seed}")} if CARRY_OPTIMIZER else {}),
    params:
        run=lambda wildcards: wildcards.run,
        step=lambda wildcards: wildcards.step,
        method=lambda wildcards: RUNS[wildcards.run].method,
        cfg=lambda wildcards: train_job(replicate(config, wildcards.seed), RUNS[wildcards.run], STEPS.index(wildcards.step)),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/seed{{seed}}/train/{{run}}/{{step}}.log",
    benchmark:
        f"{BENCH}/tic/seed{{seed}}/train/{{run}}/{{step}}.tsv"
    resources:
        **RESOURCES["train"],
    threads: config["train"]["threads"]
    script:
        "../workflow_scripts/train_step.py"


rule train_first_step:
    input:
        steps_dir=f"{DATA}/steps",
    output:
        model=first_step_path("model.pt"),
        log=first_step_path("train_log.csv"),
        compute=first_step_path("compute.json"),
        **({"optimizer": first_step_path("optimizer.pt")} if CARRY_OPTIMIZER else {}),
    params:
        run=FIRST_STEP_RUN.name,
        step=STEPS[0],
        method=FIRST_STEP_RUN.method,
        cfg=lambda wildcards: train_job(replicate(config, wildcards.seed), FIRST_STEP_RUN, 0),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/seed{{seed}}/train/{FIRST_STEP_RUN.name}/{STEPS[0]}.log",
    benchmark:
        f"{BENCH}/tic/seed{{seed}}/train/{FIRST_STEP_RUN.name}/{STEPS[0]}.tsv"
    resources:
        **RESOURCES["train"],
    threads: config["train"]["threads"]
    priority: PRIORITY["gate"]
    script:
        "../workflow_scripts/train_step.py"


rule share_first_step:
    input:
        model=first_step_path("model.pt"),
        log=first_step_path("train_log.csv"),
        compute=first_step_path("compute.json"),
        **({"optimizer": first_step_path("optimizer.pt")} if CARRY_OPTIMIZER else {}),
    output:
        model=f"{TIC}/seed{{seed}}/models/{{run}}/{STEPS[0]}/model.pt",
        log=f"{TIC}/seed{{seed}}/models/{{run}}/{STEPS[0]}/train_log.csv",
        compute=f"{TIC}/seed{{seed}}/models/{{run}}/{STEPS[0]}/compute.json",
        **({"optimizer": optimizer_path("{run}", STEPS[0], "{seed}")} if CARRY_OPTIMIZER else {}),
    wildcard_constraints:
        run="|".join(map(re.escape, SHARED_FIRST)) or "$^",
    params:
        method=lambda wildcards: RUNS[wildcards.run].method,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/seed{{seed}}/share_first_step/{{run}}.log",
    benchmark:
        f"{BENCH}/tic/seed{{seed}}/share_first_step/{{run}}.tsv"
    script:
        "../workflow_scripts/share_first_step.py"


# Evaluation: one job per run, writing one file per checkpoint; each checkpoint is evaluated
# on every step's test split and the static tasks. (One process per run rather than per
# checkpoint: importing torch and open_clip costs about 7 s a job on a laptop CPU.)


rule evaluate_run:
    input:
        models=lambda wildcards: [model_path(wildcards.run, s, wildcards.seed) for s in STEPS],
        steps_dir=f"{DATA}/steps",
        static=list(static_dirs().values()),
    output:
        rows=expand(f"{TIC}/seed{{{{seed}}}}/evals/{{{{run}}}}/{{step}}.csv", step=STEPS),
        samples=expand(f"{TIC}/seed{{{{seed}}}}/evals/{{{{run}}}}/{{step}}.samples.parquet", step=STEPS),
    params:
        steps=STEPS,
        scenario=config["data"]["name"],  # the rows' scenario: the benchmark
        static_sets=STATIC_SETS,
        dynamic_tasks=DYNAMIC_TASKS,
        cfg=evaluate_job(config, DYNAMIC_TASKS),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/seed{{seed}}/evaluate/{{run}}.log",
    benchmark:
        f"{BENCH}/tic/seed{{seed}}/evaluate/{{run}}.tsv"
    resources:
        **RESOURCES["evaluate"],
    threads: 1
    script:
        "../workflow_scripts/evaluate.py"


# Paper outputs: TiC-CLIP Table 2, the LR ablation, evaluation-matrix heatmaps, per-step
# curves and the compute-vs-performance figure.


rule tic_table:
    input:
        evals=evals_of(METHODS),
        compute=compute_of(METHODS),
    output:
        html=report(f"{TIC}/table2.html", caption="../report/table2.rst", category="TiC-CLIP",
                    subcategory="Tables", labels={"table": "Table 2", "format": "HTML"}),
        csv=report(f"{TIC}/table2.csv", caption="../report/table2.rst", category="TiC-CLIP",
                   subcategory="Tables", labels={"table": "Table 2", "format": "CSV"}),
        md=f"{TIC}/table2.md",
        tex=f"{TIC}/table2.tex",
        per_step=report(f"{TIC}/per_step.csv", caption="../report/per_step.rst", category="TiC-CLIP",
                        subcategory="Tables", labels={"table": "Per-step scores and compute", "format": "CSV"}),
        rows=f"{TIC}/all_evals.csv",
    params:
        steps=STEPS,
        runs=METHODS,
        chance=CHANCE,  # the chance levels the caption states
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/table.log",
    benchmark:
        f"{BENCH}/tic/table.tsv"
    script:
        "../workflow_scripts/make_table.py"


rule lr_ablation_table:
    input:
        evals=evals_of(ABLATION),
        compute=compute_of(ABLATION),
    output:
        html=report(f"{TIC}/lr_ablation.html", caption="../report/lr_ablation.rst", category="TiC-CLIP",
                    subcategory="Tables", labels={"table": "LR ablation", "format": "HTML"}),
        csv=report(f"{TIC}/lr_ablation.csv", caption="../report/lr_ablation.rst", category="TiC-CLIP",
                   subcategory="Tables", labels={"table": "LR ablation", "format": "CSV"}),
        md=f"{TIC}/lr_ablation.md",
        tex=f"{TIC}/lr_ablation.tex",
    params:
        steps=STEPS,
        runs=ABLATION,
        settings={r: {**config["train"], **RUNS[r].train} for r in ABLATION},
        chance=CHANCE,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/lr_ablation.log",
    benchmark:
        f"{BENCH}/tic/lr_ablation.tsv"
    script:
        "../workflow_scripts/make_lr_ablation.py"


rule tic_figures:
    input:
        rows=f"{TIC}/all_evals.csv",
        table=f"{TIC}/table2.csv",
    output:
        matrices=report(
            expand(f"{TIC}/figures/matrix_{{run}}_{{task}}.png", run=METHODS, task=DYNAMIC_TASKS),
            caption="../report/matrix.rst",
            category="TiC-CLIP",
            subcategory="Evaluation matrices",
        ),
        curves=report(
            expand(f"{TIC}/figures/curves_{{task}}.png", task=DYNAMIC_TASKS),
            caption="../report/curves.rst",
            category="TiC-CLIP",
            subcategory="Per-step curves",
        ),
        compute=report(
            f"{TIC}/figures/compute_vs_performance.png",
            caption="../report/compute.rst",
            category="TiC-CLIP",
        ),
    params:
        steps=STEPS,
        methods=METHODS,
        tasks=DYNAMIC_TASKS,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/figures.log",
    benchmark:
        f"{BENCH}/tic/figures.tsv"
    script:
        "../workflow_scripts/make_figures.py"
