# The inference API: ONNX Runtime behind FastAPI/uvicorn, no torch. Build after `dvc pull export` (or `dvc repro`)
# has filled models/onnx/:   docker build -t cola-api . && docker run -p 8080:8080 cola-api
# Settings are COLA_SERVE_* environment variables (docs/serving.md); the image holds no secrets.
# The base by digest (docker-library's record of python:3.11-slim, Aug 2026): bump it with
# `docker buildx imagetools inspect python:3.11-slim`.
# CI builds with --build-arg BASE=<a local base of the same name>, since no registry is reachable there (.ci/images).
ARG BASE=python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-serve.txt /tmp/requirements-serve.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements-serve.txt

FROM ${BASE}
# HOME is /tmp: ONNX Runtime writes a telemetry file there, and /app stays read-only (run with --tmpfs /tmp).
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 COLA_SERVE_MODEL_DIR=/app/models/onnx \
    HOME=/tmp
RUN groupadd --system --gid 10001 app && \
    useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY acceptability/__init__.py acceptability/
COPY acceptability/inference/ acceptability/inference/
COPY acceptability/serving/ acceptability/serving/
COPY models/onnx/ models/onnx/
# Compiled now: at run time the file system may be read-only (PYTHONDONTWRITEBYTECODE keeps it clean anyway).
RUN python -m compileall -q acceptability
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
# uvicorn with the limits of acceptability/serving/server.py (head size and deadline, connection cap, no access
# log); it finishes the requests in flight on SIGTERM (docker stop) before the model is unloaded.
CMD ["python", "-m", "acceptability.serving.server", "--host", "0.0.0.0", "--port", "8080"]
