"""Server-drawn SVG charts for the register: a patient's BP over 12 months with the 140/90 line, and a
facility's 12-month trend of the control indicators. No framework; the SVG scales to its container and is
laid out for 360 px wide (labels ≥ 12 px, two colours plus shape so colour-blind readers can tell them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

WIDTH, HEIGHT = 360, 220
LEFT, RIGHT, TOP, BOTTOM = 34, 8, 10, 26
LOW, HIGH = 40, 220  # mmHg shown


@dataclass(frozen=True)
class Point:
    day: date
    systolic: int
    diastolic: int


def _x(day: date, start: date, end: date) -> float:
    span = max((end - start).days, 1)
    return LEFT + (WIDTH - LEFT - RIGHT) * (day - start).days / span


def _y(value: float, low: float, high: float) -> float:
    value = min(max(value, low), high)
    return TOP + (HEIGHT - TOP - BOTTOM) * (high - value) / (high - low)


def bp_chart(points: Sequence[Point], today: date, title: str, labels: dict[str, str]) -> str:
    """BP over the 12 months up to `today`: systolic (circles) and diastolic (squares), 140 and 90 dashed."""
    start = today - timedelta(days=365)
    shown = [p for p in points if start <= p.day <= today]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
             f'role="img" aria-label="{escape(title)}" class="bp-chart"><title>{escape(title)}</title>']
    for mmhg in (60, 100, 140, 180, 220):
        y = _y(mmhg, LOW, HIGH)
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{mmhg}</text>')
    for threshold, name in ((140, "140"), (90, "90")):
        y = _y(threshold, LOW, HIGH)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#b00020" '
                     f'stroke-dasharray="5 4" stroke-width="1.5" data-threshold="{name}"/>')
    month = date(start.year, start.month, 1)
    while month <= today:
        if month >= start:
            x = _x(month, start, today)
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 8}" font-size="12" text-anchor="middle">'
                         f'{month.month}</text>')
        month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    for attr, colour in (("systolic", "#1a4f9c"), ("diastolic", "#2e7d32")):
        coords = [(_x(p.day, start, today), _y(getattr(p, attr), LOW, HIGH)) for p in shown]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (x, y), p in zip(coords, shown, strict=True):
            value = getattr(p, attr)
            tip = f"<title>{p.day.isoformat()}: {p.systolic}/{p.diastolic}</title>"
            if attr == "systolic":
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}" data-value="{value}">'
                             f'{tip}</circle>')
            else:
                parts.append(f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}" '
                             f'data-value="{value}">{tip}</rect>')
    if not shown:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="14">'
                     f'{escape(labels.get("empty", ""))}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class TrendPoint:
    label: str  # "03"
    controlled: float | None  # rates 0–1, None when the denominator is empty
    uncontrolled: float | None
    missed_visit: float | None


def trend_chart(points: Sequence[TrendPoint], title: str) -> str:
    """Rates over the denominator, month by month: controlled (circles), uncontrolled, missed visit."""
    n = max(len(points), 1)
    step = (WIDTH - LEFT - RIGHT) / max(n - 1, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
             f'role="img" aria-label="{escape(title)}" class="trend-chart"><title>{escape(title)}</title>']
    for pct in (0, 25, 50, 75, 100):
        y = _y(pct, 0, 100)
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{pct}%</text>'
                     f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
    for i, p in enumerate(points):
        if i % 2 == 0 or i == n - 1:
            parts.append(f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - 8}" font-size="12" text-anchor="middle">'
                         f'{escape(p.label)}</text>')
    for attr, colour, dash in (("controlled", "#2e7d32", ""), ("uncontrolled", "#b00020", "6 3"),
                               ("missed_visit", "#6d4c41", "2 3")):
        coords = [(LEFT + i * step, _y(100 * v, 0, 100)) for i, p in enumerate(points)
                  if (v := getattr(p, attr)) is not None]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            extra = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{extra} '
                         f'data-series="{attr}"/>')
        for x, y in coords:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)
