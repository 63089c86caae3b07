"""The reporting layer every study shares: table writers (CSV with the raw numbers; Markdown,
LaTeX and HTML renderings with their caption) and deterministic figures (matplotlib's Agg
canvas, no pyplot, PNGs without version-stamped metadata). A study's modules decide what a
table holds and how its numbers read; these decide how it is written."""
