"""Strings of specialist escalation (issue 9): urgency and status labels, timeline entries, and what the
inbox, request and ask pages' scripts say. Marked with N_ so the catalog finds them."""

from __future__ import annotations

from web.i18n import N_

URGENCIES: dict[str, str] = {
    "urgent": N_("Urgent: a specialist accepts within 15 minutes and joins live"),
    "priority": N_("Priority: answered within 4 hours"),
    "routine": N_("Routine: answered within 3 days"),
}

STATUSES: dict[str, str] = {
    "requested": N_("Looking for a specialist"),
    "offered": N_("Offered to a specialist"),
    "accepted": N_("Accepted"),
    "answered": N_("Answered"),
    "closed": N_("Closed"),
    "overdue": N_("Overdue"),
    "cancelled": N_("Cancelled"),
}

EVENTS: dict[str, str] = {
    "requested": N_("Request sent"),
    "offered": N_("Offered to {name}"),
    "rerouted": N_("Re-routed to {name}"),
    "reoffered": N_("Offered again to {name} (nobody else has answered)"),
    "declined": N_("{name} declined: {reason}"),
    "offer_expired": N_("{name} did not answer in time"),
    "no_candidate": N_("No specialist on duty yet; it will be offered as soon as one is"),
    "accepted": N_("Accepted by {name}"),
    "answered": N_("Opinion signed by {name}"),
    "message": N_("New message from {name}"),
    "overdue": N_("The deadline passed without an answer"),
    "cancelled": N_("Cancelled by the requester"),
    "closed": N_("Closed by the requester"),
    "referred": N_("Referral sent"),
    "referral_acknowledged": N_("Referral acknowledged by the receiving facility"),
    "referral_arrived": N_("The patient arrived at the receiving facility"),
}

REFERRAL_STATUSES: dict[str, str] = {
    "sent": N_("Sent"),
    "acknowledged": N_("Acknowledged"),
    "arrived": N_("Arrived"),
    "cancelled": N_("Cancelled"),
}

COMMON_JS: list[str] = [
    *URGENCIES.values(), *STATUSES.values(), *EVENTS.values(),
    N_("Connected"), N_("Connecting…"), N_("Reconnecting…"), N_("Something went wrong. Please try again."),
    N_("due {time}"),
]

INBOX_JS: list[str] = COMMON_JS + [
    N_("New request for your opinion"), N_("A specialist answered your request"),
    N_("Nothing waiting for you."), N_("No requests yet."), N_("Open"), N_("On duty"), N_("Away"),
    N_("Urgent request not accepted in time: transfer the patient or call 115."),
]

DETAIL_JS: list[str] = COMMON_JS + [
    N_("Say why you decline (the requester reads it)."), N_("Accepted. Write your opinion below."),
    N_("Urgent request not accepted in time: transfer the patient or call 115."),
    N_("The opinion is signed."), N_("Sent."), N_("This request is no longer offered to you."),
    N_("Another specialist has this request now."), N_("Enhance"), *REFERRAL_STATUSES.values(),
]

ASK_JS: list[str] = [
    N_("Sent. You will be told here when a specialist accepts."), N_("Something went wrong. Please try again."),
    N_("Write the question for the specialist."), N_("Record the patient's consent first."),
]

DASHBOARD_JS: list[str] = [
    N_("Waiting patients by level"), N_("Calls in progress"), N_("Open requests for an opinion"),
    N_("Referrals in transit"), N_("Specialists on duty"), N_("Last 30 days, per urgency"),
    N_("Nobody is waiting."), N_("No call in progress."), N_("No open request for an opinion."),
    N_("No referral in transit."), N_("No specialist is on duty now."), N_("No request in the last 30 days."),
]
