"""`POST /chat`: the REST fallback when streaming is unavailable."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from app.auth.dependencies import CurrentUser
from app.chat.dependencies import ChatServiceDep
from app.chat.schemas import ChatRequest, ChatResponse
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, JSON_BODY, error

router = APIRouter(tags=["chat"], responses=EVERY_ROUTE)


@router.post(
    "/chat",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(
            503,
            "No language model is configured, the model failed, or the server is "
            "temporarily unavailable.",
        ),
    },
)
async def chat(
    body: ChatRequest, user: CurrentUser, service: ChatServiceDep, background: BackgroundTasks
) -> ChatResponse:
    """Ask the Home assistant and get the whole answer at once.

    Tools run on the user's most recently active desktop; with none online the
    assistant is told so and says it (still 200).
    """
    response, remember = await service.run_rest_turn(
        user_id=user.id, message=body.message, context=body.context
    )
    background.add_task(remember)  # runs after the response has been sent
    return response
