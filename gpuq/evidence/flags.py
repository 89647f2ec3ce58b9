"""Plausibility flags: suspicious combinations in any result, measured or self-reported.

A flag never refuses a well-formed submission on its own: it is stored with the
submission and returned in the answer (so a participant who typed 0.9 for 90 % learns
it at once), shown to admins and in the export. Codes (the README lists them):

* `all_maximum`: utilisation, memory usage, power efficiency and accuracy are all 100.
* `time_below_minimum`: a completion time below `MIN_PLAUSIBLE_SECONDS`, less than any
  real run of the benchmark takes.
* `looks_like_fractions` (self-reported results): every percentage is at most 1 (and one
  is above 0): 0.9 typed for 90 %.
* `looks_like_milliseconds` (self-reported results): a completion time of
  `MILLISECONDS_FROM` seconds or more (30000 typed for 30 s).
* `outlier_for_gpu` (measured results): a completion time below 1/`OUTLIER_FACTOR` or
  above `OUTLIER_FACTOR` times the median of the ranked measured results on the same
  GPU model, once there are `OUTLIER_MIN_RESULTS` of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

MIN_PLAUSIBLE_SECONDS = Decimal(1)
MILLISECONDS_FROM = Decimal(1000)
PERCENTAGES = ("gpu_utilization", "memory_usage", "power_efficiency", "accuracy")
OUTLIER_FACTOR = Decimal(3)
OUTLIER_MIN_RESULTS = 10

CODES = {
    "all_maximum": "utilisation, memory usage, power efficiency and accuracy are all 100",
    "time_below_minimum": f"a completion time below {MIN_PLAUSIBLE_SECONDS} s, less than any real run takes",
    "looks_like_fractions": "every percentage is at most 1: percentages are 0-100, not fractions",
    "looks_like_milliseconds": (
        f"a completion time of {MILLISECONDS_FROM} s or more: completion_time is in seconds, not ms"
    ),
    "outlier_for_gpu": (
        f"a completion time below 1/{OUTLIER_FACTOR} or over {OUTLIER_FACTOR} times the median on this GPU"
    ),
}


def flags(
    metrics: Mapping[str, Decimal], measured: bool = False, same_gpu_times: Sequence[Decimal] = ()
) -> list[str]:
    """The flag codes `metrics` raise, in the order of CODES. The typing mistakes (fractions,
    milliseconds) are looked for in self-reported results only: a measured one was not
    typed. `same_gpu_times` are the completion times of the ranked measured results on a
    measured result's GPU model."""
    percentages = [metrics[name] for name in PERCENTAGES]
    time = metrics["completion_time"]
    raised = {
        "all_maximum": all(value == 100 for value in percentages),
        "time_below_minimum": time < MIN_PLAUSIBLE_SECONDS,
        "looks_like_fractions": not measured
        and all(value <= 1 for value in percentages)
        and any(v > 0 for v in percentages),
        "looks_like_milliseconds": not measured and time >= MILLISECONDS_FROM,
        "outlier_for_gpu": _outlier(time, same_gpu_times),
    }
    return [code for code in CODES if raised[code]]


def _outlier(time: Decimal, others: Sequence[Decimal]) -> bool:
    if len(others) < OUTLIER_MIN_RESULTS:
        return False
    ordered = sorted(others)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return time * OUTLIER_FACTOR < median or time > median * OUTLIER_FACTOR
