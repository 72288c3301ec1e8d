# Two commands that work on a fresh clone with only Python, pip and make:
#   make demo   runs the demo shop on http://127.0.0.1:5000 (SQLite sessions)
#   make test   runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared

.PHONY: demo test lint docs compat compat-source bench bench-load bench-scale fuzz faults clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# What the demo needs: satchel and the drivers of its stores (not the test, lint and bench tools).
$(VENV)/.demo: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[redis,postgres]"
	touch $@

# Everything: the demo's packages, the test and lint tools, the bench's contenders.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(PY) -m flask --app examples/shop/app.py run --host 127.0.0.1 --port 5000

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests examples bench
	$(PY) -m mypy

# The documentation (Sphinx), warnings as errors: open docs/_build/html/index.html.
$(VENV)/.docs-installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Flask's own 45 session tests against satchel, in every mode (needs $(SHARED)/flask-compat).
compat: compat-source $(VENV)/.installed
	PYTHON=$(abspath $(PY)) scripts/flask-compat.sh $(SHARED)/flask-compat

compat-source:
	@test -d "$(SHARED)/flask-compat" || { \
	  echo "make compat: $(SHARED)/flask-compat not found. It runs Flask's own session tests," \
	       "kept outside this repository; point SHARED at the folder that holds flask-compat" \
	       "(make compat SHARED=path). Without it, make test runs tests/test_flask_compat.py," \
	       "which checks the same behaviour in the same modes." >&2; exit 1; }

# Each writes its table and chart to bench/results/ (and prints the table).
bench: $(VENV)/.installed
	$(PY) bench/overhead.py

# Under gunicorn, driven by wrk (apt-get install wrk): req/s and p50/p99 (about 4 minutes).
bench-load: $(VENV)/.installed
	$(PY) bench/load.py

# Per-request latency with 1 k vs 1 M stored sessions: SQLite, PostgreSQL, Redis (a few minutes).
bench-scale: $(VENV)/.installed
	$(PY) bench/scale.py

# 1,000,000 fuzzed session cookies across every mode (a few minutes); prints the counts.
fuzz: $(VENV)/.installed
	$(PY) bench/fuzz.py

# Long store faults (30 s stalls, a store down at start) under a real server: the timing bounds.
faults: $(VENV)/.installed
	$(PY) -m tests.fault_harness

clean:
	rm -rf $(VENV) docs/_build build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
