"""Where samples come from: NVML on a real GPU, a scripted fake, or a recorded trace.

A backend opens one device; the device names itself (`identity`) and answers
`sample()` with the fields of `FIELDS`, each None when the GPU does not support it
(recorded as such, never invented). Energy is NVML's total-energy counter in joules.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

FIELDS = (
    "gpu_util",
    "mem_used_bytes",
    "power_w",
    "energy_j",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "throttle_reasons",
    "uuid",
)
IDENTITY = ("name", "uuid", "driver", "power_limit_w", "memory_total_bytes")

Sample = dict[str, Any]


class Device(Protocol):
    def identity(self) -> dict[str, Any]:
        """name, uuid, driver, power_limit_w, memory_total_bytes (None where unsupported)."""

    def sample(self) -> Sample:
        """One reading of every field of FIELDS (None where unsupported)."""

    def close(self) -> None: ...


class BackendError(RuntimeError):
    """The backend cannot measure (no NVML, no such GPU, an unreadable trace)."""


class NvmlDevice:
    """A real GPU through NVIDIA's binding (`pip install nvidia-ml-py`, imported as pynvml)."""

    def __init__(self, index: int):
        try:
            import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no type hints
        except ImportError as exc:
            raise BackendError("NVML is not installed: pip install nvidia-ml-py") from exc
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as exc:
            raise BackendError(f"NVML cannot open GPU {index}: {exc}") from exc

    def _read(self, read: Callable[[], Any]) -> Any:
        """A field's value, or None when this GPU or driver does not support it."""
        try:
            return read()
        except self._nvml.NVMLError:
            return None

    def identity(self) -> dict[str, Any]:
        nvml, handle = self._nvml, self._handle
        memory = self._read(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        # The default limit, not the enforced one: raising the limit (nvidia-smi -pl) must not
        # raise the efficiency a run is scored with.
        limit_mw = self._read(lambda: nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle))
        if limit_mw is None:
            limit_mw = self._read(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        return {
            "name": _text(self._read(lambda: nvml.nvmlDeviceGetName(handle))) or "unknown",
            "uuid": _text(self._read(lambda: nvml.nvmlDeviceGetUUID(handle))) or "unknown",
            "driver": _text(self._read(nvml.nvmlSystemGetDriverVersion)),
            "power_limit_w": None if limit_mw is None else limit_mw / 1000,
            "memory_total_bytes": None if memory is None else int(memory.total),
        }

    def sample(self) -> Sample:
        nvml, handle = self._nvml, self._handle
        utilization = self._read(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        memory = self._read(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power_mw = self._read(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        energy_mj = self._read(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        throttle = (
            getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        return {
            "gpu_util": None if utilization is None else utilization.gpu,
            "mem_used_bytes": None if memory is None else int(memory.used),
            "power_w": None if power_mw is None else power_mw / 1000,
            "energy_j": None if energy_mj is None else energy_mj / 1000,
            "sm_clock_mhz": self._read(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "mem_clock_mhz": self._read(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            "throttle_reasons": self._read(lambda: throttle(handle)),
            "uuid": _text(self._read(lambda: nvml.nvmlDeviceGetUUID(handle))),
        }

    def close(self) -> None:
        self._read(self._nvml.nvmlShutdown)


class FakeDevice:
    """A scripted GPU for tests and for trying the agent without one.

    It draws `power_w` while busy at `util` %, with `mem_used_bytes` in use, and its
    energy counter integrates the power over real (monotonic) time, as a GPU's does.
    `unsupported` names fields it reports as None. `script`, when given, is called with
    the seconds since the device opened and returns overrides for that sample (a test
    that needs, say, a GPU swapped half-way returns {"uuid": ...} after some time).
    """

    def __init__(
        self,
        name: str = "Fake GPU 80GB",
        uuid: str = "GPU-00000000-fake-0000-0000-000000000000",
        util: float = 95.0,
        mem_used_bytes: int = 60 * 2**30,
        mem_total_bytes: int = 80 * 2**30,
        power_w: float = 350.0,
        power_limit_w: float = 700.0,
        unsupported: tuple[str, ...] = (),
        script: Callable[[float], Sample] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._identity = {
            "name": name,
            "uuid": uuid,
            "driver": "fake-1.0",
            "power_limit_w": power_limit_w,
            "memory_total_bytes": mem_total_bytes,
        }
        self._base = {"gpu_util": util, "mem_used_bytes": mem_used_bytes, "power_w": power_w}
        self._unsupported = set(unsupported)
        self._script = script
        self._monotonic = monotonic
        self._opened = monotonic()
        # A counter that started long ago and, like a real one, never covers one span twice:
        # 1 kJ per wall-clock second since 2020 is more than the fake draws.
        self._energy_j = (time.time() - 1.58e9) * 1000.0
        self._last: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def sample(self) -> Sample:
        with self._lock:
            now = self._monotonic()
            values: Sample = {
                **self._base,
                "sm_clock_mhz": 1980,
                "mem_clock_mhz": 2619,
                "throttle_reasons": 0,
                "uuid": self._identity["uuid"],
            }
            if self._script is not None:
                values.update(self._script(now - self._opened))
            if self._last is not None:
                then, power_then = self._last
                self._energy_j += (now - then) * (power_then + values["power_w"]) / 2
            self._last = (now, values["power_w"])
            values["energy_j"] = round(self._energy_j, 3)
            return {name: (None if name in self._unsupported else values[name]) for name in FIELDS}

    def close(self) -> None:
        pass


class ReplayDevice:
    """A recorded trace (`gpuq-agent run --record-trace`) played back, one recorded
    sample per sample taken, in order; past its end it holds the last one (so replay a
    trace with a run about as long as the recorded one)."""

    def __init__(self, path: Path):
        try:
            trace = json.loads(path.read_text())
            self._identity = {name: trace["identity"].get(name) for name in IDENTITY}
            self._samples: list[Sample] = [{name: s.get(name) for name in FIELDS} for s in trace["samples"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendError(f"cannot read the trace {path}: {exc}") from exc
        if not self._samples:
            raise BackendError(f"the trace {path} has no samples")
        self._next = self._iterate()

    def _iterate(self) -> Iterator[Sample]:
        yield from self._samples
        while True:
            yield self._samples[-1]

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def sample(self) -> Sample:
        return dict(next(self._next))

    def close(self) -> None:
        pass


def open_device(spec: str, index: int) -> Device:
    """The device named by `spec`: "nvml" (GPU `index`), "fake", or "replay:<trace file>"."""
    if spec == "nvml":
        return NvmlDevice(index)
    if spec == "fake":
        return FakeDevice()
    if spec.startswith("replay:"):
        return ReplayDevice(Path(spec.removeprefix("replay:")))
    raise BackendError(f"unknown backend {spec!r}: use nvml, fake or replay:<trace file>")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def finite(value: Any) -> Any:
    """`value`, with a NaN or infinite float (a broken reading) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
