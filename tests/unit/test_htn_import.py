"""The paper register's CSV: every bad row reported with its number (header = row 1), details agree."""

from __future__ import annotations

from datetime import date

from care.htn_import import HEADER, ImportVisit, parse_register

TODAY = date(2026, 3, 10)
HEAD = ",".join(HEADER)


def test_good_register_groups_rows_by_patient_ref() -> None:
    text = "\ufeff" + HEAD + "\n" + "\n".join([
        "A1,Nguyễn Văn An,M,1960,0912345678,2025-01-05,2025-01-05,150,95",
        "A1,Nguyễn Văn An,M,1960,0912345678,05/01/2025,10/02/2025,,",
        "A2,Lò Thị Bình,nữ,,,2025-02-01,,,",
        "",
    ])
    parsed = parse_register(text, today=TODAY)
    assert parsed.errors == [] and parsed.rows == 3
    first, second = parsed.patients
    assert (first.patient_ref, first.sex, first.phone, first.registered_on) == ("A1", "male", "+84912345678",
                                                                               date(2025, 1, 5))
    assert first.visits == [ImportVisit(date(2025, 1, 5), 150, 95), ImportVisit(date(2025, 2, 10), None, None)]
    assert (second.sex, second.birth_year, second.phone, second.visits) == ("female", None, None, [])


def test_every_bad_row_is_reported_and_nothing_is_returned() -> None:
    text = HEAD + "\n" + "\n".join([
        "A1,An,M,1960,,2025-01-05,2025-01-05,150,95",          # row 2: good
        "A1,An,F,1960,,2025-01-05,2025-02-05,150,95",          # row 3: sex differs
        "A3,Bình,X,1960,,2025-01-05,,,",                       # row 4: sex
        "A4,Chi,F,1960,,2025-13-05,,,",                        # row 5: date
        "A5,Dung,F,1960,,2025-01-05,2025-02-05,300,90",        # row 6: systolic bound
        "A6,Em,F,1960,,2025-01-05,2025-02-05,150,",            # row 7: half a BP
        "A7,Giang,F,1960,,2025-01-05,,150,90",                  # row 8: BP without visit date
        "A8,Hà,F,1960,0241234567,2025-01-05,,,",               # row 9: landline
        "A9,Ích,F,1960,,2026-04-01,,,",                         # row 10: future
        "A10,Khánh,F,1960",                                     # row 11: columns
        "A11,Lan,F,1960,,2025-01-05,2024-12-31,,",             # row 12: visit before registration
        "A12,Mai,F,1960,,05/01/1925,,,",                        # row 13: before 2000
    ])
    parsed = parse_register(text, today=TODAY)
    assert parsed.patients == []
    assert [e.split(":")[0] for e in parsed.errors] == [f"row {n}" for n in range(3, 14)]
    assert "sex differs from row 2" in parsed.errors[0]
    assert "systolic" in parsed.errors[3]


def test_wrong_header_is_row_1() -> None:
    assert parse_register("ref,name\nA1,An", today=TODAY).errors[0].startswith("row 1: the header must be")
    assert parse_register("", today=TODAY).errors[0].startswith("row 1:")
