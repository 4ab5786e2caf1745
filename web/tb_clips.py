"""Video-observed doses: the patient's resumable clip upload, the server's check, storage and retention.

Protocol (docs/protocol.md, "TB clip upload"): `POST /api/p/tb/uploads` {size, dose_on?, replace?} opens an
upload; `PATCH /api/p/tb/uploads/{upload}` with `Upload-Offset: N` appends one chunk (≤ 512 KiB) at byte N
and answers the new offset; `GET /api/p/tb/uploads/{upload}` answers the offset, so a client whose
connection dropped asks where to resume. A chunk is written only once it has fully arrived (a cut-off chunk
leaves nothing), so the bytes on disk are always a prefix of the clip. When the last byte arrives the clip is
decoded (media/clip.py, in a worker thread, at most `CLIP_WORKERS` at once), stored content-addressed under
the data dir (`tb/clips/<sha256>.webm`, written by a hard link from the upload's file: no half-written clip),
its contact sheet beside it, and the day becomes "video, pending review". Everything an upload needs is on
disk or in PostgreSQL, so it resumes across a server restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
from aiohttp import web
from aiohttp.http_exceptions import ContentLengthError

from db import tb as tb_db
from db.audit import Actor
from db.errors import DbError
from media.clip import MAX_CLIP_SECONDS, CheckedClip, ClipError, check_clip
from web.errors import ApiError, from_db
from web.keys import pool_key, settings_key
from web.localtime import facility_today
from web.patient_routes import bearer_link, decode_body

log = logging.getLogger(__name__)

MAX_CHUNK = 512 * 1024
# A 60 s clip from a phone at ≤ 1 Mbit/s is ≤ 7.5 MB; 12 MB leaves room for a higher bitrate.
MAX_CLIP_BYTES = 12 * 1024 * 1024
# Admission limit: clips decoded at once (BENCHMARKS.md: ~0.1–0.3 s CPU per clip; 2 cores).
CLIP_WORKERS = 2
RETENTION_DAYS = 30  # issue 11: clips deleted 30 days after review (default; DONGHANH_TB_CLIP_RETENTION_DAYS)

clip_slots_key = web.AppKey("tb_clip_slots_key", asyncio.Semaphore)


class UploadBody(msgspec.Struct, forbid_unknown_fields=True):
    size: int
    dose_on: date | None = None
    replace: bool = False


def clips_dir(data_dir: Path) -> Path:
    return data_dir / "tb" / "clips"


def uploads_dir(data_dir: Path) -> Path:
    return data_dir / "tb" / "uploads"


def _part(request: web.Request, upload_id: uuid.UUID) -> Path:
    return uploads_dir(request.app[settings_key].data_dir) / f"{upload_id}.part"


def _offset(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def _case_of_link(request: web.Request) -> tuple[int, int]:
    """(patient id, case id) of the patient's link, or ApiError `no_tb_case`."""
    link = await bearer_link(request)
    async with request.app[pool_key].acquire() as con:
        record = await tb_db.case_for_patient(con, link.patient_id)
    if record is None:
        raise ApiError("no_tb_case", "there is no TB treatment for this patient", status=404)
    return link.patient_id, record.id


async def _owned_upload(request: web.Request) -> tuple[int, tb_db.Upload]:
    patient_id, case_id = await _case_of_link(request)
    try:
        upload_id = uuid.UUID(request.match_info["upload"])
    except ValueError:
        raise ApiError("not_found", "no such upload") from None
    async with request.app[pool_key].acquire() as con:
        upload = await tb_db.get_upload(con, upload_id)
    if upload is None or upload.case_id != case_id:  # another patient's upload looks absent
        raise ApiError("not_found", "no such upload")
    return patient_id, upload


def _state(upload: tb_db.Upload, offset: int, current: bool | None = None) -> web.Response:
    body: dict[str, object] = {"upload": str(upload.id), "size": upload.size, "dose_on": upload.dose_on.isoformat(),
                               "offset": upload.size if upload.clip_id else offset,
                               "state": "received" if upload.clip_id else "receiving"}
    if upload.clip_id:
        body["clip"] = upload.clip_id
    if current is not None:
        body["under_review"] = current
    return web.json_response(body)


