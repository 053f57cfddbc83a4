# EdgeOpt: `make run` starts the service and web app, `make test` runs every test. Both work from a clean clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: run test install frontend test-python test-frontend test-e2e lint clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -c requirements.lock -e '.[ml,dev]'
	touch $(STAMP)

install: $(STAMP)

# The web app is built only when it exists in this checkout.
frontend:
	@if [ -f frontend/package.json ]; then cd frontend && npm ci --no-audit --no-fund && npm run build; fi

run: install frontend
	$(BIN)/edgeopt serve --host $(HOST) --port $(PORT)

# Two workers, one test file each at a time (module fixtures such as a running topology stay shared): many tests
# wait on servers, workers and subprocesses, so two keep both cores busy (19 min instead of 26 on 2 cores).
# Tests marked `serial` run afterwards in one process: schemathesis's items share one node id, which pytest-xdist
# cannot schedule. One OpenMP thread per process (the test workers and the servers and workers they start): with two
# test workers on two cores, PyTorch's default of one thread per core oversubscribes them (the PyTorch technique
# tests ran in 96 s instead of 144 s).
test-python: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial" --durations=25
	$(BIN)/python -m pytest -q -m serial

test-frontend: frontend
	@if [ -f frontend/package.json ]; then cd frontend && npm test; fi

test-e2e: install frontend
	@if [ -f frontend/e2e/run.mjs ]; then cd frontend && npm run e2e; fi

test: test-python test-frontend test-e2e

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist
