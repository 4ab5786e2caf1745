"""db.escalations and web.escalation_loop on real PostgreSQL, the app clock moved instead of sleeping:
routing, offer expiry and re-route, level climb, overdue, refusals that change nothing, twenty accepts
at once, going away, and a restart between the request and its deadline."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from care.escalation import DEFAULT_POLICIES, Status
from db import escalations as esc
from db import staff as staff_db
from db.errors import Conflict, DbError
from tests.integration.conftest import STAFF_PASSWORD, Factory, Network
from web.clock import Clock
from web.escalation_loop import EscalationLoop, TickResult


class World:
    def __init__(self, pool: asyncpg.Pool, make: Factory, network: Network) -> None:
        self.pool, self.make, self.network = pool, make, network
        self.clock = Clock()
        self._n = 0

    async def specialist(self, facility_id: int, specialty: str = "cardiology", on_duty: bool = True) -> int:
        self._n += 1
        async with self.pool.acquire() as con:
            return await staff_db.create(con, facility_id=facility_id, username=f"ck.{uuid.uuid4().hex[:10]}",
                                         name=f"BS.CK {self._n}", role="specialist", password=STAFF_PASSWORD,
                                         specialties=(specialty,), on_duty=on_duty)

    async def ask(self, urgency: str = "priority", specialty: str = "cardiology", *, reroute: bool = True,
                  requester: int | None = None) -> esc.Outcome:
        doctor = requester or await self.make.staff(self.network.commune)
        patient = await self.make.patient(self.network.commune)
        request = esc.Request(patient, specialty, urgency, "Đau ngực khi gắng sức, ECG có ST chênh?",
                              {"reason": "đau ngực"}, consent=True)
        async with self.pool.acquire() as con:
            return await esc.ask(con, request, doctor, self.network.commune, self.clock.now(), reroute=reroute)

    def loop(self) -> EscalationLoop:
        return EscalationLoop(self.pool, self.clock, DEFAULT_POLICIES, interval_s=0.01)

    async def get(self, escalation_id: uuid.UUID) -> esc.Escalation:
        async with self.pool.acquire() as con:
            found = await esc.get(con, escalation_id)
        assert found is not None
        return found

    async def kinds(self, escalation_id: uuid.UUID) -> list[str]:
        async with self.pool.acquire() as con:
            return [r["kind"] for r in await esc.timeline(con, escalation_id)]


@pytest.fixture
def world(pool: asyncpg.Pool, make: Factory, network: Network) -> World:
    return World(pool, make, network)


async def test_the_request_goes_to_the_least_loaded_specialist_at_the_nearest_level(world: World) -> None:
    busy = await world.specialist(world.network.district)
    free = await world.specialist(world.network.district)
    await world.specialist(world.network.province)
    first = await world.ask()
    assert first.escalation.offered_to == busy  # equal load: the lower id
    second = await world.ask()
    assert second.escalation.offered_to == free  # `busy` now has an open offer
    assert second.escalation.status is Status.offered
    assert [n.kind for n in second.notices] == ["escalation_offer", "escalation_update"]


async def test_decline_moves_to_the_next_then_climbs_a_level(world: World) -> None:
    district = await world.specialist(world.network.district)
    province = await world.specialist(world.network.province)
    await world.specialist(world.network.sibling)  # a sibling commune's specialist is not above
    asked = (await world.ask()).escalation
    assert asked.offered_to == district
    async with world.pool.acquire() as con:
        with pytest.raises(Conflict) as refused:
            await esc.decline(con, asked.id, district, "  ", world.clock.now())
        assert refused.value.code == "reason_required"
        moved = await esc.decline(con, asked.id, district, "đang mổ cấp cứu", world.clock.now())
    assert moved.escalation.offered_to == province and moved.escalation.hops == 1
    assert await world.kinds(asked.id) == ["requested", "offered", "declined", "rerouted"]


async def test_an_expired_offer_is_rerouted_by_the_loop_and_the_deadline_fires_once(world: World) -> None:
    first = await world.specialist(world.network.district)
    second = await world.specialist(world.network.province)
    asked = (await world.ask("urgent")).escalation
    loop = world.loop()
    world.clock.advance(timedelta(minutes=4, seconds=59))
    assert (await loop.tick()).expired == 0
    world.clock.advance(timedelta(seconds=2))  # past the 5-minute offer window
    assert (await loop.tick()).expired == 1
    assert (await world.get(asked.id)).offered_to == second
    world.clock.advance(timedelta(minutes=10))  # past the 15-minute deadline, the second window too
    result = await loop.tick()
    assert result.overdue == 1 and result.expired == 0  # the deadline first: no re-route after it
    late = await world.get(asked.id)
    assert late.status is Status.overdue and late.offered_to is None
    assert (await loop.tick()).overdue == 0
    assert await world.kinds(asked.id) == ["requested", "offered", "offer_expired", "rerouted", "overdue"]
    del first


async def test_nobody_on_duty_waits_and_is_offered_when_someone_comes_on_duty(world: World) -> None:
    away = await world.specialist(world.network.province, on_duty=False)
    asked = (await world.ask("routine")).escalation
    assert asked.status is Status.requested
    async with world.pool.acquire() as con:
        await esc.set_on_duty(con, away, True, world.clock.now())
    world.clock.advance(esc.ROUTE_RETRY)
    assert (await world.loop().tick()).routed == 1
    assert (await world.get(asked.id)).offered_to == away


async def test_going_away_reroutes_ones_open_offers_at_once(world: World) -> None:
    leaving = await world.specialist(world.network.district)
    other = await world.specialist(world.network.district)
    asked = (await world.ask()).escalation
    assert asked.offered_to == leaving
    async with world.pool.acquire() as con:
        assert await esc.set_on_duty(con, leaving, False, world.clock.now()) == 1
    await world.loop().tick()  # no clock move needed
    assert (await world.get(asked.id)).offered_to == other
    async with world.pool.acquire() as con:
        with pytest.raises(Conflict) as refused:
            await esc.accept(con, asked.id, leaving, world.clock.now())
    assert refused.value.code == "not_your_offer"


async def test_twenty_specialists_accepting_at_once_exactly_one_wins(world: World) -> None:
    specialists = [await world.specialist(world.network.district) for _ in range(20)]
    asked = (await world.ask()).escalation
    offered = asked.offered_to
    assert offered in specialists

    async def try_accept(staff_id: int) -> str:
        async with world.pool.acquire() as con:
            try:
                await esc.accept(con, asked.id, staff_id, world.clock.now())
            except Conflict as refused:
                return refused.code
            return "won"

    results = await asyncio.gather(*(try_accept(s) for s in specialists + [offered] * 5))
    assert results.count("won") == 1
    assert set(results) - {"won"} <= {"not_your_offer", "already_accepted"}
    final = await world.get(asked.id)
    assert final.status is Status.accepted and final.accepted_by == offered
    async with world.pool.acquire() as con:
        accepts = await con.fetchval("SELECT count(*) FROM audit_event WHERE action = 'escalation.accept' "
                                     "AND object_id = $1", str(asked.id))
    assert accepts == 1


async def test_answer_after_cancel_is_refused_and_changes_nothing(world: World) -> None:
    specialist = await world.specialist(world.network.district)
    outcome = await world.ask()
    asked = outcome.escalation
    async with world.pool.acquire() as con:
        await esc.accept(con, asked.id, specialist, world.clock.now())
        await esc.cancel(con, asked.id, asked.requester_id, world.clock.now())
        before = await world.kinds(asked.id)
        with pytest.raises(Conflict) as refused:
            await esc.answer(con, asked.id, specialist, esc.Opinion("THA độ 1", "Amlodipin 5 mg", False, True),
                             world.clock.now())
        assert refused.value.code == "not_accepted"
        assert await esc.opinion(con, asked.id) is None
    assert await world.kinds(asked.id) == before
    assert (await world.get(asked.id)).status is Status.cancelled


async def test_the_opinion_is_signed_and_append_only(world: World) -> None:
    specialist = await world.specialist(world.network.district)
    asked = (await world.ask()).escalation
    async with world.pool.acquire() as con:
        await esc.accept(con, asked.id, specialist, world.clock.now())
        done = await esc.answer(con, asked.id, specialist,
                                esc.Opinion("Cơn đau thắt ngực ổn định", "Aspirin 81 mg, làm nghiệm pháp gắng sức",
                                            False, True, "Tái khám 2 tuần"), world.clock.now())
        assert done.escalation.status is Status.answered
        assert [n.kind for n in done.notices] == ["escalation_answered"]
        signed = await esc.opinion(con, asked.id)
        assert signed is not None and len(signed["content_sha256"]) == 64
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await con.execute("UPDATE escalation_opinion SET assessment = 'x' WHERE escalation_id = $1", asked.id)
        closed = await esc.close(con, asked.id, asked.requester_id, world.clock.now())
    assert closed.escalation.status is Status.closed


@pytest.mark.parametrize(("field", "value", "code"), [
    ("specialty", "astrology", "unknown_specialty"),
    ("urgency", "whenever", "unknown_urgency"),
    ("question", "   ", "question_required"),
    ("consent", False, "consent_required"),
])
async def test_bad_requests_are_refused_and_write_nothing(world: World, field: str, value: object,
                                                          code: str) -> None:
    doctor = await world.make.staff(world.network.commune)
    patient = await world.make.patient(world.network.commune)
    values: dict[str, object] = {"patient_id": patient, "specialty": "cardiology", "urgency": "urgent",
                                 "question": "?", "summary": {}, "consent": True}
    values[field] = value
    async with world.pool.acquire() as con:
        with pytest.raises(DbError) as refused:
            await esc.ask(con, esc.Request(**values), doctor, world.network.commune,  # type: ignore[arg-type]
                          world.clock.now())
        assert refused.value.code == code
        assert await con.fetchval("SELECT count(*) FROM escalation") == 0


async def test_a_restart_between_request_and_deadline_still_fires_the_deadline_once(world: World) -> None:
    asked = (await world.ask("urgent")).escalation  # nobody on duty at all
    first = world.loop()
    first.start()
    await first.stop()  # the process goes away before the deadline
    world.clock.advance(timedelta(minutes=16))
    overdue: list[esc.Notice] = []
    fired = asyncio.Event()

    def notify(notices: list[esc.Notice]) -> None:
        overdue.extend(n for n in notices if n.kind == "escalation_overdue")
        if overdue:
            fired.set()

    # Two processes over the same database after the restart: the deadline fires once between them.
    second = EscalationLoop(world.pool, world.clock, DEFAULT_POLICIES, interval_s=0.01, notify=notify)
    third = EscalationLoop(world.pool, world.clock, DEFAULT_POLICIES, interval_s=0.01, notify=notify)
    second.start()
    third.start()
    async with asyncio.timeout(10):
        await fired.wait()
    await second.tick()
    await second.stop()
    await third.stop()
    assert len(overdue) == 1
    assert (await world.get(asked.id)).status is Status.overdue
    assert (await world.kinds(asked.id)).count("overdue") == 1


# ---- lateral routing and re-offers (issue 9's aim: urgent requests accepted within 15 minutes) -------

async def _sibling_district(world: World) -> int:
    async with world.pool.acquire() as con:
        district: int = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id) VALUES ('Trung tâm Y tế huyện bên', 'district', $1) "
            "RETURNING id", world.network.province)
    return district


async def _offers(world: World, escalation_id: uuid.UUID) -> list[tuple[int, str]]:
    async with world.pool.acquire() as con:
        rows = await con.fetch("SELECT staff_id, status FROM escalation_offer WHERE escalation_id = $1 ORDER BY id",
                               escalation_id)
    return [(r["staff_id"], r["status"]) for r in rows]


async def test_an_exhausted_chain_goes_on_to_a_sibling_district_then_offers_again_until_accepted(
        world: World) -> None:
    own = await world.specialist(world.network.district)
    elsewhere = await world.specialist(await _sibling_district(world))
    await world.specialist(world.network.district, "tb")  # another specialty: never a candidate
    asked = (await world.ask("urgent")).escalation
    assert asked.offered_to == own  # above the requester first
    loop = world.loop()
    world.clock.advance(timedelta(minutes=5, seconds=1))
    assert (await loop.tick()).expired == 1
    moved = await world.get(asked.id)
    assert moved.offered_to == elsewhere and moved.hops == 1  # the chain is exhausted: a sibling district
    async with world.pool.acquire() as con:
        hop = (await esc.timeline(con, asked.id))[-1]
    assert hop["kind"] == "rerouted" and hop["details"]["reach"] == "elsewhere"
    world.clock.advance(timedelta(minutes=5))
    notices: list[esc.Notice] = []
    loop.notify = notices.extend
    assert (await loop.tick()).expired == 1
    again = await world.get(asked.id)
    assert again.offered_to == own and again.hops == 2  # everyone asked once: again, nearest first
    offer = next(n for n in notices if n.kind == "escalation_offer")
    assert offer.staff_id == own and offer.details["again"] is True
    async with world.pool.acquire() as con:
        done = await esc.accept(con, asked.id, own, world.clock.now())
    assert done.escalation.status is Status.accepted
    assert await world.kinds(asked.id) == ["requested", "offered", "offer_expired", "rerouted", "offer_expired",
                                           "reoffered", "accepted"]
    assert await _offers(world, asked.id) == [(own, "expired"), (elsewhere, "expired"), (own, "accepted")]


async def test_re_offers_never_go_to_one_who_declined_and_stop_at_the_deadline(world: World) -> None:
    decliner = await world.specialist(world.network.district)
    silent = await world.specialist(world.network.province)
    asked = (await world.ask("urgent")).escalation
    async with world.pool.acquire() as con:
        moved = await esc.decline(con, asked.id, decliner, "đang mổ", world.clock.now())
    assert moved.escalation.offered_to == silent
    loop = world.loop()
    for _ in range(2):  # 5 and 10 minutes: `silent` is asked again each time, never `decliner`
        world.clock.advance(timedelta(minutes=5))
        assert (await loop.tick()).expired == 1
        assert (await world.get(asked.id)).offered_to == silent
    world.clock.advance(timedelta(minutes=5))  # 15 minutes: the deadline (the last window ends with it)
    result = await loop.tick()
    assert result.overdue == 1 and result.expired == 0
    late = await world.get(asked.id)
    assert late.status is Status.overdue and late.hops == 3
    assert await _offers(world, asked.id) == [(decliner, "declined"), (silent, "expired"), (silent, "expired"),
                                              (silent, "withdrawn")]
    assert (await loop.tick()) == TickResult(0, 0, 0)  # nothing left to do


async def test_without_rerouting_there_is_one_offer_and_no_lateral_move(world: World) -> None:
    await world.specialist(world.network.district)
    await world.specialist(await _sibling_district(world))
    asked = (await world.ask("urgent", reroute=False)).escalation
    world.clock.advance(timedelta(minutes=5, seconds=1))
    loop = world.loop()
    await loop.tick()
    assert (await world.get(asked.id)).status is Status.requested
    world.clock.advance(timedelta(minutes=10))
    assert (await loop.tick()).overdue == 1
    assert len(await _offers(world, asked.id)) == 1


async def test_an_urgent_re_offer_is_texted_again_once(world: World) -> None:
    from db import escalation_sms

    silent = await world.specialist(world.network.province)
    async with world.pool.acquire() as con:
        await con.execute("UPDATE staff SET phone = '+84987000999' WHERE id = $1", silent)
    asked = (await world.ask("urgent")).escalation

    async def text() -> escalation_sms.OfferTextResult:
        async with world.pool.acquire() as con:
            return await escalation_sms.text_offer(con, asked.id, silent, base_url="https://dh.example",
                                                   lang="vi", now=world.clock.now())

    assert (await text()).outcome is escalation_sms.OfferText.queued
    assert (await text()).outcome is escalation_sms.OfferText.already
    world.clock.advance(timedelta(minutes=5))
    told: list[esc.Notice] = []
    loop = world.loop()
    loop.notify = told.extend
    await loop.tick()
    assert (await world.get(asked.id)).offered_to == silent  # the only one: asked again
    # Their page hears the old offer end before the new one arrives (and ends on the new offer).
    assert [n.kind for n in told if n.staff_id == silent] == ["escalation_withdrawn", "escalation_offer"]
    assert (await text()).outcome is escalation_sms.OfferText.queued  # a new offer, a new SMS
    assert (await text()).outcome is escalation_sms.OfferText.already
    async with world.pool.acquire() as con:
        keys = [r["dedupe_key"] for r in await con.fetch(
            "SELECT dedupe_key FROM outbound_message WHERE escalation_id = $1 ORDER BY id", asked.id)]
    assert keys == [f"escalation_offer:{asked.id}:{silent}", f"escalation_offer:{asked.id}:{silent}:2"]
