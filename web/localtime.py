"""Times as the facility reads them: one helper, one jinja filter (`localtime`), used by every page.

Every facility we serve is in Vietnam (`care.appointments.FACILITY_TZ`, Asia/Ho_Chi_Minh). The server's
own time zone never matters: times from PostgreSQL are aware (UTC) and are converted here, and "today"
is the facility's today, not the server's.
"""

from __future__ import annotations

from datetime import date, datetime

import jinja2
from aiohttp import web

from care.appointments import FACILITY_TZ
from web.keys import clock_key

FORMATS = {
    "datetime": "%H:%M %d/%m/%Y",
    "date": "%d/%m/%Y",
    "time": "%H:%M",
    "short": "%H:%M %d/%m",
}


def localtime(value: datetime | date | None, fmt: str = "datetime") -> str:
    """A time in the facility's zone ("14:30 25/11/2026"), a date as "25/11/2026"; "" for None.
    `fmt` is one of FORMATS' names or a strftime pattern. A naive datetime is refused: it would be read in
    whatever zone the server happens to be in."""
    if value is None:
        return ""
    pattern = FORMATS.get(fmt, fmt)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a timezone-aware time is needed")
        return value.astimezone(FACILITY_TZ).strftime(pattern)
    return value.strftime(FORMATS["date"] if fmt in ("datetime", "short") else pattern)


def facility_today(request: web.Request) -> date:
    """Today at the facility (by the application clock)."""
    return request.app[clock_key].now().astimezone(FACILITY_TZ).date()


def install(environment: jinja2.Environment) -> None:
    environment.filters["localtime"] = localtime
