"""Specialist escalation over real HTTP and sockets: ask, the offer pushed live, decline to the next
specialist, accept, the written opinion pushed to the requester; bad input and access refusals."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.conftest import RunningApp
from tests.integration.test_call_signaling import connect
from tests.integration.test_http import Staff, signed_in
from tests.integration.wsclient import WsClient


@pytest.fixture
async def province_cardiologist(running_app: RunningApp) -> int:
    async with running_app.pool.acquire() as con:
        province = await con.fetchval("SELECT id FROM facility WHERE level = 'province'")
        found: int = await con.fetchval("SELECT id FROM staff WHERE username = 'bs.timmach.tinh'")  # the demo's
        assert await con.fetchval("SELECT facility_id FROM staff WHERE id = $1", found) == province
        return found


@pytest.fixture
async def people(running_app: RunningApp, province_cardiologist: int) -> AsyncIterator[dict[str, Staff]]:
    found = {name: await signed_in(running_app, name)
             for name in ("bacsi.lan", "bs.timmach", "bs.timmach.tinh", "bs.lao", "yta.hoa")}
    yield found
    for s in found.values():
        await s.http.close()


async def _sockets(app: RunningApp, people: dict[str, Staff], *names: str) -> dict[str, WsClient]:
    return {n: await connect(people[n].http, app) for n in names}


async def _json(staff: Staff, method: str, url: str, body: dict[str, Any] | None = None,
                status: int = 200) -> dict[str, Any]:
    headers = staff.write_headers() if method != "GET" else {}
    async with staff.http.request(method, url, json=body, headers=headers) as r:
        data: dict[str, Any] = await r.json()
        assert r.status == status, data
        return data


async def _patient(app: RunningApp) -> int:
    async with app.pool.acquire() as con:
        pid: int = await con.fetchval("SELECT id FROM patient WHERE name = 'Giàng A Páo'")
        return pid


async def test_the_written_path_decline_reroute_accept_answer_all_live(running_app: RunningApp,
                                                                      people: dict[str, Staff]) -> None:
    url = running_app.url
    lan, district, province = people["bacsi.lan"], people["bs.timmach"], people["bs.timmach.tinh"]
    ws = await _sockets(running_app, people, "bacsi.lan", "bs.timmach", "bs.timmach.tinh")
    patient = await _patient(running_app)

    summary = await _json(lan, "GET", f"{url}/api/patients/{patient}/escalation-summary")
    assert "diagnoses" in summary and "medicines" in summary
    asked = await _json(lan, "POST", f"{url}/api/escalations", {
        "patient_id": patient, "specialty": "cardiology", "urgency": "priority",
        "question": "Huyết áp 170/100 dù đã dùng amlodipin 10 mg: thêm thuốc gì?", "consent": True,
        "summary": summary}, status=201)
    eid = asked["id"]
    assert asked["offered_to"] == district.id
    offer = await ws["bs.timmach"].expect("escalation_offer", escalation=eid)
    assert offer["urgency"] == "priority"

    inbox = await _json(district, "GET", f"{url}/api/escalations")
    assert eid in [r["id"] for r in inbox["offered"]] and inbox["badge"] >= 1  # with the demo's own requests

    refused = await _json(district, "POST", f"{url}/api/escalations/{eid}/decline", {"reason": " "}, status=409)
    assert refused["error"]["code"] == "reason_required"
    await _json(district, "POST", f"{url}/api/escalations/{eid}/decline", {"reason": "Đang trực cấp cứu"})
    await ws["bs.timmach.tinh"].expect("escalation_offer", escalation=eid)
    await ws["bacsi.lan"].expect("escalation_update", escalation=eid, event="rerouted")

    await _json(province, "POST", f"{url}/api/escalations/{eid}/messages", {"body": "Creatinin bao nhiêu?"},
                status=201)
    await ws["bacsi.lan"].expect("escalation_message", escalation=eid)
    accepted = await _json(province, "POST", f"{url}/api/escalations/{eid}/accept")
    assert accepted["status"] == "accepted"
    await ws["bacsi.lan"].expect("escalation_accepted", escalation=eid, live=False)
    again = await _json(province, "POST", f"{url}/api/escalations/{eid}/accept", status=409)
    assert again["error"]["code"] == "already_accepted"

    await _json(province, "POST", f"{url}/api/escalations/{eid}/opinion", {
        "assessment": "THA kháng trị?", "recommendation": "Thêm indapamid 1,5 mg; kiểm tra tuân thủ",
        "transfer": False, "avoided_visit": True, "follow_up": "Đo lại sau 2 tuần"}, status=201)
    await ws["bacsi.lan"].expect("escalation_answered", escalation=eid)
    seen = await _json(lan, "GET", f"{url}/api/escalations/{eid}")
    assert seen["status"] == "answered" and seen["opinion"]["avoided_visit"] is True
    assert [e["kind"] for e in seen["timeline"]] == ["requested", "offered", "declined", "rerouted", "message",
                                                     "accepted", "answered"]
    for page in (f"/staff/escalations/{eid}", "/staff/escalations", f"/staff/patients/{patient}/ask"):
        async with lan.http.get(f"{url}{page}") as r:
            assert r.status == 200, page
    async with lan.http.get(f"{url}/staff/patients/{patient}") as r:  # the opinion lands in the record
        assert "Thêm indapamid 1,5 mg" in await r.text()
    async with province.http.get(f"{url}/staff/escalations/{eid}") as r:
        assert r.status == 200
    for w in ws.values():
        await w.close()


async def test_who_may_see_a_request(running_app: RunningApp, people: dict[str, Staff]) -> None:
    url = running_app.url
    patient = await _patient(running_app)
    asked = await _json(people["bacsi.lan"], "POST", f"{url}/api/escalations", {
        "patient_id": patient, "specialty": "cardiology", "urgency": "routine", "question": "?", "consent": True},
        status=201)
    eid = asked["id"]
    await _json(people["bs.timmach"], "GET", f"{url}/api/escalations/{eid}")  # offered to them
    assert (await _json(people["bs.lao"], "GET", f"{url}/api/escalations/{eid}", status=404))["error"]["code"] \
        == "not_found"  # another specialist, never offered it
    await _json(people["yta.hoa"], "GET", f"{url}/api/escalations/{eid}", status=403)  # a nurse: clinical content
    refused = await _json(people["bs.lao"], "POST", f"{url}/api/escalations/{eid}/accept", status=403)
    assert refused["error"]["code"] == "forbidden"
    async with running_app.pool.acquire() as con:
        reads = await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'escalation.read' "
                                   "AND object_id = $1", eid)
    assert reads == 1


@pytest.mark.parametrize(("change", "code"), [
    ({"specialty": "astrology"}, "unknown_specialty"),
    ({"urgency": "soon"}, "unknown_urgency"),
    ({"question": "  "}, "question_required"),
    ({"consent": False}, "consent_required"),
])
async def test_bad_requests_get_a_precise_error(running_app: RunningApp, people: dict[str, Staff],
                                                change: dict[str, Any], code: str) -> None:
    body = {"patient_id": await _patient(running_app), "specialty": "cardiology", "urgency": "urgent",
            "question": "?", "consent": True, **change}
    async with running_app.pool.acquire() as con:
        before = await con.fetchval("SELECT count(*) FROM escalation")
    refused = await _json(people["bacsi.lan"], "POST", f"{running_app.url}/api/escalations", body, status=400)
    assert refused["error"]["code"] == code
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM escalation") == before


async def test_going_away_reroutes_the_open_offer(running_app: RunningApp, people: dict[str, Staff]) -> None:
    url = running_app.url
    ws = await _sockets(running_app, people, "bs.timmach.tinh")
    asked = await _json(people["bacsi.lan"], "POST", f"{url}/api/escalations", {
        "patient_id": await _patient(running_app), "specialty": "cardiology", "urgency": "urgent",
        "question": "Đau ngực 30 phút", "consent": True}, status=201)
    assert asked["offered_to"] == people["bs.timmach"].id
    away = await _json(people["bs.timmach"], "POST", f"{url}/api/staff/duty", {"on_duty": False})
    assert away["offers_rerouted"] >= 1  # with the demo's own offer to them
    await ws["bs.timmach.tinh"].expect("escalation_offer", escalation=asked["id"])
    await ws["bs.timmach.tinh"].close()


async def test_a_referral_from_an_opinion_is_acknowledged_and_the_arrival_recorded(
        running_app: RunningApp, people: dict[str, Staff]) -> None:
    url = running_app.url
    lan, district = people["bacsi.lan"], people["bs.timmach"]
    ws = await _sockets(running_app, people, "bacsi.lan")
    asked = await _json(lan, "POST", f"{url}/api/escalations", {
        "patient_id": await _patient(running_app), "specialty": "cardiology", "urgency": "priority",
        "question": "Block nhĩ thất độ 3?", "consent": True}, status=201)
    eid = asked["id"]
    refused = await _json(lan, "POST", f"{url}/api/escalations/{eid}/referral", {}, status=409)
    assert refused["error"]["code"] == "no_transfer_advised"
    await _json(district, "POST", f"{url}/api/escalations/{eid}/accept")
    bad = await _json(district, "POST", f"{url}/api/escalations/{eid}/opinion", {
        "assessment": "Block AV 3", "recommendation": "Đặt máy tạo nhịp", "transfer": True,
        "avoided_visit": False}, status=400)
    assert bad["error"]["code"] == "transfer_urgency_required"
    await _json(district, "POST", f"{url}/api/escalations/{eid}/opinion", {
        "assessment": "Block AV 3", "recommendation": "Đặt máy tạo nhịp", "transfer": True,
        "transfer_facility_id": district.facility_id, "transfer_urgency": "emergency",
        "avoided_visit": False}, status=201)
    referral = await _json(lan, "POST", f"{url}/api/escalations/{eid}/referral", {}, status=201)
    assert referral["to_facility_id"] == district.facility_id and referral["urgency"] == "emergency"
    again = await _json(lan, "POST", f"{url}/api/escalations/{eid}/referral", {}, status=409)
    assert again["error"]["code"] == "referral_exists"
    incoming = await _json(district, "GET", f"{url}/api/referrals/incoming")
    assert [r["id"] for r in incoming["referrals"]] == [referral["id"]]
    assert (await _json(lan, "GET", f"{url}/api/referrals/incoming"))["referrals"] == []  # not addressed to them
    await _json(lan, "POST", f"{url}/api/referrals/{referral['id']}/acknowledge", status=404)  # sender: not theirs
    await _json(district, "POST", f"{url}/api/referrals/{referral['id']}/acknowledge")
    await ws["bacsi.lan"].expect("escalation_update", escalation=eid, event="referral_acknowledged")
    await _json(district, "POST", f"{url}/api/referrals/{referral['id']}/arrived")
    await ws["bacsi.lan"].expect("escalation_update", escalation=eid, event="referral_arrived")
    seen = await _json(lan, "GET", f"{url}/api/escalations/{eid}/referral")
    assert seen["referral"]["status"] == "arrived"
    async with district.http.get(f"{url}/staff/referrals") as r:
        assert r.status == 200
    await ws["bacsi.lan"].close()


async def test_the_coordinator_sees_counts_states_and_ages_without_clinical_content(running_app: RunningApp) -> None:
    coordinator = await signed_in(running_app, "dieuphoi")
    try:
        tables = await _json(coordinator, "GET", f"{running_app.url}/api/coordination")
        assert set(tables) == {"waiting", "calls", "open_requests", "referrals", "on_duty", "stats"}
        # What the page shows, in Vietnamese (the default): headers, labels, yes/no, percentages, durations.
        open_requests = tables["open_requests"]
        assert open_requests["rows"], "the demo seeds open requests"
        assert open_requests["columns"] == ["Mức độ khẩn", "Trạng thái", "Chuyên khoa", "Cơ sở", "Số lần chuyển",
                                            "Đã chờ", "Quá hạn"]
        for row in open_requests["rows"]:
            urgency, status, specialty, _, _, age, overdue = row["cells"]
            assert urgency in {"Khẩn", "Ưu tiên", "Thường quy"}
            assert status in {"Đang tìm bác sĩ chuyên khoa", "Đã gửi đến bác sĩ chuyên khoa", "Đã nhận", "Quá hạn"}
            assert specialty in {"Tim mạch", "Hô hấp", "Lao", "Nội khoa", "Sản khoa", "Nhi khoa"}
            assert "phút" in age or "giờ" in age or "ngày" in age
            assert overdue in {"Có", "Không"} and row["overdue"] == (overdue == "Có")
        stats = tables["stats"]
        assert {r["cells"][0] for r in stats["rows"]} >= {"Khẩn", "Ưu tiên", "Thường quy"}
        assert all(c.endswith("%") or c == "—" for r in stats["rows"] for c in r["cells"][4:])
        shown = json.dumps([(t["columns"], [r["cells"] for r in t["rows"]]) for t in tables.values()],
                           ensure_ascii=False)
        for raw in ("median_accept_min", "share_in_time", "age_min", "cardiology", "internal_medicine",
                    "priority", "offered", "true", "false", "True", "0.5"):
            assert raw not in shown, raw
        async with coordinator.http.get(f"{running_app.url}/api/coordination/open_requests.csv") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            lines = (await r.text()).splitlines()  # the machine form: column names and codes, for scripts
            assert lines[0] == "urgency,status,specialty,facility,hops,age_min,overdue"
            assert any(code in lines[1] for code in ("urgent", "priority", "routine"))
        async with coordinator.http.get(f"{running_app.url}/api/coordination/stats.csv") as r:
            assert "median_accept_min" in (await r.text()).splitlines()[0]
        async with coordinator.http.get(f"{running_app.url}/api/coordination/secrets.csv") as r:
            assert r.status == 404
        async with coordinator.http.get(f"{running_app.url}/staff/coordination") as r:
            assert r.status == 200
        await _json(coordinator, "GET", f"{running_app.url}/api/escalations", status=403)  # no clinical inbox
    finally:
        await coordinator.http.close()


async def test_the_inbox_and_a_request_show_specialty_names_and_facility_times(
        running_app: RunningApp, people: dict[str, Staff]) -> None:
    lan = people["bacsi.lan"]
    inbox = await _json(lan, "GET", f"{running_app.url}/api/escalations")
    assert inbox["asked"], "the demo seeds requests from the commune"
    local_time = re.compile(r"^\d{2}:\d{2} \d{2}/\d{2}/\d{4}$")  # web/localtime.py, facility zone
    async with running_app.pool.acquire() as con:
        deadlines = {str(r["id"]): r["deadline_at"] for r in await con.fetch("SELECT id, deadline_at FROM escalation")}
    facility_zone = ZoneInfo("Asia/Ho_Chi_Minh")
    for row in inbox["asked"]:
        assert row["specialty_text"] in {"Tim mạch", "Hô hấp", "Lao", "Nội khoa", "Sản khoa", "Nhi khoa"}
        assert row["due_text"] == deadlines[row["id"]].astimezone(facility_zone).strftime("%H:%M %d/%m/%Y")
    eid = inbox["asked"][0]["id"]
    detail = await _json(lan, "GET", f"{running_app.url}/api/escalations/{eid}")
    assert detail["specialty_text"] == inbox["asked"][0]["specialty_text"]
    assert detail["timeline"] and all(local_time.match(x["at_text"]) for x in detail["timeline"])
    async with lan.http.get(f"{running_app.url}/staff/escalations/{eid}") as r:
        assert r.status == 200 and detail["specialty_text"] in await r.text()


async def test_an_urgent_request_from_a_live_call_puts_the_accepting_specialist_in_that_call(
        running_app: RunningApp, people: dict[str, Staff]) -> None:
    from db import queue as queue_db
    from db import usecases

    url = running_app.url
    lan, district = people["bacsi.lan"], people["bs.timmach"]
    ws = await _sockets(running_app, people, "bacsi.lan", "bs.timmach")
    patient = await _patient(running_app)
    async with running_app.pool.acquire() as con:
        facility = await con.fetchval("SELECT facility_id FROM patient WHERE id = $1", patient)
        entry, _ = await queue_db.enqueue(con, patient_id=patient, link_jti=None, facility_id=facility, level=3,
                                          danger_signs=(), reason="đau ngực", checkin={}, audio_only=False)
        call = await usecases.take_patient(con, lan.id, facility, entry.id)
    assert call is not None
    await ws["bacsi.lan"].send(type="join", room=str(call.id))  # the doctor's call page
    await ws["bacsi.lan"].expect("joined", room=str(call.id))

    asked = await _json(lan, "POST", f"{url}/api/escalations", {
        "patient_id": patient, "specialty": "cardiology", "urgency": "urgent", "consultation_id": str(call.id),
        "question": "Đau ngực, điện tim nghi ngờ: xin ý kiến ngay", "consent": True,
        "summary": await _json(lan, "GET", f"{url}/api/patients/{patient}/escalation-summary")}, status=201)
    assert asked["offered_to"] == district.id
    await ws["bs.timmach"].expect("escalation_offer", escalation=asked["id"])

    accepted = await _json(district, "POST", f"{url}/api/escalations/{asked['id']}/accept")
    assert accepted["join_call"] == str(call.id)
    added = await ws["bacsi.lan"].expect("participant_added", room=str(call.id))
    assert added["staff"]["id"] == district.id
    await ws["bs.timmach"].expect("participant_added", room=str(call.id))
    async with running_app.pool.acquire() as con:
        assert await con.fetchval("SELECT count(*) FROM consultation_participant WHERE consultation_id = $1 "
                                  "AND staff_id = $2", call.id, district.id) == 1


# ---- the SMS of an urgent offer to a specialist with no page open (issue 9 point 3) --------------------

async def _offer_texts(app: RunningApp, eid: str) -> list[asyncpg.Record]:
    from web.escalation_routes import offer_texts_done

    await offer_texts_done(app.app)  # the tasks push() started for this request have finished
    async with app.pool.acquire() as con:
        rows: list[asyncpg.Record] = await con.fetch(
            "SELECT id, to_phone, kind, body, status FROM outbound_message WHERE escalation_id = $1", uuid.UUID(eid))
        return rows


async def _ask(app: RunningApp, people: dict[str, Staff], urgency: str) -> str:
    asked = await _json(people["bacsi.lan"], "POST", f"{app.url}/api/escalations", {
        "patient_id": await _patient(app), "specialty": "cardiology", "urgency": urgency,
        "question": "Đau ngực 30 phút", "consent": True}, status=201)
    assert asked["offered_to"] == people["bs.timmach"].id
    eid: str = asked["id"]
    return eid


async def test_an_urgent_offer_to_a_specialist_with_no_page_open_is_texted_once(
        running_app: RunningApp, people: dict[str, Staff]) -> None:
    from db import escalation_sms
    from db.escalations import Notice
    from web.escalation_routes import push
    from web.keys import clock_key

    eid = await _ask(running_app, people, "urgent")
    texts = await _offer_texts(running_app, eid)
    assert len(texts) == 1
    sms = texts[0]
    assert sms["to_phone"] == "+84987000103" and sms["kind"] == "escalation_offer"
    assert sms["body"].endswith(f"/staff/escalations/{eid}") and "KHAN" in sms["body"] and "Tim mach" in sms["body"]
    assert "Giang" not in sms["body"] and "Pao" not in sms["body"] and "?" not in sms["body"]  # no name, no token
    async with running_app.pool.acquire() as con:
        audited = await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'escalation.text_offer' "
                                     "AND object_id = $1", eid)
        assert audited == 1
        check = await con.fetchval("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                   "WHERE conname = 'outbound_message_kind_check'")
        for kind in ("invitation", "reminder_15_min", "visit_summary", "danger_alert", "no_show", "escalation_offer"):
            assert kind in check  # 0014 extended the check and kept every kind allowed before
        # Another process (or this one after a restart) texting the same offer: nothing new.
        again = await escalation_sms.text_offer(con, uuid.UUID(eid), people["bs.timmach"].id,
                                                base_url=running_app.url, lang="en",
                                                now=running_app.app[clock_key].now())
        assert again.outcome is escalation_sms.OfferText.already
    push(running_app.app, [Notice(people["bs.timmach"].id, "escalation_offer", uuid.UUID(eid), {"urgency": "urgent"})])
    assert [r["id"] for r in await _offer_texts(running_app, eid)] == [sms["id"]]  # re-pushed: still one


async def test_no_sms_for_a_priority_request_with_no_phone_on_file_or_with_a_page_open(
        running_app: RunningApp, people: dict[str, Staff]) -> None:
    priority = await _ask(running_app, people, "priority")
    assert await _offer_texts(running_app, priority) == []

    async with running_app.pool.acquire() as con:
        await con.execute("UPDATE staff SET phone = NULL WHERE id = $1", people["bs.timmach"].id)
    no_phone = await _ask(running_app, people, "urgent")
    assert await _offer_texts(running_app, no_phone) == []
    async with running_app.pool.acquire() as con:
        await con.execute("UPDATE staff SET phone = '+84987000103' WHERE id = $1", people["bs.timmach"].id)

    ws = await _sockets(running_app, people, "bs.timmach")
    live = await _ask(running_app, people, "urgent")
    await ws["bs.timmach"].expect("escalation_offer", escalation=live)
    assert await _offer_texts(running_app, live) == []
    await ws["bs.timmach"].close()


async def test_the_nav_badge_counts_offers_and_unread_opinions_live(running_app: RunningApp,
                                                                     people: dict[str, Staff]) -> None:
    url = running_app.url
    lan, district = people["bacsi.lan"], people["bs.timmach"]
    ws = await _sockets(running_app, people, "bacsi.lan", "bs.timmach")
    before_offers = (await _json(district, "GET", f"{url}/api/staff/badge"))["offers"]
    before_unread = (await _json(lan, "GET", f"{url}/api/staff/badge"))["unread"]  # the demo's own requests
    asked = await _json(lan, "POST", f"{url}/api/escalations", {
        "patient_id": await _patient(running_app), "specialty": "cardiology", "urgency": "priority",
        "question": "Rung nhĩ mới phát hiện: kháng đông?", "consent": True}, status=201)
    eid = asked["id"]
    assert asked["offered_to"] == district.id
    await ws["bs.timmach"].expect("escalation_offer", escalation=eid)
    await ws["bs.timmach"].expect("escalation_badge", offers=before_offers + 1)
    assert await _json(district, "GET", f"{url}/api/staff/badge") == {"offers": before_offers + 1,
                                                                     "unread": 0}
    await _json(district, "POST", f"{url}/api/escalations/{eid}/accept")
    await ws["bs.timmach"].expect("escalation_badge", offers=before_offers)  # taken: no longer waiting
    await _json(district, "POST", f"{url}/api/escalations/{eid}/opinion", {
        "assessment": "CHA2DS2-VASc 3", "recommendation": "Kháng đông đường uống", "transfer": False,
        "avoided_visit": True}, status=201)
    await ws["bacsi.lan"].expect("escalation_badge", unread=before_unread + 1)  # the opinion landed
    await _json(district, "GET", f"{url}/api/escalations/{eid}")  # the specialist reading it changes nothing
    assert (await _json(lan, "GET", f"{url}/api/staff/badge"))["unread"] == before_unread + 1
    await _json(lan, "GET", f"{url}/api/escalations/{eid}")  # the requester opens it: read
    await ws["bacsi.lan"].expect("escalation_badge", unread=before_unread)
    assert (await _json(lan, "GET", f"{url}/api/staff/badge"))["unread"] == before_unread
    for w in ws.values():
        await w.close()
