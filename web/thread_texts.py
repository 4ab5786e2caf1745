"""Strings of the staff messages about a patient (issues 10/11 point 5): the registers a thread comes from,
the worklist reasons it may carry, the refusals, and what the pages' scripts say. Marked with N_."""

from __future__ import annotations

from functools import cache

from care.hypertension import Reason
from care.threads import Context
from web.htn_texts import REASONS as HTN_REASONS
from web.i18n import N_

CONTEXTS: dict[str, str] = {
    Context.htn.value: N_("Hypertension"),
    Context.tb.value: N_("TB"),
}


@cache
def reasons() -> dict[tuple[str, str], str]:
    """(context, reason code) → the worklist's own words for it."""
    from web.tb_routes import FLAG_REASONS  # here: tb_routes imports the staff pages, which import this module

    return {**{(Context.htn.value, r.code): HTN_REASONS[r] for r in Reason},
            **{(Context.tb.value, code): text for code, text in FLAG_REASONS.items()}}

ERRORS: dict[str, str] = {
    "message_required": N_("Write the message."),
    "message_too_long": N_("The message is too long: at most 2000 characters."),
    "unknown_context": N_("Unknown register: hypertension or TB."),
    "unknown_reason": N_("That reason is not on this register's worklist."),
}

JS: list[str] = [
    N_("Write the message."),
    N_("The message is too long: at most 2000 characters."),
    N_("Sent to the station's staff."),
    N_("Open the conversation"),
    N_("Sending…"),
    N_("Could not send: {error}"),
    N_("No messages yet."),
    N_("{count} unread"),
    N_("Connected"),
    N_("Connecting…"),
    N_("Reconnecting…"),
    N_("New message about a patient"),
    N_("you"),
    N_("Message the station about {name}"),
]
