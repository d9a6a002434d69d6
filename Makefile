# One-command set-up: `make demo` and `make test` both create .venv and install first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
MLFLOW := $(VENV)/.installed-mlflow

.PHONY: install demo demo-full test test-fast lint docs bench report fetch clean help check-serve-extra

help:
	@echo "make demo    install, fetch, pre-train UniSRec (text) on ml-1m, transfer to ml-100k, compare with SASRec and Pop, recommend (~6 min)"
	@echo "make demo-full  the same with PMMRec (text + poster images) pre-trained for 2 epochs (roughly half an hour on 2 cores)"
	@echo "make test    install and run the whole test suite"
	@echo "make check-serve-extra  the serve extra alone in a fresh venv serves a content model (CI runs it)"
	@echo "make lint    ruff (lint and format check), the import-linter layer contract and mypy on src/modalrec (pyproject.toml)"
	@echo "make docs    the documentation site (MkDocs Material + API reference from the docstrings) into site/, warnings as errors"
	@echo "make bench   run the benchmarks under bench/ (writes bench/results/*.json), then make report (BENCH_ARGS=--quick: short run)"
	@echo "make report  regenerate docs/results.md, docs/img/*.png and the README's results block from bench/results/*.json"
	@echo "make fetch   download the built-in data sets and encoder weights into \$$MODALREC_HOME (~/.cache/modalrec)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[test,data,text,images]"
	touch $(STAMP)

install: $(STAMP)

# the tests of train.loggers=[mlflow] need MLflow, which `make demo` does not (it is kept out of its install)
$(MLFLOW): $(STAMP)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[mlflow]"
	touch $(MLFLOW)

fetch: install
	$(VENV)/bin/modalrec data fetch
	$(VENV)/bin/modalrec weights fetch

demo: install
	$(PY) scripts/demo.py

demo-full: install
	$(PY) scripts/demo.py --full

test: install $(MLFLOW)
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# the serve extra alone, in a venv of its own (torch's CPU build first, as `make install` does): it must serve
# a content model without anything the other extras bring
SERVE_VENV ?= /tmp/modalrec-serve-extra
check-serve-extra:
	rm -rf $(SERVE_VENV) && $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(SERVE_VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt ".[serve]"
	cd /tmp && $(SERVE_VENV)/bin/python $(CURDIR)/scripts/check_serve_extra.py

docs: install
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

test-fast: install $(MLFLOW)
	$(PY) -m pytest -q -m "not slow and not builtin"

bench: install
	$(PY) bench/run_all.py $(BENCH_ARGS)

report: install
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build site *.egg-info src/*.egg-info
