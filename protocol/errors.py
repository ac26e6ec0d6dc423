"""Why a client-executed tool call did not produce a result.

ToolCallError
├── DeviceOfflineError        no desktop of the user is connected
├── DeviceDisconnectedError   the desktop went away while the call was pending
├── ToolCallTimeoutError      no result within TOOL_CALL_TIMEOUT_S
├── ToolCallCancelledError    the request the call served was cancelled
├── ToolCallTooLargeError     the call would not fit in one frame
└── ClientToolError           the desktop answered with an `error`

FrameTooLargeError            any other server frame that would not fit in one frame
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


class ToolCallTooLargeError(ToolCallError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The call's data is over the {limit}-byte frame limit; send less at a time."
        )


class FrameTooLargeError(Exception):
    """A server frame that cannot be split would be over the frame limit (a bug)."""


class ClientToolError(ToolCallError):
    """The desktop app ran the call and reported an error."""
