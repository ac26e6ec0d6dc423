# One command each: run the server, run the tests, lint, regenerate schemas.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPEGEN_STAMP := typegen/node_modules/.installed

.PHONY: run test lint format schema types install clean

run: $(STAMP)
	$(BIN)/python -m app serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The device protocol's JSON Schema, for the desktop app's generated TypeScript types.
schema: $(STAMP)
	$(BIN)/python -m app.device.schema > docs/device-protocol.schema.json

# Those types, from the schema (needs Node 20+). The file names the schema's SHA-256, so a
# test tells when they are stale without Node.
types: schema $(TYPEGEN_STAMP)
	node typegen/generate.mjs docs/device-protocol.schema.json docs/device-protocol.d.ts

$(TYPEGEN_STAMP): typegen/package.json typegen/package-lock.json
	cd typegen && npm ci --no-audit --no-fund
	touch $(TYPEGEN_STAMP)

install: $(STAMP)

# Re-installs whenever a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
