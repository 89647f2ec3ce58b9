"""Log lines: one JSON object per line on stdout, or plain text for a person at a terminal.

The standard library's `logging` does the work (measured against structlog for the
same line: bench/README.md); this module only formats. Every record becomes one
line with these fields, then the record's own:

* `ts`: when, UTC, ISO 8601 with milliseconds and `Z`;
* `level`: debug, info, warning, error or critical;
* `logger`: the logger's name (`gpuq.access` for the access line, `gunicorn.error`
  for the server's own lines, `gpuq.<module>` for the service's);
* `message`: the text, for a person;
* `pid`: the process (each gunicorn worker is one);
* `request_id`: the request being answered, when there is one (see `request_scope`);
* `exception`: the traceback, when one was logged (still on the one line).

A record's own fields are what the call passed as `extra` (for example the domain
events' `event`, `submission_id`, `participant`). Nothing here ever logs a header
or a request body, so an API key can only reach a log line if a call puts it in
`extra`; none does.

`configure` is called by the server entry point (never at import, never by the app
factory: tests and embedding programs keep their own logging).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import sys
import time
from typing import IO, Any

FORMATS = ("json", "text")
"""The values of GPUQ_LOG_FORMAT."""

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpuq_request_id", default=None)
"""The request id of the request this context answers (each request runs in its own
greenlet or thread, hence its own context); set by gpuq.api.observe."""

_BARE_RECORD = vars(logging.LogRecord("", 0, "", 0, "", None, None))
_SET_BY_INIT = len(_BARE_RECORD)
"""A record's attributes start with these many set by LogRecord itself; `extra` adds its
keys after them (skipping them saves most of the work of finding the extras)."""
_OWN_ATTRIBUTES = frozenset(_BARE_RECORD) | {"message", "asctime", "taskName"}
"""Attributes that are not `extra` fields even when set later (by another formatter)."""
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False)
"""default=str: a value json cannot write (a datetime, a Decimal) is written as text."""

_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    global _second
    seconds = int(created)
    if _second[0] != seconds:  # one strftime per second, not one per line
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_second[1]}.{int((created - seconds) * 1000):03d}Z"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of one line, in order: the common ones, then the record's own."""
    fields: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
        "pid": record.process,
    }
    request_id = REQUEST_ID.get()
    if request_id is not None:
        fields["request_id"] = request_id
    for key, value in itertools.islice(record.__dict__.items(), _SET_BY_INIT, None):
        if key not in _OWN_ATTRIBUTES:
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        return _ENCODER.encode(fields)


class TextFormatter(logging.Formatter):
    """`ts level logger: message key=value ...`, for reading at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        head = f"{fields.pop('ts')} {fields.pop('level').upper():7} {fields.pop('logger')}: "
        line = head + str(fields.pop("message"))
        del fields["pid"]
        if fields:
            line += " " + " ".join(f"{key}={_text(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: Any) -> str:
    text = "-" if value is None else str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(c in text for c in ' "=\n')) else text


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for GPUQ_LOG_FORMAT (`json` or `text`); raises ValueError."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}: expected one of {', '.join(FORMATS)}")


def configure(log_format: str, stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Send every log record (the service's, gunicorn's, the libraries') to `stream`
    (stdout by default) in `log_format`, from `level` up; replaces the root logger's handlers."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
