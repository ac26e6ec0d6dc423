"""What can go wrong with batch agents, as the client is told it."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.core.errors import (
    AppError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ServiceUnavailableError,
)


class AgentNotFoundError(NotFoundError):
    """No agent with this id belongs to the user (another user's agent is not found either)."""

    detail = "No such agent"


class DeviceNotConnectedError(ConflictError):
    detail = (
        "The agent's desktop is not connected to the server; open the Adiuva desktop app"
        " on that computer and try again"
    )


class RunAlreadyGoingError(ConflictError):
    detail = "A run of this agent is already going; wait for it to finish"


class ProviderNotConfiguredError(ServiceUnavailableError):
    """The provider's OAuth client is not configured; the detail names the variables."""


class OAuthCallbackError(AppError):
    """The authorization could not be completed (bad, reused or expired state, refusal)."""

    status_code = 400


class UnknownConnectionError(AppError):
    status_code = 400
    detail = (
        "encrypted_token does not name a connection of this account to this provider;"
        " connect the account again"
    )


class ConnectionRefusedByProviderError(AppError):
    status_code = 400
    detail = "The provider no longer accepts this connection; connect the account again"


class ProviderUnavailableError(AppError):
    """The provider's token endpoint could not be reached or failed (502); nothing changed."""

    status_code = 502

    def __init__(self, provider_name: str) -> None:
        super().__init__(f"{provider_name} could not be reached; please try again later")


class InvalidFilterError(RequestValidationError):
    """A `filter_config` that does not fit the agent's provider: a 422 like any invalid
    body (`detail` lists each field, under `body.filter_config`), as the route declares."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(
            [
                {"loc": ("body", "filter_config", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in error.errors()
            ]
        )


class JourneyNotFoundError(NotFoundError):
    """No journey session with this id belongs to the user."""

    detail = "No such setup session"


class JourneyExpiredError(AppError):
    status_code = 410
    detail = "This setup session expired (sessions last an hour); start a new one"


class JourneyFinishedError(ConflictError):
    detail = "This setup session is finished; start a new one to change the template"


class JourneyBusyError(ConflictError):
    detail = "Another answer to this setup session was taken meanwhile; reload and try again"


class JourneyAgentTypeError(RequestValidationError):
    """`agent_id` names an agent of another kind: a 422 like any invalid body."""

    def __init__(self) -> None:
        msg = "agent_id names an agent of another type than agent_type"
        super().__init__([{"loc": ("body", "agent_id"), "msg": msg, "type": "value_error"}])


class JourneyAnswerUnusableError(AppError):
    """The model answered, but not with a question or a template (the session is unchanged)."""

    status_code = 502
    detail = "The language model's answer could not be used; please try again."


class EnabledAgentLimitError(ForbiddenError):
    """The user's plan allows no more enabled batch agents (local and cloud together)."""

    detail = "Your plan allows no more enabled batch agents; disable one or upgrade"

    def __init__(self, *, tier: str, limit: int) -> None:
        agents = "agent" if limit == 1 else "agents"
        super().__init__(
            f"Your {tier} plan allows {limit} enabled batch {agents}; disable one or upgrade"
        )
