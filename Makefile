# Two entry points (README.md): `make demo` runs the main job, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint clean mutation

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ubft simulate --schedules 200 --seed 1 --progress

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	tools/typecheck.sh
	$(VENV)/bin/python tools/lint_imports.py

test: lint
	$(VENV)/bin/pytest

# Mutation testing of the safety-critical modules (tools/mutation.py; not part of `make test`).
# Cached under build/mutation/: a second run re-tests only changed mutants. Pass options in
# MUTATION_ARGS, e.g. MUTATION_ARGS="--module ctb_receiver --jobs 2".
mutation: $(STAMP)
	$(VENV)/bin/python tools/mutation.py --min-score 95 $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache .hypothesis