async def begin(request: web.Request) -> web.Response:
    """`POST /api/p/tb/uploads`: open an upload for today's (or `dose_on`'s) clip."""
    _, case_id = await _case_of_link(request)
    body = decode_body(await request.read(), UploadBody)
    if not 0 < body.size <= MAX_CLIP_BYTES:
        raise ApiError("clip_too_large" if body.size > 0 else "clip_empty",
                       f"a clip has 1 to {MAX_CLIP_BYTES} bytes, not {body.size}", field="size",
                       status=413 if body.size > 0 else 400)
    today = facility_today(request)
    async with request.app[pool_key].acquire() as con:
        try:
            upload = await tb_db.begin_upload(con, case_id, body.dose_on or today, body.size, today,
                                              replace=body.replace)
        except DbError as exc:
            raise from_db(exc) from None
    path = _part(request, upload.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return _state(upload, 0)


async def status(request: web.Request) -> web.Response:
    """`GET /api/p/tb/uploads/{upload}`: how many bytes arrived (where to resume), or that the clip is in."""
    _, upload = await _owned_upload(request)
    return _state(upload, _offset(_part(request, upload.id)))


async def append(request: web.Request) -> web.Response:
    """`PATCH /api/p/tb/uploads/{upload}`: one chunk at `Upload-Offset`; the last one stores the clip."""
    patient_id, upload = await _owned_upload(request)
    if upload.clip_id is not None:
        return _state(upload, upload.size)
    path = _part(request, upload.id)
    try:
        offset = int(request.headers.get("Upload-Offset", ""))
    except ValueError:
        raise ApiError("invalid", "the Upload-Offset header (a byte count) is required") from None
    have = _offset(path)
    if offset != have:
        raise ApiError("offset_mismatch", f"the upload has {have} bytes; send the chunk at offset {have}",
                       status=409)
    # Read the whole chunk before writing any of it: a connection cut mid-chunk leaves the file as it was.
    received = bytearray()
    try:
        async for data in request.content.iter_chunked(64 * 1024):
            received += data
            if len(received) > MAX_CHUNK:
                raise ApiError("chunk_too_large", f"a chunk has at most {MAX_CHUNK} bytes", status=413)
    except (ConnectionResetError, ContentLengthError):
        # The patient's link dropped mid-chunk (the case this upload exists for): nothing was written, and
        # nobody is left to answer; the page asks for the offset when it is back.
        log.info("tb upload %s: connection lost mid-chunk at offset %d", upload.id, offset)
        raise ApiError("chunk_cut_off", "the chunk did not arrive whole; ask for the offset and resend") from None
    chunk = bytes(received)
    if request.content_length is not None and len(chunk) != request.content_length:
        raise ApiError("chunk_cut_off", "the chunk did not arrive whole; ask for the offset and resend")
    if have + len(chunk) > upload.size:
        raise ApiError("clip_too_large", f"the clip was announced as {upload.size} bytes", status=413)
    if chunk:
        written = await asyncio.to_thread(_append, path, offset, chunk)
        if written is None:  # another request appended first (two tabs): say where to resume
            now = _offset(path)
            raise ApiError("offset_mismatch", f"the upload has {now} bytes; send the chunk at offset {now}",
                           status=409)
    if have + len(chunk) < upload.size:
        return _state(upload, have + len(chunk))
    clip_id, current = await finish(request.app, upload, Actor.patient(patient_id))
    async with request.app[pool_key].acquire() as con:
        done = await tb_db.get_upload(con, upload.id)
    assert done is not None and done.clip_id == clip_id
    return _state(done, done.size, current)


def _append(path: Path, offset: int, chunk: bytes) -> int | None:
    """Append at `offset` under an exclusive file lock (any process); None if the file is no longer that long."""
    with path.open("ab") as out:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX)
        if out.seek(0, os.SEEK_END) != offset:
            return None
        out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
        return offset + len(chunk)


