"""Races: many simultaneous submissions from one address across several app instances."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import WORKED_EXAMPLE, stored_count


def test_fifty_simultaneous_submissions_across_workers_accept_exactly_ten(make_app):
    # Two apps stand for two workers: separate engines and pools, one PostgreSQL, one Redis.
    workers = [make_app(), make_app()]
    barrier = threading.Barrier(50)

    def attempt(i: int) -> int:
        client = workers[i % 2].test_client()
        barrier.wait()
        return client.post("/submit_qualification", json=WORKED_EXAMPLE).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(50)))

    assert statuses.count(201) == 10
    assert statuses.count(429) == 40
    assert stored_count(workers[0]) == 10


def test_simultaneous_first_submissions_agree_on_one_profile_version(make_app):
    workers = [make_app(ratelimit_enabled=False) for _ in range(4)]
    barrier = threading.Barrier(4)

    def attempt(i: int) -> int:
        client = workers[i].test_client()
        barrier.wait()
        response = client.post("/submit_qualification", json=WORKED_EXAMPLE)
        return client.get(response.headers["Location"]).get_json()["profile_version"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = set(pool.map(attempt, range(4)))
    assert versions == {1}


def test_twenty_simultaneous_requests_with_one_key_store_exactly_one_row(make_app):
    workers = [make_app(), make_app()]
    barrier = threading.Barrier(20)

    def attempt(i: int):
        client = workers[i % 2].test_client()
        barrier.wait()
        response = client.post(
            "/submit_qualification", json=WORKED_EXAMPLE, headers={"Idempotency-Key": "one"}
        )
        return response.status_code, response.headers.get("Idempotent-Replayed"), response.get_json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))

    statuses = [status for status, _, _ in results]
    assert set(statuses) == {201}  # the duplicates wait for the first and replay it
    originals = [body for status, replayed, body in results if status == 201 and replayed is None]
    replays = [body for status, replayed, body in results if status == 201 and replayed == "true"]
    assert len(originals) == 1
    assert all(body == originals[0] for body in replays)
    assert stored_count(workers[0]) == 1
