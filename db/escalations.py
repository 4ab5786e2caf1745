"""Specialist escalations in PostgreSQL: ask, route, accept, decline, answer, cancel, close, deadlines.

Each use case is one transaction that locks the escalation row, applies care/escalation.py's state
machine to it (a refusal raises `Conflict` with the machine's code and changes nothing), writes the rows,
a timeline entry (`escalation_event`) and the audit event. Offer windows and deadlines are rows; the
background loop (web/escalation_loop.py) claims due ones with `FOR UPDATE SKIP LOCKED`, so a restart or
a second process misses nothing and handles nothing twice. "now" is always passed in (the app clock).

Every use case returns `Notice`s: who should be told what over their socket (the web layer sends them).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from care import escalation as machine
from care.escalation import (
    DEFAULT_POLICIES,
    DeadlineFor,
    EscalationError,
    Event,
    State,
    Status,
    Urgency,
    UrgencyPolicy,
)
from db import audit
from db.errors import Conflict, DbError, NotFound

Policies = Mapping[Urgency, UrgencyPolicy]

# Nobody on duty: look again this often at most (a switch turned on also wakes waiting requests at once,
# and a shift that starts sooner is looked at when it starts).
ROUTE_RETRY = timedelta(minutes=15)


@dataclass(frozen=True)
class Notice:
    """Tell `staff_id` (every open page of theirs) that `kind` happened to an escalation."""

    staff_id: int
    kind: str  # escalation_offer | escalation_update | escalation_answered | escalation_accepted | …
    escalation_id: uuid.UUID
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Escalation:
    id: uuid.UUID
    patient_id: int
    consultation_id: uuid.UUID | None
    requester_id: int
    requester_facility_id: int
    specialty: str
    urgency: Urgency
    question: str
    summary: dict[str, Any]
    status: Status
    offered_to: int | None
    accepted_by: int | None
    hops: int
    created_at: datetime
    deadline_at: datetime
    deadline_for: DeadlineFor
    accepted_at: datetime | None
    answered_at: datetime | None
    reroute: bool

    def state(self, offers: OfferHistory) -> State:
        return State(self.status, self.urgency, self.requester_id, self.offered_to, self.accepted_by,
                     frozenset(offers.times), offers.declined, self.hops)


def _escalation(r: asyncpg.Record) -> Escalation:
    return Escalation(r["id"], r["patient_id"], r["consultation_id"], r["requester_id"], r["requester_facility_id"],
                      r["specialty"], Urgency(r["urgency"]), r["question"], dict(r["summary"]), Status(r["status"]),
                      r["offered_to"], r["accepted_by"], r["hops"], r["created_at"], r["deadline_at"],
                      DeadlineFor(r["deadline_for"]), r["accepted_at"], r["answered_at"], r["reroute"])


@dataclass(frozen=True)
class Outcome:
    escalation: Escalation
    notices: list[Notice]


# ---- reading ----------------------------------------------------------------------------------------

async def get(con: asyncpg.Connection, escalation_id: uuid.UUID, *, for_update: bool = False) -> Escalation | None:
    row = await con.fetchrow("SELECT * FROM escalation WHERE id = $1" + (" FOR UPDATE" if for_update else ""),
                             escalation_id)
    return _escalation(row) if row else None


@dataclass(frozen=True)
class OfferHistory:
    """Who was offered a request so far: how many times each, and who declined it."""

    times: Mapping[int, int]
    declined: frozenset[int]


async def _offers(con: asyncpg.Connection, escalation_id: uuid.UUID) -> OfferHistory:
    rows = await con.fetch(
        "SELECT staff_id, count(*) AS times, bool_or(status = 'declined') AS declined FROM escalation_offer "
        "WHERE escalation_id = $1 GROUP BY staff_id", escalation_id)
    return OfferHistory({r["staff_id"]: r["times"] for r in rows},
                        frozenset(r["staff_id"] for r in rows if r["declined"]))


async def specialties(con: asyncpg.Connection, *, retired: bool = False) -> list[asyncpg.Record]:
    """The active specialties (code, name_vi, name_en), as the form offers them; with `retired`, also the
    retired ones (to name what older requests asked for)."""
    rows: list[asyncpg.Record] = await con.fetch(
        "SELECT code, name_vi, name_en FROM specialty WHERE active OR $1 ORDER BY code", retired)
    return rows


async def timeline(con: asyncpg.Connection, escalation_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT e.id, e.at, e.kind, e.actor_id, e.staff_id, e.details, s.name AS staff_name
           FROM escalation_event e LEFT JOIN staff s ON s.id = e.staff_id
           WHERE e.escalation_id = $1 ORDER BY e.id""", escalation_id)
    return rows


