# The two commands are `make run` and `make test`; the rest serve them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
CONTRACT := tests/contract
CONTRACT_STAMP := $(CONTRACT)/node_modules/.installed
LOCALES := ar ckb en
PYBABEL := $(BIN)/pybabel

.PHONY: run test test-postgres lint typecheck pytest install contract-tools locales locales-extract locales-update locales-compile clean mutants

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

## What running needs only (make run), and that with the test tools (make test)
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

install: $(RUN_STAMP)

## Node tools of the contract tests (Stoplight Prism), as pinned in tests/contract/package-lock.json
contract-tools:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(CONTRACT_STAMP); \
	else \
		echo "npm not found: the Prism contract tests will be skipped (they fail when ICSSI_CI is set)"; \
	fi

$(CONTRACT_STAMP): $(CONTRACT)/package.json $(CONTRACT)/package-lock.json
	cd $(CONTRACT) && npm ci --no-audit --no-fund
	touch $(CONTRACT_STAMP)

## make run: install, create or migrate the database, start the bot
run: $(RUN_STAMP)
	$(BIN)/icssi-bot db upgrade
	$(BIN)/icssi-bot run

## make test: lint, type-check and run every test
test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Coverage, in this process and in the bot's processes the tests start; below the floor the
# run fails. It was 94.0 % on SQLite when set (a few timing-dependent lines come and go): raise
# it as tests are added, never lower it to pass.
COVERAGE_FLOOR := 93.5
pytest: $(STAMP) contract-tools
	rm -f .coverage .coverage.*
	$(BIN)/python -m coverage run -m pytest
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report --sort=cover --fail-under=$(COVERAGE_FLOOR)

## make test-postgres: the whole test suite on a throwaway PostgreSQL server (installed if missing)
test-postgres: $(STAMP) contract-tools
	.ci/postgres.sh run $(BIN)/python -m pytest

## make mutants: mutation testing of the core rules (slow, not in CI); M='bot.sender.*' for some
mutants: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,mutants]'
	$(BIN)/mutmut run $(M)
	$(BIN)/mutmut results

## Translations: extract the template, merge it into each catalog, compile (to check)
locales: locales-extract locales-update locales-compile

locales-extract: $(STAMP)
	$(PYBABEL) extract -F locales/babel.cfg -k N_ -k ngettext:1,2 --no-location --sort-output \
		--project=icssi-bot --copyright-holder="Iraqi Civil Society Solidarity Initiative" \
		--msgid-bugs-address=none -o locales/messages.pot .

locales-update: $(STAMP)
	for lang in $(LOCALES); do \
		$(PYBABEL) update -i locales/messages.pot -d locales -l $$lang --no-fuzzy-matching --ignore-obsolete; \
	done

locales-compile: $(STAMP)
	$(PYBABEL) compile -d locales --statistics

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache $(CONTRACT)/node_modules mutants .coverage .coverage.*
