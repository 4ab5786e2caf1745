"""The register commands' contract (issue 10), run as real subprocesses against the test PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import asyncpg

from care.htn_import import HEADER
from tests.integration.conftest import Network
from tests.integration.test_cli import base_env, donghanh

__all__ = ["base_env"]  # the fixture, shared with test_cli

REPORT_HEADER = ("facility_id,facility,month,registered,under_care,lost_to_follow_up,dead,denominator,controlled,"
                 "uncontrolled,missed_visit,visited_no_bp")


async def test_facilities_prints_the_csv_contract(base_env: dict[str, str], dsn: str, network: Network) -> None:
    run = await donghanh("facilities", env={**base_env, "DATABASE_URL": dsn})
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "id,level,name,parent_id"
    rows = list(csv.reader(lines[1:]))
    assert rows == [[str(network.province), "province", "Bệnh viện tỉnh", ""],
                    [str(network.district), "district", "Trung tâm Y tế huyện", str(network.province)],
                    [str(network.commune), "commune", "Trạm Y tế xã A", str(network.district)],
                    [str(network.sibling), "commune", "Trạm Y tế xã B", str(network.district)]]


def _register(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "so-tang-huyet-ap.csv"
    path.write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


async def test_import_then_report(base_env: dict[str, str], dsn: str, network: Network, pool: asyncpg.Pool,
                                  tmp_path: Path) -> None:
    env = {**base_env, "DATABASE_URL": dsn}
    path = _register(tmp_path,
                     "A1,Nguyễn Văn An,M,1960,0912345678,2025-01-05,2025-01-05,150,95",
                     "A1,Nguyễn Văn An,M,1960,0912345678,2025-01-05,10/02/2025,130,80",
                     "A2,Lò Thị Bình,nữ,1955,,2025-01-10,2025-02-20,,",
                     "A3,Giàng Thị Của,F,1970,,2025-02-01,,,")
    run = await donghanh("import", "htn", str(path), "--facility", str(network.commune), env=env)
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        f"imported 3 patients (3 new, 0 matched), 2 readings, 1 visits without BP into facility {network.commune}"]
    # Again: the same patients are matched by their register number; nothing is stored twice.
    again = await donghanh("import", "htn", str(path), "--facility", str(network.commune), env=env)
    assert again.out.startswith("imported 3 patients (0 new, 3 matched), 0 readings, 0 visits"), again.err
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM patient") == 3
        assert await con.fetchval("SELECT count(*) FROM bp_reading WHERE source = 'import'") == 2

    report = await donghanh("report", "htn", "--facility", str(network.district), "--month", "2025-04", env=env)
    assert report.code == 0, report.err
    lines = report.out.splitlines()
    assert lines[0] == REPORT_HEADER
    rows = {r["facility_id"]: r for r in csv.DictReader(io.StringIO(report.out))}
    assert list(rows) == [str(network.district), str(network.commune), str(network.sibling)]
    # April 2025: A1 controlled (Feb 130/80), A2 visited without BP (Feb); A3, registered in February, is
    # under care but not yet in the denominator (2 calendar months).
    district = rows[str(network.district)]
    assert (district["facility"], district["month"]) == ("Trung tâm Y tế huyện", "2025-04")
    assert [district[k] for k in REPORT_HEADER.split(",")[3:]] == ["3", "3", "0", "0", "2", "1", "0", "0", "1"]
    assert rows[str(network.commune)]["denominator"] == "2" and rows[str(network.sibling)]["registered"] == "0"

    as_json = await donghanh("report", "htn", "--facility", str(network.commune), "--month", "2025-04",
                             "--format", "json", env=env)
    assert as_json.code == 0, as_json.err
    data = json.loads(as_json.out)
    assert [list(d) for d in data] == [REPORT_HEADER.split(",")]
    assert data[0]["controlled"] == 1 and data[0]["month"] == "2025-04"


async def test_a_bad_register_imports_nothing_and_names_each_row(base_env: dict[str, str], dsn: str,
                                                                 network: Network, pool: asyncpg.Pool,
                                                                 tmp_path: Path) -> None:
    path = _register(tmp_path,
                     "A1,An,M,1960,,2025-01-05,2025-01-05,150,95",
                     "A2,Bình,M,1960,,2025-01-05,2025-01-05,95,150",
                     "A3,Của,Z,1960,,2025-01-05,,,")
    run = await donghanh("import", "htn", str(path), "--facility", str(network.commune),
                         env={**base_env, "DATABASE_URL": dsn})
    assert run.code == 1 and run.out == ""
    lines = run.err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["row 3", "row 4"]
    assert "systolic" in lines[0] and "Traceback" not in run.err
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM patient") == 0


async def test_report_errors_are_precise(base_env: dict[str, str], dsn: str, network: Network,
                                         tmp_path: Path) -> None:
    env = {**base_env, "DATABASE_URL": dsn}
    unknown = await donghanh("report", "htn", "--facility", "999999", "--month", "2025-04", env=env)
    assert unknown.code == 1 and "facility 999999 does not exist" in unknown.err
    bad_month = await donghanh("report", "htn", "--facility", str(network.commune), "--month", "2025-4", env=env)
    assert bad_month.code == 2 and "month must be YYYY-MM" in bad_month.err and "Traceback" not in bad_month.err
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(",".join(HEADER).encode() + b"\nA1,Nguy\xe9n,M,,,2025-01-05,,,\n")
    run = await donghanh("import", "htn", str(latin1), "--facility", str(network.commune), env=env)
    assert run.code == 1 and "not UTF-8" in run.err
    unknown_facility = await donghanh("import", "htn", str(_register(tmp_path, "A1,An,M,,,2025-01-05,,,")),
                                      "--facility", "999999", env=env)
    assert unknown_facility.code == 1 and "facility 999999 does not exist" in unknown_facility.err
