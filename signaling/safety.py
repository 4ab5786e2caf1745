"""Danger alerts on the sockets (the rows are in db/alerts.py): raised at check-in, shown to every staff
member serving the facility until one acknowledges them, texted to the on-call clinician when no clinician
serving the facility is online, and told truthfully to the patient."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from care import access
from care.access import Action
from care.sms import MessageKind, compose
from db import alerts as alerts_db
from db import facilities as facilities_db
from db import queue as queue_db
from db.alerts import DangerAlert
from signaling import protocol as p
from signaling.errors import SignalingError
from signaling.rooms import Client

if TYPE_CHECKING:
    from signaling.hub import Hub

log = logging.getLogger(__name__)


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


async def open_alerts(con: asyncpg.Connection, role: str, staff_facility_id: int) -> list[DangerAlert]:
    """Alerts nobody has acknowledged yet in a staff member's scope (sent after `welcome`), for the roles
    that see the queue with names and danger signs (care/access.py: read_queue)."""
    if not access.may_ever(role, Action.read_queue):
        return []
    return await alerts_db.open_for(con, staff_facility_id)


async def open_alerts_many(con: asyncpg.Connection,
                           staff: Sequence[tuple[str, int]]) -> list[list[DangerAlert]]:
    """`open_alerts` for many staff members (role, facility id) in one statement, in their order."""
    seeing = {facility for role, facility in staff if access.may_ever(role, Action.read_queue)}
    alerts = await alerts_db.open_for_many(con, sorted(seeing)) if seeing else {}
    return [alerts[facility] if access.may_ever(role, Action.read_queue) else [] for role, facility in staff]


def _sees_alerts(client: Client, facility_id: int, parents: dict[int, int | None]) -> bool:
    return client.staff is not None and client.greeted and access.allows(
        client.staff.role, Action.read_queue, access.relation_of(client.staff.facility_id, facility_id, parents))


async def clinicians_online(hub: Hub, facility_id: int) -> int:
    """Doctors and specialists serving `facility_id` with a socket open, on any process (one per person)."""
    async with hub.pool.acquire() as con:
        parents = await facilities_db.parents(con)
    return hub.clinicians_online(facility_id, parents)


async def raise_danger_alert(hub: Hub, entry: queue_db.QueueEntry, *, now: datetime,
                             staff_url: str) -> AlertOutcome:
    """A patient checked in with danger signs: store the alert, show it to every staff member serving the
    facility (now, and when they connect later), and text the on-call clinician when no clinician serving
    it is online. Returns what the patient's page should say."""
    online = await clinicians_online(hub, entry.facility_id)
    async with hub.pool.acquire() as con:
        alert = await alerts_db.raise_alert(
            con, entry_id=entry.id, patient_id=entry.patient_id, facility_id=entry.facility_id,
            level=entry.triage_level, danger_signs=entry.danger_signs, clinicians_online=online)
        contact = await alerts_db.on_call(con, entry.facility_id)
        if online == 0 and contact.phone is not None:
            await alerts_db.text_on_call(con, alert, to_phone=contact.phone, body=on_call_text(alert, staff_url),
                                         now=now)
            alert = await alerts_db.get(con, alert.id) or alert
        elif online == 0:
            log.warning("danger alert with no clinician online and no on-call contact",
                        extra={"alert": str(alert.id), "facility": entry.facility_id})
    hub.queue_changed({**alert_message(alert), "facility_id": alert.facility_id})
    return AlertOutcome(alert.id, online, alert.on_call_message_id is not None, contact.facility_phone)


async def ack_alert(hub: Hub, client: Client, msg: p.AckAlert) -> None:
    """`ack_alert`: the sender takes the alert in hand; every other screen serving the facility drops it."""
    if client.staff is None or not access.may_ever(client.staff.role, Action.read_queue):
        raise SignalingError("forbidden", "only doctors, specialists and nurses acknowledge danger alerts")
    async with hub.pool.acquire() as con:
        alert = await alerts_db.acknowledge(con, msg.alert, client.staff.staff_id, client.staff.facility_id)
        parents = await facilities_db.parents(con)
    out = {"type": "alert_acked", "alert": str(alert.id), "entry": str(alert.queue_entry_id),
           "by": client.staff.name}
    await client.send({**out, "id": msg.id})
    for c in list(hub.clients):
        if c is not client and _sees_alerts(c, alert.facility_id, parents):
            await c.send(out)
