"""Typed helpers around aiortc's configuration and session descriptions.

Two aiortc defaults are unsafe for a server and are made explicit here:

- ``RTCConfiguration(iceServers=None)`` silently uses Google's public STUN
  server, so a server without Internet access would wait for that STUN
  transaction to time out while gathering. :func:`rtc_configuration` always
  passes a list; an empty one means host candidates only.
- aiortc parses STUN/TURN URLs lazily, when the first transceiver is created in
  the middle of a negotiation. :func:`ice_servers` parses them up front so a
  configuration mistake fails at startup, not on a patient's device check.

aiortc uses only the first ``stun:`` and the first ``turn:``/``turns:`` URL it
is given (turn over udp or tcp, turns over tcp, password credentials); others
are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypedDict

from aiortc import RTCConfiguration, RTCIceServer, RTCSessionDescription
from aiortc.rtcicetransport import parse_stun_turn_uri

from media.errors import MediaError, MediaErrorCode

#: An ICE server as configured: aiortc's dataclass or a browser-style mapping
#: ``{"urls": ..., "username": ..., "credential": ...}``.
IceServerLike = RTCIceServer | Mapping[str, object]

#: Upper bound on an SDP we agree to parse; browser offers are a few KiB.
MAX_SDP_BYTES = 64 * 1024


class SessionDescriptionDict(TypedDict):
    """A session description as JSON, the shape browsers use."""

    sdp: str
    type: str


def ice_server(server: IceServerLike) -> RTCIceServer:
    """Return ``server`` as an :class:`RTCIceServer`, checking its URLs.

    Raises :class:`ValueError` for a malformed entry: ICE servers come from the
    deployment's settings, so a bad one is a configuration bug.
    """
    if isinstance(server, RTCIceServer):
        result = server
    else:
        urls = server.get("urls")
        username = server.get("username")
        credential = server.get("credential")
        if isinstance(urls, str):
            url_list = [urls]
        elif isinstance(urls, list | tuple) and all(isinstance(u, str) for u in urls):
            url_list = [str(u) for u in urls]
        else:
            raise ValueError(f"ICE server needs 'urls' (a string or list), got {urls!r}")
        if username is not None and not isinstance(username, str):
            raise ValueError("ICE server 'username' must be a string")
        if credential is not None and not isinstance(credential, str):
            raise ValueError("ICE server 'credential' must be a string")
        result = RTCIceServer(urls=url_list, username=username, credential=credential)
    for url in [result.urls] if isinstance(result.urls, str) else result.urls:
        try:
            parse_stun_turn_uri(url)
        except ValueError as exc:
            raise ValueError(f"bad ICE server URL {url!r}: {exc}") from exc
    return result


def ice_servers(servers: Iterable[IceServerLike]) -> list[RTCIceServer]:
    """Normalise a list of ICE servers (see :func:`ice_server`)."""
    return [ice_server(s) for s in servers]


def rtc_configuration(servers: Iterable[IceServerLike] = ()) -> RTCConfiguration:
    """An :class:`RTCConfiguration` using exactly ``servers`` (none: host only)."""
    return RTCConfiguration(iceServers=ice_servers(servers))


def session_description(
    value: Mapping[str, object] | RTCSessionDescription, expected_type: str
) -> RTCSessionDescription:
    """Validate a session description received from a client.

    ``value`` is typically decoded JSON ``{"sdp": ..., "type": ...}``. Raises
    :class:`MediaError` with code ``bad_offer`` when it is not a description of
    ``expected_type`` ("offer" or "answer").
    """
    if isinstance(value, RTCSessionDescription):
        sdp: object = value.sdp
        kind: object = value.type
    else:
        sdp = value.get("sdp")
        kind = value.get("type")
    if kind != expected_type:
        raise MediaError(
            MediaErrorCode.BAD_OFFER, f'expected a description of type "{expected_type}", got {kind!r}'
        )
    if not isinstance(sdp, str) or not sdp.strip():
        raise MediaError(MediaErrorCode.BAD_OFFER, "description has no SDP")
    if len(sdp) > MAX_SDP_BYTES:
        raise MediaError(MediaErrorCode.BAD_OFFER, f"SDP longer than {MAX_SDP_BYTES} bytes")
    return RTCSessionDescription(sdp=sdp, type=expected_type)


def description_dict(description: RTCSessionDescription) -> SessionDescriptionDict:
    """The JSON shape of ``description``, ready to send to a browser."""
    return {"sdp": description.sdp, "type": description.type}
