"""Staff messages about a patient (issues 10 and 11, point 5): the rules of one message, pure.

A specialist (or any staff member allowed to see the patient: care/access.py `write_care_message`) writes
about a patient to the patient's station — its doctors, specialists and nurses, who read and answer in the
same thread. A thread may say where it came from: the register (`htn`, `tb`) and the worklist reason the
row showed (care.hypertension.Reason codes, care.tb.Flag values). Storage: db/threads.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from care.hypertension import Reason
from care.tb import Flag

BODY_MAX = 2000  # a message, not a note: the signed review (db/reviews.py) takes up to 4000


class Context(StrEnum):
    htn = "htn"  # the hypertension register (its worklist, a chart)
    tb = "tb"    # the TB register (its worklist, a case)


REASONS: dict[Context, frozenset[str]] = {
    Context.htn: frozenset(r.code for r in Reason),
    Context.tb: frozenset(f.value for f in Flag),
}


class ThreadError(Exception):
    """A message we refuse, with a stable code (docs/protocol.md) and what was wrong."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Topic:
    """Where a new thread comes from: the register and the worklist reason, both optional."""

    context: Context | None = None
    reason: str | None = None


def message_body(text: str) -> str:
    """The message as stored (stripped); `message_required` when empty, `message_too_long` over 2000."""
    text = text.strip()
    if not text:
        raise ThreadError("message_required", "write the message", "text")
    if len(text) > BODY_MAX:
        raise ThreadError("message_too_long", f"the message is {len(text)} characters long; at most {BODY_MAX}",
                          "text")
    return text


def topic(context: str | None, reason: str | None) -> Topic:
    """A thread's context and reason: `unknown_context` for a register we do not have, `unknown_reason`
    for a reason that register's worklist does not give (or a reason without a context)."""
    if not context:
        if reason:
            raise ThreadError("unknown_reason", "a reason needs its context (htn or tb)", "reason")
        return Topic()
    try:
        known = Context(context)
    except ValueError:
        raise ThreadError("unknown_context", f"context must be one of {', '.join(Context)}", "context") from None
    if reason and reason not in REASONS[known]:
        raise ThreadError("unknown_reason", f"{reason[:40]!r} is not a {known.value} worklist reason: "
                                            f"{', '.join(sorted(REASONS[known]))}", "reason")
    return Topic(known, reason or None)
