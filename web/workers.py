"""`donghanh serve --workers N`: N processes on one port (SO_REUSEPORT) and one database, joined by the bus.

The parent owns the database (the embedded server when there is no DATABASE_URL), applies migrations and
seeds demo data once, then starts N workers with the spawn method (no inherited event loop or sockets).
Each worker is a whole app (`create_app`) listening with `reuse_port`, so the kernel spreads new
connections over them; `bus` is forced on, so a room whose two sides landed on different workers works
(signaling/bus.py). SIGINT or SIGTERM to the parent stops the workers (SIGTERM: aiohttp's graceful exit),
then the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import signal
from multiprocessing.process import BaseProcess

from aiohttp import web

from db import demo
from db.migrate import migrate
from db.pool import create_pool
from web import logs, tls
from web.database import database_dsn
from web.settings import Settings

log = logging.getLogger("donghanh")

STOP_GRACE_S = 30.0


def _worker(settings: Settings, demo_data: bool, index: int) -> None:
    """One worker process: the whole app on the shared port."""
    from web.app import create_app  # imported in the child (spawn), after logging is set up

    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings, demo_data=demo_data)
    quiet = index > 0  # one "Running on …" line, from the first worker
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, reuse_port=True,
                ssl_context=tls.server_context(settings), shutdown_timeout=5,
                print=(lambda _text: None) if quiet else (lambda text: print(text, flush=True)))


async def _prepare(dsn: str, demo_data: bool) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)  # the app's codecs (jsonb), one connection
    try:
        async with pool.acquire() as con:
            await migrate(con)
            if demo_data and await demo.seed(con):
                log.info("demo data seeded")
    finally:
        await pool.close()


def _stop(processes: list[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: aiohttp closes sockets and runs cleanups
    for process in processes:
        process.join(STOP_GRACE_S)
        if process.is_alive():
            log.warning("worker %s did not stop in %.0f s; killing it", process.name, STOP_GRACE_S)
            process.kill()
            process.join()


async def run_workers(settings: Settings, *, demo_data: bool, workers: int) -> None:
    """Run `workers` app processes until SIGINT/SIGTERM or until one of them exits."""
    async with database_dsn(settings) as dsn:
        await _prepare(dsn, demo_data)
        shared = dataclasses.replace(settings, database_url=dsn, bus=True)
        context = multiprocessing.get_context("spawn")
        processes: list[BaseProcess] = [
            context.Process(target=_worker, args=(shared, demo_data, i), name=f"donghanh-worker-{i}")
            for i in range(workers)]
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        for process in processes:
            process.start()
        log.info("started %d workers on port %d", workers, settings.port)
        try:
            while not stop.is_set() and all(p.is_alive() for p in processes):
                # Wake on a signal, or every second to notice a worker that exited.
                try:
                    async with asyncio.timeout(1.0):
                        await stop.wait()
                except TimeoutError:
                    pass
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await asyncio.to_thread(_stop, processes)
