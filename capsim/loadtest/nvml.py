"""GPU samples from NVML (nvidia-ml-py's `pynvml` module), when the target runs on this machine.

NVML is optional: without the package, the library (NVMLError_LibraryNotFound) or the driver, the
sampler records why and the load test goes on. Each metric that a GPU does not support (for example
power on some boards, utilisation under MIG) is skipped on its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

SAMPLE_INTERVAL_S = 0.1  # utilisation and power are 1/6 s – 1 s averages in the driver; 100 ms oversamples


class NvmlSampler:
    """Reads utilisation, memory, power, energy, SM clock and temperature of every GPU."""

    def __init__(self) -> None:
        self.enabled = False  # NVML started and found a GPU (stays true after close: it says what was sampled)
        self._closed = False
        self.reason: str | None = None
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
            self.enabled = bool(self._handles)
            if not self._handles:
                self.reason = "NVML found no GPU"
        except ImportError:
            self.reason = "nvidia-ml-py (pynvml) is not installed"
        except Exception as exc:  # pynvml.NVMLError_LibraryNotFound, _DriverNotLoaded, _NoPermission, ...
            self.reason = f"{type(exc).__name__}: {exc}"

    def _metrics(self, handle: Any) -> list[tuple[str, Callable[[], float]]]:
        nv = self._nvml
        return [
            ("gpu_utilization_percent", lambda: float(nv.nvmlDeviceGetUtilizationRates(handle).gpu)),
            ("gpu_memory_used_bytes", lambda: float(nv.nvmlDeviceGetMemoryInfo(handle).used)),
            ("gpu_power_watts", lambda: nv.nvmlDeviceGetPowerUsage(handle) / 1000.0),
            ("gpu_energy_joules", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0),
            ("gpu_sm_clock_mhz", lambda: float(nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))),
            ("gpu_temperature_c", lambda: self._temperature_c(handle)),
        ]

    def _temperature_c(self, handle: Any) -> float:
        nv = self._nvml
        # nvmlDeviceGetTemperature is deprecated (to go in CUDA 14); the V variant first, as the server does.
        if hasattr(nv, "nvmlDeviceGetTemperatureV"):
            try:
                return float(nv.nvmlDeviceGetTemperatureV(handle, nv.NVML_TEMPERATURE_GPU))
            except nv.NVMLError:
                pass
        return float(nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))

    def sample(self) -> list[tuple[float, str, str, str, float]]:
        """Rows `(time_s, "nvml", metric, "gpu=i", value)`; an unsupported metric is left out."""
        if not self.enabled or self._closed:
            return []
        now_s = time.time()
        rows = []
        for index, handle in enumerate(self._handles):
            for metric, read in self._metrics(handle):
                try:
                    rows.append((now_s, "nvml", metric, f"gpu={index}", read()))
                except Exception:  # NVMLError_NotSupported and friends: this metric only
                    continue
        return rows

    def close(self) -> None:
        """Release NVML."""
        if self.enabled and not self._closed:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            # Not `enabled = False`: the run's summary is written after close and must still say
            # that GPU samples were taken (it said "enabled: false" on the H100 with 266 samples).
            self._closed = True
