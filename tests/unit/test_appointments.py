"""care.appointments: link windows at every boundary, reminder times, the schedule's marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from care.appointments import (
    OPENS_BEFORE,
    REMINDER_MIN_GAP,
    Attendance,
    ReminderKind,
    Window,
    WindowState,
    appointment_window,
    attendance,
    reminder_times,
    window_state,
)

SLOT = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)  # 14:30 in Hà Nội
LATE = timedelta(minutes=60)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(("now", "expected"), [
    (SLOT - timedelta(days=1), WindowState.too_early),
    (SLOT - OPENS_BEFORE - SECOND, WindowState.too_early),  # 13:59:59
    (SLOT - OPENS_BEFORE, WindowState.open),  # 14:00:00 exactly: open
    (SLOT - OPENS_BEFORE + SECOND, WindowState.open),
    (SLOT, WindowState.open),
    (SLOT + LATE - SECOND, WindowState.open),  # 15:29:59
    (SLOT + LATE, WindowState.too_late),  # 15:30:00 exactly: closed
    (SLOT + LATE + SECOND, WindowState.too_late),
    (SLOT + timedelta(days=1), WindowState.too_late),
])
def test_window_state_at_every_boundary(now: datetime, expected: WindowState) -> None:
    state, window = window_state(SLOT, now, after=LATE)
    assert state is expected
    assert window == Window(SLOT - timedelta(minutes=30), SLOT + LATE)


def test_the_window_opens_30_minutes_before_by_default() -> None:
    assert OPENS_BEFORE == timedelta(minutes=30)
    _, window = window_state(SLOT, SLOT)
    assert window.opens_at == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("late", [timedelta(minutes=15), timedelta(hours=2), timedelta(hours=8)])
def test_the_late_bound_is_configurable(late: timedelta) -> None:
    assert window_state(SLOT, SLOT + late - SECOND, after=late)[0] is WindowState.open
    assert window_state(SLOT, SLOT + late, after=late)[0] is WindowState.too_late


def test_a_window_that_does_not_close_after_the_slot_is_refused() -> None:
    with pytest.raises(ValueError):
        appointment_window(SLOT, after=timedelta(0))
    with pytest.raises(ValueError):
        appointment_window(SLOT, before=timedelta(minutes=-1))


def test_reminders_the_day_before_and_15_minutes_before() -> None:
    booked = SLOT - timedelta(days=3)
    assert reminder_times(SLOT, booked) == [
        (ReminderKind.day_before, SLOT - timedelta(days=1)),
        (ReminderKind.fifteen_minutes, SLOT - timedelta(minutes=15)),
    ]


@pytest.mark.parametrize(("booked_before_slot", "kinds"), [
    (timedelta(days=1) + REMINDER_MIN_GAP, [ReminderKind.day_before, ReminderKind.fifteen_minutes]),
    (timedelta(days=1) + REMINDER_MIN_GAP - SECOND, [ReminderKind.fifteen_minutes]),
    (timedelta(hours=3), [ReminderKind.fifteen_minutes]),
    (timedelta(minutes=15) + REMINDER_MIN_GAP, [ReminderKind.fifteen_minutes]),
    (timedelta(minutes=15) + REMINDER_MIN_GAP - SECOND, []),
    (timedelta(minutes=20), []),
])
def test_a_reminder_too_close_to_the_booking_is_left_out(booked_before_slot: timedelta,
                                                         kinds: list[ReminderKind]) -> None:
    assert [k for k, _ in reminder_times(SLOT, SLOT - booked_before_slot)] == kinds


@pytest.mark.parametrize(("now", "queue_status", "revoked", "mark"), [
    (SLOT - timedelta(hours=1), None, False, Attendance.upcoming),
    (SLOT, None, False, Attendance.upcoming),
    (SLOT + SECOND, None, False, Attendance.late),
    (SLOT + LATE - SECOND, None, False, Attendance.late),
    (SLOT + LATE, None, False, Attendance.no_show),
    (SLOT + SECOND, "waiting", False, Attendance.waiting),
    (SLOT + LATE + SECOND, "waiting", False, Attendance.waiting),  # checked in in time, the doctor is late
    (SLOT, "claimed", False, Attendance.in_call),
    (SLOT, "in_call", False, Attendance.in_call),
    (SLOT + LATE, "done", False, Attendance.done),
    (SLOT - timedelta(hours=1), None, True, Attendance.cancelled),
])
def test_schedule_marks(now: datetime, queue_status: str | None, revoked: bool, mark: Attendance) -> None:
    assert attendance(slot_at=SLOT, closes_at=SLOT + LATE, now=now, queue_status=queue_status,
                      revoked=revoked) is mark


def test_a_walk_in_is_never_late_only_a_no_show_once_its_link_closes() -> None:
    closes = SLOT + timedelta(hours=24)
    assert attendance(slot_at=None, closes_at=closes, now=SLOT + timedelta(hours=5),
                      queue_status=None) is Attendance.upcoming
    assert attendance(slot_at=None, closes_at=closes, now=closes, queue_status=None) is Attendance.no_show
