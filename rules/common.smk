# Shared paths, config checks and input functions. No job logic lives here.
import glob
import re
from pathlib import Path

from ticlip_core.data.bucketing import parse_steps
from ticlip_core.data.source import metadata_spec
from ticlip_core.class_labels import dynamic_class_count
from ticlip_core.clclip.methods import available_methods as clclip_methods
from ticlip_core.config_checks import check_config
from ticlip_core.job_config import (FIRST_STEP_RUN, subset, clclip_ablation_job, clclip_base_job, clclip_method_job,
                                    evaluate_job, memclip_data_job, memclip_memory_job, memclip_method_job,
                                    replicate, shared_first_step_runs, train_job)
from ticlip_core.memclip.methods import get_method as memclip_method
from ticlip_core.tic.methods import get_method
from ticlip_core.registry import check_methods
from ticlip_core.resources import job_resources
from ticlip_core.tic.runs import ablation_runs, tic_runs

RESULTS = config["results"]
DATA = f"{RESULTS}/data/{config['data']['name']}"
TIC = f"{RESULTS}/tic"
CLCLIP = f"{RESULTS}/clclip"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
# Training seeds: every training and evaluation job runs once per seed, under <study>/seed<N>/.
REPLICATES = [int(s) for s in config["replicates"]]

# Checked here, while the DAG is built, so a bad config fails before any job runs.
STEPS = [s.name for s in parse_steps(config["tic"]["steps"])]
METHODS = list(config["tic"]["methods"])
check_methods("tic", METHODS, "tic.methods")
check_methods("tic", [m for m in [config["tic"]["lr_ablation"]["method"]] if m], "tic.lr_ablation.method")
RUNS = tic_runs(config)  # every configured method, plus the LR ablation's variants
ABLATION = [r.name for r in ablation_runs(config)]
# Runs whose first step is the plain recipe with the same settings: it is trained once and copied.
SHARED_FIRST = shared_first_step_runs(config, RUNS)
# Whether any run carries AdamW's state across steps: only then do training jobs save it.
CARRY_OPTIMIZER = any({**config["train"], **r.train}["carry_optimizer"] for r in RUNS.values())

check_config(config)  # cross-key checks: split fractions, model names and tags, CL-CLIP method options

# What jobs ask a cluster for (config resources.{train,evaluate,data}); the local executor schedules by cores alone.
RESOURCES = {kind: job_resources(block) for kind, block in config["resources"].items()}
# Synthesis spreads over processes. A local run gives it every core; a cluster run has no such total
# (Snakemake knows at most the submit host's cores), so there it takes resources.data.cpus_per_task.
# Cluster: jobs are submitted (--jobs sets workflow.nodes), or this is a submitted job running on a node.
ON_CLUSTER = workflow.nodes is not None or workflow.remote_exec
PARALLEL_THREADS = config["resources"]["data"]["cpus_per_task"] if ON_CLUSTER else workflow.cores

# Local scheduling on few cores (priorities only order ready jobs): the jobs that take every core
# first, so that none waits behind a one-core job; then CL-CLIP's original model, which gates
# every CL-CLIP and memclip method job; then those long method jobs, before TiC's short steps
# fill the gaps. On a 2-core laptop this keeps both cores busy until the end.
PRIORITY = {"all_cores": 3, "gate": 2, "long": 1}

SOURCE = config["data"]["source"]
if SOURCE == "synthetic":
    METADATA_SPEC = None
    STATIC_SETS = {"synthetic": None}  # the synthetic world's own static set
    DYNAMIC_TASKS = ["retrieval", "classification"]
else:
    METADATA_SPEC = metadata_spec(config["data"])
    STATIC_SETS = {s["name"]: s for s in config["eval"]["static_sets"]}
    if len(STATIC_SETS) != len(config["eval"]["static_sets"]):
        raise ValueError("eval.static_sets: names must be unique")
    DYNAMIC_TASKS = ["retrieval"] + (["classification"] if config["data"]["classification"] else [])
