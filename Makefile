# Accord developer commands. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export ACCORD_DATABASE_URL ?= sqlite:///./var/accord.db

.PHONY: install run test lint typecheck unit openapi bench clean

$(VENV)/.installed: pyproject.toml requirements/regorus.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The embedded Rego engine, hash-checked (see requirements/regorus.txt).
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/regorus.txt
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## Run the service on SQLite with the embedded engine and demo data.
run: install
	$(PY) -m service serve --demo --host $(HOST) --port $(PORT)

## Lint, type-check and run the whole suite (SQLite and PostgreSQL).
test: install lint typecheck unit

lint:
	$(VENV)/bin/ruff check service tests bench migrations
	$(VENV)/bin/ruff format --check service tests bench migrations

typecheck:
	$(VENV)/bin/mypy

unit:
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

openapi: install
	$(PY) -m service openapi

bench: install
	$(PY) bench/decisions.py --database both

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
