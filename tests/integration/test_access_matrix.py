"""The access matrix, generated from the policy's table (care/access.py) and the route registry
(web/access.py), run over real HTTP and a real socket against the real app and PostgreSQL.

Actors: one staff member of every role at a district centre. Objects (a patient, a second patient, an
ended consultation, a waiting queue entry, an invitation and its SMS) in four facilities seen from there:
the district itself (own), its commune station (below), the province hospital (above) and another
district under the same province (sibling). Every staff route is requested by every role for every
relation; every socket message is sent by every role for every relation. What the table allows must not
be refused (401/403/404, `error forbidden`); what it refuses must be (403/404, `error forbidden`,
`not_found`, `not_in_room`). A route missing from the registry fails the first test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from care.access import STAFF_ROLES, Action, Relation, Role, decide
from care.attachments import Kind
from care.threads import Topic
from db import escalation_attachments as escalation_attachments_db
from db import escalations as escalations_db
from db import invitations as invitations_db
from db import messages as messages_db
from db import patients as patients_db
from db import queue as queue_db
from db import staff as staff_db
from db import threads as threads_db
from db.demo import DEMO_PASSWORD
from db.invitations import Booking, InvitationKind, Policy
from signaling.protocol import CLIENT_TYPES
from tests.conftest import RunningApp, make_settings
from tests.integration.test_http import Staff, jar_session, signed_in
from tests.integration.wsclient import WsClient
from web.access import ROUTES, SOCKET_MESSAGES, Audience, ObjectKind, rule_for
from web.app import create_app
from web.attachment_store import AttachmentStore
from web.auth import issue_link
from web.keys import settings_key, signer_key

RELATIONS = (Relation.own, Relation.below, Relation.above, Relation.sibling)
REFUSED_ERRORS = {"forbidden", "not_found", "not_in_room"}


# ---- the registry covers the app -----------------------------------------------------------------------

def test_every_route_of_the_app_has_a_rule_and_every_rule_a_route(tmp_path: Path) -> None:
    app = create_app(make_settings("postgresql://unused.invalid/none", tmp_path))  # the router; not started
    registered = {("GET" if r.method == "HEAD" else r.method, r.resource.canonical)
                  for r in app.router.routes() if r.resource is not None}
    assert registered - set(ROUTES) == set(), "routes without an access rule (web/access.py ROUTES)"
    assert set(ROUTES) - registered == set(), "rules for routes that do not exist"
    staff_routes = {key for key, rule in ROUTES.items() if rule.audience is Audience.staff}
    assert staff_routes == set(REQUESTS), "every staff route needs a request in this test's REQUESTS"


def test_every_socket_message_has_a_rule() -> None:
    assert set(SOCKET_MESSAGES) == set(CLIENT_TYPES)


async def test_metrics_are_for_this_machine_or_the_token_whatever_the_role(running_app: RunningApp) -> None:
    """The one `monitor` route: no staff role opens it from elsewhere (web/metrics.py; the token: test_metrics)."""
    assert {key for key, rule in ROUTES.items() if rule.audience is Audience.monitor} == {("GET", "/metrics")}
    staff = await signed_in(running_app, "dieuphoi")
    try:
        r = await staff.http.get(f"{running_app.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status == 403
        r = await staff.http.get(f"{running_app.url}/metrics")  # this machine
        assert r.status == 200
    finally:
        await staff.http.close()


# ---- the world the matrix runs in ------------------------------------------------------------------------

@dataclass(frozen=True)
class Objects:
    """What lives in one facility."""

    facility: int
    patient: int
    other_patient: int
    consultation: uuid.UUID  # ended, by another doctor of that facility
    entry: uuid.UUID  # waiting
    invitation: uuid.UUID
    message: int
    escalation: uuid.UUID | None = None  # a request for an opinion asked by that facility's doctor
    attachment: uuid.UUID | None = None  # a PDF attached to it
    referral: uuid.UUID | None = None  # a referral addressed to that facility
    tb_clip: int = 0  # a video-observed dose clip of the patient's TB case (files: _tb_clip_files)
    tb_case: int = 0
    thread: uuid.UUID | None = None  # a staff thread about the patient, written by that facility's doctor


async def _staff(con: asyncpg.Connection, facility: int, role: str, username: str) -> int:
    return await staff_db.create(con, facility_id=facility, username=username, name=f"Thử {username}",
                                 role=role, password=DEMO_PASSWORD)


async def _ended_consultation(con: asyncpg.Connection, patient: int, facility: int, doctor: int) -> uuid.UUID:
    entry = await con.fetchval(
        "INSERT INTO queue_entry (patient_id, facility_id, triage_level, suggested_level, status, claimed_by) "
        "VALUES ($1, $2, 1, 1, 'done', $3) RETURNING id", patient, facility, doctor)
    consultation: uuid.UUID = await con.fetchval(
        "INSERT INTO consultation (queue_entry_id, patient_id, doctor_id, status, ended_at, ended_by) "
        "VALUES ($1, $2, $3, 'ended', now(), 'doctor') RETURNING id", entry, patient, doctor)
    await con.execute(
        "INSERT INTO note_version (consultation_id, version, plan, author_id, content_sha256) "
        "VALUES ($1, 1, 'Kế hoạch bí mật', $2, 'x')", consultation, doctor)
    return consultation


async def _facilities(con: asyncpg.Connection) -> dict[Relation, int]:
    """Seen from the demo's district centre: itself, its commune, the province, and a new sibling district."""
    district = await con.fetchval("SELECT id FROM facility WHERE level = 'district'")
    commune = await con.fetchval("SELECT id FROM facility WHERE parent_id = $1", district)
    province = await con.fetchval("SELECT parent_id FROM facility WHERE id = $1", district)
    sibling = await con.fetchval("INSERT INTO facility (name, level, parent_id) VALUES "
                                 "('Trung tâm Y tế khu vực khác', 'district', $1) RETURNING id", province)
    return {Relation.own: district, Relation.below: commune, Relation.above: province, Relation.sibling: sibling}


