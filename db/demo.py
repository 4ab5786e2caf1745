"""Demo data: a commune health station under a regional centre under a provincial hospital (Lào Cai),
their staff, and ten patients, some with hypertension and TB histories (and on those registers). Idempotent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from care import tb
from care.appointments import FACILITY_TZ
from db import audit
from db import hypertension as htn_db
from db import staff as staff_db
from db import tb as tb_db

DEMO_PASSWORD = "demo1234"

# Real administrative units (vietnam-provinces, 2025 reform): Lào Cai (15), Xã Mù Cang Chải (04456).
PROVINCE_CODE = "15"
COMMUNE_CODE = "04456"
# Made-up numbers (area codes 0214 Lào Cai, 0216 the former Yên Bái side), for the "call us" lines.
PHONES = {"province": "0214 3820 115", "district": "0216 3878 115", "commune": "0216 3878 210"}


@dataclass(frozen=True)
class DemoStaff:
    username: str
    name: str
    role: str
    facility: str  # commune | district | province
    specialties: tuple[str, ...] = ()


STAFF: tuple[DemoStaff, ...] = (
    DemoStaff("bacsi.lan", "BS. Nguyễn Thị Lan", "doctor", "commune"),
    DemoStaff("bacsi.minh", "BS. Lò Văn Minh", "doctor", "commune"),
    DemoStaff("bs.timmach", "BS.CKI Trần Quốc Hùng", "specialist", "district", ("cardiology",)),
    DemoStaff("bs.lao", "ThS.BS Phạm Thu Hà", "specialist", "province", ("tb", "pulmonology")),
    DemoStaff("bs.timmach.tinh", "BS.CKII Đỗ Minh Tuấn", "specialist", "province", ("cardiology",)),
    DemoStaff("bs.noi", "BS.CKI Lê Thị Thu", "specialist", "district", ("internal_medicine", "paediatrics")),
    DemoStaff("dieuphoi", "Hoàng Văn Sơn", "coordinator", "district"),
    DemoStaff("yta.hoa", "ĐD. Vàng Thị Hoa", "nurse", "commune"),
)

# The on-call setting (issue 8.1): the clinician texted when a patient shows danger signs and no doctor
# serving the facility is online (each facility's first doctor, here). Made-up numbers.
ON_CALL = {"commune": "bacsi.lan", "district": "bs.timmach", "province": "bs.lao"}
STAFF_PHONES = {"bacsi.lan": "+84987000101", "bs.timmach": "+84987000103", "bs.lao": "+84987000104"}

# (name, sex, birth_year, phone, key groups, history: "htn" | "tb" | None)
PATIENTS: tuple[tuple[str, str, int, str, tuple[str, ...], str | None], ...] = (
    ("Giàng A Páo", "male", 1958, "0912345601", ("hypertension",), "htn"),
    ("Sùng Thị Mai", "female", 1990, "0912345602", ("pregnant",), None),
    ("Nguyễn Văn An", "male", 1949, "0912345603", ("elderly_alone", "hypertension"), "htn"),
    ("Hờ Thị Dính", "female", 1975, "0912345604", ("tb",), "tb"),
    ("Lý A Chư", "male", 1982, "0912345605", ("tb",), "tb"),
    ("Trần Thị Hoa", "female", 1966, "0912345606", ("hypertension", "diabetes"), "htn"),
    ("Vàng A Dế", "male", 2001, "0912345607", (), None),
    ("Phạm Thị Nga", "female", 1955, "0912345608", ("dialysis",), None),
    ("Lò Văn Tươi", "male", 1970, "0912345609", ("chemotherapy",), None),
    ("Mùa Thị Sua", "female", 1995, "0912345610", (), None),
)


# The registers (issues 10 and 11), dated back from today so the demo never goes stale. Each hypertension
# patient shows the dashboard one state and the specialist's worklist its reasons: Páo uncontrolled at his
# last two visits, the latest ≥ 180/110 (home cuff); An controlled but overdue; Hoa on three drugs, last
# seen four months ago (a missed visit: uncontrolled twice, three drugs, overdue).
AMLODIPINE_PLAN = "Amlodipin 5 mg/ngày; giảm muối; đo HA tại trạm hàng tháng."
DEFAULT_HTN_NOTES: tuple[tuple[int, tuple[int, int], str], ...] = (
    (180, (168, 98), AMLODIPINE_PLAN), (90, (152, 92), AMLODIPINE_PLAN), (30, (138, 86), AMLODIPINE_PLAN))
HTN_NOTES: dict[str, tuple[tuple[int, tuple[int, int], str], ...]] = {
    "Nguyễn Văn An": ((180, (162, 96), AMLODIPINE_PLAN), (90, (148, 90), AMLODIPINE_PLAN),
                      (30, (138, 86), AMLODIPINE_PLAN)),
    "Trần Thị Hoa": tuple((days, bp, "Enalapril 10 mg + amlodipin 5 mg + indapamid 1,5 mg/ngày; kiểm soát đường huyết.")
                          for days, bp in ((300, (166, 100)), (240, (158, 96)), (150, (152, 94)))),
}


@dataclass(frozen=True)
class DemoHypertension:
    registered_days_ago: int
    medicines: tuple[htn_db.MedicineLine, ...]
    risk_factors: tuple[str, ...]
    # (days ago, systolic, diastolic, source) besides the notes' readings, oldest first
    readings: tuple[tuple[int, int, int, htn_db.Source], ...]


_IMPORT, _STATION, _HOME = htn_db.Source.import_, htn_db.Source.station, htn_db.Source.home
HYPERTENSION: dict[str, DemoHypertension] = {
    "Giàng A Páo": DemoHypertension(
        330, (htn_db.MedicineLine("amlodipine", "5 mg", "1 lần/ngày"),), ("smoking",),
        ((330, 170, 100, _IMPORT), (300, 166, 98, _STATION), (270, 164, 96, _STATION), (240, 160, 96, _STATION),
         (210, 158, 94, _STATION), (150, 150, 92, _STATION), (120, 146, 90, _STATION), (60, 140, 88, _STATION),
         (21, 164, 102, _STATION), (10, 176, 106, _HOME), (3, 184, 112, _HOME))),
    "Nguyễn Văn An": DemoHypertension(
        300, (htn_db.MedicineLine("amlodipine", "5 mg", "1 lần/ngày"),), (),
        ((300, 162, 96, _IMPORT), (270, 156, 94, _STATION), (240, 150, 92, _STATION), (210, 148, 90, _STATION),
         (150, 144, 88, _STATION), (120, 140, 88, _STATION), (60, 136, 84, _STATION), (45, 134, 82, _STATION))),
    "Trần Thị Hoa": DemoHypertension(
        320, (htn_db.MedicineLine("enalapril", "10 mg", "1 lần/ngày"),
              htn_db.MedicineLine("amlodipine", "5 mg", "1 lần/ngày"),
              htn_db.MedicineLine("indapamide", "1.5 mg", "1 lần/ngày")), ("diabetes",),
        ((320, 170, 104, _IMPORT), (270, 160, 98, _STATION), (210, 156, 96, _STATION), (180, 154, 94, _HOME),
         (130, 150, 95, _STATION))),
}


@dataclass(frozen=True)
class DemoTb:
    started_days_ago: int
    missed: tuple[int, ...]  # days after the start with a missed dose (every other day up to yesterday: taken)
    month_2_negative_days_ago: int | None  # the end-of-intensive-phase smear, if already back
    review_days_ago: int
    review: str


# Both on 2HRZE/4HR, smear-positive at diagnosis. Dính, 8 weeks in: the intensive phase ends within a week
# (her month-2 smear is back, negative). Chư, 7 weeks in: missed the last three days (and a few before).
TB_CASES: dict[str, DemoTb] = {
    "Hờ Thị Dính": DemoTb(56, (12, 30), 3, 3, "Gần hết giai đoạn tấn công; đờm AFB tháng 2 âm tính."),
    "Lý A Chư": DemoTb(49, (9, 20, 33, 38, 46, 47, 48), None, 21,
                       "Tuần thứ 4: dung nạp thuốc tốt; nhắc uống thuốc đều hằng ngày."),
}


async def seed(con: asyncpg.Connection, today: date | None = None) -> bool:
    """Create the demo network once; returns False when data already exists."""
    if await con.fetchval("SELECT count(*) FROM facility"):
        return False
    today = today or datetime.now(FACILITY_TZ).date()
    async with con.transaction():
        province = await con.fetchval(
            "INSERT INTO facility (name, level, province_code, phone) VALUES ($1, 'province', $2, $3) RETURNING id",
            "Bệnh viện Đa khoa tỉnh Lào Cai", PROVINCE_CODE, PHONES["province"])
        district = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id, province_code, phone) "
            "VALUES ($1, 'district', $2, $3, $4) RETURNING id",
            "Trung tâm Y tế khu vực Mù Cang Chải", province, PROVINCE_CODE, PHONES["district"])
        commune = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id, province_code, commune_code, phone) "
            "VALUES ($1, 'commune', $2, $3, $4, $5) RETURNING id",
            "Trạm Y tế xã Mù Cang Chải", district, PROVINCE_CODE, COMMUNE_CODE, PHONES["commune"])
        facility_ids = {"commune": commune, "district": district, "province": province}
        staff_ids: dict[str, int] = {}
        for s in STAFF:
            staff_ids[s.username] = await staff_db.create(
                con, facility_id=facility_ids[s.facility], username=s.username, name=s.name, role=s.role,
                password=DEMO_PASSWORD, specialties=s.specialties, on_duty=True)
        for username, phone in STAFF_PHONES.items():
            await con.execute("UPDATE staff SET phone = $2 WHERE id = $1", staff_ids[username], phone)
        for level, facility_id in facility_ids.items():
            await con.execute("UPDATE facility SET on_call_staff_id = $2 WHERE id = $1",
                              facility_id, staff_ids[ON_CALL[level]])
        doctor = staff_ids["bacsi.lan"]
        for name, sex, year, phone, groups, history in PATIENTS:
            patient_id = await con.fetchval(
                "INSERT INTO patient (facility_id, name, sex, birth_year, phone, key_groups) "
                "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id", commune, name, sex, year, phone, list(groups))
            if history == "htn":
                for days_ago, (sys_bp, dia_bp), plan in HTN_NOTES.get(name, DEFAULT_HTN_NOTES):
                    await _past_consultation(con, patient_id, commune, doctor, today - timedelta(days=days_ago),
                                             "Tái khám tăng huyết áp", ("I10",),
                                             {"systolic": sys_bp, "diastolic": dia_bp, "pulse": 78}, plan)
            elif history == "tb":
                start = today - timedelta(days=TB_CASES[name].started_days_ago)
                for day, text in ((start, "Bắt đầu phác đồ 2HRZE/4HR, DOT tại trạm."),
                                  (today - timedelta(days=TB_CASES[name].review_days_ago), TB_CASES[name].review)):
                    await _past_consultation(con, patient_id, commune, doctor, day,
                                             "Theo dõi điều trị lao", ("A15.0",), {"weight": 48.5}, text)
        await _hypertension_register(con, commune, staff_ids, today)
        await _tb_register(con, commune, staff_ids, today)
        await _escalations(con, doctor, commune, staff_ids)
    return True


async def _hypertension_register(con: asyncpg.Connection, commune: int, staff_ids: dict[str, int],
                                 today: date) -> None:
    """Enrol the hypertension patients through the register's own functions (the notes' readings are on
    record already), then their other readings, oldest first: station visits reschedule the next one."""
    nurse = staff_ids["yta.hoa"]
    for name, plan in HYPERTENSION.items():
        patient_id: int = await con.fetchval("SELECT id FROM patient WHERE name = $1", name)
        registered = today - timedelta(days=plan.registered_days_ago)
        await htn_db.enrol(con, patient_id=patient_id, facility_id=commune, staff_id=nurse, today=today,
                           enrolment=htn_db.Enrolment(registered, registered, plan.risk_factors, plan.medicines,
                                                      registered + timedelta(days=28), f"THA-{patient_id:03d}"))
        for days_ago, systolic, diastolic, source in plan.readings:
            at_home = source is htn_db.Source.home
            await htn_db.add_reading(con, patient_id=patient_id, taken_on=today - timedelta(days=days_ago),
                                     systolic=systolic, diastolic=diastolic, source=source,
                                     staff_id=None if at_home else nurse, today=today,
                                     idempotency_key=f"demo-{patient_id}-{days_ago}" if at_home else None,
                                     reschedule=source is htn_db.Source.station)


async def _tb_register(con: asyncpg.Connection, commune: int, staff_ids: dict[str, int], today: date) -> None:
    """Register the TB patients' cases, start treatment, and fill the dose calendar up to yesterday."""
    doctor, nurse = audit.Actor.staff(staff_ids["bacsi.lan"]), audit.Actor.staff(staff_ids["yta.hoa"])
    for name, plan in TB_CASES.items():
        patient_id: int = await con.fetchval("SELECT id FROM patient WHERE name = $1", name)
        start = today - timedelta(days=plan.started_days_ago)
        case_id = await tb_db.register(con, doctor, patient_id, commune, tb_db.NewCase(
            start - timedelta(days=3), tb.DEFAULT_REGIMEN, True, diagnosed_on=start - timedelta(days=5),
            register_ref=f"AFB-{patient_id:03d}"))
        await tb_db.record_sputum(con, doctor, case_id, start - timedelta(days=5), True, today)
        await tb_db.start_treatment(con, doctor, case_id, start, today)
        for offset in range(plan.started_days_ago):
            status = (tb.DoseStatus.missed if offset in plan.missed
                      else tb.DoseStatus.self_reported if offset % 7 == 6 else tb.DoseStatus.in_person)
            await tb_db.record_dose(con, nurse, case_id, start + timedelta(days=offset), status, today)
        if plan.month_2_negative_days_ago is not None:
            await tb_db.record_sputum(con, doctor, case_id, today - timedelta(days=plan.month_2_negative_days_ago),
                                      False, today)


