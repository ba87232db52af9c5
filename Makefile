# One task runner: install, gen, fmt, lint, typecheck, test, serve, bench, breaking.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BUF := node_modules/.bin/buf
INSTALLED := $(VENV)/.installed-$(shell cat pyproject.toml package-lock.json | cksum | cut -d' ' -f1)

.PHONY: install gen fmt lint typecheck postgres test serve breaking clean \
	bench bench-watch bench-watch-many bench-engine bench-orchestration

install: $(INSTALLED)

$(INSTALLED): pyproject.toml package.json package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Editable: clients/ and server/ go on sys.path through a .pth file mypy reads too.
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

# The PostgreSQL server the tests and benchmarks use: started if it is down.
postgres:
	scripts/ensure-postgres

# The whole suite: lint, types, stale stubs, unit, integration and end-to-end tests
# (on SQLite, and on PostgreSQL: several replicas, and the behaviour tests marked both_backends).
test: lint typecheck postgres
	$(PY) scripts/gen_protos.py --check
	$(BIN)/pytest

serve: install
	$(BIN)/clusterops serve --demo

# Benchmarks (a couple of minutes; numbers depend on the machine, compare within a run).
bench: bench-watch bench-watch-many bench-engine bench-orchestration

# Watch fan-out against a bare grpc.aio stream: memory per watch, latency, idle queries.
bench-watch: install postgres
	$(PY) -m bench.watch_fanout --watchers 500
	$(PY) -m bench.watch_fanout --watchers 500 --store postgresql

# WatchWorkRequests: server memory per watched work request (10,000 through 100 streams).
bench-watch-many: install
	$(PY) -m bench.watch_many

# Operations per second the engine drives with zero-time steps, SQLite vs PostgreSQL.
bench-engine: install postgres
	$(PY) -m bench.engine_throughput

# An orchestration of 10,000 targets against the same upgrades started directly.
bench-orchestration: install
	$(PY) -m bench.orchestration_scale

breaking: install
	$(BUF) breaking --against '.git#branch=main'


clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
