"""OpenTelemetry traces, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Off by default: then `tracer()` is a no-op tracer and nothing is instrumented.
When on, the maintained instrumentations make the HTTP request spans (FastAPI),
the database spans (SQLAlchemy) and the outgoing HTTP spans of httpx clients
(LiteLLM sends through its own aiohttp transport, which httpx's instrumentation
does not see); the server adds spans of its own where no library has them:
each device chat request, each model call and each tool call. Spans
carry ids, roles, models, tool actions and token counts, never message text.

The device socket is left out of the FastAPI instrumentation: its span would
last as long as the connection and its URL carries the access token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
from app.core.settings import Settings

logger = logging.getLogger(__name__)

TRACER_NAME = "adiuva"
# Regexes of URLs the FastAPI instrumentation skips (see the module docstring).
EXCLUDED_URLS = "/api/v1/ws/device,/metrics"

_NO_OP = trace.NoOpTracer()
_tracer: trace.Tracer = _NO_OP


def tracer() -> trace.Tracer:
    """The server's tracer: real while tracing is on, a no-op otherwise."""
    return _tracer


@dataclass
class Tracing:
    """The running trace pipeline; `shutdown` flushes what is buffered."""

    provider: TracerProvider
    sqlalchemy: SQLAlchemyInstrumentor
    httpx: HTTPXClientInstrumentor

    def shutdown(self) -> None:
        global _tracer
        _tracer = _NO_OP
        self.sqlalchemy.uninstrument()
        self.httpx.uninstrument()
        self.provider.shutdown()


def instrument_app(app: FastAPI, settings: Settings) -> TracerProvider | None:
    """Set up the exporter and the HTTP request spans, if an endpoint is configured.

    Called when the app is built (the FastAPI instrumentation wraps its
    middleware stack); `start_tracing` completes it in the lifespan.
    """
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return None
    provider = TracerProvider(
        resource=Resource.create(
            {SERVICE_NAME: settings.otel_service_name, SERVICE_VERSION: __version__}
        )
    )
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        # One span per request, not one per ASGI message on top.
        exclude_spans=["receive", "send"],
    )
    logger.info("tracing on: spans go to %s", endpoint)
    return provider


def start_tracing(provider: TracerProvider | None, engine: AsyncEngine) -> Tracing | None:
    """Instrument the database engine and outgoing HTTP, and turn the server's own spans on."""
    global _tracer
    if provider is None:
        return None
    sqlalchemy = SQLAlchemyInstrumentor()
    # The instrumentation declares SQLAlchemy < 2.1; the engine events it hooks are
    # unchanged in 2.1 (the trace test checks its spans arrive).
    sqlalchemy.instrument(engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True)
    httpx = HTTPXClientInstrumentor()
    httpx.instrument(tracer_provider=provider)
    _tracer = provider.get_tracer(TRACER_NAME, __version__)
    return Tracing(provider=provider, sqlalchemy=sqlalchemy, httpx=httpx)
