"""The evidence of one measured run, as the server reads it (gpuq.api.schemas.EvidenceIn
checks the JSON's shape; these are the values it yields).

Samples are columns of equal length, one entry per sample, taken at `rate_hz` by the
agent. A field NVML does not support on the GPU is None in every sample (and named in
`unsupported`): it is recorded as missing, never invented.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any


def model_name(name: str) -> str:
    """A GPU model's name as boards compare it: spaces collapsed, so one model is one board."""
    return " ".join(name.split())


@dataclasses.dataclass(frozen=True)
class Gpu:
    """The GPU the run used, as NVML names it."""

    name: str
    uuid: str
    driver: str | None
    power_limit_w: Decimal | None
    """The enforced power limit (nvmlDeviceGetEnforcedPowerLimit)."""
    memory_total_bytes: int | None


@dataclasses.dataclass(frozen=True)
class Samples:
    """Columns of samples; entry i of every column belongs to sample i."""

    t: Sequence[Decimal]
    """Seconds since the run started (the agent's monotonic clock)."""
    gpu_util: Sequence[Decimal | None]
    """GPU utilisation, percent."""
    mem_used_bytes: Sequence[int | None]
    power_w: Sequence[Decimal | None]
    energy_j: Sequence[Decimal | None]
    """The GPU's total-energy counter (nvmlDeviceGetTotalEnergyConsumption), joules."""
    sm_clock_mhz: Sequence[int | None]
    mem_clock_mhz: Sequence[int | None]
    throttle_reasons: Sequence[int | None]
    """NVML's clock-event (throttle) reason bitmask."""
    uuid: Sequence[str | None]
    """The UUID of the GPU read at each sample (the identity must not change)."""

    def __len__(self) -> int:
        return len(self.t)


@dataclasses.dataclass(frozen=True)
class Run:
    """The benchmark command's run, as the agent measured it."""

    started_at: dt.datetime
    ended_at: dt.datetime
    """Wall-clock times on the participant's machine (shown; checked only against each other
    and the measured duration, never against the server's clock)."""
    wall_seconds: Decimal
    """Measured duration (the agent's monotonic clock)."""
    since_ticket_seconds: Decimal
    """From receiving the ticket to the run's start (the agent's monotonic clock)."""
    exit_status: int
    accuracy: Decimal | None
    """What the benchmark reported (its result line or file), percent; None if it did not."""


@dataclasses.dataclass(frozen=True)
class Evidence:
    ticket_id: str
    nonce: str
    rate_hz: Decimal
    gpu: Gpu
    samples: Samples
    run: Run
    unsupported: frozenset[str]
    agent: str
    """The agent's name and version."""
    backend: str = "nvml"
    """Where the samples came from: "nvml" (a GPU), or the agent's "fake" or "replay"."""


def _plain(value: object) -> object:
    if isinstance(value, Decimal):  # normalised: 700, 700.0 and 7E+2 are one number
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(str(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def encode(evidence: Evidence) -> tuple[bytes, str]:
    """The evidence as canonical JSON (sorted keys, numbers as normalised decimal text): what
    is stored; and the SHA-256 of its measurements alone (the GPU, the samples and the run,
    without the ticket), so that the same measurements sent again under a new ticket, or
    with 700 written as 700.0, have the same digest. One pass over the samples."""
    plain: dict[str, Any] = {
        "gpu": _plain(dataclasses.asdict(evidence.gpu)),
        "rate_hz": _plain(evidence.rate_hz),
        "samples": {
            field.name: _plain(getattr(evidence.samples, field.name))
            for field in dataclasses.fields(evidence.samples)
        },
        "run": _plain(dataclasses.asdict(evidence.run)),
    }
    measured = hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    plain.update(
        ticket_id=evidence.ticket_id,
        nonce=evidence.nonce,
        unsupported=sorted(evidence.unsupported),
        agent=evidence.agent,
        backend=evidence.backend,
    )
    return json.dumps(plain, sort_keys=True, separators=(",", ":")).encode(), measured


def digest(evidence: Evidence) -> str:
    """The digest of `encode`."""
    return encode(evidence)[1]
