"""The structured summary a request for an opinion starts from, filled in from the record (editable).

Reason for the visit, triage level and check-in answers (the latest queue entry), the latest vitals,
diagnoses from signed notes, recent blood-pressure readings (from signed notes' vitals) and the current
medicines (the latest signed note's prescription). Reading it is reading clinical content: the caller
authorises and audits.
"""

from __future__ import annotations

from typing import Any

import asyncpg

RECENT_BP = 5


async def prefill(con: asyncpg.Connection, patient_id: int) -> dict[str, Any]:
    entry = await con.fetchrow(
        "SELECT reason, triage_level, checkin, danger_signs FROM queue_entry WHERE patient_id = $1 "
        "ORDER BY arrived_at DESC LIMIT 1", patient_id)
    notes = await con.fetch(
        """SELECT DISTINCT ON (n.consultation_id) n.vitals, n.diagnoses, n.medicines, n.signed_at
           FROM note_version n JOIN consultation c ON c.id = n.consultation_id
           WHERE c.patient_id = $1 ORDER BY n.consultation_id, n.version DESC""", patient_id)
    notes = sorted(notes, key=lambda r: r["signed_at"], reverse=True)
    diagnoses: list[str] = []
    for n in notes:
        diagnoses += [d for d in n["diagnoses"] if d not in diagnoses]
    latest_vitals = next((dict(n["vitals"]) for n in notes if n["vitals"]), {})
    bp = [{"systolic": n["vitals"]["systolic"], "diastolic": n["vitals"].get("diastolic"),
           "at": n["signed_at"].date().isoformat()}
          for n in notes if n["vitals"] and n["vitals"].get("systolic")][:RECENT_BP]
    medicines = [m.get("drug", "") + (f" {m['dose']}" if m.get("dose") else "")
                 for m in (notes[0]["medicines"] if notes else [])]
    return {
        "reason": entry["reason"] if entry else "",
        "triage_level": entry["triage_level"] if entry else None,
        "danger_signs": list(entry["danger_signs"]) if entry else [],
        "checkin": dict(entry["checkin"]) if entry else {},
        "vitals": latest_vitals,
        "diagnoses": diagnoses,
        "recent_bp": bp,
        "medicines": medicines,
    }
