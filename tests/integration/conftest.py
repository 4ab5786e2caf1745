"""Fixtures for data-layer tests: a small referral network; factories for staff, patients, queue entries."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from db import patients as patients_db
from db import queue as queue_db
from db import staff as staff_db

if TYPE_CHECKING:  # imported in the fixture: tests.integration.processes imports test_cli, which imports this
    from tests.integration.processes import Remote

STAFF_PASSWORD = "mat-khau-thu"
_serial = itertools.count(1)
# One real scrypt hash per password, reused: scrypt costs ~50 ms a call by design, and creating
# staff (the demo's five, a factory's fifty) is not what these tests are about. Verifying stays real.
_cached_hash = functools.cache(staff_db.hash_password)


@pytest.fixture
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staff_db, "hash_password", _cached_hash)


@dataclass(frozen=True)
class Network:
    """province ← district ← {commune, sibling}: two communes under one district."""

    province: int
    district: int
    commune: int
    sibling: int


@pytest.fixture
async def network(pool: asyncpg.Pool) -> Network:
    async with pool.acquire() as con:
        province = await con.fetchval(
            "INSERT INTO facility (name, level) VALUES ('Bệnh viện tỉnh', 'province') RETURNING id")
        district = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id) VALUES ('Trung tâm Y tế huyện', 'district', $1) "
            "RETURNING id", province)
        commune = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id) VALUES ('Trạm Y tế xã A', 'commune', $1) "
            "RETURNING id", district)
        sibling = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id) VALUES ('Trạm Y tế xã B', 'commune', $1) "
            "RETURNING id", district)
    return Network(province, district, commune, sibling)


class Factory:
    """Creates rows through the db modules, with just enough detail for the test at hand."""

    def __init__(self, pool: asyncpg.Pool, network: Network) -> None:
        self.pool = pool
        self.network = network

    async def staff(self, facility_id: int | None = None, role: str = "doctor") -> int:
        n = next(_serial)
        async with self.pool.acquire() as con:
            return await staff_db.create(con, facility_id=facility_id or self.network.commune,
                                         username=f"{role}.{n}", name=f"BS. Thử {n}", role=role,
                                         password=STAFF_PASSWORD)

    async def staff_many(self, count: int, facility_id: int | None = None) -> list[int]:
        return list(await asyncio.gather(*(self.staff(facility_id) for _ in range(count))))

    async def patient(self, facility_id: int | None = None) -> int:
        n = next(_serial)
        async with self.pool.acquire() as con:
            return await patients_db.create(con, facility_id=facility_id or self.network.commune,
                                            name=f"Bệnh nhân {n}", phone=f"09{n:08d}")

    async def waiting(self, patient_id: int, level: int = 1, arrived_at: datetime | None = None,
                      danger_signs: tuple[str, ...] = ()) -> queue_db.QueueEntry:
        """Put an existing patient in the queue of their own facility (optionally with a set arrival time)."""
        async with self.pool.acquire() as con:
            facility_id = await con.fetchval("SELECT facility_id FROM patient WHERE id = $1", patient_id)
            entry, _ = await queue_db.enqueue(con, patient_id=patient_id, link_jti=None,
                                              facility_id=facility_id, level=level, danger_signs=danger_signs,
                                              reason="ho, sốt", checkin={}, audio_only=False)
            if arrived_at is not None:
                await con.execute("UPDATE queue_entry SET arrived_at = $2 WHERE id = $1",
                                  entry.id, arrived_at)
        return entry

    async def claimed(self, doctor_id: int, facility_id: int | None = None) -> queue_db.Claim:
        """A new patient, queued and claimed by `doctor_id`: an active consultation."""
        entry = await self.waiting(await self.patient(facility_id))
        async with self.pool.acquire() as con:
            doctor_facility = await con.fetchval("SELECT facility_id FROM staff WHERE id = $1", doctor_id)
            return await queue_db.claim_entry(con, doctor_id, doctor_facility, entry.id)


@pytest.fixture
def make(pool: asyncpg.Pool, network: Network, fast_password_hashing: None) -> Factory:
    return Factory(pool, network)


# ---- real server processes ---------------------------------------------------------------------------------

@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The parent's environment without any Đồng Hành settings, and a data dir of our own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONGHANH_") and k != "DATABASE_URL"}
    env["DONGHANH_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.fixture
async def two_processes(clean_env: dict[str, str], dsn: str, pool: asyncpg.Pool,
                        tmp_path: Path) -> AsyncIterator[tuple[Remote, Remote]]:
    """Two `donghanh serve` processes on the test database joined by the bus; the first seeds the demo."""
    from tests.integration.processes import bus_env, serve_one

    env = bus_env(clean_env, dsn)
    async with serve_one(env, pool, str(tmp_path / "a"), "--demo") as a, \
            serve_one(env, pool, str(tmp_path / "b")) as b:
        yield a, b
