"""The published contract: a valid OpenAPI 3.1 document covering every route, and
schemathesis generating over a thousand requests against it (positive and
negative) with zero server errors, zero accepted invalid inputs and zero
responses that break the document."""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from sqlalchemy import text

from gpuq import create_app
from gpuq.api.openapi import OPERATIONS
from gpuq.config import Settings
from gpuq.store import migrate
from gpuq.store.db import get_db
from tests.conftest import TABLES

EXAMPLES_PER_OPERATION = 300
CALLS: list[str] = []


def _contract_app():
    """An embedded app with limits high enough not to refuse generated valid requests.

    Built when the module is collected: schemathesis parametrizes from a schema
    object (its fixture-based loader does not work with this pytest).
    """
    path = Path(tempfile.mkdtemp(prefix="gpuq-contract-")) / "gpuq.sqlite3"
    app = create_app(
        Settings(
            database_url=f"sqlite:///{path}",
            submit_limit="1000000 per hour",
            daily_limit="1000000 per day",
            stream_max_seconds=0.001,  # a generated stream request must end at once
            streams_per_address=1000,
        )
    )
    migrate.upgrade(get_db(app).engine)
    return app


APP = _contract_app()
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES_PER_OPERATION
)


@pytest.fixture(scope="module", autouse=True)
def _dispose():
    yield
    get_db(APP).engine.dispose()
    shutil.rmtree(Path(get_db(APP).engine.url.database).parent, ignore_errors=True)


def test_the_document_is_valid_openapi_3_1():
    document = APP.test_client().get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_documented():
    documented = {(path, method) for path, method in OPERATIONS}
    for rule in APP.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {path} is not in the OpenAPI document"


def fresh_idempotency_key(case) -> None:
    """A reused key with another body is rightly a 422 (tested on its own); valid
    generated requests each get a fresh key so that they can all be accepted."""
    headers = case.headers or {}
    if case.meta is not None and case.meta.generation.mode.is_positive and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = uuid.uuid4().hex


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_conform(case):
    CALLS.append(f"{case.operation.label} {case.meta.generation.mode if case.meta else '?'}")
    fresh_idempotency_key(case)
    case.call_and_validate()


def test_over_a_thousand_requests_were_generated():
    assert len(CALLS) >= 1000, f"only {len(CALLS)} generated requests"
    negative = [call for call in CALLS if call.endswith("negative")]
    assert len(negative) >= 300, f"only {len(negative)} invalid requests were generated"


KEPT = ("scoring_profiles", "slot_policy", "slots")
"""What the app reads once and keeps: its active scoring profile, the slot pool's seed."""


class APIWorkflow(schema.as_state_machine()):
    def setup(self) -> None:
        # Each scenario starts from an empty database: hypothesis replays scenarios, and a
        # name registered in an earlier one would turn a 201 (and the link it feeds) into a 409.
        with get_db(APP).connect() as connection:
            for table in TABLES:
                if table not in KEPT:
                    connection.execute(text(f"DELETE FROM {table}"))
            connection.commit()

    def before_call(self, case) -> None:
        fresh_idempotency_key(case)


APIWorkflow.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
TestAPIWorkflow = APIWorkflow.TestCase
