# nanochat OpenAI-compatible server (and web UI), CPU by default.
#   CPU:    docker build -t nanochat .
#   CUDA:   docker build -t nanochat:cuda \
#             --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#             --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   Run:    docker run -p 8000:8000 nanochat                                   (bundled demo model)
#           docker run -p 8000:8000 -v /path/to/checkpoint:/models:ro nanochat (serves what is in /models)
#           docker run --network host nanochat --port 9000                     (HEALTHCHECK follows the port)
# Machines that cannot reach the PyTorch index or need a CA bundle for pip (see tools/docker_test.py):
#   put the torch wheel and the bundle under docker/local/ (the only part of docker/ the builder copies) and pass
#     --build-arg TORCH_WHEELS=docker/local/wheels --build-arg PIP_CERT_FILE=docker/local/ca-certificates.crt
#   (paths relative to the build context), and PIP_ARGS for any other pip option, e.g. "--index-url URL".
# Metadata steps come before the big COPY/RUN steps: with the vfs storage driver every step copies the whole tree.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- base: a Python 3 with venv (python:*-slim and a debootstrap base have it; CUDA images get it from apt)
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# ---- builder: torch (PyTorch index, CPU wheel by default, or a wheel folder in the context), then nanochat
FROM base AS builder
ARG TORCH_VERSION=2.13.0 \
    TORCH_INDEX=https://download.pytorch.org/whl/cpu \
    TORCH_WHEELS= \
    PIP_CERT_FILE= \
    PIP_ARGS=
WORKDIR /build
COPY docker/local/ docker/local/
# pip's options for every install below: the CA bundle, then PIP_ARGS (split on spaces); bash arrays (SHELL above)
# hadolint ignore=SC3054
RUN opts=(); \
    if [ -n "${PIP_CERT_FILE}" ]; then \
      [ -f "${PIP_CERT_FILE}" ] || { echo "PIP_CERT_FILE=${PIP_CERT_FILE}: no such file under docker/local/ in the build context" >&2; exit 1; }; \
      opts+=(--cert "/build/${PIP_CERT_FILE}"); fi; \
    read -r -a extra <<< "${PIP_ARGS}"; opts+=("${extra[@]}"); \
    printf '%s\n' "${opts[@]}" > /build/pip-opts; \
    python3 -m venv /opt/venv \
    && if [ -n "${TORCH_WHEELS}" ]; then \
         [ -d "${TORCH_WHEELS}" ] || { echo "TORCH_WHEELS=${TORCH_WHEELS}: no such folder under docker/local/ in the build context" >&2; exit 1; }; \
         /opt/venv/bin/pip install "${opts[@]}" --no-index --no-deps --find-links "/build/${TORCH_WHEELS}" "torch==${TORCH_VERSION}" \
         && /opt/venv/bin/pip install "${opts[@]}" --find-links "/build/${TORCH_WHEELS}" "torch==${TORCH_VERSION}"; \
       else \
         /opt/venv/bin/pip install "${opts[@]}" --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"; \
       fi
COPY settings.ini setup.py README.md ./
COPY nanochat ./nanochat
# the `serve` extra where settings.ini defines one (pip only warns where it does not); check the demo model is in
# hadolint ignore=SC3054
RUN mapfile -t opts < /build/pip-opts; \
    /opt/venv/bin/pip install "${opts[@]}" ".[serve]" \
    && /opt/venv/bin/python -c "import nanochat.server, nanochat.checkpoint; nanochat.checkpoint.find_checkpoint(None, 'sft')"

# ---- runtime: the base plus the venv; no build inputs, no compiler; a non-root user; the model folder as a volume
FROM base AS runtime
RUN groupadd --gid 10001 nanochat \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin nanochat \
    && mkdir -p /models \
    && chown nanochat:nanochat /models
COPY docker/entrypoint.py docker/healthcheck.py /usr/local/lib/nanochat/
USER 10001:10001
WORKDIR /home/nanochat
VOLUME ["/models"]
EXPOSE 8000
# follows the --port/--host the server was started with (read from its command line in /proc)
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python3", "/usr/local/lib/nanochat/healthcheck.py"]
ENTRYPOINT ["python3", "/usr/local/lib/nanochat/entrypoint.py"]
COPY --from=builder /opt/venv /opt/venv
