"""The visit summary on the web side: what the patient's page shows (on reload, from the database) and
the `visit_summary` websocket message (live, when the doctor signs)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from care.summary import VisitSummary
from db import notes as notes_db
from db import visit_summaries
from db.notes import NoteVersion
from db.visit_summaries import Recipient, summary_of


@dataclass(frozen=True)
class SummaryView:
    """A summary as a page shows it: the sections, who signed it and the day of the visit."""

    summary: VisitSummary
    doctor: str
    day: date
    version: int


async def for_link(con: asyncpg.Connection, jti: uuid.UUID, lang: str) -> SummaryView | None:
    """The summary the doctor shared in the latest signed note of the visit reached by this link."""
    latest = await notes_db.latest_for_link(con, jti)
    return await _view(con, latest[0], lang) if latest is not None else None


async def for_consultation(con: asyncpg.Connection, consultation_id: uuid.UUID, lang: str) -> SummaryView | None:
    """The summary shared so far in a consultation still going on (signed before the call ended)."""
    signed = await notes_db.versions(con, consultation_id)
    return await _view(con, signed[-1], lang) if signed else None


async def _view(con: asyncpg.Connection, version: NoteVersion, lang: str) -> SummaryView | None:
    to = await visit_summaries.recipient(con, version.consultation_id)
    if to is None:
        return None
    summary = summary_of(version.content, lang, to)
    return SummaryView(summary, version.author_name, to.visit_day, version.version) if summary else None


def message(version: NoteVersion, to: Recipient) -> dict[str, Any] | None:
    """The `visit_summary` message for the patient's open pages, in both languages (the page picks its
    own); None when the signed version shares nothing."""
    by_lang = {lang: summary_of(version.content, lang, to) for lang in ("vi", "en")}
    if any(s is None for s in by_lang.values()):
        return None
    return {"type": "visit_summary", "room": str(version.consultation_id), "version": version.version,
            "doctor": version.author_name, "day": to.visit_day.strftime("%d/%m/%Y"),
            "summary": {lang: s.as_dict() for lang, s in by_lang.items() if s is not None}}