# Chance levels stated in Table 2's caption: the classes of the dynamic classification, the retrieval pools' size.
CHANCE = {"classification_classes": dynamic_class_count(config["data"]) if "classification" in DYNAMIC_TASKS else None,
          "retrieval_pool_size": config["eval"]["retrieval_pool_size"]}


wildcard_constraints:
    run="|".join(map(re.escape, RUNS)),
    step="|".join(map(re.escape, STEPS)),
    task="|".join(DYNAMIC_TASKS),
    static_set="|".join(map(re.escape, STATIC_SETS)) or "$^",
    ablation="length|num_pseudo",
    benchmark=r"[A-Za-z][A-Za-z0-9_]*",
    seed=r"\d+",


def metadata_files():
    """The metadata tables named by ``data.metadata`` that exist now (globs expanded).

    A pattern matching nothing is not an error here, so that a preset with placeholder paths
    still dry-runs; the manifest job fails naming it.
    """
    if not config["data"]["metadata"]:
        raise ValueError("data.metadata: data.source img2dataset needs at least one metadata table")
    return sorted({f for pattern in config["data"]["metadata"] for f in glob.glob(pattern)})


def static_dirs():
    """Shard folder of every static evaluation set, by name."""
    return {name: f"{DATA}/static/{name}" for name in STATIC_SETS}


def data_report_inputs(wildcards):
    """Bucketing outputs, plus the manifest builder's summary for downloaded data."""
    inputs = {"manifest": f"{DATA}/manifest.parquet", "bucket_summary": f"{DATA}/bucket_summary.json"}
    if SOURCE != "synthetic":
        inputs["prepare_summary"] = f"{DATA}/metadata/summary.json"
    return inputs


# ----- The TiC-CLIP study (rules/tic.smk)


def model_path(run, step, seed="{seed}"):
    return f"{TIC}/seed{seed}/models/{run}/{step}/model.pt"


def first_step_path(name, seed="{seed}"):
    """The shared first step's file ``name`` (model.pt, train_log.csv, compute.json)."""
    return f"{TIC}/seed{seed}/first_step/{STEPS[0]}/{name}"


def optimizer_path(run, step, seed="{seed}"):
    """Where a step's final optimizer state is saved: beside its checkpoint."""
    return f"{TIC}/seed{seed}/models/{run}/{step}/optimizer.pt"


def train_inputs(wildcards):
    """The per-step splits, plus the run's previous checkpoint when its method warm-starts, and that
    step's optimizer state when the run carries it over (``train.carry_optimizer``)."""
    run = RUNS[wildcards.run]
    method = get_method(run.method)
    t = STEPS.index(wildcards.step)
    inputs = {"steps_dir": f"{DATA}/steps"}
    if method.warm_start and t > 0:
        inputs["init"] = model_path(wildcards.run, STEPS[t - 1], wildcards.seed)
        if {**config["train"], **run.train}["carry_optimizer"]:
            inputs["init_optimizer"] = optimizer_path(wildcards.run, STEPS[t - 1], wildcards.seed)
    return inputs


def evals_of(runs, ext="csv"):
    """Every evaluation CSV of ``runs`` (one per checkpoint and seed; ``ext`` samples.parquet: their entries)."""
    return expand(f"{TIC}/seed{{seed}}/evals/{{run}}/{{step}}.{ext}", seed=REPLICATES, run=runs, step=STEPS)


def compute_of(runs):
    """Every ``compute.json`` of ``runs`` (one per training step and seed)."""
    return expand(f"{TIC}/seed{{seed}}/models/{{run}}/{{step}}/compute.json", seed=REPLICATES, run=runs, step=STEPS)


