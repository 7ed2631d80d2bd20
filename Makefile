# make up   - run the monitoring stack on this machine
# make test - install what the tests need and run them all
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# System tools the tests use: Prometheus and promtool (end-to-end and rule tests), Chromium (browser test).
SYSTEM_TOOLS := prometheus promtool chromium
DEBIAN_PACKAGES := prometheus chromium

.PHONY: test up down load venv tools bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; \
	  elif command -v brew >/dev/null; then brew install prometheus; \
	  else echo "missing:$$missing. Install them (Debian/Ubuntu: sudo apt-get install $(DEBIAN_PACKAGES); macOS: brew install prometheus) and run make test again"; exit 1; fi; \
	fi

test: venv tools
	$(PY) -m pytest

up: venv
	$(PY) -m stack up

down:
	$(PY) -m stack down

load: venv
	$(VENV)/bin/ollama-load $(LOAD_ARGS)

bench: venv
	$(PY) bench/proxy_overhead.py

clean:
	rm -rf $(VENV) .run build *.egg-info
