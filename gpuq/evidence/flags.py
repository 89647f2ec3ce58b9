"""Plausibility flags: suspicious combinations in any result, measured or self-reported.

A flag never refuses a well-formed submission on its own: it is stored with the
submission and returned in the answer (so a participant who typed 0.9 for 90 % learns
it at once), shown to admins and in the export. Codes (the README lists them):

* `all_maximum`: utilisation, memory usage, power efficiency and accuracy are all 100.
* `time_below_minimum`: a completion time below `MIN_PLAUSIBLE_SECONDS`, less than any
  real run of the benchmark takes.
* `looks_like_fractions`: every percentage is at most 1 (and one is above 0): 0.9 typed
  for 90 %.
* `looks_like_milliseconds`: a completion time of `MILLISECONDS_FROM` seconds or more
  (30000 typed for 30 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

MIN_PLAUSIBLE_SECONDS = Decimal(1)
MILLISECONDS_FROM = Decimal(1000)
PERCENTAGES = ("gpu_utilization", "memory_usage", "power_efficiency", "accuracy")

CODES = {
    "all_maximum": "utilisation, memory usage, power efficiency and accuracy are all 100",
    "time_below_minimum": f"a completion time below {MIN_PLAUSIBLE_SECONDS} s, less than any real run takes",
    "looks_like_fractions": "every percentage is at most 1: percentages are 0-100, not fractions",
    "looks_like_milliseconds": (
        f"a completion time of {MILLISECONDS_FROM} s or more: completion_time is in seconds, not ms"
    ),
}


def flags(metrics: Mapping[str, Decimal]) -> list[str]:
    """The flag codes `metrics` raise, in the order of CODES."""
    percentages = [metrics[name] for name in PERCENTAGES]
    time = metrics["completion_time"]
    raised = {
        "all_maximum": all(value == 100 for value in percentages),
        "time_below_minimum": time < MIN_PLAUSIBLE_SECONDS,
        "looks_like_fractions": all(value <= 1 for value in percentages) and any(v > 0 for v in percentages),
        "looks_like_milliseconds": time >= MILLISECONDS_FROM,
    }
    return [code for code in CODES if raised[code]]
