"""web.client: the browser's address through trusted proxies only; trusted-proxy configuration."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from web.client import client_address, is_loopback
from web.settings import ConfigError, Settings

LOCAL_PROXY = ("127.0.0.1", "::1")


def address(peer: str, *forwarded: str, trusted: tuple[str, ...] = LOCAL_PROXY) -> str:
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    request = make_mocked_request("GET", "/", headers=headers).clone(remote=peer)
    return client_address(request, trusted)


def test_a_direct_client_is_its_own_address_whatever_it_claims() -> None:
    assert address("198.51.100.4", "127.0.0.1") == "198.51.100.4"


def test_behind_the_local_proxy_the_appended_address_counts() -> None:
    assert address("127.0.0.1", "203.0.113.7") == "203.0.113.7"


def test_entries_the_client_wrote_before_the_proxys_are_ignored() -> None:
    assert address("127.0.0.1", "127.0.0.1, 10.1.1.1, 203.0.113.7") == "203.0.113.7"
    assert address("127.0.0.1", "1.2.3.4", "203.0.113.7") == "203.0.113.7"


def test_a_chain_of_trusted_proxies_is_walked_through() -> None:
    trusted = ("127.0.0.1", "10.0.0.0/8")
    assert address("127.0.0.1", "203.0.113.7, 10.0.0.5", trusted=trusted) == "203.0.113.7"


def test_a_local_request_without_forwarding_is_local() -> None:
    assert address("127.0.0.1") == "127.0.0.1" and is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("203.0.113.7") and not is_loopback("unknown")


def test_garbage_in_forwarded_for_leaves_the_proxys_view() -> None:
    assert address("127.0.0.1", "not-an-address") == "127.0.0.1"


def test_ports_and_mapped_addresses_are_normalised() -> None:
    assert address("127.0.0.1", "203.0.113.7:5555") == "203.0.113.7"
    assert address("127.0.0.1", "[2001:db8::1]:443") == "2001:db8::1"
    assert address("::ffff:198.51.100.4") == "198.51.100.4"


def test_trusted_proxies_from_the_environment() -> None:
    assert Settings.from_env({}).trusted_proxies == ("127.0.0.1", "::1")
    assert Settings.from_env({"DONGHANH_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}).trusted_proxies == ("10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match="^DONGHANH_TRUSTED_PROXIES: .*'proxy.example'"):
        Settings.from_env({"DONGHANH_TRUSTED_PROXIES": "proxy.example"})


def test_throttle_switch_from_the_environment() -> None:
    assert Settings.from_env({}).signin_throttle is True
    assert Settings.from_env({"DONGHANH_SIGNIN_THROTTLE": "false"}).signin_throttle is False
