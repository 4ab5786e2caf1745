"""The address a request came from, for per-client limits: the peer, or — when the peer is one of our
own reverse proxies (`DONGHANH_TRUSTED_PROXIES`) — the last address in X-Forwarded-For that is not one
of them. A client cannot choose its address by sending the header itself: only a trusted peer's header
is read, from the right, where our proxies appended what they saw."""

from __future__ import annotations

import ipaddress

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """"127.0.0.1, 10.0.0.0/8" → networks; ValueError names the bad entry."""
    out: list[Network] = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"not an address or network: {part!r}") from None
    return tuple(out)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    """The client's address as far as we can trust it ("unknown" if the transport has none)."""
    peer = request.remote or "unknown"
    if not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: fall back to the proxy itself
    return peer
