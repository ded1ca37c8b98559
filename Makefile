# poolboard: two commands, on a fresh machine with PostgreSQL and Redis running.
#   make demo   the whole product with its demo fleet on http://127.0.0.1:8000
#   make test   the whole suite (real PostgreSQL, Redis, Prometheus and Chromium)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench system-prometheus system-chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages: installed only when missing, with apt-get when we are root.
define apt_install
	@if ! command -v $(1) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $(2) with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "$(1) is missing: run 'sudo apt-get install $(2)' (or run make as root)"; exit 1; \
	  fi; \
	fi
endef

system-prometheus:
	$(call apt_install,prometheus,prometheus)

system-chromium:
	$(call apt_install,chromium,chromium)

demo: $(STAMP) system-prometheus
	$(PY) scripts/demo.py

test: $(STAMP) system-prometheus system-chromium
	$(PY) -m poolboard.bootstrap
	$(PY) scripts/run_tests.py

bench: $(STAMP) system-prometheus
	$(PY) -m poolboard.bootstrap
	$(PY) bench/run.py
