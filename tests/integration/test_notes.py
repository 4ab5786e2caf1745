"""db.notes on a real PostgreSQL: autosaved drafts, signed versions that are never overwritten."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta

import asyncpg
import pytest

from db import audit
from db import notes as notes_db
from db.errors import Conflict
from tests.integration.conftest import Factory

FIRST = notes_db.NoteContent(subjective="Ho khan 3 ngày", assessment="Viêm họng cấp",
                             plan="Súc họng nước muối",
                             vitals={"systolic": 128, "diastolic": 82, "temperature": 37.8},
                             diagnoses=("J02.9",), follow_up_on=date.today() + timedelta(days=7))
SECOND = notes_db.NoteContent(subjective="Ho khan 3 ngày, thêm sốt", assessment="Viêm họng cấp",
                              plan="Paracetamol 500 mg khi sốt", vitals={"temperature": 38.4},
                              diagnoses=("J02.9", "R50.9"))


@dataclass(frozen=True)
class Consult:
    id: uuid.UUID
    doctor: int


@pytest.fixture
async def consult(make: Factory) -> Consult:
    doctor = await make.staff()
    claim = await make.claimed(doctor)
    return Consult(claim.consultation_id, doctor)


async def sign(pool: asyncpg.Pool, consult: Consult, expected: int, content: notes_db.NoteContent,
               author: int | None = None) -> notes_db.NoteVersion:
    async with pool.acquire() as con:
        return await notes_db.sign(con, consult.id, author or consult.doctor, expected, content)


async def versions(pool: asyncpg.Pool, consult: Consult) -> list[notes_db.NoteVersion]:
    async with pool.acquire() as con:
        return await notes_db.versions(con, consult.id)


async def test_draft_is_saved_and_overwritten_not_duplicated(pool: asyncpg.Pool, consult: Consult) -> None:
    async with pool.acquire() as con:
        first_at = await notes_db.save_draft(con, consult.id, consult.doctor, 0, {"subjective": "Ho"})
        second_at = await notes_db.save_draft(con, consult.id, consult.doctor, 0,
                                              {"subjective": "Ho, sốt", "vitals": {"spo2": 97}})
        draft = await notes_db.draft(con, consult.id, consult.doctor)
        count = await con.fetchval("SELECT count(*) FROM note_draft WHERE consultation_id = $1", consult.id)
    assert draft is not None
    assert draft["content"] == {"subjective": "Ho, sốt", "vitals": {"spo2": 97}}
    assert draft["base_version"] == 0 and draft["saved_at"] == second_at >= first_at
    assert count == 1


async def test_drafts_are_per_author(pool: asyncpg.Pool, consult: Consult, make: Factory) -> None:
    colleague = await make.staff()
    async with pool.acquire() as con:
        await notes_db.save_draft(con, consult.id, consult.doctor, 0, {"plan": "mine"})
        await notes_db.save_draft(con, consult.id, colleague, 0, {"plan": "theirs"})
        mine = await notes_db.draft(con, consult.id, consult.doctor)
        theirs = await notes_db.draft(con, consult.id, colleague)
    assert mine is not None and mine["content"] == {"plan": "mine"}
    assert theirs is not None and theirs["content"] == {"plan": "theirs"}


async def test_signing_appends_version_one_then_two(pool: asyncpg.Pool, consult: Consult) -> None:
    v1 = await sign(pool, consult, 0, FIRST)
    v2 = await sign(pool, consult, 1, SECOND)
    assert (v1.version, v2.version) == (1, 2)
    stored = await versions(pool, consult)
    assert [v.version for v in stored] == [1, 2]
    assert stored[0].content == FIRST  # version 1 is kept as it was signed
    assert stored[1].content == SECOND
    assert stored[1] == v2


async def test_stale_expected_version_is_refused_and_nothing_is_written(pool: asyncpg.Pool,
                                                                        consult: Consult) -> None:
    await sign(pool, consult, 0, FIRST)
    async with pool.acquire() as con:
        await notes_db.save_draft(con, consult.id, consult.doctor, 0, {"plan": "edited from version 0"})
        audit_before = await con.fetchval("SELECT count(*) FROM audit_event")
    with pytest.raises(Conflict) as refused:
        await sign(pool, consult, 0, SECOND)
    assert refused.value.code == "stale_version"
    assert "version 1" in refused.value.message
    with pytest.raises(Conflict):
        await sign(pool, consult, 5, SECOND)  # ahead of the record is as wrong as behind it
    stored = await versions(pool, consult)
    assert [v.content for v in stored] == [FIRST]
    async with pool.acquire() as con:
        draft = await notes_db.draft(con, consult.id, consult.doctor)
        assert await con.fetchval("SELECT count(*) FROM audit_event") == audit_before
    assert draft is not None and draft["content"] == {"plan": "edited from version 0"}  # the work is not lost


async def test_versions_keep_their_author_and_signing_time(pool: asyncpg.Pool, consult: Consult,
                                                           make: Factory) -> None:
    colleague = await make.staff()
    v1 = await sign(pool, consult, 0, FIRST)
    v2 = await sign(pool, consult, 1, SECOND, author=colleague)
    stored = await versions(pool, consult)
    assert [(v.author_id, v.author_name) for v in stored] == [(consult.doctor, v1.author_name),
                                                              (colleague, v2.author_name)]
    assert v1.author_name.startswith("BS. Thử") and v1.author_name != v2.author_name
    assert stored[0].signed_at == v1.signed_at <= v2.signed_at == stored[1].signed_at
    assert v1.signed_at.tzinfo is not None


async def test_content_hash_differs_when_content_differs(pool: asyncpg.Pool, consult: Consult,
                                                         make: Factory) -> None:
    other_doctor = await make.staff()
    other = Consult((await make.claimed(other_doctor)).consultation_id, other_doctor)
    v1 = await sign(pool, consult, 0, FIRST)
    v2 = await sign(pool, consult, 1, SECOND)
    assert len(v1.content_sha256) == 64 and int(v1.content_sha256, 16) >= 0
    assert v1.content_sha256 != v2.content_sha256
    # Changing a single field changes it too.
    v3 = await sign(pool, other, 0, FIRST)
    v4 = await sign(pool, other, 1, replace(FIRST, plan=FIRST.plan + "."))
    assert v3.content_sha256 != v4.content_sha256


async def test_signing_deletes_the_authors_draft(pool: asyncpg.Pool, consult: Consult, make: Factory) -> None:
    colleague = await make.staff()
    async with pool.acquire() as con:
        await notes_db.save_draft(con, consult.id, consult.doctor, 0, {"plan": "nháp"})
        await notes_db.save_draft(con, consult.id, colleague, 0, {"plan": "nháp của đồng nghiệp"})
    await sign(pool, consult, 0, FIRST)
    async with pool.acquire() as con:
        assert await notes_db.draft(con, consult.id, consult.doctor) is None
        assert await notes_db.draft(con, consult.id, colleague) is not None


async def test_signing_is_audited_with_version_and_hash(pool: asyncpg.Pool, consult: Consult) -> None:
    v1 = await sign(pool, consult, 0, FIRST)
    v2 = await sign(pool, consult, 1, SECOND)
    async with pool.acquire() as con:
        events = [e for e in await audit.events_for(con, "consultation", consult.id)
                  if e["action"] == "note.sign"]
        assert await audit.verify_chain(con) is None
    assert [e["details"] for e in events] == [{"version": 1, "sha256": v1.content_sha256},
                                              {"version": 2, "sha256": v2.content_sha256}]
    assert {(e["actor_kind"], e["actor_id"]) for e in events} == {("staff", str(consult.doctor))}


async def test_two_concurrent_signers_of_the_same_version_one_succeeds(pool: asyncpg.Pool, consult: Consult,
                                                                        make: Factory) -> None:
    authors = [consult.doctor, await make.staff(), await make.staff(), await make.staff()]
    await sign(pool, consult, 0, FIRST)
    contents = [notes_db.NoteContent(plan=f"kế hoạch {i}") for i in range(len(authors))]
    results = await asyncio.gather(*(sign(pool, consult, 1, c, author=a) for a, c in zip(authors, contents,
                                                                                           strict=True)),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, notes_db.NoteVersion)]
    lost = [r for r in results if not isinstance(r, notes_db.NoteVersion)]
    assert len(won) == 1 and won[0].version == 2
    assert len(lost) == len(authors) - 1
    assert all(isinstance(r, Conflict) and r.code == "stale_version" for r in lost)
    stored = await versions(pool, consult)
    assert [v.version for v in stored] == [1, 2] and stored[1].content == won[0].content
