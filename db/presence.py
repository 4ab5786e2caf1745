"""SQL of per-process presence (table process_presence): what a starting process reads to know who is
online on the other processes before any of them has answered on the bus (signaling/hub.py)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class ProcessPresence:
    """One other process's latest presence, and how many seconds ago it wrote it."""

    process_id: str
    doctors: list[list[object]]
    pages: list[list[int]]
    patients: list[int]
    age_s: float


async def save(con: asyncpg.Connection, process_id: str, doctors: list[list[object]], pages: list[list[int]],
               patients: list[int]) -> None:
    """This process's presence now (replaces its previous row)."""
    await con.execute(
        """INSERT INTO process_presence (process_id, doctors, pages, patients, seen_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (process_id) DO UPDATE
           SET doctors = EXCLUDED.doctors, pages = EXCLUDED.pages, patients = EXCLUDED.patients,
               seen_at = EXCLUDED.seen_at""", process_id, doctors, pages, patients)


async def touch(con: asyncpg.Connection, process_id: str) -> None:
    """Still here, holding the same: refresh the row's time."""
    await con.execute("UPDATE process_presence SET seen_at = now() WHERE process_id = $1", process_id)


async def live(con: asyncpg.Connection, ttl_s: float) -> list[ProcessPresence]:
    """Every process's presence refreshed within `ttl_s`; rows older than that (processes that died) are
    deleted on the way."""
    async with con.transaction():
        await con.execute("DELETE FROM process_presence WHERE seen_at < now() - make_interval(secs => $1)",
                          float(ttl_s))
        rows = await con.fetch(
            "SELECT process_id, doctors, pages, patients, extract(epoch FROM now() - seen_at) AS age_s "
            "FROM process_presence")
    return [ProcessPresence(r["process_id"], r["doctors"], r["pages"], list(r["patients"]), float(r["age_s"]))
            for r in rows]


async def forget(con: asyncpg.Connection, process_id: str) -> None:
    """This process stops: its row goes."""
    await con.execute("DELETE FROM process_presence WHERE process_id = $1", process_id)
