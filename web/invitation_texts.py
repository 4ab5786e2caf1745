"""Labels for the invitation area's codes (services, statuses, message kinds, schedule marks, errors).

Marked with N_ so the catalog check finds them; pages translate them with the request's language.
"""

from __future__ import annotations

from web.i18n import N_

# Services an appointment can be booked with when no particular doctor is named.
SERVICES: dict[str, str] = {
    "general": N_("General consultation"),
    "hypertension": N_("Hypertension follow-up"),
    "diabetes": N_("Diabetes follow-up"),
    "tb": N_("TB treatment follow-up"),
    "antenatal": N_("Antenatal care"),
    "child_health": N_("Child health"),
}

INVITATION_KINDS: dict[str, str] = {
    "walk_in": N_("Now (walk-in queue)"),
    "appointment": N_("Appointment"),
}

INVITATION_STATUSES: dict[str, str] = {
    "active": N_("active"),
    "used": N_("used (checked in)"),
    "revoked": N_("cancelled"),
    "rescheduled": N_("moved to another time"),
}

MESSAGE_KINDS: dict[str, str] = {
    "invitation": N_("Invitation"),
    "reminder_day_before": N_("Reminder, day before"),
    "reminder_15_min": N_("Reminder, 15 minutes before"),
    "queue_near": N_("Doctor soon"),
    "rescheduled": N_("New time"),
    "revoked": N_("Cancellation"),
    "visit_summary": N_("Visit summary"),
    "no_show": N_("New link after a missed call"),
    "danger_alert": N_("Danger alert to the on-call doctor"),
    "escalation_offer": N_("Urgent opinion request to a specialist"),
}

MESSAGE_STATUSES: dict[str, str] = {
    "scheduled": N_("scheduled"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "delivered": N_("delivered"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
}

ATTENDANCE: dict[str, str] = {
    "upcoming": N_("upcoming"),
    "late": N_("late"),
    "no_show": N_("no-show"),
    "waiting": N_("in the waiting room"),
    "in_call": N_("in a call"),
    "done": N_("done"),
    "cancelled": N_("cancelled"),
}

# Refusals shown next to a form field, by error code.
ERRORS: dict[str, str] = {
    "slot_in_past": N_("This time is in the past. Choose a later time."),
    "slot_taken": N_("This doctor or service already has an appointment at this time. Choose another time."),
    "bad_phone": N_("Enter a Vietnamese mobile number, e.g. 0912 345 678 or +84 912 345 678."),
    "bad_date": N_("Enter a date and a time."),
    "need_doctor_or_service": N_("Choose a doctor or a service."),
    "bad_doctor": N_("Choose a doctor from the list."),
    "bad_service": N_("Choose a service from the list."),
    "no_phone": N_("This invitation has no phone number. Give the patient the link or the QR code."),
    "not_active": N_("This invitation is no longer active."),
    "already_claimed": N_("Another doctor has just taken this patient."),
    "doctor_busy": N_("You already have an active consultation. End it first."),
    "not_found": N_("This patient is no longer in the waiting room."),
}
