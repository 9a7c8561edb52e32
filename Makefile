# edgemon: every target sets itself up on a fresh Debian / Raspberry Pi OS machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# System packages: the broker for tests and the demo, can-utils for SocketCAN tests,
# QEMU + busybox + kmod for the throwaway VM that gives SocketCAN where the host kernel has none,
# systemd for `systemd-analyze verify` of the unit files, faketime for the clock-ahead runs,
# postgresql for the PostgreSQL store tests (started by the tests, unprivileged), chromium for
# the headless-browser test of the API docs page.
SYSTEM_PACKAGES := mosquitto mosquitto-clients can-utils qemu-system-x86 busybox-static kmod cpio iproute2 systemd faketime postgresql chromium

.PHONY: test test-clock-ahead demo bench bench-smoke lint typecheck system-packages venv clean

system-packages:
	@scripts/ensure-system-packages.sh $(SYSTEM_PACKAGES)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[agent,backend,dev,plot]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: system-packages $(STAMP) lint typecheck
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-clock-ahead

# The tests that run real processes on the wall clock, again with every clock a month and a year
# ahead (libfaketime; monotonic clocks stay real so timeouts keep their meaning; the
# sitecustomize in tests/support/clock_ahead works around libfaketime's sleep): a test that
# depends on today's date fails now, not on the day it becomes wrong. The fault-injection chain
# and schemathesis runs add minutes and no date path the others do not take. Both shifts run at
# once (the tests mostly wait on real processes; free ports and temporary directories keep them
# apart), each into its own log, printed when both are done.
CLOCK_SHIFTS := +30d +365d
test-clock-ahead: system-packages $(STAMP)
	@logs=$$(mktemp -d); pids=(); \
	for shift in $(CLOCK_SHIFTS); do \
		PYTHONPATH=tests/support/clock_ahead FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f "$$shift" \
			$(BIN)/pytest -q -m wallclock -p no:cacheprovider \
			-k "not faults_broker_restart and not schemathesis" >"$$logs/$$shift.log" 2>&1 & \
		pids+=($$!); \
	done; \
	status=0; i=0; \
	for shift in $(CLOCK_SHIFTS); do \
		wait "$${pids[$$i]}" || status=1; i=$$((i + 1)); \
		echo "== wall-clock tests with the clock $$shift ahead"; cat "$$logs/$$shift.log"; \
	done; \
	rm -rf "$$logs"; exit $$status

# Every benchmark under a deadline (bench/run.py), figures merged into bench/results.json.
# `exec`: make's SIGTERM reaches the runner itself, which stops every process it started.
bench: system-packages $(STAMP)
	exec $(BIN)/python bench/run.py

# The same benchmarks for a few seconds each (no figure meaningful): CI runs it after `make test`.
bench-smoke: system-packages $(STAMP)
	BENCH_SMOKE=1 exec $(BIN)/python bench/run.py

demo: system-packages $(STAMP)
	$(BIN)/python -m scripts.demo

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
