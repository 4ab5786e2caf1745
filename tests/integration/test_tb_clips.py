"""Video-observed doses over real HTTP: a resumable upload across a dropped connection, the server's check
(PyAV), the contact sheet (OpenCV), review, and retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from care.appointments import FACILITY_TZ
from care.tb import DoseStatus
from db import tb as tb_db
from db.audit import SYSTEM, events_for
from db.errors import Conflict
from media.clip import check_clip, sheet_tiles, synthetic_clip
from tests.conftest import RunningApp
from tests.integration.conftest import Factory
from web import tb_clips
from web.app import create_app
from web.auth import issue_link
from web.keys import settings_key, signer_key
from web.settings import Settings

CLIP_SECONDS = 4.0


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("clips") / "dose.webm"
    synthetic_clip(path, CLIP_SECONDS, 320, 240, fps=10)
    return path.read_bytes()


def today() -> date:
    return datetime.now(FACILITY_TZ).date()


async def _patient_case(running_app: RunningApp, make: Factory, started: date | None = None) -> tuple[int, str]:
    patient_id = await make.patient()
    async with running_app.pool.acquire() as con:
        case_id = await tb_db.register(con, SYSTEM, patient_id, make.network.commune, tb_db.NewCase(
            today() - timedelta(days=20), "2HRZE/4HR", True, started_on=started or today() - timedelta(days=10)))
        token, _ = await issue_link(con, running_app.app[signer_key], patient_id, 3600)
    return case_id, token


async def _open(session: aiohttp.ClientSession, url: str, token: str, **body: object) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{url}/api/p/tb/uploads", json=body,
                            headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def _patch(session: aiohttp.ClientSession, url: str, token: str, upload: str, offset: int,
                 chunk: bytes) -> tuple[int, dict[str, Any]]:
    async with session.patch(f"{url}/api/p/tb/uploads/{upload}", data=chunk,
                             headers={"Authorization": f"Bearer {token}", "Upload-Offset": str(offset),
                                      "Content-Type": "application/offset+octet-stream"}) as r:
        return r.status, await r.json()


async def _status(session: aiohttp.ClientSession, url: str, token: str, upload: str) -> dict[str, Any]:
    async with session.get(f"{url}/api/p/tb/uploads/{upload}", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        return dict(await r.json())


async def _cut_off_patch(running_app: RunningApp, token: str, upload: str, offset: int, chunk: bytes) -> None:
    """Send a PATCH announcing the whole chunk, half of it, then drop the connection."""
    host, port = running_app.server.host, running_app.server.port
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"PATCH /api/p/tb/uploads/{upload} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {len(chunk)}\r\n\r\n")
    writer.write(head.encode() + chunk[: len(chunk) // 2])
    await writer.drain()
    writer.transport.abort()
    await writer.wait_closed()


async def test_clip_in_three_chunks_across_a_dropped_connection_is_stored_once(
        running_app: RunningApp, make: Factory, clip_bytes: bytes) -> None:
    case_id, token = await _patient_case(running_app, make)
    third = len(clip_bytes) // 3
    chunks = [clip_bytes[:third], clip_bytes[third:2 * third], clip_bytes[2 * third:]]
    url = running_app.url
    async with aiohttp.ClientSession() as session:
        status, opened = await _open(session, url, token, size=len(clip_bytes))
        assert status == 200 and opened["offset"] == 0 and opened["dose_on"] == today().isoformat()
        upload = opened["upload"]
        assert (await _patch(session, url, token, upload, 0, chunks[0]))[1]["offset"] == third
        await _cut_off_patch(running_app, token, upload, third, chunks[1])
        resume = await _status(session, url, token, upload)
        assert (resume["state"], resume["offset"]) == ("receiving", third)  # the cut-off chunk left nothing
        status, stale = await _patch(session, url, token, upload, 0, chunks[0])  # a retry of an old chunk
        assert status == 409 and stale["error"]["code"] == "offset_mismatch"
        assert (await _patch(session, url, token, upload, third, chunks[1]))[1]["offset"] == 2 * third
        status, done = await _patch(session, url, token, upload, 2 * third, chunks[2])
        assert status == 200, done
        assert done["state"] == "received" and done["under_review"] is True
        status, again = await _patch(session, url, token, upload, 2 * third, chunks[2])  # lost answer, resent
        assert status == 200 and again["clip"] == done["clip"]
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM tb_clip WHERE case_id = $1", case_id) == 1
        clip = await tb_db.get_clip(con, done["clip"])
        record = await tb_db.get(con, case_id)
    assert clip is not None and record is not None
    assert record.doses[today()] == DoseStatus.video_pending
    data_dir = running_app.app[settings_key].data_dir
    stored = data_dir / clip.path
    assert stored.read_bytes() == clip_bytes
    assert list((data_dir / "tb" / "uploads").iterdir()) == []  # the upload's temporary file is gone
    info = check_clip(stored).info
    assert abs(info.duration_s - CLIP_SECONDS) <= 0.1 * CLIP_SECONDS
    assert abs(clip.duration_s - CLIP_SECONDS) <= 0.1 * CLIP_SECONDS
    assert sheet_tiles((data_dir / clip.sheet_path).read_bytes())[0] == 6


async def test_bad_clips_and_days_are_refused_with_a_code(running_app: RunningApp, make: Factory,
                                                          clip_bytes: bytes) -> None:
    case_id, token = await _patient_case(running_app, make)
    url = running_app.url
    async with aiohttp.ClientSession() as session:
        assert (await _open(session, url, token, size=0))[1]["error"]["code"] == "clip_empty"
        status, body = await _open(session, url, token, size=10, dose_on=(today() + timedelta(days=1)).isoformat())
        assert (status, body["error"]["code"]) == (400, "in_future")
        status, body = await _open(session, url, token, size=10, dose_on=(today() - timedelta(days=11)).isoformat())
        assert (status, body["error"]["code"]) == (400, "before_start")
        text = b"this is not a video at all " * 40
        _, opened = await _open(session, url, token, size=len(text))
        status, body = await _patch(session, url, token, opened["upload"], 0, text)
        assert (status, body["error"]["code"]) == (422, "clip_not_video")
        damaged = clip_bytes[:300] + bytes(range(256)) * 20  # a WebM header, then noise
        _, opened = await _open(session, url, token, size=len(damaged))
        status, body = await _patch(session, url, token, opened["upload"], 0, damaged)
        assert (status, body["error"]["code"]) in ((422, "clip_unreadable"), (422, "clip_not_video"))
        _, opened = await _open(session, url, token, size=10)
        status, body = await _patch(session, url, token, opened["upload"], 0, b"x" * 11)
        assert (status, body["error"]["code"]) == (413, "clip_too_large")
        # The first clip of the day is reviewed; a second one is kept, not reviewed.
        uploads = [(await _open(session, url, token, size=len(clip_bytes)))[1]["upload"] for _ in range(2)]
        first = (await _patch(session, url, token, uploads[0], 0, clip_bytes))[1]
        second = (await _patch(session, url, token, uploads[1], 0, clip_bytes))[1]
        assert (first["under_review"], second["under_review"]) == (True, False)
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM tb_clip WHERE case_id = $1", case_id) == 2
        pending = await tb_db.pending_clips(con, make.network.district)
        assert [c.id for c in pending if c.case_id == case_id] == [first["clip"]]


async def test_review_then_retention_deletes_exactly_the_expired_clips(running_app: RunningApp, make: Factory,
                                                                       clip_bytes: bytes) -> None:
    url = running_app.url
    clips: list[int] = []
    cases: list[int] = []
    async with aiohttp.ClientSession() as session:
        for n in range(3):
            case_id, token = await _patient_case(running_app, make)
            # Each clip's bytes differ so each has its own file.
            data = clip_bytes + bytes([n])
            _, opened = await _open(session, url, token, size=len(data))
            status, done = await _patch(session, url, token, opened["upload"], 0, data)
            assert status == 200, done
            clips.append(done["clip"])
            cases.append(case_id)
    nurse = await make.staff(make.network.commune, role="nurse")
    async with running_app.pool.acquire() as con:
        await tb_db.review_clip(con, nurse, clips[0], True, "")
        await tb_db.review_clip(con, nurse, clips[1], False, "the pill is not visible")
        with pytest.raises(Conflict):
            await tb_db.review_clip(con, nurse, clips[1], True, "")
        assert (await tb_db.get(con, cases[0])).doses[today()] == DoseStatus.video  # type: ignore[union-attr]
        assert (await tb_db.get(con, cases[1])).doses[today()] == DoseStatus.missed  # type: ignore[union-attr]
        # Clip 0 was reviewed 31 days ago, clip 1 29 days ago; clip 2 is still pending.
        await con.execute("UPDATE tb_clip SET reviewed_at = now() - interval '31 days' WHERE id = $1", clips[0])
        await con.execute("UPDATE tb_clip SET reviewed_at = now() - interval '29 days' WHERE id = $1", clips[1])
        paths = {c: await tb_db.get_clip(con, c) for c in clips}
    data_dir = running_app.app[settings_key].data_dir
    deleted = await tb_clips.delete_expired(running_app.app, datetime.now(UTC))
    assert deleted == [clips[0]]
    gone = paths[clips[0]]
    assert gone is not None and not (data_dir / gone.path).exists() and not (data_dir / gone.sheet_path).exists()
    for kept in clips[1:]:
        clip = paths[kept]
        assert clip is not None and (data_dir / clip.path).exists() and (data_dir / clip.sheet_path).exists()
    assert await tb_clips.delete_expired(running_app.app, datetime.now(UTC)) == []
    async with running_app.pool.acquire() as con:
        events = await events_for(con, "tb_case", cases[0])
        assert [e["details"]["clip"] for e in events if e["action"] == "tb.clip_deleted"] == [clips[0]]
        assert (await tb_db.get_clip(con, clips[0])).deleted  # type: ignore[union-attr]


async def test_upload_resumes_and_review_works_after_a_server_restart(app_settings: Settings, make: Factory,
                                                                      clip_bytes: bytes) -> None:
    half = len(clip_bytes) // 2
    app = create_app(app_settings)
    first = RunningApp(app, TestServer(app, host="127.0.0.1"))
    await first.server.start_server()
    try:
        case_id, token = await _patient_case(first, make)
        async with aiohttp.ClientSession() as session:
            _, opened = await _open(session, first.url, token, size=len(clip_bytes))
            assert (await _patch(session, first.url, token, opened["upload"], 0, clip_bytes[:half]))[0] == 200
    finally:
        await first.server.close()
    app = create_app(app_settings)
    second = RunningApp(app, TestServer(app, host="127.0.0.1"))
    await second.server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            resume = await _status(session, second.url, token, opened["upload"])
            assert resume["offset"] == half
            status, done = await _patch(session, second.url, token, opened["upload"], half, clip_bytes[half:])
            assert status == 200 and done["state"] == "received"
        nurse = await make.staff(make.network.commune, role="nurse")
        async with second.pool.acquire() as con:
            await tb_db.review_clip(con, nurse, done["clip"], True, "")
            record = await tb_db.get(con, case_id)
        assert record is not None and record.doses[today()] == DoseStatus.video
    finally:
        await second.server.close()


async def test_two_tabs_sending_the_same_chunk_append_it_once(running_app: RunningApp, make: Factory,
                                                              clip_bytes: bytes) -> None:
    _, token = await _patient_case(running_app, make)
    third = len(clip_bytes) // 3
    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        _, opened = await _open(one, running_app.url, token, size=len(clip_bytes))
        results = await asyncio.gather(*(_patch(s, running_app.url, token, opened["upload"], 0, clip_bytes[:third])
                                         for s in (one, two)))
        assert sorted(status for status, _ in results) == [200, 409]
        assert (await _status(one, running_app.url, token, opened["upload"]))["offset"] == third
