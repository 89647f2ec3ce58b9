"""Scoring: five metrics and a profile in, a score with its breakdown out.

Pure and deterministic: no I/O, no clock, Decimal arithmetic only. The same
metrics and the same profile give the same score on every path.

The rule, in one place:

* Each of the four percentage metrics counts linearly: value / 100 of its weight.
* Completion time counts 100 % at or below `time_best` seconds, falling linearly
  to 0 % at or above `time_worst` seconds.
* A metric's points are weight x fraction, rounded half-up to 4 decimal places.
* The score is the sum of the points, rounded half-up to 2 decimal places, so
  the stored points always add up to the stored score.

With the default profile (weights 25/20/25/15/15, 0 s to 90 s) the worked
example of the specification (90, 85, 95, 30 s, 98) scores exactly 87.95.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

METRICS = ("gpu_utilization", "memory_usage", "power_efficiency", "completion_time", "accuracy")
PERCENT_METRICS = ("gpu_utilization", "memory_usage", "power_efficiency", "accuracy")

POINTS_QUANTUM = Decimal("0.0001")
SCORE_QUANTUM = Decimal("0.01")
HUNDRED = Decimal(100)

DEFAULT_WEIGHTS: Mapping[str, Decimal] = MappingProxyType(
    {
        "gpu_utilization": Decimal("25"),
        "memory_usage": Decimal("20"),
        "power_efficiency": Decimal("25"),
        "completion_time": Decimal("15"),
        "accuracy": Decimal("15"),
    }
)


@dataclasses.dataclass(frozen=True)
class Profile:
    """How metrics become points. Weights are points out of 100 and must sum to 100."""

    weights: Mapping[str, Decimal] = dataclasses.field(default_factory=lambda: DEFAULT_WEIGHTS)
    time_best: Decimal = Decimal("0")
    time_worst: Decimal = Decimal("90")

    def __post_init__(self) -> None:
        if set(self.weights) != set(METRICS):
            raise ValueError(f"weights must name exactly {METRICS}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights must not be negative")
        if sum(self.weights.values()) != HUNDRED:
            raise ValueError("weights must sum to 100")
        if self.time_worst <= self.time_best:
            raise ValueError("time_worst must be greater than time_best")

    def as_dict(self) -> dict[str, str]:
        """A stable, JSON-friendly form (Decimals as strings) for storage and comparison."""
        return {
            **{f"weight_{m}": str(self.weights[m]) for m in METRICS},
            "time_best": str(self.time_best),
            "time_worst": str(self.time_worst),
        }


@dataclasses.dataclass(frozen=True)
class Score:
    """The result: the total (0.00-100.00) and each metric's points (4 places)."""

    total: Decimal
    points: Mapping[str, Decimal]


def round_half_up(value: Decimal, quantum: Decimal) -> Decimal:
    """Round to `quantum` with ties away from zero (the rule banks and teachers use)."""
    return value.quantize(quantum, rounding=ROUND_HALF_UP)


def completion_fraction(seconds: Decimal, profile: Profile) -> Decimal:
    """Share of the completion-time weight earned: 1 at <= best, 0 at >= worst, linear between."""
    if seconds <= profile.time_best:
        return Decimal(1)
    if seconds >= profile.time_worst:
        return Decimal(0)
    return (profile.time_worst - seconds) / (profile.time_worst - profile.time_best)


def score(metrics: Mapping[str, Decimal], profile: Profile) -> Score:
    """Score validated metrics under `profile`.

    `metrics` must hold the five METRICS as finite Decimals, percentages within
    0-100 and completion time positive (the API validates this first); a
    missing metric raises KeyError.
    """
    points: dict[str, Decimal] = {}
    for name in METRICS:
        value = metrics[name]
        is_time = name == "completion_time"
        fraction = completion_fraction(value, profile) if is_time else value / HUNDRED
        points[name] = round_half_up(profile.weights[name] * fraction, POINTS_QUANTUM)
    total = round_half_up(sum(points.values(), Decimal(0)), SCORE_QUANTUM)
    return Score(total=total, points=MappingProxyType(points))
