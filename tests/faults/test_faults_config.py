"""Fault: config values that used to be accepted at dry-run and failed late (or never). Each is now
refused before any job runs, with a message naming the key."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cfg_text, expected", [
    ("data:\n  split: {val_fraction: 0.5, test_fraction: 0.5}\n",
     "data.split: val_fraction + test_fraction = 1 leaves no training samples"),
    ("model: {name: ViT-B-32, pretrained: no_such_tag}\n",
     "model.pretrained: 'no_such_tag' is neither an open_clip pretrained tag of ViT-B-32"),
    ("model: {name: ViT-B-99}\n", "model.name: unknown open_clip model 'ViT-B-99'"),
    ("clclip:\n  model: {name: ticlip-vit-tinyy}\n", "clclip.model.name: unknown open_clip model 'ticlip-vit-tinyy'"),
    ("seed: -1\n", "-1 is less than the minimum of 0"),
    ("results: ''\n", "'' does not match"),
    ("clclip:\n  method_options:\n    vr_lwf: {lenght: 10}\n", "clclip.method_options.vr_lwf: "),
    ("clclip:\n  method_options:\n    vr_lfw: {length: 10}\n", "clclip.method_options.vr_lfw: unknown CL-CLIP method"),
])
def test_bad_value_is_refused_before_any_job_naming_the_key(tmp_path, cfg_text, expected):
    (tmp_path / "bad.yaml").write_text(cfg_text)
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(tmp_path / "bad.yaml"),
         "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and expected in out, out[-2000:]
    if cfg_text.startswith("results"):
        assert "results" in out  # the schema error names the key
    assert not (tmp_path / "results").exists()
