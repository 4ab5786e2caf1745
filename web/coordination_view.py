"""The coordinator's dashboard as people read it: translated column headers, urgency/status/specialty
labels instead of codes, yes/no, shares as percentages, ages and medians as minutes/hours/days. The CSV
export keeps the machine column names and raw values (scripts read them); only the page uses this."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from db import escalations as esc
from web import escalation_texts
from web.i18n import N_, Translator

HEADERS: dict[str, str] = {
    "level": N_("Level"), "triage_level": N_("Triage level"), "waiting": N_("Patients waiting"),
    "in_progress": N_("Calls in progress"), "urgency": N_("Urgency"), "status": N_("Status"),
    "specialty": N_("Specialty"), "facility": N_("Facility"), "hops": N_("Re-routings"),
    "age_min": N_("Waiting for"), "overdue": N_("Overdue"), "from_facility": N_("From facility"),
    "to_facility": N_("To facility"), "name": N_("Name"), "specialties": N_("Specialties"),
    "requests": N_("Requests"), "median_accept_min": N_("Median time to accept"),
    "median_answer_min": N_("Median time to answer"), "share_in_time": N_("In time"),
    "share_rerouted": N_("Re-routed"), "share_avoided_transfer": N_("Transfer avoided"),
}

LEVELS: dict[str, str] = {
    "commune": N_("Commune"), "district": N_("District"), "province": N_("Province"), "central": N_("Central"),
}

URGENCY_SHORT: dict[str, str] = {
    "urgent": N_("Urgent"), "priority": N_("Priority"), "routine": N_("Routine"),
    "emergency": N_("Emergency"), "soon": N_("Soon"), "planned": N_("Planned"),
}

DURATION: list[str] = [N_("{minutes} min"), N_("{hours} h {minutes} min"), N_("{days} d {hours} h")]
YES, NO = N_("Yes"), N_("No")


async def specialty_names(con: asyncpg.Connection, lang: str) -> dict[str, str]:
    """Specialty code → its name in `lang` (the `specialty` table holds both languages)."""
    return {r["code"]: r["name_en"] if lang == "en" else r["name_vi"]
            for r in await esc.specialties(con, retired=True)}


def duration(t: Translator, minutes: float | None) -> str:
    """12 → "12 phút", 125 → "2 giờ 5 phút", 1500 → "1 ngày 1 giờ"; "—" when unknown."""
    if minutes is None:
        return "—"
    m = max(0, round(minutes))
    if m < 60:
        return t("{minutes} min", minutes=m)
    if m < 24 * 60:
        return t("{hours} h {minutes} min", hours=m // 60, minutes=m % 60)
    return t("{days} d {hours} h", days=m // (24 * 60), hours=m % (24 * 60) // 60)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{round(value * 100)}%"


def cell(t: Translator, table: str, key: str, value: Any, specialties: Mapping[str, str]) -> str:
    """One value as shown on the page."""
    if value is None:
        return "—"
    labels: dict[str, Callable[[Any], str]] = {
        "level": lambda v: t(LEVELS.get(v, v)),
        "urgency": lambda v: t(URGENCY_SHORT.get(v, v)),
        "status": lambda v: t((escalation_texts.REFERRAL_STATUSES if table == "referrals"
                               else escalation_texts.STATUSES).get(v, v)),
        "specialty": lambda v: specialties.get(v, v),
        "specialties": lambda v: ", ".join(specialties.get(code, code) for code in str(v).split()),
        "overdue": lambda v: t(YES if v else NO),
    }
    if key in labels:
        return labels[key](value)
    if key.endswith("_min"):
        return duration(t, float(value))
    if key.startswith("share_"):
        return _share(float(value))
    return str(value)


def tables(t: Translator, snapshot: Mapping[str, list[dict[str, Any]]],
           specialties: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Each table as {"columns": [header…], "rows": [{"cells": [text…], "overdue": bool}]} for the page."""
    out: dict[str, dict[str, Any]] = {}
    for name, rows in snapshot.items():
        keys = list(rows[0]) if rows else []
        out[name] = {
            "columns": [t(HEADERS.get(k, k)) for k in keys],
            "rows": [{"overdue": bool(r.get("overdue")),
                      "cells": [cell(t, name, k, r[k], specialties) for k in keys]} for r in rows],
        }
    return out
