# adaptbench — every target works from a fresh clone with nothing installed but Python 3.10+.
# Set-up is idempotent: the venv is (re)installed only when pyproject.toml or constraints.txt change.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
PY          := $(BIN)/python
STAMP       := $(VENV)/.adaptbench-installed
CONSTRAINTS ?= constraints.txt
PROFILE     ?= auto
ARGS        ?=

.DEFAULT_GOAL := help
.PHONY: help setup data bench publish bench-micro bench-gpu bench-gpu-dry doctor report test test-slow test-all lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install adaptbench with its pinned torch (once)

data: setup ## fetch MNIST and Fashion-MNIST into a verified cache under ./data
	$(PY) -m bench data fetch --dataset all

# `auto` resolves like `bench run --profile auto`: gpu with CUDA, else cpu.
RESOLVED = $(if $(filter auto,$(PROFILE)),$$($(PY) -c 'import torch; print("gpu" if torch.cuda.is_available() else "cpu")'),$(PROFILE))

bench: data ## benchmark THIS machine (gpu profile with CUDA, else cpu) into runs/<profile>/ and report
	$(PY) -m bench run --profile $(PROFILE) $(ARGS)
	$(PY) -m bench report runs/$(RESOLVED)
	@echo "results of this machine: runs/$(RESOLVED)/ (summary.md, comparison.csv, charts/)"

publish: data ## re-measure and overwrite the published results/<profile>/ and README's findings for it (>= 3 seeds and a validation split; maintainers; commit after)
	$(PY) -m bench run --publish --profile $(PROFILE) --results-dir results/$(RESOLVED) $(ARGS)
	$(PY) -m bench report results/$(RESOLVED) --readme README.md
	@echo "published: results/$(RESOLVED)/ -- review git diff results/, then commit naming the machine"

bench-micro: setup ## pytest-benchmark micro suite; JSON saved under runs/micro/ (results/micro holds the published ones)
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-storage=runs/micro --benchmark-autosave --benchmark-columns=min,median,max,rounds $(ARGS)

bench-gpu: data ## one 9-minute GPU call: ceilings, probes, naive baseline, the gpu profile (resumable), report
	$(PY) -m bench.tools.gpu_check $(ARGS)

bench-gpu-dry: data ## the same script on CPU, tiny and fast, to prove it before a GPU is spent
	$(PY) -m bench.tools.gpu_check --dry-run $(ARGS)

doctor: setup ## compatibility matrix of the torchvision zoo x strategies (meta device)
	$(PY) -m bench doctor $(ARGS)

report: setup ## regenerate tables and charts from a results directory's CSVs (DIR=runs/cpu)
	$(PY) -m bench report $(or $(DIR),runs/cpu)

test: data ## the fast lane: every test not marked slow (a few minutes on 2 cores; GPU tests skip)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

test-slow: data ## the slow lane only: real sweeps through every executor, faults, DDP, compile, the GPU dry run
	$(PY) -m pytest -q -m slow $(ARGS)

test-all: data ## both lanes: the whole suite (what CI runs)
	$(PY) -m pytest -q $(ARGS)

lint: setup ## ruff
	$(BIN)/ruff check bench strategies tests

clean: ## remove caches and build files (keeps .venv, data and results)
	rm -rf .pytest_cache .ruff_cache .benchmarks build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
