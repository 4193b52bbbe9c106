# moralbank — the two commands of the quick start are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export FLASK_APP := wsgi.py

.PHONY: install translations messages run test test-sqlite test-postgresql bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Compiled catalogues are build output (not committed); zh_CN strings are the source.
translations: $(STAMP)
	$(BIN)/pybabel compile -d moralbank/translations

run: install translations
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo --if-empty
	$(BIN)/flask run --host 127.0.0.1 --port 5000

# The whole suite on SQLite and on PostgreSQL (when TEST_DATABASE_URL is set or 127.0.0.1:5432
# answers), the two runs side by side: see scripts/test-both. Extra pytest options: PYTEST_ARGS.
test: install translations
	scripts/test-both $(PYTEST_ARGS)

test-sqlite: install translations
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-postgresql: install translations
	MORALBANK_TEST_DB=postgresql $(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis

# After adding or changing user-facing strings: re-extract and merge into the English catalogue.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k N_ --no-location --sort-output -o moralbank/translations/messages.pot .
	$(BIN)/pybabel update -i moralbank/translations/messages.pot -d moralbank/translations --no-fuzzy-matching

# The benchmark (not part of `make test`): builds county-sized data sets under bench/data/
# (about 1 GB of disk, ~2 minutes), then serves the app with gunicorn and loads it from another
# process (wrk; `apt-get install wrk` is tried when it is missing and we are root, else a Python
# load generator) on a copy of the 2M set and on PostgreSQL (127.0.0.1:5432, user postgres, with
# Redis at :6379; skipped if unreachable) — 2 GB more disk while it runs, dropped afterwards.
# About 5–7 minutes with --reuse; prints the table, writes bench/results.json. Pass options
# through BENCH_ARGS, e.g. `BENCH_ARGS="--huge"`, `BENCH_ARGS=--reuse`,
# `BENCH_ARGS="--reuse --http-only"` (see `.venv/bin/python bench/run.py --help`).
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)
