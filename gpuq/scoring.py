"""Scoring: five metrics and a profile in, a score with its breakdown out.

Pure and deterministic: no I/O, no clock, Decimal arithmetic only. The same
metrics and the same profile give the same score on every path.

The rule, in one place:

* Weights are fractions summing to 1; a metric is worth weight x 100 points.
* Each of the four percentage metrics counts linearly: weight x value points.
* Completion time counts 100 % at or below `time_best` seconds, falling linearly
  to 0 % at or above `time_worst` seconds:
  weight x 100 x (time_worst - t) / (time_worst - time_best) points between.
* A metric's points are rounded half-up to 4 decimal places.
* The score is the sum of the points, rounded half-up to 2 decimal places, so
  the stored points always add up to the stored score.

With the default profile (weights 0.25/0.20/0.25/0.15/0.15, 0 s to 90 s) the worked
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
WEIGHT_QUANTUM = Decimal("0.0001")

DEFAULT_WEIGHTS: Mapping[str, Decimal] = MappingProxyType(
    {
        "gpu_utilization": Decimal("0.25"),
        "memory_usage": Decimal("0.20"),
        "power_efficiency": Decimal("0.25"),
        "completion_time": Decimal("0.15"),
        "accuracy": Decimal("0.15"),
    }
)


@dataclasses.dataclass(frozen=True)
class Profile:
    """How metrics become points. Weights are fractions (at most 4 decimal places) summing to 1."""

    weights: Mapping[str, Decimal] = dataclasses.field(default_factory=lambda: DEFAULT_WEIGHTS)
    time_best: Decimal = Decimal("0")
    time_worst: Decimal = Decimal("90")

    def __post_init__(self) -> None:
        if set(self.weights) != set(METRICS):
            raise ValueError(f"weights must name exactly {METRICS}")
        if any(not w.is_finite() or w < 0 for w in self.weights.values()):
            raise ValueError("weights must be finite and not negative")
        if any(w != w.quantize(WEIGHT_QUANTUM) for w in self.weights.values()):
            raise ValueError("weights have at most 4 decimal places")
        if sum(self.weights.values()) != 1:
            raise ValueError("weights must sum to 1")
        if not (self.time_best.is_finite() and self.time_worst.is_finite()) or self.time_best < 0:
            raise ValueError("time bounds must be finite and not negative")
        if self.time_worst <= self.time_best:
            raise ValueError("time_worst must be greater than time_best")

    def max_points(self, name: str) -> Decimal:
        """What metric `name` is worth, in points out of 100."""
        return self.weights[name] * HUNDRED

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


def completion_points(seconds: Decimal, profile: Profile) -> Decimal:
    """Unrounded completion-time points. One division, last, so that the database's
    set-based rescoring (gpuq.submissions.rescoring) computes the very same value."""
    if seconds <= profile.time_best:
        return profile.max_points("completion_time")
    if seconds >= profile.time_worst:
        return Decimal(0)
    numerator = profile.max_points("completion_time") * (profile.time_worst - seconds)
    return numerator / (profile.time_worst - profile.time_best)


def score(metrics: Mapping[str, Decimal], profile: Profile) -> Score:
    """Score validated metrics under `profile`.

    `metrics` must hold the five METRICS as finite Decimals, percentages within
    0-100 and completion time positive (the API validates this first); a
    missing metric raises KeyError.
    """
    points: dict[str, Decimal] = {}
    for name in METRICS:
        value = metrics[name]
        if name == "completion_time":
            raw = completion_points(value, profile)
        else:
            raw = profile.weights[name] * value
        points[name] = round_half_up(raw, POINTS_QUANTUM)
    total = round_half_up(sum(points.values(), Decimal(0)), SCORE_QUANTUM)
    return Score(total=total, points=MappingProxyType(points))
