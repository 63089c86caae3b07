"""Time what every workflow job pays before it does any work: its imports, and a job through Snakemake.

Usage: python benchmarks/bench_startup.py [--repeats 5] [--snakemake-repeats 3] [--only SCRIPT ...]

Every rule runs its entry point in ``workflow_scripts/`` as a new Python process, so a job's
imports are paid once per job (about a hundred jobs in ``make run``).

``imports``: for each entry point, a fresh interpreter imports what the script imports at its top
level, plus what the job imports later before its first batch (``LAZY_WORK``: the module that
does the work, and open_clip as creating the default model imports it). It reports the median seconds over ``--repeats`` processes and whether torch
and open_clip were loaded. The tables, figures, reports and data jobs (``NO_TORCH``) must load
neither; ``tests/test_startup.py`` checks that.

``snakemake``: a throw-away workflow with two ``script:`` jobs, run ``--snakemake-repeats`` times
with ``--forceall``. ``noop`` imports nothing of this project; ``model`` does what a training job
does before its first batch: the engine's imports and creating the default model. It reports each
job's median wall seconds from its ``benchmark:`` file.

``references``: ``import torch`` alone and open_clip as a model job imports it, timed the same way in
the same run (a job's start-up is best read against them: the machine's speed varies).

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow_scripts"

#: what an entry point imports after its top level before its first batch: the module that does
#: the work when the script reaches it inside a function, and open_clip as ``models.create_model``
#: imports it for the default model (leaving out what that model does not use)
_MODEL = ["from ticlip_core.lean_imports import import_open_clip", "import_open_clip('ticlip-vit-tiny')"]
LAZY_WORK = {"train_step.py": ["import ticlip_core.tic.train", *_MODEL], "evaluate.py": _MODEL,
             "memclip_run.py": _MODEL, "clclip_run.py": _MODEL, "clclip_ablation.py": _MODEL,
             "clclip_base.py": ["import ticlip_core.clclip.base_model", "import ticlip_core.engine.contrastive",
                                *_MODEL]}
#: entry points that must never load torch: tables, figures and reports read result files and
#: draw; the data jobs render, resize, bucket and index images
NO_TORCH = ("make_table.py", "make_figures.py", "make_lr_ablation.py", "make_data_report.py",
            "clclip_tables.py", "memclip_tables.py", "uncertainty.py", "findings.py",
            "synthesize.py", "bucket.py", "download.py", "prepare_metadata.py", "prepare_static_set.py",
            "clclip_base_pool.py", "clclip_task.py", "memclip_data.py", "memclip_memory.py")


def script_imports(script: Path) -> list[str]:
    """The import statements at the top level of ``script``, as source lines."""
    tree = ast.parse(script.read_text())
    return [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def time_imports(lines: list[str]) -> dict:
    """Import ``lines`` in a fresh interpreter; seconds spent and which heavy packages got loaded."""
    code = textwrap.dedent("""
        import sys, time, json
        start = time.perf_counter()
        {body}
        seconds = time.perf_counter() - start
        print(json.dumps({{"seconds": seconds, "torch": "torch" in sys.modules,
                          "open_clip": "open_clip" in sys.modules, "pandas": "pandas" in sys.modules}}))
    """).format(body="\n".join(lines))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"importing {lines} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


#: references timed in the same run, as the machine's speed varies from day to day: torch alone, and
#: open_clip as every model job imports it (torch and torchvision included): the floor of a model job
REFERENCES = {"torch": ["import torch"], "open_clip": _MODEL}


def bench_references(repeats: int) -> dict:
    """Median import seconds of each of ``REFERENCES`` (``repeats`` fresh processes each)."""
    out = {}
    for name, lines in REFERENCES.items():
        runs = [time_imports(lines)["seconds"] for _ in range(repeats)]
        out[name] = {"seconds": round(statistics.median(runs), 3), "runs": [round(r, 3) for r in runs]}
    return out


def bench_imports(repeats: int, only: list[str] | None) -> dict:
    """Median import seconds of every entry point (``repeats`` fresh processes each)."""
    results = {}
    for script in sorted(SCRIPTS.glob("*.py")):
        if only and script.name not in only:
            continue
        lines = script_imports(script) + LAZY_WORK.get(script.name, [])
        runs = [time_imports(lines) for _ in range(repeats)]
        results[script.name] = {"seconds": round(statistics.median(r["seconds"] for r in runs), 3),
                                "runs": [round(r["seconds"], 3) for r in runs],
                                **{k: runs[0][k] for k in ("torch", "open_clip", "pandas")},
                                "must_not_load_torch": script.name in NO_TORCH}
    return results


SNAKEFILE = """
rule all:
    input: "out/noop.txt", "out/model.txt"

rule noop:
    output: "out/noop.txt"
    benchmark: "bench/noop.tsv"
    script: "noop.py"

rule model:
    output: "out/model.txt"
    benchmark: "bench/model.tsv"
    script: "model.py"
"""
NOOP = "open(snakemake.output[0], 'w').write('done')\n"
MODEL = """
from ticlip_core.workflow_io import logged
with logged("model.log"):
    import ticlip_core.tic.train
    from ticlip_core.models import create_model
    model, _, _, tokenizer = create_model("ticlip-vit-tiny", None, device="cpu", seed=0)
    open(snakemake.output[0], "w").write("done")
"""


def bench_snakemake(repeats: int) -> dict:
    """Median wall seconds of a no-op ``script:`` job and of a job that creates the default model."""
    seconds: dict[str, list[float]] = {"noop": [], "model": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "Snakefile").write_text(SNAKEFILE)
        (work / "noop.py").write_text(NOOP)
        (work / "model.py").write_text(MODEL)
        snakemake = Path(sys.executable).with_name("snakemake")
        for _ in range(repeats):
            out = subprocess.run([str(snakemake), "--cores", "1", "--forceall", "--quiet", "all"], cwd=work,
                                 capture_output=True, text=True, timeout=600,
                                 env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
            if out.returncode != 0:
                raise RuntimeError(f"snakemake failed:\n{out.stderr[-3000:]}")
            for job in seconds:
                table = (work / "bench" / f"{job}.tsv").read_text().splitlines()
                seconds[job].append(float(table[1].split("\t")[0]))
    return {job: {"seconds": round(statistics.median(s), 3), "runs": [round(x, 3) for x in s]}
            for job, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--snakemake-repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="entry points to time (file names); default: all")
    args = parser.parse_args()
    result = {"references": bench_references(args.repeats), "imports": bench_imports(args.repeats, args.only)}
    if args.snakemake_repeats:
        result["snakemake"] = bench_snakemake(args.snakemake_repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
