"""The rules of a staff message about a patient (care/threads.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.threads import BODY_MAX, Context, ThreadError, Topic, message_body, topic


def test_message_is_stripped() -> None:
    assert message_body("  Tăng amlodipin 10 mg.\n") == "Tăng amlodipin 10 mg."


@pytest.mark.parametrize(("text", "code"), [("", "message_required"), (" \n\t", "message_required"),
                                             ("x" * (BODY_MAX + 1), "message_too_long")])
def test_empty_or_too_long_message_is_refused_with_its_code(text: str, code: str) -> None:
    with pytest.raises(ThreadError) as refused:
        message_body(text)
    assert (refused.value.code, refused.value.field) == (code, "text")


def test_message_of_exactly_the_limit_is_kept() -> None:
    assert len(message_body("x" * BODY_MAX)) == BODY_MAX


@given(st.text(max_size=BODY_MAX + 50))
def test_any_text_is_kept_or_refused_never_anything_else(text: str) -> None:
    try:
        kept = message_body(text)
    except ThreadError as exc:
        assert exc.code in ("message_required", "message_too_long")
    else:
        assert kept and kept == text.strip() and len(kept) <= BODY_MAX


def test_topics_of_both_worklists() -> None:
    assert topic(None, None) == Topic()
    assert topic("", "") == Topic()
    assert topic("htn", "urgent") == Topic(Context.htn, "urgent")
    assert topic("htn", "uncontrolled_twice") == Topic(Context.htn, "uncontrolled_twice")
    assert topic("tb", "missed_doses") == Topic(Context.tb, "missed_doses")
    assert topic("tb", None) == Topic(Context.tb)


@pytest.mark.parametrize(("context", "reason", "code"), [
    ("diabetes", None, "unknown_context"), ("htn", "missed_doses", "unknown_reason"),
    ("tb", "urgent", "unknown_reason"), (None, "urgent", "unknown_reason")])
def test_unknown_context_or_reason_is_refused(context: str | None, reason: str | None, code: str) -> None:
    with pytest.raises(ThreadError) as refused:
        topic(context, reason)
    assert refused.value.code == code


@pytest.mark.parametrize(("role", "relation", "allowed"), [
    ("specialist", "below", True),   # the district specialist writes to a commune below
    ("doctor", "own", True),         # the station's doctor reads and replies
    ("nurse", "own", True),          # so does its nurse
    ("doctor", "sibling", False),    # another station's doctor: not their patient
    ("specialist", "above", False),
    ("coordinator", "own", False),   # counts, not clinical text
    ("admin", "own", False),
    ("patient", "own", False),
])
def test_access_table_rows_for_care_messages(role: str, relation: str, allowed: bool) -> None:
    from care.access import Action, Relation, decide

    for action in (Action.write_care_message, Action.read_care_messages):
        assert decide(role, action, Relation(relation)).allowed is allowed
