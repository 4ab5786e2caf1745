"""No SQL outside `db/` (issue 7.8, STYLE.md): the application packages other than `db` neither call a
connection's query methods nor hold SQL statements in string literals. Tests and benchmarks may (they
build fixtures); the app may not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("care", "media", "signaling", "web")
QUERY_METHODS = {"execute", "executemany", "fetch", "fetchval", "fetchrow", "cursor",  # asyncpg, not aiohttp's prepare
                 "copy_records_to_table", "copy_to_table", "copy_from_query"}
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE|"
                 r"ALTER\s+TABLE|WITH\s+RECURSIVE)\b", re.DOTALL)


def _modules() -> list[Path]:
    return sorted(p for package in APP_PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_scan_sees_the_app_and_would_see_sql_in_db() -> None:
    assert len(_modules()) > 20
    assert SQL.search((ROOT / "db" / "queue.py").read_text())
    assert _query_calls(ast.parse("async def f(con):\n    await con.fetchval('SELECT 1')\n")) == [2]


def _query_calls(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in QUERY_METHODS and node.args]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_queries_or_sql_strings_outside_db(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    assert _query_calls(tree) == [], f"{path.relative_to(ROOT)}: query calls belong in a db/ module"
    sql = [node.lineno for node in ast.walk(tree)
           if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)]
    assert sql == [], f"{path.relative_to(ROOT)}: SQL in string literals at lines {sql}; move it to db/"
