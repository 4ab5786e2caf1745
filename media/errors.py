"""The exception family of the media package, mapped to JSON errors by ``web``."""

from __future__ import annotations

from enum import StrEnum


class MediaErrorCode(StrEnum):
    """Machine-readable reason of a :class:`MediaError`, stable for clients."""

    BUSY = "busy"
    """The server runs as many media peers as it is allowed to; retry later."""
    BAD_OFFER = "bad_offer"
    """The session description sent by the client is missing or unusable."""
    NOT_FOUND = "not_found"
    """No live media peer has the given id (it may have closed itself)."""
    CLOSED = "closed"
    """The media peer was closed before the operation could complete."""


class MediaError(Exception):
    """A media operation failed for a reason the client should hear about.

    ``code`` is a :class:`MediaErrorCode` (it compares equal to its string, so
    ``err.code == "busy"`` holds); ``message`` is for humans and logs.
    """

    def __init__(self, code: MediaErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
