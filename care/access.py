"""Who may do what to what: the one access policy of Đồng Hành (pure, no I/O).

A decision takes the actor's role, the action, and the relation between the actor's facility and the
object's facility (the referral tree: commune → regional/district → province → central). Some actions
also need the actor to be the object's own doctor or patient (`assignee`). Every HTTP route and every
socket message asks `decide` (through `web/access.py` and `signaling/hub.py`); the facility relation is
computed the same way in SQL (`facility_relation()`, migration 0007, via `db/scope.py`) and in memory
(`relation_of`). `docs/security.md` prints this table (`tools/security_table.py`).

Least privilege: clinical content (signed notes, the consultation itself) only to clinicians in scope;
nurses work the registry, the queue and invitations; coordinators and admins see counts and states.
Escalations and the registers extend the table with their own actions when they come.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    doctor = "doctor"
    specialist = "specialist"
    nurse = "nurse"
    coordinator = "coordinator"
    admin = "admin"
    patient = "patient"  # no account: known by a join link, acts only on their own consultation


STAFF_ROLES: tuple[Role, ...] = (Role.doctor, Role.specialist, Role.nurse, Role.coordinator, Role.admin)


class Relation(StrEnum):
    """Where the object's facility sits, seen from the actor's facility."""

    own = "own"              # the same facility
    below = "below"          # a facility under the actor's (any depth)
    above = "above"          # a facility over the actor's (any depth)
    sibling = "sibling"      # another facility with the same parent
    unrelated = "unrelated"  # anything else (another district, another province)


class Action(StrEnum):
    read_queue = "read_queue"                  # the live queue with names, reasons, danger signs; alerts
    read_counts = "read_counts"                # the queue as counts and states: levels, waits, no names
    claim = "claim"                            # take a waiting patient (socket or the day's schedule)
    change_level = "change_level"              # override a suggested triage level
    read_demographics = "read_demographics"    # a patient's record: name, age, address, masked phone
    register_patient = "register_patient"      # create a patient record (at the actor's own facility)
    edit_patient = "edit_patient"              # change a patient's record
    merge_patients = "merge_patients"          # merge a duplicate record into another
    read_clinical = "read_clinical"            # signed notes, reasons, vitals, diagnoses of past visits
    conduct_consultation = "conduct_consultation"  # the call: page, room, relay, chat, end
    join_call = "join_call"                    # an invited specialist in a live call: room, relay, chat (not end)
    write_note = "write_note"                  # read and write the consultation's draft, sign a version
    read_invitations = "read_invitations"      # an invitation, the day's appointments and walk-ins
    invite = "invite"                          # invite, book, revoke, reschedule
    send_message = "send_message"              # send an invitation SMS (again)
    see_live_link = "see_live_link"            # a usable join link (URL, QR code, SMS text): a credential
    read_outbox = "read_outbox"                # outgoing messages, their states (links masked)
    read_audit = "read_audit"                  # the audit trail
    lookup_reference = "lookup_reference"      # ICD-10 codes, communes: public reference data
    ask_opinion = "ask_opinion"                # ask a specialist about a patient; cancel or close one's request
    read_escalation = "read_escalation"        # the requesting facility's requests: summary, thread, opinion
    answer_escalation = "answer_escalation"    # the specialist offered (or who accepted) it: accept, decline, answer
    set_on_duty = "set_on_duty"                # a specialist's own on-duty/away switch
    receive_referral = "receive_referral"      # referrals addressed to one's facility: see, acknowledge, arrival
    read_register = "read_register"            # the hypertension register: charts, overdue list, worklist
    record_visit = "record_visit"              # enrol, record a station visit or reading, call results, import
    review_register = "review_register"        # review a register patient (a signed note), change medicines
    read_cohort = "read_cohort"                # the register's dashboards and reports: counts, no names
    read_tb = "read_tb"                        # the TB register: cases, dose calendars, flags, cohort report
    review_tb_dose = "review_tb_dose"          # watch a video-observed dose clip, confirm or reject it
    record_tb = "record_tb"                    # register a TB case, record doses and sputum results
    change_tb_treatment = "change_tb_treatment"  # change a regimen, set an outcome (with a reason, audited)
    review_tb_case = "review_tb_case"          # a TB specialist's review of a case (a signed note version)
    write_care_message = "write_care_message"  # write to the patient's station staff about a patient; reply
    read_care_messages = "read_care_messages"  # the staff threads about a patient: inbox, read, mark as read


CLINICIANS = frozenset({Role.doctor, Role.specialist})
FRONT_DESK = CLINICIANS | {Role.nurse}
ALL_STAFF = frozenset(STAFF_ROLES)

# The facility and every facility below it: a staff member's scope.
IN_SCOPE = frozenset({Relation.own, Relation.below})
OWN = frozenset({Relation.own})
# Wherever the object is: the invitation itself (a consultation_participant row) is the authorisation.
ANYWHERE = frozenset(Relation)


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    relations: frozenset[Relation] = IN_SCOPE
    assignee: bool = False  # the actor must also be the object's own doctor (or patient)


RULES: dict[Action, Rule] = {
    Action.read_queue: Rule(FRONT_DESK),
    Action.read_counts: Rule(ALL_STAFF),
    Action.claim: Rule(CLINICIANS),
    Action.change_level: Rule(CLINICIANS),
    Action.read_demographics: Rule(FRONT_DESK),
    Action.register_patient: Rule(FRONT_DESK, OWN),
    Action.edit_patient: Rule(FRONT_DESK),
    Action.merge_patients: Rule(FRONT_DESK),
    Action.read_clinical: Rule(CLINICIANS),
    Action.conduct_consultation: Rule(CLINICIANS | {Role.patient}, assignee=True),
    Action.join_call: Rule(CLINICIANS, ANYWHERE, assignee=True),
    Action.write_note: Rule(CLINICIANS, assignee=True),
    Action.read_invitations: Rule(FRONT_DESK),
    Action.invite: Rule(FRONT_DESK),
    Action.send_message: Rule(FRONT_DESK),
    Action.see_live_link: Rule(FRONT_DESK),
    Action.read_outbox: Rule(ALL_STAFF),
    Action.read_audit: Rule(frozenset({Role.admin})),
    Action.lookup_reference: Rule(ALL_STAFF, OWN),
    # Escalations (issue 9 point 9): the requesting facility's clinicians see its requests; a specialist
    # sees those offered to or accepted by them, wherever they come from (the assignee); nobody else.
    Action.ask_opinion: Rule(CLINICIANS),
    Action.read_escalation: Rule(CLINICIANS, OWN),
    Action.answer_escalation: Rule(frozenset({Role.specialist}), frozenset(Relation), assignee=True),
    Action.set_on_duty: Rule(frozenset({Role.specialist}), OWN),
    Action.receive_referral: Rule(FRONT_DESK, OWN),  # the receiving facility (the object's: `to_facility`)
    Action.read_register: Rule(FRONT_DESK),
    Action.record_visit: Rule(FRONT_DESK),
    Action.review_register: Rule(CLINICIANS),
    Action.read_cohort: Rule(ALL_STAFF),
    Action.read_tb: Rule(FRONT_DESK),
    Action.review_tb_dose: Rule(FRONT_DESK),
    Action.record_tb: Rule(FRONT_DESK),
    Action.change_tb_treatment: Rule(CLINICIANS),
    Action.review_tb_case: Rule(CLINICIANS),
    # Staff messages about a patient (issues 10/11): whoever may see the patient writes to the patient's
    # station (its doctors, specialists and nurses, who reply); coordinators and admins read no clinical text.
    Action.write_care_message: Rule(FRONT_DESK),
    Action.read_care_messages: Rule(FRONT_DESK),
}


class Refusal(StrEnum):
    role = "role"          # this role never may
    scope = "scope"        # this role may, but not for an object in that facility
    assignee = "assignee"  # only the object's own doctor (or patient) may


@dataclass(frozen=True)
class Decision:
    allowed: bool
    refusal: Refusal | None = None
    message: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)


def decide(role: Role | str, action: Action, relation: Relation = Relation.own, *,
           assignee: bool = False) -> Decision:
    """May `role` do `action` to an object whose facility is `relation` to theirs? With the reason if not.

    `assignee`: the actor is the object's own doctor (or, for a patient, it is their own consultation).
    Unknown roles are refused.
    """
    try:
        role = Role(role)
    except ValueError:
        return Decision(False, Refusal.role, f"unknown role {role!r}")
    rule = RULES[action]
    if role not in rule.roles:
        return Decision(False, Refusal.role, f"a {role.value} may not {action.value.replace('_', ' ')}")
    if relation not in rule.relations:
        where = "your own facility" if rule.relations == OWN else "your facility or the facilities below it"
        return Decision(False, Refusal.scope, f"{action.value.replace('_', ' ')} is for {where} "
                                              f"(this is {relation.value})")
    if rule.assignee and not assignee:
        who = ("the specialist it is offered to or who accepted it" if action is Action.answer_escalation
               else "the consultation's own doctor or patient")
        return Decision(False, Refusal.assignee, f"only {who} may do this")
    return ALLOWED


def allows(role: Role | str, action: Action, relation: Relation = Relation.own, *, assignee: bool = False) -> bool:
    return decide(role, action, relation, assignee=assignee).allowed


def may_ever(role: Role | str, action: Action) -> bool:
    """Is `action` open to `role` at all (for some object)? What menus and buttons ask."""
    return role in RULES[action].roles


def relation_of(staff_facility: int, object_facility: int, parents: Mapping[int, int | None]) -> Relation:
    """The in-memory twin of SQL `facility_relation()` (same definitions), over facility id → parent id."""
    if staff_facility == object_facility:
        return Relation.own
    if staff_facility in _ancestors(object_facility, parents):
        return Relation.below
    if object_facility in _ancestors(staff_facility, parents):
        return Relation.above
    parent = parents.get(staff_facility)
    if parent is not None and parent == parents.get(object_facility):
        return Relation.sibling
    return Relation.unrelated


def _ancestors(facility: int, parents: Mapping[int, int | None]) -> set[int]:
    seen: set[int] = set()
    current = parents.get(facility)
    while current is not None and current not in seen:  # a cycle in bad data ends the walk
        seen.add(current)
        current = parents.get(current)
    return seen


def in_scope(staff_facility: int, object_facility: int, parents: Mapping[int, int | None]) -> bool:
    """The object's facility is the staff member's own or below it."""
    return relation_of(staff_facility, object_facility, parents) in IN_SCOPE


# ---- the table, as docs/security.md prints it ------------------------------------------------------

def table_markdown() -> str:
    """The rules as a Markdown table: one row per action, one column per role."""
    roles = list(Role)
    head = "| action | " + " | ".join(r.value for r in roles) + " |"
    rule = "|---|" + "---|" * len(roles)
    rows = [head, rule]
    for action in Action:
        r = RULES[action]
        where = "own" if r.relations == OWN else "own + below" if r.relations == IN_SCOPE else \
            "any" if r.relations == ANYWHERE else ", ".join(sorted(x.value for x in r.relations))
        if r.assignee:
            where += ", assignee"
        # A patient's relation is always `own` (their link names them): only the assignee part says anything.
        cells = ["—" if role not in r.roles else ("own consultation" if r.assignee else "own")
                 if role is Role.patient else where for role in roles]
        rows.append(f"| `{action.value}` | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
