"""Loopback fakes of Google's and Microsoft's OAuth and mail APIs, shaped like the real ones.

OAuth: the authorization endpoint redirects to the redirect URI with `code`
and `state` (or `error=access_denied`); the token endpoint checks the client,
the redirect URI and the PKCE (S256) verifier, and answers the code and the
refresh grants (Google leaves the refresh token out of a refresh, like Google).
Gmail: `users.messages.list` paged by `nextPageToken` (its `q` read for
`after:`, `before:` and `from:`, `labelIds` for labels), `users.messages.get`
with base64url multipart bodies. Graph: `/v1.0/me/messages` and a mail
folder's messages (`receivedDateTime ge` in `$filter` applied), Teams chats,
chat messages and channel messages, paged by `@odata.nextLink`. An unknown or
expired access token is 401; `throttle` answers the next requests 429 with
`Retry-After`; `outage_after` has every API request after that many answer 503.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlparse

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tests.loopback import serve_on_loopback

CLIENT_ID = "fake-client"
CLIENT_SECRET = "fake-secret"
PAGE = 2
# The server's public base URL in the tests (only the redirect URI names it).
PUBLIC_BASE = "https://adiuva.example"


def _b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@dataclass
class FakeMessage:
    id: str
    subject: str
    sender: str
    when: datetime
    text: str
    html: str | None = None
    labels: tuple[str, ...] = ("INBOX",)


@dataclass
class ProviderFakes:
    base_url: str = ""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    gmail: list[FakeMessage] = field(default_factory=list)
    outlook: list[FakeMessage] = field(default_factory=list)
    outlook_folders: dict[str, list[FakeMessage]] = field(default_factory=dict)
    teams: dict[str, list[FakeMessage]] = field(default_factory=dict)
    channels: dict[str, list[FakeMessage]] = field(default_factory=dict)  # "team/channel"
    deny_consent: bool = False
    token_outage: bool = False  # the token endpoint answers 503 (an HTML page)
    throttle: int = 0  # the next n API requests answer 429
    outage_after: int | None = None  # API requests past this many answer 503 (an HTML page)
    expires_in: int = 3600  # what the token endpoint says of the access tokens it issues
    requests: list[str] = field(default_factory=list)
    refreshes: int = 0
    api_tokens: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # access tokens, in the order issued

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (the API answers 401)."""
        self.access_tokens.clear()

    def _issue(self, *, with_refresh: bool) -> dict[str, Any]:
        access = secrets.token_urlsafe(16)
        self.access_tokens.add(access)
        self.issued.append(access)
        token: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if with_refresh:
            refresh = secrets.token_urlsafe(16)
            self.refresh_tokens.add(refresh)
            token["refresh_token"] = refresh
        return token

    def _api_refusal(self, request: Request) -> Response | None:
        self.requests.append(str(request.url))
        auth = request.headers.get("authorization", "")
        self.api_tokens.append(auth)
        if self.outage_after is not None and len(self.requests) > self.outage_after:
            return HTMLResponse("<h1>Service Unavailable</h1>", 503)
        if self.throttle:
            self.throttle -= 1
            return JSONResponse({"error": "rateLimitExceeded"}, 429, {"Retry-After": "1"})
        if auth.removeprefix("Bearer ") not in self.access_tokens:
            return JSONResponse({"error": {"code": 401, "status": "UNAUTHENTICATED"}}, 401)
        return None

    def build(self) -> FastAPI:
        app = FastAPI()

        def authorize(request: Request) -> RedirectResponse:
            q = request.query_params
            assert q["client_id"] == CLIENT_ID
            assert q["response_type"] == "code"
            assert q["code_challenge_method"] == "S256"
            if self.deny_consent:
                query = {"error": "access_denied", "state": q["state"]}
            else:
                code = secrets.token_urlsafe(8)
                self.codes[code] = {
                    "challenge": q["code_challenge"],
                    "redirect_uri": q["redirect_uri"],
                    "scope": q["scope"],
                }
                query = {"code": code, "state": q["state"]}
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode(query)}", 302)

        async def token(request: Request, google: bool) -> Response:
            if self.token_outage:
                return HTMLResponse("<h1>Service Unavailable</h1>", 503)
            form = await request.form()
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            basic = request.headers.get("authorization", "")
            if basic.startswith("Basic "):
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
                return JSONResponse({"error": "invalid_client"}, 401)
            if form.get("grant_type") == "authorization_code":
                grant = self.codes.pop(str(form.get("code")), None)
                verifier = str(form.get("code_verifier", ""))
                challenge = _b64url_bytes(hashlib.sha256(verifier.encode()).digest())
                if grant is None or grant["challenge"] != challenge:
                    return JSONResponse({"error": "invalid_grant"}, 400)
                if grant["redirect_uri"] != form.get("redirect_uri"):
                    return JSONResponse({"error": "redirect_uri_mismatch"}, 400)
                return JSONResponse(self._issue(with_refresh=True))
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") not in self.refresh_tokens:
                    return JSONResponse({"error": "invalid_grant"}, 400)
                self.refreshes += 1
                return JSONResponse(self._issue(with_refresh=not google))
            return JSONResponse({"error": "unsupported_grant_type"}, 400)

        app.add_api_route("/google/auth", authorize)
        app.add_api_route("/ms/authorize", authorize)

        async def google_token(request: Request) -> Response:
            return await token(request, google=True)

        async def ms_token(request: Request) -> Response:
            return await token(request, google=False)

        app.add_api_route("/google/token", google_token, methods=["POST"])
        app.add_api_route("/ms/token", ms_token, methods=["POST"])

        @app.get("/gmail/v1/users/me/messages")
        async def gmail_list(request: Request, pageToken: str = "0") -> Any:  # noqa: N803
            if refusal := self._api_refusal(request):
                return refusal
            found = [
                m
                for m in self.gmail
                if _gmail_matches(m, request.query_params["q"])
                and set(request.query_params.getlist("labelIds")) <= set(m.labels)
            ]
            start = int(pageToken)
            body: dict[str, Any] = {
                "messages": [{"id": m.id, "threadId": m.id} for m in found[start : start + PAGE]],
                "resultSizeEstimate": len(found),
            }
            if start + PAGE < len(found):
                body["nextPageToken"] = str(start + PAGE)
            return body

        @app.get("/gmail/v1/users/me/messages/{message_id}")
        async def gmail_get(request: Request, message_id: str) -> Any:
            if refusal := self._api_refusal(request):
                return refusal
            [m] = [m for m in self.gmail if m.id == message_id]
            parts = (
                [{"mimeType": "text/plain", "body": {"data": _b64url(m.text)}}] if m.text else []
            )
            if m.html:
                parts.append({"mimeType": "text/html", "body": {"data": _b64url(m.html)}})
            return {
                "id": m.id,
                "internalDate": str(int(m.when.timestamp() * 1000)),
                "payload": {
                    "mimeType": "multipart/alternative",
                    "headers": [
                        {"name": "Subject", "value": m.subject},
                        {"name": "From", "value": m.sender},
                        {"name": "Date", "value": m.when.strftime("%a, %d %b %Y %H:%M:%S +0000")},
                    ],
                    "body": {"size": 0},
                    "parts": parts,
                },
            }

        def graph_page(request: Request, items: list[dict[str, Any]], path: str) -> Any:
            skip = int(request.query_params.get("$skiptoken", "0"))
            body: dict[str, Any] = {"value": items[skip : skip + PAGE]}
            if skip + PAGE < len(items):
                body["@odata.nextLink"] = f"{self.base_url}{path}?$skiptoken={skip + PAGE}"
            return body

        def graph_item(m: FakeMessage, *, teams: bool) -> dict[str, Any]:
            stamp = m.when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = (
                {"contentType": "html", "content": m.html}
                if m.html
                else {
                    "contentType": "text",
                    "content": m.text,
                }
            )
            if teams:
                return {
                    "id": m.id,
                    "messageType": "message",
                    "createdDateTime": stamp,
                    "subject": None,
                    "from": {"user": {"displayName": m.sender}},
                    "body": body,
                }
            return {
                "id": m.id,
                "subject": m.subject,
                "receivedDateTime": stamp,
                "from": {"emailAddress": {"address": m.sender}},
                "body": body,
            }

        def received_since(request: Request, messages: list[FakeMessage]) -> list[FakeMessage]:
            # The $filter the server sends: `receivedDateTime ge <ISO time>`, optionally
            # `and (from/emailAddress/address eq '<address>' or …)`, addresses any case.
            clause = request.query_params.get("$filter", "")
            if not clause:
                return messages
            received, _, by_sender = clause.partition(" and ")
            field_name, operator, stamp = received.split(" ", 2)
            assert (field_name, operator) == ("receivedDateTime", "ge"), clause
            since = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            senders = {
                term.split(" eq ", 1)[1].strip("'").replace("''", "'").lower()
                for term in by_sender.strip("()").split(" or ")
                if term
            }
            return [
                m
                for m in messages
                if m.when >= since and (not senders or m.sender.lower() in senders)
            ]

        @app.get("/v1.0/me/messages")
        async def outlook_list(request: Request) -> Any:
            if refusal := self._api_refusal(request):
                return refusal
            items = [graph_item(m, teams=False) for m in received_since(request, self.outlook)]
            return graph_page(request, items, "/v1.0/me/messages")

        @app.get("/v1.0/me/mailFolders/{folder_id}/messages")
        async def folder_list(request: Request, folder_id: str) -> Any:
            if refusal := self._api_refusal(request):
                return refusal
            if folder_id not in self.outlook_folders:
                error = {"code": "ErrorItemNotFound", "message": "The folder was not found."}
                return JSONResponse({"error": error}, 404)
            found = received_since(request, self.outlook_folders[folder_id])
            items = [graph_item(m, teams=False) for m in found]
            return graph_page(request, items, f"/v1.0/me/mailFolders/{folder_id}/messages")

        @app.get("/v1.0/me/chats")
        async def chats(request: Request) -> Any:
            if refusal := self._api_refusal(request):
                return refusal
            return {"value": [{"id": chat} for chat in self.teams]}

        @app.get("/v1.0/me/chats/{chat_id}/messages")
        async def chat_messages(request: Request, chat_id: str) -> Any:
            if refusal := self._api_refusal(request):
                return refusal
            items = [graph_item(m, teams=True) for m in self.teams.get(chat_id, [])]
            return graph_page(request, items, f"/v1.0/me/chats/{chat_id}/messages")

        @app.get("/v1.0/teams/{team_id}/channels/{channel_id}/messages")
        async def channel_messages(request: Request, team_id: str, channel_id: str) -> Any:
            if refusal := self._api_refusal(request):
                return refusal
            messages = self.channels.get(f"{team_id}/{channel_id}")
            if messages is None:
                error = {"code": "NotFound", "message": "Channel not found."}
                return JSONResponse({"error": error}, 404)
            items = []
            for m in messages:
                item = graph_item(m, teams=True)
                # Channel posts carry a subject (the thread's title) and where they were posted.
                item["subject"] = m.subject or None
                item["channelIdentity"] = {"teamId": team_id, "channelId": channel_id}
                items.append(item)
            path = f"/v1.0/teams/{team_id}/channels/{channel_id}/messages"
            return graph_page(request, items, path)

        return app


