# A fresh clone needs only python3 and make: each target creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest conformance conformance-client install clean bench fuzz

$(STAMP): pyproject.toml setup.py src/ripple/_speedups.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

## make run: the chat on 127.0.0.1:8765; open the URL it prints (Ctrl-C stops it)
run: $(STAMP)
	$(PY) -m ripple chat --host 127.0.0.1 --port 8765

## make test: ruff, mypy --strict on src/, then pytest (interop and Autobahn 1-10 included)
test: lint typecheck pytest

lint: $(STAMP)
	$(PY) -m ruff check src tests examples conformance bench fuzz
	$(PY) -m ruff format --check src tests examples conformance bench fuzz

typecheck: $(STAMP)
	$(PY) -m mypy --strict src

pytest: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)
	RIPPLE_NO_SPEEDUPS=1 $(PY) -m pytest -q tests/protocol

## make conformance: Autobahn|Testsuite fuzzing client against ripple echo
conformance: $(STAMP)
	bash conformance/setup.sh
	$(PY) conformance/run.py

## make conformance-client: Autobahn|Testsuite fuzzing server against ripple's client
conformance-client: $(STAMP)
	bash conformance/setup.sh
	$(PY) conformance/run.py --client

## make bench: ripple vs websockets, aiohttp, picows on asyncio and uvloop (< 15 min;
## BENCH_ARGS=--quick for < 1 min); writes bench/results/latest.{md,json,png}
bench: $(STAMP)
	$(PY) -c "import uvloop, picows, matplotlib, websockets, aiohttp" 2>/dev/null \
		|| $(PY) -m pip install --quiet -e '.[test,dev,bench]'
	$(PY) bench/run.py $(BENCH_ARGS)

## make fuzz: atheris on the frame, HTTP and extension-header parsers, FUZZ_SECONDS (60)
## per target, RSS capped at 512 MB; crash inputs land in fuzz/crashes/ (not part of make test)
fuzz: $(STAMP)
	$(PY) -c "import atheris" 2>/dev/null || $(PY) -m pip install --quiet -e '.[fuzz]'
	$(PY) fuzz/run.py --seconds $(or $(FUZZ_SECONDS),60)

clean:
	rm -rf $(VENV) build src/*.egg-info src/ripple/*.so
