"""Reading messages from Gmail, Outlook and Teams over their REST APIs (`httpx`).

Gmail: `users.messages.list` (paged by `nextPageToken`) and `users.messages.get`
with base64url bodies, text/plain preferred over HTML. Microsoft Graph:
`/me/messages` (or a folder's), Teams chat and channel messages, paged by
`@odata.nextLink`. Every request is bounded: 429 and 5xx are retried with
back-off honouring `Retry-After` a few times, a 401 refreshes the token and is
tried once more, pages stop at the run's message limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import httpx

from app.batch.models import CloudProvider
from app.batch.oauth import ConnectionTokens

logger = logging.getLogger(__name__)

FIRST_RUN_WINDOW = timedelta(days=7)
MAX_BODY_CHARS = 50_000
_PAGE_SIZE = 50
_RETRIED = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class MailMessage:
    """One message as extraction reads it."""

    id: str
    subject: str
    sender: str
    sent_at: str
    body: str


@dataclass(frozen=True, slots=True)
class FetchLimits:
    max_messages: int
    attempts: int
    max_retry_after_s: float


class MailboxError(Exception):
    """The provider could not be read; the message is the run's error entry."""


class _TextOfHtml(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "head"})
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body: tags, scripts and styles gone, lines kept."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def window_start(
    *, last_success: datetime | None, date_range_start: date | None, now: datetime
) -> datetime:
    """Messages since the last successful run; the first run reads `date_range` or 7 days."""
    if last_success is not None:
        return last_success
    if date_range_start is not None:
        return datetime.combine(date_range_start, time(), UTC)
    return now - FIRST_RUN_WINDOW


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                moment = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                pass
            else:
                return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return float(2**attempt)


class ProviderApi:
    """Authorized JSON GETs to one provider API, with refresh-on-401 and bounded back-off."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        tokens: ConnectionTokens,
        limits: FetchLimits,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._limits = limits
        self._clock = clock
        self._sleep = sleep

    @property
    def base(self) -> str:
        """The API's base URL (no trailing slash); every request stays under it."""
        return str(self._http.base_url).rstrip("/")

    async def get(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if not url.startswith(self.base + "/"):
            msg = "the provider pointed a page outside its API; stopped there"
            raise MailboxError(msg)
        if self._tokens.expired(self._clock()):
            await self._tokens.refresh(self._clock())
        refreshed = False
        attempt = 0
        while True:
            response = await self._http.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {self._tokens.access_token}"},
            )
            if response.status_code == 401 and not refreshed:
                refreshed = True  # an expired token: refresh it and try once more
                await self._tokens.refresh(self._clock())
                continue
            if response.status_code in _RETRIED:
                attempt += 1
                delay = _retry_after(response, attempt)
                if attempt >= self._limits.attempts or delay > self._limits.max_retry_after_s:
                    msg = f"the provider answered {response.status_code} {attempt} times; try later"
                    raise MailboxError(msg)
                await self._sleep(delay)
                continue
            if response.status_code != 200:
                msg = f"the provider answered {response.status_code}"
                raise MailboxError(msg)
            body: dict[str, Any] = response.json()
            return body


# -- Gmail ------------------------------------------------------------------------------


def _b64url(data: str) -> str:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode(errors="replace")
    except (binascii.Error, ValueError):
        return ""


def _gmail_parts(part: dict[str, Any]) -> list[dict[str, Any]]:
    found = [part]
    for child in part.get("parts") or []:
        found.extend(_gmail_parts(child))
    return found


def gmail_body(payload: dict[str, Any]) -> str:
    """The message's text: its text/plain part if it has one, else its HTML reduced to text."""
    parts = _gmail_parts(payload)
    for mime, convert in (("text/plain", str), ("text/html", html_to_text)):
        for part in parts:
            data = (part.get("body") or {}).get("data")
            if part.get("mimeType") == mime and data:
                return convert(_b64url(data))
    return ""


def _gmail_query(filters: dict[str, Any], since: datetime, before: date | None) -> str:
    terms = [f"after:{int(since.timestamp())}"]
    if before is not None:
        terms.append(f"before:{before.isoformat().replace('-', '/')}")
    senders = filters.get("senders") or []
    if senders:
        terms.append("{" + " ".join(f"from:{sender}" for sender in senders) + "}")
    return " ".join(terms)


async def _gmail(
    api: ProviderApi, filters: dict[str, Any], since: datetime, before: date | None, limit: int
) -> list[MailMessage]:
    base = "/gmail/v1/users/me/messages"
    params: dict[str, Any] = {
        "q": _gmail_query(filters, since, before),
        "maxResults": min(_PAGE_SIZE, limit),
    }
    if filters.get("labels"):
        params["labelIds"] = filters["labels"]
    ids: list[str] = []
    for _ in range(limit):  # pages: never more than messages wanted
        page = await api.get(f"{api.base}{base}", params)
        ids.extend(str(item["id"]) for item in page.get("messages") or [])
        token = page.get("nextPageToken")
        if not token or len(ids) >= limit:
            break
        params["pageToken"] = token
    messages = []
    for message_id in ids[:limit]:
        full = await api.get(f"{api.base}{base}/{message_id}", {"format": "full"})
        payload = full.get("payload") or {}
        headers = {
            h.get("name", "").lower(): h.get("value", "") for h in payload.get("headers") or []
        }
        messages.append(
            MailMessage(
                id=message_id,
                subject=headers.get("subject", ""),
                sender=headers.get("from", ""),
                sent_at=headers.get("date", ""),
                body=gmail_body(payload)[:MAX_BODY_CHARS],
            )
        )
    return messages


