"""What can go wrong with batch agents, as the client is told it."""

from __future__ import annotations

from pydantic import ValidationError

from app.core.errors import AppError, ConflictError, NotFoundError, ServiceUnavailableError


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


class InvalidFilterError(AppError):
    """A `filter_config` that does not fit the agent's provider (422, naming the fields)."""

    status_code = 422

    def __init__(self, error: ValidationError) -> None:
        where = "; ".join(
            f"filter_config.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in error.errors()
        )
        super().__init__(where[:1000])


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


class JourneyAgentTypeError(AppError):
    status_code = 422
    detail = "agent_id names an agent of another type than agent_type"


class JourneyAnswerUnusableError(AppError):
    """The model answered, but not with a question or a template (the session is unchanged)."""

    status_code = 502
    detail = "The language model's answer could not be used; please try again."
