"""The usage domain's dependencies: the recorder that stores model calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.core.dependencies import from_state
from app.usage.recorder import UsageRecorder

UsageRecorderDep = Annotated[UsageRecorder, Depends(from_state("usage_recorder"))]
