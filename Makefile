# One entry point for people and CI.  `make test` and `make demo` install what
# they need first (a venv with the system python3 >= 3.11 and the system
# tools, the core compiled with mypyc), so a fresh machine needs nothing but
# these two commands.  Re-running is fast: the install is guarded by a stamp
# file that is redone only when pyproject.toml, setup.py or the deps script
# change, the compile by one redone (incrementally) when a source changes.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUILT  := $(VENV)/.compiled
CORE_SRC := $(shell find src/ustack -name '*.py')
PYTEST_ARGS ?=
# Compile in place (incremental: build/ keeps the C and objects).  A module
# whose C did not change keeps its old .so; it is current all the same, so
# every .so is touched: tests/unit/test_build.py takes an extension older
# than its source for a stale build.
define COMPILE
PYTHONWARNINGS=ignore $(VPY) setup.py -q build_ext --inplace
find src -name '*.so' -exec touch {} +
@$(VPY) -m ustack --version
@touch $(BUILT)
endef

.PHONY: install compile test lint demo bench clean clean-net help

help:
	@echo "make install  venv + python deps + system tools, the core compiled (idempotent)"
	@echo "make compile  recompile the core now (USTACK_PURE=1 runs the sources instead)"
	@echo "make test     ruff, mypy and the whole pytest suite (what CI runs)"
	@echo "make lint     ruff and mypy only"
	@echo "make demo     a ustack in a namespace: ping, UDP echo, counters"
	@echo "make bench    the benchmarks (bench/run.py)"
	@echo "make clean    remove the venv and caches;  make clean-net: stale test namespaces"

install: $(BUILT)

# The venv, the Python packages (ustack itself editable, pure at this step)
# and the system tools.  setuptools, wheel and mypy (mypyc) come first: the
# compile step below builds in this venv, with no download.
$(STAMP): pyproject.toml setup.py scripts/install-system-deps.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ustack needs python3 >= 3.11, found " + sys.version.split()[0])'
	@test -x $(VPY) || { echo "+ $(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install -q 'setuptools>=70' wheel 'mypy>=1.10'
	USTACK_BUILD=pure $(VPY) -m pip install -q --no-build-isolation -e '.[test]'
	PYTHON=$(VPY) scripts/install-system-deps.sh
	@touch $(STAMP)

# The compiled core (setup.py: mypyc, C extensions beside the sources),
# redone whenever a source changes so that no test runs a stale build;
# incremental (build/ keeps the C and objects).  Without a C compiler it says
# so and ustack stays pure Python.
$(BUILT): $(STAMP) $(CORE_SRC)
	$(COMPILE)

# Recompile now (make install does it when a source changed).
compile: $(STAMP)
	$(COMPILE)

# All checks run even if one fails, so one CI run shows every problem; the
# exit status is non-zero if any failed.  The whole suite runs against the
# build make install made (compiled where a compiler was found:
# USTACK_EXPECT_BUILD makes tests/unit/test_build.py fail on a silent
# fallback), the unit and sim tests once more against the pure-Python
# sources (USTACK_PURE=1), so neither build rots.
EXPECT_BUILD ?= compiled
test: install
	@rc=0; \
	echo "== ruff check"; $(VPY) -m ruff check . || rc=1; \
	echo "== mypy (strict, src/)"; $(VPY) -m mypy || rc=1; \
	echo "== pytest, $(EXPECT_BUILD) build"; USTACK_EXPECT_BUILD=$(EXPECT_BUILD) $(VPY) -m pytest -ra --continue-on-collection-errors $(PYTEST_ARGS) tests/ bench/test_bench.py || rc=1; \
	echo "== pytest, pure-Python build: unit and sim"; USTACK_PURE=1 USTACK_EXPECT_BUILD=pure $(VPY) -m pytest -q -ra -p no:cacheprovider $(PYTEST_ARGS) tests/unit tests/sim || rc=1; \
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
	find src -name '*.so' -delete
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
