"""Realistic signaling payloads that carry their send time, for relay benchmarks.

The offer is a Chrome-style audio+video SDP of about 3 KB whose `o=` session id is the sender's
`time.perf_counter_ns()`; an ICE candidate carries it as its foundation. Both fields are opaque
numbers to a relay, so the payloads stay valid-looking and the same size every time.
"""

from __future__ import annotations

from typing import Any

_OFFER_LINES = (
    "v=0",
    "o=- {stamp} 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:EsAw",
    "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:"
    "58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b 0d1c2b3a-4958-4a6b-9c8d-7e6f5a4b3c2d",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:3735928559 cname:k3J9xQ2vW8yZ1aB4",
    "a=ssrc:3735928559 msid:6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b 0d1c2b3a-4958-4a6b-9c8d-7e6f5a4b3c2d",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:EsAw",
    "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:"
    "58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendrecv",
    "a=msid:6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:98 VP9/90000",
    "a=rtcp-fb:98 goog-remb",
    "a=rtcp-fb:98 transport-cc",
    "a=rtcp-fb:98 ccm fir",
    "a=rtcp-fb:98 nack",
    "a=rtcp-fb:98 nack pli",
    "a=fmtp:98 profile-id=0",
    "a=rtpmap:99 rtx/90000",
    "a=fmtp:99 apt=98",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 goog-remb",
    "a=rtcp-fb:102 transport-cc",
    "a=rtcp-fb:102 ccm fir",
    "a=rtcp-fb:102 nack",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=ssrc-group:FID 2882400001 2882400002",
    "a=ssrc:2882400001 cname:k3J9xQ2vW8yZ1aB4",
    "a=ssrc:2882400001 msid:6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "a=ssrc:2882400002 cname:k3J9xQ2vW8yZ1aB4",
    "a=ssrc:2882400002 msid:6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
)
_OFFER = "\r\n".join(_OFFER_LINES) + "\r\n"
_STAMP_WIDTH = 20  # zero-padded, so every offer has the same length whatever the clock reads


def session_description(stamp_ns: int) -> str:
    """An offer SDP (~3 KB) whose session id is `stamp_ns`."""
    return _OFFER.replace("{stamp}", f"{stamp_ns:0{_STAMP_WIDTH}d}", 1)


def ice_candidate(stamp_ns: int) -> dict[str, Any]:
    """An RTCIceCandidateInit (a server-reflexive candidate) whose foundation is `stamp_ns`."""
    return {"candidate": f"candidate:{stamp_ns:0{_STAMP_WIDTH}d} 1 udp 1686052607 203.113.152.41 51234 "
                         "typ srflx raddr 192.168.1.23 rport 51234 generation 0 ufrag EsAw network-id 1 "
                         "network-cost 10",
            "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "EsAw"}


def sent_at_ns(message: dict[str, Any]) -> int:
    """The send time carried by a relayed `offer` (SDP session id) or `ice` (candidate foundation)."""
    if "sdp" in message:
        return int(message["sdp"].split("\r\n", 2)[1].split(" ", 2)[1])
    return int(message["candidate"]["candidate"].split(" ", 1)[0].removeprefix("candidate:"))
