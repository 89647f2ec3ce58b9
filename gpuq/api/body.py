"""Reading a JSON request body strictly.

Python's `json` module accepts things a JSON API must not: NaN and Infinity,
numbers that overflow to inf (`1e400`), duplicate keys (last one wins), and
it raises RecursionError on deep nesting. `read_json()` refuses all of them
with a 4xx, and parses numbers as exact Decimals.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

import gevent
from flask import Request
from gevent import monkey
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout, UnsupportedMediaType

from gpuq.api.context import runtime
from gpuq.errors import FieldError, InvalidInput


class _Rejected(ValueError):
    pass


MAX_EXPONENT = 1000
"""Numbers beyond 10**±1000 are refused while parsing: no field takes one, and Decimal
arithmetic on an exponent like 1e9999999999999999999 fails outright."""


def _number(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Rejected(f"the number {text[:40]!r} is out of range") from None
    if value and abs(value.adjusted()) > MAX_EXPONENT:
        raise _Rejected(f"the number {text[:40]!r} is out of range") from None
    return value


def _reject_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not a JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Rejected(f"duplicate key {key!r}")
        result[key] = value
    return result


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def parse_json(raw: bytes) -> Any:
    """Parse UTF-8 JSON text strictly; raises InvalidInput (400) saying what is wrong."""
    if not raw.strip():
        raise InvalidInput("the request body is empty; send a JSON object", status=400)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the request body is not valid UTF-8 (byte {exc.start})", status=400) from exc
    try:
        return json.loads(
            text,
            parse_float=_number,
            parse_int=_number,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except _Rejected as exc:
        raise InvalidInput(f"the request body is not acceptable JSON: {exc}", status=400) from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            status=400,
        ) from exc
    except RecursionError as exc:
        raise InvalidInput("the request body is nested too deeply", status=400) from exc


def read_body(request: Request) -> bytes:
    """The raw body, which must arrive within Settings.body_timeout_seconds in all (raises
    RequestTimeout, 408): a client trickling its body would otherwise hold its connection,
    and with enough of them every worker's, for as long as it likes.

    The deadline needs the gevent server (gpuq.server), where the read is cooperative;
    elsewhere (the development server, the test client) the body is read as it comes.
    """
    if not monkey.is_module_patched("socket"):
        return request.get_data(cache=False)
    seconds = runtime().settings.body_timeout_seconds
    with gevent.Timeout(seconds, False):  # False: leave the block quietly when it fires
        return request.get_data(cache=False)
    raise RequestTimeout(f"the request body did not arrive within {seconds:g} s")


def read_json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object.

    Raises UnsupportedMediaType (415) unless Content-Type is JSON, werkzeug's
    RequestEntityTooLarge (413) past MAX_CONTENT_LENGTH (also for chunked
    bodies), and InvalidInput for anything that is not one JSON object.
    """
    if not is_json_mimetype(request.mimetype):
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    raw = read_body(request)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is cut off silently at the limit by werkzeug; the cut
        # text could still parse, so a body that reaches the limit is refused.
        raise RequestEntityTooLarge()
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise InvalidInput(
            "the request body must be a JSON object",
            [FieldError("", f"expected an object, got {json_type(value)}")],
        )
    return value


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
