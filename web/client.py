"""Who is on the other end of a request: the client's address, seen through trusted reverse proxies.

Behind the documented TLS proxy every request arrives from 127.0.0.1; the browser's address is the
right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left were
written by the client and prove nothing). Sign-in throttling and /healthz details depend on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from aiohttp import hdrs, web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=16)
def parse_networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    """`127.0.0.1`, `::1`, `10.0.0.0/8` → networks; ValueError names the bad entry."""
    networks: list[Network] = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {spec!r}") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The client's IP address as text ("unknown" when the transport does not say)."""
    peer = _address(request.remote or "")
    if peer is None:
        return "unknown"
    networks = parse_networks(trusted_proxies)
    if not _trusted(peer, networks):
        return str(peer)
    hops = [part for value in request.headers.getall(hdrs.X_FORWARDED_FOR, ()) for part in value.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # garbage written by the client itself: the last proxy's view stands
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


def is_loopback(address: str) -> bool:
    parsed = _address(address)
    return parsed is not None and parsed.is_loopback
