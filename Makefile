# Two commands do all the set-up: `make run` (demo + worker + dashboard) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOME_DIR ?= $(or $(RETRAINER_HOME),./data)
PORT ?= 8501
API_PORT ?= 8000

.PHONY: run test venv demo worker app bench bench-quick clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "[environment] Creating the environment in $(VENV) (first run only; 2-5 minutes, each package is listed as it installs) ..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -r requirements-dev.txt | grep --line-buffered -E "^(Collecting|Successfully)" || true
	@$(PY) -c "import streamlit, sklearn, duckdb" || { echo "The environment is incomplete: run 'make clean venv' and read pip's messages."; exit 1; }
	touch $@

venv: $(VENV)/.installed

## Run the worker, the HTTP API and the dashboard under one supervisor (engine/supervisor.py): SIGTERM or
## Ctrl-C stops them all within seconds. With an empty default data directory (./data: RETRAINER_HOME and
## HOME_DIR not set) the dashboard starts first and the 90-day demo is built beside it (its pages show the
## progress); the worker and the API start after it. Any other data directory starts empty: never a demo there.
DEMO_IF_EMPTY := $(if $(filter ./data,$(HOME_DIR)),--demo-if-empty)
run: venv
	@echo "[start] Starting the worker, the API on port $(API_PORT) and the dashboard on http://localhost:$(PORT) (Ctrl-C stops them all) ..."
	@RETRAINER_HOME="$(HOME_DIR)" exec $(PY) -m engine run --port $(PORT) --api-port $(API_PORT) $(DEMO_IF_EMPTY)

## Create the environment and run every test.
test: venv
	$(PY) -m pytest -q

demo: venv
	RETRAINER_HOME="$(HOME_DIR)" $(PY) -m engine demo

worker: venv
	RETRAINER_HOME="$(HOME_DIR)" $(PY) -m engine worker

## Every benchmark beside its baseline (about 31 minutes); bench-quick: about 7. Their own environment,
## so MLflow (the peer comparison) never enters the runtime one.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: requirements.txt requirements-dev.txt requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks

bench-quick: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks --quick

clean:
	rm -rf $(VENV) $(BENCH_VENV) test-output
