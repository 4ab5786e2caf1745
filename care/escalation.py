"""Specialist escalation: the checked state machine, the urgency defaults and the routing rule (pure).

A commune doctor asks for a specialist's opinion; the request is offered to one specialist at a time, at
the nearest level above the requester with an on-duty specialist of that specialty, least loaded first,
climbing a level when that level is exhausted; when everyone on duty above has been asked, to on-duty
specialists elsewhere in the network (a sibling district…), nearest in the facility tree first; when
everyone reachable has been asked, again to those whose offer expired unanswered (never to one who
declined), until the deadline (`next_candidate`). Every change is an `Event` applied by `apply`, which
either returns the new `State` or raises `EscalationError` (a precise code, the state named in the
message) and changes nothing: db/escalations.py applies it to the locked row, so the database and this
table agree. Figures and rules: ../shared/CLINICAL.md, "Specialist escalation".

    requested ──offer──▶ offered ──accept──▶ accepted ──answer──▶ answered ──close──▶ closed
        ▲                  │
        └─ decline/expire ─┘   (the next candidate, or again one whose offer expired: one hop more)
    requested | offered | accepted(answer deadline) ──deadline──▶ overdue
    anything not answered/closed ──cancel (requester)──▶ cancelled
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum


class Urgency(StrEnum):
    urgent = "urgent"      # a specialist accepts within 15 minutes and joins the call live
    priority = "priority"  # answered within 4 hours
    routine = "routine"    # answered within 3 days


class DeadlineFor(StrEnum):
    accept = "accept"  # the deadline is met when a specialist accepts (urgent: then they join live)
    answer = "answer"  # the deadline is met when the written opinion is signed


@dataclass(frozen=True)
class UrgencyPolicy:
    deadline: timedelta      # from the request to the accept or the answer (`deadline_for`)
    offer_window: timedelta  # how long one specialist has to accept before the next is asked
    deadline_for: DeadlineFor
    # When everyone on duty above the requester was asked: go on to on-duty specialists elsewhere in the
    # network (sibling districts…, nearest in the tree first) rather than wait idle for the deadline.
    lateral: bool = True
    # When everyone reachable was asked: ask again those whose offer expired unanswered (never those who
    # declined), round after round, until the deadline.
    reoffer: bool = True


# The defaults, in one place (CLINICAL.md: urgent 15 min to accept; priority 4 h, routine 3 days to answer).
# A deployment changes them through `policies(...)` (settings), never by editing call sites.
DEFAULT_POLICIES: Mapping[Urgency, UrgencyPolicy] = {
    Urgency.urgent: UrgencyPolicy(timedelta(minutes=15), timedelta(minutes=5), DeadlineFor.accept),
    Urgency.priority: UrgencyPolicy(timedelta(hours=4), timedelta(hours=1), DeadlineFor.answer),
    Urgency.routine: UrgencyPolicy(timedelta(days=3), timedelta(days=1), DeadlineFor.answer),
}


def parse_urgency(value: str) -> Urgency:
    """An urgency by name; ValueError naming the accepted ones."""
    try:
        return Urgency(value)
    except ValueError:
        raise ValueError(f"unknown urgency {value!r} (urgent, priority, routine)") from None


def policies(overrides: Mapping[str, tuple[timedelta, timedelta]] | None = None) -> dict[Urgency, UrgencyPolicy]:
    """The defaults with some urgencies' (deadline, offer window) replaced. ValueError on an unknown urgency,
    a non-positive duration, or an offer window longer than the deadline."""
    result = dict(DEFAULT_POLICIES)
    for name, (deadline, window) in (overrides or {}).items():
        urgency = parse_urgency(name)
        if deadline <= timedelta(0) or window <= timedelta(0):
            raise ValueError(f"{urgency.value}: the deadline and the offer window must be positive")
        if window > deadline:
            raise ValueError(f"{urgency.value}: the offer window ({window}) is longer than the deadline ({deadline})")
        result[urgency] = replace(result[urgency], deadline=deadline, offer_window=window)
    return result


class Status(StrEnum):
    requested = "requested"  # waiting for a candidate (just asked, declined, expired, nobody on duty)
    offered = "offered"      # one specialist has an open offer
    accepted = "accepted"    # a specialist took it
    answered = "answered"    # the opinion is signed
    closed = "closed"        # the requester closed it (read the answer, or gave up on an overdue one)
    overdue = "overdue"      # the deadline passed unanswered: the requester is told what to do
    cancelled = "cancelled"  # the requester withdrew it


OPEN = frozenset({Status.requested, Status.offered, Status.accepted, Status.overdue})
FINISHED = frozenset({Status.answered, Status.closed, Status.cancelled})


class EscalationError(Exception):
    """A refused change: `code` is stable (docs/protocol.md), `message` names the state it was in."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class State:
    """What the machine needs to know of one request (the row holds more)."""

    status: Status
    urgency: Urgency
    requester_id: int
    offered_to: int | None = None
    accepted_by: int | None = None
    asked: frozenset[int] = frozenset()     # every specialist offered it so far
    declined: frozenset[int] = frozenset()  # those who declined it: never offered it again
    hops: int = 0                           # offers made after the first (re-routes and re-offers)


