"""One use case, one transaction (issue 7.8): a failure between the steps of check-in, taking a patient or
giving consent leaves nothing half-written, and the audit chain still verifies.

Failures are real: a constraint violation provoked through data (a doctor already in a call), or a
PostgreSQL-side error raised by a trigger at the second step — including the session being terminated
there, which is what PostgreSQL sees when our process dies mid-transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db import audit, links, usecases
from db import invitations as invitations_db
from db.errors import Conflict
from db.invitations import Booking, InvitationKind, InvitationStatus, Policy
from tests.conftest import RunningApp
from tests.integration.conftest import Factory
from tests.integration.test_http import csrf_cookie, jar_session, sign_in

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CONSENT = "test-consent-v1"
TRIAGED = usecases.Triaged(level=2, danger_signs=(), reason="ho", answers={"symptoms": ["cough"]},
                           audio_only=False)

# What a failure at the second step looks like from PostgreSQL: an error, or the session gone.
FAILURES = {
    "error": "RAISE EXCEPTION 'injected failure at the second step'",
    "session_killed": "PERFORM pg_terminate_backend(pg_backend_pid())",
}
# How the failure reaches us: the raised error, or (session killed) the connection found closed.
FAILED = (asyncpg.RaiseError, asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError,
          asyncpg.InterfaceError)


async def inject(con: asyncpg.Connection, table: str, event: str, failure: str) -> None:
    """Make every `event` (INSERT/UPDATE) on `table` fail, in this test's own database."""
    await con.execute(f"""
        CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN {FAILURES[failure]}; RETURN NEW; END $$;
        CREATE TRIGGER inject_failure BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION inject_failure();""")


async def invited(pool: asyncpg.Pool, make: Factory) -> tuple[links.JoinLink, uuid.UUID]:
    """A patient invited for now (walk-in), who has consented: ready to check in."""
    patient_id = await make.patient()
    staff_id = await make.staff(role="nurse")
    async with pool.acquire() as con:
        invitation = await invitations_db.create(
            con, Booking(InvitationKind.walk_in), patient_id=patient_id, created_by=staff_id, now=NOW,
            policy=Policy(), link_url=lambda jti, at: f"https://example.test/j/{jti}", send=False)
        link = await links.lookup(con, invitation.link_jti)
        assert link is not None
        await links.give_consent(con, link, CONSENT, "vi")
    return link, invitation.id


async def counts(pool: asyncpg.Pool, patient_id: int) -> dict[str, int]:
    async with pool.acquire() as con:
        return {
            "queue": await con.fetchval("SELECT count(*) FROM queue_entry WHERE patient_id = $1", patient_id),
            "joins": await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'queue.join' "
                                        "AND actor_id = $1", str(patient_id)),
            "consultations": await con.fetchval("SELECT count(*) FROM consultation WHERE patient_id = $1",
                                                patient_id),
        }


