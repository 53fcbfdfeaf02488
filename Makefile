# One entry point for developers and CI. `make test` installs everything it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen

.PHONY: help sync lint typecheck imports unit test schemas up compose-smoke bench bench-peers

help:
	@echo "make up       run the whole stack locally (SQLite) and a demo run; Ctrl-C stops it"
	@echo "make test     install everything, then lint, type-check, import contracts and tests"
	@echo "make schemas  regenerate the envelope JSON Schemas"
	@echo "make bench    latency, throughput, memory, callbacks, sweep, console and scale figures"
	@echo "make bench-peers  the same workloads on Apache Airflow 3.3.2 and on ours, side by side"
	@echo "make compose-smoke  build and verify the docker compose stack (needs root; CI runs it)"

$(CURDIR)/.tools/bin/uv:
	@$(PYTHON) -m venv $(CURDIR)/.tools
	@$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

sync: $(UV)
	$(UV) sync --frozen --all-packages

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .

# One mypy run per workspace member keeps same-named test modules of different members apart.
MEMBERS := $(sort $(dir $(wildcard shared/*/pyproject.toml services/*/pyproject.toml stack/pyproject.toml testing/pyproject.toml)))

typecheck: sync
	@set -e; for member in $(MEMBERS); do \
		echo "mypy $$member"; $(RUN) mypy $${member}src $$(test -d $${member}tests && echo $${member}tests); \
	done
	$(RUN) mypy tests bench examples/pytest-plugin

imports: sync
	$(RUN) lint-imports

unit: sync
	$(RUN) pytest

test: lint typecheck imports unit

# Quiet: the installation's output is shown only when it fails.
up: $(UV)
	@log=$$(mktemp); if ! $(UV) sync --frozen --all-packages >"$$log" 2>&1; then \
		cat "$$log"; rm -f "$$log"; exit 1; fi; rm -f "$$log"
	@.venv/bin/arco-stack up --demo --data-dir $(or $(DATA_DIR),.arco) $(UP_ARGS)

schemas: sync
	$(RUN) python -m arco_envelope schema shared/envelope/schemas

compose-smoke: sync
	.ci/compose-smoke

# Figures, not assertions: writes bench/results/latest.json and the table in docs/performance.md.
bench: sync
	PYTHONPATH=$(CURDIR) $(RUN) python -m bench.run $(BENCH_ARGS)

# A peer comparison, never part of `make test` or CI: installs Apache Airflow 3.3.2 into
# .bench-peers/airflow-venv (once; its own venv, pins in bench/peers/airflow-requirements.txt),
# runs the same workloads on it and on our stack, and writes bench/results/peers.json and the
# peers table in docs/performance.md.
bench-peers: sync
	PYTHONPATH=$(CURDIR) UV=$(UV) $(RUN) python -m bench.peers $(BENCH_PEERS_ARGS)
