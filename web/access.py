"""The access policy at the HTTP boundary: what each route is (action, object), and the check handlers call.

Every route of the app is in `ROUTES` (a test enumerates the router and fails on a route without an
entry). A staff route's handler loads its object, then calls `require(...)` with the route's action and
the object's facility; the decision is care/access.py's, with the facility relation from db/scope.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

import asyncpg
from aiohttp import web

from care import access
from care.access import Action, Decision, Refusal, Relation
from db import scope
from db.staff import StaffMember
from web.errors import ApiError


class Audience(StrEnum):
    public = "public"    # anyone: the start page, sign-in, static files, health
    patient = "patient"  # a join-link token (no account): the patient's own link, consent, check-in
    staff = "staff"      # a signed-in staff member, through the policy
    socket = "socket"    # /ws: each message is authorised by itself (SOCKET_MESSAGES)
    monitor = "monitor"  # /metrics: this machine, or DONGHANH_METRICS_TOKEN (web/metrics.py)


class ObjectKind(StrEnum):
    """What a route acts on: its facility (the patient's) gives the relation."""

    patient = "patient"
    consultation = "consultation"
    invitation = "invitation"
    queue_entry = "queue_entry"
    message = "message"
    escalation = "escalation"  # its facility is the requesting facility's
    referral = "referral"      # its facility is the receiving facility's
    tb_clip = "tb_clip"
    tb_case = "tb_case"
    thread = "thread"  # a staff thread about a patient: its facility is the patient's station


@dataclass(frozen=True)
class RouteRule:
    audience: Audience
    action: Action | None = None
    obj: ObjectKind | None = None  # None: a list or a form, limited to the staff member's scope

    @staticmethod
    def staff(action: Action, obj: ObjectKind | None = None) -> RouteRule:
        return RouteRule(Audience.staff, action, obj)


PUBLIC = RouteRule(Audience.public)
PATIENT = RouteRule(Audience.patient)
_S = RouteRule.staff
_P, _C, _I, _Q, _M = (ObjectKind.patient, ObjectKind.consultation, ObjectKind.invitation, ObjectKind.queue_entry,
                      ObjectKind.message)
_E, _R = ObjectKind.escalation, ObjectKind.referral

# (method, canonical path) → rule. HEAD follows GET.
ROUTES: dict[tuple[str, str], RouteRule] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): RouteRule(Audience.monitor),
    ("GET", "/static/{name}"): PUBLIC,
    ("GET", "/staff/login"): PUBLIC,
    ("POST", "/staff/login"): PUBLIC,
    ("POST", "/staff/logout"): PUBLIC,
    ("GET", "/ws"): RouteRule(Audience.socket),
    ("GET", "/j/{token}"): PATIENT,
    ("GET", "/s/{code}"): PATIENT,
    ("POST", "/api/p/consent"): PATIENT,
    ("POST", "/api/p/checkin"): PATIENT,
    ("POST", "/api/p/connection-test"): PATIENT,
    ("GET", "/api/p/connection-test/{test}"): PATIENT,
    ("DELETE", "/api/p/connection-test/{test}"): PATIENT,
    ("GET", "/tb/{token}"): PATIENT,
    ("POST", "/api/p/tb/uploads"): PATIENT,
    ("GET", "/api/p/tb/uploads/{upload}"): PATIENT,
    ("PATCH", "/api/p/tb/uploads/{upload}"): PATIENT,
    ("GET", "/staff"): _S(Action.read_counts),
    ("GET", "/staff/c/{cid}"): _S(Action.conduct_consultation, _C),
    ("GET", "/api/c/{cid}/note"): _S(Action.write_note, _C),
    ("PUT", "/api/c/{cid}/note/draft"): _S(Action.write_note, _C),
    ("POST", "/api/c/{cid}/note/sign"): _S(Action.write_note, _C),
    ("POST", "/api/c/{cid}/summary/preview"): _S(Action.write_note, _C),
    ("POST", "/api/c/{cid}/patient-phone"): _S(Action.conduct_consultation, _C),  # the empty call: audited
    ("POST", "/api/c/{cid}/no-show"): _S(Action.conduct_consultation, _C),
    ("POST", "/api/queue/{entry}/level"): _S(Action.change_level, _Q),
    ("GET", "/api/icd10"): _S(Action.lookup_reference),
    ("GET", "/api/communes"): _S(Action.lookup_reference),
    ("GET", "/staff/patients"): _S(Action.read_demographics),
    ("GET", "/api/patients"): _S(Action.read_demographics),
    ("GET", "/staff/patients/{pid}"): _S(Action.read_demographics, _P),
    ("GET", "/staff/patients/new"): _S(Action.register_patient),
    ("POST", "/staff/patients/new"): _S(Action.register_patient),
    ("GET", "/staff/patients/{pid}/edit"): _S(Action.edit_patient, _P),
    ("POST", "/staff/patients/{pid}/edit"): _S(Action.edit_patient, _P),
    ("POST", "/staff/patients/{pid}/merge"): _S(Action.merge_patients, _P),
    ("GET", "/staff/patients/{pid}/invite"): _S(Action.invite, _P),
    ("POST", "/staff/patients/{pid}/invite"): _S(Action.invite, _P),
    ("GET", "/staff/invitations/{iid}"): _S(Action.read_invitations, _I),
    ("POST", "/staff/invitations/{iid}/send"): _S(Action.send_message, _I),
    ("POST", "/staff/invitations/{iid}/revoke"): _S(Action.invite, _I),
    ("POST", "/staff/invitations/{iid}/reschedule"): _S(Action.invite, _I),
    ("GET", "/staff/outbox"): _S(Action.read_outbox),
    ("GET", "/staff/outbox/{mid}"): _S(Action.see_live_link, _M),
    ("GET", "/staff/schedule"): _S(Action.read_invitations),
    ("POST", "/staff/schedule/start"): _S(Action.claim, _Q),
    # Escalations (issue 9): a request's facility is the requesting facility; the specialist offered it
    # (or who accepted it) is its assignee (web/escalation_routes.py `_load`).
    ("GET", "/staff/escalations"): _S(Action.read_escalation),
    ("GET", "/staff/escalations/{eid}"): _S(Action.read_escalation, _E),
    ("GET", r"/staff/patients/{pid}/ask"): _S(Action.ask_opinion, _P),
    ("GET", "/api/patients/{pid}/escalation-summary"): _S(Action.ask_opinion, _P),
    ("GET", "/api/escalations"): _S(Action.read_escalation),
    ("POST", "/api/escalations"): _S(Action.ask_opinion),
    ("GET", "/api/escalations/{eid}"): _S(Action.read_escalation, _E),
    ("POST", "/api/escalations/{eid}/accept"): _S(Action.answer_escalation, _E),
    ("POST", "/api/escalations/{eid}/decline"): _S(Action.answer_escalation, _E),
    ("POST", "/api/escalations/{eid}/opinion"): _S(Action.answer_escalation, _E),
    ("POST", "/api/escalations/{eid}/messages"): _S(Action.read_escalation, _E),
    ("POST", "/api/escalations/{eid}/cancel"): _S(Action.ask_opinion, _E),
    ("POST", "/api/escalations/{eid}/close"): _S(Action.ask_opinion, _E),
    ("POST", "/api/staff/duty"): _S(Action.set_on_duty),
    ("POST", "/api/escalations/{eid}/attachments"): _S(Action.read_escalation, _E),
    ("GET", "/api/escalations/{eid}/attachments"): _S(Action.read_escalation, _E),
    ("GET", "/api/escalations/{eid}/attachments/{aid}"): _S(Action.read_escalation, _E),
    ("GET", "/api/escalations/{eid}/attachments/{aid}/thumbnail"): _S(Action.read_escalation, _E),
    ("POST", "/api/escalations/{eid}/attachments/{aid}/enhance"): _S(Action.read_escalation, _E),
    ("POST", "/api/escalations/{eid}/referral"): _S(Action.ask_opinion, _E),
    ("GET", "/api/staff/badge"): _S(Action.read_counts),  # one's own open offers and unread opinions
    ("GET", "/api/escalations/{eid}/referral"): _S(Action.read_escalation, _E),
    ("GET", "/api/referrals/incoming"): _S(Action.receive_referral),
    ("POST", "/api/referrals/{rid}/acknowledge"): _S(Action.receive_referral, _R),
    ("POST", "/api/referrals/{rid}/arrived"): _S(Action.receive_referral, _R),
    ("GET", "/staff/referrals"): _S(Action.receive_referral),
    ("GET", "/staff/coordination"): _S(Action.read_counts),
    ("GET", "/api/coordination"): _S(Action.read_counts),
    ("GET", "/api/coordination/{table}.csv"): _S(Action.read_counts),
    ("POST", "/api/p/bp"): PATIENT,
    ("GET", "/staff/htn"): _S(Action.read_cohort),
    ("GET", "/staff/htn/worklist"): _S(Action.read_register),
    ("GET", "/staff/htn/overdue"): _S(Action.read_register),
    ("GET", "/staff/htn/import"): _S(Action.record_visit),
    ("POST", "/staff/htn/import"): _S(Action.record_visit),
    ("GET", "/staff/htn/p/{pid}"): _S(Action.read_register, _P),
    ("POST", "/staff/htn/p/{pid}/enrol"): _S(Action.record_visit, _P),
    ("POST", "/staff/htn/p/{pid}/visit"): _S(Action.record_visit, _P),
    ("POST", "/staff/htn/p/{pid}/call"): _S(Action.record_visit, _P),
    ("POST", "/staff/htn/p/{pid}/medicines"): _S(Action.review_register, _P),
    ("POST", "/staff/htn/p/{pid}/review"): _S(Action.review_register, _P),
    ("GET", "/staff/tb"): _S(Action.read_tb),
    ("GET", "/staff/patients/{pid}/tb"): _S(Action.record_tb, _P),
    ("POST", "/staff/patients/{pid}/tb"): _S(Action.record_tb, _P),
    ("GET", "/staff/tb/cases/{case}"): _S(Action.read_tb, ObjectKind.tb_case),
    ("POST", "/staff/tb/cases/{case}/record/{what}"): _S(Action.record_tb, ObjectKind.tb_case),
    ("POST", "/staff/tb/cases/{case}/treatment/{what}"): _S(Action.change_tb_treatment, ObjectKind.tb_case),
    ("POST", "/staff/tb/cases/{case}/review"): _S(Action.review_tb_case, ObjectKind.tb_case),
    ("GET", "/staff/tb/review"): _S(Action.review_tb_dose),
    ("GET", "/staff/tb/report"): _S(Action.read_tb),
    ("GET", "/staff/tb/clips/{clip}/sheet"): _S(Action.review_tb_dose, ObjectKind.tb_clip),
    ("GET", "/staff/tb/clips/{clip}/video"): _S(Action.review_tb_dose, ObjectKind.tb_clip),
    ("POST", "/staff/tb/clips/{clip}/review"): _S(Action.review_tb_dose, ObjectKind.tb_clip),
    # Staff messages about a patient (issues 10/11 point 5): the patient's station is the object's facility.
    ("GET", "/staff/threads"): _S(Action.read_care_messages),
    ("GET", "/staff/threads/{tid}"): _S(Action.read_care_messages, ObjectKind.thread),
    ("GET", "/api/threads"): _S(Action.read_care_messages),
    ("GET", "/api/threads/{tid}"): _S(Action.read_care_messages, ObjectKind.thread),
    ("POST", "/api/threads/{tid}/messages"): _S(Action.write_care_message, ObjectKind.thread),
    ("POST", "/api/threads/{tid}/read"): _S(Action.read_care_messages, ObjectKind.thread),
    ("POST", "/api/patients/{pid}/threads"): _S(Action.write_care_message, _P),
}

