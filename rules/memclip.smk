# The memclip study (memory-efficient continual learning with CLIP: GCL, GDRO): per benchmark,
# its prepared data, the fixed memory's plan, one job per method (every memory size, its grid
# chosen on validation), then the tables and figures of every benchmark.


rule memclip_data:
    output:
        directory(f"{MEMCLIP}/{{benchmark}}/data"),
    params:
        cfg=lambda wildcards: memclip_data_job(config, wildcards.benchmark),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/memclip/{{benchmark}}/data.log",
    benchmark:
        f"{BENCH}/memclip/{{benchmark}}/data.tsv"
    resources:
        **RESOURCES["data"],
    script:
        "../workflow_scripts/memclip_data.py"


# Which train samples the memory holds while each task trains, for every memory size; written
# out (keys per task and per class) so a reader can audit it. Shared by every replaying method.
rule memclip_memory:
    input:
        data=f"{MEMCLIP}/{{benchmark}}/data",
    output:
        f"{MEMCLIP}/{{benchmark}}/memory.json",
    params:
        cfg=lambda wildcards: memclip_memory_job(config, wildcards.benchmark),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/memclip/{{benchmark}}/memory.log",
    benchmark:
        f"{BENCH}/memclip/{{benchmark}}/memory.tsv"
    script:
        "../workflow_scripts/memclip_memory.py"


rule memclip_run:
    input:
        unpack(memclip_run_inputs),
    output:
        rows=f"{MEMCLIP}/seed{{seed}}/{{benchmark}}/runs/{{method}}.csv",
        chosen=f"{MEMCLIP}/seed{{seed}}/{{benchmark}}/runs/{{method}}.json",
        compute=f"{MEMCLIP}/seed{{seed}}/{{benchmark}}/runs/{{method}}.compute.json",
        samples=f"{MEMCLIP}/seed{{seed}}/{{benchmark}}/runs/{{method}}.samples.parquet",
    wildcard_constraints:
        method=r"[A-Za-z0-9_]+",  # so runs/<m>.compute.json is never the chosen file of a method "<m>.compute"
    params:
        cfg=lambda wildcards: memclip_method_job(replicate(config, wildcards.seed), wildcards.benchmark, wildcards.method),
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/memclip/seed{{seed}}/{{benchmark}}/runs/{{method}}.log",
    benchmark:
        f"{BENCH}/memclip/seed{{seed}}/{{benchmark}}/runs/{{method}}.tsv"
    resources:
        **RESOURCES["train"],
    threads: config["memclip"]["train"]["threads"]
    priority: PRIORITY["long"]
    script:
        "../workflow_scripts/memclip_run.py"


# Per benchmark a table (method x memory size: Last, Avg, Forgetting, chosen hyperparameters) as
# CSV, Markdown, LaTeX and HTML; Figure 1 (Last against memory size, a panel per benchmark); and
# the A_t curves of every method per benchmark.
rule memclip_tables:
    input:
        runs=memclip_run_outputs(),
    output:
        **{f"{b}_html": report(f"{MEMCLIP}/{b}_table.html", caption="../report/memclip_table.rst",
                               category="memclip", subcategory="Tables", labels={"benchmark": b})
           for b in MEMCLIP_BENCHMARKS},
        tables=expand(f"{MEMCLIP}/{{benchmark}}_table.{{ext}}", benchmark=MEMCLIP_BENCHMARKS, ext=["csv", "md", "tex"]),
        rows=f"{MEMCLIP}/all_rows.csv",
        figure1=report(f"{MEMCLIP}/fig1_last_vs_memory.png", caption="../report/memclip_fig1.rst",
                       category="memclip", subcategory="Figures", labels={"figure": "Fig. 1: accuracy after the last task vs memory size"}),
        curves=report(expand(f"{MEMCLIP}/{{benchmark}}_accuracy_curves.png", benchmark=MEMCLIP_BENCHMARKS),
                      caption="../report/memclip_curves.rst", category="memclip", subcategory="Figures"),
    params:
        benchmarks={b: config["memclip"]["benchmarks"][b]["scenario"] for b in MEMCLIP_BENCHMARKS},
        methods={b: memclip_methods_in(b) for b in MEMCLIP_BENCHMARKS},
        memoryless=[m for m in MEMCLIP_METHODS if not memclip_method(m).uses_memory],
        memory_sizes={b: config["memclip"]["benchmarks"][b]["memory_sizes"] for b in MEMCLIP_BENCHMARKS},
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/memclip/tables.log",
    benchmark:
        f"{BENCH}/memclip/tables.tsv"
    script:
        "../workflow_scripts/memclip_tables.py"
