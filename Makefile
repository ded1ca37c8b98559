# poolboard: two commands, on a fresh machine with PostgreSQL and Redis running.
#   make demo   the whole product with its demo fleet on http://127.0.0.1:8000
#   make test   the whole suite (real PostgreSQL, Redis, Prometheus and Chromium)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench lock system-prometheus system-chromium system-pdf

LOCK := requirements.lock

# One virtualenv for demo, test and bench, installed from the lock (exact versions with their
# hashes, what CI ran), then the project itself without resolving anything again. `pip check`
# fails when pyproject.toml asks for a package the lock lacks: run `make lock` then.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

# Re-resolve the lock from pyproject.toml (after adding or bumping a dependency).
lock:
	test -x $(VENV)/bin/uv || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet 'uv>=0.13'; }
	$(VENV)/bin/uv pip compile pyproject.toml --extra demo --extra dev --python-version 3.11 \
	  --generate-hashes --quiet -o $(LOCK)

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

# The weekly report's PDF: WeasyPrint needs pango; the tests read PDFs with poppler-utils.
system-pdf:
	@if ! ldconfig -p | grep -q libpangoft2-1.0.so.0; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing libpango-1.0-0 libpangoft2-1.0-0 with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 >/dev/null; \
	  else \
	    echo "pango is missing: run 'sudo apt-get install libpango-1.0-0 libpangoft2-1.0-0' (or run make as root)"; exit 1; \
	  fi; \
	fi
	$(call apt_install,pdftoppm,poppler-utils)

demo: $(STAMP) system-prometheus system-pdf
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Lint first: a lint error fails the run before the suite spends minutes.
test: $(STAMP) system-prometheus system-chromium system-pdf lint
	$(PY) -m poolboard.bootstrap
	$(PY) scripts/run_tests.py

bench: $(STAMP) system-prometheus system-pdf
	$(PY) -m poolboard.bootstrap
	$(PY) bench/run.py
