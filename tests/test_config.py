"""The config is validated against its schema before any job runs."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "ticlip_core/schemas/config.schema.yaml"


def test_default_config_is_valid_and_defaults_are_filled():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate(cfg, str(SCHEMA))
    assert cfg["results"] == "results"  # not in config.yaml: filled from the schema
    partial = {"train": {"lr": 0.01}}
    validate(partial, str(SCHEMA))
    assert partial["train"]["batch_size"] == 32
    assert partial["tic"]["methods"] == ["oracle", "cumulative_all", "cumulative_exp", "cumulative_equal",
                                         "sequential", "restart", "lwf", "patching"]
    assert partial["methods"]["patching"]["alpha_grid"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert partial["tic"]["lr_ablation"]["method"] == "cumulative_all"
    # the schema's defaults are the embedded default config's values
    assert {k: partial[k] for k in ("tic", "methods")} == {k: cfg[k] for k in ("tic", "methods")}


def _dry_run(tmp_path, cfg_text):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(cfg_text)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(cfg),
         "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cfg_text, expected", [
    ("train:\n  batch_size: lots\n", ["'lots' is not of type 'integer'", "batch_size"]),
    ("train:\n  bacth_size: 64\n", ["'bacth_size' was unexpected"]),
    ("tic:\n  methods: [oracle, not_a_method]\n", ["unknown method(s) not_a_method"]),
    ("tic:\n  steps: ['2017', '2016']\n", ["'2016' overlaps or precedes '2017'"]),
    ("tic:\n  lr_ablation: {method: oracle}\n", ["tic.lr_ablation.method: 'oracle' initialises every step afresh"]),
    ("methods:\n  patching: {alpha_grid: [0.5, 1.5]}\n", ["1.5 is greater than the maximum of 1", "alpha_grid"]),
    ("train:\n  max_lr_decay: linear\n", ["'linear' is not one of ['constant', 'cosine']"]),
])
def test_bad_config_fails_before_any_job(tmp_path, cfg_text, expected):
    res = _dry_run(tmp_path, cfg_text)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    for text in expected:
        assert text in out, out[-2000:]
    assert not (tmp_path / "results").exists()
