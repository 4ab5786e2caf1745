"""signaling/batch.py: group commit of the hub's database work."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from signaling.batch import Batcher


class Recorder:
    """A `run` that records its batches and holds each one until released, so a test decides what overlaps."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_request_runs_at_once_in_a_batch_of_its_own() -> None:
    rec = Recorder()
    rec.release.set()
    batcher: Batcher[int, int] = Batcher(rec.run)
    assert await batcher.submit(4) == 40
    assert rec.batches == [[4]]


async def test_requests_arriving_while_a_batch_runs_go_together_in_order() -> None:
    rec = Recorder()
    batcher: Batcher[int, int] = Batcher(rec.run)
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(rec.started.wait(), 5)
    later = [asyncio.create_task(batcher.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    rec.release.set()
    assert await first == 0
    assert [await t for t in later] == [20, 40, 60]
    assert rec.batches == [[0], [2, 4, 6]]
    assert (batcher.batches, batcher.items) == (2, 4)


async def test_batches_are_cut_at_max_batch() -> None:
    rec = Recorder()
    rec.release.set()
    batcher: Batcher[int, int] = Batcher(rec.run, max_batch=2)
    assert await asyncio.gather(*(batcher.submit(i) for i in (0, 2, 4, 6, 8))) == [0, 20, 40, 60, 80]
    assert rec.batches == [[0, 2], [4, 6], [8]]


async def test_an_items_own_exception_reaches_only_its_submitter() -> None:
    rec = Recorder()
    rec.release.set()
    batcher: Batcher[int, int] = Batcher(rec.run)
    results = await asyncio.gather(*(batcher.submit(i) for i in (2, 3, 4)), return_exceptions=True)
    assert results[0] == 20 and results[2] == 40
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 3"


async def test_a_failing_run_fails_its_batch_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return list(items)

    batcher: Batcher[int, int] = Batcher(run)
    with pytest.raises(RuntimeError, match="database went away"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_a_run_that_miscounts_its_outcomes_fails_the_batch() -> None:
    async def run(items: Sequence[int]) -> list[int | BaseException]:
        return [1]

    batcher: Batcher[int, int] = Batcher(run)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_cancelled_submitter_does_not_cancel_the_batch_others_share() -> None:
    rec = Recorder()
    batcher: Batcher[int, int] = Batcher(rec.run)
    gone = asyncio.create_task(batcher.submit(2))
    stays = asyncio.create_task(batcher.submit(4))
    await asyncio.wait_for(rec.started.wait(), 5)
    gone.cancel()
    rec.release.set()
    assert await stays == 40
    assert gone.cancelled()
    assert rec.batches == [[2, 4]]
    await batcher.close()


def test_max_batch_must_be_positive() -> None:
    async def run(items: Sequence[int]) -> list[int | BaseException]:
        return list(items)

    with pytest.raises(ValueError, match="at least 1"):
        Batcher(run, max_batch=0)