# -- Microsoft Graph: Outlook and Teams ----------------------------------------------------------


def _segment(value: str) -> str:
    """An id the user gave, as one path segment (a `/`, `?` or `..` in it cannot change the
    request's path)."""
    return quote(value, safe="")


def _graph_body(item: dict[str, Any]) -> str:
    body = item.get("body") or {}
    content = str(body.get("content") or "")
    text = html_to_text(content) if body.get("contentType", "").lower() == "html" else content
    return text[:MAX_BODY_CHARS]


async def _graph_pages(
    api: ProviderApi, url: str, params: dict[str, Any] | None, limit: int
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    next_url: str | None = url
    for _ in range(limit):
        if next_url is None or len(items) >= limit:
            break
        page = await api.get(next_url, params)
        params = None  # the next link carries the query
        items.extend(page.get("value") or [])
        next_url = page.get("@odata.nextLink")
    return items


def _in_window(moment: str | None, since: datetime, before: date | None) -> bool:
    if not moment:
        return False
    try:
        when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when >= since and (before is None or when.date() < before)


async def _outlook(
    api: ProviderApi, filters: dict[str, Any], since: datetime, before: date | None, limit: int
) -> list[MailMessage]:
    base = api.base
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    clause = f"receivedDateTime ge {stamp}"
    senders = filters.get("senders") or []
    if senders:
        # Graph filters by sender, so the run's message limit counts only messages that fit
        # (OData strings double their quotes; Graph compares addresses ignoring case).
        wanted = " or ".join(
            "from/emailAddress/address eq '{}'".format(sender.replace("'", "''"))
            for sender in senders
        )
        clause = f"{clause} and ({wanted})"
    params = {
        "$filter": clause,
        "$select": "id,subject,from,receivedDateTime,body",
        "$orderby": "receivedDateTime asc",
        "$top": str(min(_PAGE_SIZE, limit)),
    }
    folders = filters.get("folders") or []
    urls = [f"{base}/v1.0/me/mailFolders/{_segment(f)}/messages" for f in folders] or [
        f"{base}/v1.0/me/messages"
    ]
    messages: list[MailMessage] = []
    for url in urls:
        for item in await _graph_pages(api, url, dict(params), limit - len(messages)):
            address = ((item.get("from") or {}).get("emailAddress") or {}).get("address", "")
            if not _in_window(item.get("receivedDateTime"), since, before):
                continue
            messages.append(
                MailMessage(
                    id=str(item["id"]),
                    subject=str(item.get("subject") or ""),
                    sender=address,
                    sent_at=str(item.get("receivedDateTime") or ""),
                    body=_graph_body(item),
                )
            )
    return messages[:limit]


async def _teams(
    api: ProviderApi, filters: dict[str, Any], since: datetime, before: date | None, limit: int
) -> list[MailMessage]:
    base = api.base
    chats = list(filters.get("chats") or [])
    channels = list(filters.get("channels") or [])
    if not chats and not channels:
        chats = [
            str(c["id"]) for c in await _graph_pages(api, f"{base}/v1.0/me/chats", None, limit)
        ]
    sources = [(f"{base}/v1.0/me/chats/{_segment(chat)}/messages", chat) for chat in chats] + [
        (
            f"{base}/v1.0/teams/{_segment(team)}/channels/{_segment(channel)}/messages",
            f"{team}/{channel}",
        )
        for team, _, channel in (ref.partition("/") for ref in channels)
    ]
    messages: list[MailMessage] = []
    for url, where in sources:
        params = {"$top": str(min(_PAGE_SIZE, limit))}
        for item in await _graph_pages(api, url, params, limit - len(messages)):
            if item.get("messageType", "message") != "message":
                continue
            if not _in_window(item.get("createdDateTime"), since, before):
                continue
            user = ((item.get("from") or {}).get("user") or {}).get("displayName", "")
            messages.append(
                MailMessage(
                    id=f"{where}/{item['id']}",
                    subject=str(item.get("subject") or f"Teams message in {where}"),
                    sender=str(user),
                    sent_at=str(item.get("createdDateTime") or ""),
                    body=_graph_body(item),
                )
            )
    return messages[:limit]


_FETCHERS = {
    CloudProvider.GMAIL: _gmail,
    CloudProvider.OUTLOOK: _outlook,
    CloudProvider.TEAMS: _teams,
}


async def fetch_messages(
    *,
    provider: CloudProvider,
    api: ProviderApi,
    filters: dict[str, Any],
    since: datetime,
    before: date | None,
    limit: int,
) -> list[MailMessage]:
    """The messages in the window and filters, at most `limit`; `MailboxError` when unreadable."""
    try:
        return await _FETCHERS[provider](api, filters, since, before, limit)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        logger.warning("a provider could not be read", extra={"error": type(exc).__name__})
        msg = "the provider's answer could not be read"
        raise MailboxError(msg) from exc
