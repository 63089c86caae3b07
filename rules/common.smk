# Shared paths, config checks and input functions. No job logic lives here.
import re

from ticlip_core.data.bucketing import parse_steps
from ticlip_core.methods import available_methods, get_method
from ticlip_core.runs import ablation_runs, tic_runs

RESULTS = config["results"]
DATA = f"{RESULTS}/data/{config['data']['name']}"
TIC = f"{RESULTS}/tic"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

# Checked here, while the DAG is built, so a bad config fails before any job runs.
STEPS = [s.name for s in parse_steps(config["tic"]["steps"])]
METHODS = list(config["tic"]["methods"])
_named = METHODS + [m for m in [config["tic"]["lr_ablation"]["method"]] if m]
_unknown = sorted(set(_named) - set(available_methods()))
if _unknown:
    raise ValueError(
        f"tic.methods / tic.lr_ablation.method: unknown method(s) {', '.join(_unknown)}; "
        f"registered: {', '.join(available_methods())}"
    )
RUNS = tic_runs(config)  # every configured method, plus the LR ablation's variants
ABLATION = [r.name for r in ablation_runs(config)]
DYNAMIC_TASKS = ["retrieval", "classification"]


wildcard_constraints:
    run="|".join(map(re.escape, RUNS)),
    step="|".join(map(re.escape, STEPS)),
    task="|".join(DYNAMIC_TASKS),


def model_path(run, step):
    return f"{TIC}/models/{run}/{step}/model.pt"


def train_inputs(wildcards):
    """The per-step splits, plus the run's previous checkpoint when its method warm-starts."""
    method = get_method(RUNS[wildcards.run].method)
    t = STEPS.index(wildcards.step)
    inputs = {"steps_dir": f"{DATA}/steps"}
    if method.warm_start and t > 0:
        inputs["init"] = model_path(wildcards.run, STEPS[t - 1])
    return inputs


def evals_of(runs):
    """Every evaluation CSV of ``runs`` (one per checkpoint)."""
    return expand(f"{TIC}/evals/{{run}}/{{step}}.csv", run=runs, step=STEPS)


def compute_of(runs):
    """Every ``compute.json`` of ``runs`` (one per training step)."""
    return expand(f"{TIC}/models/{{run}}/{{step}}/compute.json", run=runs, step=STEPS)


def tic_outputs():
    """Every final output of the TiC study: tables and figures."""
    outputs = [
        *expand(f"{TIC}/table2.{{ext}}", ext=["csv", "md", "tex"]),
        f"{TIC}/per_step.csv",
        *expand(f"{TIC}/figures/matrix_{{run}}_{{task}}.png", run=METHODS, task=DYNAMIC_TASKS),
        *expand(f"{TIC}/figures/curves_{{task}}.png", task=DYNAMIC_TASKS),
        f"{TIC}/figures/compute_vs_performance.png",
    ]
    if ABLATION:
        outputs += expand(f"{TIC}/lr_ablation.{{ext}}", ext=["csv", "md", "tex"])
    return outputs
