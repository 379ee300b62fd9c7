# nanochat OpenAI-compatible server.
#   CPU (default):  docker build -t nanochat .
#   CUDA:           docker build -t nanochat:cuda \
#                     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   Run:            docker run -p 8000:8000 nanochat                              (bundled demo model)
#                   docker run -p 8000:8000 -v /path/to/checkpoint:/models:ro nanochat --model /models
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- base: a Python 3 with venv (slim images have it; CUDA images get it from apt)
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# ---- builder: torch from the PyTorch index (CPU wheel by default), then nanochat and its dependencies
FROM base AS builder
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY settings.ini setup.py README.md ./
COPY nanochat ./nanochat
RUN pip install --no-cache-dir . \
    && python -c "import nanochat.server"

# ---- runtime: the venv only, a non-root user, the model folder as a volume
FROM base AS runtime
RUN groupadd --gid 10001 nanochat \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin nanochat \
    && mkdir -p /models \
    && chown nanochat:nanochat /models
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
USER 10001:10001
WORKDIR /home/nanochat
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["nanochat", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []
