"""Where the JWT secret and the master key come from, in dev and in prod."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from app.core.secrets import SECRETS_FILE_NAME, MissingSecretError, resolve_secrets
from app.core.settings import ResolvedSettings, Settings


def bare_settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_dev_generates_missing_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    first = resolve_secrets(bare_settings(tmp_path))
    second = resolve_secrets(bare_settings(tmp_path))

    assert first.jwt_secret.get_secret_value()
    assert (first.jwt_secret, first.encryption_key) == (second.jwt_secret, second.encryption_key)
    Fernet(first.encryption_key.get_secret_value())  # a usable key
    secrets_file = tmp_path / SECRETS_FILE_NAME
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_dev_uses_the_given_secret_and_generates_only_the_missing_one(tmp_path: Path) -> None:
    given = "a-jwt-secret-given-by-the-operator-0123456789"

    resolved = resolve_secrets(bare_settings(tmp_path, jwt_secret=given))

    assert resolved.jwt_secret.get_secret_value() == given
    assert resolved.encryption_key.get_secret_value()
    assert given not in (tmp_path / SECRETS_FILE_NAME).read_text()


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({}, "JWT_SECRET and ENCRYPTION_KEY"),
        ({"encryption_key": Fernet.generate_key().decode()}, "JWT_SECRET"),
        ({"jwt_secret": "x" * 40}, "ENCRYPTION_KEY"),
    ],
)
def test_prod_refuses_to_start_without_secrets_and_says_which(
    tmp_path: Path, given: dict[str, str], named: str
) -> None:
    with pytest.raises(MissingSecretError, match=f"requires {named} to be set"):
        resolve_secrets(bare_settings(tmp_path, env="prod", **given))
    assert not (tmp_path / SECRETS_FILE_NAME).exists()


def test_prod_starts_with_both_secrets(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()

    resolved = resolve_secrets(
        bare_settings(tmp_path, env="prod", jwt_secret="s" * 40, encryption_key=key)
    )

    assert resolved.encryption_key.get_secret_value() == key


def test_a_secret_set_without_validation_is_resolved_as_a_secret(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    # `model_copy(update=...)` does not validate: the key arrives as a plain string.
    copied = bare_settings(tmp_path).model_copy(update={"encryption_key": key})

    resolved = resolve_secrets(copied)

    assert isinstance(resolved, ResolvedSettings)
    assert resolved.encryption_key == SecretStr(key)


def test_no_secret_shows_in_the_settings_repr(tmp_path: Path) -> None:
    secrets = {
        "jwt_secret": "a-jwt-secret-given-by-the-operator-0123456789",
        "encryption_key": Fernet.generate_key().decode(),
        "encryption_old_keys": Fernet.generate_key().decode(),
        "llm_api_key": "sk-llm-key-0123456789",
        "embedding_api_key": "sk-embedding-key-0123456789",
    }
    settings = bare_settings(
        tmp_path, database_url="postgresql://adiuva:db-password-0123@db/adiuva", **secrets
    )

    for shown in (repr(settings), str(settings), repr(resolve_secrets(settings))):
        for secret in [*secrets.values(), "db-password-0123"]:
            assert secret not in shown


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"jwt_secret": "too-short"}, "JWT_SECRET must be at least 32"),
        ({"encryption_key": "not-a-fernet-key"}, "ENCRYPTION_KEY is not a valid Fernet key"),
        ({"encryption_old_keys": "nope"}, "ENCRYPTION_OLD_KEYS is not a valid Fernet key"),
    ],
)
def test_unusable_secrets_are_named(tmp_path: Path, given: dict[str, str], message: str) -> None:
    with pytest.raises(MissingSecretError, match=message):
        resolve_secrets(bare_settings(tmp_path, **given))


def test_database_url_spellings_run_on_asyncpg(tmp_path: Path) -> None:
    for url in ("postgres://u:p@db/x", "postgresql://u:p@db/x", "postgresql+asyncpg://u:p@db/x"):
        assert bare_settings(tmp_path, database_url=url).database_url == (
            "postgresql+asyncpg://u:p@db/x"
        )
    with pytest.raises(ValueError, match="DATABASE_URL must be a PostgreSQL URL"):
        bare_settings(tmp_path, database_url="sqlite:///x.db")


def test_list_settings_read_comma_separated_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, app://*")

    assert bare_settings(tmp_path).cors_origins == ["https://a.example", "app://*"]
