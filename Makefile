# latentgen: every target works on a fresh clone with nothing but Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast quickstart bench clean

install: $(STAMP)

# Re-install only when the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Two pytest workers (pytest-xdist): the suite waits on subprocesses and disks often
# enough that two of them on two cores finish it sooner (tests/conftest.py gives each
# one torch intra-op thread).
test: $(STAMP)
	$(PY) -m pytest -q -n 2

# The inner loop: no test marked slow (own stores end to end, subprocesses).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/run.py

quickstart: $(STAMP)
	$(PY) -m capture quickstart
	$(PY) -m analyze quickstart

clean:
	rm -rf runs/ .pytest_cache
