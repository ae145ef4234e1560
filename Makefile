PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# The constraints file pins torch to the CPU wheel; every pip call goes through it.
PIPC := $(PIP) install -c constraints.txt

.PHONY: setup demo test bench clean

setup: $(BIN)/occiforge

$(BIN)/occiforge: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIPC) -q torch==2.13.0
	$(PIPC) -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/occiforge run recipes/demo.yaml

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache
