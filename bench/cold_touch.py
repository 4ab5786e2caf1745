"""How much it costs on this machine to touch memory that has not been touched for a while.

Why it matters here: a call's sockets are idle between one offer or candidate and the next, so every
relayed message reaches objects nobody touched for a few hundred milliseconds, and so does every periodic
scan over the sockets. This measures it without any of our code: a list of `--objects` small objects is
walked (one attribute read each) when warm, then again after the process slept `--idle` seconds, and after
spinning the CPU (no memory touched) instead of sleeping, so the cost can be told apart from CPU wake-up.
Each is repeated `--repeat` times; the median is reported, in microseconds per walk and per object.

    python bench/cold_touch.py                       # ~30 s
    python bench/cold_touch.py --objects 10000 --idle 0.1 1 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import harness  # noqa: E402


class Small:
    """A slotted object about the size of a socket's few hot fields."""

    __slots__ = ("value", "flag")

    def __init__(self, value: int) -> None:
        self.value = value
        self.flag = None


def walk(objects: list[Small]) -> float:
    """Microseconds to read one attribute of every object."""
    start = time.perf_counter_ns()
    seen = 0
    for o in objects:
        if o.flag is None:
            seen += 1
    return (time.perf_counter_ns() - start) / 1000


def spin(seconds: float) -> None:
    """Keep the CPU busy without touching the objects."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def measure(objects: int, idles: list[float], repeat: int) -> tuple[float, list[dict[str, float]]]:
    """The warm walk's microseconds, and a row per idle time."""
    items = [Small(i) for i in range(objects)]
    walk(items)
    warm = statistics.median(walk(items) for _ in range(repeat))
    rows = []
    for idle in idles:
        slept, spun = [], []
        for _ in range(repeat):
            time.sleep(idle)
            slept.append(walk(items))
            time.sleep(idle)
            spin(0.05)  # 50 ms of CPU work right before the walk: a CPU waking up would be warm again by now
            spun.append(walk(items))
        rows.append({"idle_s": idle, "after_sleep_us": statistics.median(slept),
                     "after_sleep_then_spin_us": statistics.median(spun),
                     "per_object_ns": 1000 * statistics.median(slept) / objects,
                     "vs_warm": statistics.median(slept) / warm if warm else float("nan")})
    return warm, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cost of touching memory left idle (this machine's property, "
                                                 "no code of ours involved).")
    parser.add_argument("--objects", type=int, default=1000, help="objects walked (default 1000, as sockets)")
    parser.add_argument("--idle", type=float, nargs="+", default=[0.1, 0.5, 1.0, 2.0],
                        help="idle times in seconds before a walk (default 0.1 0.5 1 2)")
    parser.add_argument("--repeat", type=int, default=5, help="walks per idle time; the median is kept (default 5)")
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "cold_touch.json",
                        help="result file (default bench/results/cold_touch.json)")
    args = parser.parse_args(argv)
    if args.objects < 1 or args.repeat < 1 or any(i < 0 for i in args.idle):
        parser.error("--objects and --repeat must be positive, --idle times not negative")
    result: dict[str, object] = {"benchmark": "cold_touch", "date": harness.now_iso(), "machine": harness.machine(),
                                 "command": harness.command_line(argv), "objects": args.objects,
                                 "repeat": args.repeat, "load_average_before": harness.load_average()}
    warm, rows = measure(args.objects, args.idle, args.repeat)
    result.update({"warm_us": warm, "warm_per_object_ns": 1000 * warm / args.objects, "after_idle": rows,
                   "load_average_after": harness.load_average()})
    harness.write_result(args.output, result)
    print(f"walk over {args.objects} objects, warm: {warm:.0f} us")
    for row in rows:
        print(f"after {row['idle_s']:g} s idle: {row['after_sleep_us']:.0f} us ({row['vs_warm']:.0f}x warm, "
              f"{row['per_object_ns']:.0f} ns per object); "
              f"slept then spun 50 ms: {row['after_sleep_then_spin_us']:.0f} us")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
