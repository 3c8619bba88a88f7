# Two entry points for a fresh machine with Python 3.11 and pip:
#   make demo   installs llmgather into .venv and runs the demo on the embedded simulator
#   make test   installs llmgather with its test extras into .venv and runs the whole suite
# Both install the versions recorded in constraints.txt, the lock of tested versions, so a
# release elsewhere cannot break them. `make lock` is the one deliberate way to move on:
# it installs the newest versions into .venv-latest, runs the whole suite there, and only
# when it passes writes those versions into constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := constraints.txt
LATEST := .venv-latest

.PHONY: demo test check lint lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) --upgrade pip

$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/llmgather demo

test: $(VENV)/.installed-test
	$(MAKE) check BIN=$(BIN)

# Lint, types and the whole suite, with the tools of whichever environment BIN names.
check: lint
	$(BIN)/python -m pytest

lint:
	$(BIN)/python -m ruff check src tests
	$(BIN)/python -m ruff format --check src tests
	$(BIN)/python -m mypy

lock:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade -e '.[test]'
	LLMGATHER_LOCKING=1 $(MAKE) check BIN=$(LATEST)/bin
	{ echo "# The tested versions: make demo and make test install these (pip -c)."; \
	  echo "# Written by 'make lock' after the whole suite passed on them; do not edit by hand."; \
	  $(LATEST)/bin/python -m pip freeze --all --exclude-editable | grep -v '^-e '; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	@echo "constraints.txt refreshed; commit it with the suite's result."

clean:
	rm -rf $(VENV) $(LATEST) build dist .pytest_cache .ruff_cache .mypy_cache
