# hf_gpt2 — `make quickstart` trains, evaluates, samples and exports a small GPT-2 on CPU; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install sky-env test test-fast lint format quickstart bench gpu-wheels gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# CPU machines get the CPU torch wheel first (a bare `torch` requirement would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml | $(BIN)/python
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "no CUDA here: installing the CPU build of torch $(TORCH_VERSION)"; \
		$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
		|| $(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)+cpu" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# SkyPilot (for `hf-gpt2 cloud`) lives in its own environment: it pins click<8.2, which huggingface_hub>=2.4 refuses.
SKY_VENV ?= .venv-sky
sky-env: $(SKY_VENV)/bin/sky
$(SKY_VENV)/bin/sky:
	$(PYTHON) -m venv $(SKY_VENV)
	$(SKY_VENV)/bin/python -m pip install --quiet "skypilot[lambda]>=0.14.1"
# When it exists, the tests validate rendered tasks with SkyPilot's own parser.
export HF_GPT2_SKY := $(if $(wildcard $(SKY_VENV)/bin/sky),$(CURDIR)/$(SKY_VENV)/bin/sky,$(HF_GPT2_SKY))

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check hf_gpt2 tests benchmarks train.py
	$(BIN)/ruff format --check hf_gpt2 tests benchmarks train.py

format: $(STAMP)
	$(BIN)/ruff check --fix hf_gpt2 tests benchmarks train.py
	$(BIN)/ruff format hf_gpt2 tests benchmarks train.py

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python train.py recipes/quickstart.yaml

bench: $(STAMP)
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/generate.py

# The GPU machine has PyTorch but no network: carry wheels of the versions tested here, then run every GPU check there.
gpu-wheels: $(STAMP)
	rm -f .whl/*.whl
	$(BIN)/python benchmarks/gpu_wheels.py --dest .whl

gpu-check:
	bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) $(SKY_VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
