"""Danger alerts as the sockets and the patient's page see them (the rows are in db/alerts.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from care.sms import MessageKind, compose
from db.alerts import DangerAlert


@dataclass(frozen=True)
class AlertOutcome:
    """What happened to a danger alert when it was raised: what the patient's page must say truthfully."""

    alert_id: uuid.UUID
    clinicians_online: int  # doctors/specialists serving the facility who were shown the alert at once
    on_call_texted: bool  # nobody was online and the on-call clinician was sent an SMS
    facility_phone: str | None  # the station's number, for the patient to call


def alert_message(alert: DangerAlert) -> dict[str, Any]:
    """The `alert` message shown to staff serving the facility until one of them acknowledges it."""
    return {"type": "alert", "alert": str(alert.id), "entry": str(alert.queue_entry_id),
            "level": f"NC{alert.triage_level}", "danger_signs": list(alert.danger_signs),
            "patient_name": alert.patient_name, "facility": alert.facility_name,
            "raised_at": alert.raised_at.isoformat(), "clinicians_online": alert.clinicians_online,
            "on_call_texted": alert.on_call_message_id is not None}


def on_call_text(alert: DangerAlert, staff_url: str) -> str:
    """The on-call SMS: facility, level and where to look; no patient name or number (an SMS goes through
    carriers and lies on a phone's lock screen; the clinician signs in to see who it is)."""
    return compose(MessageKind.danger_alert, "vi", facility=alert.facility_name, url=staff_url,
                   level=f"NC{alert.triage_level}").text
