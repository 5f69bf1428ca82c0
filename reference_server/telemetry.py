"""Device telemetry sampled in the background: NVML for NVIDIA GPUs, the process's CPU and memory
always.

A daemon thread samples every `interval_s` (100 ms by default) on a monotonic schedule. With NVML
it reads, per GPU: utilisation, memory used/total, power, the energy counter (mJ since driver load,
differenced by whoever wants window energy), SM clock and temperature; a metric the GPU does not
support is left out rather than failing the sample. Without NVML (no driver, no library, no
permission) it logs one message with NVML's reason and carries on with process CPU/RSS only: the
server runs normally either way.

Samples are kept in a bounded ring (`GET /debug/telemetry?since=SEQ`) with `time.time()` stamps, and
the latest one is exported on `/metrics` by `TelemetryCollector`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from reference_server.paging import page_after

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.1
DEFAULT_RING_SIZE = 36_000  # an hour at 100 ms

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class GpuSample:
    """One GPU at one instant. None = not supported on this GPU."""

    index: int
    name: str
    utilization_pct: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    power_w: float | None = None
    energy_j: float | None = None
    sm_clock_mhz: float | None = None
    temperature_c: float | None = None


@dataclass
class Sample:
    """One telemetry sample."""

    seq: int
    time_s: float  # time.time()
    mono_s: float  # time.monotonic()
    process_cpu_s: float
    process_cpu_util: float | None  # CPU seconds per second since the previous sample (can be > 1)
    process_rss_bytes: float | None
    gpus: list[GpuSample] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for /debug/telemetry."""
        return {
            "seq": self.seq,
            "time_s": round(self.time_s, 6),
            "process_cpu_s": self.process_cpu_s,
            "process_cpu_util": self.process_cpu_util,
            "process_rss_bytes": self.process_rss_bytes,
            "gpus": [g.__dict__ for g in self.gpus],
        }


def process_cpu_s() -> float:
    """User + system CPU seconds of this process (all threads)."""
    t = os.times()
    return t.user + t.system