# Socket messages → the action they need (None: no authorisation beyond the socket itself). Room
# messages other than `join` and `end` need membership of the room, which only an allowed `join` gives.
SOCKET_MESSAGES: dict[str, Action | None] = {
    "hello": None, "ping": None,
    "join": Action.conduct_consultation, "end": Action.conduct_consultation,
    "leave": Action.conduct_consultation, "offer": Action.conduct_consultation,
    "answer": Action.conduct_consultation, "ice": Action.conduct_consultation,
    "chat": Action.conduct_consultation, "media": Action.conduct_consultation,
    "claim_next": Action.claim,
    "call_back": Action.conduct_consultation,  # the consultation's own doctor
    "ack_alert": Action.read_queue,  # danger alerts are part of the queue with names (scope in SQL)
}
# Staff invited into a live call (a consultation_participant row, issue 9 point 4) may send these room
# messages under `join_call` instead; `end` stays with the consultation's own doctor and patient.
PARTICIPANT_MESSAGES: dict[str, Action] = {
    kind: Action.join_call for kind in ("join", "leave", "offer", "answer", "ice", "chat", "media")
}


def rule_for(method: str, canonical: str) -> RouteRule | None:
    return ROUTES.get(("GET" if method == "HEAD" else method, canonical))


def may(staff: StaffMember, action: Action) -> bool:
    """Is `action` open to this staff member's role at all (menus, buttons, what a page shows)?"""
    return access.may_ever(staff.role, action)


