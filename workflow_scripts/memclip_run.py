"""Entry point: one memclip method on one benchmark at every memory size (its grid point chosen
on validation A_T); long-format rows, the choices, the compute records and the rows' per-sample
entries (``ticlip_core.samples``, checked against the rows before anything is written). Finished
tasks are kept in a work folder beside the outputs (``<method>.work``), so a killed job resumes;
it is removed once the outputs are written."""
import json
from pathlib import Path

from ticlip_core import samples
from ticlip_core.engine.chain_store import ChainStore, job_fingerprint
from ticlip_core.memclip.study import run_method
from ticlip_core.rows import frame, write_rows
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    cfg, benchmark, method = snakemake.params.cfg, snakemake.wildcards.benchmark, snakemake.wildcards.method
    data, memory, base = snakemake.input.data, snakemake.input.get("memory"), snakemake.input.get("base")
    store = ChainStore(Path(snakemake.output.rows).with_suffix(".work"),
                       job_fingerprint(cfg, job=f"memclip_run {benchmark} {method}", task_dir=data,
                                       base_checkpoint=base, extra_files=(memory,) if memory else ()))
    rows, chosen, compute, entries = run_method(cfg, benchmark_dir=data, memory_file=memory, method_name=method,
                                                base_checkpoint=base, store=store)
    entries = samples.frame(entries)
    samples.check_matches(frame(rows), entries)  # entries that disagree with a row fail the job, naming it
    write_rows(rows, snakemake.output.rows)
    samples.write_samples([entries], snakemake.output.samples)
    Path(snakemake.output.chosen).write_text(json.dumps(chosen, indent=2, default=str) + "\n")
    Path(snakemake.output.compute).write_text(json.dumps(compute, indent=2) + "\n")
    store.remove()
    print(json.dumps({"chosen": chosen, "compute": compute}, indent=2, default=str))
