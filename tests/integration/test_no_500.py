"""Property test: no input gives a 500. Every route of the real application (read from `app.router`, so a
new route is covered without touching this file) gets random path values, query strings, headers, cookies
and — for methods with a body — random forms, JSON and bytes, as an anonymous visitor, a patient with a
join link, and a signed-in staff member of each role (valid session and CSRF token), over real HTTP. Any
status but 500 is fine; a traceback in the body is not. The websocket gets random JSON frames and never
answers `error internal`.

Each route gets, as explicit examples, a sweep of the classic crashers (SWEEP: in every path value and every
name its handler reads, found in its source) and, for handlers that decode JSON, bodies of their msgspec
shape carrying crashers (JSON_SWEEP); then EXAMPLES random probes. Bounded and repeatable: derandomized, no
example database, no shrinking; DONGHANH_NO500_EXAMPLES / _WS_EXAMPLES search harder, and
DONGHANH_NO500_ROUTES (a regex over "METHOD /pattern") narrows the routes. Hypothesis runs in a worker
thread; each example's requests run on the test's event loop, where the app is.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import string
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from db import consultations as consultations_db
from db import demo
from db import staff as staff_db
from signaling import protocol
from tests.conftest import RunningApp
from tests.integration.conftest import Factory
from web.auth import CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, issue_link
from web.keys import signer_key

pytestmark = [pytest.mark.usefixtures("fast_password_hashing"), pytest.mark.timeout(600)]

EXAMPLES = int(os.environ.get("DONGHANH_NO500_EXAMPLES", "10"))  # random ones, after the SWEEP
WS_EXAMPLES = int(os.environ.get("DONGHANH_NO500_WS_EXAMPLES", "150"))
# No shrinking: a failure's message already shows the request, and shrinking a slow HTTP example takes minutes.
PHASES = (Phase.explicit, Phase.generate)
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# One staff member of each role, from the demo data every running_app has.
ROLE_USERS: dict[str, str] = {}
for _member in demo.STAFF:
    ROLE_USERS.setdefault(_member.role, _member.username)
IDENTITIES = ("anonymous", "patient", *ROLE_USERS)


# ---- what the app reads: field names from its forms, queries and JSON bodies --------------------------------

def _vocabulary() -> list[str]:
    """Names the app looks for, found in its source: form inputs in templates, query and form keys in web/,
    and the fields of every JSON body it decodes. Random keys hit nothing; these reach the handlers."""
    names: set[str] = set()
    for path in (ROOT / "web" / "templates").glob("*.html"):
        names |= set(re.findall(r'name="([\w.]+)"', path.read_text(encoding="utf-8")))
    for path in (ROOT / "web").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r'(?:query|form|values)\.get(?:all)?\(\s*"(\w+)"', text))
        names |= set(re.findall(r'(?:query|values|form)\[\s*"(\w+)"\s*\]', text))
        names |= set(re.findall(r'"(\w+)" in (?:request\.)?(?:query|form|values)', text))
        for struct in re.findall(r"class (\w+)\(msgspec\.Struct", text):
            names |= set(re.findall(r"^    (\w+): ", text.split(f"class {struct}(", 1)[1].split("\nclass ")[0],
                                    re.MULTILINE))
    return sorted(names - {"csrf_field"})


VOCABULARY = _vocabulary()


_READS = [r'(?:query|form|values|post\(\)|match_info)\.get(?:all)?\(\s*"(\w+)"',
          r'(?:query|form|values|match_info)\[\s*"(\w+)"\s*\]',
          r'"(\w+)"\s+(?:not\s+)?in\s+(?:request\.)?(?:query|form|values)',
          r'\(request,\s*"(\w+)"']  # helpers such as params.query_day(request, "day", …)


def _read_names(source: str) -> set[str]:
    return {name for pattern in _READS for name in re.findall(pattern, source)}


def handler_reads(handler: Callable[..., Any]) -> tuple[list[str], list[type[msgspec.Struct]]]:
    """The names one handler reads from the request (`query.get("q")`, `form["x"]`, `"day" in query`,
    `helper(request, "day")`), in its source and in the functions, msgspec structs (their fields) and
    string tuples of its module that it uses, transitively. So the
    probes of /staff/schedule mostly send `day` and `view`, and those of /api/c/{cid}/note/draft send
    `base_version` and `note` with `plan`, `vitals`, … inside. The structs come back too: JSON bodies of
    their shape, with crashers in their fields, get past the decoder to the code behind it."""
    module = inspect.getmodule(handler)
    names: set[str] = set()
    structs: list[type[msgspec.Struct]] = []
    todo: list[Any] = [handler]
    done: set[int] = set()
    while todo:
        obj = todo.pop()
        if id(obj) in done:
            continue
        done.add(id(obj))
        if isinstance(obj, tuple | list | frozenset):
            names |= {x for x in obj if isinstance(x, str)}
            continue
        if isinstance(obj, type) and issubclass(obj, msgspec.Struct):
            names |= {f.name for f in msgspec.structs.fields(obj)}
            structs.append(obj)
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            continue
        names |= _read_names(source)
        for word in set(re.findall(r"\b[A-Za-z_]\w*\b", source)):
            found = getattr(module, word, None)
            if inspect.isfunction(found) or isinstance(found, type) or (
                    isinstance(found, tuple | list | frozenset) and all(isinstance(x, str) for x in found)):
                if getattr(found, "__module__", module.__name__ if module else None) == (
                        module.__name__ if module else None):
                    todo.append(found)
    return sorted(names) or VOCABULARY, sorted(structs, key=lambda c: c.__name__)

# ---- value strategies ------------------------------------------------------------------------------------

NASTY = ["", " ", "0", "-1", "1_0", "+1", "١٢", "²", "99999999999999999999", "9223372036854775808",
         "9999-12-31", "0001-01-01", "2026-02-30", "24:61", "\x00", "a\x00b", "\x01\x1f\x7f", "%", "%00",
         "..", "../..", "null", "true", "[]", "{}", "NaN", "1e400", "<script>", "'; --", "\ufffd", "\u202e",
         "x" * 3000, "appointment", "walk_in", "merge", "create_anyway", "communes", "en", "vi"]

# The classic crashers, drawn often: ids past bigint, calendar ends, NUL, non-ASCII digits, huge text.
BOUNDARY = ["99999999999999999999", "9223372036854775808", "-1", "0", "9999-12-31", "0001-01-01", "\x00",
            "a\x00b", "١٢", "1_0", "", "%", "x" * 3000, "2026-02-30", "24:60"]

# The sweep's values (explicit examples, all routes): the crashers of issue 7 and their neighbours.
SWEEP = ["99999999999999999999", "-1", "9999-12-31", "0001-01-01", "a\x00b", "١٢", "", "x" * 3000, "%",
         "2026-02-30"]

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_boundary = st.sampled_from(BOUNDARY)
_scalar_text = st.one_of(_boundary, _boundary, st.sampled_from(NASTY), _text,
                         st.integers(-(2**80), 2**80).map(str), st.uuids().map(str),
                         st.dates().map(lambda d: d.isoformat()))


def _value(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), _scalar_text, _boundary) if known else _scalar_text


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                       st.floats(allow_nan=False, allow_infinity=False), _scalar_text)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(VOCABULARY), _text), inner, max_size=5)),
    max_leaves=12)


def _json_objects(names: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """JSON, mostly objects keyed by the handler's names, nested (a note inside a draft)."""
    key = st.one_of(st.sampled_from(names or VOCABULARY), st.sampled_from(names or VOCABULARY), _text)
    return st.recursive(
        _json_leaf, lambda inner: st.dictionaries(key, inner, max_size=6) | st.lists(inner, max_size=3),
        max_leaves=14)