async def _objects(con: asyncpg.Connection, relation: Relation, facility: int) -> Objects:
    n = RELATIONS.index(relation)
    doctor = await _staff(con, facility, "doctor", f"matrix.doctor.{n}")
    patient = await patients_db.create(con, facility_id=facility, name=f"Bệnh nhân {relation}",
                                       phone=f"+8491200{n:04d}")
    other = await patients_db.create(con, facility_id=facility, name=f"Bản sao {relation}")
    consultation = await _ended_consultation(con, patient, facility, doctor)
    entry, _ = await queue_db.enqueue(con, patient_id=patient, link_jti=None, facility_id=facility, level=1,
                                      danger_signs=(), reason="ho", checkin={}, audio_only=False)
    invitation = await invitations_db.create(
        con, Booking(InvitationKind.walk_in, phone=f"+8491200{n:04d}"), patient_id=patient, created_by=doctor,
        now=datetime.now(UTC), policy=Policy(), link_url=lambda jti, _exp, _code=None: f"http://dh.test/j/{jti}")
    message = (await messages_db.for_invitation(con, invitation.id))[0].id
    asked = await escalations_db.ask(con, escalations_db.Request(patient, "obstetrics", "routine", "?", {}, True),
                                     doctor, facility, datetime.now(UTC))
    attachment = await escalation_attachments_db.add(con, escalation_attachments_db.Attachment(
        uuid.uuid4(), asked.escalation.id, doctor, Kind.pdf, len(PDF), hashlib.sha256(PDF).hexdigest(), "ecg.pdf",
        None, datetime.now(UTC)))
    referral = await con.fetchval(
        "INSERT INTO referral (escalation_id, patient_id, from_facility_id, to_facility_id, reason, urgency, "
        "created_by, created_at) VALUES ($1, $2, $3, $3, 'x', 'soon', $4, now()) RETURNING id",
        asked.escalation.id, patient, facility, doctor)
    tb_case = await con.fetchval(
        "INSERT INTO tb_case (patient_id, facility_id, registered_on, bacteriologically_confirmed, regimen, "
        "regimen_months, started_on) VALUES ($1, $2, current_date - 10, true, '2HRZE/4HR', 6, current_date - 10) "
        "RETURNING id", patient, facility)
    tb_clip = await con.fetchval(
        "INSERT INTO tb_clip (case_id, dose_on, sha256, path, sheet_path, bytes, duration_s, width, height) "
        "VALUES ($1, current_date, $2, $3, $4, 4, 1, 320, 240) RETURNING id",
        tb_case, f"{n:064x}", f"tb/clips/matrix-{n}.webm", f"tb/clips/matrix-{n}.jpg")
    thread = await threads_db.start(con, patient_id=patient, author_id=doctor, text="Đo lại huyết áp",
                                    topic=Topic(), now=datetime.now(UTC))
    return Objects(facility, patient, other, consultation, entry.id, invitation.id, message, asked.escalation.id,
                   attachment.id, referral, tb_clip, tb_case, thread.thread.id)


