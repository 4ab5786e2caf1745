"""Staff sign-in as one use case: throttle, check the password off the event loop, open the session.

1. One short transaction counts the attempt on every subject it is throttled by (the account, the
   client address) or refuses it, without checking anything, while a wait or a lock is running.
2. The scrypt check runs in a thread pool, holding no database connection.
3. One transaction writes the outcome: on success the session, the audit event and the account's
   reset counter together; on failure the audit event (staff id when the account exists, address).

A browser that has signed in to an account before carries a device cookie for it (OWASP "device
cookies"): its attempts on that account are counted on their own and not against the address, so
an attacker guessing at an account or from a station's shared address cannot lock out the staff
who work there. See docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from db import audit
from db import signin_throttle as throttle_db
from db import staff as staff_db
from db.signin_throttle import Subject
from web.clock import Clock
from web.throttle import ACCOUNT, ADDRESS, ThrottleRule

log = logging.getLogger(__name__)

DEVICE_COOKIE = "dh_device"
DEVICE_COOKIE_MAX_AGE_S = 180 * 86400
_DEVICES_KEPT = 5  # accounts remembered per browser (a station PC is shared by its staff)


@dataclass(frozen=True)
class SignedIn:
    staff: staff_db.StaffMember
    session_token: str
    csrf_token: str
    device_cookie: str


@dataclass(frozen=True)
class WrongCredentials:
    """Unknown account, inactive account or wrong password: all look the same from outside."""


@dataclass(frozen=True)
class Throttled:
    retry_at: datetime
    locked: bool  # a lock (minutes) rather than one of the growing waits (seconds)


Outcome = SignedIn | WrongCredentials | Throttled


class DeviceCookies:
    """`nonce.mac` entries joined by `~`; each proves "this browser signed in to account X before"."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"donghanh-device:" + secret.encode()).digest()

    def _mac(self, username: str, nonce: str) -> str:
        return hmac.new(self._key, f"{username}\0{nonce}".encode(), hashlib.sha256).hexdigest()[:32]

    def trusted_nonce(self, cookie: str | None, username: str) -> str | None:
        """The nonce of this browser's entry for the account, if it has a genuine one."""
        for entry in (cookie or "").split("~")[:_DEVICES_KEPT]:
            nonce, _, mac = entry.partition(".")
            if nonce and mac and hmac.compare_digest(mac, self._mac(username, nonce)):
                return nonce
        return None

    def remember(self, cookie: str | None, username: str) -> str:
        """The cookie value after a successful sign-in: this account's entry (kept or new) last."""
        entries = [e for e in (cookie or "").split("~") if e.count(".") == 1][:_DEVICES_KEPT]
        mine = [e for e in entries if self.trusted_nonce(e, username)]
        others = [e for e in entries if e not in mine]
        if not mine:
            nonce = secrets.token_urlsafe(9)
            mine = [f"{nonce}.{self._mac(username, nonce)}"]
        return "~".join([*others, *mine][-_DEVICES_KEPT:])


@dataclass(frozen=True)
class Attempt:
    username: str          # as typed; never stored
    password: str = field(repr=False)  # never in a log line or a traceback's repr
    address: str = ""      # the client's address (web.client)
    device_cookie: str | None = None