_INTS = st.one_of(st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400]),
                  st.integers())


def _shape(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type, with the crashers among them (see shaped_like)."""
    mi = msgspec.inspect
    if isinstance(t, mi.StructType):
        fields = {f.encode_name: _shape(f.type) for f in t.fields}
        required = {f.encode_name for f in t.fields if f.required}
        tag = {t.tag_field: st.just(t.tag)} if t.tag_field else {}
        return st.fixed_dictionaries({**tag, **{k: v for k, v in fields.items() if k in required}},
                                     optional={k: v for k, v in fields.items() if k not in required})
    if isinstance(t, mi.UnionType):
        return st.one_of(*(_shape(x) for x in t.types))
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return st.lists(_shape(t.item_type), max_size=4)
    if isinstance(t, mi.DictType):
        return st.dictionaries(_text, _shape(t.value_type), max_size=3)
    if isinstance(t, mi.StrType):
        return _scalar_text
    if isinstance(t, mi.IntType):
        return _INTS
    if isinstance(t, mi.FloatType):
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False), _INTS)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.DateType):
        return st.one_of(st.sampled_from(["9999-12-31", "0001-01-01"]), st.dates().map(lambda d: d.isoformat()))
    if isinstance(t, mi.UUIDType):
        return st.uuids().map(str)
    if isinstance(t, mi.EnumType | mi.LiteralType):
        values = [m.value for m in t.cls] if isinstance(t, mi.EnumType) else list(t.values)
        return st.one_of(st.sampled_from(values), _scalar_text)
    return _json


def shaped_like(struct: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """JSON bodies of this struct's shape, with crasher values in its fields (NUL in strings, integers past
    64 bits, dates at the calendar's ends): the decoder accepts many of them, so they reach the handler."""
    return _shape(msgspec.inspect.type_info(struct))


def _pairs(known: dict[str, list[str]], names: tuple[str, ...] = ()) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Each name the handler reads (with probability 3/4), then a few other keys."""
    def pair(key: str) -> st.SearchStrategy[tuple[str, str]]:
        return st.tuples(st.just(key), _value(known.get(key, [])))

    own = [st.one_of(pair(n), pair(n), pair(n), st.none()) for n in names]
    others = st.lists(st.one_of(st.sampled_from(VOCABULARY), _text).flatmap(pair), max_size=2)
    return st.tuples(st.tuples(*own), others).map(lambda t: [p for p in t[0] if p is not None] + t[1])


def _encode(pairs: list[tuple[str, str]], junk: str) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs) + junk


# ---- one request -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str  # "GET" also stands for the HEAD route aiohttp adds with it (same handler): probes use both
    pattern: str  # the canonical path, "/staff/patients/{pid}"
    names: tuple[str, ...] = ()  # what its handler reads (handler_reads)
    bodies: tuple[type[msgspec.Struct], ...] = ()  # the JSON bodies it decodes

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.pattern)

    @property
    def has_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Probe:
    method: str
    identity: str
    path: str
    query: str
    body: bytes | None
    content_type: str | None
    accept: str
    csrf: str  # "valid", "missing", or a junk value
    junk_headers: dict[str, str] = field(default_factory=dict)
    junk_cookies: dict[str, str] = field(default_factory=dict)


JUNK_HEADERS = ["Accept-Language", "Authorization", "Origin", "Referer", "X-Forwarded-For", "Content-Language",
                "Host", "Content-Encoding", "Expect", "If-None-Match", "Accept-Encoding", "Range", "Upgrade"]
_JUNK_QUERY = st.sampled_from(["", "", "", "&%", "&%FF=%FE", "&q=%00", "&=", "&&&", "&lang=en", "&a=%ED%A0%80"])
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                       max_size=60)
_cookie_text = st.text(st.sampled_from(string.ascii_letters + string.digits + "-_=.%\"\\,ÿ"), max_size=40)


def probes(route: Route, known: dict[str, list[str]]) -> st.SearchStrategy[Probe]:
    @st.composite
    def build(draw: st.DrawFn) -> Probe:
        path = route.pattern
        for name in route.params:
            value = draw(_value(known.get(name, [])))
            path = path.replace("{" + name + "}", quote(value, safe=""))
        query = _encode(draw(_pairs(known, route.names)), draw(_JUNK_QUERY)).lstrip("&")
        body: bytes | None = None
        content_type: str | None = None
        if route.has_body:
            kind = draw(st.sampled_from(["form", "form", "json", "json", "bytes", "none"]))
            if kind == "form":
                pairs = draw(_pairs(known, route.names))
                if draw(st.booleans()):
                    pairs.append((CSRF_FIELD, "{csrf}"))  # filled in with the identity's token when sent
                body = _encode(pairs, "").encode()
                content_type = "application/x-www-form-urlencoded"
            elif kind == "json":
                shaped = [shaped_like(struct) for struct in route.bodies]
                body = json.dumps(draw(st.one_of(_json_objects(route.names), *shaped, *shaped))).encode()
                content_type = "application/json"
            elif kind == "bytes":
                body = draw(st.binary(max_size=300))
                content_type = draw(st.sampled_from([
                    "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=b",
                    "application/json", "text/plain", "application/x-www-form-urlencoded; charset=latin-9x"]))
        junk_headers = {}
        if draw(st.integers(0, 4)) == 0:
            junk_headers[draw(st.sampled_from(JUNK_HEADERS))] = draw(_header_text)
        junk_cookies = {}
        if draw(st.integers(0, 4)) == 0:
            junk_cookies[draw(st.sampled_from([SESSION_COOKIE, CSRF_COOKIE, "dh_lang"]))] = draw(_cookie_text)
        return Probe(
            method="HEAD" if route.method == "GET" and draw(st.integers(0, 3)) == 0 else route.method,
            identity=draw(st.sampled_from(IDENTITIES)), path=path, query=query, body=body,
            content_type=content_type,
            accept=draw(st.sampled_from(["text/html", "application/json", "*/*", "junk/../x"])),
            csrf=draw(st.sampled_from(["valid", "valid", "valid", "missing", "forged", "ÿÿ"])),
            junk_headers=junk_headers, junk_cookies=junk_cookies)
    return build()


class Prober:
    """Sends probes as a given identity: a fresh staff session (so a probe of /staff/logout does not sign the
    next probe out) or a fresh join link for each."""

    def __init__(self, app: RunningApp, http: aiohttp.ClientSession) -> None:
        self.app = app
        self.http = http
        self.statuses: Counter[tuple[str, int]] = Counter()  # (identity, status): what the probes reached

    async def _identity(self, identity: str) -> tuple[dict[str, str], dict[str, str], str]:
        """(cookies, headers, csrf token) for one probe."""
        async with self.app.pool.acquire() as con:
            if identity == "anonymous":
                return {CSRF_COOKIE: "anon-csrf-token"}, {}, "anon-csrf-token"
            headers = {}
            if identity.endswith("patient"):
                token, _ = await issue_link(con, self.app.app[signer_key], 1, 3600)
                headers["Authorization"] = f"Bearer {token}"
            if identity == "patient":
                return {}, headers, ""
            role = identity.removesuffix("+patient")  # "doctor+patient": both credentials, for the sweep
            staff_id = await con.fetchval("SELECT id FROM staff WHERE username = $1", ROLE_USERS[role])
            session, csrf = await staff_db.open_session(con, staff_id, timedelta(hours=1))
        return {SESSION_COOKIE: session, CSRF_COOKIE: csrf}, headers, csrf

    async def send(self, probe: Probe) -> tuple[int, str]:
        cookies, headers, csrf = await self._identity(probe.identity)
        cookies.update(probe.junk_cookies)
        headers = {**headers, **probe.junk_headers, "Accept": probe.accept}
        if probe.csrf != "missing":
            headers[CSRF_HEADER] = csrf if probe.csrf == "valid" else probe.csrf
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if probe.content_type:
            headers["Content-Type"] = probe.content_type
        body = probe.body.replace(b"%7Bcsrf%7D", quote(csrf, safe="").encode()) if probe.body else None
        url = URL(self.app.url + probe.path + ("?" + probe.query if probe.query else ""), encoded=True)
        try:
            async with self.http.request(probe.method, url, data=body, headers=headers,
                                         allow_redirects=False) as r:
                self.statuses[probe.identity, r.status] += 1
                return r.status, (await r.read()).decode("utf-8", "replace")
        except aiohttp.ClientResponseError as exc:
            # aiohttp's HTTP parser refused the request (a request line past 8190 bytes) before any
            # handler ran, with a 400 the client cannot read as the answer to a HEAD: a refusal all the same.
            assert exc.status == 400, exc
            self.statuses[probe.identity, exc.status] += 1
            return exc.status, exc.message


def _on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, T]], T]:
    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)
    return run


def _no_500(status: int, body: str, where: str) -> None:
    assert status != 500, f"{where} → 500: {body[:300]}"
    assert "Traceback (most recent call last)" not in body, f"{where}: a traceback in the body"
    assert "internal error (incident" not in body, f"{where}: an internal error in the body"


def _check_route(route: Route, known: dict[str, list[str]], prober: Prober,
                 run: Callable[[Coroutine[Any, Any, tuple[int, str]]], tuple[int, str]]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=PHASES, report_multiple_bugs=False)
    @given(probe=probes(route, known))
    def probe_route(probe: Probe) -> None:
        status, body = run(prober.send(probe))
        _no_500(status, body, f"{probe.identity} {probe.method} {probe.path}?{probe.query}")

    for i, value in enumerate(SWEEP):
        probe_route = example(probe=sweep_probe(route, value, i))(probe_route)
    for struct in route.bodies:
        for i, value in enumerate(JSON_SWEEP):
            probe_route = example(probe=json_sweep_probe(route, known, struct, value, i))(probe_route)
    probe_route()


JSON_SWEEP = ["a\x00b", "x" * 3000, "9999-12-31", "99999999999999999999"]


def crasher_like(t: msgspec.inspect.Type, value: str, big: bool) -> Any:
    """One value of a msgspec type with the crasher in every string, and integers at 0 or past 64 bits."""
    mi = msgspec.inspect
    if isinstance(t, mi.StructType):
        out = {f.encode_name: crasher_like(f.type, value, big) for f in t.fields}
        return {t.tag_field: t.tag, **out} if t.tag_field else out
    if isinstance(t, mi.UnionType):
        usable = [x for x in t.types if not isinstance(x, mi.NoneType)] or list(t.types)
        return crasher_like(usable[0], value, big)
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return [crasher_like(t.item_type, value, big)]
    if isinstance(t, mi.IntType | mi.FloatType):
        return 10**30 if big else 0
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.UUIDType):
        return str(uuid.UUID(int=0))
    if isinstance(t, mi.EnumType):
        return next(iter(t.cls)).value
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.DateType):  # a date field takes the crasher only when it is one, else a good date
        return value if re.fullmatch(r"\d{4}-\d\d-\d\d", value) else "2030-01-01"
    return value  # strings, anything else


def json_sweep_probe(route: Route, known: dict[str, list[str]], struct: type[msgspec.Struct], value: str,
                     i: int) -> Probe:
    """A JSON body of the handler's shape carrying the crasher, to real path ids, from a doctor who also
    holds a patient's link: past authentication and the decoder to the code that uses the values."""
    path = route.pattern
    for name in route.params:
        path = path.replace("{" + name + "}", quote((known.get(name) or ["1"])[0], safe=""))
    body = json.dumps(crasher_like(msgspec.inspect.type_info(struct), value, big=i % 2 == 1)).encode()
    return Probe(method=route.method, identity="doctor+patient", path=path, query="", body=body,
                 content_type="application/json", accept="application/json", csrf="valid")


def sweep_probe(route: Route, value: str, i: int) -> Probe:
    """The explicit examples every route gets before the random ones: one crasher in every path value, query
    name and form field at once, from a signed-in doctor (who reaches the most handlers) with a good CSRF
    token. Random probes spread over names and identities; this makes the classic cases certain."""
    path = route.pattern
    for name in route.params:
        path = path.replace("{" + name + "}", quote(value, safe=""))
    pairs = [(name, value) for name in route.names]
    return Probe(method="HEAD" if route.method == "GET" and i % 4 == 3 else route.method, identity="doctor",
                 path=path, query=_encode(pairs, ""),
                 body=_encode([*pairs, (CSRF_FIELD, "{csrf}")], "").encode() if route.has_body else None,
                 content_type="application/x-www-form-urlencoded" if route.has_body else None,
                 accept="application/json" if i % 2 else "text/html", csrf="valid")


# ---- known values: real ids, so probes also get past "not found" ------------------------------------------

async def _known_values(app: RunningApp, make: Factory, http: aiohttp.ClientSession) -> dict[str, list[str]]:
    async with app.pool.acquire() as con:
        doctor, facility = await con.fetchrow("SELECT id, facility_id FROM staff WHERE username = $1",
                                              ROLE_USERS["doctor"])
        patients = [str(r["id"]) for r in await con.fetch("SELECT id FROM patient ORDER BY id LIMIT 3")]
        token, _ = await issue_link(con, app.app[signer_key], 2, 3600)
        session, csrf = await staff_db.open_session(con, doctor, timedelta(hours=1))
    claim = await make.claimed(doctor, facility)
    waiting = await make.waiting(await make.patient(facility))
    r = await http.post(f"{app.url}/staff/patients/{patients[0]}/invite", allow_redirects=False,
                        data={"kind": "walk_in", CSRF_FIELD: csrf},
                        headers={"Cookie": f"{SESSION_COOKIE}={session}; {CSRF_COOKIE}={csrf}"})
    assert r.status == 303, await r.text()
    invitation = r.headers["Location"].rsplit("/", 1)[1]
    static = [e.name for e in resources.files("web").joinpath("static").iterdir()][:5]
    return {"pid": patients, "cid": [str(claim.consultation_id)], "iid": [invitation],
            "entry": [str(waiting.id), str(claim.consultation_id)], "token": [token], "name": static,
            "test": [uuid.uuid4().hex], "other": patients, "doctor": [str(doctor)], "day": ["2026-12-01"],
            "level": ["NC1", "NC4"], "kind": ["appointment", "walk_in"], "q": ["Giàng", "09123"],
            "province": ["15"], "version": ["2026-11-v1"], "type": ["offer"], "view": ["mine", "facility"],
            "confirm": ["merge", "create_anyway"], "action": ["communes"], "status": ["queued", "failed"]}


def app_routes(app: web.Application) -> list[Route]:
    """Every route, a GET and its automatic HEAD counted once."""
    all_routes = [(r.method, r.resource.canonical, r.handler) for r in app.router.routes() if r.resource is not None]
    gets = {(pattern, handler) for method, pattern, handler in all_routes if method == "GET"}
    routes = []
    for method, pattern, handler in all_routes:
        if not (method == "HEAD" and (pattern, handler) in gets):
            names, structs = handler_reads(handler)
            routes.append(Route(method, pattern, tuple(names), tuple(structs)))
    return routes


async def test_no_route_answers_500_to_random_input(running_app: RunningApp, make: Factory) -> None:
    routes = app_routes(running_app.app)
    assert len(routes) >= 35 and any(r.params for r in routes)
    only = os.environ.get("DONGHANH_NO500_ROUTES")  # a regex, to dig into a few routes with more examples
    routes = [r for r in routes if not only or re.search(only, f"{r.method} {r.pattern}")]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        known = await _known_values(running_app, make, http)
        prober = Prober(running_app, http)
        run = _on_loop(asyncio.get_running_loop())
        failures: list[str] = []

        timings: list[tuple[float, str]] = []

        def every_route() -> None:
            for route in routes:
                started = time.perf_counter()
                try:
                    _check_route(route, known, prober, run)
                except AssertionError as exc:  # keep going: one run lists every route that fails
                    failures.append(f"{route.method} {route.pattern}: {exc}")
                timings.append((time.perf_counter() - started, f"{route.method} {route.pattern}"))

        await asyncio.to_thread(every_route)
    if os.environ.get("DONGHANH_NO500_STATS"):
        print(sorted(prober.statuses.items()), sorted(timings, reverse=True)[:15])
    assert failures == [], "\n".join(failures)


# ---- the websocket ---------------------------------------------------------------------------------------

def _protocol_fields() -> list[str]:
    names: set[str] = set()
    for cls in (protocol.Hello, protocol.Join, protocol.Offer, protocol.Ice, protocol.Chat, protocol.Media,
                protocol.ClaimNext, protocol.End, protocol.IceCandidate):
        names |= {f.name for f in msgspec.structs.fields(cls)}
    return sorted(names)


# Stand-ins in generated frames for the current consultation and the patient's token: the consultation is
# replaced by a new one whenever a probe ends it, so later probes still reach a live room.
ROOM = "5eed0000-0000-4000-8000-000000000001"
TOKEN = "token-of-the-current-patient"


def frames() -> st.SearchStrategy[str | bytes]:
    fields = _protocol_fields()
    value = st.one_of(st.sampled_from([ROOM, TOKEN, str(uuid.uuid4())]), _json)
    message = st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(sorted(protocol.CLIENT_TYPES)), _scalar_text)},
        optional={"id": st.one_of(_scalar_text, st.integers()), "room": st.sampled_from([ROOM, "x", None]),
                  **{f: value for f in fields if f not in ("type", "id", "room")}})
    # Messages of each client type's exact shape (crashers in their fields), half of them in the real room.
    shaped = st.one_of(*(shaped_like(cls) for cls in (protocol.Hello, protocol.Join, protocol.Leave, protocol.Offer,
                                                        protocol.Answer, protocol.Ice, protocol.Chat, protocol.Media,
                                                        protocol.ClaimNext, protocol.End, protocol.Ping)))
    in_room = st.tuples(shaped, st.booleans()).map(lambda t: {**t[0], "room": ROOM} if t[1] and "room" in t[0]
                                                   else t[0])
    return st.one_of(message.map(json.dumps), in_room.map(json.dumps), in_room.map(json.dumps),
                     _json.map(json.dumps), _text, st.binary(max_size=50),
                     st.sampled_from([json.dumps({"type": "chat", "room": ROOM, "text": "a\x00"}), "[" * 3000]))


