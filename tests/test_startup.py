"""Job start-up: light jobs never load torch, and open_clip's import skips what no job uses."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_startup import NO_TORCH, SCRIPTS, script_imports  # noqa: E402


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter at the repository root; its stdout (it must succeed)."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _loaded_after(lines: list[str]) -> set[str]:
    return set(_python("\n".join(lines + [
        "import sys", "print(' '.join(m for m in ('torch', 'open_clip', 'webdataset') if m in sys.modules))"])).split())


def test_tables_figures_and_data_jobs_never_import_torch():
    lines = sorted({line for name in NO_TORCH for line in script_imports(SCRIPTS / name)})
    # the uncertainty and findings jobs import each study's claims (and through them its tables) by name
    lines += [f"import ticlip_core.{study}.claims" for study in ("tic", "clclip", "memclip")]
    assert any("memclip.tables" in line for line in lines) and any("synthetic" in line for line in lines)
    assert _loaded_after(lines) == set(), "run benchmarks/bench_startup.py to see which entry point loads it"


def test_a_training_job_does_load_torch_so_the_check_can_fail():
    assert "torch" in _loaded_after(script_imports(SCRIPTS / "memclip_run.py"))


def test_open_clip_is_imported_without_wandb_which_stays_importable():
    code = ("import sys\nfrom ticlip_core.lean_imports import import_open_clip\n"
            "oc = import_open_clip()\nassert oc.create_model and 'timm' in sys.modules\n"
            "assert 'wandb' not in sys.modules, 'wandb was imported'\n"
            "assert import_open_clip() is oc\n"
            "import wandb\nprint(wandb.__name__)")
    assert _python(code).strip() == "wandb"


def test_a_job_naming_a_model_without_a_timm_tower_skips_timm_which_stays_importable():
    from ticlip_core.lean_imports import needs_timm

    assert not needs_timm("ticlip-vit-tiny") and not needs_timm("ViT-B-32")
    assert needs_timm("convnext_base") and needs_timm("hf-hub:someone/some-model")  # unknown: import it
    code = ("import sys\nfrom ticlip_core.models import create_model\n"
            "model, _, _, tok = create_model('ticlip-vit-micro')\n"
            "assert 'timm' not in sys.modules and 'wandb' not in sys.modules, 'timm or wandb imported'\n"
            "import timm\nprint(timm.__name__)")
    assert _python(code).strip() == "timm"
