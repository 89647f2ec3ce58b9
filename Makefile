# gpuq: `make run` serves the embedded default at http://localhost:5000; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-stream clean

$(STAMP): requirements.txt requirements-runtime.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	$(PY) -m pytest tests/

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk
	$(PY) bench/run.py

bench-stream: $(STAMP)
	$(PY) bench/stream.py

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis
