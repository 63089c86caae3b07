"""The memclip block of the config: bad values fail while the DAG is built, naming the key; the
paper-scale presets (CIFAR-100, ImageNet, DomainNet) build their whole DAG on placeholder paths."""
import sys
from pathlib import Path

import yaml
from conftest import run_together
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "ticlip_core/schemas/config.schema.yaml"

BAD = {
    "unknown method": ("memclip:\n  methods: [zero_shot, nope]\n", "memclip.methods: unknown memclip method(s) nope"),
    "grid key": ("memclip:\n  grids: {finetune: {tau: [0.1]}}\n",
                 "memclip.grids.finetune: ['tau'] are neither lr, epochs nor options of finetune"),
    "option": ("memclip:\n  method_options: {gdro: {lamda: 1.0}}\n", "unknown option(s) 'lamda'"),
    "starting model": ("memclip:\n  model: {name: ticlip-vit-micro}\n",
                       "memclip.model: with pretrained null the starting model is the CL-CLIP study's original CLIP"),
    "tasks": ("memclip:\n  benchmarks: {class_il: {num_tasks: 3}}\n",
              "20 classes (synthetic.num_classes) cannot be cut into 3 equal tasks"),
    "domain": ("memclip:\n  benchmarks: {domain_il: {scenario: domain, domain_order: [photo, oil]}}\n",
               "['oil'] are not domains of the synthetic world"),
    "memory": ("memclip:\n  benchmarks: {class_il: {memory_sizes: [0, -5]}}\n", "-5 is less than the minimum of 0"),
    "scenario pairing": ("memclip:\n  benchmarks: {class_il: {scenario: class, num_tasks: 10}, domain_il: {enabled: false}}"
                         "\n  methods: [zero_shot, cassle]\n",
                         "method 'cassle' supports only domain, not class"),
    "no benchmark": ("memclip:\n  benchmarks: {class_il: {enabled: false}, domain_il: {enabled: false}}\n",
                     "memclip.benchmarks: the study is enabled but names no enabled benchmark"),
}
PRESETS = {"memclip-cifar100": ("cifar100", 4), "memclip-imagenet": ("imagenet", 4), "memclip-domainnet": ("domainnet", 4)}


def _dry_run(configs: list[Path], work: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", *map(str, configs),
            "--directory", str(work), "--snakefile", str(ROOT / "Snakefile")]


def _jobs(out: str) -> dict[str, int]:
    stats = out.split("Job stats:")[1].split("total")[0]
    return {line.split()[0]: int(line.split()[1]) for line in stats.split("\n")[3:]
            if len(line.split()) == 2 and line.split()[1].isdigit()}


def test_bad_memclip_configs_fail_before_any_job_and_presets_dry_run(tmp_path):
    """Every case and preset is one dry-run; they run at once (each pays Snakemake's start-up)."""
    commands = {}
    for name, (text, _) in BAD.items():
        path = tmp_path / f"bad_{name.replace(' ', '_')}.yaml"
        path.write_text(text)
        commands[name] = _dry_run([path], tmp_path / "bad")
    checkpoint = tmp_path / "ViT-B-16.pt"
    checkpoint.write_bytes(b"placeholder")  # the presets' local checkpoint must exist for the DAG to build
    for preset in PRESETS:
        overlay = tmp_path / f"{preset}_overlay.yaml"
        overlay.write_text(yaml.safe_dump({"memclip": {"model": {"pretrained": str(checkpoint)}}}))
        commands[preset] = _dry_run([ROOT / "configs" / f"{preset}.yaml", overlay], tmp_path / preset)
    results = run_together(commands)
    for name, (text, expected) in BAD.items():
        code, out = results[name]
        assert code != 0 and expected in out, (name, out[-2000:])
    for preset, (benchmark, sizes) in PRESETS.items():
        code, out = results[preset]
        assert code == 0, out[-3000:]
        jobs = _jobs(out)
        cfg = yaml.safe_load((ROOT / "configs" / f"{preset}.yaml").read_text())
        # the memclip study alone: its data, memory plan, a job per method and the tables; no TiC, no CL-CLIP
        methods = cfg["memclip"]["methods"]
        assert len(methods) == (10 if cfg["memclip"]["benchmarks"][benchmark]["scenario"] == "class" else 6)
        assert jobs == {"memclip_data": 1, "memclip_memory": 1, "memclip_run": len(methods), "memclip_tables": 1,
                        "memclip_uncertainty": 1, "findings": 1,
                        "all": 1}, jobs
        validate(cfg, str(SCHEMA))
        block = cfg["memclip"]["benchmarks"][benchmark]
        assert cfg["memclip"]["model"]["name"] == "ViT-B-16" and len(block["memory_sizes"]) == sizes
        assert 0 in block["memory_sizes"] and cfg["resources"]["train"]["gpu"] == 1
    assert not (tmp_path / "bad" / "results").exists()


def test_preset_task_splits_are_the_papers():
    cifar = yaml.safe_load((ROOT / "configs/memclip-cifar100.yaml").read_text())["memclip"]["benchmarks"]["cifar100"]
    assert cifar["num_tasks"] == 10 and cifar["class_order_seed"] == 1993 and cifar["real"]["format"] == "cifar100"
    imagenet = yaml.safe_load((ROOT / "configs/memclip-imagenet.yaml").read_text())["memclip"]["benchmarks"]["imagenet"]
    assert imagenet["num_tasks"] == 10 and imagenet["real"]["test_split"] == "val"
    domainnet = yaml.safe_load((ROOT / "configs/memclip-domainnet.yaml").read_text())["memclip"]["benchmarks"]["domainnet"]
    assert domainnet["domain_order"] == ["real", "quickdraw", "painting", "sketch", "infograph", "clipart"]


def test_schema_defaults_are_the_default_configs_memclip_block():
    """A config without a memclip block (a test's, a preset's base) gets the embedded default study."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(cfg, str(SCHEMA))
    empty = {}
    validate(empty, str(SCHEMA))
    assert empty["memclip"] == cfg["memclip"]
    assert set(empty["memclip"]["benchmarks"]) == {"class_il", "domain_il"}
    assert empty["tic"]["enabled"] and empty["memclip"]["enabled"]