def tic_outputs():
    """Every final output of the TiC study: tables and figures (none when tic.enabled is false)."""
    if not config["tic"]["enabled"]:
        return []
    outputs = [
        *expand(f"{DATA}/report/data_report.{{ext}}", ext=["csv", "md"]),
        f"{DATA}/report/samples_per_year.png",
        *expand(f"{TIC}/table2.{{ext}}", ext=["csv", "md", "tex"]),
        f"{TIC}/per_step.csv",
        *expand(f"{TIC}/figures/matrix_{{run}}_{{task}}.png", run=METHODS, task=DYNAMIC_TASKS),
        *expand(f"{TIC}/figures/curves_{{task}}.png", task=DYNAMIC_TASKS),
        f"{TIC}/figures/compute_vs_performance.png",
    ]
    if ABLATION:
        outputs += expand(f"{TIC}/lr_ablation.{{ext}}", ext=["csv", "md", "tex"])
    return outputs


# Training: one job per (run, step); a warm-starting method depends on its previous step.


# ----- The CL-CLIP study (rules/clclip.smk)
CLCLIP_ON = config["clclip"]["enabled"]
CLCLIP_SETTINGS = list(config["clclip"]["settings"]) if CLCLIP_ON else []
if CLCLIP_ON:
    check_methods("clclip", config["clclip"]["methods"], "clclip.methods", CLCLIP_SETTINGS)
CLCLIP_ABLATIONS = ["length", "num_pseudo"] if "vr_lwf" in config["clclip"]["methods"] else []
# Tables III/IV: the methods in OST/MST; V-VIII: VR-LwF-WM ablations (V, VI in OST; VII, VIII in MST)
CLCLIP_TABLES = [
    name
    for setting, names in (("ost", ["table3_ost", "table5_ost_length", "table6_ost_num_pseudo"]),
                           ("mst", ["table4_mst", "table7_mst_length", "table8_mst_num_pseudo"]))
    if setting in CLCLIP_SETTINGS
    for name in (names if CLCLIP_ABLATIONS else names[:1])
]


def clclip_methods_in(setting):
    """The original model and every configured method that supports ``setting`` (Joint-FT: MST only)."""
    return ["original"] + [m for m in config["clclip"]["methods"] if m in clclip_methods(setting)]


def clclip_model_inputs(wildcards):
    """The prepared task, and the base model the pipeline trains when none is pretrained."""
    inputs = {"task": f"{CLCLIP}/task"}
    if config["clclip"]["model"]["pretrained"] is None:
        inputs["base"] = f"{CLCLIP}/base/model.pt"
    return inputs


def clclip_run_outputs(ext="csv"):
    """One rows file per method (the original model included) and seed, covering every setting it runs
    in (``ext``: or its entries, compute records)."""
    return [f"{CLCLIP}/seed{s}/runs/{m}.{ext}" for s in REPLICATES for m in clclip_all_methods()]


def clclip_all_methods():
    """Every method (the original model included) of every configured setting, once."""
    return list(dict.fromkeys(m for s in CLCLIP_SETTINGS for m in clclip_methods_in(s)))


def clclip_ablation_outputs(ext="csv"):
    """One rows file (``ext``: or its entries, compute records) per ablation and seed."""
    return [f"{CLCLIP}/seed{s}/ablations/{a}.{ext}" for s in REPLICATES for a in CLCLIP_ABLATIONS]


def clclip_outputs():
    """Every final output of the CL-CLIP study (none when clclip.enabled is false)."""
    if not CLCLIP_ON:
        return []
    return [*expand(f"{CLCLIP}/{{table}}.{{ext}}", table=CLCLIP_TABLES, ext=["csv", "md", "tex"]),
            f"{CLCLIP}/fig4_mst_sessions.png"]


