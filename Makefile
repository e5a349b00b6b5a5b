# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv with pip and install everything the project needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSTALL_INPUTS := pyproject.toml Makefile $(wildcard integrations/*/pyproject.toml)
# The framework integrations (integrations/<package>/), installed editable with their test extras.
INTEGRATION_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard integrations/*/pyproject.toml))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint format bench mini mini-seeds clean

$(STAMP): $(INSTALL_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]' $(foreach dir,$(INTEGRATION_DIRS),-e '$(dir)[test]')
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m twn_rag.demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_encode.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_scale.py

# Rebuild the bundled miniature TWN from its seed and report never/always/adaptive on its test split.
mini: install
	$(BIN)/python benchmarks/twn_mini/build.py --fresh --ship --results benchmarks/twn_mini/results.md

# Build seeds 0, 1 and 2 (each in its own folder, reusing finished ones) and report mean and spread.
mini-seeds: install
	$(BIN)/python benchmarks/twn_mini/seeds.py --jobs 2 --results benchmarks/twn_mini/seeds.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
