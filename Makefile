# The two commands: `make demo` runs the whole job on the embedded default,
# `make test` runs the test suite. Both build .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: demo test lint format services install clean bench-serving

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch (already on disk here); any other spec pulls CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/reco demo

# The serving benchmark loads the service with wrk (Debian package), installed if missing.
bench-serving: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
		echo "wrk is missing: installing the Debian package"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/serving.py $(BENCH_ARGS)

services:
	@bash scripts/ensure-services.sh

test: $(STAMP) services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) var .pytest_cache
