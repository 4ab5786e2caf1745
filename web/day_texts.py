"""Strings of the consultation day around the call: arrival alerts on the queue page, the patient's check-in
answers shown to the doctor, the end of a call, and who the doctor is on the patient's page.

Marked with N_ so the catalog finds them; pages translate them with the request's language.
"""

from __future__ import annotations

from web.i18n import N_

# Why the suggested triage level is what it is: one label per care.triage reason code.
REASONS: dict[str, str] = {
    "chest_pain": N_("Chest pain"),
    "severe_breathlessness": N_("Severe breathlessness"),
    "low_spo2": N_("SpO2 below 94%"),
    "confusion": N_("Confusion"),
    "hypertensive_emergency": N_("Very high blood pressure with symptoms"),
    "one_sided_weakness": N_("One-sided weakness"),
    "fainting": N_("Fainting"),
    "hypertensive_urgency": N_("Blood pressure 180/110 or higher"),
    "borderline_spo2": N_("SpO2 94–95%"),
    "mild_breathlessness": N_("Short of breath when active"),
    "prolonged_fever": N_("Fever for 3 days or more"),
    "high_bp": N_("Blood pressure 160/100 or higher"),
    "key_group_with_symptoms": N_("Symptoms in a key group (pregnant, dialysis, chemotherapy, elderly alone)"),
    "elderly_with_symptoms": N_("Symptoms at 65 or older"),
    "has_symptoms": N_("Has symptoms"),
}

# The device check's connection test, as the patient saw it.
CONNECTION_VERDICTS: dict[str, str] = {
    "good": N_("good"),
    "weak": N_("weak: audio only is better"),
    "failed": N_("could not reach the server"),
}

# Strings the queue page's script shows, beyond texts.STAFF_JS.
QUEUE_JS: list[str] = [
    N_("New patient waiting ({level})"),
    N_("DANGER SIGNS: a patient is waiting ({level})"),
    N_("Patients waiting: {count}"),
    N_("Notifications are on."),
    N_("Notifications are blocked in this browser's settings."),
    N_("This browser cannot show notifications."),
    N_("Allow notifications"),
    N_("Alerts are off."),
    N_("{days} days ill"),
    N_("SpO2 {value}%"),
    N_("BP {systolic}/{diastolic}"),
    N_("connection: {verdict}"),
    N_("raised the triage level"),
    *CONNECTION_VERDICTS.values(),
]

# Strings the call page's script shows, beyond texts.STAFF_JS.
CALL_JS: list[str] = [
    N_("The note is not signed yet. Take the next patient anyway? Your draft is kept."),
    N_("Patients waiting: {count}"),
]

# Strings the patient page's script shows, beyond texts.PATIENT_JS.
PATIENT_JS: list[str] = [
    N_("You are talking with {name}, {facility}."),
    N_("Your doctor: {name}, {facility}."),
]
