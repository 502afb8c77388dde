# One-command set-up: `make demo` runs the demo, `make test` runs the whole test suite.
# Each target creates the virtualenv it needs in .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-faults lint bench bench-security bench-client bench-subscriptions bench-soak \
	bench-import bench-scale bench-conform codedirs docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dcihub demo $(ARGS)

# The static checks come first: `make test` (which `.ci/run` runs) fails on a type error, a lint
# finding or an unformatted file too.
test: $(STAMP)
	$(BIN)/ruff check src tests tools benchmarks
	$(BIN)/ruff format --check src tests tools benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest $(ARGS)

# The fault rounds at length (docs/reliability.md): ROUNDS=50 SEED=7 make test-faults
ROUNDS ?= 20
SEED   ?= 20261206
test-faults: $(STAMP)
	DCIHUB_FAULT_ROUNDS=$(ROUNDS) DCIHUB_FAULT_SEED=$(SEED) $(BIN)/python -m pytest -s \
		tests/test_faults.py tests/test_many_processes.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests tools benchmarks
	$(BIN)/ruff format --check src tests tools benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(ARGS)

bench-security: $(STAMP)
	$(BIN)/python benchmarks/security.py $(ARGS)

bench-client: $(STAMP)
	$(BIN)/python benchmarks/client.py $(ARGS)

bench-subscriptions: $(STAMP)
	$(BIN)/python benchmarks/subscriptions.py $(ARGS)

bench-soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py $(ARGS)

bench-import: $(STAMP)
	$(BIN)/python benchmarks/importer.py $(ARGS)

bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py $(ARGS)

bench-conform: $(STAMP)
	$(BIN)/python benchmarks/conform.py $(ARGS)

codedirs: $(STAMP)
	$(BIN)/python tools/gen_codedirs.py

docs: $(STAMP)
	$(BIN)/python tools/gen_registry_docs.py
	$(BIN)/python tools/gen_api_examples.py
	$(BIN)/python tools/gen_conformance_docs.py

clean:
	rm -rf $(VENV) dcihub-demo .pytest_cache .mypy_cache
