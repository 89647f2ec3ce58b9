"""The log line formats (gpuq.logs) and their settings."""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal

import pytest

from gpuq import logs
from gpuq.config import ConfigError, Settings


def record(message: str = "hello %s", *args: object, exc_info: object = None, **extra: object):
    made = logging.LogRecord("gpuq.test", logging.WARNING, __file__, 1, message, args or ("world",), exc_info)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_common_fields_first_then_the_records_own():
    line = logs.JsonFormatter().format(record(event="x.y", submission_id=3, when=dt.date(2026, 1, 2)))
    assert "\n" not in line
    fields = json.loads(line)
    assert list(fields)[:5] == ["ts", "level", "logger", "message", "pid"]
    assert (fields["level"], fields["logger"], fields["message"]) == ("warning", "gpuq.test", "hello world")
    assert fields["ts"].endswith("Z") and dt.datetime.fromisoformat(fields["ts"][:-1])
    assert (fields["event"], fields["submission_id"], fields["when"]) == ("x.y", 3, "2026-01-02")
    assert "request_id" not in fields


def test_a_json_line_carries_the_request_id_of_its_context_and_a_traceback_on_the_same_line():
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        import sys

        exc_info = sys.exc_info()
    token = logs.REQUEST_ID.set("req-1")
    try:
        line = logs.JsonFormatter().format(record(exc_info=exc_info, score=Decimal("87.95")))
    finally:
        logs.REQUEST_ID.reset(token)
    assert line.count("\n") == 0
    fields = json.loads(line)
    assert fields["request_id"] == "req-1"
    assert fields["score"] == "87.95"
    assert "ZeroDivisionError: boom" in fields["exception"]


def test_a_text_line_is_for_reading():
    token = logs.REQUEST_ID.set("req-2")
    try:
        line = logs.TextFormatter().format(record(route="/leaderboard", participant=None, note="two words"))
    finally:
        logs.REQUEST_ID.reset(token)
    assert not line.startswith("{")
    head, _, rest = line.partition(" ")
    assert head.endswith("Z")
    assert rest == (
        'WARNING gpuq.test: hello world request_id=req-2 route=/leaderboard participant=- note="two words"'
    )


def test_configure_sends_every_logger_to_the_stream_in_the_chosen_format(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("json")
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 7)
        logs.configure("text")
        logging.getLogger("gpuq.server").warning("plain")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = capsys.readouterr().out.splitlines()
    assert json.loads(first)["message"] == "Booting worker with pid: 7"
    assert "WARNING gpuq.server: plain" in second


def test_the_log_format_setting_is_checked():
    assert Settings.from_env({}).log_format == "json"
    assert Settings.from_env({"GPUQ_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(ConfigError, match="GPUQ_LOG_FORMAT"):
        Settings.from_env({"GPUQ_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="xml"):
        logs.formatter("xml")
