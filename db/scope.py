"""Facility scope in SQL: the one place that asks the referral tree who is above or below whom.

The SQL functions (`facility_subtree`, `facility_ancestors`, `facility_relation`) are created by
migration 0007; queries that list rows in a staff member's scope filter with
`facility_id IN (SELECT facility_subtree($n))`. The policy that uses these relations is care/access.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from care.access import IN_SCOPE, Relation


async def relation(con: asyncpg.Connection, staff_facility: int, object_facility: int) -> Relation:
    """Where `object_facility` sits, seen from `staff_facility` (own, below, above, sibling, unrelated)."""
    value: str = await con.fetchval("SELECT facility_relation($1, $2)", staff_facility, object_facility)
    return Relation(value)


async def relations(con: asyncpg.Connection, pairs: Sequence[tuple[int, int]]) -> list[Relation]:
    """`relation` for many (staff facility, object facility) pairs in one statement, in their order."""
    if not pairs:
        return []
    rows = await con.fetch(
        "SELECT facility_relation(s, o) AS r FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS t(s, o, n) "
        "ORDER BY n", [s for s, _ in pairs], [o for _, o in pairs])
    return [Relation(r["r"]) for r in rows]


async def in_scope(con: asyncpg.Connection, staff_facility: int, object_facility: int) -> bool:
    """The object's facility is the staff member's own, or below it."""
    return await relation(con, staff_facility, object_facility) in IN_SCOPE


async def subtree(con: asyncpg.Connection, facility_id: int) -> list[int]:
    """The facility and every facility below it: the ids a staff member of `facility_id` may list."""
    return [r[0] for r in await con.fetch("SELECT facility_subtree($1)", facility_id)]
