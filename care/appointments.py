"""Appointment windows and reminders: when a patient's link works, and when we remind them.

A link for an appointment opens 30 minutes before the slot (time to check the camera, consent and
check in) and closes a configurable time after it (`DONGHANH_APPOINTMENT_LATE`, default 60 minutes),
so a patient who is a little late is still seen and one who comes the next day is told to ask again.
The window is half-open: [opens_at, closes_at).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "OPENS_BEFORE", "DEFAULT_LATE", "REMINDER_MIN_GAP", "FACILITY_TZ", "WindowState", "Window",
    "ReminderKind", "Attendance", "appointment_window", "window_state", "reminder_times", "attendance",
]

OPENS_BEFORE = timedelta(minutes=30)
DEFAULT_LATE = timedelta(minutes=60)
# A reminder falling this soon after the booking is skipped: the invitation SMS has only just arrived.
REMINDER_MIN_GAP = timedelta(minutes=30)
# Every facility we serve is in Vietnam (UTC+7, no daylight saving); times are shown in this zone.
FACILITY_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class WindowState(StrEnum):
    too_early = "too_early"
    open = "open"
    too_late = "too_late"


@dataclass(frozen=True)
class Window:
    """When a link may be used: [opens_at, closes_at)."""

    opens_at: datetime
    closes_at: datetime

    def state(self, now: datetime) -> WindowState:
        if now < self.opens_at:
            return WindowState.too_early
        if now >= self.closes_at:
            return WindowState.too_late
        return WindowState.open


def appointment_window(slot_at: datetime, *, before: timedelta = OPENS_BEFORE,
                       after: timedelta = DEFAULT_LATE) -> Window:
    """The window of an appointment at `slot_at`: from `before` ahead of it to `after` past it."""
    if before < timedelta(0) or after <= timedelta(0):
        raise ValueError("the window must open before (or at) the slot and close after it")
    return Window(slot_at - before, slot_at + after)


def window_state(slot_at: datetime, now: datetime, *, before: timedelta = OPENS_BEFORE,
                 after: timedelta = DEFAULT_LATE) -> tuple[WindowState, Window]:
    """too_early | open | too_late for an appointment at `slot_at`, with the window (its opening time)."""
    window = appointment_window(slot_at, before=before, after=after)
    return window.state(now), window


class ReminderKind(StrEnum):
    day_before = "reminder_day_before"
    fifteen_minutes = "reminder_15_min"


REMINDER_OFFSETS: dict[ReminderKind, timedelta] = {
    ReminderKind.day_before: timedelta(days=1),
    ReminderKind.fifteen_minutes: timedelta(minutes=15),
}


def reminder_times(slot_at: datetime, booked_at: datetime) -> list[tuple[ReminderKind, datetime]]:
    """The reminders to schedule for an appointment booked at `booked_at`: (kind, due time), in order.

    24 hours and 15 minutes before the slot; one that would fall less than REMINDER_MIN_GAP after the
    booking is left out (the patient has just received the invitation).
    """
    due = [(kind, slot_at - offset) for kind, offset in REMINDER_OFFSETS.items()]
    return sorted(((k, at) for k, at in due if at >= booked_at + REMINDER_MIN_GAP), key=lambda item: item[1])


class Attendance(StrEnum):
    """What the doctor's day shows for one invitation."""

    upcoming = "upcoming"
    late = "late"  # the slot has passed, the link still works, the patient has not checked in
    no_show = "no_show"  # the window closed without a check-in
    waiting = "waiting"  # in the waiting room now
    in_call = "in_call"
    done = "done"
    cancelled = "cancelled"


def attendance(*, slot_at: datetime | None, closes_at: datetime, now: datetime, queue_status: str | None,
               revoked: bool = False) -> Attendance:
    """The mark for an invitation, from its slot (None for a walk-in) and its latest queue entry's status."""
    if queue_status == "waiting":
        return Attendance.waiting
    if queue_status in ("claimed", "in_call"):
        return Attendance.in_call
    if queue_status == "done":
        return Attendance.done
    if revoked:
        return Attendance.cancelled
    if now >= closes_at:
        return Attendance.no_show
    if slot_at is not None and now > slot_at:
        return Attendance.late
    return Attendance.upcoming
