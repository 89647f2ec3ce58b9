"""Hypothesis strategies shared by the tests: valid metric sets as the API stores them."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

percent = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
seconds = st.decimals(
    min_value=Decimal("0.0001"), max_value=86400, places=4, allow_nan=False, allow_infinity=False
)
metric_sets = st.fixed_dictionaries(
    {
        "gpu_utilization": percent,
        "memory_usage": percent,
        "power_efficiency": percent,
        "completion_time": seconds,
        "accuracy": percent,
    }
)
