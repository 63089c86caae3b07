# Two commands: `make run` (set up, then the whole workflow) and `make test` (set up, then pytest).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores all --report results/tic/report.html --report-after-run

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder tests

lint: $(STAMP)
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
