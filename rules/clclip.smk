# The CL-CLIP study (Ding et al.): original model, update task, one job per method
# (both settings, every variant, its hyperparameter grid), the VR-LwF ablations, tables and Fig. 4.


rule clclip_base_pool:
    output:
        directory(f"{CLCLIP}/base_pool"),
    params:
        samples=config["clclip"]["base"]["pool_samples"],
        scene_fraction=config["clclip"]["base"]["pool_scene_fraction"],
        render_size=config["clclip"]["data"]["synthetic"]["render_size"],
        seed=config["seed"],
        model=config["clclip"]["model"]["name"],
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/clclip/base_pool.log",
    benchmark:
        f"{BENCH}/clclip/base_pool.tsv"
    resources:
        **RESOURCES["data"],
    threads: PARALLEL_THREADS
    priority: PRIORITY["all_cores"]
    script:
        "../workflow_scripts/clclip_base_pool.py"


rule clclip_base:
    input:
        pool=f"{CLCLIP}/base_pool",
    output:
        model=f"{CLCLIP}/base/model.pt",
        log=f"{CLCLIP}/base/train_log.csv",
        compute=f"{CLCLIP}/base/compute.json",
    params:
        cfg=clclip_base_job(config),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/clclip/base.log",
    benchmark:
        f"{BENCH}/clclip/base.tsv"
    resources:
        **RESOURCES["train"],
    threads: config["train"]["threads"]
    priority: PRIORITY["gate"]
    script:
        "../workflow_scripts/clclip_base.py"


rule clclip_task:
    output:
        directory(f"{CLCLIP}/task"),
    params:
        data=subset(config["clclip"]["data"], ["source", config["clclip"]["data"]["source"]]),
        seed=config["seed"],
        model=config["clclip"]["model"]["name"],
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/clclip/task.log",
    benchmark:
        f"{BENCH}/clclip/task.tsv"
    resources:
        **RESOURCES["data"],
    script:
        "../workflow_scripts/clclip_task.py"


rule clclip_run:
    input:
        unpack(clclip_model_inputs),
    output:
        rows=f"{CLCLIP}/seed{{seed}}/runs/{{method}}.csv",
        chosen=f"{CLCLIP}/seed{{seed}}/runs/{{method}}.json",
        # one record per (setting, variant) of the chosen value: samples, MACs, extra MACs, seconds,
        # and the MACs of the whole hyperparameter search (ticlip_core/clclip/compute.py)
        compute=f"{CLCLIP}/seed{{seed}}/runs/{{method}}.compute.json",
        # the per-sample entries behind every accuracy/recall row, for bootstrap intervals (ticlip_core/samples.py)
        samples=f"{CLCLIP}/seed{{seed}}/runs/{{method}}.samples.parquet",
    wildcard_constraints:
        method=r"[A-Za-z0-9_]+",  # so runs/<m>.compute.json is never the chosen file of a method "<m>.compute"
    params:
        settings=lambda wildcards: [s for s in CLCLIP_SETTINGS if wildcards.method in clclip_methods_in(s)],
        cfg=lambda wildcards: clclip_method_job(replicate(config, wildcards.seed), wildcards.method),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/clclip/seed{{seed}}/runs/{{method}}.log",
    benchmark:
        f"{BENCH}/clclip/seed{{seed}}/runs/{{method}}.tsv"
    resources:
        **RESOURCES["train"],
    threads: config["clclip"]["train"]["threads"]
    priority: PRIORITY["long"]
    script:
        "../workflow_scripts/clclip_run.py"


rule clclip_ablation:
    input:
        unpack(clclip_model_inputs),
        steps_dir=f"{DATA}/steps",
    output:
        rows=f"{CLCLIP}/seed{{seed}}/ablations/{{ablation}}.csv",
        chosen=f"{CLCLIP}/seed{{seed}}/ablations/{{ablation}}.json",
        compute=f"{CLCLIP}/seed{{seed}}/ablations/{{ablation}}.compute.json",  # as clclip_run's, one record per row
        samples=f"{CLCLIP}/seed{{seed}}/ablations/{{ablation}}.samples.parquet",  # as clclip_run's
    params:
        settings=CLCLIP_SETTINGS,
        cfg=lambda wildcards: clclip_ablation_job(replicate(config, wildcards.seed), wildcards.ablation),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/clclip/seed{{seed}}/ablations/{{ablation}}.log",
    benchmark:
        f"{BENCH}/clclip/seed{{seed}}/ablations/{{ablation}}.tsv"
    resources:
        **RESOURCES["train"],
    threads: config["clclip"]["train"]["threads"]
    priority: PRIORITY["long"]
    script:
        "../workflow_scripts/clclip_ablation.py"


# Tables III-VIII: each rendered as HTML in the report (with its caption) and as CSV, Markdown and
# LaTeX, with compute columns from the method and ablation jobs' compute records.
rule clclip_tables:
    input:
        runs=clclip_run_outputs(),
        ablations=clclip_ablation_outputs(),
        compute=clclip_run_outputs("compute.json"),
        ablation_compute=clclip_ablation_outputs("compute.json"),
    output:
        **{table: report(f"{CLCLIP}/{table}.html", caption=f"../report/clclip_{table}.rst", category="CL-CLIP",
                         subcategory="Tables", labels={"table": table, "format": "HTML"})
           for table in CLCLIP_TABLES},
        csv=report(expand(f"{CLCLIP}/{{table}}.csv", table=CLCLIP_TABLES), caption="../report/clclip_csv.rst",
                   category="CL-CLIP", subcategory="Tables (CSV)"),
        md=expand(f"{CLCLIP}/{{table}}.md", table=CLCLIP_TABLES),
        tex=expand(f"{CLCLIP}/{{table}}.tex", table=CLCLIP_TABLES),
        rows=f"{CLCLIP}/all_rows.csv",
        figure=report(f"{CLCLIP}/fig4_mst_sessions.png", caption="../report/clclip_fig4.rst", category="CL-CLIP",
                      subcategory="Figures", labels={"figure": "Fig. 4: UT-Acc and ZS-Acc per MST session"}),
    params:
        settings=CLCLIP_SETTINGS,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/clclip/tables.log",
    benchmark:
        f"{BENCH}/clclip/tables.tsv"
    script:
        "../workflow_scripts/clclip_tables.py"
