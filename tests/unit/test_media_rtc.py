"""ICE server configuration and session description checks."""

from __future__ import annotations

import pytest
from aiortc import RTCIceServer, RTCSessionDescription

from media.errors import MediaError, MediaErrorCode
from media.rtc import MAX_SDP_BYTES, ice_server, ice_servers, rtc_configuration, session_description

pytestmark = pytest.mark.media


def test_browser_style_ice_servers_become_aiortc_ones() -> None:
    servers = ice_servers(
        [
            {"urls": "stun:stun.example.org:3478"},
            {"urls": ["turn:turn.example.org:3478?transport=udp"], "username": "u", "credential": "p"},
        ]
    )
    assert servers == [
        RTCIceServer(urls=["stun:stun.example.org:3478"]),
        RTCIceServer(urls=["turn:turn.example.org:3478?transport=udp"], username="u", credential="p"),
    ]


def test_aiortc_ice_servers_pass_through() -> None:
    server = RTCIceServer(urls="stun:stun.example.org")
    assert ice_server(server) is server


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"urls": 3},
        {"urls": "http://example.org"},
        {"urls": "turn:"},
        {"urls": "turn:t.example.org", "username": 1},
        RTCIceServer(urls="stun:"),
    ],
)
def test_malformed_ice_servers_fail_early(bad: dict[str, object] | RTCIceServer) -> None:
    with pytest.raises(ValueError):
        ice_server(bad)


def test_no_ice_servers_means_host_candidates_only_not_aiortcs_default_stun() -> None:
    assert rtc_configuration().iceServers == []


def test_a_valid_offer_is_accepted_as_a_dict_or_a_description() -> None:
    offer = {"sdp": "v=0\r\n", "type": "offer"}
    assert session_description(offer, "offer") == RTCSessionDescription(sdp="v=0\r\n", type="offer")
    described = RTCSessionDescription(sdp="v=0\r\n", type="offer")
    assert session_description(described, "offer") == described


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"sdp": "v=0\r\n"},
        {"sdp": "v=0\r\n", "type": "answer"},
        {"sdp": "", "type": "offer"},
        {"sdp": 42, "type": "offer"},
        {"sdp": "v=0\r\n" + "a=x\r\n" * MAX_SDP_BYTES, "type": "offer"},
    ],
)
def test_unusable_offers_are_refused_with_bad_offer(bad: dict[str, object]) -> None:
    with pytest.raises(MediaError) as refused:
        session_description(bad, "offer")
    assert refused.value.code == MediaErrorCode.BAD_OFFER
    assert str(refused.value.code) == "bad_offer"
