# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup compile pure demo test test-fast bench fuzz clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
	TLSSNIFF_PURE=1 $(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

## Compile the hot-path modules in place with mypyc (setup.py); a no-op when nothing changed.
compile: setup
	$(BIN)/python setup.py --quiet build_ext --inplace

## Back to the pure-Python modules (what runs where no C compiler is at hand).
pure:
	find tlssniff -name '*.so' -delete
	rm -f tlssniff/_native.json

## The README's first command: analyze the demo capture shipped in captures/.
demo: compile
	$(BIN)/tlssniff analyze captures/demo.pcapng

## The whole test suite (what CI runs).
test: compile
	$(BIN)/python -m pytest -q

## Unit tests only (no servers, no capture tools).
test-fast: compile
	$(BIN)/python -m pytest -q -m "not e2e"

## A minute of every fuzz target (the long runs and their figures: docs/robustness.md).
fuzz: setup
	for t in tls hello reassembly pcap pcapng decode; do \
		$(BIN)/python -m fuzz run $$t --iterations 200000 --max-seconds 60 || exit 1; done

clean: pure
	rm -rf $(VENV) .pytest_cache build .mypy_cache
