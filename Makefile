# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates .venv (once), installs the project into it, then runs.
#
# Torch: torch==2.13.0 (the tested release) is pinned through constraints.txt. From PyPI on Linux
# that is the CUDA build; for the CPU build, or a CUDA build of your choice, install torch into
# .venv first and pass TORCH= (empty) to skip the pin: see README, "Set-up".

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
CONSTRAINTS := $(if $(TORCH),-c constraints.txt,)
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: install demo test lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH),$(BIN)/python -m pip install --quiet $(CONSTRAINTS) "$(TORCH)",)
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/stvg demo --out $(OUT)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/layers.py
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/layers.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/metrics_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
