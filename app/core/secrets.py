"""The server's two secrets: where they come from in dev and in prod.

In `dev` a missing `JWT_SECRET` or `ENCRYPTION_KEY` is generated once and kept
in `DATA_DIR/secrets.json` (mode 0600), so tokens and encrypted data survive
restarts. In `prod` both must be given: the server refuses to start and names
what is missing, because a generated secret there would silently log everyone
out and make encrypted data unreadable on the next host.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from app.core.settings import Environment, ResolvedSettings, Settings

SECRETS_FILE_NAME = "secrets.json"
MIN_JWT_SECRET_LENGTH = 32


class MissingSecretError(RuntimeError):
    """A secret required in production is not configured."""


def _valid_fernet_key(name: str, key: SecretStr) -> None:
    try:
        Fernet(key.get_secret_value())
    except ValueError as exc:
        msg = f"{name} is not a valid Fernet key (32 url-safe base64-encoded bytes)"
        raise MissingSecretError(msg) from exc


def _check(settings: Settings) -> None:
    jwt_secret = settings.jwt_secret
    if jwt_secret is not None and len(jwt_secret.get_secret_value()) < MIN_JWT_SECRET_LENGTH:
        msg = f"JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} characters"
        raise MissingSecretError(msg)
    if settings.encryption_key is not None:
        _valid_fernet_key("ENCRYPTION_KEY", settings.encryption_key)
    for old_key in settings.encryption_old_keys:
        _valid_fernet_key("ENCRYPTION_OLD_KEYS", old_key)


def _load_or_create_dev_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE_NAME
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    generated = {
        "jwt_secret": stored.get("jwt_secret") or secrets.token_urlsafe(48),
        "encryption_key": stored.get("encryption_key") or Fernet.generate_key().decode(),
    }
    if generated != stored:
        data_dir.mkdir(parents=True, exist_ok=True)
        # Create with 0600 from the start so the secrets are never world-readable.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(generated, handle)
    return generated


def resolve_secrets(settings: Settings) -> ResolvedSettings:
    """The same settings with `jwt_secret` and `encryption_key` both set, checked and typed so.

    Validated again on the way: `model_copy(update=...)` does not validate, so
    a secret given that way arrives as a plain string.
    """
    given = Settings.model_validate(dict(settings))
    _check(given)
    missing = [
        name
        for name, value in (
            ("JWT_SECRET", given.jwt_secret),
            ("ENCRYPTION_KEY", given.encryption_key),
        )
        if not value
    ]
    values = dict(given)
    if missing:
        if given.env is Environment.PROD:
            msg = f"ENV=prod requires {' and '.join(missing)} to be set; refusing to start"
            raise MissingSecretError(msg)
        generated = _load_or_create_dev_secrets(given.data_dir)
        values["jwt_secret"] = given.jwt_secret or generated["jwt_secret"]
        values["encryption_key"] = given.encryption_key or generated["encryption_key"]
    return ResolvedSettings.model_validate(values)
