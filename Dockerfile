# syntax=docker/dockerfile:1
# The server as an installed package: the locked dependencies and the project go into
# /opt/venv in a build stage; the runtime image gets that venv alone (no source tree),
# owned by root and read-only to the user the server runs as, compiled to bytecode.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
# Dependencies first, from the hash-checked lock, so code changes reuse this layer.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock
COPY pyproject.toml /src/
COPY app /src/app
COPY agents /src/agents
COPY tools /src/tools
COPY protocol /src/protocol
COPY devclient /src/devclient
RUN /opt/venv/bin/pip install --no-deps /src \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENV=prod \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data
RUN useradd --create-home --uid 10001 adiuva && mkdir /data && chown adiuva /data
# No --chown: root owns the code; the server's user can read it, not change it.
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
USER adiuva
EXPOSE 8000
# Liveness only (a database outage must not get the container restarted), on PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/api/v1/health/live', timeout=4)"]
CMD ["adiuva-server", "serve"]