PDF = b"%PDF-1.4\n%matrix\n"


def _store_files(app: RunningApp, world: dict[Relation, Objects]) -> None:
    """The bytes of each world's attachment, where the app keeps them."""
    store = AttachmentStore(app.app[settings_key].data_dir)
    for o in world.values():
        assert o.escalation is not None and o.attachment is not None
        path = store.path(o.escalation, o.attachment, Kind.pdf)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PDF)


def _tb_clip_files(app: RunningApp) -> None:
    clips = app.app[settings_key].data_dir / "tb" / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for n in range(len(RELATIONS)):
        (clips / f"matrix-{n}.webm").write_bytes(b"webm")
        (clips / f"matrix-{n}.jpg").write_bytes(b"jpeg")


# ---- HTTP ----------------------------------------------------------------------------------------------

Request = tuple[str, dict[str, Any]]  # (path and query, extra keyword arguments for aiohttp)

REQUESTS: dict[tuple[str, str], Callable[[Objects], Request]] = {
    ("GET", "/staff"): lambda o: ("/staff", {}),
    ("GET", "/staff/c/{cid}"): lambda o: (f"/staff/c/{o.consultation}", {}),
    ("GET", "/api/c/{cid}/note"): lambda o: (f"/api/c/{o.consultation}/note", {}),
    ("PUT", "/api/c/{cid}/note/draft"): lambda o: (f"/api/c/{o.consultation}/note/draft",
                                                   {"json": {"base_version": 1, "note": {}}}),
    ("POST", "/api/c/{cid}/note/sign"): lambda o: (f"/api/c/{o.consultation}/note/sign",
                                                   {"json": {"expected_version": 1, "note": {"plan": "x"}}}),
    ("POST", "/api/c/{cid}/summary/preview"): lambda o: (f"/api/c/{o.consultation}/summary/preview",
                                                         {"json": {"plan": "x"}}),
    ("POST", "/api/c/{cid}/patient-phone"): lambda o: (f"/api/c/{o.consultation}/patient-phone", {"json": {}}),
    ("POST", "/api/c/{cid}/no-show"): lambda o: (f"/api/c/{o.consultation}/no-show", {"json": {"reason": "left"}}),
    ("POST", "/api/queue/{entry}/level"): lambda o: (f"/api/queue/{o.entry}/level", {"json": {"level": "NC2"}}),
    ("GET", "/api/icd10"): lambda o: ("/api/icd10?q=I10", {}),
    ("GET", "/api/communes"): lambda o: ("/api/communes?province=15", {}),
    ("GET", "/staff/patients"): lambda o: ("/staff/patients?q=b", {}),
    ("GET", "/api/patients"): lambda o: ("/api/patients?q=b", {}),
    ("GET", "/staff/patients/{pid}"): lambda o: (f"/staff/patients/{o.patient}", {}),
    ("GET", "/staff/patients/new"): lambda o: ("/staff/patients/new", {}),
    ("POST", "/staff/patients/new"): lambda o: ("/staff/patients/new", {"data": {"name": ""}}),
    ("GET", "/staff/patients/{pid}/edit"): lambda o: (f"/staff/patients/{o.patient}/edit", {}),
    ("POST", "/staff/patients/{pid}/edit"): lambda o: (f"/staff/patients/{o.patient}/edit", {"data": {"name": ""}}),
    ("POST", "/staff/patients/{pid}/merge"): lambda o: (f"/staff/patients/{o.patient}/merge",
                                                        {"data": {"other": str(o.other_patient)}}),
    ("GET", "/staff/patients/{pid}/invite"): lambda o: (f"/staff/patients/{o.patient}/invite", {}),
    ("POST", "/staff/patients/{pid}/invite"): lambda o: (f"/staff/patients/{o.patient}/invite",
                                                         {"data": {"kind": "appointment", "date": "x"}}),
    ("GET", "/staff/invitations/{iid}"): lambda o: (f"/staff/invitations/{o.invitation}", {}),
    ("POST", "/staff/invitations/{iid}/send"): lambda o: (f"/staff/invitations/{o.invitation}/send", {}),
    ("POST", "/staff/invitations/{iid}/reschedule"): lambda o: (f"/staff/invitations/{o.invitation}/reschedule",
                                                                {"data": {"date": "x"}}),
    ("POST", "/staff/invitations/{iid}/revoke"): lambda o: (f"/staff/invitations/{o.invitation}/revoke", {}),
    ("GET", "/staff/outbox"): lambda o: ("/staff/outbox", {}),
    ("GET", "/staff/outbox/{mid}"): lambda o: (f"/staff/outbox/{o.message}", {}),
    ("GET", "/staff/schedule"): lambda o: ("/staff/schedule", {}),
    ("POST", "/staff/schedule/start"): lambda o: ("/staff/schedule/start", {"data": {"entry": str(o.entry)}}),
    ("GET", "/staff/escalations"): lambda o: ("/staff/escalations", {}),
    ("GET", "/staff/escalations/{eid}"): lambda o: (f"/staff/escalations/{o.escalation}", {}),
    ("GET", "/staff/patients/{pid}/ask"): lambda o: (f"/staff/patients/{o.patient}/ask", {}),
    ("GET", "/api/patients/{pid}/escalation-summary"): lambda o: (f"/api/patients/{o.patient}/escalation-summary",
                                                                  {}),
    ("GET", "/api/escalations"): lambda o: ("/api/escalations", {}),
    ("POST", "/api/escalations"): lambda o: ("/api/escalations", {"json": {
        "patient_id": o.patient, "specialty": "obstetrics", "urgency": "routine", "question": "?", "consent": True}}),
    ("GET", "/api/escalations/{eid}"): lambda o: (f"/api/escalations/{o.escalation}", {}),
    ("POST", "/api/escalations/{eid}/accept"): lambda o: (f"/api/escalations/{o.escalation}/accept", {}),
    ("POST", "/api/escalations/{eid}/decline"): lambda o: (f"/api/escalations/{o.escalation}/decline",
                                                           {"json": {"reason": "bận"}}),
    ("POST", "/api/escalations/{eid}/opinion"): lambda o: (f"/api/escalations/{o.escalation}/opinion", {"json": {
        "assessment": "a", "recommendation": "r", "transfer": False, "avoided_visit": True}}),
    ("POST", "/api/escalations/{eid}/messages"): lambda o: (f"/api/escalations/{o.escalation}/messages",
                                                            {"json": {"body": "?"}}),
    ("POST", "/api/escalations/{eid}/cancel"): lambda o: (f"/api/escalations/{o.escalation}/cancel", {}),
    ("POST", "/api/escalations/{eid}/close"): lambda o: (f"/api/escalations/{o.escalation}/close", {}),
    ("POST", "/api/staff/duty"): lambda o: ("/api/staff/duty", {"json": {"on_duty": False}}),
    ("GET", "/api/staff/badge"): lambda o: ("/api/staff/badge", {}),
    ("POST", "/api/escalations/{eid}/attachments"): lambda o: (f"/api/escalations/{o.escalation}/attachments",
                                                               {"data": {"x": "y"}}),
    ("GET", "/api/escalations/{eid}/attachments"): lambda o: (f"/api/escalations/{o.escalation}/attachments", {}),
    ("GET", "/api/escalations/{eid}/attachments/{aid}"): lambda o: (
        f"/api/escalations/{o.escalation}/attachments/{o.attachment}", {}),
    ("GET", "/api/escalations/{eid}/attachments/{aid}/thumbnail"): lambda o: (
        f"/api/escalations/{o.escalation}/attachments/{o.attachment}/thumbnail", {}),
    ("POST", "/api/escalations/{eid}/attachments/{aid}/enhance"): lambda o: (
        f"/api/escalations/{o.escalation}/attachments/{o.attachment}/enhance", {}),
    ("POST", "/api/escalations/{eid}/referral"): lambda o: (f"/api/escalations/{o.escalation}/referral",
                                                            {"json": {}}),
    ("GET", "/api/escalations/{eid}/referral"): lambda o: (f"/api/escalations/{o.escalation}/referral", {}),
    ("GET", "/api/referrals/incoming"): lambda o: ("/api/referrals/incoming", {}),
    ("POST", "/api/referrals/{rid}/acknowledge"): lambda o: (f"/api/referrals/{o.referral}/acknowledge", {}),
    ("POST", "/api/referrals/{rid}/arrived"): lambda o: (f"/api/referrals/{o.referral}/arrived", {}),
    ("GET", "/staff/referrals"): lambda o: ("/staff/referrals", {}),
    ("GET", "/staff/coordination"): lambda o: ("/staff/coordination", {}),
    ("GET", "/api/coordination"): lambda o: ("/api/coordination", {}),
    ("GET", "/api/coordination/{table}.csv"): lambda o: ("/api/coordination/open_requests.csv", {}),
    ("GET", "/staff/htn"): lambda o: ("/staff/htn", {}),
    ("GET", "/staff/htn/worklist"): lambda o: ("/staff/htn/worklist", {}),
    ("GET", "/staff/htn/overdue"): lambda o: ("/staff/htn/overdue", {}),
    ("GET", "/staff/htn/import"): lambda o: ("/staff/htn/import", {}),
    ("POST", "/staff/htn/import"): lambda o: ("/staff/htn/import", {"data": {"text": "x"}}),
    ("GET", "/staff/htn/p/{pid}"): lambda o: (f"/staff/htn/p/{o.patient}", {}),
    ("POST", "/staff/htn/p/{pid}/enrol"): lambda o: (f"/staff/htn/p/{o.patient}/enrol",
                                                     {"data": {"registered_on": "x"}}),
    ("POST", "/staff/htn/p/{pid}/visit"): lambda o: (f"/staff/htn/p/{o.patient}/visit", {"data": {"systolic": "x"}}),
    ("POST", "/staff/htn/p/{pid}/call"): lambda o: (f"/staff/htn/p/{o.patient}/call", {"data": {"result": "x"}}),
    ("POST", "/staff/htn/p/{pid}/medicines"): lambda o: (f"/staff/htn/p/{o.patient}/medicines",
                                                         {"data": {"drug": "x"}}),
    ("POST", "/staff/htn/p/{pid}/review"): lambda o: (f"/staff/htn/p/{o.patient}/review", {"data": {"review": ""}}),
    ("GET", "/staff/tb"): lambda o: ("/staff/tb", {}),
    ("GET", "/staff/patients/{pid}/tb"): lambda o: (f"/staff/patients/{o.patient}/tb", {}),
    ("POST", "/staff/patients/{pid}/tb"): lambda o: (f"/staff/patients/{o.patient}/tb",
                                                     {"data": {"registered_on": "x"}}),
    ("GET", "/staff/tb/cases/{case}"): lambda o: (f"/staff/tb/cases/{o.tb_case}", {}),
    ("POST", "/staff/tb/cases/{case}/record/{what}"): lambda o: (f"/staff/tb/cases/{o.tb_case}/record/dose",
                                                                 {"data": {"on": "x"}}),
    ("POST", "/staff/tb/cases/{case}/treatment/{what}"): lambda o: (
        f"/staff/tb/cases/{o.tb_case}/treatment/outcome", {"data": {"reason": ""}}),
    ("POST", "/staff/tb/cases/{case}/review"): lambda o: (f"/staff/tb/cases/{o.tb_case}/review",
                                                          {"data": {"review": ""}}),
    ("GET", "/staff/tb/review"): lambda o: ("/staff/tb/review", {}),
    ("GET", "/staff/threads"): lambda o: ("/staff/threads", {}),
    ("GET", "/staff/threads/{tid}"): lambda o: (f"/staff/threads/{o.thread}", {}),
    ("GET", "/api/threads"): lambda o: ("/api/threads", {}),
    ("GET", "/api/threads/{tid}"): lambda o: (f"/api/threads/{o.thread}", {}),
    ("POST", "/api/threads/{tid}/messages"): lambda o: (f"/api/threads/{o.thread}/messages", {"json": {"text": ""}}),
    ("POST", "/api/threads/{tid}/read"): lambda o: (f"/api/threads/{o.thread}/read", {}),
    ("POST", "/api/patients/{pid}/threads"): lambda o: (f"/api/patients/{o.patient}/threads", {"json": {"text": ""}}),
    ("GET", "/staff/tb/report"): lambda o: ("/staff/tb/report?quarter=2026-Q1", {}),
    ("GET", "/staff/tb/clips/{clip}/sheet"): lambda o: (f"/staff/tb/clips/{o.tb_clip}/sheet", {}),
    ("GET", "/staff/tb/clips/{clip}/video"): lambda o: (f"/staff/tb/clips/{o.tb_clip}/video", {}),
    ("POST", "/staff/tb/clips/{clip}/review"): lambda o: (f"/staff/tb/clips/{o.tb_clip}/review",
                                                          {"data": {"decision": "neither"}}),
}


