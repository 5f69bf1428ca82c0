"""What the model runs on, for profiles and run manifests: GPU name from NVML, or the CPU model
from /proc/cpuinfo and the thread count."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any


def cpu_model_name() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# NVML's device names → capsim's hardware catalogue entries (capsim/hardware/catalogue.yaml), so that a
# profile measured on a GPU names hardware that `service.transfer` and the cost model can find.
# "NVIDIA H100 80GB HBM3" is the SXM5 board (the PCIe card has HBM2e and reports "NVIDIA H100 PCIe");
# it is the name read on the H100 this project measured on (benchmarks/data/h100/README.md).
NVML_CATALOGUE_NAMES = {
    "NVIDIA H100 80GB HBM3": "H100-SXM",
    "NVIDIA H100 PCIe": "H100-PCIe",
    "NVIDIA H100 NVL": "H100-NVL",
    "NVIDIA H200": "H200",
    "NVIDIA A100-SXM4-80GB": "A100-80GB",
    "NVIDIA A100-SXM4-40GB": "A100-40GB",
    "NVIDIA A100 80GB PCIe": "A100-80GB-PCIe",
    "NVIDIA A10G": "A10G",
    "NVIDIA A10": "A10",
    "NVIDIA L4": "L4",
    "NVIDIA L40S": "L40S",
    "Tesla T4": "T4",
    "NVIDIA B200": "B200",
}


def catalogue_name(device_name: str) -> str:
    """The hardware catalogue's name for an NVML device name; unknown GPUs get a slug of it
    ("NVIDIA RTX 6000 Ada Generation" → "rtx-6000-ada-generation")."""
    known = NVML_CATALOGUE_NAMES.get(device_name.strip())
    if known is not None:
        return known
    return device_name.strip().lower().replace("nvidia ", "").replace(" ", "-")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_info() -> tuple[list[dict[str, Any]], str]:
    """One record per NVIDIA GPU via NVML (`device_name`, `memory_total_bytes`, `driver_version`,
    `cuda_driver_version`), and why none were found ("" when some were)."""
    try:
        import pynvml
    except ImportError as exc:
        return [], f"nvidia-ml-py is not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"{type(exc).__name__}: {exc}"
    try:
        system: dict[str, Any] = {}
        with contextlib.suppress(pynvml.NVMLError):
            system["driver_version"] = _text(pynvml.nvmlSystemGetDriverVersion())
        with contextlib.suppress(pynvml.NVMLError, AttributeError):
            # An int such as 13000: the newest CUDA version the driver supports, as MAJOR*1000 + MINOR*10.
            version = int(pynvml.nvmlSystemGetCudaDriverVersion_v2())
            system["cuda_driver_version"] = f"{version // 1000}.{version % 1000 // 10}"
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpu: dict[str, Any] = {"device_name": _text(pynvml.nvmlDeviceGetName(handle)), **system}
            with contextlib.suppress(pynvml.NVMLError):
                gpu["memory_total_bytes"] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            with contextlib.suppress(pynvml.NVMLError):
                gpu["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3
            with contextlib.suppress(pynvml.NVMLError):
                gpu["max_sm_clock_mhz"] = int(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM))
            gpus.append(gpu)
        return gpus, "" if gpus else "NVML found no GPU"
    except pynvml.NVMLError as exc:
        return [], f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def gpu_names() -> tuple[list[str], str]:
    """Names of the NVIDIA GPUs via NVML, and why none were found ("" when some were)."""
    gpus, reason = gpu_info()
    return [g["device_name"] for g in gpus], reason


def torch_cuda_info(device_index: int) -> dict[str, Any]:
    """What torch says about a CUDA device: its name, compute capability, multiprocessors, memory,
    and the CUDA runtime and cuDNN torch was built with."""
    import torch

    props = torch.cuda.get_device_properties(device_index)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "device_name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "memory_total_bytes": int(props.total_memory),
        "cuda_runtime_version": torch.version.cuda,
        "cudnn_version": cudnn,
    }


def describe(device_type: str, torch_threads: int, device_index: int = 0) -> dict[str, Any]:
    """The hardware record of a profile: `{"name", "kind", "device_name", ...}`. On CUDA, `name` is
    the catalogue's name for the GPU (`H100-SXM`), and the record holds the driver, CUDA and cuDNN
    versions, compute capability and memory, so a profile says exactly what it was measured on."""
    cpu = cpu_model_name()
    record: dict[str, Any] = {
        "kind": device_type,
        "cpu_model": cpu,
        "cpu_count": cpu_count(),
        "threads": torch_threads,
        "machine": platform.machine(),
        "hostname_hint": platform.node().split(".")[0][:32],
    }
    if device_type == "cuda":
        gpus, reason = gpu_info()
        # NVML missing but CUDA works (e.g. inside some containers): torch still names the GPU.
        from_torch = torch_cuda_info(device_index)
        nvml_record = gpus[device_index] if device_index < len(gpus) else {}
        record.update(from_torch)
        record.update(nvml_record)  # NVML's name is the one the catalogue mapping knows
        record.update(gpu_count=max(len(gpus), 1), nvml=reason or "ok")
        record["name"] = catalogue_name(record["device_name"])
    else:
        _, reason = gpu_names()
        record.update(device_name=cpu, nvml=reason or "ok")
        record["name"] = f"cpu-{record['cpu_count']}core"
    return record
