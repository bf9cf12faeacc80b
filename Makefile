# mkh: the two commands a developer needs are `make test-qemu` and `make test`.
# Each brings a fresh Debian 12 machine up on its own (scripts/bootstrap.sh).

VENV := .venv
PYTEST := $(VENV)/bin/python -m pytest
MKH := $(VENV)/bin/mkh
# The suite runs in parallel (pytest-xdist), one worker per core unless JOBS= says.
JOBS ?= $(shell nproc)
# JUnit XML of the last run, in the cache (nothing generated lands in the repository).
JUNIT ?= $(shell $(VENV)/bin/python -c \
	'from harness.core.paths import cache_root; print(cache_root() / "results" / "junit.xml")')
SUITE = -n $(JOBS) --dist loadfile --junitxml=$(JUNIT) $(if $(BASETEMP),--basetemp=$(BASETEMP))
# Labels of the self-hosted runners the workflows name (actionlint checks the rest).
RUNNER_LABELS := mkh-lab

# The kernel under test (docs/kernel-series.md): `mkh build` and the suite read these,
# also when they are given on make's command line (make test-qemu MKH_KERNEL=...).
export MKH_KERNEL MKH_KERNEL_TREE
# `make test-qemu TRANSPORT=ssh`: the host's commands over SSH instead of ttyS0.
ifneq ($(TRANSPORT),)
export MKH_TRANSPORT := $(TRANSPORT)
endif
# `make test-qemu DEBUG_KERNEL=1`: the same suite on the debug build.
ifneq ($(DEBUG_KERNEL),)
export MKH_DEBUG_KERNEL := $(DEBUG_KERNEL)
endif

.PHONY: all setup build test test-qemu test-hw test-unit lint coverage clean-venv

all: test

setup:
	@scripts/bootstrap.sh

build: setup
	$(MKH) build

test-unit: setup
	$(PYTEST) tests/unit

lint: setup
	$(VENV)/bin/ruff check harness tests
	$(VENV)/bin/ruff format --check harness tests
	$(VENV)/bin/mypy
	scripts/actionlint.sh $(addprefix --self-hosted-label ,$(RUNNER_LABELS)) .github/workflows/*.yml

# `make test-qemu REPEAT=N`: each test N times, then the pass/fail counts per
# test (mkh flaky, docs/development.md#flakes).
test-qemu: build
ifneq ($(REPEAT),)
	$(MKH) flaky --runs $(REPEAT) --jobs $(JOBS) -m qemu $(if $(BASETEMP),--basetemp $(BASETEMP)) tests/qemu
else
	$(PYTEST) $(SUITE) -m qemu tests/qemu
endif

# The QEMU suite on the coverage build, every kernel's gcov counts summed:
# an lcov HTML report and a summary in the cache's results/ (mkh coverage,
# docs/development.md#coverage).
coverage: setup
	$(MKH) coverage --jobs $(JOBS) $(if $(BASETEMP),--basetemp $(BASETEMP))

# The suite on a lab machine through labgrid (docs/lab.md):
# one test at a time, since there is one machine.
test-hw: build
	@if [ -z "$(LG_ENV)" ]; then \
		echo "make test-hw needs LG_ENV=lab.yaml, a labgrid environment (docs/lab.md)" >&2; exit 2; fi
	$(PYTEST) -m qemu --junitxml=$(JUNIT) $(if $(BASETEMP),--basetemp=$(BASETEMP)) \
		--lg-env $(LG_ENV) tests/qemu

test: build lint
	$(PYTEST) $(SUITE) tests

clean-venv:
	rm -rf $(VENV)