async def _request(actor: Staff, app: RunningApp, method: str, request: Request) -> tuple[int, str]:
    path, extra = request
    headers = {"X-CSRF-Token": actor.csrf} if method != "GET" else {}
    async with actor.http.request(method, f"{app.url}{path}", headers=headers, allow_redirects=False,
                                  **extra) as r:
        return r.status, r.headers.get("Location", "")


async def test_every_role_on_every_route_in_every_relation_gets_what_the_table_says(
        running_app: RunningApp) -> None:
    async with running_app.pool.acquire() as con:
        facilities = await _facilities(con)
        world = {rel: await _objects(con, rel, f) for rel, f in facilities.items()}
        _store_files(running_app, world)
        _tb_clip_files(running_app)
        actors: dict[Role, int] = {}
        for role in STAFF_ROLES:
            actors[role] = await _staff(con, facilities[Relation.own], role.value, f"matrix.{role.value}")
        # A consultation of their own for each clinician (the `assignee` column).
        own_consultations = {role: await _ended_consultation(con, world[Relation.own].patient,
                                                             facilities[Relation.own], staff_id)
                             for role, staff_id in actors.items() if role in (Role.doctor, Role.specialist)}

    mismatches: list[str] = []
    checked = 0
    for role in STAFF_ROLES:
        actor = await signed_in(running_app, f"matrix.{role.value}")
        try:
            for (method, route), build in REQUESTS.items():
                rule = ROUTES[(method, route)]
                assert rule.action is not None
                cases: list[tuple[str, Relation, bool, Objects]] = []
                if rule.obj is None:
                    cases.append(("-", Relation.own, False, world[Relation.own]))
                else:
                    cases += [(rel.value, rel, False, world[rel]) for rel in RELATIONS]
                if rule.obj is ObjectKind.consultation and role in own_consultations:
                    mine = world[Relation.own]
                    cases.append(("assignee", Relation.own, True, Objects(
                        mine.facility, mine.patient, mine.other_patient, own_consultations[role], mine.entry,
                        mine.invitation, mine.message, mine.tb_clip, mine.tb_case)))
                for label, relation, assignee, objects in cases:
                    allowed = decide(role, rule.action, relation, assignee=assignee).allowed
                    status, location = await _request(actor, running_app, method, build(objects))
                    checked += 1
                    refused = status in (401, 403, 404) or location.startswith("/staff/login")
                    if status >= 500 or refused == allowed or (not allowed and status not in (403, 404)):
                        mismatches.append(f"{role.value:<11} {method:<4} {route:<40} {label:<9} "
                                          f"expected {'allowed' if allowed else 'refused'}, got {status}")
        finally:
            await actor.http.close()
    async with jar_session() as anonymous:  # no session at all: every staff route refuses
        for (method, route), build in REQUESTS.items():
            path, extra = build(world[Relation.own])
            async with anonymous.request(method, f"{running_app.url}{path}", allow_redirects=False, **extra) as r:
                if not (r.status in (401, 403) or r.headers.get("Location", "").startswith("/staff/login")):
                    mismatches.append(f"anonymous   {method:<4} {route:<40} expected refused, got {r.status}")
    assert not mismatches, "\n".join(mismatches)
    assert checked >= 5 * len(REQUESTS)