async def chain_intact(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as con:
        return await audit.verify_chain(con) is None


async def test_check_in_queues_the_patient_and_uses_the_invitation_together(pool: asyncpg.Pool,
                                                                           make: Factory) -> None:
    link, invitation_id = await invited(pool, make)
    async with pool.acquire() as con:
        done = await usecases.check_in(con, link, TRIAGED, consent_version=CONSENT, now=NOW)
        invitation = await invitations_db.get(con, invitation_id)
    assert done.created and done.invitation_used
    assert invitation is not None and invitation.status is InvitationStatus.used
    assert await counts(pool, link.patient_id) == {"queue": 1, "joins": 1, "consultations": 0}


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_check_in_failing_at_marking_the_invitation_used_leaves_nobody_queued(
        pool: asyncpg.Pool, make: Factory, failure: str) -> None:
    link, invitation_id = await invited(pool, make)
    async with pool.acquire() as con:
        await inject(con, "invitation", "UPDATE", failure)
    with pytest.raises(FAILED):
        async with pool.acquire() as con:
            await usecases.check_in(con, link, TRIAGED, consent_version=CONSENT, now=NOW)
    # The queue entry and its audit event were written before the failing step: both are gone.
    assert await counts(pool, link.patient_id) == {"queue": 0, "joins": 0, "consultations": 0}
    async with pool.acquire() as con:
        invitation = await invitations_db.get(con, invitation_id)
    assert invitation is not None and invitation.status is InvitationStatus.active
    assert await chain_intact(pool)


async def test_check_in_after_the_invitation_was_revoked_is_refused(pool: asyncpg.Pool, make: Factory) -> None:
    link, invitation_id = await invited(pool, make)
    staff_id = await make.staff(role="nurse")
    async with pool.acquire() as con:
        await invitations_db.revoke(con, invitation_id, staff_id=staff_id, now=NOW)
        with pytest.raises(Conflict) as refused:
            await usecases.check_in(con, link, TRIAGED, consent_version=CONSENT, now=NOW)
    assert refused.value.code == "link_revoked"
    assert (await counts(pool, link.patient_id))["queue"] == 0


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_take_patient_failing_at_the_audit_event_leaves_the_patient_waiting(
        pool: asyncpg.Pool, make: Factory, failure: str) -> None:
    doctor = await make.staff()
    entry = await make.waiting(await make.patient())
    async with pool.acquire() as con:
        await inject(con, "audit_event", "INSERT", failure)
    with pytest.raises(FAILED):
        async with pool.acquire() as con:
            await usecases.take_patient(con, doctor, make.network.commune, entry.id)
    async with pool.acquire() as con:
        status = await con.fetchval("SELECT status FROM queue_entry WHERE id = $1", entry.id)
    assert status == "waiting"
    assert (await counts(pool, entry.patient_id))["consultations"] == 0


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_consent_failing_at_its_audit_event_is_not_recorded(pool: asyncpg.Pool, make: Factory,
                                                                  failure: str) -> None:
    patient_id = await make.patient()
    async with pool.acquire() as con:
        jti, _ = await links.create(con, patient_id, timedelta(hours=1))
        link = await links.lookup(con, jti)
        assert link is not None
        await inject(con, "audit_event", "INSERT", failure)
    with pytest.raises(FAILED):
        async with pool.acquire() as con:
            await links.give_consent(con, link, CONSENT, "vi")
    async with pool.acquire() as con:
        assert not await links.consent_given(con, jti, CONSENT)


async def test_start_call_while_in_another_call_is_refused_and_changes_nothing(running_app: RunningApp) -> None:
    """Through real data: the doctor already has an active consultation, so the second step (opening the
    consultation) violates `consultation_one_active_per_doctor` after the entry was marked claimed."""
    pool = running_app.pool
    async with pool.acquire() as con:
        doctor, facility = await con.fetchrow("SELECT id, facility_id FROM staff WHERE username = 'bacsi.lan'")
        first, second = [await con.fetchval(
            """INSERT INTO queue_entry (patient_id, facility_id, triage_level, suggested_level, reason, checkin)
               VALUES ($1, $2, 1, 1, 'ho', '{}') RETURNING id""", patient_id, facility) for patient_id in (5, 6)]
        await usecases.take_patient(con, doctor, facility, first)
        claims_before = await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'queue.claim'")
    async with jar_session() as http:
        await sign_in(http, running_app)
        r = await http.post(f"{running_app.url}/staff/schedule/start", allow_redirects=False,
                            data={"_csrf": csrf_cookie(http, running_app), "entry": str(second)})
        assert r.status == 409
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT status FROM queue_entry WHERE id = $1", second) == "waiting"
        assert await con.fetchval("SELECT claimed_by FROM queue_entry WHERE id = $1", second) is None
        assert await con.fetchval("SELECT count(*) FROM consultation WHERE queue_entry_id = $1", second) == 0
        assert await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'queue.claim'") == claims_before
    assert await chain_intact(pool)
