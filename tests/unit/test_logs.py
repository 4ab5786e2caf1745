"""JSON log lines (DONGHANH_LOG_FORMAT=json): one object a line, with the extras our log calls add."""

from __future__ import annotations

import json
import logging

from web.logs import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("signaling.hub", logging.WARNING, __file__, 1, "closing %s socket", ("abusive",),
                               None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_has_time_level_logger_message_and_extras() -> None:
    line = JsonFormatter().format(_record(session="s-1a2b", incident=7))
    out = json.loads(line)
    assert "\n" not in line
    assert out["level"] == "WARNING" and out["logger"] == "signaling.hub"
    assert out["message"] == "closing abusive socket"
    assert out["session"] == "s-1a2b" and out["incident"] == 7
    assert out["time"].endswith("+00:00")
    assert "args" not in out and "msg" not in out


def test_json_line_carries_the_exception_text() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad" in out["exception"]
