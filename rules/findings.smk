# Uncertainty and findings (docs/metrics.md, "Uncertainty", "Findings"): per study, every table cell
# of every seed and its paired bootstrap over test samples; then every paper's claims checked against
# them into results/findings.{csv,md,html}. Paths, claims' inputs: common.smk.


rule tic_uncertainty:
    input:
        rows=evals_of(list(RUNS)),
        samples=evals_of(list(RUNS), "samples.parquet"),
        compute=compute_of(list(RUNS)),
    output:
        cells=f"{TIC}/uncertainty/cells.csv",
        draws=f"{TIC}/uncertainty/draws.parquet",
        intervals=report(f"{TIC}/uncertainty/intervals.csv", caption="../report/intervals.rst",
                         category="Findings", labels={"study": "TiC-CLIP"}),
    params:
        study="tic",
        part="evals",
        tables={"steps": STEPS, "methods": METHODS, "ablation": ABLATION, "chance": CHANCE,
                "settings": {r: {**config["train"], **RUNS[r].train} for r in ABLATION}},
        **UNCERTAINTY,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/tic/uncertainty.log",
    benchmark:
        f"{BENCH}/tic/uncertainty.tsv"
    resources:
        **RESOURCES["data"],
    threads: PARALLEL_THREADS  # draws split over processes (same cells for any number)
    script:
        "../workflow_scripts/uncertainty.py"


rule clclip_uncertainty:
    input:
        rows=clclip_run_outputs() + clclip_ablation_outputs(),
        samples=clclip_run_outputs("samples.parquet") + clclip_ablation_outputs("samples.parquet"),
        compute=clclip_run_outputs("compute.json"),
        ablation_compute=clclip_ablation_outputs("compute.json"),
    output:
        cells=f"{CLCLIP}/uncertainty/cells.csv",
        draws=f"{CLCLIP}/uncertainty/draws.parquet",
        intervals=report(f"{CLCLIP}/uncertainty/intervals.csv", caption="../report/intervals.rst",
                         category="Findings", labels={"study": "CL-CLIP"}),
    params:
        study="clclip",
        part="runs",
        tables={"settings": CLCLIP_SETTINGS},
        **UNCERTAINTY,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/clclip/uncertainty.log",
    benchmark:
        f"{BENCH}/clclip/uncertainty.tsv"
    resources:
        **RESOURCES["data"],
    threads: PARALLEL_THREADS  # draws split over processes (same cells for any number)
    script:
        "../workflow_scripts/uncertainty.py"


rule memclip_uncertainty:
    input:
        rows=memclip_run_outputs(),
        samples=memclip_run_outputs("samples.parquet"),
    output:
        cells=f"{MEMCLIP}/uncertainty/cells.csv",
        draws=f"{MEMCLIP}/uncertainty/draws.parquet",
        intervals=report(f"{MEMCLIP}/uncertainty/intervals.csv", caption="../report/intervals.rst",
                         category="Findings", labels={"study": "memclip"}),
    params:
        study="memclip",
        part="runs",
        tables=MEMCLIP_TABLES_READ,
        **UNCERTAINTY,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/memclip/uncertainty.log",
    benchmark:
        f"{BENCH}/memclip/uncertainty.tsv"
    resources:
        **RESOURCES["data"],
    threads: PARALLEL_THREADS  # draws split over processes (same cells for any number)
    script:
        "../workflow_scripts/uncertainty.py"


rule findings:
    input:
        cells=[f"{RESULTS}/{s}/uncertainty/cells.csv" for s in FINDINGS_STUDIES],
        draws=[f"{RESULTS}/{s}/uncertainty/draws.parquet" for s in FINDINGS_STUDIES],
    output:
        md=f"{RESULTS}/findings.md",
        csv=f"{RESULTS}/findings.csv",
        html=report(f"{RESULTS}/findings.html", caption="../report/findings.rst", category="Findings",
                    labels={"report": "claims"}),
    params:
        studies=FINDINGS_STUDIES,
        cfg=CLAIMS_CONFIG,
        memclip_methods=MEMCLIP_TABLES_READ["methods"],
        memoryless=MEMCLIP_TABLES_READ["memoryless"],
        replicates=REPLICATES,
        **UNCERTAINTY,
    conda:
        "../envs/ticlip.yaml"
    log:
        f"{LOGS}/findings.log",
    benchmark:
        f"{BENCH}/findings.tsv"
    script:
        "../workflow_scripts/findings.py"
