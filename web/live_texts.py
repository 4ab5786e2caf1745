"""Strings of the call with invited staff (issue 9 point 4): who is in the call, who left, the specialist's view."""

from __future__ import annotations

from web.i18n import N_

# Shown by call.js on every call page (patient, doctor, invited specialist).
CALL_JS: list[str] = [
    N_("In the call: {names}"),
    N_("{name} left the call."),
    N_("{name} was invited into the call."),
]

# Shown by specialist_call.js (an invited specialist's view of the call), beyond texts.STAFF_JS.
SPECIALIST_JS: list[str] = [
    N_("The doctor has left the call. Waiting for them to come back…"),
    N_("Nobody else is in the call yet…"),
    N_("You left the call. The others carry on."),
    N_("You are no longer invited into this call."),
    N_("Doctor"),
]
