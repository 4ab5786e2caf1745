"""Attachments of a request for an opinion over HTTP: upload (multipart, streamed to disk, type by content),
list, download (PDFs as attachments), thumbnails and an "enhance" copy for photos (OpenCV, off the loop).
Only people on the case: the requesting facility's clinicians and the specialists offered it."""

from __future__ import annotations

import asyncio
import hashlib
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, web

from care.access import Action
from care.attachments import AttachmentError, Kind, clean_name
from db import escalation_attachments as attachments_db
from db.errors import DbError
from media import enhance as imaging
from web.attachment_store import AttachmentStore
from web.errors import ApiError, from_db
from web.escalation_routes import _load
from web.keys import clock_key, pool_key, settings_key
from web.staff_routes import require_api_session

attachment_store_key = web.AppKey("attachment_store_key", AttachmentStore)


def _view(a: attachments_db.Attachment) -> dict[str, Any]:
    base = f"/api/escalations/{a.escalation_id}/attachments/{a.id}"
    return {"id": str(a.id), "kind": a.kind.value, "size_bytes": a.size_bytes, "sha256": a.sha256,
            "file_name": a.file_name, "enhanced_of": str(a.enhanced_of) if a.enhanced_of else None,
            "created_at": a.created_at.isoformat(), "url": base,
            "thumbnail_url": f"{base}/thumbnail" if a.kind.is_image else None}


def _aid(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["aid"])
    except ValueError:
        raise ApiError("not_found", "no such attachment") from None


async def upload(request: web.Request) -> web.Response:
    session = await require_api_session(request, write=True)
    store = request.app[attachment_store_key]
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.read_escalation)
        if await attachments_db.count(con, e.id) >= 10:
            raise ApiError("too_many_files", "a request carries at most 10 files", status=409)
    if not request.content_type.startswith("multipart/"):
        raise ApiError("invalid", "send the file as multipart/form-data, field `file`")
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise ApiError("invalid", "send the file as multipart/form-data, field `file`", field="file")
    attachment_id = uuid.uuid4()
    try:
        name = clean_name(part.filename or "")
        kind, size, sha256, path = await store.receive(part, e.id, attachment_id)
    except AttachmentError as refused:
        raise ApiError(refused.code, refused.message, field="file",
                       status=413 if refused.code == "file_too_large" else 400) from None
    record = attachments_db.Attachment(attachment_id, e.id, session.staff.id, kind, size, sha256, name, None,
                                       request.app[clock_key].now())
    try:
        async with request.app[pool_key].acquire() as con:
            saved = await attachments_db.add(con, record)
    except DbError as exc:
        path.unlink(missing_ok=True)  # the row was refused: no orphan file
        raise from_db(exc) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return web.json_response(_view(saved), status=201)


async def listing(request: web.Request) -> web.Response:
    session = await require_api_session(request)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.read_escalation)
        found = await attachments_db.for_escalation(con, e.id)
    return web.json_response({"attachments": [_view(a) for a in found]})


async def _attachment(request: web.Request) -> attachments_db.Attachment:
    session = await require_api_session(request)
    async with request.app[pool_key].acquire() as con:
        e = await _load(request, con, session.staff, Action.read_escalation)
        found = await attachments_db.get(con, e.id, _aid(request))
        if found is None:
            raise ApiError("not_found", "no such attachment")
        await attachments_db.record_read(con, session.staff.id, found)
    return found


async def download(request: web.Request) -> web.StreamResponse:
    a = await _attachment(request)
    path = request.app[attachment_store_key].path(a.escalation_id, a.id, a.kind)
    disposition = "attachment" if a.kind is Kind.pdf else "inline"
    quoted = urllib.parse.quote(a.file_name, safe="")
    return web.FileResponse(path, headers={
        "Content-Type": a.kind.content_type, "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quoted}"})


async def thumbnail(request: web.Request) -> web.StreamResponse:
    a = await _attachment(request)
    if not a.kind.is_image:
        raise ApiError("not_an_image", "only photos have thumbnails")
    store = request.app[attachment_store_key]
    thumb = store.thumbnail_path(a.escalation_id, a.id)
    if not thumb.exists():
        data = store.path(a.escalation_id, a.id, a.kind).read_bytes()
        try:
            small = await asyncio.get_running_loop().run_in_executor(None, imaging.thumbnail, data)
        except ValueError:
            raise ApiError("bad_image", "this photo cannot be decoded") from None
        store.write(thumb, small)
    return web.FileResponse(thumb, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, no-store"})


async def enhance(request: web.Request) -> web.Response:
    """An enhanced copy (CLAHE contrast, light denoise) beside the original, which stays as it was."""
    session = await require_api_session(request, write=True)
    a = await _attachment(request)
    if not a.kind.is_image:
        raise ApiError("not_an_image", "only photos can be enhanced")
    store = request.app[attachment_store_key]
    data = store.path(a.escalation_id, a.id, a.kind).read_bytes()
    try:
        better = await asyncio.get_running_loop().run_in_executor(None, imaging.enhance, data)
    except ValueError:
        raise ApiError("bad_image", "this photo cannot be decoded") from None
    new_id = uuid.uuid4()
    path = store.path(a.escalation_id, new_id, Kind.jpeg)
    store.write(path, better)
    stem = a.file_name.rsplit(".", 1)[0]
    record = attachments_db.Attachment(new_id, a.escalation_id, session.staff.id, Kind.jpeg, len(better),
                                       hashlib.sha256(better).hexdigest(), f"{stem} (enhanced).jpg"[:200], a.id,
                                       request.app[clock_key].now())
    try:
        async with request.app[pool_key].acquire() as con:
            saved = await attachments_db.add(con, record)
    except DbError as exc:
        path.unlink(missing_ok=True)
        raise from_db(exc) from None
    return web.json_response(_view(saved), status=201)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    app[attachment_store_key] = AttachmentStore(app[settings_key].data_dir)
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_store_ctx)
    app.router.add_post("/api/escalations/{eid}/attachments", upload)
    app.router.add_get("/api/escalations/{eid}/attachments", listing)
    app.router.add_get("/api/escalations/{eid}/attachments/{aid}", download)
    app.router.add_get("/api/escalations/{eid}/attachments/{aid}/thumbnail", thumbnail)
    app.router.add_post("/api/escalations/{eid}/attachments/{aid}/enhance", enhance)
