"""Every bad input of TESTING.md: a 4xx problem+json that says what is wrong, and nothing stored."""

from __future__ import annotations

import json

import pytest

from gpuq.scoring import METRICS
from tests.conftest import WORKED_EXAMPLE, stored_count

PROBLEM = "application/problem+json"


def post_raw(client, data: bytes | str, content_type: str | None = "application/json", **kwargs):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post("/submit_qualification", data=data, headers=headers, **kwargs)


def body_with(metric: str, raw_value: str) -> str:
    """The worked example as JSON text with one metric's value replaced by raw JSON text."""
    parts = [f'"{name}": {raw_value if name == metric else WORKED_EXAMPLE[name]}' for name in METRICS]
    return "{" + ", ".join(parts) + "}"


def assert_refused(response, app, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    problem = response.get_json()
    assert problem["status"] == status
    assert problem["detail"]
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert stored_count(app) == 0
    return problem


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_refused(client, app, metric, raw):
    problem = assert_refused(post_raw(client, body_with(metric, raw)), app, 400)
    assert raw in problem["detail"]


@pytest.mark.parametrize("metric", METRICS)
def test_overflowing_number_is_refused_naming_the_field(client, app, metric):
    assert_refused(post_raw(client, body_with(metric, "1e400")), app, 422, metric)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("true", "boolean"),
        ("false", "boolean"),
        ('"90"', "string"),
        ("null", "null"),
        ("[90]", "array"),
        ('{"v": 90}', "object"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(client, app, metric, raw, kind):
    problem = assert_refused(post_raw(client, body_with(metric, raw)), app, 422, metric)
    message = next(e["message"] for e in problem["errors"] if e["field"] == metric)
    assert message == f"must be a number, got {kind}"


@pytest.mark.parametrize("metric", METRICS)
def test_missing_field_is_refused_naming_it(client, app, metric):
    body = {k: v for k, v in WORKED_EXAMPLE.items() if k != metric}
    problem = assert_refused(client.post("/submit_qualification", json=body), app, 422, metric)
    assert {"field": metric, "message": "is required"} in problem["errors"]


@pytest.mark.parametrize("extra", ["score", "participant", "id", "created_at", "submission_id", "rank"])
def test_fields_a_client_may_not_set_are_refused(client, app, extra):
    body = {**WORKED_EXAMPLE, extra: 100}
    problem = assert_refused(client.post("/submit_qualification", json=body), app, 422, extra)
    assert {"field": extra, "message": "is not an accepted field"} in problem["errors"]


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("gpu_utilization", -0.0001),
        ("gpu_utilization", 100.0001),
        ("memory_usage", 101),
        ("power_efficiency", -1),
        ("accuracy", 1000),
        ("completion_time", 0),
        ("completion_time", -3),
        ("completion_time", 0.00001),
        ("completion_time", 86400.0001),
        ("completion_time", 1e12),
    ],
)
def test_out_of_range_values_are_refused(client, app, metric, value):
    body = {**WORKED_EXAMPLE, metric: value}
    assert_refused(client.post("/submit_qualification", json=body), app, 422, metric)


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("gpu_utilization", 0),
        ("gpu_utilization", 100),
        ("completion_time", 0.0001),
        ("completion_time", 86400),
    ],
)
def test_range_edges_are_accepted(client, metric, value):
    assert client.post("/submit_qualification", json={**WORKED_EXAMPLE, metric: value}).status_code == 201


def test_duplicate_keys_are_refused(client, app):
    text = json.dumps(WORKED_EXAMPLE)[:-1] + ', "accuracy": 0}'
    problem = assert_refused(post_raw(client, text), app, 400)
    assert "duplicate key 'accuracy'" in problem["detail"]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_wrong_or_missing_content_type_is_415(client, app, content_type):
    assert_refused(post_raw(client, json.dumps(WORKED_EXAMPLE), content_type), app, 415)


