# Road Cargo IVRS. `make demo` runs the main job; `make test` runs every test, `make test-fast`
# all but the slow ones.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps asterisk demo test test-fast test-asterisk lint bench clean

# Python packages into .venv (reinstalled when pyproject.toml changes).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Debian packages the project needs (debian-packages.txt), installed only when missing.
system-deps:
	@scripts/install-debian-packages.sh debian-packages.txt

install: system-deps $(STAMP)

# Prompts are built offline first (incremental: a no-op when nothing changed).
demo: install
	$(BIN)/ivrs prompts build --engine espeak --out var/sounds
	$(BIN)/ivrs demo

# Asterisk 22 for the real-Asterisk suite (tests/asterisk/), built from its release source once
# per machine into ~/.cache/road-cargo-ivrs (scripts/build-asterisk.sh). No source: one line,
# and the suite reports itself skipped with it (exit status 3 is that case, not a failure).
asterisk: system-deps
	@scripts/build-asterisk.sh || [ $$? -eq 3 ]

test: install asterisk
	$(BIN)/python -m pytest -q

# The quick loop: every test but those marked slow (pyproject.toml's markers).
test-fast: install
	$(BIN)/python -m pytest -q -m 'not slow'

# Only the real-Asterisk suite.
test-asterisk: install asterisk
	$(BIN)/python -m pytest -q -m asterisk tests/asterisk

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ivr ami_client backend_client formats prompts otp backend cli

clean:
	rm -rf $(VENV) var build *.egg-info
