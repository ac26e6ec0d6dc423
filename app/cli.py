"""Command line: `adiuva-server [serve | migrate | rotate-master-key | grant-role EMAIL ROLE]`
(or `python -m app ...`).

`serve` and `migrate` apply the migrations under a PostgreSQL advisory lock
(see `app.core.migrations`), so several replicas starting at once, or a
separate `migrate` step racing a replica, cannot migrate concurrently.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from types import FrameType

import uvicorn

from app.auth import service as auth_service
from app.auth.models import Role
from app.chat.checkpoint_cipher import reencrypt_checkpoints
from app.core import migrations
from app.core.database import create_engine, create_sessionmaker
from app.core.embedded_db import provisioned_database
from app.core.keys import MasterKeyring
from app.core.logging import configure_logging
from app.core.secrets import MissingSecretError, resolve_secrets
from app.core.settings import ResolvedSettings, Settings
from app.main import create_app

logger = logging.getLogger("app.cli")

GRACEFUL_SHUTDOWN_S = 5


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    # Unwinds through `provisioned_database`, which stops the embedded server.
    raise SystemExit(0)


def serve(settings: ResolvedSettings) -> None:
    """Migrate, then serve until SIGINT/SIGTERM.

    The embedded database (when DATABASE_URL is unset) is restarted if it dies
    while we serve, and stops with us.
    """
    with provisioned_database(settings, supervise=True) as database_url:
        migrations.upgrade(database_url)
        app = create_app(settings.model_copy(update={"database_url": database_url}))
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            ws_max_size=settings.ws_hard_limit_bytes,
        )
        logger.info("serving", extra={"host": settings.host, "port": settings.port})
        uvicorn.Server(config).run()


def migrate(settings: ResolvedSettings) -> None:
    """Apply the migrations and exit (a deployment's one-off `migrate` step)."""
    with provisioned_database(settings) as database_url:
        migrations.upgrade(database_url)
    logger.info("database is at the latest migration")


async def _rewrap(database_url: str, keyring: MasterKeyring) -> tuple[int, int]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            users = await auth_service.rewrap_all_data_keys(session=session, keyring=keyring)
        async with engine.begin() as conn:
            values = await reencrypt_checkpoints(conn, keyring.all_keys)
        return users, values
    finally:
        await engine.dispose()


def rotate_master_key(settings: ResolvedSettings) -> None:
    """Move everything to ENCRYPTION_KEY (old keys in ENCRYPTION_OLD_KEYS).

    Re-wraps every user's data key and re-encrypts the conversation checkpoints.
    """
    keyring = MasterKeyring.from_settings(settings)
    with provisioned_database(settings) as database_url:
        users, values = asyncio.run(_rewrap(database_url, keyring))
    logger.info(
        "re-encrypted with the current master key",
        extra={"users": users, "checkpoint_values": values},
    )


async def _grant(database_url: str, email: str, role: Role) -> bool:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await auth_service.grant_role(session=session, email=email, role=role)
    finally:
        await engine.dispose()


def grant_role(settings: ResolvedSettings, email: str, role: Role) -> int:
    """Give the account with `email` a role (`reviewer`); 1 when there is no such account."""
    with provisioned_database(settings) as database_url:
        migrations.upgrade(database_url)
        granted = asyncio.run(_grant(database_url, email, role))
    if not granted:
        logger.error("no account has this email", extra={"role": role.value})
        return 1
    logger.info("role granted", extra={"role": role.value})
    return 0


COMMANDS = {"serve": serve, "migrate": migrate, "rotate-master-key": rotate_master_key}
GRANT_ROLE = "grant-role"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adiuva-server", description="The Adiuva agent server.")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=sorted([*COMMANDS, GRANT_ROLE]),
        help="serve (the default): migrate, then serve; migrate: migrate and exit; "
        "rotate-master-key: re-encrypt everything with ENCRYPTION_KEY; "
        "grant-role EMAIL ROLE: give an account a role (reviewer)",
    )
    parser.add_argument("arguments", nargs="*", metavar="ARG", help="grant-role: EMAIL ROLE")
    args = parser.parse_args(argv)
    if args.command == GRANT_ROLE:
        roles = ", ".join(role.value for role in Role)
        if len(args.arguments) != 2 or args.arguments[1] not in {role.value for role in Role}:
            parser.error(f"grant-role takes EMAIL ROLE (ROLE: {roles})")
    elif args.arguments:
        parser.error(f"{args.command} takes no arguments")

    settings = Settings()
    configure_logging(settings.log_level)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    try:
        if args.command == GRANT_ROLE:
            email, role = args.arguments
            return grant_role(resolve_secrets(settings), email, Role(role))
        COMMANDS[args.command](resolve_secrets(settings))
    except MissingSecretError as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
