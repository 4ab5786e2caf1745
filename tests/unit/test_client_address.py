"""The address the per-address socket cap counts: X-Forwarded-For only from a trusted reverse proxy."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from web.settings import ConfigError, Settings
from web.ws import client_address

DEFAULT = Settings().trusted_proxies


def request(peer: str, forwarded: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    r = make_mocked_request("GET", "/ws", headers=headers)
    r._transport_peername = (peer, 50000)  # what aiohttp reads request.remote from
    return r


@pytest.mark.parametrize("peer, forwarded, trusted, expected", [
    ("203.0.113.9", None, DEFAULT, "203.0.113.9"),
    ("203.0.113.9", "198.51.100.1", DEFAULT, "203.0.113.9"),  # not a proxy of ours: the header is ignored
    ("127.0.0.1", "198.51.100.1", DEFAULT, "198.51.100.1"),
    ("127.0.0.1", "10.0.0.5, 198.51.100.1", DEFAULT, "198.51.100.1"),  # the last hop is the proxy's own entry
    ("::1", "2001:db8::7", DEFAULT, "2001:db8::7"),
    ("172.18.0.1", "198.51.100.1", DEFAULT, "172.18.0.1"),
    ("172.18.0.1", "198.51.100.1", ("172.16.0.0/12",), "198.51.100.1"),  # Docker's port mapping, as in compose
])
def test_forwarded_for_counts_only_behind_a_trusted_proxy(peer: str, forwarded: str | None,
                                                          trusted: tuple[str, ...], expected: str) -> None:
    assert client_address(request(peer, forwarded), trusted) == expected


def test_trusted_proxies_are_checked_when_read() -> None:
    assert Settings.from_env({"DONGHANH_TRUSTED_PROXIES": "10.1.2.3, 172.16.0.0/12"}).trusted_proxies == (
        "10.1.2.3/32", "172.16.0.0/12")
    with pytest.raises(ConfigError, match="DONGHANH_TRUSTED_PROXIES"):
        Settings.from_env({"DONGHANH_TRUSTED_PROXIES": "proxy.local"})