async def test_nurse_sees_demographics_but_not_the_signed_notes(running_app: RunningApp) -> None:
    async with running_app.pool.acquire() as con:
        facilities = await _facilities(con)
        objects = await _objects(con, Relation.own, facilities[Relation.own])
        await _staff(con, facilities[Relation.own], "nurse", "matrix.nurse")
        await _staff(con, facilities[Relation.own], "specialist", "matrix.specialist")
    for username, sees_notes in (("matrix.nurse", False), ("matrix.specialist", True)):
        actor = await signed_in(running_app, username)
        try:
            async with actor.http.get(f"{running_app.url}/staff/patients/{objects.patient}") as r:
                page = await r.text()
            assert r.status == 200
            assert "Bệnh nhân own" in page
            assert ("Kế hoạch bí mật" in page) is sees_notes
        finally:
            await actor.http.close()


async def test_outbox_masks_links_and_showing_one_is_audited(running_app: RunningApp) -> None:
    async with running_app.pool.acquire() as con:
        facilities = await _facilities(con)
        objects = await _objects(con, Relation.own, facilities[Relation.own])
        await _staff(con, facilities[Relation.own], "nurse", "matrix.nurse")
        await _staff(con, facilities[Relation.own], "coordinator", "matrix.coordinator")
    link = f"http://dh.test/j/{(await _jti(running_app, objects.invitation))}"
    nurse = await signed_in(running_app, "matrix.nurse")
    coordinator = await signed_in(running_app, "matrix.coordinator")
    try:
        for who in (nurse, coordinator):
            page = await (await who.http.get(f"{running_app.url}/staff/outbox")).text()
            assert "http://dh.test/…" in page and link not in page
        assert f'href="/staff/outbox/{objects.message}"' in await (
            await nurse.http.get(f"{running_app.url}/staff/outbox")).text()
        r = await coordinator.http.get(f"{running_app.url}/staff/outbox/{objects.message}")
        assert r.status == 403
        r = await nurse.http.get(f"{running_app.url}/staff/outbox/{objects.message}")
        assert r.status == 200 and link in await r.text()
        async with running_app.pool.acquire() as con:
            events = await con.fetch("SELECT actor_id, object_id FROM audit_event WHERE action = 'message.view_link'")
            shown = await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'invitation.view_link'")
        assert [(e["actor_id"], e["object_id"]) for e in events] == [(str(nurse.id), str(objects.message))]
        assert shown == 0
        r = await nurse.http.get(f"{running_app.url}/staff/invitations/{objects.invitation}")
        assert r.status == 200 and link in await r.text()
        async with running_app.pool.acquire() as con:
            assert await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'invitation.view_link'") == 1
    finally:
        await nurse.http.close()
        await coordinator.http.close()


