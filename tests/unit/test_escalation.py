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
    OnDuty,
    State,
    Status,
    Urgency,
    apply,
    candidates,
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


def test_one_whose_offer_expired_may_be_offered_again_and_it_counts_a_hop() -> None:
    state = run(Offer(A), OfferExpired(A), Offer(B), Decline(B, "bận"), Offer(A), Accept(A))
    assert state.status is Status.accepted and state.accepted_by == A
    assert state.hops == 2 and state.asked == {A, B} and state.declined == {B}


# (events before, the refused event, code)
REFUSALS: list[tuple[tuple[Event, ...], Event, str]] = [
    ((Offer(A), Accept(A)), Accept(A), "already_accepted"),
    ((Offer(A),), Accept(B), "not_your_offer"),
    ((), Accept(A), "not_offered"),
    ((Offer(A),), Decline(B, "bận"), "not_your_offer"),
    ((Offer(A),), Decline(A, "   "), "reason_required"),
    ((Offer(A),), Decline(A, "x" * 501), "reason_too_long"),
    ((Offer(A),), Offer(B), "not_routable"),
    ((Offer(A), Decline(A, "bận")), Offer(A), "declined_before"),
    ((Offer(A), Decline(A, "bận"), Offer(B), OfferExpired(B)), Offer(A), "declined_before"),
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
        if isinstance(event, Offer):  # every offer after the first, re-offers included, is one hop
            assert state.hops == before.hops + (1 if before.asked else 0)
            assert event.staff_id not in before.declined
        assert before.declined <= state.declined  # a decline is never forgotten


# ---- routing ------------------------------------------------------------------------------------------

# province P ← districts D1 (the requester's), D2; communes C1 (the requester's), C2 under D1, C3 under D2;
# central Z above P. Another tree: province Q ← district D9.
Z, P, D1, D2, C1, C2, C3, Q, D9 = 300, 200, 100, 101, 10, 11, 12, 400, 401
PATHS = {Z: [Z], P: [P, Z], D1: [D1, P, Z], D2: [D2, P, Z], C1: [C1, D1, P, Z], C2: [C2, D1, P, Z],
         C3: [C3, D2, P, Z], Q: [Q], D9: [D9, Q]}
REQUESTER_PATH = PATHS[C1]


def duty(*specialists: tuple[int, int, int]) -> list[OnDuty]:
    """(staff, facility, load) → OnDuty with the facility's path."""
    return [OnDuty(staff, PATHS[facility], load) for staff, facility, load in specialists]


# (name, on duty (staff, facility, load), times offered so far, declined, lateral, reoffer, expected next)
ROUTING: list[tuple[str, list[tuple[int, int, int]], dict[int, int], set[int], bool, bool, int | None]] = [
    ("nearest level first", [(1, P, 0), (2, D1, 5)], {}, set(), True, True, 2),
    ("least loaded at that level", [(1, D1, 3), (2, D1, 1), (3, D1, 2)], {}, set(), True, True, 2),
    ("ties go to the lower id (stable)", [(7, D1, 1), (4, D1, 1)], {}, set(), True, True, 4),
    ("not someone already asked while others are left", [(1, D1, 0), (2, D1, 9)], {1: 1}, set(), True, True, 2),
    ("climb a level when exhausted", [(1, D1, 0), (2, P, 4)], {1: 1}, set(), True, True, 2),
    ("climb two levels", [(1, D1, 0), (2, P, 0), (3, Z, 0)], {1: 1, 2: 1}, set(), True, True, 3),
    ("above before elsewhere, however near", [(1, C2, 0), (2, D2, 0), (3, Z, 9)], {}, set(), True, True, 3),
    ("chain exhausted: a sibling district", [(1, D1, 0), (2, D2, 5)], {1: 1}, set(), True, True, 2),
    ("elsewhere: nearest in the tree first", [(1, D1, 0), (2, C3, 0), (3, D2, 9)], {1: 1}, set(), True, True, 3),
    ("elsewhere: a sibling commune before another district", [(1, C2, 3), (2, D2, 0)], {}, set(), True, True, 1),
    ("elsewhere: least loaded at the same distance", [(2, C3, 4), (3, D2, 0), (4, D2, 1)], {}, set(),
     True, True, 3),
    ("another tree is never a candidate", [(1, D9, 0), (2, Q, 0)], {}, set(), True, True, None),
    ("without lateral routing a sibling district is not a candidate", [(1, D2, 0)], {}, set(), False, True,
     None),
    ("everyone asked once: again to one whose offer expired", [(1, D1, 0), (2, P, 0)], {1: 1, 2: 1}, set(),
     True, True, 1),
    ("the re-offer round keeps the order: the less often asked first", [(1, D1, 0), (2, P, 0)], {1: 2, 2: 1},
     set(), True, True, 2),
    ("never again to one who declined", [(1, D1, 0), (2, P, 0)], {1: 1, 2: 1}, {1}, True, True, 2),
    ("a lone specialist whose offer expired is asked again", [(1, P, 0)], {1: 3}, set(), True, True, 1),
    ("everyone declined: nobody", [(1, D1, 0), (2, P, 0)], {1: 1, 2: 1}, {1, 2}, True, True, None),
    ("without re-offers: nobody once everyone was asked", [(1, D1, 0), (2, P, 0)], {1: 1, 2: 1}, set(),
     True, False, None),
    ("someone new on duty before any re-offer", [(1, D1, 0), (2, D2, 9)], {1: 1}, set(), True, True, 2),
    ("nobody on duty", [], {}, set(), True, True, None),
]


@pytest.mark.parametrize(("on_duty", "offered", "declined", "lateral", "reoffer", "expected"),
                         [r[1:] for r in ROUTING], ids=[r[0] for r in ROUTING])
def test_routing(on_duty: list[tuple[int, int, int]], offered: dict[int, int], declined: set[int], lateral: bool,
                 reoffer: bool, expected: int | None) -> None:
    found = candidates(REQUESTER_PATH, duty(*on_duty), lateral=lateral)
    chosen = next_candidate(found, offered, declined, reoffer=reoffer)
    assert (chosen.staff_id if chosen else None) == expected


def test_candidates_know_where_they_are_and_how_far() -> None:
    found = candidates(REQUESTER_PATH, duty((1, Z, 2), (2, D2, 0), (3, C3, 1), (4, C1, 0)))
    assert sorted(found) == [Candidate(0, 3, 2, 1, Z), Candidate(1, 0, 0, 4, C1), Candidate(1, 3, 0, 2, D2),
                             Candidate(1, 4, 1, 3, C3)]
    assert [c.where.value for c in sorted(found)] == ["above", "elsewhere", "elsewhere", "elsewhere"]


def test_lateral_and_reoffer_are_on_by_default_for_every_urgency() -> None:
    assert all(p.lateral and p.reoffer for p in DEFAULT_POLICIES.values())


def test_the_windows_are_configured_by_one_variable() -> None:
    from web.settings import ConfigError, Settings

    configured = Settings.from_env({"DONGHANH_ESCALATION_WINDOWS": "urgent=10m/2m, routine=2d/12h"})
    assert configured.escalation_windows == (("urgent", 600, 120), ("routine", 172800, 43200))
    for wrong in ("urgent=1m/2m", "soon=1m/1m", "urgent=10m", "urgent=x/1m"):
        with pytest.raises(ConfigError):
            Settings.from_env({"DONGHANH_ESCALATION_WINDOWS": wrong})
