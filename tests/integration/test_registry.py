"""The patient registry on a real PostgreSQL: diacritic-insensitive search, duplicates, merges that keep
every piece of history, and the audit trail of each change."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import pytest

from care.registry import Registration, RegistrationInput, validate
from care.text import normalize
from db import audit
from db import chat as chat_db
from db import consultations as consultations_db
from db import links as links_db
from db import notes as notes_db
from db import patients as patients_db
from db import queue as queue_db
from db.errors import Conflict
from tests.integration.conftest import Factory, Network

TODAY = date(2026, 6, 15)
_phones = iter(range(10_000_000, 99_999_999))


def registration(name: str, *, phone: str | None = None, year: int = 1960, sex: str = "male",
                 national_id: str = "", key_groups: tuple[str, ...] = (), commune: str = "") -> Registration:
    return validate(RegistrationInput(name=name, sex=sex, birth_year=str(year), phone=phone or "",
                                      national_id=national_id, key_groups=key_groups, commune_code=commune),
                    today=TODAY)


async def register(pool: asyncpg.Pool, facility_id: int, staff_id: int, name: str, **kwargs: object) -> int:
    async with pool.acquire() as con:
        return await patients_db.create_registered(con, facility_id=facility_id, staff_id=staff_id,
                                                   registration=registration(name, **kwargs))  # type: ignore[arg-type]


def fresh_phone() -> str:
    return f"09{next(_phones)}"


async def names(pool: asyncpg.Pool, facility_id: int, query: str, limit: int = 20) -> list[str]:
    async with pool.acquire() as con:
        return [p.name for p in await patients_db.search(con, facility_id, query, limit)]


@pytest.fixture
async def clerk(make: Factory) -> int:
    return await make.staff(role="nurse")


# ---- search ------------------------------------------------------------------------------------------

async def test_search_without_diacritics_finds_the_name_with_them(pool: asyncpg.Pool, network: Network,
                                                                  clerk: int) -> None:
    await register(pool, network.commune, clerk, "Nguyễn Văn An")
    await register(pool, network.commune, clerk, "Trần Thị Hoa", sex="female")
    for query in ("Nguyen Van An", "nguyen van an", "  NGUYỄN   văn an ", "nguyễn văn", "Nguyen", "ng"):
        assert await names(pool, network.commune, query) == ["Nguyễn Văn An"], query
    assert await names(pool, network.commune, "Đặng") == []
    assert await names(pool, network.commune, "") == []


async def test_stroked_d_matches_plain_d(pool: asyncpg.Pool, network: Network, clerk: int) -> None:
    await register(pool, network.commune, clerk, "Đỗ Đức Đạt")
    assert await names(pool, network.commune, "do duc dat") == ["Đỗ Đức Đạt"]
    assert await names(pool, network.commune, "ĐỖ ĐỨC") == ["Đỗ Đức Đạt"]


async def test_whole_name_prefixes_come_first_then_word_starts_and_similar_names_only_after_a_miss(
        pool: asyncpg.Pool, network: Network, clerk: int) -> None:
    for name in ("Trần Văn An", "An Thị Bình", "Lê Thị Lan", "Anh Văn Tú", "Vũ Văn Án"):
        await register(pool, network.commune, clerk, name)
    # "an": whole-name prefixes alphabetically, then names with a word starting "an", never "Lê Thị Lan"
    assert await names(pool, network.commune, "an") == ["An Thị Bình", "Anh Văn Tú", "Trần Văn An", "Vũ Văn Án"]
    assert await names(pool, network.commune, "van an") == ["Trần Văn An", "Vũ Văn Án"]
    # Only when nothing starts with the query come similar names: the same words in another order here.
    assert (await names(pool, network.commune, "tu van anh"))[0] == "Anh Văn Tú"


async def test_search_tolerates_typos_with_trigram_similarity(pool: asyncpg.Pool, network: Network,
                                                               clerk: int) -> None:
    for name in ("Nguyễn Văn Anh", "Nguyễn Thị Bích", "Phạm Văn Anh"):
        await register(pool, network.commune, clerk, name)
    assert (await names(pool, network.commune, "nguyen vna anh"))[0] == "Nguyễn Văn Anh"
    assert (await names(pool, network.commune, "nguyn van anh"))[0] == "Nguyễn Văn Anh"
    assert "Nguyễn Thị Bích" not in await names(pool, network.commune, "nguyen vna anh")


async def test_search_by_phone_number_in_any_written_form(pool: asyncpg.Pool, network: Network, clerk: int) -> None:
    await register(pool, network.commune, clerk, "Lò Văn Tươi", phone="0912 345 678")
    await register(pool, network.commune, clerk, "Mùa Thị Sua", phone="0987 654 321", sex="female")
    for query in ("0912345678", "0912 345 678", "+84 912 345 678", "84912345678", "0912", "912 34"):
        assert await names(pool, network.commune, query) == ["Lò Văn Tươi"], query
    assert await names(pool, network.commune, "09") == []  # fewer than 3 digits is not a phone search
    assert sorted(await names(pool, network.commune, "098 765")) == ["Mùa Thị Sua"]


async def test_search_sees_the_facility_and_everything_below_it(pool: asyncpg.Pool, network: Network,
                                                                clerk: int) -> None:
    await register(pool, network.commune, clerk, "Giàng A Páo")
    await register(pool, network.sibling, clerk, "Giàng A Chư")
    assert await names(pool, network.commune, "giang a") == ["Giàng A Páo"]
    assert await names(pool, network.sibling, "giang a") == ["Giàng A Chư"]
    assert await names(pool, network.district, "giang a") == ["Giàng A Chư", "Giàng A Páo"]
    assert await names(pool, network.province, "giang a") == ["Giàng A Chư", "Giàng A Páo"]


async def test_like_wildcards_in_a_query_are_literal(pool: asyncpg.Pool, network: Network, clerk: int) -> None:
    await register(pool, network.commune, clerk, "Nguyễn Văn An")
    assert await names(pool, network.commune, "%") == []
    assert await names(pool, network.commune, "_guyen") == []


async def test_rows_written_by_plain_sql_get_the_same_search_key_and_an_e164_phone(
        pool: asyncpg.Pool, network: Network) -> None:
    every_letter = "Ắ Ằ Ẳ Ẵ Ặ Ấ Ầ Ẩ Ẫ Ậ Đ Ế Ề Ể Ễ Ệ Ố Ồ Ổ Ỗ Ộ Ớ Ờ Ở Ỡ Ợ Ứ Ừ Ử Ữ Ự Ý Ỳ Ỷ Ỹ Ỵ Í Ì Ỉ Ĩ Ị Ú Ù Ủ Ũ Ụ"
    names_ = ["Nguyễn  Văn   An", "ĐẶNG THỊ ĐÀO", "Hờ Thị Dính", every_letter, every_letter.lower()]
    async with pool.acquire() as con:
        for name in names_:
            await con.execute("INSERT INTO patient (facility_id, name, phone) VALUES ($1, $2, '0912345601')",
                              network.commune, name)
        rows = await con.fetch("SELECT name, search_name, phone FROM patient ORDER BY id")
        assert [(r["search_name"], r["phone"]) for r in rows] == [(normalize(n), "+84912345601") for n in names_]
        await con.execute("UPDATE patient SET name = 'Lý A Chư' WHERE name = 'Hờ Thị Dính'")
        assert await con.fetchval("SELECT search_name FROM patient WHERE name = 'Lý A Chư'") == "ly a chu"


async def test_merged_records_never_show_in_search(pool: asyncpg.Pool, network: Network, clerk: int) -> None:
    phone = fresh_phone()
    keep = await register(pool, network.commune, clerk, "Nguyễn Văn An", phone=phone)
    gone = await register(pool, network.commune, clerk, "Nguyen Van An", phone=phone)
    assert len(await names(pool, network.commune, "nguyen van an")) == 2
    async with pool.acquire() as con:
        await patients_db.merge(con, keep, gone, clerk)
        assert [p.id for p in await patients_db.search(con, network.commune, "nguyen van an")] == [keep]
        assert [p.id for p in await patients_db.search(con, network.commune, phone)] == [keep]
        assert gone not in [p.id for p in await patients_db.recent(con, network.commune)]


# ---- duplicates --------------------------------------------------------------------------------------

async def test_duplicates_need_the_same_phone_a_similar_name_and_the_same_birth_year(
        pool: asyncpg.Pool, network: Network, clerk: int) -> None:
    phone = "+84912000111"
    an = await register(pool, network.commune, clerk, "Nguyễn Văn An", phone=phone, year=1958)
    await register(pool, network.commune, clerk, "Nguyễn Thị Hoa", phone=phone, year=1960, sex="female")  # wife
    await register(pool, network.commune, clerk, "Nguyễn Văn Ân", phone="+84912000222", year=1958)  # other phone
    await register(pool, network.commune, clerk, "Nguyễn Văn An", phone=phone, year=1990)  # son, same name

    async def dups(name: str, year: int | None, phone_: str | None = phone, nid: str | None = None) -> list[int]:
        async with pool.acquire() as con:
            return [p.id for p in await patients_db.find_duplicates(
                con, network.commune, phone=phone_, name=name, birth_year=year, national_id=nid)]

    assert await dups("Nguyen Van An", 1958) == [an]
    assert await dups("Nguyễn Văn Ăn", 1958) == [an]  # a typo in the name still matches
    assert await dups("Nguyễn Văn An", None) == sorted(await dups("Nguyễn Văn An", None))
    assert len(await dups("Nguyễn Văn An", None)) == 2  # birth year unknown: both Nguyễn Văn An
    assert await dups("Lê Thị Bình", 1958) == []
    # Family and middle names weigh as much as the given name: a twin brother with the same phone is shown
    # too. It is a warning before creating, not a refusal ("create anyway").
    assert await dups("Nguyễn Văn Bình", 1958) == [an]
    assert await dups("Nguyễn Văn An", 1958, phone_=None) == []
    assert await dups("Nguyễn Văn An", 1958, phone_="+84999999999") == []


async def test_the_same_citizen_id_is_a_duplicate_whatever_the_name(pool: asyncpg.Pool, network: Network,
                                                                    clerk: int) -> None:
    first = await register(pool, network.commune, clerk, "Sùng Thị Mai", sex="female", year=1990,
                           national_id="015190001234")
    async with pool.acquire() as con:
        found = await patients_db.find_duplicates(con, network.commune, phone=None, name="Sùng Mai",
                                                  birth_year=1990, national_id="015190001234")
        assert [p.id for p in found] == [first]
        # Outside the staff member's scope, nothing is shown.
        assert await patients_db.find_duplicates(con, network.sibling, phone=None, name="Sùng Mai",
                                                 birth_year=1990, national_id="015190001234") == []


# ---- create and update are audited -------------------------------------------------------------------

async def test_registration_and_edits_are_stored_normalized_and_audited(pool: asyncpg.Pool, network: Network,
                                                                         clerk: int) -> None:
    pid = await register(pool, network.commune, clerk, "Nguyễn Văn An", phone="091.234.5678", commune="04456",
                         key_groups=("hypertension",))
    async with pool.acquire() as con:
        p = await patients_db.get(con, pid)
        assert p is not None and p.phone == "+84912345678" and p.commune_code == "04456"
        assert p.key_groups == ("hypertension",)
        assert await con.fetchval("SELECT search_name FROM patient WHERE id = $1", pid) == "nguyen van an"
        changed = await patients_db.update(con, pid, registration("Nguyễn Văn Ân", phone="0912345678",
                                                                  commune="04456", key_groups=("hypertension",
                                                                                               "diabetes")),
                                           clerk, expected_version=p.updated_at.isoformat() if p.updated_at else None)
        assert changed == ["name", "key_groups"]
        assert await patients_db.update(con, pid, registration("Nguyễn Văn Ân", phone="0912345678",
                                                               commune="04456",
                                                               key_groups=("diabetes", "hypertension")), clerk) == []
        with pytest.raises(Conflict) as stale:
            await patients_db.update(con, pid, registration("Nguyễn Văn Bình"), clerk,
                                     expected_version=p.updated_at.isoformat() if p.updated_at else "")
        assert stale.value.code == "stale_record"
        events = await audit.events_for(con, "patient", pid)
        assert [(e["action"], e["actor_id"]) for e in events] == [("patient.create", str(clerk)),
                                                                  ("patient.update", str(clerk))]
        assert events[1]["details"] == {"fields": ["name", "key_groups"]}
        assert await audit.verify_chain(con) is None


# ---- merge -------------------------------------------------------------------------------------------

async def history_for(make: Factory, pool: asyncpg.Pool, patient_id: int, doctor: int, text: str) -> str:
    """A finished consultation with a signed note, a chat message, a link and a consent; the consultation id."""
    entry = await make.waiting(patient_id)
    async with pool.acquire() as con:
        facility = await con.fetchval("SELECT facility_id FROM staff WHERE id = $1", doctor)
        claim = await queue_db.claim_entry(con, doctor, facility, entry.id)
        await chat_db.add(con, claim.consultation_id, "staff", doctor, f"c-{text}", f"Chào bác ({text})")
        await notes_db.sign(con, claim.consultation_id, doctor, 0, notes_db.NoteContent(assessment=text))
        await consultations_db.end(con, claim.consultation_id, "doctor", audit.Actor.staff(doctor))
        jti, _ = await links_db.create(con, patient_id, timedelta(hours=1), created_by=doctor)
        link = await links_db.lookup(con, jti)
        assert link is not None
        await links_db.record_consent(con, link, "v1", "vi")
    return str(claim.consultation_id)


async def test_merge_keeps_every_piece_of_history_under_the_kept_record(
        pool: asyncpg.Pool, network: Network, make: Factory, clerk: int) -> None:
    doctor = await make.staff()
    phone = fresh_phone()
    keep = await register(pool, network.commune, clerk, "Nguyễn Văn An", phone=phone, key_groups=("hypertension",))
    gone = await register(pool, network.commune, clerk, "Nguyen Van An", phone=phone, commune="04456",
                          national_id="015060001234", key_groups=("diabetes", "hypertension"))
    kept_visit = await history_for(make, pool, keep, doctor, "kept")
    merged_visits = [await history_for(make, pool, gone, doctor, f"merged {i}") for i in range(2)]
    waiting = await make.waiting(gone)  # waiting, but abandoned before the merge (not in the queue any more)
    async with pool.acquire() as con:
        await con.execute("UPDATE queue_entry SET status = 'abandoned' WHERE id = $1", waiting.id)
        moved = await patients_db.merge(con, keep, gone, clerk)
        assert moved == {"consent.patient_id": 2, "consultation.patient_id": 2, "join_link.patient_id": 2,
                         "queue_entry.patient_id": 3}

        visits = await patients_db.consultations(con, keep)
        assert sorted(str(v["id"]) for v in visits) == sorted([kept_visit, *merged_visits])
        assert {v["assessment"] for v in visits} == {"kept", "merged 0", "merged 1"}
        for cid in merged_visits:
            chat = await chat_db.history(con, cid)  # chat and notes hang off the consultation
            assert [m.body for m in chat] and "merged" in chat[0].body
        assert await con.fetchval("SELECT count(*) FROM join_link WHERE patient_id = $1", keep) == 3
        assert await con.fetchval("SELECT count(*) FROM queue_entry WHERE patient_id = $1", keep) == 4
        for table in ("consultation", "join_link", "queue_entry", "consent"):
            assert await con.fetchval(f"SELECT count(*) FROM {table} WHERE patient_id = $1", gone) == 0

        kept = await patients_db.get(con, keep)
        merged = await patients_db.get(con, gone)
        assert kept is not None and merged is not None
        assert kept.name == "Nguyễn Văn An"  # the kept record's own fields win
        assert (kept.commune_code, kept.national_id) == ("04456", "015060001234")  # its gaps are filled
        assert set(kept.key_groups) == {"hypertension", "diabetes"}
        assert merged.merged_into == keep

        events = [e for e in await audit.events_for(con, "patient", keep) if e["action"] == "patient.merge"]
        assert len(events) == 1 and events[0]["details"]["kept"] == keep and events[0]["details"]["merged"] == gone
        assert [e["action"] for e in await audit.events_for(con, "patient", gone)][-1] == "patient.merge"
        assert await audit.verify_chain(con) is None


async def test_earlier_merges_into_the_merged_record_follow_it(pool: asyncpg.Pool, network: Network,
                                                               clerk: int) -> None:
    a, b, c = [await register(pool, network.commune, clerk, f"Vàng A {n}") for n in ("Dế", "Dê", "De")]
    async with pool.acquire() as con:
        await patients_db.merge(con, b, c, clerk)
        await patients_db.merge(con, a, b, clerk)
        assert await con.fetchval("SELECT merged_into FROM patient WHERE id = $1", c) == a
        with pytest.raises(Conflict) as twice:
            await patients_db.merge(con, a, b, clerk)
        assert twice.value.code == "already_merged"
        with pytest.raises(Conflict) as itself:
            await patients_db.merge(con, a, a, clerk)
        assert itself.value.code == "merge_same"


async def snapshot(con: asyncpg.Connection) -> list[list[asyncpg.Record]]:
    return [await con.fetch(f"SELECT * FROM {t} ORDER BY 1") for t in
            ("patient", "queue_entry", "consultation", "join_link", "audit_event")]


async def test_merge_is_refused_when_both_are_in_the_queue_and_nothing_changes(
        pool: asyncpg.Pool, network: Network, make: Factory, clerk: int) -> None:
    keep = await register(pool, network.commune, clerk, "Trần Thị Hoa", sex="female", key_groups=("diabetes",))
    gone = await register(pool, network.commune, clerk, "Tran Thi Hoa", sex="female", key_groups=("tb",))
    await make.waiting(keep)
    await make.waiting(gone)
    async with pool.acquire() as con:
        before = await snapshot(con)
        with pytest.raises(Conflict) as refused:
            await patients_db.merge(con, keep, gone, clerk)
        assert refused.value.code == "both_in_queue"
        assert await snapshot(con) == before


async def test_merge_is_refused_while_the_merged_record_is_in_a_consultation(
        pool: asyncpg.Pool, network: Network, make: Factory, clerk: int) -> None:
    doctor = await make.staff()
    keep = await register(pool, network.commune, clerk, "Phạm Thị Nga", sex="female")
    gone = await register(pool, network.commune, clerk, "Pham Thi Nga", sex="female")
    entry = await make.waiting(gone)
    async with pool.acquire() as con:
        await queue_db.claim_entry(con, doctor, network.commune, entry.id)
        before = await snapshot(con)
        with pytest.raises(Conflict) as refused:
            await patients_db.merge(con, keep, gone, clerk)
        assert refused.value.code == "merged_in_queue"
        assert await snapshot(con) == before
        # The other way round is fine: the patient in the call keeps their record and id.
        await patients_db.merge(con, gone, keep, clerk)
        assert await con.fetchval("SELECT merged_into FROM patient WHERE id = $1", keep) == gone


async def test_merge_moves_rows_of_tables_added_later(pool: asyncpg.Pool, network: Network, clerk: int) -> None:
    keep = await register(pool, network.commune, clerk, "Lò Văn Tươi")
    gone = await register(pool, network.commune, clerk, "Lo Van Tuoi")
    async with pool.acquire() as con:
        await con.execute("""CREATE TABLE "reminder note" (id serial PRIMARY KEY,
                                 "for patient" bigint REFERENCES patient (id), body text)""")
        await con.execute("""INSERT INTO "reminder note" ("for patient", body) VALUES ($1, 'a'), ($1, 'b')""", gone)
        moved = await patients_db.merge(con, keep, gone, clerk)
        assert moved["reminder note.for patient"] == 2
        assert await con.fetchval("""SELECT count(*) FROM "reminder note" WHERE "for patient" = $1""", keep) == 2


async def test_a_merge_that_fails_half_way_changes_nothing(pool: asyncpg.Pool, network: Network, make: Factory,
                                                           clerk: int) -> None:
    doctor = await make.staff()
    keep = await register(pool, network.commune, clerk, "Hờ Thị Dính", sex="female")
    gone = await register(pool, network.commune, clerk, "Ho Thi Dinh", sex="female")
    await history_for(make, pool, gone, doctor, "before")
    async with pool.acquire() as con:
        # A table (sorted after "consultation") that allows one row per patient, with a row for each.
        await con.execute("CREATE TABLE zz_enrollment (patient_id bigint UNIQUE REFERENCES patient (id))")
        await con.execute("INSERT INTO zz_enrollment VALUES ($1), ($2)", keep, gone)
        before = await snapshot(con)
        with pytest.raises(Conflict) as refused:
            await patients_db.merge(con, keep, gone, clerk)
        assert refused.value.code == "merge_conflict"
        assert await snapshot(con) == before
