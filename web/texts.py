"""User-facing labels for codes (symptoms, danger signs, errors) and the strings page scripts need.

Each is marked with N_ so the catalog test finds it; pages translate it with the request's language.
"""

from __future__ import annotations

from care.triage import KeyGroup, Symptom
from db.no_show import NoShowReason
from web.i18n import N_

LINK_ERRORS: dict[str, str] = {
    "link_invalid": N_("This link is not valid. Please check the message you received, or call your health station."),
    "link_expired": N_("This link has expired. Please ask your health station for a new one."),
    "link_revoked": N_("This link was cancelled by your health station. Please ask them for a new one."),
    "link_finished": N_("This consultation has ended. Thank you. If you need more help, contact your health station."),
}

SYMPTOMS: dict[Symptom, str] = {
    Symptom.fever: N_("Fever"),
    Symptom.cough: N_("Cough"),
    Symptom.sore_throat: N_("Sore throat"),
    Symptom.runny_nose: N_("Runny nose"),
    Symptom.headache: N_("Headache"),
    Symptom.fatigue: N_("Tiredness"),
    Symptom.diarrhoea: N_("Diarrhoea"),
    Symptom.vomiting: N_("Vomiting"),
    Symptom.loss_of_smell: N_("Loss of smell or taste"),
    Symptom.mild_breathlessness: N_("Short of breath when active"),
    Symptom.severe_breathlessness: N_("Very short of breath, even at rest"),
    Symptom.chest_pain: N_("Chest pain or pressure"),
    Symptom.confusion: N_("Confusion or very drowsy"),
    Symptom.dizziness: N_("Dizziness"),
    Symptom.blurred_vision: N_("Blurred vision"),
    Symptom.one_sided_weakness: N_("Weakness or numbness on one side"),
    Symptom.fainting: N_("Fainting"),
    Symptom.bleeding: N_("Bleeding"),
    Symptom.other: N_("Something else"),
}

KEY_GROUPS: dict[KeyGroup, str] = {
    KeyGroup.elderly_alone: N_("Elderly, lives alone"),
    KeyGroup.pregnant: N_("Pregnant"),
    KeyGroup.dialysis: N_("Dialysis"),
    KeyGroup.chemotherapy: N_("Chemotherapy"),
    KeyGroup.hypertension: N_("Hypertension"),
    KeyGroup.diabetes: N_("Diabetes"),
    KeyGroup.tb: N_("TB on treatment"),
}

DANGER_SIGNS: dict[str, str] = {
    "chest_pain": N_("Chest pain"),
    "severe_breathlessness": N_("Severe breathlessness"),
    "low_spo2": N_("SpO2 below 94%"),
    "confusion": N_("Confusion"),
    "hypertensive_emergency": N_("Very high blood pressure with symptoms"),
    "one_sided_weakness": N_("One-sided weakness"),
    "fainting": N_("Fainting"),
}

NO_SHOW_REASONS: dict[NoShowReason, str] = {
    NoShowReason.never_joined: N_("Never came to the call"),
    NoShowReason.left: N_("Left and did not come back"),
    NoShowReason.no_answer: N_("Did not answer the phone"),
}

SEXES: dict[str, str] = {"female": N_("female"), "male": N_("male"), "other": N_("other")}

