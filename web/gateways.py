"""Message gateways: how an SMS leaves the building.

`OutboxGateway` (the default) sends nothing anywhere: the scheduler marks the message sent in PostgreSQL
and `/staff/outbox` shows exactly what would have gone out — right for demos, tests and clinics that
copy links into Zalo by hand. `HttpSmsGateway` talks to a generic HTTP SMS provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from db.messages import OutboundMessage
from web.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    """The outcome of one `send`: accepted by the provider, or why not (and whether trying later may help)."""

    ok: bool
    attempts: int
    provider_message_id: str | None = None
    error: str | None = None
    retryable: bool = False
    delivered: bool = False


class MessageGateway(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> SendResult:
        """Hand one message to the provider; never raises for provider or network errors."""
        ...


class OutboxGateway:
    """Stores instead of sending: the message row itself is the outbox (marked sent by the scheduler)."""

    name = "outbox"

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(ok=True, attempts=1, provider_message_id=f"outbox-{message.id}")


def parse_auth_header(text: str) -> dict[str, str]:
    """"X-Api-Key: abc" → {"X-Api-Key": "abc"}; a value without a name is an Authorization header."""
    text = text.strip()
    if not text:
        return {}
    name, sep, value = text.partition(":")
    if not sep or " " in name.strip():
        return {"Authorization": text}
    return {name.strip(): value.strip()}


def _fill(template: Any, values: Mapping[str, str]) -> Any:
    """Replace {to}, {text}, {reference} in every string of a JSON template (values stay JSON-safe)."""
    if isinstance(template, str):
        out = template
        for key, value in values.items():
            out = out.replace("{" + key + "}", value)
        return out
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


# Where providers put the id of an accepted message, and a delivery status if they report one at once.
_ID_KEYS = ("id", "message_id", "messageId", "msg_id", "sid", "SMSID", "reference")
_DELIVERED = {"delivered", "delivrd"}


def _provider_fields(body: str) -> tuple[str | None, bool]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, False
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = {**data["data"], **{k: v for k, v in data.items() if k != "data"}}
    if not isinstance(data, dict):
        return None, False
    provider_id = next((str(data[k]) for k in _ID_KEYS if data.get(k) not in (None, "")), None)
    status = str(data.get("status", "")).lower()
    return provider_id, status in _DELIVERED


class HttpSmsGateway:
    """A generic HTTP SMS API.

    With `{to}` or `{text}` in the URL, one GET with the values URL-encoded into it (the style of many
    Vietnamese SMS brand-name APIs); otherwise a POST of a JSON body, `body_template` with `{to}`, `{text}`
    and `{reference}` replaced (default `{"to", "text", "reference"}`). 2xx means accepted. 5xx,
    429, timeouts and connection errors are retried `retries` times with exponential backoff; other 4xx
    mean the request itself is wrong and are not retried.
    """

    name = "http"

    def __init__(self, session: aiohttp.ClientSession, url_template: str, *, auth_header: str = "",
                 body_template: str = "", retries: int = 3, timeout_s: float = 10.0, backoff_s: float = 0.5,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.session = session
        self.url_template = url_template
        self.headers = parse_auth_header(auth_header)
        self.body_template: Any = json.loads(body_template) if body_template else {
            "to": "{to}", "text": "{text}", "reference": "{reference}"}
        self.retries = retries
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.backoff_s = backoff_s
        self._sleep = sleep

    @property
    def tries_per_send(self) -> int:
        return self.retries + 1

    def _request(self, message: OutboundMessage) -> tuple[str, str, Any]:
        values = {"to": message.to_phone, "text": message.body, "reference": message.dedupe_key}
        if "{to}" in self.url_template or "{text}" in self.url_template:
            url = self.url_template
            for key, value in values.items():
                url = url.replace("{" + key + "}", quote(value, safe=""))
            return "GET", url, None
        return "POST", self.url_template, _fill(self.body_template, values)

    async def _try_once(self, message: OutboundMessage) -> SendResult:
        method, url, body = self._request(message)
        try:
            async with self.session.request(method, url, json=body, headers=self.headers,
                                            timeout=self.timeout) as response:
                text = await response.text()
                if 200 <= response.status < 300:
                    provider_id, delivered = _provider_fields(text)
                    return SendResult(True, 1, provider_id, delivered=delivered)
                # 429 is a 4xx but means "later", like a 5xx.
                retryable = response.status >= 500 or response.status == 429
                return SendResult(False, 1, error=f"HTTP {response.status}: {text[:200]}", retryable=retryable)
        except TimeoutError:
            return SendResult(False, 1, error="timeout", retryable=True)
        except aiohttp.ClientError as exc:
            return SendResult(False, 1, error=f"{type(exc).__name__}: {exc}"[:300], retryable=True)

    async def send(self, message: OutboundMessage) -> SendResult:
        attempts = 0
        while True:
            result = await self._try_once(message)
            attempts += 1
            if result.ok or not result.retryable or attempts > self.retries:
                return SendResult(result.ok, attempts, result.provider_message_id, result.error,
                                  result.retryable, result.delivered)
            log.info("sms gateway try failed; retrying",
                     extra={"message_id": message.id, "attempt": attempts, "error": result.error})
            await self._sleep(self.backoff_s * 2 ** (attempts - 1))


def gateway_from_settings(settings: Settings, session: aiohttp.ClientSession | None) -> MessageGateway:
    """The configured gateway (`DONGHANH_SMS_GATEWAY`); the http one needs a client session."""
    if settings.sms_gateway == "http":
        if session is None:
            raise ValueError("the http SMS gateway needs an aiohttp client session")
        return HttpSmsGateway(session, settings.sms_url, auth_header=settings.sms_auth_header,
                              body_template=settings.sms_body, retries=settings.sms_retries)
    return OutboxGateway()
