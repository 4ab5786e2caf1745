"""HTTP errors with a stable code: every handler's bad input ends here, as JSON or as a page."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from db.errors import Conflict, DbError, NotFound

# Stable error code → HTTP status.
STATUS: dict[str, int] = {
    "not_found": 404,
    "forbidden": 403,
    "not_authenticated": 401,
    "csrf": 403,
    "invalid": 400,
    "bad_json": 400,
    "link_invalid": 404,
    "link_expired": 410,
    "link_revoked": 410,
    "link_finished": 410,
    "consent_required": 409,
    "too_early": 409,
    "too_late": 410,
    "slot_in_past": 400,
    "slot_taken": 409,
}


class ApiError(Exception):
    """A request we refuse, with a code the client can act on and a message a person can read."""

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status or STATUS.get(code, 400)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


def from_db(exc: DbError) -> ApiError:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    return ApiError(exc.code, exc.message, status=status)


def json_error(exc: ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)
