"""Bytes a patient's phone transfers from opening the join link to sitting in the waiting room.

Starts the real app with demo data in a child process on 127.0.0.1, issues a join link for a demo
patient, fetches /j/<token> and every stylesheet, script and image it references, following ES module
imports (`import … from "./x.js"`) recursively, once without and once with `Accept-Encoding: gzip`.
The server gzips static files itself; where it sent a body uncompressed (the HTML page), the gzipped
figure is that body compressed at level 6, as a reverse proxy would, and is marked as estimated.
Then it walks the rest of the way as the page does — consent, check-in, websocket hello until the
first `queue` message — and counts those payloads too. Run with --help for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from bench import harness  # noqa: E402

AIM_BYTES = 100_000  # DESIGN.md: patient pages "< 100 KB transferred" (read as 100,000 bytes, the stricter)

_IMPORT = re.compile(r"""(?:^|[;\s])(?:import|export)\s+(?:[\w*{}\s,$]+?\s+from\s+)?["']([^"']+)["']""", re.M)
_DYNAMIC_IMPORT = re.compile(r"""\bimport\(\s*["']([^"']+)["']\s*\)""")
_CSS_URL = re.compile(r"""(?:@import\s+|url\(\s*)["']?([^"')\s]+)["']?""")


@dataclass
class Row:
    """One transferred resource: bytes without compression, and gzipped (as served, or estimated)."""

    resource: str
    kind: str
    status: int
    bytes: int
    gzip_bytes: int
    server_gzipped: bool
    note: str = ""


class _References(HTMLParser):
    """Collects what a browser would fetch right away: stylesheets, scripts, images, icons, preloads."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        rel = (a.get("rel") or "").lower().split()
        if tag == "script" and a.get("src"):
            self.found.append((a["src"] or "", "script"))
        elif tag == "link" and a.get("href") and {"stylesheet", "icon", "modulepreload", "preload",
                                                   "manifest"} & set(rel):
            self.found.append((a["href"] or "", "stylesheet" if "stylesheet" in rel else rel[0]))
        elif tag in ("img", "source", "video", "audio") and a.get("src"):
            self.found.append((a["src"] or "", "image" if tag == "img" else tag))


def references(url: str, kind: str, text: str) -> list[tuple[str, str]]:
    """Absolute URLs this resource makes the browser fetch next, with their kind."""
    if kind in ("page", "favicon") and text.lstrip().startswith("<"):
        parser = _References()
        parser.feed(text)
        found = parser.found
    elif kind in ("script", "module"):
        found = [(m, "module") for m in _IMPORT.findall(text) + _DYNAMIC_IMPORT.findall(text)]
    elif kind == "stylesheet":
        found = [(m, "css-ref") for m in _CSS_URL.findall(text) if not m.startswith("data:")]
    else:
        found = []
    return [(urljoin(url, ref), k) for ref, k in found]


async def fetch(http: aiohttp.ClientSession, url: str, compressed: bool) -> tuple[int, bytes, bool]:
    """(status, body as transferred, whether the server gzipped it); the body is not decompressed."""
    headers = {"Accept-Encoding": "gzip" if compressed else "identity"}
    async with http.get(url, headers=headers, allow_redirects=False) as r:
        body = await r.read()
        return r.status, body, r.headers.get("Content-Encoding", "") == "gzip"


async def crawl(http: aiohttp.ClientSession, start: str, seen: set[str], kind: str = "page") -> list[Row]:
    """Breadth-first from `start`, same origin only, each URL once per visit (as a browser's cache would)."""
    origin = urlsplit(start).netloc
    queue: list[tuple[str, str]] = [(start, kind)]
    rows: list[Row] = []
    while queue:
        url, kind = queue.pop(0)
        if url.startswith("data:"):  # inline (e.g. an empty icon): nothing is transferred for it
            rows.append(Row(url[:16], kind, 200, 0, 0, False, "inline data: URL, no request"))
            continue
        if url in seen or urlsplit(url).netloc != origin:
            continue
        seen.add(url)
        status, plain, plain_was_gzipped = await fetch(http, url, compressed=False)
        if plain_was_gzipped:
            raise RuntimeError(f"{url}: gzip sent although the request said identity")
        _, packed, gzipped = await fetch(http, url, compressed=True)
        note = "" if status == 200 else f"HTTP {status}"
        if not gzipped:
            estimate = len(gzip.compress(plain, 6, mtime=0))
            if kind == "page" or estimate < len(plain):
                note = (note + "; " if note else "") + "not gzipped by the server: gzip -6 estimate"
            packed = plain if estimate >= len(plain) else gzip.compress(plain, 6, mtime=0)
        path = urlsplit(url).path
        shown = re.sub(r"^/j/[^/]+", "/j/<token>", path)
        rows.append(Row(shown, kind, status, len(plain), len(packed), gzipped, note))
        if status == 200:
            queue.extend(references(url, kind, plain.decode("utf-8", "replace")))
    return rows


async def waiting_room(http: aiohttp.ClientSession, base: str, token: str) -> list[Row]:
    """Consent, check-in and the websocket up to the first `queue` message: the payload bytes of each."""
    rows: list[Row] = []
    auth = {"Authorization": f"Bearer {token}"}
    for path, body in (("/api/p/consent", {"version": await _consent_version(http, base, token)}),
                       ("/api/p/checkin", {"reason": "ho, sốt 3 ngày", "symptoms": ["cough", "fever"]})):
        async with http.post(base + path, json=body, headers={**auth, "Accept-Encoding": "gzip"}) as r:
            response = await r.read()
            request_bytes = len(json.dumps(body).encode())  # what aiohttp sends for json=
            rows.append(Row(f"POST {path}", "api", r.status, request_bytes + len(response),
                            request_bytes + len(response), r.headers.get("Content-Encoding") == "gzip",
                            f"request {request_bytes} B + response {len(response)} B"))
    frames = 0
    total = 0
    async with http.ws_connect(base.replace("http", "ws", 1) + "/ws") as ws:
        hello = '{"type":"hello","id":"c1","token":"' + token + '"}'
        await ws.send_str(hello)
        total += len(hello)
        async with asyncio.timeout(15):
            async for msg in ws:
                frames += 1
                total += len(msg.data)
                if '"type":"queue"' in msg.data:
                    break
    rows.append(Row("/ws (hello … first queue)", "websocket", 101, total, total, False,
                    f"{frames} frames received; payload bytes, uncompressed"))
    return rows


async def _consent_version(http: aiohttp.ClientSession, base: str, token: str) -> str:
    async with http.get(f"{base}/j/{token}") as r:
        match = re.search(r'data-consent-version="([^"]+)"', await r.text())
    if not match:
        raise RuntimeError("the join page has no data-consent-version")
    return match.group(1)


async def measure(base: str, dsn: str) -> dict[str, Any]:
    """Issue a link for a demo patient with nothing open, then crawl and walk to the waiting room."""
    from web.auth import LinkSigner, issue_link

    con = await asyncpg.connect(dsn)
    try:
        patient_id = await con.fetchval(
            """SELECT p.id FROM patient p
               WHERE NOT EXISTS (SELECT 1 FROM queue_entry q WHERE q.patient_id = p.id
                                 AND q.status IN ('waiting', 'claimed', 'in_call'))
               ORDER BY p.id LIMIT 1""")
        token, _ = await issue_link(con, LinkSigner(harness.BENCH_SECRET), patient_id, 3600)
    finally:
        await con.close()
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        seen: set[str] = set()
        page = await crawl(http, f"{base}/j/{token}", seen)
        icon_named = any(r.kind == "icon" for r in page)
        # Browsers ask for /favicon.ico when the page names no icon; its answer is part of the first visit.
        favicon = [] if icon_named else await crawl(http, f"{base}/favicon.ico", seen, "favicon")
        for row in favicon[:1]:
            row.note = (row.note + "; " if row.note else "") + "asked for by browsers"
    async with aiohttp.ClientSession() as http:
        flow = await waiting_room(http, base, token)
    return {"page": [asdict(r) for r in page], "favicon": [asdict(r) for r in favicon],
            "waiting_room": [asdict(r) for r in flow]}


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {"bytes": sum(r["bytes"] for r in rows), "gzip_bytes": sum(r["gzip_bytes"] for r in rows),
            "as_served_bytes": sum(r["gzip_bytes"] if r["server_gzipped"] else r["bytes"] for r in rows)}


def report(result: dict[str, Any]) -> None:
    print(f"\n{'resource':44}{'bytes':>9}{'gzipped':>9}  note")
    for section in ("page", "favicon", "waiting_room"):
        for r in result["resources"][section]:
            mark = "" if r["server_gzipped"] else "*"
            print(f"{r['resource'][:44]:44}{r['bytes']:9,d}{r['gzip_bytes']:8,d}{mark:1}  {r['note']}")
    t = result["totals"]
    print(f"{'page + assets':44}{t['page']['bytes']:9,d}{t['page']['gzip_bytes']:9,d}")
    print(f"{'everything up to the waiting room':44}{t['all']['bytes']:9,d}{t['all']['gzip_bytes']:9,d}")
    print("* not gzipped by the server (gzip column: level-6 estimate, or the plain size where gzip "
          "would not help)")
    print(f"as served to a gzip-capable browser (HTML uncompressed unless a proxy gzips it): "
          f"{t['all']['as_served_bytes']:,d} bytes")
    aim = result["aim"]
    print(f"aim: {aim['text']} → {'met' if aim['met'] else 'NOT met'} "
          f"({aim['measured_bytes']:,d} of {aim['bytes']:,d} bytes, "
          f"{aim['measured_bytes'] / aim['bytes']:.0%})")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description="Bytes the patient's pages transfer from /j/<token> to the waiting room, plain and "
                    "gzipped, against the 100 KB aim. Starts the real app with demo data on 127.0.0.1 and "
                    "writes bench/results/page_weight.json.").parse_args(argv)
    started = time.perf_counter()
    with harness.embedded_database() as (dsn, tmp), \
            harness.server_process("app", dsn=dsn, data_dir=str(tmp / "app"), demo_data=True) as server:
        resources = asyncio.run(measure(server.url, dsn))
    everything = resources["page"] + resources["favicon"] + resources["waiting_room"]
    all_totals = totals(everything)
    result: dict[str, Any] = {
        "benchmark": "page_weight", "date": harness.now_iso(), "machine": harness.machine(),
        "command": harness.command_line(argv),
        "method": ("The real app with demo data runs in a child process on 127.0.0.1; the join page for a "
                   "demo patient and every stylesheet, script and ES module it pulls in are fetched once "
                   "with `Accept-Encoding: identity` and once with `gzip` (bodies counted as transferred, "
                   "HTTP headers not counted; bodies the server did not gzip are compressed at level 6 as a "
                   "proxy would). The consent and check-in API calls and the websocket up to the first "
                   "queue message are added, so the total is what a first visit costs up to the waiting "
                   "room."),
        "resources": resources,
        "totals": {"page": totals(resources["page"]), "all": all_totals},
    }
    result["aim"] = {"text": "the patient's pages transfer < 100 KB gzipped up to the waiting room",
                     "bytes": AIM_BYTES, "measured_bytes": all_totals["gzip_bytes"],
                     "as_served_bytes": all_totals["as_served_bytes"],
                     "met": all_totals["gzip_bytes"] < AIM_BYTES}
    result["wall_s"] = time.perf_counter() - started
    report(result)
    path = harness.write_result(harness.RESULTS / "page_weight.json", result)
    print(f"wrote {path} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