@dataclass
class Call:
    """The consultation the doctor's and the patient's sockets are in."""

    room: str = ""
    token: str = ""

    def fill(self, frame: str | bytes) -> str | bytes:
        return frame.replace(ROOM, self.room).replace(TOKEN, self.token) if isinstance(frame, str) else frame


class Socket:
    """A socket that says hello (and joins the call's room) again whenever the server closed it."""

    def __init__(self, http: aiohttp.ClientSession, url: str, hello: Callable[[], Awaitable[dict[str, Any]]],
                 call: Call | None) -> None:
        self.http, self.url, self.hello, self.call = http, url, hello, call
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pings = 0

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None or self.ws.closed:
            hello = await self.hello()
            self.ws = await self.http.ws_connect(self.url, headers=hello.pop("headers"))
            await self.ws.send_str(json.dumps(hello))
            if self.call:
                await self.ws.send_str(json.dumps({"type": "join", "room": self.call.room}))
        return self.ws

    async def exchange(self, frame: str | bytes) -> list[dict[str, Any]]:
        """Send a frame, then a ping; everything that came back until the pong (or the close)."""
        ws = await self._open()
        self.pings += 1
        ping = f"probe-{self.pings}"
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        await ws.send_str(json.dumps({"type": "ping", "id": ping}))
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return seen  # closed (too many invalid messages, or replaced): reopened next time
                data = json.loads(msg.data)
                seen.append(data)
                if data.get("type") == "pong" and data.get("id") == ping:
                    return seen

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def test_no_socket_frame_gets_an_internal_error(running_app: RunningApp, make: Factory) -> None:
    async with running_app.pool.acquire() as con:
        doctor, facility = await con.fetchrow("SELECT id, facility_id FROM staff WHERE username = $1",
                                              ROLE_USERS["doctor"])
    call = Call()

    async def new_call() -> None:
        """The doctor's active consultation (a new one if a probe ended it), and a link for its patient."""
        async with running_app.pool.acquire() as con:
            active = await consultations_db.active_for_doctor(con, doctor)
        if active is None:
            claim = await make.claimed(doctor, facility)
            async with running_app.pool.acquire() as con:
                active = await consultations_db.get(con, claim.consultation_id)
        assert active is not None
        async with running_app.pool.acquire() as con:
            call.token, _ = await issue_link(con, running_app.app[signer_key], active.patient_id, 3600)
        call.room = str(active.id)

    async def doctor_hello() -> dict[str, Any]:
        async with running_app.pool.acquire() as con:
            session, _ = await staff_db.open_session(con, doctor, timedelta(hours=1))
        return {"type": "hello", "headers": {"Cookie": f"{SESSION_COOKIE}={session}"}}

    async def patient_hello() -> dict[str, Any]:
        return {"type": "hello", "token": call.token, "headers": {}}

    async def anonymous_hello() -> dict[str, Any]:
        return {"type": "hello", "headers": {}}

    await new_call()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        url = f"{running_app.url}/ws"
        sockets = {"doctor": Socket(http, url, doctor_hello, call), "patient": Socket(http, url, patient_hello, call),
                   "anonymous": Socket(http, url, anonymous_hello, None)}
        run = _on_loop(asyncio.get_running_loop())

        async def probe(who: str, frame: str | bytes) -> list[dict[str, Any]]:
            answers = await sockets[who].exchange(call.fill(frame))
            if any(a.get("type") == "ended" or a.get("code") == "room_closed" for a in answers):
                await new_call()
                for side in ("doctor", "patient"):
                    await sockets[side].close()  # they say hello and join the new room on the next probe
            return answers

        @settings(max_examples=WS_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=PHASES)
        @given(who=st.sampled_from(sorted(sockets)), frame=frames())
        def probe_socket(who: str, frame: str | bytes) -> None:
            answers = run(probe(who, frame))
            answered.update(f"{who} {a.get('type')} {a.get('code', '')}" for a in answers)
            internal = [a for a in answers if a.get("type") == "error" and a.get("code") == "internal"]
            assert internal == [], f"{who} sent {call.fill(frame)[:200]!r}: {internal}"

        answered: Counter[str] = Counter()
        try:
            await asyncio.to_thread(probe_socket)
        finally:
            for socket in sockets.values():
                await socket.close()
        if os.environ.get("DONGHANH_NO500_STATS"):
            print(sorted(answered.items()))
