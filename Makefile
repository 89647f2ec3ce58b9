# gpuq: `make run` serves the embedded default at http://localhost:5000; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help run test lint bench bench-stream clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(STAMP): requirements.txt requirements-runtime.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)  ## serve the embedded default at http://localhost:5000 (plain-text logs)
	GPUQ_LOG_FORMAT=$${GPUQ_LOG_FORMAT:-text} $(PY) app.py

test: $(STAMP)  ## run every test (PostgreSQL, Redis and Chromium as .ci/run provides them)
	$(PY) -m pytest tests/

lint: $(STAMP)  ## ruff and mypy --strict; fails on any finding
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check gpuq gpuq_agent tests bench
	$(VENV)/bin/mypy --strict gpuq gpuq_agent

bench: $(STAMP)  ## load benchmark against a bare Flask endpoint (bench/README.md)
	command -v wrk >/dev/null || apt-get install -y wrk
	$(PY) bench/run.py

bench-stream: $(STAMP)  ## live-stream benchmark
	$(PY) bench/stream.py

clean:  ## remove the virtual environment and local state
	rm -rf $(VENV) instance .pytest_cache .hypothesis
