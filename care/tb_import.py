"""`donghanh import tb FILE`: the paper TB register as CSV, checked row by row before anything is written.

One row per event; rows with the same `patient_ref` are one case whose details agree across rows. Every
problem is reported as `row N: …` with the header as row 1; a file with any problem imports nothing.
Rules beyond the issue's contract (documented in docs/decisions.md): an empty `regimen` means the default
(2HRZE/4HR); a `patient_ref` already in the facility's register is refused (re-importing a file adds nothing
twice); two events of one kind that can happen once (treatment start, death, transfer out) must agree; a dose
and a missed dose on the same day, a dose before the treatment start, any event after today, and a sputum
result after a death or transfer out are refused.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime

from care import tb
from care.phone import PhoneError, parse_mobile
from care.tb import DoseStatus, SputumResult

HEADER = ("patient_ref", "name", "sex", "birth_year", "phone", "registered_on", "regimen",
          "bacteriologically_confirmed", "event_on", "event", "result")
EVENTS = ("treatment_start", "dose_taken", "dose_missed", "sputum", "regimen_changed_failure", "died",
          "transferred_out")
_SEX = {"m": "male", "nam": "male", "f": "female", "nữ": "female", "nu": "female"}
_YES_NO = {"yes": True, "no": False, "có": True, "không": False}


@dataclass
class ImportedCase:
    """One case of the file, with its events, ready for db.tb.import_cases."""

    register_ref: str
    name: str
    sex: str | None
    birth_year: int | None
    phone: str | None
    registered_on: date
    regimen: str
    bacteriologically_confirmed: bool
    first_row: int
    started_on: date | None = None
    doses: dict[date, DoseStatus] = field(default_factory=dict)
    sputum: list[SputumResult] = field(default_factory=list)
    died_on: date | None = None
    transferred_out_on: date | None = None
    failure_on: date | None = None


class ImportError_(ValueError):
    """The file has problems; `errors` are the `row N: …` lines, in row order."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def parse_date(text: str) -> date:
    """`YYYY-MM-DD` or `DD/MM/YYYY` (how Vietnamese registers write dates)."""
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")


class _RowError(ValueError):
    pass


def _details(row: dict[str, str], today: date) -> tuple[str, str | None, int | None, str | None, date, str, bool]:
    name = " ".join(row["name"].split())
    if not name or len(name) > 200:
        raise _RowError("name must have 1 to 200 characters")
    sex_text = row["sex"].strip().lower()
    if sex_text and sex_text not in _SEX:
        raise _RowError(f"sex must be M or F (or nam/nữ), got {row['sex']!r}")
    year_text = row["birth_year"].strip()
    if year_text and not (year_text.isdigit() and 1900 <= int(year_text) <= today.year):
        raise _RowError(f"birth_year must be a year from 1900 to {today.year}, got {year_text!r}")
    phone: str | None = None
    if row["phone"].strip():
        try:
            phone = parse_mobile(row["phone"])
        except PhoneError as exc:
            raise _RowError(f"phone: {exc.message}") from None
    try:
        registered_on = parse_date(row["registered_on"].strip())
    except ValueError as exc:
        raise _RowError(f"registered_on: {exc}") from None
    if registered_on > today:
        raise _RowError(f"registered_on {registered_on} is after today ({today})")
    regimen = row["regimen"].strip() or tb.DEFAULT_REGIMEN
    if regimen not in tb.REGIMENS:
        raise _RowError(f"regimen must be one of {', '.join(tb.REGIMENS)}, got {regimen!r}")
    confirmed = _YES_NO.get(row["bacteriologically_confirmed"].strip().lower())
    if confirmed is None:
        raise _RowError(f"bacteriologically_confirmed must be yes or no, got {row['bacteriologically_confirmed']!r}")
    return (name, _SEX.get(sex_text), int(year_text) if year_text else None, phone, registered_on, regimen,
            confirmed)


