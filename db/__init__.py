"""PostgreSQL: connection pool, embedded server default, numbered migrations, one module per aggregate.

Knows SQL, never aiohttp.
"""
