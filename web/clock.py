"""The application's clock. Real time in production; tests move it (appointment windows, reminders)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """`now()` is UTC wall time plus an offset that only tests change."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (or back, with a negative delta): for tests and demos only."""
        self._offset += delta