def _store(part: Path, clips: Path) -> tuple[CheckedClip, str]:
    """Check the clip, write its sheet (temporary name, then rename) and link it under its sha256."""
    checked = check_clip(part, MAX_CLIP_SECONDS)
    digest = hashlib.sha256(part.read_bytes()).hexdigest()
    clips.mkdir(parents=True, exist_ok=True)
    sheet = clips / f"{digest}.jpg"
    tmp = sheet.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(checked.sheet_jpeg)
    tmp.replace(sheet)
    with contextlib.suppress(FileExistsError):
        os.link(part, clips / f"{digest}.webm")
    return checked, digest


async def finish(app: web.Application, upload: tb_db.Upload, actor: Actor) -> tuple[int, bool]:
    """The last byte is in: check, store and record the clip (the day → video, pending review)."""
    part = uploads_dir(app[settings_key].data_dir) / f"{upload.id}.part"
    clips = clips_dir(app[settings_key].data_dir)
    async with app[clip_slots_key]:
        try:
            checked, digest = await asyncio.to_thread(_store, part, clips)
        except FileNotFoundError:  # a concurrent request for the same last chunk stored it already
            async with app[pool_key].acquire() as con:
                again = await tb_db.get_upload(con, upload.id)
            if again is None or again.clip_id is None:
                raise ApiError("offset_mismatch", "the upload's bytes are gone; start again at offset 0",
                               status=409) from None
            async with app[pool_key].acquire() as con:
                clip = await tb_db.get_clip(con, again.clip_id)
            return again.clip_id, bool(clip and clip.current)
        except ClipError as exc:
            # A bad clip is refused whole: its upload's bytes go, so nothing half-checked stays on disk.
            part.unlink(missing_ok=True)
            raise ApiError(exc.code, exc.message, status=422) from None
    stored = tb_db.StoredClip(digest, f"tb/clips/{digest}.webm", f"tb/clips/{digest}.jpg", upload.size,
                              checked.info.duration_s, checked.info.width, checked.info.height)
    async with app[pool_key].acquire() as con:
        clip_id, current = await tb_db.store_clip(con, actor, upload.id, stored)
    part.unlink(missing_ok=True)
    log.info("tb clip %s stored for case %s (%.1f s)", clip_id, upload.case_id, checked.info.duration_s)
    return clip_id, current


async def delete_expired(app: web.Application, now: datetime, retention_days: int = RETENTION_DAYS) -> list[int]:
    """Delete the files of clips reviewed more than `retention_days` ago and record each deletion (audited);
    the ids deleted. A file another kept clip still uses (the same bytes sent twice) stays."""
    data_dir = app[settings_key].data_dir
    deleted: list[int] = []
    async with app[pool_key].acquire() as con:
        for clip_id, path, sheet in await tb_db.expired_clips(con, now - timedelta(days=retention_days)):
            await tb_db.mark_clip_deleted(con, clip_id, retention_days)
            if not await tb_db.path_in_use(con, path):
                for name in (path, sheet):
                    (data_dir / name).unlink(missing_ok=True)
            deleted.append(clip_id)
    return deleted


RETENTION_EVERY_S = 3600.0


async def _retention_loop(app: web.Application) -> None:
    """Hourly: delete the files of clips whose review is older than DONGHANH_TB_CLIP_RETENTION_DAYS."""
    while True:
        try:
            deleted = await delete_expired(app, datetime.now(UTC), app[settings_key].tb_clip_retention_days)
            if deleted:
                log.info("tb clip retention deleted %d clip(s)", len(deleted))
        except (OSError, asyncpg.PostgresError) as exc:  # try again next hour; the clips stay until then
            log.warning("tb clip retention failed: %s", exc)
        await asyncio.sleep(RETENTION_EVERY_S)


async def _slots(app: web.Application) -> AsyncIterator[None]:
    app[clip_slots_key] = asyncio.Semaphore(CLIP_WORKERS)
    task = asyncio.create_task(_retention_loop(app), name="tb-clip-retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_slots)
    app.router.add_post("/api/p/tb/uploads", begin)
    app.router.add_get("/api/p/tb/uploads/{upload}", status)
    app.router.add_patch("/api/p/tb/uploads/{upload}", append)
