# Shared paths, config checks and input functions. No job logic lives here.
import re

from ticlip_core.data.bucketing import parse_steps
from ticlip_core.methods import available_methods, get_method

RESULTS = config["results"]
DATA = f"{RESULTS}/data/{config['data']['name']}"
TIC = f"{RESULTS}/tic"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

# Checked here, while the DAG is built, so a bad config fails before any job runs.
STEPS = [s.name for s in parse_steps(config["tic"]["steps"])]
METHODS = list(config["tic"]["methods"])
_unknown = sorted(set(METHODS) - set(available_methods()))
if _unknown:
    raise ValueError(
        f"tic.methods: unknown method(s) {', '.join(_unknown)}; "
        f"registered: {', '.join(available_methods())}"
    )
DYNAMIC_TASKS = ["retrieval", "classification"]


wildcard_constraints:
    method="|".join(map(re.escape, METHODS)),
    step="|".join(map(re.escape, STEPS)),
    task="|".join(DYNAMIC_TASKS),


def model_path(method, step):
    return f"{TIC}/models/{method}/{step}/model.pt"


def train_inputs(wildcards):
    """The per-step splits, plus the method's previous checkpoint when it warm-starts."""
    method = get_method(wildcards.method)
    t = STEPS.index(wildcards.step)
    inputs = {"steps_dir": f"{DATA}/steps"}
    if method.warm_start and t > 0:
        inputs["init"] = model_path(wildcards.method, STEPS[t - 1])
    return inputs


def tic_outputs():
    """Every final output of the TiC study: tables and figures."""
    return [
        *expand(f"{TIC}/table2.{{ext}}", ext=["csv", "md", "tex"]),
        f"{TIC}/per_step.csv",
        *expand(f"{TIC}/figures/matrix_{{method}}_{{task}}.png", method=METHODS, task=DYNAMIC_TASKS),
        *expand(f"{TIC}/figures/curves_{{task}}.png", task=DYNAMIC_TASKS),
    ]
