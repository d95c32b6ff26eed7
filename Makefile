# The two commands a newcomer runs: `make run` and `make test`.
PY ?= $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres setup migrate browser-deps clean

$(STAMP): pyproject.toml
	@test -x "$(PY)" || PY=python3.12; \
	  [ -d $(VENV) ] || $${PY:-$(PY)} -m venv $(VENV) || python3.12 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python manage.py ensure_operator
	$(BIN)/python manage.py gateway

browser-deps:
	bin/install-browser

test: setup browser-deps
	bin/test-all

test-sqlite: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
