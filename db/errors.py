"""The one exception family of the data layer; the web layer maps codes to HTTP/JSON errors."""

from __future__ import annotations


class DbError(Exception):
    """A use-case failure the caller can show: `code` is stable, `message` says what state things were in."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(DbError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__("not_found", f"{what} {ident} does not exist")


class Conflict(DbError):
    """The row is not in a state that allows the change (double claim, stale note version…)."""
