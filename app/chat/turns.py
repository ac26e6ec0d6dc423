"""Running one chat turn for a device request.

The Home and Floating supervisors are not part of this build yet: every chat
request is answered with a `chat_unavailable` error (then, as for every
request, `stream_end`), so a desktop client sees a clear reason instead of
silence.
"""

from __future__ import annotations

from app.device.connection import ChatTurn
from app.device.frames import Error, ErrorCode


async def run_turn(turn: ChatTurn) -> None:
    await turn.emit(
        Error(
            code=ErrorCode.CHAT_UNAVAILABLE,
            message="The assistant is not available on this server yet.",
            request_id=turn.request_id,
        )
    )
