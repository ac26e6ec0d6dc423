"""What the marketplace refuses, as the client is told it (mapped to HTTP by `app.core.errors`).

AppError
├── ChecklistFailedError (422)          the automatic checklist refused the submission
├── NotAReviewerError (403)             the review queue and decisions are for reviewers
├── OwnReviewError (403)                a reviewer does not review their own plugin
├── NotInstalledError (403)             only users who installed a plugin rate it
├── DownloadLinkInvalidError (403)      a download link that was not signed here
├── PluginNotFoundError (404)           no such plugin (or not visible to this user)
├── NameTakenError (409)                another author's plugin has this name
├── VersionConflictError (409)          not higher than the plugin's latest version
├── ReviewPendingError (409)            a version is already waiting for review
├── NothingToReviewError (409)          no version of this plugin waits for review
└── DownloadLinkExpiredError (410)      the 15 minutes are over: install again for a new link

A paid install or a payout account without Stripe is billing's
`BillingNotConfiguredError` (503 naming the settings).
"""

from __future__ import annotations

from app.core.errors import AppError, ConflictError, ForbiddenError, NotFoundError


class ChecklistFailedError(AppError):
    status_code = 422
    detail = "The submission failed the automatic checklist; nothing was kept"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"{self.detail}: {'; '.join(reasons)}")


class NotAReviewerError(ForbiddenError):
    detail = "Only reviewers may do this (an operator grants the reviewer role)"


class OwnReviewError(ForbiddenError):
    detail = "Reviewers do not review their own plugins"


class NotInstalledError(ForbiddenError):
    detail = "Only users who have installed this plugin may rate it"


class DownloadLinkInvalidError(ForbiddenError):
    detail = "This download link is not valid"


class PluginNotFoundError(NotFoundError):
    detail = "Plugin not found"


class NameTakenError(ConflictError):
    detail = "Another author's plugin has this name"


class VersionConflictError(ConflictError):
    pass


class ReviewPendingError(ConflictError):
    pass


class NothingToReviewError(ConflictError):
    detail = "No version of this plugin is waiting for review"


class DownloadLinkExpiredError(AppError):
    status_code = 410
    detail = "This download link has expired; install again for a new one"