def _gmail_matches(message: FakeMessage, query: str) -> bool:
    """Whether `message` fits a Gmail search: `after:` (Unix time), `before:` (YYYY/MM/DD,
    midnight UTC here) and `from:` terms, several of them in `{…}` meaning any of them."""
    senders = []
    for term in query.replace("{", " ").replace("}", " ").split():
        name, _, value = term.partition(":")
        if name == "after" and message.when.timestamp() < int(value):
            return False
        if name == "before":
            day = datetime.strptime(value, "%Y/%m/%d").replace(tzinfo=UTC)
            if message.when >= day:
                return False
        if name == "from":
            senders.append(value.lower())
    return not senders or message.sender.lower() in senders


def _b64url_bytes(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def provider_settings(base_url: str) -> dict[str, Any]:
    """Settings that point every provider URL at the fakes served on `base_url`."""
    return {
        "oauth_redirect_base": PUBLIC_BASE,
        "google_client_id": CLIENT_ID,
        "google_client_secret": CLIENT_SECRET,
        "google_auth_url": f"{base_url}/google/auth",
        "google_token_url": f"{base_url}/google/token",
        "gmail_api_base": base_url,
        "microsoft_client_id": CLIENT_ID,
        "microsoft_client_secret": CLIENT_SECRET,
        "microsoft_auth_url": f"{base_url}/ms/authorize",
        "microsoft_token_url": f"{base_url}/ms/token",
        "ms_graph_api_base": base_url,
    }


@asynccontextmanager
async def served_fakes() -> AsyncIterator[ProviderFakes]:
    """The fakes on a loopback port for the block (`base_url` set)."""
    fakes = ProviderFakes()
    async with serve_on_loopback(fakes.build()) as port:
        fakes.base_url = f"http://127.0.0.1:{port}"
        yield fakes


async def consent(client: httpx.AsyncClient, headers: dict[str, str], provider: str) -> str:
    """Authorize through `client` and play the browser: the callback path and query the
    provider redirected to."""
    response = await client.get(f"/api/v1/oauth/{provider}/authorize", headers=headers)
    assert response.status_code == 200, response.text
    async with httpx.AsyncClient() as browser:
        redirect = await browser.get(response.json()["authorization_url"])
    assert redirect.status_code == 302
    location = urlparse(redirect.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == PUBLIC_BASE
    return f"{location.path}?{location.query}"


async def connect(client: httpx.AsyncClient, headers: dict[str, str], provider: str) -> str:
    """The whole OAuth flow through `client`: the `encrypted_token` the callback answered."""
    response = await client.get(await consent(client, headers, provider))
    assert response.status_code == 200, response.text
    return str(response.json()["encrypted_token"])
