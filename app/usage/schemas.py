"""Bodies of the usage endpoint."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class UsageTotals(BaseModel):
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = Field(description="US dollars, from LiteLLM's cost map or LLM_PRICES.")


class RoleUsage(UsageTotals):
    role: str = Field(
        description="`supervisor`, a sub-agent's name (`task_agent`, ...), `embedding`, "
        "`extraction` or `journey`."
    )
    model: str


class DayUsage(BaseModel):
    date: dt.date = Field(description="The day, in UTC.")
    total: UsageTotals
    roles: list[RoleUsage]


class UsageRead(BaseModel):
    from_: dt.date = Field(serialization_alias="from")
    to: dt.date
    total: UsageTotals
    days: list[DayUsage] = Field(description="Days with usage only, oldest first.")
