"""Server cost of a video-observed dose clip (issue 11): CPU and memory per clip received and processed.

Chosen design (MediaRecorder in the browser + resumable upload): after the last byte the server decodes the
clip once (PyAV), hashes it, builds the OpenCV contact sheet — exactly `web.tb_clips._store`, measured here
in a child process per clip size so peak memory is the clip's own. The alternative (an aiortc recording
peer) must at least decode every frame as it arrives and encode it again to write a file; that lower bound
(VP8 decode + VP8 encode of the same clip, without ICE/DTLS/SRTP or the jitter buffer) is measured the same
way. Baseline: sha256 of the same bytes, the least any design does. Prints ratios against it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import command_line, finish, load_average, machine, now_iso  # noqa: E402

SIZES = ((320, 240), (640, 480))


def _chosen(path: Path, out: Path) -> None:
    from web.tb_clips import _store
    _store(path, out)


def _hash(path: Path, out: Path) -> None:
    import hashlib
    hashlib.sha256(path.read_bytes()).hexdigest()


def _aiortc_lower_bound(path: Path, out: Path) -> None:
    """Decode every frame and encode it again (what a recording peer's MediaRecorder does)."""
    import av
    with av.open(str(path)) as source, av.open(str(out / "rec.webm"), mode="w", format="webm") as sink:
        src = source.streams.video[0]
        stream = sink.add_stream("libvpx", rate=15)
        stream.width, stream.height, stream.pix_fmt = src.width, src.height, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for frame in source.decode(src):
            frame.pts = None
            for packet in stream.encode(frame):
                sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)


def _child(kind: str, path: str, out: str, result: Any) -> None:
    import av  # noqa: F401  (imports are not the clip's cost)
    import cv2  # noqa: F401

    import web.tb_clips  # noqa: F401
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu, wall = time.process_time(), time.perf_counter()
    {"chosen": _chosen, "hash": _hash, "aiortc": _aiortc_lower_bound}[kind](Path(path), Path(out))
    result.put((time.process_time() - cpu, time.perf_counter() - wall,
                (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024))


def measure(kind: str, path: Path, out: Path) -> tuple[float, float, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(kind, str(path), str(out), queue))
    process.start()
    value = queue.get(timeout=120)
    process.join()
    return value  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length (default 20 s)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from media.clip import synthetic_clip

    result: dict[str, Any] = {"benchmark": "tb_clips", "date": now_iso(), "machine": machine(),
                              "command": command_line(argv), "load_average_before": load_average(),
                              "method": __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
                              + f" Clips: {args.seconds:g} s of VP8 at 15 fps, {args.repeat} runs each, medians."}
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in SIZES:
            clip = Path(tmp) / f"{width}x{height}.webm"
            synthetic_clip(clip, args.seconds, width, height, fps=15)
            label = f"{width}x{height}"
            result[f"clip_bytes_{label}"] = clip.stat().st_size
            for kind in ("hash", "chosen", "aiortc"):
                runs = [measure(kind, clip, Path(tmp)) for _ in range(args.repeat)]
                cpu = statistics.median(r[0] for r in runs)
                result[f"{kind}_cpu_s_{label}"] = round(cpu, 4)
                result[f"{kind}_wall_s_{label}"] = round(statistics.median(r[1] for r in runs), 4)
                result[f"{kind}_peak_mib_{label}"] = round(max(r[2] for r in runs), 1)
            base = result[f"hash_cpu_s_{label}"]
            result[f"ratio_chosen_over_hash_{label}"] = round(result[f"chosen_cpu_s_{label}"] / base, 1)
            result[f"ratio_aiortc_over_chosen_{label}"] = round(
                result[f"aiortc_cpu_s_{label}"] / result[f"chosen_cpu_s_{label}"], 1)
    worst = result["chosen_cpu_s_640x480"]
    result["admission_limit_workers"] = 2
    result["clips_per_minute_2_cores_640x480"] = round(2 * 60 / worst)
    finish(Path(__file__).resolve().parent / "results" / "tb_clips.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
