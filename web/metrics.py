"""`/metrics`: this process's state in Prometheus's text format (prometheus-client), for a scraper.

Everything is read at scrape time: sockets and rooms from the hub, counters from `hub.stats`, the waiting
queue and the message backlog from PostgreSQL, the pool from asyncpg. Nothing is kept between scrapes, so
there is no registry to keep in step with the hub, and N processes are N targets a scraper sums — but for
the figures every process reads whole (doctors online on every process, the waiting queue, the backlog),
which a scraper takes the max of.
Only this machine (after trusted proxies, web/client.py) or a bearer token (`DONGHANH_METRICS_TOKEN`)
may read it: counts are not patient data, but they show how busy a station is.
"""

from __future__ import annotations

import hmac
import os
from collections import Counter
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from db import metrics as metrics_db
from signaling.hub import Hub
from web.client import client_address, is_loopback
from web.clock import Clock
from web.keys import clock_key, hub_key, pool_key, settings_key


class Snapshot:
    """The metric families of one scrape (prometheus-client's `generate_latest` takes any `collect()`)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
        yield from ProcessCollector(registry=None).collect()  # CPU, memory, open files of this process


def _gauge(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _counter(name: str, doc: str, label: str, values: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _scalar_counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def hub_families(hub: Hub) -> list[Metric]:
    """Sockets, rooms and what the hub counted."""
    sockets: Counter[str] = Counter()
    for client in hub.clients:
        if not client.greeted:
            sockets["unauthenticated"] += 1
        elif client.staff is not None:
            sockets[client.staff.role] += 1
        else:
            sockets["patient"] += 1
    doctors = len({c.staff.staff_id for c in hub.clients if c.staff is not None and c.greeted and c.staff.may_claim})
    claims = CounterMetricFamily("donghanh_claims", "Patients taken by a doctor (socket or page)")
    claims.add_metric([], hub.stats.claims)
    return [
        _gauge("donghanh_process_info", "This process (one series per worker; pid tells workers apart)",
               ["pid", "bus"], {(str(os.getpid()), "true" if hub.bus else "false"): 1}),
        _gauge("donghanh_open_sockets", "Open websockets by role (patient, staff roles, not yet greeted)",
               ["role"], {(role,): n for role, n in sockets.items()}),
        _gauge("donghanh_doctors_online", "Staff who may claim patients with at least one open socket, on every "
               "process sharing the database (each process reports the same total: take max, not sum)", [],
               {(): hub.doctors_online()}),
        _gauge("donghanh_doctors_online_here", "Staff who may claim patients with at least one open socket on "
               "this process", [], {(): doctors}),
        _gauge("donghanh_rooms", "Consultation rooms with at least one member on this process", [],
               {(): len(hub.rooms)}),
        claims,
        _counter("donghanh_relayed_messages", "Messages passed to the other side of a room, by type", "type",
                 hub.stats.relayed),
        _scalar_counter("donghanh_relayed_on_arrival", "Offers, answers and candidates relayed as their frame "
                        "arrived, on the socket's known route (part of donghanh_relayed_messages)",
                        hub.stats.relayed_on_arrival),
        _counter("donghanh_refused_messages", "Socket messages answered with an error, by error code", "code",
                 hub.stats.refused),
        _counter("donghanh_batches", "Batches of claims or ends run together (group commit), by kind", "kind",
                 hub.stats.batches),
        _counter("donghanh_batched_items", "Claims or ends carried by those batches, by kind", "kind",
                 hub.stats.batched),
        _scalar_counter("donghanh_queue_broadcasts", "Queue broadcasts (lists to staff, places to patients)",
                        hub.stats.broadcasts),
        _scalar_counter("donghanh_queue_broadcast_seconds", "Time the queue broadcasts took", hub.stats.broadcast_s),
        *bus_families(hub),
    ]


def bus_families(hub: Hub) -> list[Metric]:
    """Cross-process notifications (DONGHANH_BUS): counts, the last lag, reconnections of the listener."""
    if hub.bus is None:
        return []
    stats = hub.bus.stats
    messages = CounterMetricFamily("donghanh_bus_messages", "Cross-process notifications by direction",
                                   labels=["direction"])
    messages.add_metric(["published"], stats.published)
    messages.add_metric(["received"], stats.received)
    reconnects = CounterMetricFamily("donghanh_bus_reconnects", "Times the listening connection was restored")
    reconnects.add_metric([], stats.reconnects)
    notifications = CounterMetricFamily("donghanh_bus_notifications", "NOTIFYs sent (each carries a batch of "
                                        "the messages published meanwhile)")
    notifications.add_metric([], stats.notifications)
    return [
        messages, reconnects, notifications,
        _gauge("donghanh_bus_lag_seconds", "Publish-to-handled time of the last notification from another "
               "process", [], {(): stats.last_lag_s}),
    ]


async def database_families(app: web.Application) -> list[Metric]:
    """The waiting queue and the scheduler's backlog (PostgreSQL), and the pool's use."""
    pool = app[pool_key]
    clock: Clock = app[clock_key]
    async with pool.acquire() as con:
        groups = await metrics_db.waiting_groups(con)
        backlog = await metrics_db.message_backlog(con, clock.now())
    waiting: dict[tuple[str, ...], float] = {}
    oldest: dict[tuple[str, ...], float] = {}
    for level in range(5):  # every level present, at 0 when nobody waits: alert rules see a series
        for danger in ("false", "true"):
            waiting[(f"NC{level}", danger)] = 0
            oldest[(f"NC{level}", danger)] = 0.0
    for g in groups:
        key = (f"NC{g.level}", "true" if g.danger_signs else "false")
        waiting[key] = g.patients
        oldest[key] = g.oldest_wait_s
    size, idle = pool.get_size(), pool.get_idle_size()
    return [
        _gauge("donghanh_waiting_patients", "Patients waiting now, by triage level and danger sign",
               ["level", "danger_sign"], waiting),
        _gauge("donghanh_waiting_oldest_seconds", "Longest current wait, by triage level and danger sign",
               ["level", "danger_sign"], oldest),
        _gauge("donghanh_scheduler_backlog", "Messages due and not yet sent", [], {(): backlog.due}),
        _gauge("donghanh_scheduler_lag_seconds", "How long the oldest due message has waited", [],
               {(): backlog.lag_s}),
        _gauge("donghanh_db_pool_connections", "Database pool connections by state", ["state"],
               {("in_use",): size - idle, ("idle",): idle}),
        _gauge("donghanh_db_pool_max", "Database pool size limit", [], {(): pool.get_max_size()}),
    ]


def may_read(request: web.Request) -> bool:
    """This machine (the client address after trusted proxies), or the configured bearer token."""
    settings = request.app[settings_key]
    if is_loopback(client_address(request, settings.trusted_proxies)):
        return True
    if not settings.metrics_token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), settings.metrics_token.encode())


async def metrics(request: web.Request) -> web.Response:
    if not may_read(request):
        raise web.HTTPForbidden()  # the reader's language on a page, {"code": "forbidden"} as JSON (middleware)
    families = hub_families(request.app[hub_key]) + await database_families(request.app)
    body = generate_latest(Snapshot(families))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