# ----- The memclip study (rules/memclip.smk)
MEMCLIP = f"{RESULTS}/memclip"
MEMCLIP_ON = config["memclip"]["enabled"]
MEMCLIP_BENCHMARKS = [b for b, block in config["memclip"]["benchmarks"].items() if block["enabled"]] if MEMCLIP_ON else []
MEMCLIP_METHODS = list(config["memclip"]["methods"]) if MEMCLIP_ON else []
if MEMCLIP_ON:
    check_methods("memclip", MEMCLIP_METHODS, "memclip.methods",
                  {config["memclip"]["benchmarks"][b]["scenario"] for b in MEMCLIP_BENCHMARKS})


def memclip_methods_in(benchmark):
    """The configured memclip methods that support ``benchmark``'s scenario (the class-incremental
    baselines skip a domain-incremental benchmark, CaSSLe a class-incremental one)."""
    scenario = config["memclip"]["benchmarks"][benchmark]["scenario"]
    return [m for m in MEMCLIP_METHODS if memclip_method(m).supports(scenario)]


def memclip_run_inputs(wildcards):
    """The prepared benchmark, its memory plan (replaying methods), and the CL-CLIP study's
    original CLIP when no starting model is pretrained."""
    inputs = {"data": f"{MEMCLIP}/{wildcards.benchmark}/data"}
    if memclip_method(wildcards.method).uses_memory:
        inputs["memory"] = f"{MEMCLIP}/{wildcards.benchmark}/memory.json"
    if config["memclip"]["model"]["pretrained"] is None:
        inputs["base"] = f"{CLCLIP}/base/model.pt"
    return inputs


def memclip_run_outputs(ext="csv"):
    """One rows file (``ext``: or its entries, compute records) per (seed, benchmark, method)."""
    return [f"{MEMCLIP}/seed{s}/{b}/runs/{m}.{ext}" for s in REPLICATES for b in MEMCLIP_BENCHMARKS
            for m in memclip_methods_in(b)]


def memclip_outputs():
    """Every final output of the memclip study (none when memclip.enabled is false)."""
    if not MEMCLIP_ON:
        return []
    return [*expand(f"{MEMCLIP}/{{benchmark}}_table.{{ext}}", benchmark=MEMCLIP_BENCHMARKS, ext=["csv", "md", "tex", "html"]),
            f"{MEMCLIP}/fig1_last_vs_memory.png",
            *expand(f"{MEMCLIP}/{{benchmark}}_accuracy_curves.png", benchmark=MEMCLIP_BENCHMARKS)]


# ----- Uncertainty and findings (rules/findings.smk)
UNCERTAINTY = dict(config["uncertainty"])  # draws, seed, level
# What the memclip tables and claims read: benchmarks' scenarios, methods and memory sizes.
MEMCLIP_TABLES_READ = {
    "benchmarks": {b: config["memclip"]["benchmarks"][b]["scenario"] for b in MEMCLIP_BENCHMARKS},
    "methods": {b: memclip_methods_in(b) for b in MEMCLIP_BENCHMARKS},
    "memory_sizes": {b: config["memclip"]["benchmarks"][b]["memory_sizes"] for b in MEMCLIP_BENCHMARKS},
    "memoryless": [m for m in MEMCLIP_METHODS if not memclip_method(m).uses_memory],
}
FINDINGS_STUDIES = [s for s, on in (("tic", config["tic"]["enabled"]), ("clclip", CLCLIP_ON), ("memclip", MEMCLIP_ON)) if on]
# The config keys the claims are built from (which rows and settings they compare).
CLAIMS_CONFIG = subset(config, ["tic.lr_ablation", "train.warmup_later_steps", "train.max_lr_decay", "clclip.settings",
                                "clclip.methods", "clclip.variants", "clclip.ablations", "memclip.benchmarks"])


def findings_outputs():
    """The findings report, and each study's cell intervals."""
    return [*expand(f"{RESULTS}/findings.{{ext}}", ext=["md", "csv", "html"]),
            *[f"{RESULTS}/{s}/uncertainty/intervals.csv" for s in FINDINGS_STUDIES]]
