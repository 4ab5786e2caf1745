"""Staff accounts, scrypt password hashes and sign-in sessions."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

from care import access
from care.access import Action
from db import audit
from db.errors import NotFound

# scrypt cost: n=2**14, r=8, p=1 is the OWASP minimum (16 MiB, ~50 ms): slow for attackers, fine per sign-in.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64); the parameters travel with the hash so they can be raised later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


async def hash_off_loop(password: str, executor: Executor | None = None) -> str:
    """`hash_password` in a worker thread: scrypt holds a core for ~50 ms and must not stall the loop."""
    return await asyncio.get_running_loop().run_in_executor(executor, hash_password, password)


# A real hash of an unguessable password, checked when the username is unknown so timing tells nothing.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class StaffMember:
    id: int
    facility_id: int
    facility_name: str
    username: str
    name: str
    role: str
    specialties: tuple[str, ...]
    on_duty: bool

    @property
    def sees_patients(self) -> bool:
        """A clinician: may claim patients and see them in a call (care/access.py)."""
        return access.may_ever(self.role, Action.claim)


_SELECT = """SELECT s.id, s.facility_id, f.name AS facility_name, s.username, s.name, s.role,
                    s.specialties, s.on_duty
             FROM staff s JOIN facility f ON f.id = s.facility_id"""


def _member(row: asyncpg.Record) -> StaffMember:
    return StaffMember(row["id"], row["facility_id"], row["facility_name"], row["username"], row["name"],
                       row["role"], tuple(row["specialties"]), row["on_duty"])


@dataclass(frozen=True)
class Credentials:
    """An account as sign-in sees it: the member, the stored hash, and whether it may sign in."""

    staff: StaffMember
    password_hash: str = field(repr=False)
    active: bool = True


async def credentials(con: asyncpg.Connection, username: str) -> Credentials | None:
    """The account with this (normalised) username, active or not; None when there is none."""
    row = await con.fetchrow(
        _SELECT.replace("s.on_duty", "s.on_duty, s.password_hash, s.active") + " WHERE s.username = $1",
        normalise_username(username),
    )
    return Credentials(_member(row), row["password_hash"], row["active"]) if row else None


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_password(password: str, account: Credentials | None) -> bool:
    """True for the right password of an active account. CPU-bound (scrypt): call it in a thread pool.
    An unknown account is checked against a dummy hash, so the time taken tells nothing."""
    ok = verify_password(password, account.password_hash if account else _DUMMY_HASH)
    return ok and account is not None and account.active


async def get(con: asyncpg.Connection, staff_id: int) -> StaffMember | None:
    row = await con.fetchrow(_SELECT + " WHERE s.id = $1", staff_id)
    return _member(row) if row else None


@dataclass(frozen=True)
class Session:
    staff: StaffMember
    csrf_token: str


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_hash(token: str) -> bytes:
    """What a session is known by in the database (and in the hub's index of live sockets)."""
    return _token_hash(token)


async def open_session(con: asyncpg.Connection, staff_id: int, ttl: timedelta) -> tuple[str, str]:
    """Create a session; returns (cookie token, CSRF token). Only the token's hash is stored."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    await con.execute(
        "INSERT INTO staff_session (token_hash, staff_id, csrf_token, expires_at) "
        "VALUES ($1, $2, $3, now() + $4::interval)",
        _token_hash(token), staff_id, csrf, ttl,
    )
    return token, csrf


async def session(con: asyncpg.Connection, token: str) -> Session | None:
    row = await con.fetchrow(
        """SELECT s.id, s.facility_id, f.name AS facility_name, s.username, s.name, s.role,
                  s.specialties, s.on_duty, ss.csrf_token
           FROM staff_session ss JOIN staff s ON s.id = ss.staff_id JOIN facility f ON f.id = s.facility_id
           WHERE ss.token_hash = $1 AND ss.revoked_at IS NULL AND ss.expires_at > now() AND s.active""",
        _token_hash(token),
    )
    return Session(_member(row), row["csrf_token"]) if row else None


async def sessions(con: asyncpg.Connection, token_hashes: Sequence[bytes]) -> dict[bytes, Session]:
    """`session` for many token hashes (`token_hash`) in one statement (staff pages reconnecting after a
    restart)."""
    rows = await con.fetch(
        """SELECT ss.token_hash, s.id, s.facility_id, f.name AS facility_name, s.username, s.name, s.role,
                  s.specialties, s.on_duty, ss.csrf_token
           FROM staff_session ss JOIN staff s ON s.id = ss.staff_id JOIN facility f ON f.id = s.facility_id
           WHERE ss.token_hash = ANY($1::bytea[]) AND ss.revoked_at IS NULL AND ss.expires_at > now()
             AND s.active""",
        list(set(token_hashes)),
    )
    return {bytes(row["token_hash"]): Session(_member(row), row["csrf_token"]) for row in rows}


async def close_session(con: asyncpg.Connection, token: str) -> None:
    await con.execute("UPDATE staff_session SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
                      _token_hash(token))


async def create(con: asyncpg.Connection, *, facility_id: int, username: str, name: str, role: str,
                 password: str, specialties: tuple[str, ...] = (), on_duty: bool = False) -> int:
    staff_id: int = await con.fetchval(
        """INSERT INTO staff (facility_id, username, name, role, specialties, password_hash, on_duty)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
        facility_id, username, name, role, list(specialties), await hash_off_loop(password), on_duty,
    )
    return staff_id


