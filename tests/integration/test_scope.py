"""Facility scope in SQL (migration 0007, db/scope.py) agrees with the policy's in-memory twin."""

from __future__ import annotations

import asyncpg

from care.access import IN_SCOPE, relation_of
from db import facilities as facilities_db
from db import scope
from tests.integration.conftest import Network


async def _bigger_tree(pool: asyncpg.Pool, network: Network) -> list[int]:
    """The network plus a second district with a commune, and a second province."""
    async with pool.acquire() as con:
        district2 = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id) VALUES ('TTYT 2', 'district', $1) RETURNING id",
            network.province)
        commune3 = await con.fetchval(
            "INSERT INTO facility (name, level, parent_id) VALUES ('Trạm 3', 'commune', $1) RETURNING id", district2)
        province2 = await con.fetchval("INSERT INTO facility (name, level) VALUES ('BV tỉnh 2', 'province') "
                                       "RETURNING id")
    return [network.province, network.district, network.commune, network.sibling, district2, commune3, province2]


async def test_sql_relation_matches_the_policy_twin_for_every_pair(pool: asyncpg.Pool, network: Network) -> None:
    ids = await _bigger_tree(pool, network)
    async with pool.acquire() as con:
        parents = await facilities_db.parents(con)
        for staff in ids:
            below = set(await scope.subtree(con, staff))
            for obj in ids:
                expected = relation_of(staff, obj, parents)
                assert await scope.relation(con, staff, obj) is expected, (staff, obj)
                # Lists filter with facility_subtree(): exactly the facilities in scope.
                assert (obj in below) == (expected in IN_SCOPE), (staff, obj)
                assert await scope.in_scope(con, staff, obj) == (expected in IN_SCOPE)


async def test_the_network_fixture_relations(pool: asyncpg.Pool, network: Network) -> None:
    async with pool.acquire() as con:
        got = [await scope.relation(con, network.district, f)
               for f in (network.district, network.commune, network.province)]
        sibling = await scope.relation(con, network.commune, network.sibling)
    assert [r.value for r in got] == ["own", "below", "above"]
    assert sibling.value == "sibling"