# (patient, specialty, urgency, question, what happens next: offered | accepted | answered | rerouted)
ESCALATIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("Giàng A Páo", "cardiology", "priority",
     "Huyết áp 168/98 dù đã dùng amlodipin 5 mg: tăng liều hay phối hợp thuốc?", "offered"),
    ("Nguyễn Văn An", "cardiology", "routine",
     "Cụ ông 77 tuổi sống một mình, HA 138/86: có cần thêm thuốc không?", "answered"),
    ("Hờ Thị Dính", "tb", "routine", "Sau 2 tháng tấn công đờm âm tính, ho khan kéo dài: xử trí?", "accepted"),
    ("Trần Thị Hoa", "cardiology", "urgent", "Đau ngực 20 phút, vã mồ hôi, HA 150/95: chuyển ngay?", "rerouted"),
)


async def _escalations(con: asyncpg.Connection, doctor: int, commune: int, staff_ids: dict[str, int]) -> None:
    """A few requests for an opinion in different states, so every escalation page has something to show."""
    from db import escalations as esc  # demo-only use of the escalation use cases

    now = datetime.now(UTC)
    for name, specialty, urgency, question, then in ESCALATIONS:
        patient = await con.fetchval("SELECT id FROM patient WHERE name = $1", name)
        asked = (await esc.ask(con, esc.Request(patient, specialty, urgency, question,
                                                {"reason": question.split(":")[0]}, True),
                               doctor, commune, now)).escalation
        holder = asked.offered_to
        if holder is None or then == "offered":
            continue
        if then == "rerouted":
            await esc.decline(con, asked.id, holder, "Đang trong ca mổ cấp cứu", now)
            continue
        await esc.accept(con, asked.id, holder, now)
        if then == "answered":
            await esc.answer(con, asked.id, holder, esc.Opinion(
                "Tăng huyết áp độ 1 đã kiểm soát", "Giữ amlodipin 5 mg; đo HA tại trạm mỗi tháng", False, True,
                "Tái khám sau 3 tháng"), now)


