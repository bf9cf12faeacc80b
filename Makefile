# mkh: the two commands a developer needs are `make test-qemu` and `make test`.
# Each brings a fresh Debian/Ubuntu machine up on its own (scripts/bootstrap.sh).

VENV := .venv
PYTEST := $(VENV)/bin/python -m pytest
MKH := $(VENV)/bin/mkh

# The kernel under test (see README): `mkh build` and the suite read these,
# also when they are given on make's command line (make test-qemu MKH_KERNEL=...).
export MKH_KERNEL MKH_KERNEL_TREE

.PHONY: all setup build test test-qemu test-unit lint clean-venv

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

test-qemu: build
	$(PYTEST) -m qemu tests/qemu

test: build lint
	$(PYTEST) tests

clean-venv:
	rm -rf $(VENV)
