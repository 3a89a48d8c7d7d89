# The two commands: `make run` (set up and serve on localhost:6543) and
# `make test` (set up everything the tests need, then the whole suite).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
INI ?= development.ini

.PHONY: run test install lint format demo-data postgres-binaries browser bench bench-tenants clean

$(INSTALLED): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[testing]'
	touch $(INSTALLED)

install: $(INSTALLED)

# Catalog schema and demo tenants, users and data (idempotent).
demo-data: install
	$(BIN)/tenantapp-admin $(INI) init
	$(BIN)/tenantapp-admin $(INI) demo

run: demo-data
	$(BIN)/pserve $(INI)

# The tests start their own PostgreSQL clusters (and a PgBouncer) from the
# Debian packages' binaries; installed here when missing (as root).
postgres-binaries:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! test -x /usr/sbin/pgbouncer; then \
	  echo "installing PostgreSQL server binaries and PgBouncer (apt-get install postgresql pgbouncer)"; \
	  apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql pgbouncer >/dev/null; \
	fi

# The browser tests drive Debian's Chromium (headless) through Playwright,
# which downloads no browser of its own; installed here when missing (as root).
browser:
	@if ! test -x /usr/bin/chromium; then \
	  echo "installing Chromium (apt-get install chromium)"; \
	  apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check tenantapp tests bench
	$(BIN)/ruff format --check tenantapp tests bench

format: install
	$(BIN)/ruff format tenantapp tests bench
	$(BIN)/ruff check --fix tenantapp tests bench

test: install postgres-binaries browser lint
	@echo "=== tests on SQLite ==="
	$(BIN)/python -m pytest --backend sqlite
	@echo "=== tests on PostgreSQL ==="
	$(BIN)/python -m pytest --backend postgresql

# The benchmark of issue 5 (not part of `make test`): a throwaway PostgreSQL
# cluster, production.ini settings served by waitress, wrk on loopback.
# `COMPARE=1 make bench` also runs ../shared/bench/compare.sh (~75 s more;
# COMPARE=3 runs it three times).
bench: install postgres-binaries
	COMPARE=$(COMPARE) $(BIN)/python bench/run_bench.py

# 500 tenant databases (TENANTS=N), each used once: connections held, memory,
# cold-tenant latency beside PostgreSQL's own (psycopg2 alone, one tenant in
# ten), a no-op `tenant migrate --all`; ends with one line, BENCH-TENANTS {json}.
bench-tenants: install postgres-binaries
	$(BIN)/python bench/many_tenants.py --tenants $(or $(TENANTS),500)

clean:
	rm -rf var $(VENV) *.egg-info .pytest_cache .ruff_cache test-artifacts
