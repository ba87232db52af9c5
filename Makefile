# One task runner: install, gen, fmt, lint, typecheck, test, serve, bench, breaking.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BUF := node_modules/.bin/buf
# What the installed tools depend on: the three projects, the version lock, the npm lock.
LOCKS := pyproject.toml clients/pyproject.toml server/pyproject.toml constraints.txt \
	package.json package-lock.json
INSTALLED := $(VENV)/.installed-$(shell cat $(LOCKS) | cksum | cut -d' ' -f1)

.PHONY: install gen fmt lint typecheck postgres test serve breaking clean \
	bench bench-watch bench-watch-many bench-engine bench-orchestration

install: $(INSTALLED)

# Two editable distributions (clients/: the SDK and CLI; server/: the server) and the
# root's dev group, every version fixed by constraints.txt. Editable installs put clients/
# and server/ on sys.path through .pth files, which mypy reads too. `npm ci` installs
# exactly package-lock.json and never rewrites it.
$(INSTALLED): $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint constraints.txt --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --build-constraint constraints.txt \
		--editable ./clients --editable ./server --group dev
	npm ci --no-audit --no-fund --loglevel=error
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

# The whole suite: lint, types, breaking changes, stale stubs, unit, integration and
# end-to-end tests (on SQLite, and on PostgreSQL: several replicas, and the behaviour
# tests marked both_backends).
# pytest-xdist workers: each has its own SQLite files, PostgreSQL databases (named by
# pid) and ports (0); four keep two cores busy while tests wait on sockets and databases.
TEST_WORKERS ?= 4
test: lint typecheck breaking postgres
	$(PY) scripts/gen_protos.py --check
	$(BIN)/pytest -n $(TEST_WORKERS)

serve: install
	$(BIN)/clusterops serve --demo

# Benchmarks: every figure of the performance table (README, "Performance") in one run,
# each against its baseline measured in the same run; prints the table and writes
# bench/results.jsonl. Takes a while (the 10,000-target orchestration alone is minutes).
# BENCH_QUICK=1: seconds, to see that it runs (figures meaningless, written to bench/.cache/).
# BENCH_ARGS="--only rpc_qps --store sqlite": one family, one store. Server logs are kept
# in $BENCH_SERVER_LOGS when set.
BENCH_QUICK ?=
BENCH_ARGS ?=
bench: install postgres
	$(PY) -m bench $(if $(BENCH_QUICK),--quick) $(BENCH_ARGS)

# Watch fan-out against a bare grpc.aio stream, 2,000 watchers (also part of `make bench`).
bench-watch: install postgres
	$(PY) -m bench.watch_fanout
	$(PY) -m bench.watch_fanout --store postgresql

# WatchWorkRequests: server memory per watched work request (10,000 through 100 streams).
bench-watch-many: install
	$(PY) -m bench.watch_many

# Operations per second the engine drives with zero-time steps, SQLite vs PostgreSQL.
bench-engine: install postgres
	$(PY) -m bench.engine_throughput

# An orchestration of 10,000 targets against the same upgrades started directly.
bench-orchestration: install
	$(PY) -m bench.orchestration_scale

# Against the last release tag, else where this branch left main, else (on main) the
# commit before: see scripts/check-breaking. BREAKING_AGAINST=<ref> picks another base.
breaking: install
	scripts/check-breaking


# The TypeScript client (clients/typescript): its own package.json and lock, installed
# with npm ci; its tests build it and run node's test runner against `clusterops serve`.
# Each -ts target is an extra prerequisite of its namesake, declared here on its own line.
TS_DIR := clients/typescript
TS_INSTALLED := $(TS_DIR)/node_modules/.installed
.PHONY: install-ts fmt-ts lint-ts typecheck-ts test-ts clean-ts
install: install-ts
fmt: fmt-ts
lint: lint-ts
typecheck: typecheck-ts
test: test-ts
clean: clean-ts

install-ts: $(TS_INSTALLED)

$(TS_INSTALLED): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

fmt-ts: install
	cd $(TS_DIR) && npm run --silent fmt

lint-ts: install
	cd $(TS_DIR) && npm run --silent lint

typecheck-ts: install
	cd $(TS_DIR) && npm run --silent typecheck

test-ts: install
	cd $(TS_DIR) && npm test

clean-ts:
	rm -rf $(TS_DIR)/node_modules $(TS_DIR)/dist $(TS_DIR)/build

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