class SignIn:
    """The sign-in use case, with its thread pool, clock and rules (one per application)."""

    def __init__(self, pool: asyncpg.Pool, executor: Executor, clock: Clock, *, secret: str,
                 session_ttl: timedelta, throttled: bool = True, account_rule: ThrottleRule = ACCOUNT,
                 address_rule: ThrottleRule = ADDRESS) -> None:
        self.pool = pool
        self.executor = executor
        self.clock = clock
        self.session_ttl = session_ttl
        self.throttled = throttled
        self.devices = DeviceCookies(secret)
        self._subject_key = hashlib.sha256(b"donghanh-signin:" + secret.encode()).digest()
        self.rules = {"account": account_rule, "device": account_rule, "address": address_rule}

    def account_subject(self, username: str) -> str:
        """A keyed hash of the normalised name: the table never holds what was typed (a password typed
        in the wrong box), and the same name maps to the same counter whether or not the account exists."""
        name = staff_db.normalise_username(username)
        return hmac.new(self._subject_key, name.encode(), hashlib.sha256).hexdigest()[:32]

    def subjects(self, attempt: Attempt) -> list[Subject]:
        name = staff_db.normalise_username(attempt.username)
        account = self.account_subject(name)
        nonce = self.devices.trusted_nonce(attempt.device_cookie, name)
        if nonce is not None:
            return [Subject("device", f"{account}:{nonce}")]
        return [Subject("account", account), Subject("address", attempt.address[:200] or "unknown")]

    async def attempt(self, attempt: Attempt) -> Outcome:
        subjects = self.subjects(attempt)
        async with self.pool.acquire() as con, con.transaction():
            if self.throttled:
                refused = await self._count(con, subjects)
                if refused is not None:
                    log.info("sign-in refused while throttled",
                             extra={"subjects": [s.kind for s in subjects], "retry_at": refused.retry_at.isoformat()})
                    return refused
            account = await staff_db.credentials(con, attempt.username)
        # scrypt in the pool's threads (hashlib releases the GIL), with no database connection held.
        ok = await asyncio.get_running_loop().run_in_executor(
            self.executor, staff_db.check_password, attempt.password, account)
        async with self.pool.acquire() as con, con.transaction():
            if ok and account is not None:
                return await self._succeeded(con, account.staff, subjects, attempt)
            await self._failed(con, account, subjects, attempt)
        return WrongCredentials()

    async def _count(self, con: asyncpg.Connection, subjects: list[Subject]) -> Throttled | None:
        """Refuse while any subject waits; otherwise count this attempt as a failure on each."""
        now = self.clock.now()
        counters = await throttle_db.lock(con, subjects, now)
        waits = [c for c in counters.values() if c.blocked_until is not None and c.blocked_until > now]
        if waits:
            worst = max(waits, key=lambda c: c.blocked_until or now)
            assert worst.blocked_until is not None
            rule = self.rules[worst.subject.kind]
            return Throttled(worst.blocked_until, worst.failures >= rule.lock_after)
        for counter in counters.values():
            rule = self.rules[counter.subject.kind]
            failures = rule.count_after(counter.failures, counter.last_failure_at, now)
            await throttle_db.save(con, throttle_db.Counter(counter.subject, failures, now,
                                                            rule.blocked_until(failures, now)))
        return None

    async def _succeeded(self, con: asyncpg.Connection, staff: staff_db.StaffMember, subjects: list[Subject],
                         attempt: Attempt) -> SignedIn:
        if self.throttled:
            for subject in subjects:
                if subject.kind == "address":
                    await self._take_back(con, subject)
                else:  # the account (or this device's count for it) starts again from zero
                    await throttle_db.forget(con, subject)
        token, csrf = await staff_db.open_session(con, staff.id, self.session_ttl)
        await audit.record(con, audit.Actor.staff(staff.id), "staff.sign_in", "staff", staff.id,
                           {"address": attempt.address})
        device = self.devices.remember(attempt.device_cookie, staff_db.normalise_username(attempt.username))
        return SignedIn(staff, token, csrf, device)

    async def _take_back(self, con: asyncpg.Connection, subject: Subject) -> None:
        """A success is not a failure: undo the count this attempt added to the shared address."""
        counter = (await throttle_db.lock(con, [subject], self.clock.now()))[subject]
        failures = max(counter.failures - 1, 0)
        rule = self.rules[subject.kind]
        await throttle_db.save(con, throttle_db.Counter(subject, failures, counter.last_failure_at,
                                                        rule.blocked_until(failures, counter.last_failure_at)))

    async def _failed(self, con: asyncpg.Connection, account: staff_db.Credentials | None,
                      subjects: list[Subject], attempt: Attempt) -> None:
        """Audit the failure: who was tried (the staff id, or a keyed hash of an unknown name), from where.
        Never the password, never the name as typed."""
        details: dict[str, object] = {
            "address": attempt.address,
            "reason": "unknown_account" if account is None else "inactive" if not account.active
            else "wrong_password",
            "trusted_device": subjects[0].kind == "device",
        }
        if account is None:
            details["account"] = self.account_subject(attempt.username)
        if self.throttled:  # forgotten counters go here, before the audit lock is taken
            now = self.clock.now()
            await throttle_db.prune(con, now - max(r.forget_after for r in self.rules.values()), now)
        object_id = account.staff.id if account is not None else ""
        await audit.record(con, audit.SYSTEM, "staff.sign_in_failed", "staff", object_id, details)
