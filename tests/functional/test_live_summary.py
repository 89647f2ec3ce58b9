"""The board's summaries (score histogram, best score over time) on both databases."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpuq.live import board as live
from gpuq.store.db import get_db
from tests.conftest import WORKED_EXAMPLE


@pytest.mark.parametrize(
    ("score", "bucket"), [("0", 0), ("9.99", 0), ("10", 1), ("87.95", 8), ("99.99", 9), ("100", 9)]
)
def test_buckets_are_ten_points_wide_and_100_counts_in_the_last(score, bucket):
    assert live.bucket_of(Decimal(score)) == bucket


def test_histogram_and_records_follow_the_submissions(client, app):
    # accuracy 0 -> 73.25; 98 -> 87.95; 10 -> 74.75; 100 -> 88.25; 50 -> 80.75
    for accuracy in (0, 98, 10, 100, 50):
        assert (
            client.post("/submit_qualification", json={**WORKED_EXAMPLE, "accuracy": accuracy}).status_code
            == 201
        )
    with get_db(app).autocommit() as connection:
        histogram = live.histogram(connection)
        records = live.records(connection)
    assert histogram == [0, 0, 0, 0, 0, 0, 0, 2, 3, 0]
    assert [r["score"] for r in records] == [73.25, 87.95, 88.25]
    assert records == sorted(records, key=lambda r: r["at"])
