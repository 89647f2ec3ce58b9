"""Evidence of a measured run for tests, made by the agent's own code (so the agent's format
and the server's schema are tested together): a steady GPU sampled at `rate` per second."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any

from gpuq_agent import AGENT
from gpuq_agent.backends import FIELDS
from gpuq_agent.measure import Measured, evidence

GIB = 2**30
UUID = "GPU-11111111-2222-3333-4444-555555555555"
_COUNTER_STARTS = itertools.count(500_000, 1_000_000)
"""Each run gets its own span of the GPU's energy counter, as runs on one real GPU do."""


def measured_run(
    started_at: dt.datetime,
    seconds: float = 20.0,
    rate: float = 10.0,
    util: float = 80.0,
    power_w: float = 700.0,
    power_limit_w: float = 700.0,
    mem_used: int = 60 * GIB,
    mem_total: int = 80 * GIB,
    accuracy: float | None = 97.5,
) -> Measured:
    count = round(seconds * rate) + 1
    counter = next(_COUNTER_STARTS)
    t = [round(i / rate, 6) for i in range(count)]
    samples: dict[str, list[Any]] = {"t": t, **{name: [] for name in FIELDS}}
    for moment in t:
        samples["gpu_util"].append(util)
        samples["mem_used_bytes"].append(mem_used)
        samples["power_w"].append(power_w)
        samples["energy_j"].append(round(counter + power_w * moment, 3))
        samples["sm_clock_mhz"].append(1980)
        samples["mem_clock_mhz"].append(2619)
        samples["throttle_reasons"].append(0)
        samples["uuid"].append(UUID)
    return Measured(
        identity={
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": UUID,
            "driver": "550.54.15",
            "power_limit_w": power_limit_w,
            "memory_total_bytes": mem_total,
        },
        rate_hz=rate,
        samples=samples,
        unsupported=[],
        started_at=started_at,
        ended_at=started_at + dt.timedelta(seconds=seconds),
        wall_seconds=seconds,
        exit_status=0,
        accuracy=accuracy,
        since_ticket_seconds=0.5,
    )


def evidence_for(ticket: dict[str, Any], **run: Any) -> dict[str, Any]:
    """The evidence body of a run that started half a second after `ticket` was issued."""
    issued = dt.datetime.fromisoformat(ticket["issued_at"].replace("Z", "+00:00"))
    return copy.deepcopy(evidence(measured_run(issued + dt.timedelta(seconds=0.5), **run), ticket, AGENT))
