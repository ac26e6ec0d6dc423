"""`/plugins`: the marketplace over HTTP (SPEC §10; README, Plugin marketplace).

Browsing and submitting are open to everyone signed in; installing, downloading
and rating need the power or team plan (403 naming them); the review queue and
decisions are for reviewers. The download route takes no bearer token: its
signed, expiring link is the permission.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from app.auth.dependencies import CurrentUser
from app.billing.dependencies import StripeGatewayDep
from app.core.dependencies import SessionDep, SettingsDep
from app.core.responses import (
    AUTHENTICATED,
    EVERY_ROUTE,
    JSON_BODY,
    UnprocessableDetail,
    error,
)
from app.plugins import revenue, service
from app.plugins.checklist import MANIFEST_MAX_BYTES, PACKAGE_MAX_BYTES, run_checklist
from app.plugins.schemas import (
    MAX_PAGE_SIZE,
    CatalogPage,
    CatalogSort,
    Category,
    EarningsRead,
    InstalledPlugin,
    InstallRead,
    Ok,
    PayoutOnboarding,
    PluginRead,
    RatingCreate,
    RatingRead,
    ReviewCreate,
    ReviewItem,
    ReviewRead,
    SubmissionRead,
)
from app.storage.dependencies import BlobStoreDep
from app.tiers.dependencies import LIMITED_BY_ADDRESS

router = APIRouter(prefix="/plugins", tags=["plugins"], responses=EVERY_ROUTE)

_MAX_PAGE = 10_000
_Q_MAX_CHARS = 200
# A download token: a JWT of three base64url parts.
_TOKEN_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"  # noqa: S105 - a shape

_NOT_FOUND = error(
    404, "No such plugin, or one not approved yet (shown only to its author and reviewers)."
)
_PLAN = error(403, "The plan has no plugin marketplace: the detail names the plans that have it.")
_STRIPE = {
    **error(502, "Stripe answered with an error; nothing was charged."),
    **error(
        503,
        "Payments are not configured (the detail names the missing settings), Stripe cannot "
        "be reached, or the server is temporarily unavailable.",
    ),
}


@router.get("", responses=AUTHENTICATED)
async def list_plugins(
    user: CurrentUser,
    session: SessionDep,
    category: Category | None = None,
    q: Annotated[
        str | None,
        Query(max_length=_Q_MAX_CHARS, description="Words to find in names and descriptions."),
    ] = None,
    sort: Annotated[
        CatalogSort | None,
        Query(description="Default: by relevance with `q`, else the newest first."),
    ] = None,
    page: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> CatalogPage:
    """Approved plugins, searched, filtered and sorted; every signed-in user may browse."""
    query = service.CatalogQuery(
        category=category.value if category else None,
        q=q.strip() if q and q.strip() else None,
        sort=sort,
        page=page,
        limit=limit,
    )
    return await service.catalog(session=session, query=query)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(
            409,
            "Another author's plugin has this name, the version is not higher than the "
            "plugin's latest, or a version of it is still waiting for review.",
        ),
        **error(
            422,
            "The automatic checklist refused the submission (the detail lists why); nothing "
            "was kept.",
            model=UnprocessableDetail,
        ),
        **error(503, "The blob store is unavailable; nothing was kept."),
    },
)
async def submit_plugin(
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobStoreDep,
    manifest: Annotated[
        str,
        Form(
            max_length=MANIFEST_MAX_BYTES,
            description="JSON: {name, description, version (semver), category, permissions, "
            "price_cents}.",
        ),
    ],
    package: Annotated[
        UploadFile, File(description=f"The plugin, a zip of at most {PACKAGE_MAX_BYTES} bytes.")
    ],
) -> SubmissionRead:
    """Submit a plugin, or a new version of one's own: checked at once, then reviewed."""
    # The route's body limit (app.core.body_limit) bounds what was received; one byte
    # past the package limit is enough for the checklist to refuse it.
    data = await package.read(PACKAGE_MAX_BYTES + 1)
    checked = await asyncio.to_thread(run_checklist, manifest_text=manifest, package=data)
    return await service.submit(
        session=session, blobs=blobs, author=user, checked=checked, package=data
    )


@router.get(
    "/review",
    responses={**AUTHENTICATED, **error(403, "Only reviewers see the review queue.")},
)
async def review_queue(user: CurrentUser, session: SessionDep) -> list[ReviewItem]:
    """Versions waiting for review, oldest first, with their checklist findings."""
    return await service.review_queue(session=session, reviewer=user)


