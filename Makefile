# edgemon: every target sets itself up on a fresh Debian / Raspberry Pi OS machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# System packages: the broker for tests and the demo, can-utils for SocketCAN tests,
# QEMU + busybox + kmod for the throwaway VM that gives SocketCAN where the host kernel has none,
# systemd for `systemd-analyze verify` of the unit files.
SYSTEM_PACKAGES := mosquitto mosquitto-clients can-utils qemu-system-x86 busybox-static kmod cpio iproute2 systemd

.PHONY: test demo bench lint typecheck system-packages venv clean

system-packages:
	@scripts/ensure-system-packages.sh $(SYSTEM_PACKAGES)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[agent,backend,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: system-packages $(STAMP) lint typecheck
	$(BIN)/pytest

bench: system-packages $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: system-packages $(STAMP)
	$(BIN)/python -m scripts.demo

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
