# Set-up happens on first use: `make test` and `make lab` both build .venv
# when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lab benchmark clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch is pinned in pyproject.toml; installing it alone first keeps pip
	# from ever resolving a CUDA build through another package.
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/00_index.ipynb

benchmark: $(STAMP)
	$(BIN)/python benchmarks/convex_engine.py

clean:
	rm -rf $(VENV)
