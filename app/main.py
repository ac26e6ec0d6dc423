"""The FastAPI application: factory, lifespan and router mounting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from agents.extraction import extraction_model
from agents.journey import JourneyGuide
from agents.llm import LLMNotConfiguredError
from app import __version__
from app.auth.router import router as auth_router
from app.auth.service import PasswordChecks
from app.batch.journey_router import router as journey_router
from app.batch.oauth_router import router as oauth_router
from app.batch.router import router as batch_router
from app.batch.scheduled import BatchScheduler
from app.billing.payments import PaymentListener
from app.billing.router import router as billing_router
from app.billing.scheduled import run_grace_sweep_forever
from app.billing.stripe_api import StripeGateway
from app.chat.engine import ChatEngine, model_config
from app.chat.router import router as chat_router
from app.chat.service import ChatService
from app.core.body_limit import BodyLimitMiddleware, BodyLimits
from app.core.database import create_engine, create_sessionmaker
from app.core.errors import install_error_handlers
from app.core.keys import MasterKeyring
from app.core.logging import RequestContextMiddleware
from app.core.rate_limit import RateLimiter, limiter_storage
from app.core.secrets import resolve_secrets
from app.core.settings import Settings
from app.device.connection import ChatHandler
from app.device.registry import DeviceRegistry
from app.device.router import router as device_router
from app.health.router import router as health_router
from app.memory.router import router as memory_router
from app.memory.scheduled import run_pattern_pass_forever
from app.memory.turns import log_memory_mode
from app.observability.router import router as metrics_router
from app.observability.tracing import instrument_app, start_tracing
from app.plugins.models import PluginVersion
from app.plugins.revenue import PluginSales
from app.plugins.router import router as plugins_router
from app.plugins.scheduled import run_payouts_forever
from app.storage.blobs import BlobStore
from app.storage.router import router as storage_router
from app.storage.scheduled import STORAGE_BLOB_KEYS, run_orphan_sweep_forever
from app.tiers.downgrade import DOWNGRADE_EFFECTS, DowngradeEffect
from app.usage.recorder import UsageRecorder
from app.usage.router import router as usage_router

API_PREFIX = "/api/v1"
# Every column naming a blob in the blob store: what the orphan sweep keeps.
BLOB_KEY_COLUMNS = (*STORAGE_BLOB_KEYS, PluginVersion.blob_key)
# Domains selling one-off items, told of their payments by billing's webhook.
PAYMENT_LISTENERS: tuple[PaymentListener, ...] = (PluginSales(),)


def create_app(
    settings: Settings | None = None,
    *,
    chat_handler: ChatHandler | None = None,
    downgrade_effects: Sequence[DowngradeEffect] = DOWNGRADE_EFFECTS,
) -> FastAPI:
    """Build the app for `settings` (read from the environment when omitted).

    `DATABASE_URL` must be resolved by then: the launcher in `app.cli` starts
    the embedded PostgreSQL and fills it in before calling this. `chat_handler`
    replaces the chat service for device chat requests (tests script it);
    `downgrade_effects` what a plan change does to other domains' data.
    """
    settings = resolve_secrets(settings or Settings())
    if settings.database_url is None:
        msg = "DATABASE_URL is not set; start the server with `python -m app serve`"
        raise RuntimeError(msg)
    database_url = settings.database_url
    # Fails here, at start-up, for a storage URI `limits` does not know.
    rate_limit_storage = limiter_storage(settings.rate_limit_storage_uri)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout_s=settings.db_pool_timeout_s,
            connect_timeout_s=settings.db_connect_timeout_s,
        )
        app.state.settings = settings
        app.state.keyring = MasterKeyring.from_settings(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        tracing = start_tracing(tracer_provider, engine)
        usage_recorder = UsageRecorder(app.state.sessionmaker)
        usage_recorder.start()
        app.state.usage_recorder = usage_recorder
        app.state.password_checks = PasswordChecks(
            workers=settings.bcrypt_workers, max_waiting=settings.bcrypt_max_waiting
        )
        app.state.device_registry = DeviceRegistry(
            max_per_user=settings.ws_max_connections_per_user,
            max_total=settings.ws_max_connections,
        )
        app.state.rate_limiter = RateLimiter(rate_limit_storage)
        app.state.downgrade_effects = tuple(downgrade_effects)
        app.state.payment_listeners = PAYMENT_LISTENERS
        app.state.blob_store = BlobStore.from_settings(settings)
        app.state.stripe_gateway = (
            StripeGateway(
                api_key=settings.stripe_secret_key.get_secret_value(),
                api_base=settings.stripe_api_base,
            )
            if settings.stripe_secret_key is not None
            else None
        )
        chat_engine = await ChatEngine.start(settings, app.state.keyring, database_url)
        log_memory_mode(settings)
        app.state.chat_engine = chat_engine
        app.state.chat_service = ChatService(
            settings=settings,
            engine=chat_engine,
            sessionmaker=app.state.sessionmaker,
            keyring=app.state.keyring,
            registry=app.state.device_registry,
            usage=usage_recorder,
        )
        app.state.chat_handler = chat_handler or app.state.chat_service.run_device_turn
        try:
            extraction, not_configured = extraction_model(model_config(settings)), None
        except LLMNotConfiguredError as exc:
            extraction, not_configured = None, str(exc)
        app.state.batch_scheduler = BatchScheduler(
            settings=settings,
            sessionmaker=app.state.sessionmaker,
            keyring=app.state.keyring,
            registry=app.state.device_registry,
            usage=usage_recorder,
            model=extraction,
            not_configured=not_configured,
        )
        app.state.hello_handler = app.state.batch_scheduler.catch_up
        app.state.journey_guide = None if extraction is None else JourneyGuide(extraction)
        jobs = [
            asyncio.create_task(
                run_pattern_pass_forever(
                    sessionmaker=app.state.sessionmaker,
                    keyring=app.state.keyring,
                    interval_s=settings.memory_pattern_interval_s,
                )
            ),
            asyncio.create_task(
                run_grace_sweep_forever(
                    sessionmaker=app.state.sessionmaker,
                    settings=settings,
                    effects=app.state.downgrade_effects,
                )
            ),
            asyncio.create_task(app.state.batch_scheduler.run_forever()),
            asyncio.create_task(
                run_orphan_sweep_forever(
                    sessionmaker=app.state.sessionmaker,
                    blobs=app.state.blob_store,
                    interval_s=settings.storage_sweep_interval_s,
                    min_age_s=settings.storage_orphan_age_s,
                    key_columns=BLOB_KEY_COLUMNS,
                )
            ),
        ]
        if app.state.stripe_gateway is not None:
            jobs.append(
                asyncio.create_task(
                    run_payouts_forever(
                        sessionmaker=app.state.sessionmaker,
                        gateway=app.state.stripe_gateway,
                        interval_s=settings.plugin_payout_interval_s,
                    )
                )
            )
        try:
            yield
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            await app.state.batch_scheduler.close()
            if app.state.stripe_gateway is not None:
                await app.state.stripe_gateway.close()
            await chat_engine.close()
            await usage_recorder.close()
            await app.state.blob_store.aclose()
            await engine.dispose()
            if tracing is not None:
                # Flushing sends the last spans over HTTP: not on the event loop.
                await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(title="Adiuva server", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    # Innermost, so a 413 still carries CORS headers and gets its request log line.
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits.for_api(settings, prefix=API_PREFIX))
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=settings.cors_origin_regex,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(RequestContextMiddleware)
    tracer_provider = instrument_app(app, settings)

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(health_router)
    api.include_router(auth_router)
    api.include_router(device_router)
    api.include_router(chat_router)
    api.include_router(memory_router)
    api.include_router(journey_router)
    api.include_router(batch_router)
    api.include_router(oauth_router)
    api.include_router(usage_router)
    api.include_router(billing_router)
    api.include_router(storage_router)
    api.include_router(plugins_router)
    app.include_router(api)
    app.include_router(metrics_router)
    return app
