# One documented way to run things, used by people and by .ci/run alike.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-deps

.PHONY: run test lint bench venv servers-deps env acl build-dashboards policy-eval clean help

help:
	@echo "make run    - start the whole system locally (broker, simulator, ingest, alerts)"
	@echo "make test   - install everything needed and run the full test suite"
	@echo "make lint   - ruff + mypy --strict on every package, tests and scripts included"
	@echo "make bench  - benchmarks (figures and ratios printed; see docs/benchmarks.md)"
	@echo "make bench BENCH=soak - the 30-min soak with faults (BENCH='soak --minutes 3': short)"
	@echo "make acl    - regenerate the broker ACL from config/devices.yaml (after adding a device)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The pinned build backend in the venv too: tests build the wheel offline with it.
	$(BIN)/python -m pip install --quiet -c constraints.txt setuptools
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

servers-deps:
	./scripts/install-servers.sh

run: venv
	$(BIN)/facility-run $(RUN_ARGS)

test: venv servers-deps
	$(BIN)/python -m pytest -q -ra

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common services devices grafana supervisor brokeracl scripts tests

bench: venv servers-deps
	$(BIN)/python -m scripts.bench $(BENCH)

# DEMO=1: also the demo profile's simulator user; OPERATOR=1: also the read-only svc.operator;
# BRIDGE=1: also svc.bridge (the bridge profile's facility-bridge).
env:
	./scripts/make-env.sh $(if $(DEMO),--demo) $(if $(OPERATOR),--operator) $(if $(BRIDGE),--bridge)

# The broker ACL from config/devices.yaml (run after adding, moving or removing a device).
acl: venv
	$(BIN)/facility-acl

build-dashboards: venv
	$(BIN)/facility-grafana build

# make policy-eval [CITY=today|gwangmyeong541|skewed] [SEEDS=1,2,3] (config/cities/).
CITY ?= today
SEEDS ?= 1,2,3
policy-eval: venv
	$(BIN)/python -m scripts.policy_eval --city $(CITY) --seeds $(SEEDS) $(POLICY_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
