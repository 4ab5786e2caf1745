"""The typed signaling protocol: one JSON object per websocket message, `{"type": ..., "id": ..., ...}`.

Every client message is validated on receipt (msgspec); anything wrong becomes a `ProtocolError`
with a stable code and the offending message id, which the hub sends back as an `error`.
Every message is documented in docs/protocol.md.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec

from care.text import nul_path
from signaling.errors import SignalingError

MessageId = Annotated[str, msgspec.Meta(max_length=64)]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=32_000)]
ChatText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
# A room member's socket session (from `joined.peers`, `peer_joined`): where a description or candidate goes.
PeerSession = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Client(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    id: MessageId = ""


class Hello(_Client, tag="hello"):
    """First message on every socket. Patients send their join-link token; staff are known by cookie."""

    token: Token | None = None


class Join(_Client, tag="join"):
    room: uuid.UUID


class Leave(_Client, tag="leave"):
    room: uuid.UUID


class Offer(_Client, tag="offer"):
    room: uuid.UUID
    sdp: Sdp
    to: PeerSession | None = None  # the peer it is for; optional only while the room has one other member


class Answer(_Client, tag="answer"):
    room: uuid.UUID
    sdp: Sdp
    to: PeerSession | None = None  # the peer it is for; optional only while the room has one other member


class IceCandidate(msgspec.Struct, forbid_unknown_fields=False, frozen=True):
    """As RTCIceCandidateInit; unknown fields from newer browsers are ignored, not relayed."""

    candidate: Annotated[str, msgspec.Meta(max_length=1024)]
    sdpMid: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # noqa: N815 (WebRTC's own name)
    sdpMLineIndex: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None  # noqa: N815
    usernameFragment: Annotated[str, msgspec.Meta(max_length=256)] | None = None  # noqa: N815


class Ice(_Client, tag="ice"):
    """A trickled candidate; `candidate: null` means end of candidates."""

    room: uuid.UUID
    candidate: IceCandidate | None = None
    to: PeerSession | None = None


class Chat(_Client, tag="chat"):
    room: uuid.UUID
    text: ChatText


class Media(_Client, tag="media"):
    """The sender's media state (camera off, muted, audio-only), shown to the other side."""

    room: uuid.UUID
    audio: bool
    video: bool


class ClaimNext(_Client, tag="claim_next"):
    """A doctor takes the next patient, or the chosen `entry`."""

    entry: uuid.UUID | None = None


class End(_Client, tag="end"):
    """The doctor ends the consultation (a patient's socket is refused: patients `leave`)."""

    room: uuid.UUID


class CallBack(_Client, tag="call_back"):
    """The doctor calls back a patient who left the call: their open pages are asked to join again."""

    room: uuid.UUID


class AckAlert(_Client, tag="ack_alert"):
    """A staff member has seen a danger alert and takes it in hand."""

    alert: uuid.UUID


class Ping(_Client, tag="ping"):
    pass


ClientMessage = (Hello | Join | Leave | Offer | Answer | Ice | Chat | Media | ClaimNext | End | CallBack | AckAlert
                 | Ping)

CLIENT_TYPES: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag) for cls in (Hello, Join, Leave, Offer, Answer, Ice, Chat, Media, ClaimNext,
                                               End, CallBack, AckAlert, Ping)
)

_json_decoder = msgspec.json.Decoder()
# The hot path: valid messages decode straight into their struct in one pass.
_typed_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


class ProtocolError(SignalingError):
    """A message that could not be accepted; `ref` is the id the client gave it, if any."""


def _ref_of(obj: Any) -> str:
    if isinstance(obj, dict):
        ref = obj.get("id")
        if isinstance(ref, str):
            return ref[:64]
        if isinstance(ref, int) and not isinstance(ref, bool):
            return str(ref)
    return ""


def decode(raw: str | bytes, *, max_bytes: int) -> ClientMessage:
    """Parse and validate one client message, or raise ProtocolError(code, message, ref)."""
    # UTF-8 takes 1 to 4 bytes per character: text of at most a quarter of the limit is never counted.
    if not isinstance(raw, str) or 4 * len(raw) > max_bytes:
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > max_bytes:
            raise ProtocolError("too_large", f"message is {size} bytes; the limit is {max_bytes}")
    try:
        typed: ClientMessage = _typed_decoder.decode(raw)
        if isinstance(typed, Offer | Answer):
            # Every string of these is a known field: a NUL would be in one of them. A one-character search
            # of each is far cheaper than searching a ~3 KB description's JSON for the escape.
            if "\x00" in typed.sdp or "\x00" in typed.id or (typed.to is not None and "\x00" in typed.to):
                _refuse_nul(raw)
        else:
            _refuse_nul(raw)
        return typed
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass  # decode again, generically, to say precisely what is wrong and echo the message's id
    try:
        obj = _json_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's answer to "[[[[…" a few thousand deep: fits in the size limit
        raise ProtocolError("bad_json", "not valid JSON: nested too deeply") from None
    ref = _ref_of(obj)
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object", ref)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "a message needs a string \"type\"", ref)
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}", ref)
    try:
        message: ClientMessage = msgspec.convert(obj, ClientMessage)
    except msgspec.ValidationError as exc:
        raise ProtocolError("invalid", f"invalid {kind} message: {exc}", ref) from None
    _refuse_nul(raw)
    return message


def _refuse_nul(raw: str | bytes) -> None:
    """A valid message with a NUL character in a string (chat text, its id, …) is `invalid`: PostgreSQL's
    text refuses it, and nobody types one. JSON carries NUL only as the escape \\u0000: one substring
    search on the hot path, a full walk only when it is there."""
    if b"\\u0000" not in raw if isinstance(raw, bytes) else "\\u0000" not in raw:
        return
    obj = _json_decoder.decode(raw)
    where = nul_path(obj)
    if where is not None:
        raise ProtocolError("invalid", f"invalid {obj.get('type')} message: `{where[:40]}` contains a NUL "
                                       "character", _ref_of(obj))


def encode_value(value: Any) -> str:
    """One JSON value (a string, a candidate) as it appears inside an encoded message."""
    return _encoder.encode(value).decode()


def encode(message: dict[str, Any]) -> str:
    """Serialise a server message (a dict with "type") to JSON text."""
    return _encoder.encode(message).decode()