async def _jti(app: RunningApp, invitation: uuid.UUID) -> uuid.UUID:
    async with app.pool.acquire() as con:
        found = await invitations_db.get(con, invitation)
    assert found is not None
    return found.link_jti


# ---- the socket ------------------------------------------------------------------------------------------

async def _connect(app: RunningApp, http: aiohttp.ClientSession, token: str | None = None) -> WsClient:
    ws = WsClient(await http.ws_connect(f"{app.url}/ws"))
    await ws.send(type="hello", **({"token": token} if token else {}))
    await ws.expect("welcome")
    return ws


async def _outcome(ws: WsClient, **message: Any) -> dict[str, Any] | None:
    """Send one message, then a ping; the reply to the message (an answer or an error with its id, or the
    chat echo), or None when it was accepted without a reply (ice, media)."""
    ws.inbox.clear()
    ref = await ws.send(**message)
    pong = await ws.send(type="ping")
    found: dict[str, Any] | None = None
    async with asyncio.timeout(10):
        while True:
            msg = await ws.ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed: {msg.type} {msg.data!r}"
            m = json.loads(msg.data)
            if m["type"] == "pong" and m.get("id") == pong:
                return found
            if found is None and (m.get("id") == ref or (m["type"] == "chat" and m["message"]["client_id"] == ref)):
                found = m


