# One entry point for people and CI.  `make test` and `make demo` install what
# they need first (a venv with the system python3 >= 3.11 and the system
# tools), so a fresh machine needs nothing but these two commands.
# Re-running is fast: the install is guarded by a stamp file that is redone
# only when pyproject.toml or the deps script changes.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint demo bench clean clean-net help

help:
	@echo "make install  venv + python deps + system tools (idempotent)"
	@echo "make test     ruff, mypy and the whole pytest suite (what CI runs)"
	@echo "make lint     ruff and mypy only"
	@echo "make demo     a ustack in a namespace: ping, UDP echo, counters"
	@echo "make bench    the benchmarks (bench/run.py)"
	@echo "make clean    remove the venv and caches;  make clean-net: stale test namespaces"

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ustack needs python3 >= 3.11, found " + sys.version.split()[0])'
	@test -x $(VPY) || { echo "+ $(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install -q -e '.[test]'
	scripts/install-system-deps.sh
	@touch $(STAMP)

# All three checks run even if one fails, so one CI run shows every problem;
# the exit status is non-zero if any failed.
test: install
	@rc=0; \
	echo "== ruff check"; $(VPY) -m ruff check . || rc=1; \
	echo "== mypy (strict, src/)"; $(VPY) -m mypy || rc=1; \
	echo "== pytest"; $(VPY) -m pytest -ra --continue-on-collection-errors $(PYTEST_ARGS) tests/ bench/test_bench.py || rc=1; \
	if [ $$rc -ne 0 ]; then echo "make test: FAILED (see above)"; fi; \
	exit $$rc

lint: install
	@rc=0; $(VPY) -m ruff check . || rc=1; $(VPY) -m mypy || rc=1; exit $$rc

demo: install
	$(VPY) scripts/demo.py

bench: install
	$(VPY) bench/run.py

# Namespaces/links left by a test run that was killed with SIGKILL.
clean-net:
	@if [ -x $(VPY) ]; then $(VPY) -m ustack_testbed reap; else PYTHONPATH=src $(PYTHON) -m ustack_testbed reap; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
