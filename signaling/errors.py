"""The one exception family of the signaling package, sent to clients as `error` messages."""

from __future__ import annotations


class SignalingError(Exception):
    """`code` is stable and documented in docs/protocol.md; `ref` is the offending message id."""

    def __init__(self, code: str, message: str, ref: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def as_message(self) -> dict[str, str]:
        return {"type": "error", "code": self.code, "message": self.message, "id": self.ref}
