# nanochat: `make serve` to chat with the bundled model, `make test` to run every check.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
SLOW ?=
PYTEST_FLAGS ?= -q
# torch: pinned; auto = a local torch wheel pip finds (our build machines), else the CPU build from the PyTorch
# CPU index. TORCH_INDEX=pypi (stock PyPI: the CUDA build on Linux, GBs) or an index URL (e.g. .../whl/cu128).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= auto
# extras of the package (settings.ini): make test needs all of them
EXTRAS ?= all,dev

.PHONY: serve test venv export check-sync readme check-readme lint-docker system-deps demo-model bench clean test-slow vendor-ui

venv: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

# torch first and only when missing (tools/install_torch.py says which build it picks and why)
$(STAMP): $(PY) setup.py settings.ini
	$(PY) tools/install_torch.py --version $(TORCH_VERSION) --index $(TORCH_INDEX)
	$(PIP) install -e ".[$(EXTRAS)]"
	@touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/nanochat serve --host $(HOST) --port $(PORT) $(ARGS)

export: $(STAMP)
	$(VENV)/bin/nbdev_export

# (a) notebooks and library in sync: export into a temporary copy and compare; reports (never overwrites) hand edits
check-sync: $(STAMP)
	$(PY) tools/check_sync.py

readme: $(STAMP)
	$(PY) tools/make_readme.py

check-readme: $(STAMP)
	$(PY) tools/make_readme.py --check

lint-docker: $(STAMP)
	@if [ -f Dockerfile ]; then $(VENV)/bin/hadolint Dockerfile && echo "Dockerfile: hadolint clean"; fi

# Debian packages the tests need, as command:package (root or sudo; a no-op when all are present).
# Without them the browser and redis tests skip with a line naming the package (and fail under CI=true).
SYSTEM_DEPS ?= chromium:chromium redis-server:redis-server
# what only the slow tests need (installed by `make system-deps SLOW=1`), e.g. docker:docker.io debootstrap:debootstrap
SLOW_SYSTEM_DEPS ?= docker:docker.io debootstrap:debootstrap docker-compose:docker-compose
system-deps:
	@missing=""; for d in $(SYSTEM_DEPS) $(if $(SLOW),$(SLOW_SYSTEM_DEPS)); do command -v $${d%%:*} >/dev/null || missing="$$missing $${d#*:}"; done; \
	 if [ -n "$$missing" ]; then \
	   SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	   echo "installing$$missing with apt-get (needs root)"; \
	   $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	 else echo "system packages present:$$(for d in $(SYSTEM_DEPS) $(if $(SLOW),$(SLOW_SYSTEM_DEPS)); do printf ' %s' $${d#*:}; done)"; fi

test: check-sync check-readme lint-docker
	NANOCHAT_SLOW=$(SLOW) $(PY) -m pytest $(PYTEST_FLAGS) tests/

test-slow:
	$(MAKE) test SLOW=1

demo-model: $(STAMP)
	$(VENV)/bin/nanochat train-demo $(ARGS)

bench: $(STAMP)
	$(PY) bench/engine_speed.py $(ARGS)

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

# The safety SFT study (nbs/06c_safety_study.ipynb): fine-tune the demo base at safety shares 0/1/3/10/30% and plot
# refusal, over-refusal, val bpb and stop rate. SAFETY: safety_conversations.jsonl from `nanochat safety-gen` with a real
# teacher; ARGS, e.g. --teacher "model name", --device cuda, --tiny (a seconds-long pipeline check).
SAFETY ?= outputs/safety_conversations.jsonl
.PHONY: safety-study
safety-study: $(STAMP)
	$(PY) -m nanochat.safety_study --safety $(SAFETY) $(ARGS)

# Build the Docker image and check it end to end (tools/docker_test.py: installs docker.io/debootstrap when missing,
# needs root to start dockerd; 15-25 min with vfs on 2 cores). ARGS="--reuse-image --keep-engine" to iterate.
.PHONY: docker-test
docker-test: $(STAMP)
	$(PY) tools/docker_test.py $(ARGS)