def test_json_with_a_charset_parameter_is_accepted(client):
    response = post_raw(client, json.dumps(WORKED_EXAMPLE), "application/json; charset=utf-8")
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"   \n", 400, "empty"),
        (b'{"gpu_utilization": 90, "memory', 400, "not valid JSON"),
        (b'{"gpu_utilization": 9\xff0}', 400, "not valid UTF-8"),
        (b"\xef\xbb\xbf" + json.dumps(WORKED_EXAMPLE).encode(), 400, "not valid JSON"),
        (b"[1, 2, 3]", 422, "JSON object"),
        (b'"just a string"', 422, "JSON object"),
        (b"90", 422, "JSON object"),
        (b"null", 422, "JSON object"),
    ],
)
def test_malformed_bodies_are_refused(client, app, data, status, words):
    problem = assert_refused(post_raw(client, data), app, status)
    assert words in problem["detail"]


def test_a_body_of_one_mebibyte_is_413(client, app):
    padding = " " * (1024 * 1024)
    assert_refused(post_raw(client, json.dumps(WORKED_EXAMPLE) + padding), app, 413)


@pytest.mark.parametrize("depth", [100, 5000, 100000])
def test_deeply_nested_json_is_a_4xx_not_a_500(client, app, depth):
    text = '{"gpu_utilization": ' + "[" * depth + "]" * depth + "}"
    response = post_raw(client, text)
    assert response.status_code in (400, 413, 422)
    assert response.mimetype == PROBLEM
    assert stored_count(app) == 0


def test_deep_nesting_within_the_size_limit_is_400(make_app):
    app = make_app(max_body_bytes=1024 * 1024)
    text = '{"gpu_utilization": ' + "[" * 100000 + "]" * 100000 + "}"
    problem = assert_refused(post_raw(app.test_client(), text), app, 400)
    assert "nested too deeply" in problem["detail"]


@pytest.mark.parametrize(
    "raw",
    ['"9\\u00000"', '"\\ud800"', '"\\u202e09"', '"' + "9" * 10000 + '"', '"\uff19\uff10"'],
)
def test_string_tricks_in_a_metric_are_refused(client, app, raw):
    assert_refused(post_raw(client, body_with("accuracy", raw)), app, 422, "accuracy")


def test_invalid_submissions_do_not_use_up_the_submission_quota(make_app):
    app = make_app(submit_limit="2 per hour")
    client = app.test_client()
    for _ in range(5):
        assert (
            client.post("/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": 101}).status_code == 422
        )
    assert [client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code for _ in range(3)] == [
        201,
        201,
        429,
    ]


@pytest.mark.parametrize(
    "raw", ["1e9999999999999999999", "-1e9999999999999999999", "1e-9999999999999999999", "1e1001"]
)
def test_numbers_beyond_any_field_are_refused_while_parsing(client, app, raw):
    problem = assert_refused(post_raw(client, body_with("accuracy", raw)), app, 400)
    assert "out of range" in problem["detail"]


def test_a_body_of_thousands_of_unknown_keys_gets_a_short_answer(client, app):
    body = {**WORKED_EXAMPLE, **{f"{i:x}": 0 for i in range(1900)}}
    raw = json.dumps(body, separators=(",", ":"))
    assert len(raw) < 16 * 1024  # within the body limit
    response = post_raw(client, raw)
    problem = assert_refused(response, app, 422)
    assert len(problem["errors"]) == 20 and problem["detail"].endswith("and 1880 more")
    assert len(response.data) < 4096


@pytest.mark.parametrize(
    ("headers", "query", "named"),
    [
        ({"X-API-Key": "gpuq_0123456789ab_x"}, "", "X-API-Key"),
        ({}, "?api_key=gpuq_0123456789ab_x", "'api_key'"),
        ({}, "?token=abc", "'token'"),
    ],
)
def test_a_key_sent_another_way_than_the_authorization_header_is_refused(client, app, headers, query, named):
    problem = assert_refused(
        client.post(f"/submit_qualification{query}", json=WORKED_EXAMPLE, headers=headers), app, 400
    )
    assert named in problem["detail"] and "Authorization: Bearer" in problem["detail"]
    assert client.get(f"/quota{query}", headers=headers).status_code == 400
