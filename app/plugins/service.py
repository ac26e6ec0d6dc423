"""The marketplace: the catalog, submissions and reviews, installs, ratings and downloads.

Who may do what (README, Plugin marketplace):

- everyone signed in browses the catalog and submits plugins (becoming an author);
- installing, downloading and rating need a plan with the marketplace (power,
  team): others get 403 naming those plans;
- reviewers (`users.roles`) see the queue and approve or reject; never their own.

Counts stay exact under concurrency: an install, an uninstall or a rating takes
the plugin's row lock (`_lock`) before it changes its rows and the counters on
the plugin, so the counters always equal the rows.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Numeric, Select, cast, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.models import Role, User
from app.billing import service as billing_service
from app.billing.stripe_api import StripeGateway
from app.core.settings import ResolvedSettings
from app.plugins import downloads, semver
from app.plugins.checklist import ChecklistResult
from app.plugins.exceptions import (
    ChecklistFailedError,
    NameTakenError,
    NotAReviewerError,
    NothingToReviewError,
    NotInstalledError,
    OwnReviewError,
    PluginNotFoundError,
    ReviewPendingError,
    VersionConflictError,
)
from app.plugins.models import (
    Decision,
    Plugin,
    PluginInstall,
    PluginPurchase,
    PluginRating,
    PluginReview,
    PluginVersion,
    PurchaseStatus,
    VersionStatus,
)
from app.plugins.schemas import (
    CURRENCY,
    CatalogPage,
    CatalogSort,
    Category,
    Finding,
    InstalledPlugin,
    InstallRead,
    PluginManifest,
    PluginRead,
    RatingRead,
    ReviewItem,
    ReviewRead,
    SubmissionRead,
)
from app.storage import writes
from app.storage.blobs import BlobKind, BlobReader, BlobStore, new_blob_key
from app.tiers.matrix import Feature, require_feature

logger = logging.getLogger(__name__)

REVIEW_QUEUE_LIMIT = 100
# The text search configuration of the `search` column (models.PluginVersion).
_ENGLISH: ColumnElement[str] = literal_column("'english'::regconfig")


def _avg(plugin: Plugin) -> float | None:
    return round(plugin.rating_sum / plugin.rating_count, 2) if plugin.rating_count else None


def _read(plugin: Plugin, version: PluginVersion) -> PluginRead:
    return PluginRead(
        id=plugin.id,
        name=version.name,
        description=version.description,
        version=version.version,
        category=version.category,
        permissions=list(version.permissions),
        price_cents=version.price_cents,
        avg_rating=_avg(plugin),
        rating_count=plugin.rating_count,
        install_count=plugin.install_count,
        status=VersionStatus(version.status).value,
        author_id=plugin.author_id,
        created_at=plugin.created_at,
    )


def _listed() -> Select[Plugin, PluginVersion]:
    """Approved plugins with the version they hand out."""
    return select(Plugin, PluginVersion).join(
        PluginVersion, PluginVersion.id == Plugin.current_version_id
    )


async def _lock(*, session: AsyncSession, plugin_id: uuid.UUID) -> Plugin:
    """The plugin, its row locked until the transaction ends; 404 if there is none."""
    plugin = await session.get(Plugin, plugin_id, with_for_update=True, populate_existing=True)
    if plugin is None:
        raise PluginNotFoundError
    return plugin


def _sees_unapproved(plugin: Plugin, user: User) -> bool:
    """Whether `user` may see `plugin` before it is approved: its author and reviewers."""
    return plugin.author_id == user.id or user.has_role(Role.REVIEWER)


async def _approved(*, session: AsyncSession, plugin_id: uuid.UUID) -> tuple[Plugin, PluginVersion]:
    """An approved plugin and its installable version; 404 otherwise."""
    row = (await session.execute(_listed().where(Plugin.id == plugin_id))).one_or_none()
    if row is None:
        raise PluginNotFoundError
    return row[0], row[1]


# -- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    category: str | None
    q: str | None
    sort: CatalogSort | None
    page: int
    limit: int


async def catalog(*, session: AsyncSession, query: CatalogQuery) -> CatalogPage:
    """One page of approved plugins.

    `q` is PostgreSQL full-text search (`websearch_to_tsquery`, GIN-indexed) over
    name and description. Every order ends with the plugin's id, so the order is
    total and pages neither repeat nor skip a plugin. Without `sort`, a search
    ranks by relevance and a listing shows the newest first.
    """
    statement = _listed()
    if query.category is not None:
        statement = statement.where(PluginVersion.category == query.category)
    relevance = None
    if query.q:
        terms = func.websearch_to_tsquery(_ENGLISH, query.q)
        statement = statement.where(PluginVersion.search.op("@@")(terms))
        relevance = func.ts_rank_cd(PluginVersion.search, terms)
    total = await session.scalar(select(func.count()).select_from(statement.subquery()))
    average = cast(Plugin.rating_sum, Numeric) / func.nullif(Plugin.rating_count, 0)
    order: list[ColumnElement[Any]]
    match query.sort:
        case CatalogSort.RATING:
            order = [average.desc().nulls_last(), Plugin.rating_count.desc()]
        case CatalogSort.INSTALLS:
            order = [Plugin.install_count.desc()]
        case CatalogSort.NEWEST:
            order = [Plugin.created_at.desc()]
        case None:
            order = [relevance.desc()] if relevance is not None else [Plugin.created_at.desc()]
    rows = await session.execute(
        statement.order_by(*order, Plugin.id)
        .offset((query.page - 1) * query.limit)
        .limit(query.limit)
    )
    return CatalogPage(
        plugins=[_read(plugin, version) for plugin, version in rows],
        total=total or 0,
        page=query.page,
    )


async def _latest_version(*, session: AsyncSession, plugin_id: uuid.UUID) -> PluginVersion | None:
    return await session.scalar(
        select(PluginVersion)
        .where(PluginVersion.plugin_id == plugin_id)
        .order_by(PluginVersion.created_at.desc(), PluginVersion.id)
        .limit(1)
    )


async def plugin_detail(*, session: AsyncSession, user: User, plugin_id: uuid.UUID) -> PluginRead:
    """An approved plugin to anyone signed in; an unapproved one (its latest version)
    only to its author and reviewers, 404 to everyone else."""
    plugin = await session.get(Plugin, plugin_id)
    if plugin is None:
        raise PluginNotFoundError
    if plugin.current_version_id is not None:
        version = await session.get(PluginVersion, plugin.current_version_id)
    elif _sees_unapproved(plugin, user):
        version = await _latest_version(session=session, plugin_id=plugin.id)
    else:
        version = None
    if version is None:
        raise PluginNotFoundError
    return _read(plugin, version)


# -- submission ----------------------------------------------------------------------------


def _check_version(manifest: PluginManifest, versions: Sequence[PluginVersion]) -> None:
    """A new version is higher than every earlier one, and waits for no other review."""
    pending = [v for v in versions if v.status == VersionStatus.PENDING_REVIEW]
    if pending:
        msg = f"Version {pending[0].version} of this plugin is still waiting for review"
        raise ReviewPendingError(msg)
    latest = max((v.version for v in versions), key=semver.precedence, default=None)
    if latest is not None and semver.precedence(manifest.version) <= semver.precedence(latest):
        msg = f"The version must be higher than {latest}, the plugin's latest"
        raise VersionConflictError(msg)


async def _plugin_for_submission(
    *, session: AsyncSession, author: User, manifest: PluginManifest
) -> Plugin:
    """The author's plugin of this name (created on a first submission), locked."""
    name_key = manifest.name.lower()
    await session.execute(
        insert(Plugin)
        .values(
            id=uuid.uuid4(),
            author_id=author.id,
            name_key=name_key,
            install_count=0,
            rating_count=0,
            rating_sum=0,
        )
        .on_conflict_do_nothing(index_elements=[Plugin.name_key])
    )
    plugin = await session.scalar(
        select(Plugin)
        .where(Plugin.name_key == name_key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert plugin is not None  # inserted above, or there already
    if plugin.author_id != author.id:
        raise NameTakenError
    return plugin


async def submit(
    *,
    session: AsyncSession,
    blobs: BlobStore,
    author: User,
    checked: ChecklistResult,
    package: bytes,
) -> SubmissionRead:
    """Keep a submission that passed the checklist: its package in the blob store, its
    version (pending review) in the database.

    A failed checklist is 422 before anything is written. The blob is written
    first and the row committed after (as cloud storage does): if the row is
    refused (another author's name, a version not higher than the last, a review
    still pending) the blob is removed, so nothing is kept.
    """
    manifest = checked.manifest
    if manifest is None or not checked.passed:
        raise ChecklistFailedError(checked.failures())
    await writes.release(session)
    key = new_blob_key(user_id=author.id, kind=BlobKind.PLUGINS)
    await blobs.put(key, package)
    try:
        plugin = await _plugin_for_submission(session=session, author=author, manifest=manifest)
        earlier = await session.scalars(
            select(PluginVersion).where(PluginVersion.plugin_id == plugin.id)
        )
        _check_version(manifest, list(earlier))
        version = PluginVersion(
            plugin_id=plugin.id,
            name=manifest.name,
            description=manifest.description,
            version=manifest.version,
            category=manifest.category.value,
            permissions=list(manifest.permissions),
            price_cents=manifest.price_cents,
            status=VersionStatus.PENDING_REVIEW.value,
            blob_key=key,
            sha256=hashlib.sha256(package).hexdigest(),
            size_bytes=len(package),
            checklist=[finding.model_dump() for finding in checked.findings],
        )
        session.add(version)
        await session.commit()
    except BaseException:
        await session.rollback()
        await writes.discard(blobs, [key])
        raise
    logger.info(
        "plugin submitted", extra={"plugin_id": str(plugin.id), "version_id": str(version.id)}
    )
    return SubmissionRead(
        id=plugin.id,
        version_id=version.id,
        name=version.name,
        version=version.version,
        status="pending_review",
        sha256=version.sha256,
        size_bytes=version.size_bytes,
        checklist=checked.findings,
    )


# -- review --------------------------------------------------------------------------------


def require_reviewer(user: User) -> None:
    if not user.has_role(Role.REVIEWER):
        raise NotAReviewerError


def _manifest(version: PluginVersion) -> PluginManifest:
    return PluginManifest.model_construct(
        name=version.name,
        description=version.description,
        version=version.version,
        category=Category(version.category),
        permissions=list(version.permissions),
        price_cents=version.price_cents,
    )


async def review_queue(*, session: AsyncSession, reviewer: User) -> list[ReviewItem]:
    """Versions waiting for review, oldest first (reviewers only)."""
    require_reviewer(reviewer)
    rows = await session.execute(
        select(PluginVersion, Plugin.author_id)
        .join(Plugin, Plugin.id == PluginVersion.plugin_id)
        .where(PluginVersion.status == VersionStatus.PENDING_REVIEW)
        .order_by(PluginVersion.created_at, PluginVersion.id)
        .limit(REVIEW_QUEUE_LIMIT)
    )
    return [
        ReviewItem(
            id=version.plugin_id,
            version_id=version.id,
            author_id=author_id,
            manifest=_manifest(version),
            sha256=version.sha256,
            size_bytes=version.size_bytes,
            checklist=[Finding.model_validate(finding) for finding in version.checklist],
            submitted_at=version.created_at,
        )
        for version, author_id in rows
    ]


async def decide(
    *,
    session: AsyncSession,
    reviewer: User,
    plugin_id: uuid.UUID,
    decision: Decision,
    notes: str,
) -> ReviewRead:
    """Approve or reject the plugin's version waiting for review; the decision is kept.

    Approving makes it the version the catalog shows and installs hand out;
    rejecting leaves the previously approved version (if any) in place.
    """
    require_reviewer(reviewer)
    plugin = await _lock(session=session, plugin_id=plugin_id)
    if plugin.author_id == reviewer.id:
        raise OwnReviewError
    version = await session.scalar(
        select(PluginVersion).where(
            PluginVersion.plugin_id == plugin.id,
            PluginVersion.status == VersionStatus.PENDING_REVIEW,
        )
    )
    if version is None:
        raise NothingToReviewError
    approved = decision is Decision.APPROVE
    version.status = (VersionStatus.APPROVED if approved else VersionStatus.REJECTED).value
    if approved:
        plugin.current_version_id = version.id
    review = PluginReview(
        version_id=version.id, reviewer_id=reviewer.id, decision=decision.value, notes=notes
    )
    session.add(review)
    await session.flush()
    await session.refresh(review, ["created_at"])
    await session.commit()
    logger.info("plugin reviewed", extra={"plugin_id": str(plugin_id), "decision": decision.value})
    return ReviewRead(
        id=review.id,
        plugin_id=plugin_id,
        version_id=version.id,
        version=version.version,
        decision=decision,
        notes=notes,
        status="approved" if approved else "rejected",
        created_at=review.created_at,
    )


# -- installs ------------------------------------------------------------------------------


async def add_install(*, session: AsyncSession, plugin_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Record the install (once) and count it, under the plugin's lock; idempotent."""
    plugin = await _lock(session=session, plugin_id=plugin_id)
    added = await session.scalar(
        insert(PluginInstall)
        .values(user_id=user_id, plugin_id=plugin_id)
        .on_conflict_do_nothing()
        .returning(PluginInstall.user_id)
    )
    if added is not None:
        plugin.install_count += 1


async def _installed(*, session: AsyncSession, plugin_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(PluginInstall.user_id).where(
            PluginInstall.plugin_id == plugin_id, PluginInstall.user_id == user_id
        )
    )
    return found is not None


# Turns a signed token into the absolute URL of the download route (the router's).
LinkFor = Callable[[str], str]


async def _paid_for(*, session: AsyncSession, plugin_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(PluginPurchase.id).where(
            PluginPurchase.plugin_id == plugin_id,
            PluginPurchase.user_id == user_id,
            PluginPurchase.status == PurchaseStatus.SUCCEEDED,
        )
    )
    return found is not None


async def _purchase(
    *,
    session: AsyncSession,
    settings: ResolvedSettings,
    gateway: StripeGateway | None,
    user: User,
    plugin: Plugin,
    version: PluginVersion,
) -> InstallRead:
    """A paid install: the user's pending purchase of this plugin (or a new one) and its
    PaymentIntent on the user's Stripe customer. The webhook installs it once paid."""
    stripe_gateway = billing_service.require_billing(settings, gateway)
    await _lock(session=session, plugin_id=plugin.id)
    purchase = await session.scalar(
        select(PluginPurchase).where(
            PluginPurchase.plugin_id == plugin.id,
            PluginPurchase.user_id == user.id,
            PluginPurchase.status == PurchaseStatus.PENDING,
        )
    )
    if purchase is None:
        purchase = PluginPurchase(
            id=uuid.uuid4(),
            user_id=user.id,
            plugin_id=plugin.id,
            version_id=version.id,
            amount_cents=version.price_cents,
            currency=CURRENCY,
            status=PurchaseStatus.PENDING.value,
        )
        session.add(purchase)
    purchase_id, amount = purchase.id, purchase.amount_cents
    customer_id = await billing_service.customer_id_for(
        session=session, gateway=stripe_gateway, user=user
    )
    # One key per purchase: asking again (a retry, a second install) returns the same intent.
    intent = await stripe_gateway.create_payment_intent(
        customer_id=customer_id,
        amount_cents=amount,
        currency=CURRENCY,
        description=f"Adiuva plugin {version.name}",
        metadata={
            "purchase_id": str(purchase_id),
            "plugin_id": str(plugin.id),
            "user_id": str(user.id),
        },
        idempotency_key=f"plugin-purchase-{purchase_id}",
    )
    stored = await session.get(PluginPurchase, purchase_id, with_for_update=True)
    if stored is not None and stored.payment_intent_id is None:
        stored.payment_intent_id = intent.id
    await session.commit()
    return InstallRead(
        ok=False,
        status="payment_required",
        download_url=None,
        expires_at=None,
        payment_intent_id=intent.id,
        client_secret=intent.client_secret,
        price_cents=amount,
    )


async def install(
    *,
    session: AsyncSession,
    settings: ResolvedSettings,
    gateway: StripeGateway | None,
    user: User,
    plugin_id: uuid.UUID,
    link_for: LinkFor,
    now: datetime,
) -> InstallRead:
    """Install an approved plugin: a signed download link for its version.

    Idempotent: installing again answers a fresh link and counts nothing. A paid
    plugin the user has not paid for answers `payment_required` with a
    PaymentIntent instead (503 without Stripe); free plugins install regardless.
    """
    require_feature(user, Feature.PLUGIN_MARKETPLACE)
    plugin, version = await _approved(session=session, plugin_id=plugin_id)
    if not await _installed(session=session, plugin_id=plugin.id, user_id=user.id):
        paid = await _paid_for(session=session, plugin_id=plugin.id, user_id=user.id)
        if version.price_cents > 0 and not paid:
            return await _purchase(
                session=session,
                settings=settings,
                gateway=gateway,
                user=user,
                plugin=plugin,
                version=version,
            )
        await add_install(session=session, plugin_id=plugin.id, user_id=user.id)
        await session.commit()
    token, expires_at = downloads.sign_download(
        secret=settings.jwt_secret.get_secret_value(),
        user_id=user.id,
        version_id=version.id,
        now=now,
    )
    return InstallRead(
        ok=True,
        status="installed",
        download_url=link_for(token),
        expires_at=expires_at,
        price_cents=version.price_cents,
    )


async def uninstall(*, session: AsyncSession, user: User, plugin_id: uuid.UUID) -> None:
    """Remove the user's install (and its count); uninstalling twice is no error.
    A paid plugin stays paid for: installing it again charges nothing. An unapproved
    plugin is 404 but to its author and reviewers, as everywhere else."""
    plugin = await _lock(session=session, plugin_id=plugin_id)
    if plugin.current_version_id is None and not _sees_unapproved(plugin, user):
        raise PluginNotFoundError
    removed = await session.scalar(
        delete(PluginInstall)
        .where(PluginInstall.plugin_id == plugin_id, PluginInstall.user_id == user.id)
        .returning(PluginInstall.user_id)
    )
    if removed is not None:
        plugin.install_count -= 1
    await session.commit()


async def installed(*, session: AsyncSession, user: User) -> list[InstalledPlugin]:
    """The user's installed plugins, newest install first."""
    rows = await session.execute(
        select(Plugin, PluginVersion, PluginInstall.created_at)
        .join(PluginInstall, PluginInstall.plugin_id == Plugin.id)
        .join(PluginVersion, PluginVersion.id == Plugin.current_version_id)
        .where(PluginInstall.user_id == user.id)
        .order_by(PluginInstall.created_at.desc(), Plugin.id)
    )
    return [
        InstalledPlugin(plugin=_read(plugin, version), installed_at=at)
        for plugin, version, at in rows
    ]


async def open_download(
    *, session: AsyncSession, settings: ResolvedSettings, blobs: BlobStore, token: str
) -> tuple[PluginVersion, BlobReader]:
    """The package a download link names: 403 for a link not signed here, whose user no
    longer has the plugin installed or whose plan no longer has the marketplace (a
    downgrade within the link's 15 minutes), 410 once expired."""
    grant = downloads.verify_download(token, secret=settings.jwt_secret.get_secret_value())
    version = await session.get(PluginVersion, grant.version_id)
    if version is None or version.status != VersionStatus.APPROVED:
        raise PluginNotFoundError
    if not await _installed(session=session, plugin_id=version.plugin_id, user_id=grant.user_id):
        raise NotInstalledError("This download link's plugin is no longer installed")
    # After the install check: an account's installs are deleted with it, so a deleted
    # account's link stops there instead of at a plan that cannot be read.
    plan = await auth_service.plan_of(session=session, user_id=grant.user_id)
    require_feature(plan, Feature.PLUGIN_MARKETPLACE)
    key = version.blob_key
    await writes.release(session)
    return version, await blobs.open(key)


# -- ratings -------------------------------------------------------------------------------


async def rate(
    *,
    session: AsyncSession,
    user: User,
    plugin_id: uuid.UUID,
    stars: int,
    comment: str | None,
) -> RatingRead:
    """Rate a plugin the user has installed; rating again replaces their rating."""
    require_feature(user, Feature.PLUGIN_MARKETPLACE)
    await _approved(session=session, plugin_id=plugin_id)
    plugin = await _lock(session=session, plugin_id=plugin_id)
    if not await _installed(session=session, plugin_id=plugin_id, user_id=user.id):
        raise NotInstalledError
    earlier = await session.get(PluginRating, (user.id, plugin_id), with_for_update=True)
    if earlier is None:
        rating = PluginRating(user_id=user.id, plugin_id=plugin_id, stars=stars, comment=comment)
        session.add(rating)
        plugin.rating_count += 1
        plugin.rating_sum += stars
    else:
        plugin.rating_sum += stars - earlier.stars
        earlier.stars, earlier.comment = stars, comment
    await session.commit()
    return RatingRead(
        plugin_id=plugin_id,
        stars=stars,
        comment=comment,
        avg_rating=_avg(plugin),
        rating_count=plugin.rating_count,
    )
