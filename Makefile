# nanochat: `make serve` to chat with the bundled model, `make test` to run every check.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
SLOW ?=
PYTEST_FLAGS ?= -q -rs

.PHONY: serve test venv export check-sync readme check-readme lint-docker system-deps demo-model bench clean test-slow

venv: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

# torch first, pinned, and only when missing: a range would pull GBs of CUDA wheels on a CPU box.
$(STAMP): $(PY) setup.py settings.ini
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	@touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/nanochat serve --host $(HOST) --port $(PORT) $(ARGS)

export: $(STAMP)
	$(VENV)/bin/nbdev_export

# (a) notebooks and library in sync: exporting must not change anything under nanochat/
check-sync: export
	@if [ -n "$$(git status --porcelain -- nanochat/)" ]; then \
	  echo "nanochat/ differs from what nbs/ exports (run nbdev_export and commit both):"; \
	  git status --porcelain -- nanochat/; git --no-pager diff --stat -- nanochat/; exit 1; fi
	@echo "notebooks and nanochat/ are in sync"

readme: $(STAMP)
	$(PY) tools/make_readme.py

check-readme: $(STAMP)
	$(PY) tools/make_readme.py --check

lint-docker: $(STAMP)
	@if [ -f Dockerfile ]; then $(VENV)/bin/hadolint Dockerfile && echo "Dockerfile: hadolint clean"; fi

# Debian packages the browser and redis tests need (root or sudo; no-op when present)
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	 command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	 if [ -n "$$missing" ]; then \
	   SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	   $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; fi

test: check-sync check-readme lint-docker
	NANOCHAT_SLOW=$(SLOW) $(PY) -m pytest $(PYTEST_FLAGS) tests/

test-slow:
	$(MAKE) test SLOW=1

demo-model: $(STAMP)
	$(VENV)/bin/nanochat train-demo $(ARGS)

bench: $(STAMP)
	$(PY) bench/engine_bench.py $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

# Build the Docker image and check it end to end (tools/docker_test.py: installs docker.io/debootstrap when missing,
# needs root to start dockerd; 15-25 min with vfs on 2 cores). ARGS="--reuse-image --keep-engine" to iterate.
.PHONY: docker-test
docker-test: $(STAMP)
	$(PY) tools/docker_test.py $(ARGS)
