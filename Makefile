# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup compile pure demo test test-fast bench fuzz fuzz-cli check-install clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
	TLSSNIFF_PURE=1 $(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

## Compile the hot-path modules in place with mypyc (setup.py); a no-op when nothing changed.
## The other modules are byte-compiled as `pip install` does: where PYTHONDONTWRITEBYTECODE
## is set, every run would otherwise parse them again (0.3 G instructions of each start-up).
compile: setup
	$(BIN)/python setup.py --quiet build_ext --inplace
	$(BIN)/python -m compileall -q tlssniff > /dev/null

## Back to the pure-Python modules (what runs where no C compiler is at hand).
pure:
	find tlssniff -name '*.so' -delete
	rm -f tlssniff/_native.json

## The README's first command: analyze the demo capture shipped in captures/.
demo: compile
	$(BIN)/tlssniff analyze captures/demo.pcapng

# pytest's status, except 5 (nothing collected): a suite that ran no test has not passed.
PYTEST = sh -c '"$$0" -m pytest "$$@"; s=$$?; [ $$s -ne 5 ] || { echo "make: pytest collected no tests" >&2; s=1; }; exit $$s' $(BIN)/python

## The whole test suite (what CI runs: .ci/run, on a fresh clone in an empty nested folder).
test: compile
	$(PYTEST) -q

## Unit tests only (no servers, no capture tools).
test-fast: compile
	$(PYTEST) -q -m "not e2e"

## The whole-CLI mutation fuzz for MINUTES (default 10); figures in docs/robustness.md.
MINUTES ?= 10
fuzz-cli: setup
	$(BIN)/python -m fuzz cli --minutes $(MINUTES)

## A fresh virtual environment with `pip install .` (and one with the oldest typer supported):
## the console script's boundary tests, live lo, report with charts, verify (needs root).
check-install:
	bash scripts/check-install.sh

## A minute of every fuzz target (the long runs and their figures: docs/robustness.md).
fuzz: setup
	for t in tls hello reassembly pcap pcapng decode; do \
		$(BIN)/python -m fuzz run $$t --iterations 200000 --max-seconds 60 || exit 1; done

clean: pure
	rm -rf $(VENV) .pytest_cache build .mypy_cache
