# Every target runs from the project root with the project's own virtual environment.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# .env (optional) may move DATA_DIR; the code reads the rest of it itself.
-include .env

# Demo data size (override: make run CUSTOMERS=100000)
CUSTOMERS ?= 10000
REWARDS ?= 200
DAYS ?= 180
START_DATE ?= 2023-03-01
SEED ?= 42
# The model speed targets are set at 1M customers x 1,000 rewards (synthetic inputs).
BENCH_MODEL_CUSTOMERS ?= 1000000
# The API's speed target (recommended_rewards p99 < 20 ms at 200 req/s) is set at 100,000.
BENCH_API_CUSTOMERS ?= 100000
DATA_DIR ?= data

export DATA_DIR
# The demo's first day is the first partition too, so no seeded row falls before it.
PARTITIONS_START_DATE ?= $(START_DATE)
export PARTITIONS_START_DATE
export DAGSTER_HOME := $(CURDIR)/dagster_home
# One planned event per asset of a range run, not one per asset and day: a year's backfill
# no longer starts with thousands of event-log writes (docs/architecture.md, "Per-partition
# overhead"). The price: a failed range run's partitions show as missing, not failed.
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS
# A range run's per-day materialisations of an asset reach dagster_home's event log as one
# batch, one transaction per database instead of one per event (same section of the docs).
DAGSTER_EVENT_BATCH_SIZE ?= 1000
export DAGSTER_EVENT_BATCH_SIZE

.PHONY: install lock run seed dev api test notebooks lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,celery]'
	touch $(STAMP)

install: $(STAMP) ## virtual environment from pyproject.toml, at the versions of constraints.txt

lock: ## re-resolve constraints.txt from pyproject.toml in a scratch environment
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,celery]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable \
		| grep -v '^reward' ; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

seed: install ## demo data into $(DATA_DIR)/ (a new data set: fresh embedded stores too)
	rm -f $(DATA_DIR)/warehouse.duckdb $(DATA_DIR)/warehouse.duckdb.wal $(DATA_DIR)/ops.sqlite*
	rm -rf $(DATA_DIR)/models $(DATA_DIR)/snapshots $(DATA_DIR)/outbox
	$(BIN)/python scripts/seed_data.py --output $(DATA_DIR)/ --customers $(CUSTOMERS) \
		--rewards $(REWARDS) --days $(DAYS) --start-date $(START_DATE) --seed $(SEED)

run: seed ## seed, materialise every asset on DuckDB, print a summary
	$(BIN)/reward-assets run

# The pools' limits are written into the instance before the daemon starts: it applies
# dagster.yaml's default_limit only from the second time it sees a pool in the queue.
dev: install ## Dagster UI and daemon on the same local storage as `make run`
	$(BIN)/dagster instance concurrency set warehouse 1
	$(BIN)/dagster instance concurrency set llm 1
	$(BIN)/dg dev

api: install ## the HTTP API on API_HOST:API_PORT (default 127.0.0.1:8000), docs at /docs
	$(BIN)/reward-assets api

# One pytest-xdist worker per core; a group of modules sharing a session build runs whole
# on one of them (reward_assets_tests/conftest.py). TEST_WORKERS=0: serially, as `pytest`.
TEST_WORKERS ?= auto
test: install ## the whole test suite, on one worker process per core
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

notebooks: install ## run the notebooks/ on the outputs of `make run` (nothing is saved)
	$(BIN)/jupyter-execute notebooks/*.ipynb

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install ## wall time and peak memory per asset at CUSTOMERS, the daily cycle, a year's backfill, the model and API speed targets
	$(BIN)/python scripts/benchmark.py --customers $(CUSTOMERS) \
		$(if $(filter command line environment,$(origin REWARDS)),--rewards $(REWARDS)) \
		--days $(DAYS) --seed $(SEED)
	$(BIN)/python scripts/bench_daily.py --customers $(CUSTOMERS) \
		$(if $(filter command line environment,$(origin REWARDS)),--rewards $(REWARDS)) \
		--days $(DAYS) --seed $(SEED)
	$(BIN)/python scripts/bench_backfill.py
	$(BIN)/python scripts/bench_recommendations.py --customers $(BENCH_MODEL_CUSTOMERS)
	$(BIN)/python scripts/bench_churn.py --customers $(BENCH_MODEL_CUSTOMERS)
	$(BIN)/python scripts/bench_api.py --customers $(BENCH_API_CUSTOMERS)

clean: ## remove generated data, the warehouse and local Dagster runs
	find $(DATA_DIR) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find dagster_home -mindepth 1 -maxdepth 1 ! -name dagster.yaml -exec rm -rf {} +