# ---- events -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Offer:
    staff_id: int


@dataclass(frozen=True)
class Accept:
    staff_id: int


@dataclass(frozen=True)
class Decline:
    staff_id: int
    reason: str


@dataclass(frozen=True)
class OfferExpired:
    staff_id: int


@dataclass(frozen=True)
class Answer:
    staff_id: int


@dataclass(frozen=True)
class DeadlinePassed:
    pass


@dataclass(frozen=True)
class Cancel:
    staff_id: int


@dataclass(frozen=True)
class Close:
    staff_id: int


Event = Offer | Accept | Decline | OfferExpired | Answer | DeadlinePassed | Cancel | Close

MAX_REASON = 500


def _refuse(code: str, verb: str, state: State) -> EscalationError:
    return EscalationError(code, f'cannot {verb} escalation in state "{state.status.value}"')


def deadline_applies(state: State) -> bool:
    """Is the overall deadline still running? Until the accept (urgent) or the answer (priority, routine)."""
    if state.status in (Status.requested, Status.offered):
        return True
    return state.status is Status.accepted and DEFAULT_POLICIES[state.urgency].deadline_for is DeadlineFor.answer


def apply(state: State, event: Event) -> State:
    """The state after `event`, or EscalationError (and `state`, being immutable, is unchanged)."""
    match event:
        case Offer(staff_id):
            if state.status is not Status.requested:
                raise _refuse("not_routable", "offer", state)
            if staff_id in state.declined:
                raise EscalationError("declined_before", f"specialist {staff_id} declined this request")
            if staff_id == state.requester_id:
                raise EscalationError("own_request", "a request is not offered to the doctor who asked")
            return replace(state, status=Status.offered, offered_to=staff_id, asked=state.asked | {staff_id},
                           hops=state.hops + (1 if state.asked else 0))
        case Accept(staff_id):
            if state.status is Status.accepted:
                raise _refuse("already_accepted", "accept", state)
            if state.status is not Status.offered:
                raise _refuse("not_offered", "accept", state)
            if state.offered_to != staff_id:
                raise EscalationError("not_your_offer", "this request is offered to another specialist")
            return replace(state, status=Status.accepted, offered_to=None, accepted_by=staff_id)
        case Decline(staff_id, reason):
            if state.status is not Status.offered:
                raise _refuse("not_offered", "decline", state)
            if state.offered_to != staff_id:
                raise EscalationError("not_your_offer", "this request is offered to another specialist")
            if not reason.strip():
                raise EscalationError("reason_required", "say why you decline (the requester reads it)")
            if len(reason) > MAX_REASON:
                raise EscalationError("reason_too_long", f"the reason is longer than {MAX_REASON} characters")
            return replace(state, status=Status.requested, offered_to=None, declined=state.declined | {staff_id})
        case OfferExpired(staff_id):
            if state.status is not Status.offered or state.offered_to != staff_id:
                raise _refuse("not_offered", "expire an offer of", state)
            return replace(state, status=Status.requested, offered_to=None)
        case Answer(staff_id):
            accepted = state.status is Status.accepted or (state.status is Status.overdue
                                                           and state.accepted_by is not None)
            if not accepted:
                raise _refuse("not_accepted", "answer", state)
            if state.accepted_by != staff_id:
                raise EscalationError("not_your_request", "only the specialist who accepted may answer")
            return replace(state, status=Status.answered)
        case DeadlinePassed():
            if not deadline_applies(state):
                raise _refuse("no_deadline", "expire", state)
            return replace(state, status=Status.overdue, offered_to=None)
        case Cancel(staff_id):
            if staff_id != state.requester_id:
                raise EscalationError("not_requester", "only the doctor who asked may cancel")
            if state.status in FINISHED:
                raise _refuse("finished", "cancel", state)
            return replace(state, status=Status.cancelled, offered_to=None)
        case Close(staff_id):
            if staff_id != state.requester_id:
                raise EscalationError("not_requester", "only the doctor who asked may close")
            if state.status not in (Status.answered, Status.overdue):
                raise _refuse("not_closable", "close", state)
            return replace(state, status=Status.closed, offered_to=None)
    raise EscalationError("unknown_event", f"unknown event {event!r}")  # pragma: no cover


