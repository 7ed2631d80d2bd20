# make up   - run the monitoring stack on this machine (installs only the runtime dependencies)
# make test - install what the tests need (test extras, Prometheus, Chromium), lint, and run them all
# make test-quick - lint and the in-process tests only (tests/ but tests/e2e/), in about a minute
# make lock - re-resolve requirements/*.txt to the newest versions pyproject.toml allows, then run the suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# -qq: pip's own notices and the warnings of a machine's pip.conf stay out of a newcomer's first screen; errors still print.
PIP := $(PY) -m pip --disable-pip-version-check
PIP_QUIET := -qq
UV_VERSION := 0.13.9

.PHONY: test test-quick lint up down load venv test-venv tools lock bench mutation mutation-check clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV)

# The locked versions, checked against their hashes, then the project itself (editable, no dependencies of its own).
$(VENV)/.runtime: requirements/runtime.txt pyproject.toml | $(PY)
	@echo "installing the locked runtime dependencies into $(VENV) (requirements/runtime.txt)"
	@$(PIP) install $(PIP_QUIET) --require-hashes -r requirements/runtime.txt
	@$(PIP) install $(PIP_QUIET) --no-deps -e .
	@rm -f $(VENV)/.test
	@touch $@

$(VENV)/.test: requirements/test.txt pyproject.toml | $(PY)
	@echo "installing the locked runtime and test dependencies into $(VENV) (requirements/test.txt)"
	@$(PIP) install $(PIP_QUIET) --require-hashes -r requirements/test.txt
	@$(PIP) install $(PIP_QUIET) --no-deps -e .
	@touch $@ $(VENV)/.runtime

venv: $(VENV)/.runtime
test-venv: $(VENV)/.test

# The system tools the suite runs for real: every missing one named in one line, installed where this machine allows.
tools:
	@tests/support/tools.sh

# Grafana's own dashboard types (@grafana/schema, pinned in the lock), for tests/e2e/ui/test_grafana.py's type check.
GRAFANA_TYPES := tests/support/grafana_types
$(GRAFANA_TYPES)/node_modules/.installed: $(GRAFANA_TYPES)/package-lock.json | tools
	@npm ci --prefix $(GRAFANA_TYPES) --no-audit --no-fund --silent
	@touch $@

# then docs/testing.md's mutation scores held to the code (bench/mutation_scores.py --check: instant unless the proxy's core changed)
test: lint tools $(GRAFANA_TYPES)/node_modules/.installed
	$(PY) -m pytest
	$(PY) bench/mutation_scores.py --check --budget-s 1200

# The in-process tests alone (tests/ but tests/e2e/: no system tools, one fake Ollama), in about a minute.
test-quick: lint
	$(PY) -m pytest --ignore=tests/e2e

# ruff, pinned in the test lock ([tool.ruff] in pyproject.toml)
lint: test-venv
	$(VENV)/bin/ruff check --no-cache .

# make up's state directory (logs, the run's state, Prometheus' data): the checkout's .run/
STACK_RUN_DIR ?= .run
up: venv
	@$(PY) -m ollama_otel_stack.stack up --state-dir $(STACK_RUN_DIR)

down:
	@$(PY) -m ollama_otel_stack.stack down --state-dir $(STACK_RUN_DIR)

load: venv
	$(VENV)/bin/ollama-load $(LOAD_ARGS)

# Both locks from pyproject.toml, universal (every platform's wheels hashed), then the suite on them.
lock: | $(PY)
	$(PIP) install $(PIP_QUIET) uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --extra nvidia --universal --python-version 3.11 --generate-hashes --upgrade --no-header -q -o requirements/runtime.txt
	$(VENV)/bin/uv pip compile pyproject.toml --extra nvidia --extra test --universal --python-version 3.11 --generate-hashes --upgrade --no-header -q -o requirements/test.txt
	rm -f $(VENV)/.runtime $(VENV)/.test
	$(MAKE) test

bench: test-venv
	$(PY) bench/proxy_overhead.py

# Mutation testing of the proxy's core ([tool.mutmut] in pyproject.toml; docs/testing.md), in a venv of its own so
# that mutmut and its dependencies stay out of the locks. Not part of make test (about 50 minutes on two cores); its check is.
MUTMUT_VERSION := 3.8.1
MUTATION_VENV := .venv-mutation
$(MUTATION_VENV)/.installed: requirements/test.txt
	@$(PYTHON) -m venv $(MUTATION_VENV)
	@$(MUTATION_VENV)/bin/pip install $(PIP_QUIET) --disable-pip-version-check --require-hashes -r requirements/test.txt
	@$(MUTATION_VENV)/bin/pip install $(PIP_QUIET) --disable-pip-version-check mutmut==$(MUTMUT_VERSION)
	@touch $@

# docs/testing.md's scores against the code: the rows whose file or tests changed since they were written are run again
mutation-check: test-venv
	$(PY) bench/mutation_scores.py --check --budget-s 1200

mutation: $(MUTATION_VENV)/.installed
	rm -rf mutants
	$(MUTATION_VENV)/bin/mutmut run --max-children 2
	$(MUTATION_VENV)/bin/python bench/mutation_scores.py

clean:
	rm -rf $(VENV) $(MUTATION_VENV) mutants .run build *.egg-info $(GRAFANA_TYPES)/node_modules
