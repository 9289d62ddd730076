# Two commands do everything: `make run` (demo gateway) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8080
WECHAT_FAKE_PORT ?= 8081
YOUZAN_FAKE_PORT ?= 8082
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/0
export TEST_POSTGRES_URL TEST_REDIS_URL

.PHONY: setup run test lint test-sqlite test-postgres fuzz serve worker migrate migrations verify bench bench-inprocess bench-history bench-expiry contract-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

## make run: set up, migrate, seed the demo chain (idempotent), print keys and signed examples, serve on :8080;
## unless WECHAT_API_BASE_URL is set, a fake WeChat on :8081 stands in for WeChat (tests/fakes/wechat.py), and a
## fake Youzan cloud on :8082 takes the demo shop's points pushes (tests/fakes/youzan.py)
run: setup
	@if [ -n "$$WECHAT_API_BASE_URL" ]; then exec $(BIN)/loyalty demo --host $(HOST) --port $(PORT); fi; \
	$(BIN)/python -m tests.fakes.wechat --port $(WECHAT_FAKE_PORT) & fake=$$!; \
	$(BIN)/python -m tests.fakes.youzan --port $(YOUZAN_FAKE_PORT) & cloud=$$!; \
	trap 'kill $$fake $$cloud 2>/dev/null' EXIT INT TERM; \
	sleep 1; WECHAT_API_BASE_URL=http://127.0.0.1:$(WECHAT_FAKE_PORT) YOUZAN_API_BASE_URL=$${YOUZAN_API_BASE_URL:-http://127.0.0.1:$(YOUZAN_FAKE_PORT)} \
	$(BIN)/loyalty demo --host $(HOST) --port $(PORT)

## make test: the suite on SQLite + in-process Redis, then on PostgreSQL + Redis when they answer
## (REQUIRE_SERVICES=1, as in CI, turns "not answering" into a failure)
test: setup lint test-sqlite test-postgres

lint: setup
	$(BIN)/ruff check --quiet gateway loyalty_core adapters tests bench

test-sqlite: setup
	TEST_DATABASE=sqlite $(BIN)/python -m pytest -q -p no:cacheprovider

test-postgres: setup
	@if $(BIN)/python -m tests.services; then \
		echo "== PostgreSQL + Redis pass =="; \
		TEST_DATABASE=postgres $(BIN)/python -m pytest -q -p no:cacheprovider; \
	elif [ "$(REQUIRE_SERVICES)" = "1" ]; then \
		echo "PostgreSQL or Redis not reachable and REQUIRE_SERVICES=1"; exit 1; \
	else \
		echo "PostgreSQL or Redis not reachable: skipped the PostgreSQL + Redis pass"; \
	fi

## make fuzz: the long schemathesis run (every operation, every auth scheme, at least 5,000 requests) against
## its own gateway on a free loopback port and a throwaway SQLite database; fails on any 5xx or schema
## violation. Options: make fuzz FUZZ_ARGS='--seed 7 --max-examples 400' (see python -m tests.fuzz.run --help)
fuzz: setup
	$(BIN)/python -m tests.fuzz.run $(FUZZ_ARGS)

serve: setup
	$(BIN)/loyalty serve --host $(HOST) --port $(PORT)

worker: setup
	$(BIN)/loyalty worker

migrate: setup
	$(BIN)/loyalty migrate

## make migrations: write a new migration after changing loyalty_core/models.py
migrations: setup
	DATABASE_URL=sqlite:///tmp/loyalty-makemigrations.sqlite3 $(BIN)/tortoise -c gateway.orm.TORTOISE_ORM makemigrations

verify: setup
	$(BIN)/loyalty verify

## make bench: the POS mix (60 % scan, 25 % order, 10 % preview, 5 % refund) against the real gateway
## (loyalty serve --workers 2) and a bare aiohttp + asyncpg baseline, alternating rounds, on a throwaway
## copy of a cached seeded database (10,000 members) and PostgreSQL + Redis; under 3 minutes once seeded.
## Prints figures and PASS/MISS against the speed issue's targets, writes bench/results/, always exits 0.
## Options: make bench BENCH_ARGS='--rounds 3 --processes 2' (see .venv/bin/python -m bench --help)
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## make bench-inprocess: the older in-process bench (seven scenarios, the app and its client in one process)
bench-inprocess: setup
	$(BIN)/python -m bench.inprocess $(BENCH_ARGS)

## make bench-history: scan and member view with 1,000 and with 1,000,000 journal entries in the chain (two
## throwaway PostgreSQL databases, the history written in bulk, loyalty serve --workers 1 each, alternating
## rounds of interleaved sequential requests); PASS/MISS within 20 %, statements per request; about 2 minutes.
## Options: make bench-history BENCH_ARGS='--large 200000 --large-own 2000' (see .venv/bin/python -m bench.history --help)
bench-history: $(BENCH_STAMP)
	$(BIN)/python -m bench.history $(BENCH_ARGS)

## make bench-expiry: the expire_points job over 1,000,000 due lots of 100,000 members (a throwaway PostgreSQL
## database, the lots written in bulk); lots/s and members/s, SQL checks and verify after, a second run that
## must do nothing; about 5 minutes. Options: make bench-expiry BENCH_ARGS='--members 10000 --lots 100000'
bench-expiry: $(BENCH_STAMP)
	$(BIN)/python -m bench.expiry $(BENCH_ARGS)

contract-check:
	../shared/tools/contract-check http://$(HOST):$(PORT)

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