def _event(case: ImportedCase, row: dict[str, str], today: date) -> None:
    event, on_text, result = row["event"].strip(), row["event_on"].strip(), row["result"].strip().lower()
    if not event and not on_text:
        if result:
            raise _RowError("result is only for a sputum event")
        return
    if event not in EVENTS:
        raise _RowError(f"event must be one of {', '.join(EVENTS)} (or empty with an empty event_on), got {event!r}")
    try:
        on = parse_date(on_text)
    except ValueError as exc:
        raise _RowError(f"event_on: {exc}") from None
    if on > today:
        raise _RowError(f"event_on {on} is after today ({today})")
    if (event == "sputum") != bool(result):
        raise _RowError("result (positive or negative) is required for a sputum event, and only for it")
    if event == "treatment_start":
        if case.started_on not in (None, on):
            raise _RowError(f"treatment_start {on} differs from the earlier {case.started_on}")
        if on < case.registered_on.replace(year=case.registered_on.year - 1):
            raise _RowError(f"treatment_start {on} is more than a year before registration")
        case.started_on = on
    elif event in ("dose_taken", "dose_missed"):
        status = DoseStatus.in_person if event == "dose_taken" else DoseStatus.missed
        if case.doses.get(on, status) != status:
            raise _RowError(f"{on} is recorded both as a dose taken and as missed")
        case.doses[on] = status
    elif event == "sputum":
        if result not in ("positive", "negative"):
            raise _RowError(f"result must be positive or negative, got {row['result']!r}")
        case.sputum.append(SputumResult(on, result == "positive"))
    elif event == "regimen_changed_failure":
        case.failure_on = min(on, case.failure_on) if case.failure_on else on
    elif event == "died":
        if case.died_on not in (None, on):
            raise _RowError(f"died {on} differs from the earlier {case.died_on}")
        case.died_on = on
    else:
        if case.transferred_out_on not in (None, on):
            raise _RowError(f"transferred_out {on} differs from the earlier {case.transferred_out_on}")
        case.transferred_out_on = on


def _check_case(case: ImportedCase, rows: dict[date, int], sputum_rows: dict[date, int]) -> list[str]:
    errors: list[str] = []
    if case.doses and case.started_on is None:
        errors.append(f"row {min(rows.values())}: patient_ref {case.register_ref}: doses without a treatment_start")
    if case.started_on is not None:
        errors += [f"row {rows[d]}: dose dated {d} is before the treatment start ({case.started_on})"
                   for d in sorted(case.doses) if d < case.started_on]
    ended = min((d for d in (case.died_on, case.transferred_out_on) if d is not None), default=None)
    if ended is not None:
        errors += [f"row {sputum_rows[r.on]}: a sputum result dated {r.on} is after the case ended ({ended})"
                   for r in case.sputum if r.on > ended]
    return errors


def parse(text: str, today: date) -> list[ImportedCase]:
    """The file's cases, or ImportError_ with every problem (`row N: …`, header = row 1)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise ImportError_([f"row 1: the header must be {','.join(HEADER)}"])
    cases: dict[str, ImportedCase] = {}
    dose_rows: dict[str, dict[date, int]] = {}
    sputum_rows: dict[str, dict[date, int]] = {}
    errors: list[str] = []
    for number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(HEADER):
            errors.append(f"row {number}: expected {len(HEADER)} fields, got {len(values)}")
            continue
        row = dict(zip(HEADER, values, strict=True))
        ref = row["patient_ref"].strip()
        try:
            if not ref or len(ref) > 64:
                raise _RowError("patient_ref must have 1 to 64 characters")
            details = _details(row, today)
            case = cases.get(ref)
            if case is None:
                case = cases[ref] = ImportedCase(ref, *details, first_row=number)
            else:
                seen = (case.name, case.sex, case.birth_year, case.phone, case.registered_on, case.regimen,
                        case.bacteriologically_confirmed)
                differing = [HEADER[i + 1] for i, (a, b) in enumerate(zip(seen, details, strict=True)) if a != b]
                if differing:
                    raise _RowError(f"patient_ref {ref}: {', '.join(differing)} differs from row {case.first_row}")
            _event(case, row, today)
            if row["event"].strip() in ("dose_taken", "dose_missed"):
                dose_rows.setdefault(ref, {})[parse_date(row["event_on"].strip())] = number
            if row["event"].strip() == "sputum":
                sputum_rows.setdefault(ref, {})[parse_date(row["event_on"].strip())] = number
        except _RowError as exc:
            errors.append(f"row {number}: {exc}")
    if not errors:
        for ref, case in cases.items():
            errors += _check_case(case, dose_rows.get(ref, {}), sputum_rows.get(ref, {}))
    if errors:
        raise ImportError_(sorted(errors, key=lambda e: int(e.split(":")[0].split()[1])))
    if not cases:
        raise ImportError_(["row 2: the file has no rows"])
    return list(cases.values())
