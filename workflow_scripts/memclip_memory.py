"""Entry point: the fixed memory's plan of one benchmark at every memory size (which train
samples it holds while each task trains), with an audit of its keys per task and per class."""
from pathlib import Path

from ticlip_core.data.files import write_json
from ticlip_core.memclip.benchmark import load_benchmark, load_table
from ticlip_core.memclip.memory import memory_plan, memory_record
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    cfg = snakemake.params.cfg
    bench = load_benchmark(snakemake.input.data)
    table = load_table(snakemake.input.data, "train")
    plans, audit = {}, {}
    for size in cfg["memclip"]["benchmark"]["memory_sizes"]:
        plan = memory_plan(table, bench.num_tasks, bench.scenario, size, cfg["seed"])
        plans[str(size)] = plan
        audit[str(size)] = memory_record(table, plan, bench.scenario)
        print(f"M={size}: " + ", ".join(f"task {t}: {len(rows)}" for t, rows in enumerate(plan)))
    write_json(Path(snakemake.output[0]), {"benchmark": bench.name, "scenario": bench.scenario, "seed": cfg["seed"],
                                           "plans": plans, "audit": audit})
