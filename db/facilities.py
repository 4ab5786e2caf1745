"""Facilities: the referral hierarchy (commune → regional/district → province → central)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


async def parents(con: asyncpg.Connection) -> dict[int, int | None]:
    """facility id → parent id (None at the top), for deciding who serves whom."""
    rows = await con.fetch("SELECT id, parent_id FROM facility")
    return {r["id"]: r["parent_id"] for r in rows}


async def name(con: asyncpg.Connection, facility_id: int) -> str | None:
    value: str | None = await con.fetchval("SELECT name FROM facility WHERE id = $1", facility_id)
    return value


async def location(con: asyncpg.Connection, facility_id: int) -> tuple[str | None, str | None]:
    """(province code, commune code) of a facility: the default address for patients registered there."""
    row = await con.fetchrow("SELECT province_code, commune_code FROM facility WHERE id = $1", facility_id)
    return (row["province_code"], row["commune_code"]) if row else (None, None)


@dataclass(frozen=True)
class Contact:
    """How a patient reaches a facility: its name and phone number (None when not recorded)."""

    id: int
    name: str
    phone: str | None


async def contact(con: asyncpg.Connection, facility_id: int) -> Contact | None:
    row = await con.fetchrow("SELECT id, name, phone FROM facility WHERE id = $1", facility_id)
    return Contact(row["id"], row["name"], row["phone"]) if row else None


async def all_rows(con: asyncpg.Connection) -> list[tuple[int, str, str, int | None]]:
    """Every facility as (id, level, name, parent_id), by id: `donghanh facilities`."""
    rows = await con.fetch("SELECT id, level, name, parent_id FROM facility ORDER BY id")
    return [(r["id"], r["level"], r["name"], r["parent_id"]) for r in rows]
