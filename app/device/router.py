"""`WS /api/v1/ws/device`: authenticate, enforce connection limits, hand over to the adapter."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from app.auth import service as auth_service
from app.core.database import is_database_unavailable
from app.core.dependencies import SessionmakerDep, SettingsDep
from app.core.errors import UnauthorizedError, error_frame
from app.core.settings import Settings
from app.device.connection import DeviceConnection
from app.device.dependencies import ChatHandlerDep, DeviceRegistryDep, HelloHandlerDep
from app.device.protocol import CloseCode, DeviceProtocol, ProtocolLimits
from app.device.registry import ConnectionLimitError
from app.tiers.dependencies import RateLimiterDep
from app.tiers.rate_limits import limit_user
from protocol.frames import Error, ErrorCode

router = APIRouter()
logger = logging.getLogger(__name__)


def protocol_limits(settings: Settings) -> ProtocolLimits:
    return ProtocolLimits(
        max_frame_bytes=settings.ws_max_frame_bytes,
        messages_per_minute=settings.ws_messages_per_minute,
        invalid_frames_per_minute=settings.ws_invalid_frames_per_minute,
        max_inflight_requests=settings.ws_max_inflight_requests,
        ping_interval_s=settings.ws_ping_interval_s,
        idle_timeout_s=settings.ws_idle_timeout_s,
    )


@router.websocket("/ws/device")
async def device_socket(
    websocket: WebSocket,
    settings: SettingsDep,
    sessionmaker: SessionmakerDep,
    registry: DeviceRegistryDep,
    chat_handler: ChatHandlerDep,
    hello_handler: HelloHandlerDep,
    limiter: RateLimiterDep,
    token: str = "",
) -> None:
    try:
        async with sessionmaker() as session:
            signed_in = await auth_service.sign_in_with_token(
                session=session, settings=settings, access_token=token
            )
    except UnauthorizedError as exc:
        # Accept only to say why: close code 1008 reaches every client library,
        # a refused handshake reaches most as a bare 403.
        await websocket.accept()
        await websocket.close(CloseCode.POLICY_VIOLATION, str(exc.detail))
        return
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        # Not the token's fault: say "later" the way connection limits do (1013).
        await websocket.accept()
        await websocket.send_text(error_frame(exc).to_json())
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "server temporarily unavailable")
        return
    user = signed_in.user

    async def still_signed_in() -> bool:
        async with sessionmaker() as session:
            return await auth_service.login_is_active(
                session=session, session_id=signed_in.session_id
            )

    async def admit_request() -> None:
        # The plan is read per request, so an upgrade applies to the very next one.
        async with sessionmaker() as session:
            plan = await auth_service.plan_of(session=session, user_id=user.id)
        await limit_user(limiter=limiter, settings=settings, user_id=user.id, plan=plan)

    try:
        registry.reserve(user.id)
    except ConnectionLimitError as exc:
        await websocket.accept()
        error = Error(
            code=ErrorCode.TOO_MANY_CONNECTIONS, message=str(exc), retry_after=exc.retry_after
        )
        await websocket.send_text(error.to_json())
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "too many connections")
        return
    try:
        await websocket.accept()
        connection = DeviceConnection(
            websocket,
            user_id=user.id,
            protocol=DeviceProtocol(limits=protocol_limits(settings)),
            registry=registry,
            chat_handler=chat_handler,
            tool_call_timeout_s=settings.tool_call_timeout_s,
            still_signed_in=still_signed_in,
            hello_handler=hello_handler,
            admit_request=admit_request,
        )
        await connection.run()
    finally:
        registry.release(user.id)
