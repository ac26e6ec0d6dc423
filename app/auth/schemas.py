"""Request and response bodies of the auth endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import BaseModel, EmailStr, Field

from app.tiers.matrix import Tier

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024  # long passphrases are welcome; megabyte bodies are not


def _any_case(word: str) -> str:
    return "".join(f"[{char}{char.upper()}]" for char in word)


# EmailStr (email-validator) refuses special-use domains such as `.test`, which JSON
# Schema's `email` format allows: a pattern says so (spelled out in both cases, as
# JSON Schema regexes have no case-insensitive flag).
_SPECIAL_USE = "|".join(_any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
Email = Annotated[
    EmailStr,
    Field(
        description="An email address; special-use domains "
        f"({', '.join('.' + name for name in SPECIAL_USE_DOMAIN_NAMES)}) are refused.",
        json_schema_extra={"pattern": rf"^(?!.*\.(?:{_SPECIAL_USE})$)"},
    ),
]


class UserCreate(BaseModel):
    email: Email
    password: str = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)


class UserLogin(BaseModel):
    email: Email
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class AuthTokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime = Field(description="When the access token expires (UTC).")


class UserProfile(BaseModel):
    id: uuid.UUID
    email: EmailStr
    tier: Tier