# Strings the patient page's script shows (looked up by their English text).
PATIENT_JS: list[str] = [
    N_("Connecting…"),
    N_("Connected"),
    N_("Reconnecting…"),
    N_("Camera and microphone work."),
    N_("Camera or microphone permission was denied. Allow it in your browser settings, or continue with audio only."),
    N_("No camera found. You can continue with audio only."),
    N_("Your browser cannot make video calls. Please open the link in Chrome."),
    N_("You are number {position} in the queue."),
    N_("Expected wait: about {minutes} min."),
    N_("You are next."),
    N_("No doctor is online right now. Please keep this page open; we will call you."),
    N_("The doctor is ready. Joining the call…"),
    N_("Waiting for the doctor to join…"),
    N_("The doctor has left the call. Please wait…"),
    N_("The doctor was disconnected. You are back at the front of the queue."),
    N_("The doctor's connection dropped. You keep your place: if the doctor is not back within {minutes} min, you go back to the front of the queue."),
    N_("Leave the call? The doctor can call you back while this page stays open."),
    N_("You left the call. Keep this page open: the doctor can call you back."),
    N_("The doctor could not reach you, so this consultation was closed. We sent you a new link by SMS."),
    N_("The consultation has ended. Thank you."),
    N_("This page was opened in another tab or device."),
    N_("Call quality: good"),
    N_("Call quality: fair"),
    N_("Call quality: poor — try audio only"),
    N_("Something went wrong. Please try again."),
    N_("Please check the numbers you entered."),
    N_("Sending…"),
    N_("Doctor"),
    N_("You"),
    N_("Camera off"),
    N_("Muted"),
    N_("Testing the connection…"),
    N_("Connection: {rtt} ms round trip, {loss}% lost, {kbps} kbps sent. Video should work."),
    N_("Connection: {rtt} ms round trip, {loss}% lost, {kbps} kbps sent. The network is weak: audio only is better."),
    N_("The connection test could not reach the server. The call may still work; you can try audio only."),
    N_("The server is busy testing other connections. You can continue without the test."),
]

# Strings the staff pages' scripts show.
STAFF_JS: list[str] = [
    N_("Connecting…"),
    N_("Connected"),
    N_("Reconnecting…"),
    N_("Nobody is waiting."),
    N_("waiting {minutes} min"),
    N_("back in queue"),
    N_("audio only"),
    N_("offline"),
    N_("offline {minutes} min"),
    N_("I take this"),
    N_("Claim"),
    N_("DANGER SIGNS — call or advise 115 now"),
    N_("Patient is not in the call yet…"),
    N_("Patient left the call. Waiting for them to come back…"),
    N_("The consultation has ended."),
    N_("Draft saved {time}"),
    N_("Saving draft…"),
    N_("Could not save the draft. Check your connection."),
    N_("Signed version {version}"),
    N_("Someone signed a newer version. Reload to see it before editing."),
    N_("Call quality: good"),
    N_("Call quality: fair"),
    N_("Call quality: poor — try audio only"),
    N_("This page was opened in another tab."),
    N_("The patient was put back in the queue because you were disconnected."),
    N_("Patient"),
    N_("You"),
    N_("Camera off"),
    N_("Muted"),
    N_("No code or name matches."),
    N_("End the consultation for both of you?"),
    N_("You already have an active consultation. End it first."),
    N_("Another doctor has just taken this patient."),
    N_("Please check this field: {field}"),
    N_("Change triage level for {name}"),
    N_("Nothing to share yet: add advice, medicines, a follow-up date or warning signs."),
    N_("SMS to {phone}: {chars} characters, {segments} SMS"),
    N_("No SMS: the patient has no mobile number."),
    N_("No SMS will be sent."),
    N_("The patient can see the summary."),
    N_("The patient left the call {minutes} min ago."),
    N_("The patient's page has been closed for {minutes} min."),
    N_("The patient has not come to the call yet ({minutes} min)."),
    N_("Calling the patient's page…"),
    N_("The patient's page is closed: call their phone or mark them as a no-show."),
    N_("No phone number is recorded for this patient."),
    N_("Mark this patient as a no-show? The call closes and they are sent a new link by SMS."),
    N_("Recorded as a no-show. The patient was sent a new link by SMS."),
    N_("Recorded as a no-show. The patient has no mobile number: no SMS was sent."),
    N_("You have been signed out. Taking you to the sign-in page…"),
    N_("Something went wrong. Please try again."),
    N_("Please check the numbers you entered."),
]