async def check(con: asyncpg.Connection, staff: StaffMember, action: Action, facility_id: int, *,
                assignee: bool = False) -> tuple[Decision, Relation]:
    """The policy's decision on `action` to an object of `facility_id` (the patient's facility)."""
    relation = await scope.relation(con, staff.facility_id, facility_id)
    return access.decide(staff.role, action, relation, assignee=assignee), relation


async def require(request: web.Request, con: asyncpg.Connection, staff: StaffMember, action: Action,
                  facility_id: int, *, assignee: bool = False, hide: bool = False) -> Relation:
    """Refuse unless the policy allows `action` on an object of `facility_id` (the patient's facility).
    Refusals are 403; with `hide`, an object outside one's scope is a 404, as if it did not exist (a
    refused role is still 403). Returns the relation."""
    decision, relation = await check(con, staff, action, facility_id, assignee=assignee)
    if not decision:
        _refuse(request, decision, hide=hide and decision.refusal is Refusal.scope)
    return relation


def _refuse(request: web.Request, decision: Decision, *, hide: bool) -> NoReturn:
    if request.path.startswith("/api/"):
        raise ApiError("not_found", "no such object") if hide else ApiError("forbidden", decision.message)
    raise web.HTTPNotFound() if hide else web.HTTPForbidden()


def require_role(request: web.Request, staff: StaffMember, action: Action) -> None:
    """The role check alone, before anything is loaded (a form that creates, a list of one's own scope)."""
    decision = access.decide(staff.role, action, Relation.own)
    if not decision:
        _refuse(request, decision, hide=False)
