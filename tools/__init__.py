"""Client-executed domain tools (SPEC §2): the 23 tools the four sub-agents use.

Each tool reaches the desktop bound to the current request (`app.device.calls`)
and reads the user's time zone, clock and optional embedder from the turn
context (`tools.context`). Hand each sub-agent only its own group.
"""

from langchain_core.tools import BaseTool

from tools.notes import NOTE_TOOLS
from tools.projects import PROJECT_TOOLS
from tools.tasks import TASK_TOOLS
from tools.timelines import TIMELINE_TOOLS

ALL_DOMAIN_TOOLS: list[BaseTool] = [*TASK_TOOLS, *PROJECT_TOOLS, *TIMELINE_TOOLS, *NOTE_TOOLS]

__all__ = ["ALL_DOMAIN_TOOLS", "NOTE_TOOLS", "PROJECT_TOOLS", "TASK_TOOLS", "TIMELINE_TOOLS"]
