"""Join links (web.auth.LinkSigner, resolve_link, db.links) and the hash-chained audit trail (db.audit)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import jwt
import pytest

from db import audit
from db import links as links_db
from tests.integration.conftest import Factory
from web.auth import LINK_AUDIENCE, LinkError, LinkSigner, issue_link, resolve_link

KEY = "current-key-" + "k" * 60
OLD_KEY = "previous-key-" + "p" * 40
SIGNER = LinkSigner(KEY)


def in_hours(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def flip(text: str, index: int) -> str:
    """Replace one base64url character with another, so the decoded bytes change."""
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1:]


def link_error(signer: LinkSigner, token: str) -> str:
    with pytest.raises(LinkError) as refused:
        signer.verify(token)
    return refused.value.code


# ---- the token -----------------------------------------------------------------------------------------

def test_signed_link_verifies_to_its_id() -> None:
    jti = uuid.uuid4()
    token = SIGNER.sign(jti, in_hours(2))
    assert SIGNER.verify(token) == jti
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=LINK_AUDIENCE)
    assert set(claims) == {"jti", "aud", "exp"}  # nothing about the patient travels in the SMS
    assert jwt.get_unverified_header(token)["kid"] == LinkSigner.key_id(KEY)


def test_tampered_signature_is_invalid() -> None:
    token = SIGNER.sign(uuid.uuid4(), in_hours(2))
    header, payload, signature = token.split(".")
    assert link_error(SIGNER, f"{header}.{payload}.{flip(signature, len(signature) // 2)}") == "link_invalid"
    assert link_error(SIGNER, f"{header}.{payload}.") == "link_invalid"


def test_tampered_payload_is_invalid() -> None:
    token = SIGNER.sign(uuid.uuid4(), in_hours(2))
    header, payload, signature = token.split(".")
    for index in (5, len(payload) // 2, len(payload) - 3):
        assert link_error(SIGNER, f"{header}.{flip(payload, index)}.{signature}") == "link_invalid"


def test_payload_from_another_token_with_a_valid_signature_elsewhere_is_invalid() -> None:
    mine = SIGNER.sign(uuid.uuid4(), in_hours(2)).split(".")
    theirs = SIGNER.sign(uuid.uuid4(), in_hours(2)).split(".")
    assert link_error(SIGNER, ".".join([mine[0], theirs[1], mine[2]])) == "link_invalid"


def test_token_for_another_audience_is_invalid() -> None:
    claims = {"jti": str(uuid.uuid4()), "aud": "donghanh:something-else", "exp": int(in_hours(2).timestamp())}
    token = jwt.encode(claims, KEY, algorithm="HS256", headers={"kid": LinkSigner.key_id(KEY)})
    assert link_error(SIGNER, token) == "link_invalid"
    no_audience = jwt.encode({k: v for k, v in claims.items() if k != "aud"}, KEY, algorithm="HS256")
    assert link_error(SIGNER, no_audience) == "link_invalid"


def test_expired_token_is_expired() -> None:
    token = SIGNER.sign(uuid.uuid4(), in_hours(-1))
    assert link_error(SIGNER, token) == "link_expired"


def test_expired_token_signed_with_an_unknown_key_is_invalid_not_expired() -> None:
    forged = LinkSigner("somebody-else-" + "z" * 40).sign(uuid.uuid4(), in_hours(-1))
    assert link_error(SIGNER, forged) == "link_invalid"


@pytest.mark.parametrize("token", [
    "", "garbage", "a.b.c", "....",
    jwt.encode({"jti": "not-a-uuid", "aud": LINK_AUDIENCE, "exp": 4102444800}, KEY, algorithm="HS256"),
    jwt.encode({"aud": LINK_AUDIENCE, "exp": 4102444800}, KEY, algorithm="HS256"),
    jwt.encode({"jti": str(uuid.uuid4()), "aud": LINK_AUDIENCE}, KEY, algorithm="HS256"),
    jwt.encode({"jti": str(uuid.uuid4()), "aud": LINK_AUDIENCE, "exp": 4102444800}, "", algorithm="none"),
    jwt.encode({"jti": str(uuid.uuid4()), "aud": LINK_AUDIENCE, "exp": 4102444800}, KEY, algorithm="HS512"),
], ids=["empty", "garbage", "three-dots", "four-dots", "jti-not-uuid", "no-jti", "no-exp", "alg-none",
        "hs512"])
def test_malformed_or_unacceptable_tokens_are_invalid(token: str) -> None:
    assert link_error(SIGNER, token) == "link_invalid"


def test_previous_key_verifies_during_rotation_and_not_after() -> None:
    jti = uuid.uuid4()
    old_token = LinkSigner(OLD_KEY).sign(jti, in_hours(2))
    rotating = LinkSigner(KEY, previous_keys=(OLD_KEY,))
    assert rotating.verify(old_token) == jti
    assert rotating.verify(rotating.sign(jti, in_hours(2))) == jti
    assert jwt.get_unverified_header(rotating.sign(jti, in_hours(2)))["kid"] == LinkSigner.key_id(KEY)
    assert link_error(LinkSigner(KEY), old_token) == "link_invalid"


# ---- the link row ----------------------------------------------------------------------------------------

@pytest.fixture
async def patient(make: Factory) -> int:
    return await make.patient()


async def issued(pool: asyncpg.Pool, patient: int, ttl_s: int = 3600) -> tuple[str, uuid.UUID]:
    async with pool.acquire() as con:
        token, _ = await issue_link(con, SIGNER, patient, ttl_s)
    return token, SIGNER.verify(token)


async def resolve_error(pool: asyncpg.Pool, token: str) -> str:
    async with pool.acquire() as con:
        with pytest.raises(LinkError) as refused:
            await resolve_link(con, SIGNER, token)
    return refused.value.code


async def test_issued_link_resolves_to_its_patient(pool: asyncpg.Pool, patient: int, make: Factory) -> None:
    token, jti = await issued(pool, patient)
    async with pool.acquire() as con:
        link = await resolve_link(con, SIGNER, token)
        expires_at = await con.fetchval("SELECT expires_at FROM join_link WHERE jti = $1", jti)
    assert (link.jti, link.patient_id, link.facility_id) == (jti, patient, make.network.commune)
    assert link.state is links_db.LinkState.usable
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=LINK_AUDIENCE)
    assert claims["exp"] == int(expires_at.timestamp())


async def test_link_for_an_unknown_patient_is_not_created(pool: asyncpg.Pool) -> None:
    from db.errors import NotFound

    async with pool.acquire() as con:
        with pytest.raises(NotFound, match="patient 99999 does not exist"):
            await issue_link(con, SIGNER, 99999, 3600)
        assert await con.fetchval("SELECT count(*) FROM join_link") == 0


async def test_revoked_link_is_refused(pool: asyncpg.Pool, patient: int) -> None:
    token, jti = await issued(pool, patient)
    async with pool.acquire() as con:
        assert await links_db.revoke(con, jti) is True
        assert await links_db.revoke(con, jti) is False  # once
    assert await resolve_error(pool, token) == "link_revoked"


async def test_finished_link_is_refused(pool: asyncpg.Pool, patient: int) -> None:
    token, jti = await issued(pool, patient)
    async with pool.acquire() as con:
        await links_db.mark_finished(con, jti)
    assert await resolve_error(pool, token) == "link_finished"


async def test_database_expiry_wins_over_a_still_valid_token(pool: asyncpg.Pool, patient: int) -> None:
    token, jti = await issued(pool, patient, ttl_s=7 * 86400)
    async with pool.acquire() as con:
        await con.execute("UPDATE join_link SET expires_at = now() - interval '1 minute' WHERE jti = $1", jti)
    assert SIGNER.verify(token) == jti
    assert await resolve_error(pool, token) == "link_expired"


async def test_genuine_token_with_an_unknown_id_is_invalid(pool: asyncpg.Pool) -> None:
    token = SIGNER.sign(uuid.uuid4(), in_hours(1))
    assert await resolve_error(pool, token) == "link_invalid"


async def test_consent_is_recorded_per_link_and_text_version(pool: asyncpg.Pool, patient: int) -> None:
    token, jti = await issued(pool, patient)
    other_token, other_jti = await issued(pool, patient)
    async with pool.acquire() as con:
        link = await resolve_link(con, SIGNER, token)
        await links_db.record_consent(con, link, "v1", "vi")
        assert await links_db.consent_given(con, jti, "v1")
        assert not await links_db.consent_given(con, jti, "v2")
        assert not await links_db.consent_given(con, other_jti, "v1")


# ---- the audit trail --------------------------------------------------------------------------------------

async def record_some(pool: asyncpg.Pool) -> list[int]:
    async with pool.acquire() as con:
        for i in range(5):
            async with con.transaction():
                await audit.record(con, audit.Actor.staff(i + 1), "patient.read_history", "patient", i,
                                   {"n": i, "note": "đọc hồ sơ", "nested": {"a": [1, 2.5, None]}})
        await audit.record(con, audit.SYSTEM, "queue.requeue", "queue_entry", uuid.uuid4())
        return [r["id"] for r in await con.fetch("SELECT id FROM audit_event ORDER BY id")]


async def test_untouched_audit_chain_verifies(pool: asyncpg.Pool) -> None:
    ids = await record_some(pool)
    async with pool.acquire() as con:
        assert await audit.verify_chain(con) is None
        rows = await con.fetch("SELECT prev_hash, hash FROM audit_event ORDER BY id")
    assert len(ids) == 6
    assert rows[0]["prev_hash"] == "0" * 64
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(rows, rows[1:], strict=False))


async def test_audit_time_in_sql_is_written_as_python_writes_it(pool: asyncpg.Pool) -> None:
    """audit_append (migration 0023) hashes the event's time as SQL text: it must be `isoformat()` of the
    time asyncpg reads back, which `verify_chain` hashes — with and without microseconds, from any zone."""
    times = [datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC), datetime(2026, 11, 30, 12, 0, 0, 120, tzinfo=UTC),
             datetime(1999, 1, 2, 23, 4, 5, 600000, tzinfo=timezone(timedelta(hours=7)))]
    async with pool.acquire() as con:
        for t in times:
            back = await con.fetchval("SELECT $1::timestamptz", t)
            assert await con.fetchval("SELECT audit_time_text($1)", t) == back.isoformat()


async def test_empty_audit_chain_verifies(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as con:
        assert await audit.verify_chain(con) is None


async def test_tampered_audit_row_is_found(pool: asyncpg.Pool) -> None:
    ids = await record_some(pool)
    victim = ids[2]
    async with pool.acquire() as con:  # the test server's user is a superuser, as an attacker would be
        await con.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        await con.execute("""UPDATE audit_event SET details = details || '{"n": 99}' WHERE id = $1""", victim)
        await con.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
        assert await audit.verify_chain(con) == victim


async def test_deleted_audit_row_is_found(pool: asyncpg.Pool) -> None:
    ids = await record_some(pool)
    async with pool.acquire() as con:
        await con.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        await con.execute("DELETE FROM audit_event WHERE id = $1", ids[1])
        await con.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
        assert await audit.verify_chain(con) == ids[2]


async def test_events_for_lists_one_objects_events_in_order(pool: asyncpg.Pool) -> None:
    await record_some(pool)
    async with pool.acquire() as con:
        events = await audit.events_for(con, "patient", 3)
    assert [(e["actor_id"], e["details"]["n"]) for e in events] == [("4", 3)]


async def test_concurrent_events_outside_transactions_still_form_one_chain(pool: asyncpg.Pool) -> None:
    """Handlers record reads (history, sign-in) on a bare connection: the chain must not fork."""

    async def read_history(i: int) -> None:
        async with pool.acquire() as con:
            await audit.record(con, audit.Actor.staff(i), "patient.read_history", "patient", i)

    await asyncio.gather(*(read_history(i) for i in range(30)))
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM audit_event") == 30
        assert await audit.verify_chain(con) is None


async def test_concurrent_events_inside_transactions_form_one_chain(pool: asyncpg.Pool) -> None:
    async def change(i: int) -> None:
        async with pool.acquire() as con, con.transaction():
            await audit.record(con, audit.Actor.staff(i), "queue.change_level", "queue_entry", i,
                               {"to": i % 5})

    await asyncio.gather(*(change(i) for i in range(30)))
    async with pool.acquire() as con:
        assert await audit.verify_chain(con) is None
