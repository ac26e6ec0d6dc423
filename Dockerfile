# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENV=prod \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data
RUN useradd --create-home --uid 10001 adiuva && mkdir /data && chown adiuva /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY --chown=adiuva alembic.ini ./
COPY --chown=adiuva alembic ./alembic
COPY --chown=adiuva app ./app
COPY --chown=adiuva agents ./agents
COPY --chown=adiuva tools ./tools
USER adiuva
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4)"
CMD ["python", "-m", "app", "serve"]
