# The two commands of the README: `make demo` and `make test`. Both start from nothing but Python 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first and pinned: the local CPU wheel; a bare `pip install torch` would pull a multi-GB CUDA build.
INSTALL = $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test docs bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(INSTALL) torch==2.13.0
	$(INSTALL) -e ".[all,dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/modelport demo

# the docs site first (--strict: a broken link or anchor fails), into the git-ignored build/;
# then two pytest-xdist workers, one test file each at a time (a file's fixtures are built once);
# PYTEST_ARGS adds options, e.g. `make test PYTEST_ARGS="-n 0 -k tflite"`
PYTEST_ARGS ?=
test: $(VENV)/.installed docs
	$(BIN)/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

bench: $(VENV)/.installed
	$(BIN)/python experiments/run_bench.py

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests experiments

clean:
	rm -rf $(VENV) bundles reports
