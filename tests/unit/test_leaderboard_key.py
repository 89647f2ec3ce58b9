"""The composite sorted-set key orders like the leaderboard rule and stays exact as a double."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuq.leaderboard.rule import MAX_ID, composite_key

scores = st.decimals(min_value=0, max_value=100, places=2)
ids = st.integers(min_value=1, max_value=MAX_ID)


@given(scores, ids, scores, ids)
def test_key_order_matches_score_desc_then_id_asc(s1, i1, s2, i2):
    if (s1, i1) == (s2, i2):
        return
    first_ranks_higher = (s1 > s2) or (s1 == s2 and i1 < i2)
    assert (composite_key(s1, i1) > composite_key(s2, i2)) == first_ranks_higher


@given(scores, ids)
def test_key_is_below_2_53_and_survives_a_double(score, submission_id):
    key = composite_key(score, submission_id)
    assert key < 2**53
    assert int(float(key)) == key


@pytest.mark.parametrize("bad_id", [0, -1, MAX_ID + 1])
def test_ids_outside_the_key_are_refused(bad_id):
    with pytest.raises(ValueError):
        composite_key(Decimal("50"), bad_id)


@pytest.mark.parametrize("participant", [None, "alice"])
@pytest.mark.parametrize("measured", [False, True])
def test_an_index_member_keeps_who_and_whether_measured(participant, measured):
    import datetime as dt

    from gpuq.leaderboard import Entry
    from gpuq.leaderboard.index import _decode, _member
    from gpuq.leaderboard.rule import composite_key

    measured = measured and participant is not None  # only a participant's result is measured
    entry = Entry(42, Decimal("87.95"), dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC), participant, measured)
    assert _decode(_member(entry).encode(), float(composite_key(entry.score, 42))) == entry
    with pytest.raises(ValueError):
        _decode(b"42:1765108800000:alice:x", float(composite_key(entry.score, 42)))
