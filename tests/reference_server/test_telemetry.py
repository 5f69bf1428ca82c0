"""Telemetry: the no-NVML path on this machine, failures NVML can raise, and a working NVML faked
at the pynvml boundary, all exported through a parseable /metrics text."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reference_server.telemetry import Nvml, TelemetryCollector, TelemetrySampler


def families(sampler: TelemetrySampler) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(TelemetryCollector(sampler))
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def nvml_works_here() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(nvml_works_here(), reason="this machine has a working NVML")
def test_without_nvml_the_reason_is_kept_and_cpu_figures_exported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        sampler = TelemetrySampler(interval_s=0.01)
    assert not sampler.nvml_available
    assert "NVML" in sampler.nvml_reason  # e.g. "NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    assert sum("NVML unavailable" in r.getMessage() for r in caplog.records) == 1
    sampler.start()
    sampler.sample_once()
    sampler.stop()
    fams = families(sampler)
    available = fams["refserver_nvml_available"].samples[0]
    assert available.value == 0 and available.labels["reason"] == sampler.nvml_reason
    assert fams["refserver_process_rss_bytes"].samples[0].value > 0
    assert fams["refserver_process_cpu_utilization_ratio"].samples[0].value >= 0
    assert not any(name.startswith("refserver_gpu_") for name in fams)
    assert len(sampler.since(0)) >= 2 and sampler.since(0)[0].gpus == []


def fake_pynvml(fail_init: Exception | None = None, power_supported: bool = True) -> types.ModuleType:
    """A pynvml module whose calls return fixed values (the NVML boundary, not our code)."""
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    mod.NVMLError = NVMLError  # type: ignore[attr-defined]
    mod.NVMLError_NotSupported = NVMLError_NotSupported  # type: ignore[attr-defined]
    mod.NVML_CLOCK_SM = 1  # type: ignore[attr-defined]
    mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    energy = [1_000_000]

    def init() -> None:
        if fail_init is not None:
            raise fail_init

    def power(_: object) -> int:
        if not power_supported:
            raise NVMLError_NotSupported("Not Supported")
        return 250_000

    def total_energy(_: object) -> int:
        energy[0] += 25_000
        return energy[0]

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87, memory=40)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2 * 2**30, total=80 * 2**30, free=0)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetPowerUsage = power  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTotalEnergyConsumption = total_energy  # type: ignore[attr-defined]
    mod.nvmlDeviceGetClockInfo = lambda h, c: 1980  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTemperatureV = lambda h, s: 61  # type: ignore[attr-defined]
    return mod


def test_nvml_figures_are_exported_with_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    sampler = TelemetrySampler(interval_s=0.01)
    assert sampler.nvml_available and sampler.nvml_reason == ""
    first = sampler.sample_once()
    second = sampler.sample_once()
    fams = families(sampler)
    labels = {"gpu": "0", "name": "NVIDIA H100 80GB HBM3"}
    assert fams["refserver_nvml_available"].samples[0].value == 1
    assert fams["refserver_gpu_utilization_percent"].samples[0].value == 87
    assert fams["refserver_gpu_utilization_percent"].samples[0].labels == labels
    assert fams["refserver_gpu_memory_used_bytes"].samples[0].value == 2 * 2**30
    assert fams["refserver_gpu_power_watts"].samples[0].value == 250.0  # from mW
    assert fams["refserver_gpu_sm_clock_mhz"].samples[0].value == 1980
    assert fams["refserver_gpu_temperature_celsius"].samples[0].value == 61
    energy = fams["refserver_gpu_energy_joules"]
    assert energy.type == "counter" and energy.samples[0].value == second.gpus[0].energy_j
    assert second.gpus[0].energy_j - first.gpus[0].energy_j == pytest.approx(25.0)  # mJ -> J


def test_an_unsupported_metric_is_left_out_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(power_supported=False))
    sampler = TelemetrySampler(interval_s=0.01)
    gpu = sampler.sample_once().gpus[0]
    assert gpu.power_w is None and gpu.utilization_pct == 87
    assert families(sampler)["refserver_gpu_power_watts"].samples == []


@pytest.mark.parametrize("error_name", ["NVMLError_DriverNotLoaded", "NVMLError_NoPermission"])
def test_nvml_init_failures_disable_gpu_telemetry(monkeypatch: pytest.MonkeyPatch, error_name: str) -> None:
    mod = fake_pynvml()
    error_cls = type(error_name, (mod.NVMLError,), {})  # type: ignore[attr-defined]

    def failing_init() -> None:
        raise error_cls("Driver Not Loaded")

    mod.nvmlInit = failing_init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    nvml = Nvml()
    assert not nvml.available and nvml.reason.startswith(error_name)
    sampler = TelemetrySampler(interval_s=0.01)
    assert sampler.sample_once().gpus == []
