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

.PHONY: serve test venv export check-sync readme check-readme lint-docker system-deps demo-model bench clean test-slow vendor-ui

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

# The web UI's two libraries, vendored from the npm registry (no CDN at run time). Bump a version here, run
# `make vendor-ui`, check the page (tests/test_ui.py), commit nanochat/ui/vendor/ (files, licences, VERSIONS.md).
MARKED_VERSION ?= 18.2.1
DOMPURIFY_VERSION ?= 3.5.0
UI_VENDOR := nanochat/ui/vendor
vendor-ui:
	@command -v npm >/dev/null || { echo "vendor-ui needs npm (apt-get install npm)"; exit 2; }
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	 (cd $$tmp && npm pack --silent --json marked@$(MARKED_VERSION) dompurify@$(DOMPURIFY_VERSION) > pack.json \
	   && for f in *.tgz; do mkdir -p $${f%.tgz} && tar xzf $$f -C $${f%.tgz}; done); \
	 mkdir -p $(UI_VENDOR); \
	 cp $$tmp/marked-$(MARKED_VERSION)/package/lib/marked.umd.js $(UI_VENDOR)/marked.umd.js; \
	 cp $$tmp/marked-$(MARKED_VERSION)/package/LICENSE $(UI_VENDOR)/LICENSE.marked; \
	 cp $$tmp/dompurify-$(DOMPURIFY_VERSION)/package/dist/purify.min.js $(UI_VENDOR)/purify.min.js; \
	 cp $$tmp/dompurify-$(DOMPURIFY_VERSION)/package/LICENSE $(UI_VENDOR)/LICENSE.dompurify; \
	 $(PY) -c "import json,sys; p=json.load(open(sys.argv[1])); print('# Vendored web UI libraries\n\nFetched by \`make vendor-ui\` with \`npm pack\` from the npm registry; do not edit these files.\n\n| package | version | licence | file | tarball integrity |\n|---|---|---|---|---|'); [print(f\"| {x['name']} | {x['version']} | {'Apache-2.0 OR MPL-2.0' if x['name']=='dompurify' else 'MIT'} | {'marked.umd.js' if x['name']=='marked' else 'purify.min.js'} | \`{x['integrity']}\` |\") for x in p]" $$tmp/pack.json > $(UI_VENDOR)/VERSIONS.md; \
	 echo "vendored into $(UI_VENDOR):"; cat $(UI_VENDOR)/VERSIONS.md | tail -2

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
