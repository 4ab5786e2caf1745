"""care.escalation: the state machine's transitions and refusals (table-driven and property-based), the
urgency defaults, and the routing rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from care.escalation import (
    DEFAULT_POLICIES,
    Accept,
    Answer,
    Cancel,
    Candidate,
    Close,
    DeadlineFor,
    DeadlinePassed,
    Decline,
    EscalationError,
    Event,
    Offer,
    OfferExpired,
    State,
    Status,
    Urgency,
    apply,
    candidates_above,
    invariant_violations,
    next_candidate,
    policies,
)

REQUESTER, A, B, C = 1, 10, 11, 12


def run(*events: Event, urgency: Urgency = Urgency.priority) -> State:
    state = State(Status.requested, urgency, REQUESTER)
    for event in events:
        state = apply(state, event)
    return state


def test_defaults_are_the_clinical_figures() -> None:
    assert DEFAULT_POLICIES[Urgency.urgent].deadline == timedelta(minutes=15)
    assert DEFAULT_POLICIES[Urgency.urgent].offer_window == timedelta(minutes=5)
    assert DEFAULT_POLICIES[Urgency.urgent].deadline_for is DeadlineFor.accept
    assert DEFAULT_POLICIES[Urgency.priority].deadline == timedelta(hours=4)
    assert DEFAULT_POLICIES[Urgency.priority].offer_window == timedelta(hours=1)
    assert DEFAULT_POLICIES[Urgency.routine].deadline == timedelta(days=3)
    assert DEFAULT_POLICIES[Urgency.routine].offer_window == timedelta(days=1)


def test_policies_can_be_configured_and_refuse_nonsense() -> None:
    changed = policies({"urgent": (timedelta(minutes=10), timedelta(minutes=2))})
    assert changed[Urgency.urgent].deadline == timedelta(minutes=10)
    assert changed[Urgency.priority] == DEFAULT_POLICIES[Urgency.priority]
    with pytest.raises(ValueError, match="longer than the deadline"):
        policies({"urgent": (timedelta(minutes=1), timedelta(minutes=2))})
    with pytest.raises(ValueError):
        policies({"someday": (timedelta(minutes=1), timedelta(minutes=1))})
    with pytest.raises(ValueError, match="positive"):
        policies({"routine": (timedelta(0), timedelta(0))})


def test_the_written_path_reaches_closed() -> None:
    state = run(Offer(A), Decline(A, "đang mổ"), Offer(B), Accept(B), Answer(B), Close(REQUESTER))
    assert state.status is Status.closed
    assert state.accepted_by == B
    assert state.hops == 1


def test_an_expired_offer_goes_back_to_routing_and_counts_a_hop() -> None:
    state = run(Offer(A), OfferExpired(A), Offer(B))
    assert state.status is Status.offered and state.offered_to == B and state.hops == 1


# (events before, the refused event, code)
REFUSALS: list[tuple[tuple[Event, ...], Event, str]] = [
    ((Offer(A), Accept(A)), Accept(A), "already_accepted"),
    ((Offer(A),), Accept(B), "not_your_offer"),
    ((), Accept(A), "not_offered"),
    ((Offer(A),), Decline(B, "bận"), "not_your_offer"),
    ((Offer(A),), Decline(A, "   "), "reason_required"),
    ((Offer(A),), Decline(A, "x" * 501), "reason_too_long"),
    ((Offer(A),), Offer(B), "not_routable"),
    ((Offer(A), Decline(A, "bận")), Offer(A), "already_asked"),
    ((), Offer(REQUESTER), "own_request"),
    ((Offer(A),), Answer(A), "not_accepted"),
    ((Offer(A), Accept(A)), Answer(B), "not_your_request"),
    ((Cancel(REQUESTER),), Answer(A), "not_accepted"),
    ((Offer(A), Accept(A), Cancel(REQUESTER)), Answer(A), "not_accepted"),
    ((Offer(A), Accept(A), Answer(A)), Cancel(REQUESTER), "finished"),
    ((), Cancel(A), "not_requester"),
    ((), Close(REQUESTER), "not_closable"),
    ((Offer(A), Accept(A), Answer(A)), DeadlinePassed(), "no_deadline"),
    ((Offer(A),), OfferExpired(B), "not_offered"),
]


@pytest.mark.parametrize(("before", "event", "code"), REFUSALS)
def test_invalid_transitions_are_refused_with_a_precise_code(before: tuple[Event, ...], event: Event,
                                                             code: str) -> None:
    state = run(*before)
    with pytest.raises(EscalationError) as refused:
        apply(state, event)
    assert refused.value.code == code


def test_the_refusal_names_the_state() -> None:
    with pytest.raises(EscalationError, match='state "cancelled"'):
        apply(run(Cancel(REQUESTER)), Answer(A))


@pytest.mark.parametrize(("urgency", "status_after"), [
    (Urgency.urgent, None),                # urgent: the deadline was to accept; accepted in time
    (Urgency.priority, Status.overdue),    # priority: the deadline is to answer
    (Urgency.routine, Status.overdue),
])
def test_the_deadline_after_an_accept_depends_on_urgency(urgency: Urgency, status_after: Status | None) -> None:
    accepted = run(Offer(A), Accept(A), urgency=urgency)
    if status_after is None:
        with pytest.raises(EscalationError) as refused:
            apply(accepted, DeadlinePassed())
        assert refused.value.code == "no_deadline"
    else:
        late = apply(accepted, DeadlinePassed())
        assert late.status is status_after
        assert apply(late, Answer(A)).status is Status.answered  # a late answer still lands


def test_an_overdue_request_without_a_specialist_can_be_closed_or_cancelled() -> None:
    late = run(Offer(A), DeadlinePassed())
    assert late.status is Status.overdue and late.offered_to is None
    assert apply(late, Close(REQUESTER)).status is Status.closed
    assert apply(late, Cancel(REQUESTER)).status is Status.cancelled


# ---- property: random event sequences never reach an invalid state ---------------------------------

STAFF = st.sampled_from([REQUESTER, A, B, C])
EVENTS = st.one_of(
    st.builds(Offer, STAFF), st.builds(Accept, STAFF),
    st.builds(Decline, STAFF, st.sampled_from(["", "bận", "ngoài chuyên môn"])),
    st.builds(OfferExpired, STAFF), st.builds(Answer, STAFF), st.just(DeadlinePassed()),
    st.builds(Cancel, STAFF), st.builds(Close, STAFF),
)


@settings(max_examples=400)
@given(st.sampled_from(list(Urgency)), st.lists(EVENTS, max_size=25))
def test_random_event_sequences_never_reach_an_invalid_state(urgency: Urgency, events: list[Event]) -> None:
    state = State(Status.requested, urgency, REQUESTER)
    for event in events:
        before = state
        try:
            state = apply(state, event)
        except EscalationError:
            assert state == before  # a refusal changes nothing
            continue
        assert invariant_violations(state) == []
        if before.status in (Status.cancelled, Status.closed):
            pytest.fail(f"{event} changed a finished request ({before.status})")
        if before.accepted_by is not None:
            assert state.accepted_by == before.accepted_by  # nobody takes over an accepted request


# ---- routing ------------------------------------------------------------------------------------------

DISTRICT, PROVINCE, CENTRAL, OTHER_DISTRICT = 100, 200, 300, 101
CHAIN = [DISTRICT, PROVINCE, CENTRAL]

# (on-duty specialists: (staff, facility, load)), already asked, expected next staff id or None
ROUTING: list[tuple[str, list[tuple[int, int, int]], set[int], int | None]] = [
    ("nearest level first", [(1, PROVINCE, 0), (2, DISTRICT, 5)], set(), 2),
    ("least loaded at that level", [(1, DISTRICT, 3), (2, DISTRICT, 1), (3, DISTRICT, 2)], set(), 2),
    ("ties go to the lower id (stable)", [(7, DISTRICT, 1), (4, DISTRICT, 1)], set(), 4),
    ("never someone already asked", [(1, DISTRICT, 0), (2, DISTRICT, 9)], {1}, 2),
    ("climb a level when exhausted", [(1, DISTRICT, 0), (2, PROVINCE, 4)], {1}, 2),
    ("climb two levels", [(1, DISTRICT, 0), (2, PROVINCE, 0), (3, CENTRAL, 0)], {1, 2}, 3),
    ("a sibling district is not above", [(1, OTHER_DISTRICT, 0)], set(), None),
    ("nobody on duty", [], set(), None),
    ("everyone asked", [(1, DISTRICT, 0), (2, PROVINCE, 0)], {1, 2}, None),
]


@pytest.mark.parametrize(("on_duty", "asked", "expected"), [r[1:] for r in ROUTING], ids=[r[0] for r in ROUTING])
def test_routing(on_duty: list[tuple[int, int, int]], asked: set[int], expected: int | None) -> None:
    chosen = next_candidate(candidates_above(CHAIN, on_duty), asked)
    assert (chosen.staff_id if chosen else None) == expected


def test_candidates_know_their_distance() -> None:
    assert candidates_above(CHAIN, [(1, CENTRAL, 2)]) == [Candidate(3, 2, 1, CENTRAL)]


def test_the_windows_are_configured_by_one_variable() -> None:
    from web.settings import ConfigError, Settings

    configured = Settings.from_env({"DONGHANH_ESCALATION_WINDOWS": "urgent=10m/2m, routine=2d/12h"})
    assert configured.escalation_windows == (("urgent", 600, 120), ("routine", 172800, 43200))
    for wrong in ("urgent=1m/2m", "soon=1m/1m", "urgent=10m", "urgent=x/1m"):
        with pytest.raises(ConfigError):
            Settings.from_env({"DONGHANH_ESCALATION_WINDOWS": wrong})