def invariant_violations(state: State) -> list[str]:
    """What would make a state invalid; empty for every state `apply` can produce (a property test)."""
    problems = []
    if (state.status is Status.offered) != (state.offered_to is not None):
        problems.append("an offered request has exactly one open offer, and only it")
    if state.offered_to is not None and state.offered_to not in state.asked:
        problems.append("the open offer is to someone asked")
    if state.status in (Status.accepted, Status.answered) and state.accepted_by is None:
        problems.append("an accepted or answered request has its specialist")
    if state.requester_id in state.asked:
        problems.append("the requester is never offered their own request")
    if state.hops < max(len(state.asked) - 1, 0) or (not state.asked and state.hops):
        problems.append("hops count the offers after the first")
    if not state.declined <= state.asked:
        problems.append("only someone asked can have declined")
    if state.offered_to is not None and state.offered_to in state.declined:
        problems.append("a request is never offered again to someone who declined it")
    return problems


# ---- routing ----------------------------------------------------------------------------------------

class Reach(StrEnum):
    above = "above"          # a facility above the requester: its district, the province, central
    elsewhere = "elsewhere"  # anywhere else in the network: a sibling district, another province…


@dataclass(frozen=True, order=True)
class Candidate:
    """An on-duty specialist of the requested specialty the request may be offered to. Ordered as the rule
    asks: above the requester before elsewhere, then nearest, then least loaded, then the lower id."""

    reach: int       # 0: above the requester; 1: elsewhere in the network (`Reach`, as a sort key)
    distance: int    # steps in the facility tree: above, 1 = the parent…; elsewhere, up to the common ancestor
                     # and down (a sibling district of a commune's district: 3)
    load: int        # open offers + accepted requests not yet answered
    staff_id: int
    facility_id: int = field(compare=False)

    @property
    def where(self) -> Reach:
        return Reach.above if self.reach == 0 else Reach.elsewhere


@dataclass(frozen=True)
class OnDuty:
    """A specialist on duty now: their facility's path to the top (the facility first), their load."""

    staff_id: int
    path: Sequence[int]
    load: int


def candidates(requester_path: Sequence[int], on_duty: Iterable[OnDuty], *, lateral: bool = True) -> list[Candidate]:
    """`requester_path`: the requester's facility, its parent… up to the top. Specialists at a facility above
    the requester are candidates `above` (distance: levels up); with `lateral`, those anywhere else under
    the same top are candidates `elsewhere` (distance: steps up to the nearest common ancestor and down).
    Specialists of another tree are never candidates."""
    position = {facility: i for i, facility in enumerate(requester_path)}
    found = []
    for specialist in on_duty:
        for steps, facility in enumerate(specialist.path):
            if facility in position:
                above = steps == 0 and position[facility] > 0
                if above or lateral:
                    found.append(Candidate(0 if above else 1, steps + position[facility], specialist.load,
                                           specialist.staff_id, specialist.path[0]))
                break
    return found


def next_candidate(found: Iterable[Candidate], offered: Mapping[int, int], declined: Iterable[int] = (), *,
                   reoffer: bool = True) -> Candidate | None:
    """Whom to offer the request to next. `offered`: how many times each specialist was offered it so far.
    Those offered it least come first (so everyone reachable is asked once before anyone is asked again),
    then the candidates' order (above before elsewhere, nearest, least loaded, lower id). Never someone who
    declined; without `reoffer`, never someone already offered it. None: nobody left (wait for someone to
    come on duty, or for the deadline)."""
    excluded = set(declined)
    remaining = [c for c in found if c.staff_id not in excluded and (reoffer or c.staff_id not in offered)]
    if not remaining:
        return None
    return min(remaining, key=lambda c: (offered.get(c.staff_id, 0), c))
