# Developer commands for the template repository itself. They use whatever
# Python environment is active: create and activate a virtual environment first.

PYTHON ?= python
# pytest-xdist workers; every worker bakes whole projects, so keep this modest.
WORKERS ?= 2
# Extra pytest arguments, e.g. make test PYTEST_FLAGS="-k pre_gen"
PYTEST_FLAGS ?=

.PHONY: help install-dev test lint

help:
	@echo "make test    install the dev requirements and run the template's test suite"
	@echo "make lint    ruff and mypy on the hooks and the template's tests"

install-dev:
	$(PYTHON) -m pip install -q -r requirements-dev.txt

# pytest exits with 5 when it collected no test; report that as a failure
# with a clear message instead of a bare status.
test: install-dev
	@status=0; $(PYTHON) -m pytest -n $(WORKERS) --dist loadscope $(PYTEST_FLAGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

lint: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