def process_rss_bytes() -> float | None:
    """Resident set size from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/statm") as handle:
            return float(handle.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


class Nvml:
    """A thin guard around pynvml: `available` is False with a `reason` when NVML cannot start."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        self.handles: list[Any] = []
        self.names: list[str] = []
        try:
            import pynvml
        except ImportError as exc:  # nvidia-ml-py not installed
            self.reason = f"nvidia-ml-py is not installed ({exc})"
            return
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            for i in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                self.handles.append(handle)
                name = pynvml.nvmlDeviceGetName(handle)
                self.names.append(name.decode() if isinstance(name, bytes) else str(name))
        except pynvml.NVMLError as exc:
            self.reason = f"{type(exc).__name__}: {exc}"
            return
        if not self.handles:
            self.reason = "NVML found no GPU"
            return
        self.available = True

    def _read(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nvml.NVMLError:  # NotSupported on this SKU, MIG, lost GPU: leave it out
            return None

    def sample(self) -> list[GpuSample]:
        """Read every GPU once."""
        nv = self._nvml
        out = []
        for i, handle in enumerate(self.handles):
            s = GpuSample(index=i, name=self.names[i])
            util = self._read(nv.nvmlDeviceGetUtilizationRates, handle)
            if util is not None:
                s.utilization_pct = float(util.gpu)
            mem = self._read(nv.nvmlDeviceGetMemoryInfo, handle)
            if mem is not None:
                s.memory_used_bytes, s.memory_total_bytes = float(mem.used), float(mem.total)
            power_mw = self._read(nv.nvmlDeviceGetPowerUsage, handle)
            s.power_w = power_mw / 1e3 if power_mw is not None else None
            energy_mj = self._read(nv.nvmlDeviceGetTotalEnergyConsumption, handle)
            s.energy_j = energy_mj / 1e3 if energy_mj is not None else None
            clock = self._read(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM)
            s.sm_clock_mhz = float(clock) if clock is not None else None
            s.temperature_c = self._temperature(handle)
            out.append(s)
        return out

    def _temperature(self, handle: Any) -> float | None:
        nv = self._nvml
        # nvmlDeviceGetTemperature is deprecated (to be removed in CUDA 14); prefer the V variant.
        if hasattr(nv, "nvmlDeviceGetTemperatureV"):
            value = self._read(nv.nvmlDeviceGetTemperatureV, handle, nv.NVML_TEMPERATURE_GPU)
            if value is not None:
                return float(value)
        value = self._read(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
        return float(value) if value is not None else None

    def shutdown(self) -> None:
        """Release NVML."""
        if self.available:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
            self.available = False


class TelemetrySampler:
    """The background sampling thread and its ring of samples."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        ring_size: int = DEFAULT_RING_SIZE,
        use_nvml: bool = True,
    ) -> None:
        self.interval_s = interval_s
        self.nvml = Nvml() if use_nvml else None
        if self.nvml is not None and not self.nvml.available:
            log.warning(
                "NVML unavailable (%s): no GPU telemetry; exporting process CPU and memory instead",
                self.nvml.reason,
            )
        self._ring: deque[Sample] = deque(maxlen=ring_size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="telemetry", daemon=True)
        self._seq = itertools.count(1)
        self._last_cpu: tuple[float, float] | None = None

    @property
    def nvml_available(self) -> bool:
        """Whether GPU figures are being sampled."""
        return self.nvml is not None and self.nvml.available

    @property
    def nvml_reason(self) -> str:
        """Why NVML is unavailable ("" when it is available)."""
        if self.nvml is None:
            return "disabled"
        return self.nvml.reason

    def start(self) -> None:
        """Take a first sample now, then keep sampling in the background."""
        self.sample_once()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and release NVML."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self.nvml is not None:
            self.nvml.shutdown()

    def sample_once(self) -> Sample:
        """Take one sample and keep it."""
        mono, now = time.monotonic(), time.time()
        cpu = process_cpu_s()
        util = None
        if self._last_cpu is not None and mono > self._last_cpu[0]:
            util = (cpu - self._last_cpu[1]) / (mono - self._last_cpu[0])
        self._last_cpu = (mono, cpu)
        gpus = self.nvml.sample() if self.nvml is not None and self.nvml.available else []
        sample = Sample(next(self._seq), now, mono, cpu, util, process_rss_bytes(), gpus)
        with self._lock:
            self._ring.append(sample)
        return sample

    def latest(self) -> Sample | None:
        """The most recent sample."""
        with self._lock:
            return self._ring[-1] if self._ring else None

    def since(self, seq: int) -> list[Sample]:
        """Samples with a sequence number greater than `seq`, oldest first."""
        with self._lock:
            if not self._ring:
                return []
            return page_after(self._ring, self._ring[0].seq, seq)

    def _main(self) -> None:
        # A fixed schedule (next += interval) keeps the sample times from drifting with the time
        # each sample takes; after a long hiccup it skips ahead instead of bursting.
        next_mono = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_mono - time.monotonic())):
            try:
                self.sample_once()
            except Exception:  # telemetry must never take the server down
                log.exception("telemetry sample failed")
            next_mono += self.interval_s
            now = time.monotonic()
            if next_mono < now:
                next_mono = now + self.interval_s


class TelemetryCollector(Collector):
    """Exports the latest sample on /metrics (a custom collector: values are read at scrape time)."""

    def __init__(self, sampler: TelemetrySampler) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Any]:
        s = self.sampler
        available = GaugeMetricFamily(
            "refserver_nvml_available",
            "1 when GPU telemetry comes from NVML, 0 when NVML is unavailable (see reason label)",
            labels=["reason"],
        )
        available.add_metric([s.nvml_reason], 1.0 if s.nvml_available else 0.0)
        yield available
        sample = s.latest()
        if sample is None:
            return
        if sample.process_cpu_util is not None:
            yield GaugeMetricFamily(
                "refserver_process_cpu_utilization_ratio",
                "CPU seconds per second used by the server process over the last sample interval",
                value=sample.process_cpu_util,
            )
        if sample.process_rss_bytes is not None:
            yield GaugeMetricFamily(
                "refserver_process_rss_bytes",
                "resident memory of the server process",
                value=sample.process_rss_bytes,
            )
        if not sample.gpus:
            return
        gauges = {
            "utilization_pct": ("refserver_gpu_utilization_percent", "GPU busy % (NVML sample period)"),
            "memory_used_bytes": ("refserver_gpu_memory_used_bytes", "GPU memory used"),
            "memory_total_bytes": ("refserver_gpu_memory_total_bytes", "GPU memory total"),
            "power_w": ("refserver_gpu_power_watts", "GPU power draw (NVML power usage)"),
            "sm_clock_mhz": ("refserver_gpu_sm_clock_mhz", "GPU SM clock"),
            "temperature_c": ("refserver_gpu_temperature_celsius", "GPU temperature"),
        }
        for attr, (name, doc) in gauges.items():
            family = GaugeMetricFamily(name, doc, labels=["gpu", "name"])
            for gpu in sample.gpus:
                value = getattr(gpu, attr)
                if value is not None:
                    family.add_metric([str(gpu.index), gpu.name], value)
            yield family
        energy = CounterMetricFamily(
            "refserver_gpu_energy_joules",
            "GPU energy since the driver loaded (NVML total energy consumption counter)",
            labels=["gpu", "name"],
        )
        for gpu in sample.gpus:
            if gpu.energy_j is not None:
                energy.add_metric([str(gpu.index), gpu.name], gpu.energy_j)
        yield energy
