# clicklake — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Build outside the clone so later runs on the same machine are incremental.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/clicklake-target
BIN := $(CARGO_TARGET_DIR)/debug/clicklake
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help build demo test test-rust test-python test-s3 test-kills bench bench-ingest bench-compact bench-query python-env test-tools fmt lint clean-data

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Always the whole workspace with every target, like `cargo test --workspace`:
# one feature set, so the binary and the tests share one build of the dependencies.
build: ## Build the clicklake binary and the tests (debug)
	cargo build --workspace --all-targets

demo: build ## Serve on ./clicklake-data, load the real click log, roll up, print the report
	CLICKLAKE_BIN=$(BIN) scripts/demo.sh

test: test-rust test-python test-s3 ## Every test: unit, sqllogictest, end-to-end on local files and on S3

test-rust: ## Rust unit, sqllogictest and end-to-end tests
	cargo test --workspace

python-env: $(VENV)/.installed ## Python virtualenv with the Flight SQL clients used by the tests

$(VENV)/.installed: tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

# Tools the tests drive, from Debian's packages (as root, only when missing):
# Chromium for the dashboard's browser test (through Playwright, whose own
# browser downloads are never used) and promtool for the alert rules.
test-tools: ## Chromium and promtool for the tests (apt-get, only when missing)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/promtool ]; then \
		echo "== installing Chromium and promtool from Debian's packages"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation prometheus >/dev/null; \
	fi

test-python: build python-env test-tools ## End-to-end tests through the Python ADBC Flight SQL driver and Chromium
	CLICKLAKE_BIN=$(BIN) $(PY) -m pytest -v tests/python

KILLS ?= 100
test-kills: build python-env ## The SIGKILL drills in their long mode (KILLS=100 by default; `make test` runs 10 and 5)
	CLICKLAKE_BIN=$(BIN) CLICKLAKE_DRILL_KILLS=$(KILLS) CLICKLAKE_KILLS=$(KILLS) $(PY) -m pytest -v -s \
		tests/python/test_drills.py tests/python/test_durability.py -k sigkill

test-s3: build python-env test-tools ## The end-to-end suite on a real S3 server (Ceph RGW on loopback, installed if missing)
	CLICKLAKE_BIN=$(BIN) PY=$(PY) scripts/test-s3.sh

bench: bench-ingest bench-compact bench-query ## Every benchmark; each rewrites its section of docs/BENCHMARKS.md

bench-ingest: build ## Ingest throughput, ack latency and RSS per path (Flight, stream, batch, HTTP, unary)
	python3 scripts/bench-ingest.py --bin $(BIN)

bench-compact: build ## Rollup, backfill and optimize throughput on 20M synthetic events; open time of a 2,000-commit table
	python3 scripts/bench-compact.py --bin $(BIN)

bench-query: build ## Read API (HTTP) p50/p99 and 8 ad-hoc SQL queries on 20M synthetic events, optimized and rolled up
	python3 scripts/bench-query.py --bin $(BIN)

fmt: ## Format the code
	cargo fmt --all

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

clean-data: ## Delete the demo store ./clicklake-data
	rm -rf ./clicklake-data
