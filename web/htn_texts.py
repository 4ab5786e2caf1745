"""User-facing text of the hypertension register (web/translations/*/LC_MESSAGES/htn.po)."""

from __future__ import annotations

from care.hypertension import Reason
from web.i18n import N_

REASONS: dict[Reason, str] = {
    Reason.URGENT: N_("Latest BP ≥ 180/110: review today"),
    Reason.MANY_DRUGS: N_("On 3 or more drugs and still uncontrolled"),
    Reason.UNCONTROLLED_TWICE: N_("Uncontrolled at two visits in a row"),
    Reason.OVERDUE: N_("Overdue: the scheduled visit has passed"),
}

RISK_FACTORS: dict[str, str] = {
    "diabetes": N_("Diabetes"),
    "cvd": N_("Cardiovascular disease"),
    "ckd": N_("Chronic kidney disease"),
    "smoking": N_("Smoking"),
}

CALL_RESULTS: dict[str, str] = {
    "agreed": N_("Agreed to visit"),
    "remind_later": N_("Remind later (7 days)"),
    "died": N_("Remove: died"),
    "moved": N_("Remove: moved"),
    "transferred": N_("Remove: transferred"),
    "refused": N_("Remove: refused"),
    "wrong_number": N_("Remove: wrong number"),
    "sms": N_("SMS reminder sent"),
}

COLUMNS: dict[str, str] = {
    "registered": N_("Registered"),
    "under_care": N_("Under care"),
    "lost_to_follow_up": N_("Lost to follow-up"),
    "dead": N_("Died"),
    "denominator": N_("Denominator"),
    "controlled": N_("Controlled"),
    "uncontrolled": N_("Uncontrolled"),
    "missed_visit": N_("Missed visit"),
    "visited_no_bp": N_("Visited, no BP"),
}

REMINDER_SMS = N_("Your blood pressure check at the health station is overdue. Please come by this week.")

PATIENT_JS = [
    N_("Sent. Thank you."),
    N_("Your blood pressure is very high. Call the health station today, or 115 if you feel unwell."),
    N_("Could not send. Check the numbers and try again."),
]
