"""The rules a run's evidence must pass, each with a stable code (the README lists them).

Two kinds:

* Refusals (`refusal`, gpuq.errors.EvidenceRefused, raised by gpuq.submissions.runs): the evidence is not
  acceptable at all and nothing is stored: the ticket is unknown, another
  participant's, used, expired or its nonce wrong; the same evidence was accepted
  before; a metric cannot be derived.
* Checks (`check`): the evidence is stored with its submission either way; one that
  fails a check is not ranked, and the answer lists the failed codes.

Tolerances are generous on purpose: they are there to catch numbers that were typed
or edited, not the jitter of a real sampler.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from gpuq.errors import EvidenceRefused
from gpuq.evidence.derive import MissingMeasurement, counter_delta, energy_used, power_integral
from gpuq.evidence.model import Evidence

MIN_POWER_FRACTION = Decimal("0.05")
"""A run's mean power (E / T) below this fraction of the GPU's power limit is not a
working GPU: no measurement of one has been seen below it (idle GPUs draw more)."""
SAMPLE_COUNT_TOLERANCE = Decimal("0.10")
"""The sample count may differ from duration × rate by this fraction (plus two samples)."""
ENERGY_TOLERANCE = Decimal("0.20")
"""The energy counter's increase and the integral of the power samples may differ by this
fraction of the larger (plus 1 J): power is sampled, the counter is exact."""
DURATION_TOLERANCE_SECONDS = Decimal(1)
"""Slack between the run's wall-clock times and its measured duration, and between the
samples' span and that duration (beyond one sample interval)."""

REFUSALS = {
    "ticket_unknown": "no run ticket with this id",
    "ticket_not_yours": "the run ticket was issued to another participant",
    "ticket_used": "the run ticket was used already",
    "ticket_expired": "the run ticket expired before the evidence arrived",
    "ticket_nonce_mismatch": "the evidence does not carry its ticket's nonce",
    "evidence_replayed": "the same evidence was accepted before",
    "measurement_missing": "a metric cannot be derived: what it needs was not measured",
}
"""Refusals: nothing is stored."""
CHECKS = {
    "run_failed": "the benchmark command did not exit with status 0",
    "test_backend": "the samples come from the agent's fake or replay backend, not a GPU",
    "run_outside_ticket": "the run started before the ticket was received",
    "duration_exceeds_ticket": "the run ended later after its ticket than the evidence arrived after it",
    "duration_mismatch": "the run's start and end times do not agree with its measured duration",
    "samples_not_monotone": "sample times do not increase, or the energy counter goes down",
    "sample_count": "the number of samples does not match the duration and the sampling rate",
    "samples_do_not_cover_run": "the samples do not span the run from start to end",
    "energy_mismatch": "the energy counter's increase disagrees with the integral of the power samples",
    "energy_implausible": "the GPU used (almost) no energy during the run",
    "energy_reused": "the GPU's energy counter covered part of this run in a run stored before (a replay)",
    "memory_over_total": "a sample has more memory used than the GPU has",
    "gpu_changed": "the GPU's identity changed during the run",
}
"""Checks, in the order they run: the evidence is stored either way, unranked when one fails."""
CODES = {**REFUSALS, **CHECKS}


def refusal(code: str, status: int, detail: str = "") -> EvidenceRefused:
    """The refusal of rule `code` (one of the refusals in CODES), answered with `status`."""
    return EvidenceRefused(code, status, detail or CODES[code])


@dataclasses.dataclass(frozen=True)
class Context:
    """What the evidence is checked against: its ticket (as issued by gpuq.submissions.runs),
    the server's settings, and what is already stored."""

    issued_at: dt.datetime
    expires_at: dt.datetime
    test_backends: bool = False
    """Whether samples from the agent's fake or replay backend pass (GPUQ_ALLOW_TEST_BACKENDS)."""
    energy_reused: bool = False
    """Whether stored evidence from the same GPU covers part of this run's energy-counter span."""


@dataclasses.dataclass(frozen=True)
class Result:
    code: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "passed": self.passed, "detail": self.detail}


def check(evidence: Evidence, context: Context, received_at: dt.datetime) -> list[Result]:
    """Every check of `evidence` against its `context`, in the order of CHECKS."""
    return [rule(evidence, context, received_at) for rule in RULES]


def failed(results: list[Result]) -> list[str]:
    return [result.code for result in results if not result.passed]


def _result(code: str, problem: str | None) -> Result:
    return Result(code, problem is None, problem or "ok")


