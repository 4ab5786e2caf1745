"""Group commit for the hub's database work: requests that arrive while a batch runs go together as the next.

Under load (every page reconnecting after a restart, 200 doctors claiming at once) the server's CPU goes to
round trips, not to the SQL: each statement costs the event loop a task wake-up, a send and a receive, and an
audited write holds the audit chain's lock through its commit. A `Batcher` runs one `run(items)` at a time;
whatever was submitted while it ran is handed to the next call, all at once (up to `max_batch`). Nothing
waits for a batch to fill: alone, a request runs at once, as it did before, so a quiet server answers as fast
as ever; under load the batches grow by themselves, the same way a database groups commits.

`run` gets the items in submission order and returns one outcome per item, in the same order: a value, or
an exception for that item alone (a refusal such as `queue_empty`). An exception raised by `run` itself is
every item's outcome. A submitter that is cancelled (its socket closed) does not cancel the batch: the work
others share goes on, and the abandoned outcome is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Run `run` over batches of submitted items, one batch at a time (see the module docstring)."""

    def __init__(self, run: Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]], *,
                 max_batch: int = 100, name: str = "batch") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._run = run
        self._max = max_batch
        self._name = name
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # how many `run` calls, and how many items they carried (metrics, benchmarks)
        self.items = 0

    async def submit(self, item: Item) -> Result:
        """The outcome of `item`, once the batch that carries it has run (its exception is raised here)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name=f"{self._name}-batcher")
        return await future

    async def close(self) -> None:
        """Wait for the batch in flight and the ones queued behind it (at shutdown)."""
        if self._worker is not None:
            await asyncio.shield(self._worker)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:self._max], self._pending[self._max:]
            items = [item for item, _ in batch]
            outcomes: Sequence[Result | BaseException]
            try:
                outcomes = await self._run(items)
                if len(outcomes) != len(items):
                    raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for {len(items)} items")
            except Exception as exc:  # every item of the batch fails with it; the next batch still runs
                log.exception("%s batch of %d failed", self._name, len(items))
                outcomes = [exc] * len(items)
            self.batches += 1
            self.items += len(items)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the submitter went away
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