async def is_participant(con: asyncpg.Connection, escalation: Escalation, staff_id: int) -> bool:
    """The specialist it is offered to or accepted by, or one who was offered it (they read what they saw)."""
    if staff_id in (escalation.offered_to, escalation.accepted_by):
        return True
    found: bool = await con.fetchval(
        "SELECT EXISTS (SELECT 1 FROM escalation_offer WHERE escalation_id = $1 AND staff_id = $2)",
        escalation.id, staff_id)
    return found


async def consultation_patient(con: asyncpg.Connection, consultation_id: uuid.UUID, doctor_id: int) -> int | None:
    """The patient of `doctor_id`'s consultation (None when it is not theirs): asking from a live call."""
    value: int | None = await con.fetchval(
        "SELECT patient_id FROM consultation WHERE id = $1 AND doctor_id = $2", consultation_id, doctor_id)
    return value


async def specialist_inbox(con: asyncpg.Connection, staff_id: int) -> list[asyncpg.Record]:
    """Requests offered to or accepted by this specialist and not finished, soonest deadline first (the
    offer's own window when that ends sooner)."""
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT e.id, e.urgency, e.specialty, e.status, e.question, e.summary, e.created_at, e.deadline_at,
                  o.expires_at AS offer_expires_at, f.name AS requester_facility, r.name AS requester_name,
                  least(e.deadline_at, coalesce(o.expires_at, e.deadline_at)) AS due_at
           FROM escalation e
           JOIN facility f ON f.id = e.requester_facility_id
           JOIN staff r ON r.id = e.requester_id
           LEFT JOIN escalation_offer o ON o.escalation_id = e.id AND o.status = 'open' AND o.staff_id = $1
           WHERE (e.offered_to = $1 AND o.id IS NOT NULL)
              OR (e.accepted_by = $1 AND e.status IN ('accepted', 'overdue'))
           ORDER BY due_at, e.created_at""", staff_id)
    return rows


@dataclass(frozen=True)
class Badge:
    """What the staff nav bar's badge counts for one staff member."""

    offers: int  # requests offered to them now (open offers)
    unread: int  # requests they asked whose opinion is signed and that they have not opened since


async def badge(con: asyncpg.Connection, staff_id: int) -> Badge:
    row = await con.fetchrow(
        """SELECT (SELECT count(*) FROM escalation_offer WHERE staff_id = $1 AND status = 'open') AS offers,
                  (SELECT count(*) FROM escalation WHERE requester_id = $1 AND status = 'answered'
                      AND (requester_seen_at IS NULL OR requester_seen_at < answered_at)) AS unread""", staff_id)
    return Badge(row["offers"], row["unread"])


async def mark_seen(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, now: datetime) -> bool:
    """The doctor who asked opened the request: its signed opinion is no longer unread. True when it was."""
    changed = await con.fetchval(
        """UPDATE escalation SET requester_seen_at = $3
           WHERE id = $1 AND requester_id = $2 AND answered_at IS NOT NULL
             AND (requester_seen_at IS NULL OR requester_seen_at < answered_at) RETURNING true""",
        escalation_id, staff_id, now)
    return bool(changed)


async def for_patient(con: asyncpg.Connection, patient_id: int) -> list[asyncpg.Record]:
    """The patient's requests for an opinion with their signed opinions (latest version): the record's
    "specialist opinions" section. Clinical content: the caller authorises and audits."""
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT e.id, e.specialty, e.urgency, e.status, e.question, e.created_at, o.assessment, o.recommendation,
                  o.transfer, o.follow_up, o.avoided_visit, o.signed_at, o.content_sha256, s.name AS author_name
           FROM escalation e
           LEFT JOIN LATERAL (SELECT * FROM escalation_opinion x WHERE x.escalation_id = e.id
                              ORDER BY x.version DESC LIMIT 1) o ON true
           LEFT JOIN staff s ON s.id = o.author_id
           WHERE e.patient_id = $1 ORDER BY e.created_at DESC""", patient_id)
    return rows


async def requester_inbox(con: asyncpg.Connection, facility_id: int, limit: int = 100) -> list[asyncpg.Record]:
    """The requesting facility's requests, newest first, with who holds each and whether it is answered."""
    rows: list[asyncpg.Record] = await con.fetch(
        """SELECT e.id, e.urgency, e.specialty, e.status, e.created_at, e.deadline_at, e.hops, e.patient_id,
                  e.answered_at, p.name AS patient_name, s.name AS specialist_name
           FROM escalation e JOIN patient p ON p.id = e.patient_id
           LEFT JOIN staff s ON s.id = coalesce(e.accepted_by, e.offered_to)
           WHERE e.requester_facility_id = $1 ORDER BY e.created_at DESC LIMIT $2""", facility_id, limit)
    return rows