async def patient_not_in_queue(con: asyncpg.Connection) -> int | None:
    """The first patient neither waiting nor in a call: the one the demo banner prints a link for."""
    patient_id: int | None = await con.fetchval(
        """SELECT p.id FROM patient p WHERE NOT EXISTS (
               SELECT 1 FROM queue_entry q WHERE q.patient_id = p.id
               AND q.status IN ('waiting', 'claimed', 'in_call')) ORDER BY p.id LIMIT 1""")
    return patient_id


async def _past_consultation(con: asyncpg.Connection, patient_id: int, facility_id: int, doctor_id: int,
                             day: date, reason: str, diagnoses: tuple[str, ...], vitals: dict[str, float],
                             plan: str) -> None:
    entry = await con.fetchval(
        """INSERT INTO queue_entry (patient_id, facility_id, triage_level, suggested_level, reason, status,
                                    arrived_at, claimed_at, claimed_by, finished_at)
           VALUES ($1, $2, 1, 1, $3, 'done', $4::date + time '08:00', $4::date + time '08:05', $5,
                   $4::date + time '08:20') RETURNING id""",
        patient_id, facility_id, reason, day, doctor_id)
    consultation = await con.fetchval(
        """INSERT INTO consultation (queue_entry_id, patient_id, doctor_id, status, modality, started_at,
                                     call_started_at, ended_at, ended_by, outcome)
           VALUES ($1, $2, $3, 'ended', 'video', $4::date + time '08:05', $4::date + time '08:06',
                   $4::date + time '08:20', 'doctor', 'follow_up') RETURNING id""",
        entry, patient_id, doctor_id, day)
    digest = hashlib.sha256(f"demo|{consultation}|{plan}".encode()).hexdigest()
    await con.execute(
        """INSERT INTO note_version (consultation_id, version, subjective, assessment, plan, vitals, diagnoses,
                                     follow_up_on, author_id, signed_at, content_sha256)
           VALUES ($1, 1, $2, $3, $4, $5, $6, $7::date + 30, $8, $7::date + time '08:20', $9)""",
        consultation, reason, "Ổn định", plan, vitals, list(diagnoses), day, doctor_id, digest)
