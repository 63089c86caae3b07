"""What a training job asks SLURM for: the sbatch command line snakemake-executor-plugin-slurm
builds from this repo's config (its own functions, no cluster needed), and the paper-scale DAG
as `snakemake -n --profile profiles/slurm` plans it."""
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from snakemake.iocontainers import ResourceList
from snakemake.utils import validate
from snakemake_executor_plugin_slurm import ExecutorSettings
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from ticlip_core.resources import job_resources

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "ticlip_core/schemas/config.schema.yaml")
PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())


def config(name: str) -> dict:
    cfg = yaml.safe_load((ROOT / name).read_text())
    validate(cfg, SCHEMA)
    return cfg


def train_job(cfg: dict, defaults: dict | None = None):
    """A train_step job as the plugin sees it: the profile's default-resources, overridden by the
    rule's (rules/tic.smk: **RESOURCES["train"]), and the rule's threads."""
    resources = {**(PROFILE["default-resources"] if defaults is None else defaults),
                 **job_resources(cfg["resources"]["train"])}
    return type("Job", (), {"resources": ResourceList(fromdict=resources), "threads": cfg["train"]["threads"]})()


def sbatch(job) -> str:
    """The plugin's sbatch command line for ``job`` (its run_job: get_submit_command + set_gres_string)."""
    params = {"run_uuid": "RUN", "slurm_logfile": "LOG", "comment_str": "rule_train_step_wildcards_sequential_2017",
              "account": " -A myproject", "partition": " -p gpu", "workdir": "/work"}
    call = get_submit_command(job, params, settings=ExecutorSettings()) + set_gres_string(job)
    return " ".join(call.split())  # an empty account or partition leaves double spaces


HEAD = ("sbatch --parsable --job-name RUN --output LOG --export=ALL --comment rule_train_step_wildcards_sequential_2017 "
        "-A myproject -p gpu")


def test_resources_defaults_are_the_embedded_defaults_and_ask_no_gpu():
    partial = {}
    validate(partial, SCHEMA)
    assert partial["resources"] == yaml.safe_load((ROOT / "config.yaml").read_text())["resources"]
    assert partial["resources"]["train"]["gpu"] == partial["resources"]["evaluate"]["gpu"] == 0
    assert job_resources(partial["resources"]["train"]) == {"mem_mb": 4000, "runtime": 60}  # no GPU keys at all


def test_default_training_job_is_a_cpu_job_of_train_threads():
    """The embedded default (a CPU-only laptop's study) asks no GPU: --cpus-per-task = train.threads."""
    cfg = config("config.yaml")
    assert cfg["resources"]["train"]["gpu"] == 0
    assert sbatch(train_job(cfg)) == f"{HEAD} -t 60 --mem 4000 --ntasks=1 --cpus-per-task=1 -D /work"


def test_paper_preset_training_job_asks_eight_gpus():
    cfg = config("configs/tic-datacomp-medium.yaml")
    assert sbatch(train_job(cfg)) == f"{HEAD} -t 720 --mem 256000 --cpus-per-gpu=8 -D /work --gpus=8"


def test_gpu_model_goes_into_the_gpus_flag():
    cfg = copy.deepcopy(config("configs/tic-datacomp-medium.yaml"))
    cfg["resources"]["train"].update(gpu=4, gpu_model="a100", cpus_per_gpu=12, mem_mb=128000, runtime=90)
    assert sbatch(train_job(cfg)) == f"{HEAD} -t 90 --mem 128000 --cpus-per-gpu=12 -D /work --gpus=a100:4"


def test_profile_sets_no_cpus_per_task_default_because_it_would_replace_cpus_per_gpu():
    assert "cpus_per_task" not in PROFILE["default-resources"]
    cfg = config("configs/tic-datacomp-medium.yaml")
    call = sbatch(train_job(cfg, defaults={**PROFILE["default-resources"], "cpus_per_task": 4}))
    assert "--cpus-per-task=4" in call and "--cpus-per-gpu" not in call


def test_profile_leaves_partition_and_account_as_placeholders():
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    assert PROFILE["executor"] == "slurm" and PROFILE["rerun-incomplete"] is True
    assert {"mem_mb", "runtime"} <= set(PROFILE["default-resources"])
    # unset (a fake account would fail the plugin's sacctmgr check), but documented in place
    assert not {"slurm_partition", "slurm_account"} & set(PROFILE["default-resources"])
    assert re.search(r"#\s*slurm_partition:", text) and re.search(r"#\s*slurm_account:", text)


def _dry_run_jobs(out: str) -> list[tuple[str, dict, dict]]:
    """(rule, wildcards, resources) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        if not (m := re.search(r"^(?:local)?rule (\w+):$", block, re.M)):
            continue
        fields = {k: v for k, v in re.findall(r"^    (\w+): (.*)$", block, re.M)}
        parse = lambda s: dict(kv.split("=", 1) for kv in s.split(", ")) if s else {}
        jobs.append((m.group(1), parse(fields.get("wildcards", "")), parse(fields.get("resources", ""))))
    return jobs


def test_paper_scale_dry_run_plans_49_gpu_training_jobs(tmp_path):
    """TiC-DataComp medium on SLURM, planned without a cluster: no sbatch, squeue or sinfo on PATH.
    8 methods x 7 steps, the first step trained once for all: 1 + 8 x 6 GPU training jobs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "which").symlink_to(shutil.which("which"))  # the plugin looks for sacct with `which` on import
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(ROOT / "profiles/slurm"),
         "--configfile", str(ROOT / "configs/tic-datacomp-medium.yaml"), "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}"})
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = config("configs/tic-datacomp-medium.yaml")
    jobs = _dry_run_jobs(res.stdout)
    train = [(w, r) for rule, w, r in jobs if rule in ("train_step", "train_first_step")]
    steps, methods = cfg["tic"]["steps"], cfg["tic"]["methods"]
    assert len(train) == 1 + (len(steps) - 1) * len(methods) == 49
    assert {(w["run"], w["step"]) for w, _ in train if "run" in w} == {(m, s) for m in methods for s in steps[1:]}
    assert {w["seed"] for w, _ in train} == {"0"}  # one replicate seed
    assert sum(1 for rule, _, _ in jobs if rule == "share_first_step") == len(methods)
    want = cfg["resources"]["train"]
    assert want["gpu"] >= 1
    for _, r in train:
        assert (r["gpu"], r["cpus_per_gpu"], r["mem_mb"], r["runtime"]) == tuple(
            str(want[k]) for k in ("gpu", "cpus_per_gpu", "mem_mb", "runtime")), r
        assert "gpu_model" not in r  # null in the preset: any GPU
    evaluate = [r for rule, _, r in jobs if rule == "evaluate_run"]
    assert len(evaluate) == 8 and all(r["gpu"] == "1" for r in evaluate)
    assert all("gpu" not in r for rule, _, r in jobs if rule not in ("train_step", "train_first_step", "evaluate_run"))
    # the resources the dry run shows become this sbatch line
    resources = {k: int(v) for k, v in train[0][1].items() if k in ("gpu", "cpus_per_gpu", "mem_mb", "runtime")}
    job = type("Job", (), {"resources": ResourceList(fromdict=resources), "threads": 1})()
    assert sbatch(job) == f"{HEAD} -t 720 --mem 256000 --cpus-per-gpu=8 -D /work --gpus=8"
