# Set-up and entry points. `make run` and `make test` each install everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup run test lint bench clean browser

setup: $(VENV)/.installed

# torch first, pinned: anything that depends on torch would otherwise pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

run: setup
	$(BIN)/ray-longtail run

test: setup browser
	PATH="$(CURDIR)/$(BIN):$$PATH" RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q -p no:cacheprovider

# The browser test drives Debian's chromium (headless, through Playwright's client: no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/embed_throughput.py

clean:
	rm -rf $(VENV) artifacts ray_results
