# Stickerloop: `make run` sets up and serves the platform on one machine; `make test` runs the suite
# on PostgreSQL, then its database tests on SQLite (`make test-fast`: PostgreSQL only, without the
# end-to-end, browser and load tests).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# axe-core for the browser tests' accessibility check, pinned by package-lock.json.
NODE_STAMP := node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests run against the PostgreSQL and Redis already running on the development and CI machines,
# in TEST_WORKERS pytest-xdist processes (one file stays in one process; tests/workers_apart.py
# gives each process its own test database and Redis database).
TEST_WORKERS ?= 2
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/stickerloop
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install run test test-sqlite test-fast schemathesis bench loop world-models lint format system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build lies on the machines' disk; anything else downloads GBs.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

# Where `make run` keeps its database, broker, media, models and logs; the settings read the
# same variable, so a folder given here (or in the environment) holds all of it.
STICKERLOOP_VAR_DIR ?= var

# The site needs only the Python packages (axe-core is for the browser tests).
run: $(STAMP)
	mkdir -p $(STICKERLOOP_VAR_DIR)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py build_default_models
	$(BIN)/python manage.py demo_setup
	@echo "Starting a Celery worker (queues default, gpu, train), beat and the site at http://$(HOST):$(PORT)"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/celery -A stickerloop worker -Q default,gpu,train --pool solo --loglevel INFO \
		> $(STICKERLOOP_VAR_DIR)/worker.log 2>&1 & \
	$(BIN)/celery -A stickerloop beat --schedule $(STICKERLOOP_VAR_DIR)/celerybeat-schedule \
		--loglevel INFO > $(STICKERLOOP_VAR_DIR)/beat.log 2>&1 & \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-sqlite

# The tests that use the database, again on SQLite (in memory), the database `make run` uses: all
# but those marked postgresql, e2e, browser or load (tests/conftest.py chooses them).
test-sqlite: install
	STICKERLOOP_TEST_ON_SQLITE=1 DATABASE_URL=sqlite://:memory: \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The suite without the end-to-end tests (Celery worker subprocesses) and the browser tests:
# under 3 minutes on the 2-core machine, for the edit-test loop. `make test` runs everything.
test-fast: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not e2e and not browser and not load" \
		$(PYTEST_ARGS)

# schemathesis against the site under gunicorn, in its own virtual environment and scratch
# database (tests/security/schemathesis_run.sh): about 3 minutes on the 2-core machine.
schemathesis: install
	PYTHON=$(BIN)/python tests/security/schemathesis_run.sh

# Every benchmark, BENCH_JOBS at a time (bench/_run_all.py): measure with one; CI checks that the
# --quick sizes still run, two at a time.
BENCH_JOBS ?= 1
bench: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(BIN)/python bench/_run_all.py --jobs $(BENCH_JOBS) $(BENCH_ARGS)

# The papers' experiments end to end in the sticker world, through the platform's API and tasks
# (bench/loop.py): at most 45 minutes on 2 cores; LOOP_ARGS=--quick in at most 5 (`make bench
# BENCH_ARGS=--quick` runs it so too). Table on stdout, plot under var/loop, JSON figures last.
loop: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(BIN)/python bench/loop.py $(LOOP_ARGS)

# Rebuild the sticker world's default models (generation/world/weights) from the renderer and
# the recipes, bit for bit: one thread per process (the last build: 76 minutes on the loaded
# 2-core machine).
world-models: install
	$(BIN)/python -m training_bridge.recipes.world_models

# Debian's Chromium for the browser tests (Playwright cannot download its own browser here).
system-deps:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var
