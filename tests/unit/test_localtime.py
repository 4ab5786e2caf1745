"""web.localtime: the one way pages print times (the facility's zone, never the server's)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from web.localtime import localtime


@pytest.mark.parametrize(("value", "fmt", "text"), [
    (datetime(2026, 11, 20, 17, 30, tzinfo=UTC), "datetime", "00:30 21/11/2026"),
    (datetime(2026, 11, 20, 17, 30, tzinfo=UTC), "date", "21/11/2026"),
    (datetime(2026, 11, 20, 17, 30, tzinfo=UTC), "time", "00:30"),
    (datetime(2026, 11, 20, 17, 30, tzinfo=UTC), "short", "00:30 21/11"),
    (datetime(2026, 11, 21, 0, 30, tzinfo=timezone(timedelta(hours=7))), "datetime", "00:30 21/11/2026"),
    (datetime(2026, 12, 31, 17, 0, tzinfo=UTC), "%Y", "2027"),
    (date(2026, 12, 1), "datetime", "01/12/2026"),
    (date(2026, 12, 1), "date", "01/12/2026"),
    (None, "datetime", ""),
])
def test_times_are_printed_in_vietnam(value: datetime | date | None, fmt: str, text: str) -> None:
    assert localtime(value, fmt) == text


def test_a_naive_time_is_refused_rather_than_read_in_the_servers_zone() -> None:
    with pytest.raises(ValueError):
        localtime(datetime(2026, 11, 20, 17, 30))
