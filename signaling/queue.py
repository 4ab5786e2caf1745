"""Live queue views: each waiting patient's place and expected wait, each doctor's list.

Changes are coalesced: many joins or claims within a few milliseconds cause one broadcast.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from care import access
from care.appointments import FACILITY_TZ
from care.triage import TriageLevel, evidence
from db import queue as queue_db
from signaling.protocol import encode

# The longest list sent to a doctor's screen; the total is sent too.
MAX_LISTED = 200
# No-shows stay on the station's screen (with their reason) this long.
NO_SHOWS_SHOWN = timedelta(hours=12)


def serves(staff_facility: int, patient_facility: int, parents: Mapping[int, int | None]) -> bool:
    """A staff member serves patients of their own facility and of every facility below it (the scope of
    care/access.py, computed in memory)."""
    return access.in_scope(staff_facility, patient_facility, parents)


def expected_wait_s(place: int, doctors_online: int, mean_consultation_s: float) -> int | None:
    """Seconds until a doctor is likely free for the patient at `place` (1 = next); None with no doctor online.

    Each online doctor sees one patient per mean consultation length; the next patient waits for
    the first free doctor, which we count as immediate.
    """
    if doctors_online <= 0:
        return None
    rounds = (place - 1) // doctors_online
    return int(math.ceil(rounds * mean_consultation_s))


def level_name(rank: int) -> str:
    return f"NC{rank}"


def answers_view(checkin: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the patient said at check-in, for the doctor's screens, with `highlight`: the answers that raised
    the suggested level (answer key → "danger" or "raised", see `care.triage.evidence`). Entries queued
    without a check-in form (older rows, other paths) show no answers."""
    c = checkin or {}
    symptoms = [s for s in c.get("symptoms") or [] if isinstance(s, str)]
    reasons = [r for r in c.get("reasons") or [] if isinstance(r, str)]
    return {"symptoms": symptoms, "days_ill": c.get("days_ill"), "spo2": c.get("spo2"),
            "systolic": c.get("systolic"), "diastolic": c.get("diastolic"),
            "connection_test": c.get("connection_test"), "reasons": reasons,
            "highlight": evidence(reasons, symptoms)}


def entry_view(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    """What a doctor's queue screen shows for one waiting patient. `online`: a page of theirs is open
    (PostgreSQL's `left_at`, so every process agrees); `left_at`: since when it is not."""
    level = TriageLevel(level_name(row["triage_level"]))
    birth_year = row["birth_year"]
    return {
        "entry": str(row["id"]),
        "level": level.value,
        "colour": level.colour,
        "danger_signs": list(row["danger_signs"]),
        "reason": row["reason"],
        "arrived_at": row["arrived_at"].isoformat(),
        "waited_s": int((now - row["arrived_at"]).total_seconds()),
        "requeued": row["requeued_at"] is not None,
        "audio_only": row["audio_only"],
        "checkin": answers_view(row["checkin"]),
        "facility": row["facility_name"],
        "online": row["left_at"] is None,
        "left_at": row["left_at"].isoformat() if row["left_at"] else None,
        "patient": {
            "id": row["patient_id"],
            "name": row["patient_name"],
            "sex": row["sex"],
            "age": datetime.now(FACILITY_TZ).year - birth_year if birth_year else None,
            "key_groups": list(row["key_groups"]),
        },
    }


def no_show_view(row: asyncpg.Record) -> dict[str, Any]:
    """A patient marked no-show: kept on the station's screen with the reason."""
    return {"entry": str(row["id"]), "level": level_name(row["triage_level"]),
            "danger_signs": list(row["danger_signs"]), "reason": row["closed_reason"],
            "at": row["finished_at"].isoformat(),
            "at_text": row["finished_at"].astimezone(FACILITY_TZ).strftime("%H:%M"),  # as web/localtime.py "time"
            "patient": {"id": row["patient_id"], "name": row["patient_name"]}}


async def staff_list(con: asyncpg.Connection, facility_id: int) -> dict[str, Any]:
    return staff_view(*await staff_rows(con, facility_id))


async def staff_rows(con: asyncpg.Connection,
                     facility_id: int) -> tuple[list[asyncpg.Record], list[asyncpg.Record], datetime]:
    """What `staff_view` shows, read from the database (the first MAX_LISTED waiting and the recent no-shows);
    the view is built apart, so a broadcast can give its connection back before building and encoding."""
    now = datetime.now(UTC)
    rows = await queue_db.waiting_list(con, facility_id, MAX_LISTED)
    no_shows = await queue_db.recent_no_shows(con, facility_id, now - NO_SHOWS_SHOWN)
    return rows, no_shows, now


def staff_view(rows: list[asyncpg.Record], no_shows: list[asyncpg.Record], now: datetime) -> dict[str, Any]:
    """The `queue_list` message: the total waiting, the first MAX_LISTED in claim order, the recent no-shows."""
    return {"type": "queue_list", "total": int(rows[0]["total"]) if rows else 0, "now": now.isoformat(),
            "entries": [entry_view(r, now) for r in rows[:MAX_LISTED]],
            "no_shows": [no_show_view(r) for r in no_shows]}


_WHO_AND_WHY: dict[str, Any] = {"patient": None, "patient_name": None, "reason": "", "danger_signs": [],
                                "checkin": None}


def counts_only(view: dict[str, Any]) -> dict[str, Any]:
    """A `queue_list` for staff who may see counts and states but not who waits or why (coordinators,
    admins): every listed item (entries, and any other list of the message) keeps its level, wait and
    facility; the patient, the reason and the danger signs are blanked."""
    def blank(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        return {**item, **{k: v for k, v in _WHO_AND_WHY.items() if k in item}}
    return {k: [blank(i) for i in v] if isinstance(v, list) else v for k, v in view.items()}


def list_digest(view: dict[str, Any]) -> str:
    """What a doctor's screen shows, minus the clock (`now`, `waited_s`): equal digests, nothing new to show."""
    shown = [{k: v for k, v in e.items() if k != "waited_s"} for e in view["entries"]]
    return hashlib.sha256(encode({"total": view["total"], "entries": shown,
                                  "no_shows": view.get("no_shows", [])}).encode()).hexdigest()


def patient_view(place: int, facility_id: int, doctor_facilities: Iterable[int],
                 parents: Mapping[int, int | None], mean_s: float) -> dict[str, Any]:
    """The waiting room's `queue` message for one patient."""
    return waiting_view(place, sum(1 for f in doctor_facilities if serves(f, facility_id, parents)), mean_s)


def doctors_serving(facility_id: int, doctors_by_facility: Mapping[int, int],
                    parents: Mapping[int, int | None]) -> int:
    """How many of the doctors online (facility → how many there) serve patients of `facility_id`."""
    return sum(n for f, n in doctors_by_facility.items() if serves(f, facility_id, parents))


def waiting_view(place: int, doctors: int, mean_s: float) -> dict[str, Any]:
    """`patient_view` once the doctors serving the patient's facility are counted (a broadcast counts them
    once per facility, not once per waiting patient)."""
    return {"type": "queue", "status": "waiting", "position": place, "doctors_online": doctors,
            "eta_s": expected_wait_s(place, doctors, mean_s)}