async def live_sessions(con: asyncpg.Connection, token_hashes: list[bytes]) -> set[bytes]:
    """Which of these sessions are still valid: not signed out, not expired, account active."""
    if not token_hashes:
        return set()
    rows = await con.fetch(
        """SELECT ss.token_hash FROM staff_session ss JOIN staff s ON s.id = ss.staff_id
           WHERE ss.token_hash = ANY($1::bytea[]) AND ss.revoked_at IS NULL AND ss.expires_at > now()
             AND s.active""", token_hashes)
    return {bytes(r["token_hash"]) for r in rows}


async def by_username(con: asyncpg.Connection, username: str) -> StaffMember | None:
    row = await con.fetchrow(_SELECT + " WHERE s.username = $1", username.strip().lower())
    return _member(row) if row else None


async def _revoke_sessions(con: asyncpg.Connection, staff_id: int) -> int:
    status = await con.execute(
        "UPDATE staff_session SET revoked_at = now() WHERE staff_id = $1 AND revoked_at IS NULL", staff_id)
    return int(status.split()[-1])


async def deactivate(con: asyncpg.Connection, staff_id: int, actor: audit.Actor = audit.SYSTEM) -> int:
    """The account can no longer sign in and every open session ends (live sockets are closed by the hub
    within seconds, in any process). Audited. Returns how many sessions were ended; NotFound if no account."""
    async with con.transaction():
        found = await con.fetchval("UPDATE staff SET active = false WHERE id = $1 RETURNING id", staff_id)
        if found is None:
            raise NotFound("staff member", staff_id)
        ended = await _revoke_sessions(con, staff_id)
        await audit.record(con, actor, "staff.deactivate", "staff", staff_id, {"sessions_ended": ended})
    return ended


async def set_password(con: asyncpg.Connection, staff_id: int, password: str,
                       actor: audit.Actor = audit.SYSTEM) -> int:
    """A new password; every open session of the account ends (a stolen session dies with the old password).
    Hashed off the event loop. Audited. Returns how many sessions were ended; NotFound if no account."""
    password_hash = await asyncio.to_thread(hash_password, password)
    async with con.transaction():
        found = await con.fetchval("UPDATE staff SET password_hash = $2 WHERE id = $1 RETURNING id",
                                   staff_id, password_hash)
        if found is None:
            raise NotFound("staff member", staff_id)
        ended = await _revoke_sessions(con, staff_id)
        await audit.record(con, actor, "staff.set_password", "staff", staff_id, {"sessions_ended": ended})
    return ended
