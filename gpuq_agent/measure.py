"""Running the benchmark command while sampling the GPU.

The sampler is a plain thread that reads the device every 1/rate seconds on the
monotonic clock (deadlines, not sleeps that drift), so `t` is seconds since the run
started and the count matches duration × rate. The command runs as a child process
with its stdout passed through to the terminal, and with the run's ticket in its
environment:

* GPUQ_RUN_SEED: the seed the server chose (a benchmark should seed its data with it);
* GPUQ_RUN_NONCE: the ticket's nonce;
* GPUQ_RESULT_FILE: a file the benchmark may write its result to, as JSON
  `{"accuracy": 97.5}`.

Accuracy is read from that file, or else from the last stdout line of the form
`GPUQ_RESULT accuracy=97.5`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpuq_agent.backends import FIELDS, Device, finite

RESULT_LINE = re.compile(r"^GPUQ_RESULT\s+accuracy\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*$")


@dataclasses.dataclass
class Measured:
    identity: dict[str, Any]
    rate_hz: float
    samples: dict[str, list[Any]]
    unsupported: list[str]
    started_at: dt.datetime
    ended_at: dt.datetime
    wall_seconds: float
    exit_status: int
    accuracy: float | None
    since_ticket_seconds: float = 0.0
    """From receiving the ticket to the run's start (monotonic): the server compares it with
    its own clock's ticket-to-evidence time, so clock skew between machines never matters."""
    backend: str = "nvml"

    def trace(self) -> dict[str, Any]:
        """The raw recording, as ReplayDevice reads it back."""
        rows = [
            {name: self.samples[name][i] for name in FIELDS} | {"t": self.samples["t"][i]}
            for i in range(len(self.samples["t"]))
        ]
        return {"identity": self.identity, "rate_hz": self.rate_hz, "samples": rows}


class Sampler(threading.Thread):
    def __init__(self, device: Device, rate_hz: float):
        super().__init__(daemon=True, name="gpuq-sampler")
        self._device = device
        self._interval = 1.0 / rate_hz
        self._stop_at: float | None = None
        self._stopped = threading.Event()
        self.samples: dict[str, list[Any]] = {"t": [], **{name: [] for name in FIELDS}}
        self.start_monotonic = time.monotonic()

    def run(self) -> None:
        due = self.start_monotonic
        while True:
            now = time.monotonic()
            if self._stop_at is not None and now > self._stop_at:
                return
            if now >= due:
                reading = self._device.sample()
                self.samples["t"].append(round(time.monotonic() - self.start_monotonic, 6))
                for name in FIELDS:
                    self.samples[name].append(finite(reading.get(name)))
                due += self._interval
                continue
            self._stopped.wait(due - now)

    def finish(self, at: float) -> None:
        """Take the samples due up to `at` (monotonic; one more at or after it), then stop."""
        self._stop_at = at + self._interval
        self.join()


def run(
    command: Sequence[str],
    device: Device,
    rate_hz: float,
    env: dict[str, str],
    ticket_received: float | None = None,
    backend: str = "nvml",
) -> Measured:
    """Run `command` while sampling `device`; returns what was measured. `ticket_received` is
    when the run's ticket arrived (time.monotonic), `backend` the device's kind."""
    identity = device.identity()
    with tempfile.TemporaryDirectory(prefix="gpuq-run-") as workdir:
        result_file = Path(workdir) / "result.json"
        child_env = {**os.environ, **env, "GPUQ_RESULT_FILE": str(result_file)}
        sampler = Sampler(device, rate_hz)
        started_at = dt.datetime.now(dt.UTC)
        sampler.start()
        accuracy_line: float | None = None
        try:
            process = subprocess.Popen(
                list(command),
                env=child_env,
                stdout=subprocess.PIPE,
                text=True,
                errors="replace",  # a benchmark's output need not be UTF-8
                bufsize=1,
            )
        except OSError:
            sampler.finish(time.monotonic())
            raise
        with process:  # closes the pipe and reaps the child however the loop ends
            assert process.stdout is not None
            for line in process.stdout:
                sys.stdout.write(line)
                match = RESULT_LINE.match(line.strip())
                if match:
                    accuracy_line = float(match.group(1))
            exit_status = process.wait()
        ended = time.monotonic()
        ended_at = dt.datetime.now(dt.UTC)
        sampler.finish(ended)
        accuracy = _result_file_accuracy(result_file)
    samples = sampler.samples
    unsupported = [name for name in FIELDS if all(value is None for value in samples[name])]
    return Measured(
        identity=identity,
        rate_hz=rate_hz,
        samples=samples,
        unsupported=unsupported,
        started_at=started_at,
        ended_at=ended_at,
        wall_seconds=round(ended - sampler.start_monotonic, 6),
        exit_status=exit_status,
        accuracy=_percent(accuracy if accuracy is not None else accuracy_line),
        since_ticket_seconds=round(sampler.start_monotonic - (ticket_received or sampler.start_monotonic), 6),
        backend=backend,
    )


def _percent(value: float | None) -> float | None:
    """A reported accuracy, or None when it is not a finite percentage (the server would
    refuse it: better to say so here)."""
    if value is None or not math.isfinite(value) or not 0 <= value <= 100:
        if value is not None:
            print(
                f"gpuq-agent: the benchmark reported accuracy {value!r}, not 0-100; ignored", file=sys.stderr
            )
        return None
    return value


def _result_file_accuracy(path: Path) -> float | None:
    try:
        value = json.loads(path.read_text()).get("accuracy")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def evidence(measured: Measured, ticket: dict[str, Any], agent: str) -> dict[str, Any]:
    """The body of POST /runs/<ticket>/evidence."""
    samples, rate = _within(measured.samples, measured.rate_hz, MAX_SAMPLES)
    return {
        "nonce": ticket["nonce"],
        "agent": agent,
        "backend": measured.backend,
        "gpu": measured.identity,
        "rate_hz": rate,
        "samples": samples,
        "unsupported": measured.unsupported,
        "run": {
            "started_at": measured.started_at.isoformat().replace("+00:00", "Z"),
            "ended_at": measured.ended_at.isoformat().replace("+00:00", "Z"),
            "wall_seconds": measured.wall_seconds,
            "since_ticket_seconds": measured.since_ticket_seconds,
            "exit_status": measured.exit_status,
            "accuracy": measured.accuracy,
        },
    }


MAX_SAMPLES = 36_000
"""The server takes at most this many samples per run (gpuq.api.schemas.MAX_SAMPLES)."""


def _within(samples: dict[str, list[Any]], rate_hz: float, limit: int) -> tuple[dict[str, list[Any]], float]:
    """The samples of a run too long for `limit` thinned to every k-th (and the rate they
    then have): the energy counter is cumulative, so nothing the server derives is lost."""
    count = len(samples["t"])
    if count <= limit:
        return samples, rate_hz
    step = math.ceil(count / limit)
    return {name: column[::step] for name, column in samples.items()}, rate_hz / step
