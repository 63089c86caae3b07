"""Fault: config values that used to be accepted at dry-run and failed late (or never). Each is now
refused before any job runs, with a message naming the key."""
import sys
from pathlib import Path

import pytest
from conftest import run_together

ROOT = Path(__file__).resolve().parents[2]


BAD = {
    "split": ("data:\n  split: {val_fraction: 0.5, test_fraction: 0.5}\n",
              "data.split: val_fraction + test_fraction = 1 leaves no training samples"),
    "tag": ("model: {name: ViT-B-32, pretrained: no_such_tag}\n",
            "model.pretrained: 'no_such_tag' is neither an open_clip pretrained tag of ViT-B-32"),
    "model": ("model: {name: ViT-B-99}\n", "model.name: unknown open_clip model 'ViT-B-99'"),
    "clclip_model": ("clclip:\n  model: {name: ticlip-vit-tinyy}\n",
                     "clclip.model.name: unknown open_clip model 'ticlip-vit-tinyy'"),
    "seed": ("seed: -1\n", "-1 is less than the minimum of 0"),
    "results": ("results: ''\n", "'' does not match"),
    "option": ("clclip:\n  method_options:\n    vr_lwf: {lenght: 10}\n",
               "clclip.method_options.vr_lwf: CL-CLIP method 'vr_lwf' got unknown option(s) 'lenght'"),
    "method": ("clclip:\n  method_options:\n    vr_lfw: {length: 10}\n",
               "clclip.method_options.vr_lfw: unknown CL-CLIP method"),
}


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """A dry-run with each bad config (the only config file given), all at once."""
    commands = {}
    for name, (cfg_text, _) in BAD.items():
        work = tmp_path_factory.mktemp(name)
        (work / "bad.yaml").write_text(cfg_text)
        commands[name] = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                          str(work / "bad.yaml"), "--directory", str(work), "--snakefile", str(ROOT / "Snakefile")]
    return {name: (*result, Path(commands[name][-3])) for name, result in run_together(commands).items()}


@pytest.mark.parametrize("name", BAD)
def test_bad_value_is_refused_before_any_job_naming_the_key(dry_runs, name):
    code, out, work = dry_runs[name]
    assert code != 0 and BAD[name][1] in out, out[-2000:]
    if name == "results":
        assert "instance['results']" in out  # the schema error names the key
    assert not (work / "results").exists()
