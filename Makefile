# One task runner: install, gen, fmt, lint, typecheck, test, serve, breaking.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BUF := node_modules/.bin/buf
INSTALLED := $(VENV)/.installed-$(shell cat pyproject.toml package-lock.json | cksum | cut -d' ' -f1)

.PHONY: install gen fmt lint typecheck test serve breaking clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml package.json package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	npm install --no-audit --no-fund --loglevel=error
	rm -f $(VENV)/.installed-*
	touch $@

gen: install
	$(PY) scripts/gen_protos.py

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BUF) format -w

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BUF) lint
	$(BUF) format --diff --exit-code

typecheck: install
	$(BIN)/mypy

# The whole suite: lint, types, stale stubs, unit, integration and end-to-end tests.
test: lint typecheck
	$(PY) scripts/gen_protos.py --check
	$(BIN)/pytest

serve: install
	$(BIN)/clusterops serve --demo

breaking: install
	$(BUF) breaking --against '.git#branch=main'


clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
