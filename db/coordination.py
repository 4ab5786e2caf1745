"""The coordinator's view of escalations and referrals in a facility's subtree: counts, states and ages,
never clinical content (no names, no questions), and the last 30 days' figures per urgency."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def snapshot(con: asyncpg.Connection, facility_id: int, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Tables for the dashboard (each also a CSV): waiting, calls, open requests, referrals, on duty, stats."""
    waiting = await con.fetch(
        """SELECT f.level, q.triage_level, count(*) AS waiting
            FROM queue_entry q JOIN facility f ON f.id = q.facility_id
            WHERE q.status = 'waiting' AND q.facility_id IN (SELECT facility_subtree($1))
            GROUP BY f.level, q.triage_level ORDER BY f.level, q.triage_level DESC""", facility_id)
    calls = await con.fetch(
        """SELECT f.level, count(*) AS in_progress FROM consultation c JOIN queue_entry q ON q.id = c.queue_entry_id
            JOIN facility f ON f.id = q.facility_id
            WHERE c.status = 'active' AND q.facility_id IN (SELECT facility_subtree($1))
            GROUP BY f.level ORDER BY f.level""", facility_id)
    open_requests = await con.fetch(
        """SELECT e.urgency, e.status, e.specialty, f.name AS facility, e.hops,
                   round(extract(epoch FROM ($2 - e.created_at)) / 60)::int AS age_min,
                   (e.status = 'overdue' OR (e.deadline_fired_at IS NULL AND e.deadline_at <= $2
                                             AND e.status IN ('requested', 'offered'))) AS overdue
            FROM escalation e JOIN facility f ON f.id = e.requester_facility_id
            WHERE e.status IN ('requested', 'offered', 'accepted', 'overdue')
              AND e.requester_facility_id IN (SELECT facility_subtree($1))
            ORDER BY overdue DESC, e.created_at""", facility_id, now)
    referrals = await con.fetch(
        """SELECT r.status, r.urgency, ff.name AS from_facility, tf.name AS to_facility,
                   round(extract(epoch FROM ($2 - r.created_at)) / 60)::int AS age_min
            FROM referral r JOIN facility ff ON ff.id = r.from_facility_id JOIN facility tf ON tf.id = r.to_facility_id
            WHERE r.status IN ('sent', 'acknowledged')
              AND (r.from_facility_id IN (SELECT facility_subtree($1))
                   OR r.to_facility_id IN (SELECT facility_subtree($1)))
            ORDER BY r.created_at""", facility_id, now)
    on_duty = await con.fetch(
        """SELECT s.name, f.name AS facility, array_to_string(s.specialties, ' ') AS specialties
            FROM staff s JOIN facility f ON f.id = s.facility_id
            WHERE s.role = 'specialist' AND s.active AND s.on_duty AND s.facility_id IN (SELECT facility_subtree($1))
            ORDER BY f.name, s.name""", facility_id)
    stats = await con.fetch(
        """SELECT e.urgency, count(*) AS requests,
                   round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.accepted_at - e.created_at))
                          / 60)::numeric, 1) AS median_accept_min,
                   round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.answered_at - e.created_at))
                          / 60)::numeric, 1) AS median_answer_min,
                   round(avg(CASE WHEN (e.deadline_for = 'accept' AND e.accepted_at <= e.deadline_at)
                                    OR (e.deadline_for = 'answer' AND e.answered_at <= e.deadline_at)
                                  THEN 1 ELSE 0 END)::numeric, 3) AS share_in_time,
                   round(avg(CASE WHEN e.hops > 0 THEN 1 ELSE 0 END)::numeric, 3) AS share_rerouted,
                   round(avg(CASE WHEN o.avoided_visit THEN 1 ELSE 0 END)
                         FILTER (WHERE o.escalation_id IS NOT NULL)::numeric, 3) AS share_avoided_transfer
            FROM escalation e
            LEFT JOIN LATERAL (SELECT * FROM escalation_opinion x WHERE x.escalation_id = e.id
                               ORDER BY x.version DESC LIMIT 1) o ON true
            WHERE e.created_at > $2::timestamptz - interval '30 days'
              AND e.requester_facility_id IN (SELECT facility_subtree($1))
            GROUP BY e.urgency ORDER BY e.urgency""", facility_id, now)
    return {name: [_plain(dict(r)) for r in rows] for name, rows in (
        ("waiting", waiting), ("calls", calls), ("open_requests", open_requests), ("referrals", referrals),
        ("on_duty", on_duty), ("stats", stats))}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if v is not None and type(v).__name__ == "Decimal" else v) for k, v in row.items()}
