"""Data for the relay benchmark, written through the db modules: a referral network of facilities,
one doctor and one patient per consultation room, the patient's join link, a claimed queue entry
(an active consultation) and the doctor's sign-in session."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from bench import harness
from db import patients as patients_db
from db import queue as queue_db
from db import staff as staff_db
from db.pool import create_pool
from web.auth import LinkSigner, issue_link

# Doctors sign in by cookie here, never by password: one scrypt hash for all of them, as the tests do,
# instead of 500 × ~50 ms of hashing nobody measures.
_SHARED_HASH = staff_db.hash_password("bench-unused-password")


@dataclass(frozen=True)
class PairSpec:
    """One consultation room and the credentials of its two sides."""

    room: str
    patient_token: str = ""
    doctor_cookie: str = ""


async def _facilities(con: asyncpg.Connection, communes: int) -> list[int]:
    """province ← one regional centre per ten communes ← `communes` commune health stations."""
    province = await con.fetchval(
        "INSERT INTO facility (name, level, province_code) "
        "VALUES ('Bệnh viện tỉnh (bench)', 'province', '15') RETURNING id")
    districts = [await con.fetchval(
        "INSERT INTO facility (name, level, parent_id, province_code) VALUES ($1, 'district', $2, '15') "
        "RETURNING id", f"Trung tâm Y tế khu vực {d + 1}", province)
        for d in range(max(1, communes // 10))]
    return [await con.fetchval(
        "INSERT INTO facility (name, level, parent_id, province_code) VALUES ($1, 'commune', $2, '15') "
        "RETURNING id", f"Trạm Y tế xã {c + 1}", districts[c % len(districts)]) for c in range(communes)]


async def _pair(pool: asyncpg.Pool, signer: LinkSigner, n: int, facility_id: int,
                session_ttl: timedelta) -> PairSpec:
    async with pool.acquire() as con:
        doctor = await staff_db.create(con, facility_id=facility_id, username=f"bench.doctor.{n}",
                                       name=f"BS. Thử {n}", role="doctor", password="unused", on_duty=True)
        patient = await patients_db.create(con, facility_id=facility_id, name=f"Bệnh nhân {n}",
                                           sex="female" if n % 2 else "male", birth_year=1950 + n % 50,
                                           phone=f"09{n:08d}")
        token, _ = await issue_link(con, signer, patient, int(session_ttl.total_seconds()))
        entry, _ = await queue_db.enqueue(con, patient_id=patient, link_jti=signer.verify(token),
                                          facility_id=facility_id, level=1, danger_signs=(),
                                          reason="ho, sốt", checkin={"symptoms": ["cough", "fever"]},
                                          audio_only=False)
        claim = await queue_db.claim_entry(con, doctor, facility_id, entry.id)
        cookie, _ = await staff_db.open_session(con, doctor, session_ttl)
    return PairSpec(str(claim.consultation_id), token, cookie)


async def prepare(dsn: str, pairs: int, communes: int, session_ttl: timedelta) -> list[PairSpec]:
    """Create `pairs` active consultations over `communes` facilities; the app has already migrated."""
    original = staff_db.hash_password
    staff_db.hash_password = lambda password: _SHARED_HASH
    pool = await create_pool(dsn, min_size=1, max_size=8)
    try:
        async with pool.acquire() as con:
            facility_ids = await _facilities(con, max(1, min(communes, pairs)))
        signer = LinkSigner(harness.BENCH_SECRET)
        return list(await asyncio.gather(*(_pair(pool, signer, n, facility_ids[n % len(facility_ids)],
                                                 session_ttl) for n in range(pairs))))
    finally:
        staff_db.hash_password = original
        await pool.close()
