# Paper outputs: TiC-CLIP Table 2, evaluation-matrix heatmaps and per-step curves.


rule tic_table:
    input:
        evals=expand(f"{TIC}/evals/{{method}}/{{step}}.csv", method=METHODS, step=STEPS),
        compute=expand(f"{TIC}/models/{{method}}/{{step}}/compute.json", method=METHODS, step=STEPS),
    output:
        csv=report(f"{TIC}/table2.csv", category="TiC-CLIP", labels={"output": "Table 2 (CSV)"}),
        md=f"{TIC}/table2.md",
        tex=f"{TIC}/table2.tex",
        per_step=f"{TIC}/per_step.csv",
        rows=f"{TIC}/all_evals.csv",
    params:
        steps=STEPS,
        methods=METHODS,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/table.log",
    benchmark:
        f"{BENCH}/tic/table.tsv"
    script:
        "../workflow_scripts/make_table.py"


rule tic_figures:
    input:
        rows=f"{TIC}/all_evals.csv",
    output:
        matrices=report(
            expand(f"{TIC}/figures/matrix_{{method}}_{{task}}.png", method=METHODS, task=DYNAMIC_TASKS),
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
