# One command each: run the server, run the tests, lint, regenerate schemas and locks.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPEGEN_STAMP := typegen/node_modules/.installed

.PHONY: run test test-fast lint format schema types install lock clean

run: $(STAMP)
	$(BIN)/python -m app serve

test: $(STAMP)
	$(BIN)/python -m pytest

# The unit tests alone (no database, sockets off): seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m unit -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The device protocol's JSON Schema, for the desktop app's generated TypeScript types.
schema: $(STAMP)
	$(BIN)/python -m protocol.schema > docs/device-protocol.schema.json

# Those types, from the schema (needs Node 20+). The file names the schema's SHA-256, so a
# test tells when they are stale without Node.
types: schema $(TYPEGEN_STAMP)
	node typegen/generate.mjs docs/device-protocol.schema.json docs/device-protocol.d.ts

$(TYPEGEN_STAMP): typegen/package.json typegen/package-lock.json
	cd typegen && npm ci --no-audit --no-fund
	touch $(TYPEGEN_STAMP)

install: $(STAMP)

# The venv gets requirements-dev.lock (hash-checked), then this project (editable, so its
# metadata, version and `adiuva-server` script exist). Re-installs whenever a lock file
# or pyproject.toml changes.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

# Re-resolve both lock files from pyproject.toml after a dependency changes there. Pins
# already in a lock are kept where they still fit; `make lock UPGRADE=1` moves everything
# to the newest versions allowed. The dev lock is resolved on top of the runtime lock, so
# the two agree on every shared package.
LOCK_FLAGS := --quiet --universal --python-version 3.11 --generate-hashes --no-strip-extras \
	$(if $(UPGRADE),--upgrade)
lock: $(STAMP)
	$(BIN)/uv pip compile $(LOCK_FLAGS) pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile $(LOCK_FLAGS) --group pyproject.toml:dev pyproject.toml \
		-c requirements.lock -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