def _run_failed(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    status = evidence.run.exit_status
    return _result("run_failed", None if status == 0 else f"exit status {status}")


def _test_backend(evidence: Evidence, context: Context, _received: dt.datetime) -> Result:
    backend = evidence.backend
    if backend != "nvml" and not context.test_backends:
        return _result("test_backend", f"samples from the {backend!r} backend")
    return _result("test_backend", None)


def _run_outside_ticket(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    since = evidence.run.since_ticket_seconds
    if since < 0:
        return _result("run_outside_ticket", f"the run started {-since} s before the ticket was received")
    return _result("run_outside_ticket", None)


def _duration_exceeds_ticket(evidence: Evidence, context: Context, received: dt.datetime) -> Result:
    """The agent's own ticket-to-end time against the server's ticket-to-evidence time: no
    clock of the participant's machine is compared with the server's."""
    available = Decimal(str((received - context.issued_at).total_seconds()))
    used = evidence.run.since_ticket_seconds + evidence.run.wall_seconds
    if used > available + DURATION_TOLERANCE_SECONDS:
        return _result(
            "duration_exceeds_ticket",
            f"{used} s from the ticket to the run's end, the ticket was issued {available:.1f} s ago",
        )
    return _result("duration_exceeds_ticket", None)


def _duration_mismatch(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    run = evidence.run
    span = Decimal(str((run.ended_at - run.started_at).total_seconds()))
    slack = DURATION_TOLERANCE_SECONDS + run.wall_seconds / 100
    if abs(span - run.wall_seconds) > slack:
        return _result(
            "duration_mismatch", f"start to end is {span} s, the measured duration {run.wall_seconds} s"
        )
    return _result("duration_mismatch", None)


def _samples_not_monotone(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    times = evidence.samples.t
    if any(later <= earlier for earlier, later in zip(times, times[1:], strict=False)):
        return _result("samples_not_monotone", "sample times do not strictly increase")
    energy = [value for value in evidence.samples.energy_j if value is not None]
    if any(later < earlier for earlier, later in zip(energy, energy[1:], strict=False)):
        return _result("samples_not_monotone", "the energy counter goes down")
    return _result("samples_not_monotone", None)


def _sample_count(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    expected = evidence.run.wall_seconds * evidence.rate_hz
    count = len(evidence.samples)
    if abs(count - expected) > expected * SAMPLE_COUNT_TOLERANCE + 2:
        return _result("sample_count", f"{count} samples; {expected:.0f} expected at {evidence.rate_hz} Hz")
    return _result("sample_count", None)


def _samples_do_not_cover_run(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    times, wall = evidence.samples.t, evidence.run.wall_seconds
    slack = 1 / evidence.rate_hz + DURATION_TOLERANCE_SECONDS
    if times[0] < 0 or times[0] > slack or times[-1] < wall - slack or times[-1] > wall + slack:
        return _result("samples_do_not_cover_run", f"samples span {times[0]}-{times[-1]} s of a {wall} s run")
    return _result("samples_do_not_cover_run", None)


def _energy_mismatch(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    counter, integral = counter_delta(evidence.samples), power_integral(evidence.samples)
    if counter is None or integral is None:
        return Result("energy_mismatch", True, "not checked: the counter or the power draw was not measured")
    if abs(counter - integral) > max(counter, integral) * ENERGY_TOLERANCE + 1:
        return _result("energy_mismatch", f"counter {counter:.1f} J, power integral {integral:.1f} J")
    return _result("energy_mismatch", None)


def _energy_implausible(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    limit = evidence.gpu.power_limit_w or Decimal(0)
    try:
        energy = energy_used(evidence.samples)
    except MissingMeasurement:
        return Result("energy_implausible", True, "not checked: neither energy nor power was measured")
    seconds = evidence.run.wall_seconds
    if energy <= 0 or (seconds > 0 and energy / seconds < limit * MIN_POWER_FRACTION):
        return _result("energy_implausible", f"{energy:.1f} J in {seconds} s on a {limit} W GPU")
    return _result("energy_implausible", None)


def _energy_reused(_evidence: Evidence, context: Context, _received: dt.datetime) -> Result:
    """A GPU's energy counter only grows, so two real runs on one GPU never cover the same
    span of it; a recorded run sent again (edited or not) does."""
    problem = (
        "stored evidence from this GPU covers part of its energy-counter span"
        if context.energy_reused
        else None
    )
    return _result("energy_reused", problem)


def _memory_over_total(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    total = evidence.gpu.memory_total_bytes or 0
    peak = max((used for used in evidence.samples.mem_used_bytes if used is not None), default=0)
    return _result("memory_over_total", f"{peak} bytes used of {total}" if peak > total else None)


def _gpu_changed(evidence: Evidence, _context: Context, _received: dt.datetime) -> Result:
    seen = {uuid for uuid in evidence.samples.uuid if uuid is not None}
    others = sorted(seen - {evidence.gpu.uuid})
    return _result("gpu_changed", f"samples from {', '.join(others)}" if others else None)


RULES: list[Callable[[Evidence, Context, dt.datetime], Result]] = [
    _run_failed,
    _test_backend,
    _run_outside_ticket,
    _duration_exceeds_ticket,
    _duration_mismatch,
    _samples_not_monotone,
    _sample_count,
    _samples_do_not_cover_run,
    _energy_mismatch,
    _energy_implausible,
    _energy_reused,
    _memory_over_total,
    _gpu_changed,
]
