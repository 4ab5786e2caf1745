"""A commune station's paper hypertension register, as CSV: parsed and checked all at once.

The contract (issue 10, `donghanh import htn`): UTF-8, header
`patient_ref,name,sex,birth_year,phone,registered_on,visit_on,systolic,diastolic`, one row per visit; rows
with the same patient_ref are one patient whose details must agree. Every bad row is reported as
`row N: …` (the header is row 1) and nothing is imported unless every row is good.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime

from care.hypertension import HypertensionError, check_reading
from care.phone import PhoneError, parse_mobile

HEADER = ("patient_ref", "name", "sex", "birth_year", "phone", "registered_on", "visit_on", "systolic", "diastolic")
SEXES = {"m": "male", "nam": "male", "f": "female", "nữ": "female", "nu": "female"}
MAX_ROWS = 50_000
EARLIEST = date(2000, 1, 1)  # the same floor as the register's other dates (db/hypertension.py)


@dataclass(frozen=True)
class ImportVisit:
    visited_on: date
    systolic: int | None
    diastolic: int | None


@dataclass
class ImportPatient:
    patient_ref: str
    name: str
    sex: str
    birth_year: int | None
    phone: str | None
    registered_on: date
    first_row: int
    visits: list[ImportVisit] = field(default_factory=list)


@dataclass(frozen=True)
class ParsedRegister:
    patients: list[ImportPatient]
    errors: list[str]  # "row N: …", in row order; empty when the file can be imported
    rows: int          # data rows read (the header not counted)


def parse_date(text: str) -> date:
    """YYYY-MM-DD or DD/MM/YYYY."""
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")


def _int(text: str, name: str) -> int:
    if not text.lstrip("-").isdigit():
        raise ValueError(f"{name} {text!r} is not a whole number")
    return int(text)


def _row(cells: dict[str, str], today: date) -> tuple[ImportPatient, ImportVisit | None]:
    ref = cells["patient_ref"]
    if not 1 <= len(ref) <= 40:
        raise ValueError("patient_ref must be 1 to 40 characters")
    name = " ".join(cells["name"].split())
    if not 1 <= len(name) <= 200:
        raise ValueError("name must be 1 to 200 characters")
    sex = SEXES.get(cells["sex"].casefold())
    if sex is None:
        raise ValueError(f"sex {cells['sex']!r} must be M, F, nam or nữ")
    birth_year = _int(cells["birth_year"], "birth_year") if cells["birth_year"] else None
    if birth_year is not None and not 1900 <= birth_year <= today.year:
        raise ValueError(f"birth_year {birth_year} must be between 1900 and {today.year}")
    try:
        phone = parse_mobile(cells["phone"]) if cells["phone"] else None
    except PhoneError as e:
        raise ValueError(f"phone: {e}") from e
    if not cells["registered_on"]:
        raise ValueError("registered_on is empty")
    registered_on = parse_date(cells["registered_on"])
    if registered_on > today:
        raise ValueError("registered_on is after today")
    if registered_on < EARLIEST:
        raise ValueError(f"registered_on is before {EARLIEST.isoformat()}")
    patient = ImportPatient(ref, name, sex, birth_year, phone, registered_on, 0)
    has_bp = bool(cells["systolic"] or cells["diastolic"])
    if not cells["visit_on"]:
        if has_bp:
            raise ValueError("systolic and diastolic need a visit_on date")
        return patient, None
    visited_on = parse_date(cells["visit_on"])
    if visited_on > today:
        raise ValueError("visit_on is after today")
    if visited_on < registered_on:
        raise ValueError("visit_on is before registered_on")
    if not has_bp:
        return patient, ImportVisit(visited_on, None, None)
    if not cells["systolic"] or not cells["diastolic"]:
        raise ValueError("a blood pressure needs both systolic and diastolic")
    systolic, diastolic = _int(cells["systolic"], "systolic"), _int(cells["diastolic"], "diastolic")
    try:
        check_reading(systolic, diastolic)
    except HypertensionError as e:
        raise ValueError(str(e)) from e
    return patient, ImportVisit(visited_on, systolic, diastolic)


def parse_register(text: str, *, today: date) -> ParsedRegister:
    """Read the whole file; report every bad row (not only the first)."""
    text = text.removeprefix("\ufeff")  # a spreadsheet's UTF-8 byte-order mark
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        return ParsedRegister([], [f"row 1: the header must be {','.join(HEADER)}"], 0)
    patients: dict[str, ImportPatient] = {}
    errors: list[str] = []
    rows = 0
    for number, raw in enumerate(reader, start=2):
        if not any(cell.strip() for cell in raw):
            continue
        rows += 1
        if rows > MAX_ROWS:
            errors.append(f"row {number}: more than {MAX_ROWS} rows; split the file")
            break
        if len(raw) != len(HEADER):
            errors.append(f"row {number}: {len(raw)} columns, expected {len(HEADER)}")
            continue
        cells = {k: v.strip() for k, v in zip(HEADER, raw, strict=True)}
        try:
            patient, visit = _row(cells, today)
        except ValueError as e:
            errors.append(f"row {number}: {e}")
            continue
        known = patients.get(patient.patient_ref)
        if known is None:
            patient.first_row = number
            patients[patient.patient_ref] = known = patient
        else:
            for name in ("name", "sex", "birth_year", "phone", "registered_on"):
                if getattr(known, name) != getattr(patient, name):
                    errors.append(f"row {number}: patient_ref {patient.patient_ref}: {name} differs from "
                                  f"row {known.first_row}")
                    break
        if visit is not None:
            known.visits.append(visit)
    return ParsedRegister(list(patients.values()) if not errors else [], errors, rows)
