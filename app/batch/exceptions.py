"""What can go wrong with batch agents, as the client is told it."""

from __future__ import annotations

from app.core.errors import ConflictError, ForbiddenError, NotFoundError


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


class EnabledAgentLimitError(ForbiddenError):
    """The user's plan allows no more enabled batch agents (local and cloud together)."""

    detail = "Your plan allows no more enabled batch agents; disable one or upgrade"

    def __init__(self, *, tier: str, limit: int) -> None:
        agents = "agent" if limit == 1 else "agents"
        super().__init__(
            f"Your {tier} plan allows {limit} enabled batch {agents}; disable one or upgrade"
        )
