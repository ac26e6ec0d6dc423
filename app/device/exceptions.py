"""Why a client-executed tool call did not produce a result.

ToolCallError
├── DeviceOfflineError        no desktop of the user is connected
├── DeviceDisconnectedError   the desktop went away while the call was pending
├── ToolCallTimeoutError      no result within TOOL_CALL_TIMEOUT_S
├── ToolCallCancelledError    the request the call served was cancelled
└── ClientToolError           the desktop answered with an `error`
"""

from __future__ import annotations


class ToolCallError(Exception):
    """A tool call failed; the message is readable by a person (and a model)."""


class DeviceOfflineError(ToolCallError):
    def __init__(self) -> None:
        super().__init__("The desktop app is not connected, so the user's data cannot be reached.")


class DeviceDisconnectedError(ToolCallError):
    def __init__(self) -> None:
        super().__init__("The desktop app disconnected before answering.")


class ToolCallTimeoutError(ToolCallError):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"The desktop app did not answer within {timeout_s:g} seconds.")
        self.timeout_s = timeout_s


class ToolCallCancelledError(ToolCallError):
    def __init__(self) -> None:
        super().__init__("The request was cancelled.")


class ClientToolError(ToolCallError):
    """The desktop app ran the call and reported an error."""
