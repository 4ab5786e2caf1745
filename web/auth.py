"""Who is asking: patients by signed join link (PyJWT), staff by session cookie with CSRF protection."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
import jwt
from aiohttp import web

from db import links as links_db
from db import staff as staff_db
from db.links import LinkState
from signaling.errors import SignalingError
from signaling.rooms import PatientIdentity
from web import params
from web.rkeys import csrf_rkey, session_rkey
from web.settings import Settings

LINK_AUDIENCE = "donghanh:join"
SESSION_COOKIE = "dh_session"
CSRF_COOKIE = "dh_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "_csrf"


class LinkError(SignalingError):
    """A join link that cannot be used: `code` tells the page what to say."""


@dataclass(frozen=True)
class LinkSigner:
    """Signs join links with the current key; verifies with the current and previous keys (rotation)."""

    key: str
    previous_keys: tuple[str, ...] = ()

    @staticmethod
    def key_id(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:8]

    def sign(self, jti: uuid.UUID, expires_at: datetime) -> str:
        """The token carries only the link id, the audience and the expiry."""
        claims = {"jti": str(jti), "aud": LINK_AUDIENCE, "exp": int(expires_at.timestamp())}
        return jwt.encode(claims, self.key, algorithm="HS256", headers={"kid": self.key_id(self.key)})

    def verify(self, token: str, *, allow_expired: bool = False) -> uuid.UUID:
        """The link id of a genuine, unexpired token (or expired too, with `allow_expired`: to say which
        station to call, or to show a finished visit's summary); LinkError otherwise."""
        if not token.isascii():  # ours are; PyJWT would fail to encode a non-UTF-8 header's surrogates
            raise LinkError("link_invalid", "this link is not valid")
        own = self._verify_own(token, allow_expired=allow_expired)
        if own is not None:
            return own
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise LinkError("link_invalid", "this link is not valid") from None
        keys = [k for k in (self.key, *self.previous_keys) if self.key_id(k) == kid] or [self.key]
        for key in keys:
            try:
                claims = jwt.decode(token, key, algorithms=["HS256"], audience=LINK_AUDIENCE,
                                    options={"require": ["jti", "exp", "aud"], "verify_exp": not allow_expired})
            except jwt.ExpiredSignatureError:
                raise LinkError("link_expired", "this link has expired") from None
            except jwt.InvalidTokenError:
                continue
            try:
                return uuid.UUID(str(claims["jti"]))
            except ValueError:
                break
        raise LinkError("link_invalid", "this link is not valid")


    def _verify_own(self, token: str, *, allow_expired: bool) -> uuid.UUID | None:
        """A token exactly as `sign` makes them, checked without PyJWT's generality (~15 µs instead of
        ~250 µs: every patient page's hello verifies one, all at once after a restart). Accepts only what
        PyJWT would accept: an HS256 signature by one of our keys over exactly the header and claims `sign`
        writes (jti, aud, exp), our audience, not expired (LinkError `link_expired`). Anything else — another
        shape, a bad signature — returns None and PyJWT decides, with its own error."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header, claims = json.loads(_b64(parts[0])), json.loads(_b64(parts[1]))
            signature = _b64(parts[2])
        except (ValueError, binascii.Error):
            return None
        if (not isinstance(header, dict) or header.get("alg") != "HS256" or header.get("typ", "JWT") != "JWT"
                or not set(header) <= {"alg", "typ", "kid"}
                or not isinstance(claims, dict) or set(claims) != {"jti", "aud", "exp"}):
            return None
        exp, jti = claims["exp"], claims["jti"]
        if claims["aud"] != LINK_AUDIENCE or type(exp) is not int or not isinstance(jti, str):
            return None
        signed = f"{parts[0]}.{parts[1]}".encode()
        if not any(hmac.compare_digest(hmac.digest(key.encode(), signed, "sha256"), signature)
                   for key in (self.key, *self.previous_keys) if self.key_id(key) == header.get("kid")):
            return None
        if not allow_expired and exp <= time.time():
            raise LinkError("link_expired", "this link has expired")
        try:
            return uuid.UUID(jti)
        except ValueError:
            return None


def _b64(segment: str) -> bytes:
    """base64url without padding, as in a JWT."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


async def resolve_link(con: asyncpg.Connection, signer: LinkSigner, token: str) -> links_db.JoinLink:
    """A usable join link, or LinkError(link_invalid|link_expired|link_revoked|link_finished)."""
    return usable_link(await links_db.lookup(con, signer.verify(token)))


async def resolve_links(con: asyncpg.Connection, signer: LinkSigner,
                        tokens: Sequence[str]) -> list[links_db.JoinLink | LinkError]:
    """`resolve_link` for many tokens, one statement for all of them: each a usable link or its LinkError."""
    jtis: list[uuid.UUID | LinkError] = []
    for token in tokens:
        try:
            jtis.append(signer.verify(token))
        except LinkError as exc:
            jtis.append(exc)
    links = await links_db.lookup_many(con, [j for j in jtis if isinstance(j, uuid.UUID)])
    out: list[links_db.JoinLink | LinkError] = []
    for jti in jtis:
        if isinstance(jti, LinkError):
            out.append(jti)
            continue
        try:
            out.append(usable_link(links.get(jti)))
        except LinkError as exc:
            out.append(exc)
    return out


def usable_link(link: links_db.JoinLink | None) -> links_db.JoinLink:
    """The link if it can be used now, else LinkError(link_invalid|link_expired|link_revoked|link_finished)."""
    if link is None:
        raise LinkError("link_invalid", "this link is not valid")
    if link.state is LinkState.expired:
        raise LinkError("link_expired", "this link has expired")
    if link.state is LinkState.revoked:
        raise LinkError("link_revoked", "this link was cancelled")
    if link.state is LinkState.finished:
        raise LinkError("link_finished", "this consultation has ended")
    return link


async def inspect_link(con: asyncpg.Connection, signer: LinkSigner, token: str) -> links_db.JoinLink | None:
    """The row of a genuine token whatever its state (expired, revoked, finished), or None. For pages
    that explain an unusable link; never a way in."""
    try:
        jti = signer.verify(token, allow_expired=True)
    except LinkError:
        return None
    return await links_db.lookup(con, jti)


def patient_identity(link: links_db.JoinLink) -> PatientIdentity:
    return PatientIdentity(link.patient_id, link.facility_id, link.jti)


async def issue_link(con: asyncpg.Connection, signer: LinkSigner, patient_id: int, ttl_s: int,
                     created_by: int | None = None) -> tuple[str, datetime]:
    """Create the link row and its signed token: (token, expires_at)."""
    jti, expires_at = await links_db.create(con, patient_id, timedelta(seconds=ttl_s), created_by)
    return signer.sign(jti, expires_at), expires_at


class LinkUrl(Protocol):
    def __call__(self, jti: uuid.UUID, expires_at: datetime, code: str | None = None) -> str: ...


def join_url(signer: LinkSigner, base_url: str) -> LinkUrl:
    """Builds a link's URL from its row: `base_url/s/<code>` when the link's short code is given (what
    SMS carry), else `base_url/j/<token>`. HS256 signing is deterministic, so the same link signed again
    (to re-send it, or to show it on the invitation page) is the same URL."""
    def url(jti: uuid.UUID, expires_at: datetime, code: str | None = None) -> str:
        if code is not None:
            return f"{base_url.rstrip('/')}/s/{code}"
        return f"{base_url.rstrip('/')}/j/{signer.sign(jti, expires_at)}"
    return url


# ---- TURN REST credentials (coturn `use-auth-secret`) -------------------------------------------

def turn_credentials(secret: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    """username "<expiry>:<random>" and base64 HMAC-SHA1 password, as coturn's REST API expects."""
    expiry = int((now if now is not None else time.time()) + ttl_s)
    username = f"{expiry}:{secrets.token_hex(4)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(settings: Settings) -> list[dict[str, Any]]:
    """STUN/TURN servers for browsers (and the server's own echo peer), with fresh TURN credentials."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls and settings.turn_secret:
        username, credential = turn_credentials(settings.turn_secret, settings.turn_ttl_s)
        servers.append({"urls": list(settings.turn_urls), "username": username, "credential": credential})
    return servers


# ---- CSRF ----------------------------------------------------------------------------------------
# Before sign-in (the sign-in form): a double-submit cookie, compared in constant time. Signed in: the
# token is the session's own (`staff_session.csrf_token`, new at each sign-in), so a token known from
# before sign-in, or planted in the cookie, or taken from another session, is refused.

def csrf_token(request: web.Request) -> str:
    """The CSRF token pages embed: the session's once signed in, else this browser's pre-login token
    (set as a cookie by the middleware if new)."""
    token = request.get(csrf_rkey)
    if isinstance(token, str):
        return token
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    request[csrf_rkey] = token
    return token


async def check_csrf(request: web.Request) -> bool:
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await params.form(request)
        value = form.get(CSRF_FIELD)
        supplied = value if isinstance(value, str) else None
    if not supplied:
        return False
    session = await request_session(request)
    expected = session.csrf_token if session is not None else request.cookies.get(CSRF_COOKIE)
    # Bytes: compare_digest raises TypeError on non-ASCII str, and headers and cookies can carry any byte.
    return bool(expected) and hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"),
                                                  (expected or "").encode("utf-8", "surrogateescape"))


async def staff_session(con: asyncpg.Connection, request: web.Request) -> staff_db.Session | None:
    """The signed-in staff session of this request (looked up once per request), or None."""
    if session_rkey in request:
        return request[session_rkey]
    token = request.cookies.get(SESSION_COOKIE)
    session = await staff_db.session(con, token) if token and token.isascii() else None  # ours are ASCII
    request[session_rkey] = session
    if session is not None:
        request[csrf_rkey] = session.csrf_token
    return session


async def request_session(request: web.Request) -> staff_db.Session | None:
    """`staff_session` with a connection of the app's pool (none taken without a session cookie)."""
    if session_rkey in request or SESSION_COOKIE not in request.cookies:
        return request.get(session_rkey)
    from web.keys import pool_key  # web.keys imports this module

    async with request.app[pool_key].acquire() as con:
        return await staff_session(con, request)
