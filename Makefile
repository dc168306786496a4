# `make demo` and `make test` each work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv clean

$(BIN)/perfci: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/perfci

demo: venv
	$(BIN)/perfci run --suite smoke --engine sim --db perfci.db --out runs/
	$(BIN)/perfci show --db perfci.db

test: venv
	$(BIN)/pytest

clean:
	rm -rf $(VENV) perfci.db runs/ .pytest_cache
