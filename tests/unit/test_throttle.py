"""web.throttle rules at every boundary, and the device cookies of web.signin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from web.signin import DeviceCookies
from web.throttle import ACCOUNT, ADDRESS, ThrottleRule

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("failures", "seconds"), [
    (0, 0), (1, 0), (3, 0),                     # free tries
    (4, 1), (5, 2), (6, 4), (7, 8), (8, 16), (9, 32),  # growing waits
    (10, 900), (11, 900), (50, 900),            # the lock, again at every further failure
])
def test_account_rule(failures: int, seconds: int) -> None:
    assert ACCOUNT.delay(failures) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("failures", "seconds"), [(20, 0), (21, 1), (26, 32), (27, 60), (99, 60), (100, 900)])
def test_address_rule_waits_are_capped_before_its_lock(failures: int, seconds: int) -> None:
    assert ADDRESS.delay(failures) == timedelta(seconds=seconds)


def test_asvs_at_most_100_guesses_an_hour_per_account() -> None:
    # Worst case: an attacker tries the moment each wait ends, for one hour.
    rule, at, failures, guesses = ACCOUNT, T0, 0, 0
    while at < T0 + timedelta(hours=1):
        failures = rule.count_after(failures, at, at)
        guesses += 1
        at += rule.delay(failures)
    assert guesses <= 100


def test_a_quiet_hour_forgets_the_failures() -> None:
    last = T0
    assert ACCOUNT.count_after(9, last, last + timedelta(minutes=59, seconds=59)) == 10
    assert ACCOUNT.count_after(9, last, last + timedelta(hours=1)) == 1


def test_blocked_until() -> None:
    assert ACCOUNT.blocked_until(3, T0) is None
    assert ACCOUNT.blocked_until(4, T0) == T0 + timedelta(seconds=1)
    rule = ThrottleRule(free=0, lock_after=2, lock=timedelta(minutes=5), max_delay=timedelta(seconds=10),
                        forget_after=timedelta(hours=1))
    assert rule.blocked_until(2, T0) == T0 + timedelta(minutes=5)


def test_a_device_cookie_is_bound_to_its_account_and_key() -> None:
    devices = DeviceCookies("secret-one")
    cookie = devices.remember(None, "bacsi.lan")
    assert devices.trusted_nonce(cookie, "bacsi.lan") is not None
    assert devices.trusted_nonce(cookie, "bacsi.minh") is None
    assert DeviceCookies("secret-two").trusted_nonce(cookie, "bacsi.lan") is None
    nonce, _, mac = cookie.partition(".")
    assert devices.trusted_nonce(f"{nonce}.{'0' * len(mac)}", "bacsi.lan") is None
    assert devices.trusted_nonce("garbage~.~a.b.c", "bacsi.lan") is None


def test_a_shared_browser_remembers_a_few_accounts_and_keeps_each_ones_entry() -> None:
    devices = DeviceCookies("secret")
    cookie = devices.remember(None, "bacsi.lan")
    lan_nonce = devices.trusted_nonce(cookie, "bacsi.lan")
    cookie = devices.remember(cookie, "bacsi.minh")
    assert devices.trusted_nonce(cookie, "bacsi.lan") == lan_nonce
    assert devices.trusted_nonce(cookie, "bacsi.minh") is not None
    assert devices.remember(cookie, "bacsi.lan").endswith(cookie.split("~")[0])  # Lan's entry moves last
    for n in range(10):
        cookie = devices.remember(cookie, f"nv.{n}")
    assert len(cookie.split("~")) == 5 and devices.trusted_nonce(cookie, "bacsi.lan") is None
