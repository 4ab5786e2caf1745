"""How failed sign-ins slow down the next attempt (OWASP ASVS V2.2.1): pure rules, no I/O.

A subject (an account, a client address, an account on a trusted device) counts its failed attempts.
The first few are answered at once; then each failure makes the subject wait before its next attempt,
twice as long each time; past a threshold it is locked for a while. A quiet hour forgets the count.
Every attempt counts as a failure the moment it starts (so parallel guesses cannot slip past the
count while their passwords are being checked); a successful sign-in takes it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThrottleRule:
    free: int                 # failures answered without any wait
    lock_after: int           # from this many failures on, each one locks the subject for `lock`
    lock: timedelta
    max_delay: timedelta      # the longest of the growing waits before the lock
    forget_after: timedelta   # failures older than this (since the last one) are forgotten

    def delay(self, failures: int) -> timedelta:
        """The wait imposed after the `failures`-th failure in a row: 0, then 1 s, 2 s, 4 s…, then the lock."""
        if failures <= self.free:
            return timedelta(0)
        if failures >= self.lock_after:
            return self.lock
        doubling = min(failures - self.free - 1, 40)  # 2**40 s is past any max_delay; timedelta would overflow
        return min(timedelta(seconds=2 ** doubling), self.max_delay)

    def count_after(self, failures: int, last_failure_at: datetime, now: datetime) -> int:
        """The count a new failure at `now` brings the subject to."""
        return (0 if now - last_failure_at >= self.forget_after else failures) + 1

    def blocked_until(self, failures: int, at: datetime) -> datetime | None:
        delay = self.delay(failures)
        return at + delay if delay else None


# One account, from browsers it has not signed in on before: 3 free tries, waits of 1–32 s, then a
# 15-minute lock from the 10th failure; at most ~13 guesses in the first hour, 4 an hour after that
# (ASVS V2.2.1 asks for no more than 100 an hour).
ACCOUNT = ThrottleRule(free=3, lock_after=10, lock=timedelta(minutes=15), max_delay=timedelta(minutes=1),
                       forget_after=timedelta(hours=1))

# One client address: a commune station puts all its staff behind one NAT, and mobile carriers put
# whole provinces behind a few addresses, so the address allows far more before slowing down, and
# staff signing in from a browser they have used before are not counted against it at all.
ADDRESS = ThrottleRule(free=20, lock_after=100, lock=timedelta(minutes=15), max_delay=timedelta(minutes=1),
                       forget_after=timedelta(hours=1))