# ---- writing: helpers -------------------------------------------------------------------------------

async def _event(con: asyncpg.Connection, escalation_id: uuid.UUID, now: datetime, kind: str, *,
                 actor_id: int | None = None, staff_id: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
    await con.execute(
        "INSERT INTO escalation_event (escalation_id, at, kind, actor_id, staff_id, details) "
        "VALUES ($1, $2, $3, $4, $5, $6)", escalation_id, now, kind, actor_id, staff_id, details or {})


async def _locked(con: asyncpg.Connection, escalation_id: uuid.UUID) -> tuple[Escalation, State]:
    escalation = await get(con, escalation_id, for_update=True)
    if escalation is None:
        raise NotFound("escalation", escalation_id)
    return escalation, escalation.state(await _offers(con, escalation_id))


def _apply(state: State, event: Event) -> State:
    try:
        return machine.apply(state, event)
    except EscalationError as refused:
        raise Conflict(refused.code, refused.message) from None


async def _save(con: asyncpg.Connection, escalation_id: uuid.UUID, state: State, **columns: Any) -> Escalation:
    sets = ["status = $2", "offered_to = $3", "accepted_by = $4", "hops = $5"]
    values: list[Any] = [escalation_id, state.status.value, state.offered_to, state.accepted_by, state.hops]
    for name, value in columns.items():  # names are ours (keyword arguments below), never user input
        values.append(value)
        sets.append(f"{name} = ${len(values)}")
    row = await con.fetchrow(f"UPDATE escalation SET {', '.join(sets)} WHERE id = $1 RETURNING *", *values)
    return _escalation(row)


async def on_duty_specialists(con: asyncpg.Connection, specialty: str, top: int,
                              now: datetime) -> list[machine.OnDuty]:
    """The specialists of `specialty` on duty now anywhere under `top` (the top of the requester's tree),
    each with their facility's path up to the top and their load (open offers + accepted requests not yet
    answered). care/escalation.py decides which of them are candidates and in what order."""
    rows = await con.fetch(
        """WITH RECURSIVE spec AS (
               SELECT s.id, s.facility_id,
                      (SELECT count(*) FROM escalation_offer o WHERE o.staff_id = s.id AND o.status = 'open')
                    + (SELECT count(*) FROM escalation e WHERE e.accepted_by = s.id
                                                          AND e.status IN ('accepted', 'overdue')) AS load
               FROM staff s
               WHERE s.role = 'specialist' AND s.active AND s.on_duty AND $1 = ANY (s.specialties)
                 AND s.facility_id IN (SELECT facility_subtree($2))
                 AND (NOT EXISTS (SELECT 1 FROM specialist_shift h WHERE h.staff_id = s.id)
                      OR EXISTS (SELECT 1 FROM specialist_shift h WHERE h.staff_id = s.id
                                                                    AND h.starts_at <= $3 AND h.ends_at > $3))),
           up(start, id, parent_id, depth) AS (
               SELECT f.id, f.id, f.parent_id, 0 FROM facility f WHERE f.id IN (SELECT facility_id FROM spec)
               UNION ALL SELECT u.start, f.id, f.parent_id, u.depth + 1 FROM facility f JOIN up u ON f.id = u.parent_id
                         WHERE u.depth < 16),
           paths AS (SELECT start, array_agg(id ORDER BY depth) AS path FROM up GROUP BY start)
           SELECT spec.id, spec.load, paths.path FROM spec JOIN paths ON paths.start = spec.facility_id""",
        specialty, top, now)
    return [machine.OnDuty(r["id"], list(r["path"]), r["load"]) for r in rows]


async def _path(con: asyncpg.Connection, facility_id: int) -> list[int]:
    """`facility_id`, its parent… up to the top."""
    rows = await con.fetch(
        """WITH RECURSIVE up(id, parent_id, depth) AS (
               SELECT id, parent_id, 0 FROM facility WHERE id = $1
               UNION ALL SELECT f.id, f.parent_id, u.depth + 1 FROM facility f JOIN up u ON f.id = u.parent_id
                         WHERE u.depth < 16)
           SELECT id FROM up ORDER BY depth""", facility_id)
    return [r["id"] for r in rows]


async def _next_look(con: asyncpg.Connection, escalation: Escalation, reach: list[int], excluded: set[int],
                     now: datetime) -> datetime | None:
    """When to look for a candidate again: the next shift start of a specialist in `reach` (facilities)
    who may still be offered the request, or ROUTE_RETRY, whichever is sooner; None when there is nobody
    left to ask at all (wait for the deadline)."""
    row = await con.fetchrow(
        """SELECT count(*) AS left_, min(h.starts_at) AS next_start
           FROM staff s LEFT JOIN specialist_shift h ON h.staff_id = s.id AND h.starts_at > $4
           WHERE s.role = 'specialist' AND s.active AND $1 = ANY (s.specialties)
             AND s.facility_id = ANY ($2::bigint[]) AND s.id <> ALL ($3::bigint[])""",
        escalation.specialty, reach, list(excluded), now)
    if not row["left_"]:
        return None
    retry = now + ROUTE_RETRY
    return min(row["next_start"], retry) if row["next_start"] is not None else retry


async def _route(con: asyncpg.Connection, escalation: Escalation, state: State, now: datetime,
                 policies: Policies) -> tuple[Escalation, list[Notice]]:
    """Offer the request (in state `requested`, row locked) to the next candidate (care/escalation.py's
    rule), or schedule another look when there is none. Inside the caller's transaction."""
    policy = policies[escalation.urgency]
    path = await _path(con, escalation.requester_facility_id)
    offers = await _offers(con, escalation.id)
    excluded = set(offers.declined)  # and, below, anyone who went off duty a moment ago
    while True:
        on_duty = await on_duty_specialists(con, escalation.specialty, path[-1], now)
        found = machine.candidates(path, on_duty, lateral=policy.lateral)
        chosen = machine.next_candidate(found, offers.times, excluded, reoffer=policy.reoffer)
        if chosen is None:
            if policy.lateral:
                reach = [r["id"] for r in await con.fetch("SELECT facility_subtree($1) AS id", path[-1])]
            else:
                reach = path[1:]
            never_again = excluded if policy.reoffer else excluded | set(offers.times)
            next_look = await _next_look(con, escalation, reach, never_again | {escalation.requester_id}, now)
            saved = await _save(con, escalation.id, state, route_at=next_look)
            return saved, []
        # Lock the specialist's row and look again: going off duty takes this lock, so an offer is never
        # made to someone who went off duty a moment ago (they would be skipped here instead).
        still = await con.fetchval("SELECT on_duty AND active FROM staff WHERE id = $1 FOR SHARE", chosen.staff_id)
        if not still:
            excluded.add(chosen.staff_id)
            continue
        break
    rerouted = bool(state.asked)
    again = chosen.staff_id in state.asked
    state = _apply(state, machine.Offer(chosen.staff_id))
    window = policy.offer_window
    expires_at = min(now + window, escalation.deadline_at) if escalation.deadline_at > now else now + window
    await con.execute(
        "INSERT INTO escalation_offer (escalation_id, staff_id, facility_id, offered_at, expires_at) "
        "VALUES ($1, $2, $3, $4, $5)", escalation.id, chosen.staff_id, chosen.facility_id, now, expires_at)
    saved = await _save(con, escalation.id, state, route_at=None)
    kind = "reoffered" if again else "rerouted" if rerouted else "offered"
    await _event(con, escalation.id, now, kind, staff_id=chosen.staff_id,
                 details={"facility_id": chosen.facility_id, "level_distance": chosen.distance,
                          "reach": chosen.where.value, "expires_at": expires_at.isoformat()})
    details: dict[str, Any] = {"urgency": escalation.urgency.value, "expires_at": expires_at.isoformat()}
    if again:
        details["again"] = True
    notices = [Notice(chosen.staff_id, "escalation_offer", escalation.id, details),
               Notice(escalation.requester_id, "escalation_update", escalation.id,
                      {"status": saved.status.value, "event": kind})]
    return saved, notices


# ---- use cases --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """What the asking doctor filled in (validated here: the codes are the form's field errors)."""

    patient_id: int
    specialty: str
    urgency: str
    question: str
    summary: dict[str, Any]
    consent: bool
    consultation_id: uuid.UUID | None = None


async def ask(con: asyncpg.Connection, request: Request, requester_id: int, requester_facility_id: int,
              now: datetime, policies: Policies = DEFAULT_POLICIES, *, reroute: bool = True) -> Outcome:
    """A doctor asks for an opinion: the request, its first offer (or a wait for someone on duty), the
    timeline entry and the audit event, together. DbError `unknown_specialty`, `unknown_urgency`,
    `question_required`, `question_too_long`, `consent_required`."""
    try:
        urgency = Urgency(request.urgency)
    except ValueError:
        raise DbError("unknown_urgency", f"unknown urgency {request.urgency!r} (urgent, priority, routine)") from None
    question = request.question.strip()
    if not question:
        raise DbError("question_required", "write the question for the specialist")
    if len(question) > 4000:
        raise DbError("question_too_long", "the question is longer than 4000 characters")
    if not request.consent:
        raise DbError("consent_required", "record the patient's consent to share with the specialist first")
    policy = policies[urgency]
    async with con.transaction():
        if not await con.fetchval("SELECT EXISTS (SELECT 1 FROM specialty WHERE code = $1 AND active)",
                                  request.specialty):
            raise DbError("unknown_specialty", f"unknown specialty {request.specialty!r}")
        row = await con.fetchrow(
            """INSERT INTO escalation (patient_id, consultation_id, requester_id, requester_facility_id, specialty,
                                       urgency, question, summary, consent_at, created_at, deadline_at,
                                       deadline_for, reroute)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12) RETURNING *""",
            request.patient_id, request.consultation_id, requester_id, requester_facility_id, request.specialty,
            urgency.value, question, request.summary, now, now + policy.deadline, policy.deadline_for.value,
            reroute)
        escalation = _escalation(row)
        await _event(con, escalation.id, now, "requested", actor_id=requester_id,
                     details={"urgency": urgency.value, "specialty": request.specialty})
        await audit.record(con, audit.Actor.staff(requester_id), "escalation.ask", "escalation", escalation.id,
                           {"patient_id": request.patient_id, "urgency": urgency.value,
                            "specialty": request.specialty})
        saved, notices = await _route(con, escalation, escalation.state(OfferHistory({}, frozenset())), now, policies)
        if saved.status is Status.requested:
            await _event(con, saved.id, now, "no_candidate")
    return Outcome(saved, notices)


async def accept(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, now: datetime) -> Outcome:
    """The specialist offered the request takes it. Conflict `already_accepted`, `not_your_offer`,
    `not_offered` (and nothing changes)."""
    async with con.transaction():
        escalation, state = await _locked(con, escalation_id)
        state = _apply(state, machine.Accept(staff_id))
        await con.execute("UPDATE escalation_offer SET status = 'accepted', decided_at = $3 "
                          "WHERE escalation_id = $1 AND staff_id = $2 AND status = 'open'",
                          escalation_id, staff_id, now)
        saved = await _save(con, escalation_id, state, accepted_at=now)
        await _event(con, escalation_id, now, "accepted", actor_id=staff_id, staff_id=staff_id)
        await audit.record(con, audit.Actor.staff(staff_id), "escalation.accept", "escalation", escalation_id)
    live = saved.consultation_id is not None and saved.urgency in (Urgency.urgent, Urgency.priority)
    return Outcome(saved, [Notice(saved.requester_id, "escalation_accepted", escalation_id,
                                  {"staff_id": staff_id, "live": live,
                                   "consultation_id": str(saved.consultation_id) if live else None})])


async def _offer_ended(con: asyncpg.Connection, escalation: Escalation, state: State, now: datetime,
                       policies: Policies) -> tuple[Escalation, list[Notice]]:
    """After a decline or an expiry: the next candidate at once (or, re-routing off, wait for the deadline)."""
    if not escalation.reroute:
        saved = await _save(con, escalation.id, state, route_at=None)
        return saved, [Notice(escalation.requester_id, "escalation_update", escalation.id,
                              {"status": saved.status.value})]
    saved, notices = await _route(con, escalation, state, now, policies)
    if saved.status is Status.requested:
        await _event(con, saved.id, now, "no_candidate")
        notices.append(Notice(escalation.requester_id, "escalation_update", escalation.id,
                              {"status": saved.status.value, "event": "no_candidate"}))
    return saved, notices


async def decline(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, reason: str, now: datetime,
                  policies: Policies = DEFAULT_POLICIES) -> Outcome:
    """The specialist offered the request declines, with a reason; it moves to the next candidate at once."""
    async with con.transaction():
        escalation, state = await _locked(con, escalation_id)
        state = _apply(state, machine.Decline(staff_id, reason))
        reason = reason.strip()
        await con.execute("UPDATE escalation_offer SET status = 'declined', decided_at = $3, reason = $4 "
                          "WHERE escalation_id = $1 AND staff_id = $2 AND status = 'open'",
                          escalation_id, staff_id, now, reason)
        await _event(con, escalation_id, now, "declined", actor_id=staff_id, staff_id=staff_id,
                     details={"reason": reason})
        await audit.record(con, audit.Actor.staff(staff_id), "escalation.decline", "escalation", escalation_id)
        saved, notices = await _offer_ended(con, escalation, state, now, policies)
    return Outcome(saved, notices)


async def expire_one_offer(con: asyncpg.Connection, now: datetime,
                           policies: Policies = DEFAULT_POLICIES) -> Outcome | None:
    """Claim one request whose open offer's window has passed (skipping rows another process holds),
    expire the offer and re-route. None when nothing is due."""
    async with con.transaction():
        row = await con.fetchrow(
            """SELECT e.id FROM escalation e
               JOIN escalation_offer o ON o.escalation_id = e.id AND o.status = 'open'
               WHERE e.status = 'offered' AND o.expires_at <= $1
               ORDER BY o.expires_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED""", now)
        if row is None:
            return None
        escalation, state = await _locked(con, row["id"])
        offer = await con.fetchrow(
            "UPDATE escalation_offer SET status = 'expired', decided_at = $2 "
            "WHERE escalation_id = $1 AND status = 'open' AND expires_at <= $2 RETURNING staff_id",
            escalation.id, now)
        if offer is None:  # accepted or declined between the claim and the lock
            return Outcome(escalation, [])
        state = _apply(state, machine.OfferExpired(offer["staff_id"]))
        await _event(con, escalation.id, now, "offer_expired", staff_id=offer["staff_id"])
        await audit.record(con, audit.SYSTEM, "escalation.offer_expired", "escalation", escalation.id,
                           {"staff_id": offer["staff_id"]})
        saved, notices = await _offer_ended(con, escalation, state, now, policies)
    # The end of this offer is told before what routing did next: offered again to the same specialist
    # (everyone else asked), their page must end on the new offer, not on "no longer offered".
    withdrawn = Notice(offer["staff_id"], "escalation_withdrawn", escalation.id, {"why": "expired"})
    return Outcome(saved, [withdrawn, *notices])


async def fire_one_deadline(con: asyncpg.Connection, now: datetime) -> Outcome | None:
    """Claim one request whose deadline passed unmet (skipping rows another process holds): it becomes
    overdue, any open offer is withdrawn, the requester is told. Exactly once: `deadline_fired_at`."""
    async with con.transaction():
        row = await con.fetchrow(
            """SELECT id FROM escalation
               WHERE deadline_fired_at IS NULL AND deadline_at <= $1
                 AND (status IN ('requested', 'offered') OR (status = 'accepted' AND deadline_for = 'answer'))
               ORDER BY deadline_at LIMIT 1 FOR UPDATE SKIP LOCKED""", now)
        if row is None:
            return None
        escalation, state = await _locked(con, row["id"])
        withdrawn = escalation.offered_to
        state = _apply(state, machine.DeadlinePassed())
        await con.execute("UPDATE escalation_offer SET status = 'withdrawn', decided_at = $2 "
                          "WHERE escalation_id = $1 AND status = 'open'", escalation.id, now)
        saved = await _save(con, escalation.id, state, deadline_fired_at=now, route_at=None)
        await _event(con, escalation.id, now, "overdue")
        await audit.record(con, audit.SYSTEM, "escalation.overdue", "escalation", escalation.id)
    notices = [Notice(saved.requester_id, "escalation_overdue", saved.id, {"urgency": saved.urgency.value})]
    if withdrawn is not None:
        notices.append(Notice(withdrawn, "escalation_withdrawn", saved.id, {"why": "overdue"}))
    return Outcome(saved, notices)


async def route_one_waiting(con: asyncpg.Connection, now: datetime,
                            policies: Policies = DEFAULT_POLICIES) -> Outcome | None:
    """Claim one request that found nobody on duty and whose next look is due; try again."""
    async with con.transaction():
        row = await con.fetchrow(
            """SELECT id FROM escalation WHERE status = 'requested' AND route_at <= $1 AND reroute
               ORDER BY route_at LIMIT 1 FOR UPDATE SKIP LOCKED""", now)
        if row is None:
            return None
        escalation, state = await _locked(con, row["id"])
        saved, notices = await _route(con, escalation, state, now, policies)
    return Outcome(saved, notices)


async def next_due(con: asyncpg.Connection) -> datetime | None:
    """The earliest moment the loop has something to do (an offer window, a deadline, a retry): what a
    simulation advances its clock to."""
    value: datetime | None = await con.fetchval(
        """SELECT min(t) FROM (
               SELECT min(expires_at) AS t FROM escalation_offer WHERE status = 'open'
               UNION ALL SELECT min(deadline_at) FROM escalation
                   WHERE deadline_fired_at IS NULL
                     AND (status IN ('requested', 'offered') OR (status = 'accepted' AND deadline_for = 'answer'))
               UNION ALL SELECT min(route_at) FROM escalation WHERE status = 'requested' AND reroute) due""")
    return value


async def set_on_duty(con: asyncpg.Connection, staff_id: int, on_duty: bool, now: datetime) -> int:
    """The on-duty/away switch. Going away ends the windows of one's open offers now (the loop re-routes
    them at once). Returns how many offers were cut short."""
    async with con.transaction():
        role = await con.fetchval("SELECT role FROM staff WHERE id = $1 FOR UPDATE", staff_id)
        if role is None:
            raise NotFound("staff", staff_id)
        await con.execute("UPDATE staff SET on_duty = $2 WHERE id = $1", staff_id, on_duty)
        cut = 0
        if on_duty:  # requests waiting for someone of their specialty look again now
            await con.execute(
                """UPDATE escalation SET route_at = $2
                   WHERE status = 'requested' AND reroute
                     AND specialty = ANY ((SELECT specialties FROM staff WHERE id = $1)::text[])""", staff_id, now)
        if not on_duty:
            cut = len(await con.fetch(
                "UPDATE escalation_offer SET expires_at = $2 WHERE staff_id = $1 AND status = 'open' "
                "AND expires_at > $2 RETURNING id", staff_id, now))
        await audit.record(con, audit.Actor.staff(staff_id), "staff.on_duty" if on_duty else "staff.away",
                           "staff", staff_id, {"offers_cut": cut})
    return cut


async def add_message(con: asyncpg.Connection, escalation_id: uuid.UUID, author_id: int, body: str,
                      now: datetime) -> Outcome:
    """A question or a reply on the request's thread (the clock keeps running)."""
    body = body.strip()
    if not body:
        raise DbError("message_required", "write the message")
    if len(body) > 2000:
        raise DbError("message_too_long", "the message is longer than 2000 characters")
    async with con.transaction():
        escalation, state = await _locked(con, escalation_id)
        if state.status in machine.FINISHED:
            raise Conflict("finished", f'cannot write on escalation in state "{state.status.value}"')
        await con.execute("INSERT INTO escalation_message (escalation_id, author_id, body, at) "
                          "VALUES ($1, $2, $3, $4)", escalation_id, author_id, body, now)
        await _event(con, escalation_id, now, "message", actor_id=author_id, staff_id=author_id)
        await audit.record(con, audit.Actor.staff(author_id), "escalation.message", "escalation", escalation_id)
    others = {escalation.requester_id, escalation.offered_to, escalation.accepted_by} - {author_id, None}
    return Outcome(escalation, [Notice(s, "escalation_message", escalation_id) for s in others if s is not None])


async def messages(con: asyncpg.Connection, escalation_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await con.fetch(
        "SELECT m.id, m.author_id, s.name AS author_name, m.body, m.at FROM escalation_message m "
        "JOIN staff s ON s.id = m.author_id WHERE m.escalation_id = $1 ORDER BY m.id", escalation_id)
    return rows


@dataclass(frozen=True)
class Opinion:
    """The specialist's structured answer."""

    assessment: str
    recommendation: str
    transfer: bool
    avoided_visit: bool
    follow_up: str = ""
    transfer_facility_id: int | None = None
    transfer_urgency: str | None = None  # emergency | soon | planned

    def canonical(self) -> str:
        return json.dumps([self.assessment, self.recommendation, self.transfer, self.avoided_visit, self.follow_up,
                           self.transfer_facility_id, self.transfer_urgency], ensure_ascii=False)

    def problems(self) -> list[tuple[str, str]]:
        """(field, code) of what is missing or wrong."""
        found = []
        if not self.assessment.strip():
            found.append(("assessment", "assessment_required"))
        if not self.recommendation.strip():
            found.append(("recommendation", "recommendation_required"))
        if len(self.assessment) > 4000 or len(self.recommendation) > 4000 or len(self.follow_up) > 2000:
            found.append(("assessment", "opinion_too_long"))
        if self.transfer and self.transfer_urgency not in ("emergency", "soon", "planned"):
            found.append(("transfer_urgency", "transfer_urgency_required"))
        if self.transfer and self.avoided_visit:
            found.append(("avoided_visit", "transfer_is_a_visit"))
        return found


async def answer(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, opinion: Opinion,
                 now: datetime) -> Outcome:
    """The accepting specialist signs the written opinion (append-only, sha256, like a note version); the
    request is answered. Conflict `not_accepted`, `not_your_request`; DbError for a missing field."""
    problems = opinion.problems()
    if problems:
        raise DbError(problems[0][1], f"the opinion's {problems[0][0]} is missing or wrong")
    async with con.transaction():
        _, state = await _locked(con, escalation_id)
        state = _apply(state, machine.Answer(staff_id))
        version = await con.fetchval("SELECT coalesce(max(version), 0) + 1 FROM escalation_opinion "
                                     "WHERE escalation_id = $1", escalation_id)
        digest = hashlib.sha256(f"{escalation_id}|{version}|{staff_id}|{opinion.canonical()}".encode()).hexdigest()
        await con.execute(
            """INSERT INTO escalation_opinion (escalation_id, version, author_id, assessment, recommendation,
                   transfer, transfer_facility_id, transfer_urgency, follow_up, avoided_visit, signed_at,
                   content_sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
            escalation_id, version, staff_id, opinion.assessment.strip(), opinion.recommendation.strip(),
            opinion.transfer, opinion.transfer_facility_id, opinion.transfer_urgency if opinion.transfer else None,
            opinion.follow_up.strip(), opinion.avoided_visit, now, digest)
        saved = await _save(con, escalation_id, state, answered_at=now)
        await _event(con, escalation_id, now, "answered", actor_id=staff_id, staff_id=staff_id,
                     details={"transfer": opinion.transfer})
        await audit.record(con, audit.Actor.staff(staff_id), "escalation.answer", "escalation", escalation_id,
                           {"version": version, "sha256": digest})
    return Outcome(saved, [Notice(saved.requester_id, "escalation_answered", escalation_id)])


async def opinion(con: asyncpg.Connection, escalation_id: uuid.UUID) -> asyncpg.Record | None:
    """The signed opinion (its latest version), with the author's name."""
    row: asyncpg.Record | None = await con.fetchrow(
        "SELECT o.*, s.name AS author_name FROM escalation_opinion o JOIN staff s ON s.id = o.author_id "
        "WHERE o.escalation_id = $1 ORDER BY o.version DESC LIMIT 1", escalation_id)
    return row


async def cancel(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, now: datetime) -> Outcome:
    """The requester withdraws the request; an open offer is withdrawn with it."""
    return await _finish(con, escalation_id, staff_id, now, machine.Cancel(staff_id), "cancelled")


async def close(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, now: datetime) -> Outcome:
    """The requester closes an answered (or overdue) request."""
    return await _finish(con, escalation_id, staff_id, now, machine.Close(staff_id), "closed")


async def _finish(con: asyncpg.Connection, escalation_id: uuid.UUID, staff_id: int, now: datetime,
                  event: Event, kind: str) -> Outcome:
    async with con.transaction():
        escalation, state = await _locked(con, escalation_id)
        state = _apply(state, event)
        await con.execute("UPDATE escalation_offer SET status = 'withdrawn', decided_at = $2 "
                          "WHERE escalation_id = $1 AND status = 'open'", escalation_id, now)
        saved = await _save(con, escalation_id, state, finished_at=now, route_at=None)
        await _event(con, escalation_id, now, kind, actor_id=staff_id)
        await audit.record(con, audit.Actor.staff(staff_id), f"escalation.{kind}", "escalation", escalation_id)
    holder = escalation.offered_to or escalation.accepted_by
    notices = [Notice(holder, "escalation_withdrawn", escalation_id, {"why": kind})] if holder else []
    return Outcome(saved, notices)
