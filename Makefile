PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# The constraints file pins torch to the CPU wheel; every pip call goes through it.
PIPC := $(PIP) install -c constraints.txt

.PHONY: setup browser demo test test-fast bench clean

setup: $(BIN)/occiforge browser

# The report's browser test drives Debian's chromium: install it where this machine allows (root,
# apt-get, no prompt; `apt-get update` only if apt knows no candidate yet). Anywhere else setup
# still succeeds and that test skips with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update -qq || true; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || true; \
	  fi; \
	  command -v chromium >/dev/null 2>&1 || echo "note: chromium not installed; the report's browser test will skip"; }

$(BIN)/occiforge: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIPC) -q torch==2.13.0
	$(PIPC) -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/occiforge run recipes/demo.yaml

# Two workers (pytest-xdist): much of the suite waits on subprocesses, imports and I/O. Every test
# that reads the demo run goes to one worker (`--dist loadgroup`), so the demo runs once.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test: setup
	$(PYTEST)

# The quick loop while editing: everything but the integration runs and the tests marked slow
# (under 90 s on 2 cores). `make test` is the full suite, as CI runs it.
test-fast: setup
	$(PYTEST) -m "not slow and not integration"

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache
