"""(Re)write BENCHMARKS.md at the repository root from bench/results/*.json.

One section per result file: date, machine, method, the figures, the aim and whether it was met.
Known benchmarks (relay_latency, page_weight, first_frame) get their own tables; any other result
file gets its top-level numbers listed, so a new benchmark shows up before it has a formatter.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TARGET = REPO / "BENCHMARKS.md"
ORDER = ("relay_latency", "page_weight", "first_frame")


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,d}"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"
    return str(value)


def _verdict(met: bool | None) -> str:
    return "not judged" if met is None else ("**met**" if met else "**not met**")


def _header(name: str, title: str, data: dict[str, Any], path: Path) -> list[str]:
    """Title, date, machine and method lines common to every section."""
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    date = data.get("date") or f"{written} (time the result file was written)"
    m = data.get("machine")
    machine = (f"{m.get('cores', '?')} cores ({m.get('cpu', '?')}), Python {m.get('python', '?')}, "
               f"aiohttp {m.get('aiohttp', '?')}" if isinstance(m, dict) else "not recorded")
    lines = [f"## {title}", "", f"- Date: {date}", f"- Machine: {machine}"]
    if "load_average_before" in data:
        lines.append(f"- Machine load (1-min average) before/after: {data['load_average_before'][0]} / "
                     f"{data.get('load_average_after', ['?'])[0]} (other work shares these cores)")
    if data.get("command"):
        lines.append(f"- Command: `{data['command']}`")
    lines.append(f"- Result file: `bench/results/{path.name}`")
    lines += ["", f"Method: {data.get('method', 'not recorded in the result file.')}", ""]
    return lines


def relay_latency(data: dict[str, Any]) -> list[str]:
    p = data["params"]
    frames = "permessage-deflate" if p.get("deflate") else "uncompressed frames"
    lines = [f"{p['clients']:,d} clients ({p['clients'] // 2:,d} rooms), {p['rounds']} rounds at "
             f"{p['rate']:g} messages/s per server, offers {data['offer_bytes']:,d} B and ICE candidates "
             f"{data['ice_bytes']} B, {frames}.", "",
             "| server | p50 ms | p90 ms | p99 ms | max ms | lost | connect+join s | server CPU ms/msg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("ours", "Đồng Hành (real app)"), ("bare", "bare aiohttp relay")):
        if key in data:
            r, lat = data[key], data[key]["latency_ms"]["all"]
            lines.append(f"| {label} | {_num(lat['p50'])} | {_num(lat['p90'])} | {_num(lat['p99'])} | "
                         f"{_num(lat['max'])} | {r['lost']} | {_num(r['connect_join_s'])} | "
                         f"{_num(r['server_cpu_ms_per_message'], 3)} |")
    if "ratios" in data:
        q = data["ratios"]
        lines.append(f"| **ratio ours/bare** | {_num(q['p50'])} | {_num(q['p90'])} | {_num(q['p99'])} | "
                     f"| | {_num(q['connect_join'])} | {_num(q.get('server_cpu_per_message', math.nan))} |")
    ours = data.get("ours")
    if ours:
        lat = ours["latency_ms"]
        by_kind = ", ".join(f"{k} p50 {_num(lat[k]['p50'])} / p99 {_num(lat[k]['p99'])}"
                            for k in ("offer", "ice"))
        lines += ["", f"Real app by message: {by_kind} ms. Server memory with every client connected: "
                      f"{_num(ours['server_rss_mib'], 0)} MiB. Queue broadcasts after the connections "
                      f"settled {_num(ours['queue_broadcast_settle_s'], 1)} s later; {ours['errors']} error "
                      "messages."]
        bare = data.get("bare", {})
        cpu = [f"{label} all clients {_num(ours.get(key, math.nan))} s"
               + (f" (bare relay {_num(bare[key])} s)" if key in bare else "")
               for key, label in (("connect_server_cpu_s", "connecting"),
                                  ("disconnect_server_cpu_s", "disconnecting"))]
        lines += ["", f"Server CPU for {'; for '.join(cpu)}."]
    aim = data.get("aim", {})
    lines += ["", f"Aim: {aim.get('text', 'none recorded')} — {_verdict(aim.get('met'))}."]
    return lines


def page_weight(data: dict[str, Any]) -> list[str]:
    lines = ["| resource | bytes | gzipped | note |", "|---|---:|---:|---|"]
    for section in ("page", "favicon", "waiting_room"):
        for r in data["resources"].get(section, []):
            star = "" if r["server_gzipped"] else " *"
            lines.append(f"| `{r['resource']}` | {r['bytes']:,d} | {r['gzip_bytes']:,d}{star} | "
                         f"{r['note']} |")
    t = data["totals"]
    lines += [f"| **page and its assets** | **{t['page']['bytes']:,d}** | "
              f"**{t['page']['gzip_bytes']:,d}** | |",
              f"| **everything up to the waiting room** | **{t['all']['bytes']:,d}** | "
              f"**{t['all']['gzip_bytes']:,d}** | |", "",
              "\\* not gzipped by the server; the gzipped figure is a level-6 estimate (what a reverse proxy "
              "would send), or the plain size where gzip would not help. As served by the app alone to a "
              f"gzip-capable browser: {t['all']['as_served_bytes']:,d} bytes."]
    aim = data.get("aim", {})
    lines += ["", f"Aim: {aim.get('text', 'none recorded')} — {_verdict(aim.get('met'))} "
                  f"({aim.get('measured_bytes', 0):,d} of {aim.get('bytes', 0):,d} bytes)."]
    return lines


def first_frame(data: dict[str, Any]) -> list[str]:
    samples = data.get("samples_s") or []
    lines = [f"{data.get('runs', len(samples))} runs: median {_num(data.get('median_s'), 2)} s, "
             f"p90 {_num(data.get('p90_s'), 2)} s"
             + (f", fastest {min(samples):.2f} s, slowest {max(samples):.2f} s" if samples else "") + "."]
    aim_s = data.get("aim_s")
    met = data.get("met")
    if met is None and isinstance(aim_s, (int, float)) and isinstance(data.get("p90_s"), (int, float)):
        met = data["p90_s"] < aim_s
    lines += ["", f"Aim: first video frame in under {_num(aim_s)} s (judged on the p90) — {_verdict(met)}."]
    return lines


def durability(data: dict[str, Any]) -> list[str]:
    kinds = ", ".join(f"{k} {_num(v)}" for k, v in sorted(data["acknowledged_by_kind"].items()))
    half = data["half_written"]
    return ["| trials (kill -9 + restart) | writes acknowledged | lost | duplicated | half-written use cases "
            "| audit chain |", "|---:|---:|---:|---:|---:|---|",
            f"| {_num(data['trials'])} | {_num(data['writes_acknowledged'])} | {_num(data['writes_lost'])} | "
            f"{_num(data['writes_duplicated'])} | {sum(half.values()) if half else 0} | "
            f"{'verifies' if data['audit_chain_ok'] else '**broken**'} |", "",
            f"Acknowledged writes by kind: {kinds}. App start after each kill: p50 "
            f"{_num(data['app_start_s']['p50'])} s, max {_num(data['app_start_s']['max'])} s. "
            f"Aim ({data['aim']}): {_verdict(data.get('aim_met'))}."]
def slow_consumer(data: dict[str, Any]) -> list[str]:
    p, base, stalled, ratio = data["params"], data["baseline_ms"], data["stalled_ms"], data["ratios"]
    lines = [f"{p['readers']:,d} reading staff sockets, {p['rounds']} pairs of rounds (province socket reading / "
             f"stalled), {p['broadcasts']} measured broadcasts per round, {p['warmup']} warm-up lists to the "
             "province socket first.", "",
             "| province socket | p50 ms | p90 ms | p99 ms | max ms | samples |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in (("reads normally (baseline)", base), ("stalled (stopped reading)", stalled)):
        lines.append(f"| {name} | {_num(r['p50'])} | {_num(r['p90'])} | {_num(r['p99'])} | {_num(r['max'])} | "
                     f"{_num(int(r['count']))} |")
    lines.append(f"| **ratio stalled/baseline** | {_num(ratio['p50'])} | {_num(ratio['p90'])} | "
                 f"{_num(ratio['p99'])} | | |")
    lines += ["", f"Broadcasts that did not reach every reader within {_num(p['broadcast_timeout'], 0)} s: "
                  f"{_num(data['timeouts'])}. Absolute times are mostly the single Python load generator decoding "
                  "about 5 MB of lists per broadcast on two shared cores; the ratio is the figure."]
    before = data.get("before_this_change")
    if before:
        lines += ["", f"Before this change — {before['code']}, measured separately with `{before['command']}` "
                      f"({before['readers']} readers): in the stalled round {before['stalled_timeouts']} of "
                      f"{before['stalled_broadcasts']} broadcasts did not reach the readers within 2 s (the hub was "
                      f"stuck writing to the stalled socket until heartbeats would close it); baseline p50 "
                      f"{_num(before['baseline_p50_ms'])} ms."]
    aim = data.get("aim", {})
    lines += ["", f"Aim: {aim.get('text', 'not recorded')} — {_verdict(aim.get('met'))}."]
    return lines


def reconnect_storm(data: dict[str, Any]) -> list[str]:
    p = data["params"]
    lines = [f"{p['clients']:,d} sockets ({p['clients'] // 2:,d} rooms of a patient and a doctor over "
             f"{p['facilities']} stations), {p['client_procs']} load-generator processes, at most "
             f"{p['concurrency']} handshakes in flight per process.", "",
             "| server | phase | sockets joined | all joined s | server CPU s | CPU ms/socket | memory idle → all "
             "MiB | KiB/socket | retries |", "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for key, label in (("ours", "Đồng Hành (real app)"), ("bare", "bare aiohttp relay")):
        for phase, name in (("first_connect", "first connection"), ("reconnect", "reconnect after restart")):
            r = data.get(key, {}).get(phase)
            if r:
                lines.append(f"| {label} | {name} | {r['sockets']:,d} | {_num(r['all_joined_s'], 1)} | "
                             f"{_num(r['server_cpu_s'])} | {_num(r['server_cpu_ms_per_socket'], 3)} | "
                             f"{_num(r['rss_idle_mib'], 0)} → {_num(r['rss_mib'], 0)} | "
                             f"{_num(r['kib_per_socket'], 1)} | {r['retries']} |")
    q = data.get("ratios")
    if q:
        lines += ["", f"Ratios ours/bare: memory per socket **{_num(q['memory_per_socket'])}×**, server CPU per "
                      f"reconnect **{_num(q['reconnect_cpu_per_socket'])}×**, time for everyone to rejoin "
                      f"{_num(q['reconnect_time'])}×."]
    before = data.get("before_this_change")
    if before:
        lines += ["", f"Before this change ({before['code']}; `{before['command']}` run back to back on the code "
                      f"before and after it): server CPU per reconnect {_num(before['before_ms'], 3)} ms → "
                      f"{_num(before['after_ms'], 3)} ms (bare relay {_num(before['bare_before_ms'], 3)} and "
                      f"{_num(before['bare_after_ms'], 3)} ms in those runs: {_num(before['before_ratio'], 1)}× → "
                      f"{_num(before['after_ratio'], 1)}×); everyone rejoined in {_num(before['before_s'], 1)} s → "
                      f"{_num(before['after_s'], 1)} s; load {before['load']}."]
    aim = data.get("aim", {})
    lines += ["", f"Aim: {aim.get('text', 'none recorded')} — memory {_verdict(aim.get('memory_met'))}, "
                  f"CPU per reconnect {_verdict(aim.get('cpu_met'))}."]
    return lines


def claims(data: dict[str, Any]) -> list[str]:
    p, s, b = data["params"], data["socket"], data["sql_baseline"]
    db = s["database"]
    lines = [f"{p['doctors']} doctors (one socket each), {p['patients']:,d} waiting patients with their pages open "
             f"over {p['communes']} commune stations; SQL baseline on {p['baseline_patients']:,d} other waiting "
             "patients.", "",
             "| path | claims | seconds | claims/s | server CPU ms/claim | claim reply p50 / p99 ms |",
             "|---|---:|---:|---:|---:|---|",
             f"| socket protocol (claim_next → paired → end → ended) | {s['claims']:,d} | {_num(s['seconds'], 1)} | "
             f"{_num(s['claims_per_s'], 0)} | {_num(s['server_cpu_ms_per_claim'])} | "
             f"{_num(s['claim_reply_ms']['p50'], 1)} / {_num(s['claim_reply_ms']['p99'], 1)} |",
             f"| SQL baseline (take_patient, end; 10 connections) | {b['claims']:,d} | {_num(b['seconds'], 1)} | "
             f"{_num(b['claims_per_s'], 0)} | | |",
             f"| **ratio socket/SQL** | | | {_num(data['ratio_socket_to_sql'])} | | |", "",
             f"Exactly once, from the database: {db['entries']:,d} queue entries, {db['done']:,d} done, "
             f"{db['consultations']:,d} consultations, {db['entries_claimed_twice']} entries with more than one; "
             f"patient pages paired once {s['pages_paired_once']:,d}, more than once {s['pages_paired_more']}; "
             f"refusals {s['refused']}. Server CPU while claiming: {_num(s['server_cpu_s'], 0)} s of "
             f"{_num(s['seconds'], 0)} s (its CPU was not the limit); end reply p50 / p99 "
             f"{_num(s['end_reply_ms']['p50'], 1)} / {_num(s['end_reply_ms']['p99'], 1)} ms."]
    before = data.get("before_this_change")
    if before:
        lines += ["", f"Before this change ({before['code']}; the same command, load {before['load']}): socket "
                      f"protocol {_num(before['socket_per_s'], 0)} claims/s, SQL baseline "
                      f"{_num(before['sql_per_s'], 0)}/s, server CPU "
                      f"{_num(before['server_cpu_ms_per_claim'])} ms/claim."]
    aim = data.get("aim", {})
    lines += ["", f"Aim: {aim.get('text', 'none recorded')} — {_verdict(aim.get('met'))}"
                  f" (every patient exactly once: {'yes' if aim.get('exactly_once') else '**no**'})."]
    return lines


def generic(data: dict[str, Any]) -> list[str]:
    shown = {k: v for k, v in data.items() if isinstance(v, (int, float, str, bool))
             and k not in ("date", "method", "command", "benchmark")}
    return [f"- {k}: {_num(v)}" for k, v in shown.items()] or ["(no scalar figures)"]


FORMATTERS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "relay_latency": ("Signaling relay latency", relay_latency),
    "page_weight": ("Patient page weight (link → waiting room)", page_weight),
    "first_frame": ("Time to first video frame", first_frame),
    "signin": ("Sign-in attempts per account, throttling off and on", generic),
    "durability": ("Durability under kill -9", durability),
    "slow_consumer": ("One socket stops reading (queue broadcasts to 1,000 others)", slow_consumer),
    "tb_clips": ("TB video-observed dose clips: server cost per clip", generic),
    "tb_report": ("TB quarterly cohort report over a synthetic province", generic),
    "tb_throttled": ("TB video-observed dose clips over a throttled 3G link with a dropped connection", generic),
    "tb_recording_designs": ("TB recording designs compared in one run: server CPU per clip", generic),
    "reconnect_storm": ("10,000 sockets: memory per socket and the reconnect storm after a restart", reconnect_storm),
    "claims": ("Claims per second through the socket protocol (200 doctors, 10,000 waiting patients)", claims),
    "tb_aiortc_throttled": ("TB recording designs over the same throttled link with a dropped connection", generic),
    "tb_aiortc_throttled_nodrop": ("TB recording designs over the same throttled link, no drop (control)", generic),
}


def render(results: dict[str, tuple[Path, dict[str, Any]]]) -> str:
    """The whole BENCHMARKS.md text for these result files."""
    lines = ["# Benchmarks", "",
             "Measured, not assumed. Written by `python bench/write_benchmarks.py` from "
             "`bench/results/*.json`; do not edit by hand — rerun the benchmark and the writer (see "
             "`bench/README.md`). Everything runs on loopback on a small shared machine, so read ratios "
             "against the baseline measured in the same run rather than absolute times.", ""]
    names = [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)
    for name in names:
        path, data = results[name]
        title, formatter = FORMATTERS.get(name, (name.replace("_", " ").capitalize(), generic))
        try:
            body = formatter(data)
        except (KeyError, TypeError, ValueError) as exc:
            body = [f"(could not read this result file: {type(exc).__name__}: {exc})"] + generic(data)
        lines += _header(name, title, data, path) + body + [""]
    if not names:
        lines += ["No results yet: run the benchmarks in `bench/` first.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite BENCHMARKS.md from bench/results/*.json.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of result files")
    parser.add_argument("--output", type=Path, default=TARGET, help="file to write (default: BENCHMARKS.md)")
    args = parser.parse_args(argv)
    results: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(args.results.glob("*.json")):
        try:
            results[path.stem] = (path, json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            print(f"skipping {path}: not JSON ({exc})", file=sys.stderr)
    args.output.write_text(render(results), encoding="utf-8")
    print(f"wrote {args.output} ({len(results)} benchmark(s): {', '.join(results) or 'none'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
