"""The five metrics from a run's evidence: the server computes them, never the client.

The formulas (the README's "Measured results" section says the same), with U the mean
utilisation, T the run's measured duration, E the energy the GPU used during the run and
L its enforced power limit:

* gpu_utilization = U: the mean of the utilisation samples, percent.
* memory_usage = 100 × (peak memory used) / (memory total), at most 100.
* completion_time = T: the command's wall time measured by the agent, seconds.
* power_efficiency = 100 × min(1, (U / 100) × L × T / E): work per energy, the work
  being the busy GPU-seconds U/100 × T and the scale the energy the GPU would use at
  its limit in that time, L × T. A run that keeps the GPU busy while drawing less than
  its limit scores high; one that draws the full limit to keep it half busy scores 50.
  E is the total-energy counter's increase over the samples when NVML supports it,
  else the integral of the power samples (trapezoids).
* accuracy: what the benchmark reported.

Each is rounded half-up to 4 decimal places (the precision a submission stores).
Monotone as the tests check: power_efficiency never rises when E rises (all else
equal) and never falls when U rises; memory_usage never falls when the peak rises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from gpuq.evidence.model import Evidence, Samples

T = TypeVar("T")
PLACES = Decimal("0.0001")
HUNDRED = Decimal(100)


class MissingMeasurement(ValueError):
    """A metric cannot be derived: what it needs was not measured (unsupported or absent)."""

    code = "measurement_missing"


@dataclasses.dataclass(frozen=True)
class Derived:
    """The five metrics, and the energy they used (joules, for the checks and the answer)."""

    gpu_utilization: Decimal
    memory_usage: Decimal
    power_efficiency: Decimal
    completion_time: Decimal
    accuracy: Decimal
    energy_j: Decimal

    def metrics(self) -> dict[str, Decimal]:
        return {
            "gpu_utilization": self.gpu_utilization,
            "memory_usage": self.memory_usage,
            "power_efficiency": self.power_efficiency,
            "completion_time": self.completion_time,
            "accuracy": self.accuracy,
        }


def derive(evidence: Evidence) -> Derived:
    """The five metrics of `evidence`; raises MissingMeasurement naming what is missing."""
    samples = evidence.samples
    utilization = _clamp(mean(_present(samples.gpu_util, "GPU utilisation")))
    total = evidence.gpu.memory_total_bytes
    if not total:
        raise MissingMeasurement("the GPU's total memory was not measured")
    peak = max(_present(samples.mem_used_bytes, "memory used"))
    memory = _clamp(HUNDRED * Decimal(peak) / Decimal(total))
    duration = evidence.run.wall_seconds
    if duration <= 0:
        raise MissingMeasurement("the run's duration was not measured")
    limit = evidence.gpu.power_limit_w
    if limit is None or limit <= 0:
        raise MissingMeasurement("the GPU's power limit was not measured")
    energy = energy_used(samples)
    efficiency = power_efficiency(utilization, limit, duration, energy)
    if evidence.run.accuracy is None:
        raise MissingMeasurement("the benchmark reported no accuracy (see the README's result line)")
    return Derived(
        gpu_utilization=_round(utilization),
        memory_usage=_round(memory),
        power_efficiency=_round(efficiency),
        completion_time=_round(duration),
        accuracy=_round(_clamp(evidence.run.accuracy)),
        energy_j=_round(energy),
    )


def power_efficiency(utilization: Decimal, limit_w: Decimal, seconds: Decimal, energy_j: Decimal) -> Decimal:
    """100 × min(1, (U/100) × L × T / E), unrounded; E of 0 (nothing drawn) counts as 100."""
    if energy_j <= 0:
        return HUNDRED
    return min(HUNDRED, utilization * limit_w * seconds / energy_j)


def energy_used(samples: Samples) -> Decimal:
    """Joules used between the first and the last sample: the energy counter's increase when
    it was read at both ends, else the integral of the power samples; raises
    MissingMeasurement when neither was measured."""
    counter = counter_delta(samples)
    if counter is not None:
        return counter
    integral = power_integral(samples)
    if integral is None:
        raise MissingMeasurement("neither the energy counter nor the power draw was measured")
    return integral


def counter_span(samples: Samples) -> tuple[Decimal, Decimal] | None:
    """The energy counter at the first and the last sample (None unless both were read)."""
    first, last = samples.energy_j[0], samples.energy_j[-1]
    return None if first is None or last is None else (first, last)


def counter_delta(samples: Samples) -> Decimal | None:
    """The energy counter's increase from the first to the last sample, if both were read."""
    span = counter_span(samples)
    return None if span is None else span[1] - span[0]


def power_integral(samples: Samples) -> Decimal | None:
    """Joules by the trapezoid rule over the samples that have a power reading (None when
    fewer than two have one)."""
    points = [(t, p) for t, p in zip(samples.t, samples.power_w, strict=True) if p is not None]
    if len(points) < 2:
        return None
    return sum(
        ((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False)),
        Decimal(0),
    )


def mean(values: Sequence[Decimal]) -> Decimal:
    return sum(values, Decimal(0)) / len(values)


def _present(column: Sequence[T | None], what: str) -> list[T]:
    values = [value for value in column if value is not None]
    if not values:
        raise MissingMeasurement(f"{what} was not measured (unsupported on this GPU, or no samples)")
    return values


def _clamp(value: Decimal) -> Decimal:
    return min(HUNDRED, max(Decimal(0), value))


def _round(value: Decimal) -> Decimal:
    return value.quantize(PLACES, rounding=ROUND_HALF_UP)