@router.get("/installed", responses=AUTHENTICATED)
async def installed_plugins(user: CurrentUser, session: SessionDep) -> list[InstalledPlugin]:
    """The user's installed plugins (readable on any plan), newest install first."""
    return await service.installed(session=session, user=user)


@router.get("/earnings", responses=AUTHENTICATED)
async def earnings(user: CurrentUser, session: SessionDep) -> EarningsRead:
    """The author's sales and their 70% share per month, and what was transferred."""
    return await revenue.earnings(session=session, user=user)


@router.post("/payouts/onboarding", responses={**AUTHENTICATED, **_STRIPE})
async def payout_onboarding(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, gateway: StripeGatewayDep
) -> PayoutOnboarding:
    """Set up (or finish setting up) the author's Stripe Connect account for payouts."""
    return await revenue.start_onboarding(
        session=session, settings=settings, gateway=gateway, user=user
    )


@router.get(
    "/download/{token}",
    name="download_plugin",
    response_class=Response,
    dependencies=[LIMITED_BY_ADDRESS],
    responses={
        200: {
            "description": "The approved package (a zip), streamed.",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                "X-Checksum": {
                    "description": "SHA-256 of the package, hex.",
                    "schema": {"type": "string"},
                }
            },
        },
        **error(
            403,
            "The link was not signed by this server, the plugin is no longer installed, or "
            "the user's plan no longer has the plugin marketplace.",
        ),
        **error(404, "The link's plugin version no longer exists."),
        **error(410, "The link has expired (15 minutes): install again for a new one."),
    },
)
async def download(
    token: Annotated[str, Path(max_length=4096, pattern=_TOKEN_PATTERN)],
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobStoreDep,
) -> Response:
    """The package a signed link names (no bearer token: the link is the permission)."""
    version, reader = await service.open_download(
        session=session, settings=settings, blobs=blobs, token=token
    )
    headers = {"X-Checksum": version.sha256, "Content-Length": str(reader.size)}
    return StreamingResponse(aiter(reader), media_type="application/zip", headers=headers)


@router.get("/{plugin_id}", responses={**AUTHENTICATED, **_NOT_FOUND})
async def get_plugin(plugin_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> PluginRead:
    """One plugin: its manifest, ratings summary and install count."""
    return await service.plugin_detail(session=session, user=user, plugin_id=plugin_id)


@router.post(
    "/{plugin_id}/review",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(403, "Not a reviewer, or the reviewer's own plugin."),
        **error(404, "No such plugin."),
        **error(409, "No version of this plugin is waiting for review."),
    },
)
async def review_plugin(
    plugin_id: uuid.UUID, body: ReviewCreate, user: CurrentUser, session: SessionDep
) -> ReviewRead:
    """Approve or reject the plugin's version waiting for review (reviewers only)."""
    return await service.decide(
        session=session,
        reviewer=user,
        plugin_id=plugin_id,
        decision=body.decision,
        notes=body.notes,
    )


@router.post(
    "/{plugin_id}/install",
    responses={
        **AUTHENTICATED,
        202: {
            "model": InstallRead,
            "description": "A paid plugin not paid for yet: confirm the PaymentIntent; "
            "once Stripe says it is paid, installing again answers the download link.",
        },
        **_PLAN,
        **_NOT_FOUND,
        **_STRIPE,
    },
)
async def install(
    plugin_id: uuid.UUID,
    request: Request,
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    gateway: StripeGatewayDep,
) -> InstallRead:
    """Install an approved plugin: a signed download link valid for 15 minutes."""
    result = await service.install(
        session=session,
        settings=settings,
        gateway=gateway,
        user=user,
        plugin_id=plugin_id,
        link_for=lambda token: str(request.url_for("download_plugin", token=token)),
        now=datetime.now(UTC),
    )
    if not result.ok:
        response.status_code = status.HTTP_202_ACCEPTED
    return result


@router.delete("/{plugin_id}/install", responses={**AUTHENTICATED, **_NOT_FOUND})
async def uninstall(plugin_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Ok:
    """Uninstall (no error if it was not installed)."""
    await service.uninstall(session=session, user=user, plugin_id=plugin_id)
    return Ok()


@router.post(
    "/{plugin_id}/rating",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(
            403,
            "The plan has no plugin marketplace, or the user has not installed this plugin.",
        ),
        **_NOT_FOUND,
    },
)
async def rate(
    plugin_id: uuid.UUID, body: RatingCreate, user: CurrentUser, session: SessionDep
) -> RatingRead:
    """Rate an installed plugin 1 to 5 stars; rating again replaces the earlier rating."""
    return await service.rate(
        session=session, user=user, plugin_id=plugin_id, stars=body.stars, comment=body.comment
    )