def _refused(reply: dict[str, Any] | None) -> bool:
    return reply is not None and reply["type"] == "error" and reply["code"] in REFUSED_ERRORS


def _room_messages(room: uuid.UUID) -> list[dict[str, Any]]:
    r = str(room)
    return [{"type": "join", "room": r}, {"type": "offer", "room": r, "sdp": "v=0"},
            {"type": "answer", "room": r, "sdp": "v=0"}, {"type": "ice", "room": r, "candidate": None},
            {"type": "chat", "room": r, "text": "xin chào"}, {"type": "media", "room": r, "audio": True,
                                                             "video": False},
            {"type": "leave", "room": r}, {"type": "end", "room": r}]


async def _active_consultation(con: asyncpg.Connection, doctor: int, facility: int, patient: int) -> uuid.UUID:
    entry, _ = await queue_db.enqueue(con, patient_id=patient, link_jti=None, facility_id=facility, level=1,
                                      danger_signs=(), reason="sốt", checkin={}, audio_only=False)
    return (await queue_db.claim_entry(con, doctor, facility, entry.id)).consultation_id


async def test_every_role_sends_every_socket_message_in_every_relation(running_app: RunningApp) -> None:
    app = running_app
    async with app.pool.acquire() as con:
        facilities = await _facilities(con)
        world = {rel: await _objects(con, rel, f) for rel, f in facilities.items()}
        rooms: dict[Relation, uuid.UUID] = {}
        for rel, objects in world.items():  # an active consultation in each facility, by its own doctor
            doctor = await con.fetchval("SELECT created_by FROM invitation WHERE id = $1", objects.invitation)
            rooms[rel] = await _active_consultation(con, doctor, objects.facility, objects.other_patient)
        own = facilities[Relation.own]
        mine: dict[Role, uuid.UUID] = {}
        for role in STAFF_ROLES:
            staff_id = await _staff(con, own, role.value, f"matrix.{role.value}")
            if role in (Role.doctor, Role.specialist):
                patient = await patients_db.create(con, facility_id=own, name=f"Người bệnh của {role.value}")
                mine[role] = await _active_consultation(con, staff_id, own, patient)
        patient_token, _ = await issue_link(con, app.app[signer_key], world[Relation.own].other_patient, 3600)

    mismatches: list[str] = []

    def check(who: str, label: str, message: dict[str, Any], allowed: bool, reply: dict[str, Any] | None) -> None:
        if _refused(reply) == allowed:
            mismatches.append(f"{who:<11} {message['type']:<10} {label:<9} expected "
                              f"{'allowed' if allowed else 'refused'}, got {reply}")

    for role in STAFF_ROLES:
        http = await signed_in(app, f"matrix.{role.value}")
        try:
            for rel in RELATIONS:
                ws = await _connect(app, http.http)  # a fresh socket: refusals count towards the abuse limit
                if rel is Relation.own:  # the queue as this role may see it
                    listing = await ws.expect("queue_list")
                    names = {e["patient"]["name"] if e["patient"] else None for e in listing["entries"]}
                    assert listing["total"] >= 2 and (None in names) != (role in (Role.doctor, Role.specialist,
                                                                                  Role.nurse)), (role, names)
                for message in _room_messages(rooms[rel]):
                    action = SOCKET_MESSAGES[message["type"]]
                    assert action is Action.conduct_consultation
                    allowed = decide(role, action, rel).allowed  # never the assignee of these rooms
                    check(role.value, rel.value, message, allowed, await _outcome(ws, **message))
                message = {"type": "claim_next", "entry": str(world[rel].entry)}
                allowed = decide(role, Action.claim, rel).allowed  # allowed: doctor_busy, they are in a call
                check(role.value, rel.value, message, allowed, await _outcome(ws, **message))
                await ws.close()
            ws = await _connect(app, http.http)
            message = {"type": "claim_next"}
            check(role.value, "-", message, decide(role, Action.claim).allowed, await _outcome(ws, **message))
            if role in mine:  # their own consultation: every message is theirs to send
                for message in _room_messages(mine[role]):
                    allowed = decide(role, Action.conduct_consultation, Relation.own, assignee=True).allowed
                    check(role.value, "assignee", message, allowed, await _outcome(ws, **message))
                    if message["type"] == "leave":
                        await _outcome(ws, type="join", room=str(mine[role]))
            await ws.close()
        finally:
            await http.http.close()

    async with aiohttp.ClientSession() as http:  # a patient: their own consultation only
        ws = await _connect(app, http, patient_token)
        for rel in RELATIONS:
            for message in _room_messages(rooms[rel]):
                assignee = rel is Relation.own  # the link is for the own facility's patient in that room
                allowed = decide(Role.patient, Action.conduct_consultation, Relation.own, assignee=assignee).allowed
                if not assignee and message["type"] not in ("join", "end"):
                    continue  # (membership refusals are the same as for staff, and would close the socket)
                check("patient", rel.value, message, allowed, await _outcome(ws, **message))
                if message["type"] == "leave":
                    await _outcome(ws, type="join", room=str(rooms[rel]))
        check("patient", "-", {"type": "claim_next"}, False, await _outcome(ws, type="claim_next"))
        await ws.close()
    assert not mismatches, "\n".join(mismatches)


def test_route_rules_follow_head_to_get() -> None:
    assert rule_for("HEAD", "/staff/outbox") == ROUTES[("GET", "/staff/outbox")]
