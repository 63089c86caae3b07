"""Entry point: the memclip tables (per benchmark: method x memory size, Last, Avg, Forgetting,
chosen hyperparameters; the mean over replicate seeds), Figure 1 (accuracy after the last task against memory size) and the
A_t curves, from every method job's rows."""
from pathlib import Path

from ticlip_core.memclip.figures import accuracy_curves, figure1
from ticlip_core.memclip.tables import write_memclip_tables
from ticlip_core.reporting.uncertainty import by_seed, mean_rows
from ticlip_core.rows import read_rows, write_rows
from ticlip_core.workflow_io import logged

with logged(snakemake.log[0]):
    p = snakemake.params
    per_seed = [read_rows(paths) for paths in by_seed(snakemake.input.runs).values()]
    rows = mean_rows(per_seed)  # the figures' rows: the mean over seeds
    write_rows(rows, snakemake.output.rows)
    out = Path(snakemake.output.rows).parent
    methods = dict(p.methods)
    for path in write_memclip_tables(per_seed, out, p.benchmarks, methods, p.memory_sizes, memoryless=p.memoryless):
        print(f"wrote {path}")
    figure1(rows, p.benchmarks, methods, p.memory_sizes, snakemake.output.figure1, memoryless=p.memoryless)
    everyone = list(dict.fromkeys(m for b in p.benchmarks for m in methods[b]))
    for benchmark, path in zip(p.benchmarks, snakemake.output.curves):
        accuracy_curves(rows, benchmark, methods[benchmark], p.memory_sizes[benchmark], path,
                        scenario=p.benchmarks[benchmark], memoryless=p.memoryless, colors_from=everyone)
