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


def gpu_names() -> tuple[list[str], str]:
    """Names of the NVIDIA GPUs via NVML, and why none were found ("" when some were)."""
    try:
        import pynvml
    except ImportError as exc:
        return [], f"nvidia-ml-py is not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"{type(exc).__name__}: {exc}"
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names, "" if names else "NVML found no GPU"
    except pynvml.NVMLError as exc:
        return [], f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def describe(device_type: str, torch_threads: int, device_index: int = 0) -> dict[str, Any]:
    """The hardware record of a profile: `{"name", "kind", "device_name", ...}`."""
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
        names, reason = gpu_names()
        gpu = names[device_index] if device_index < len(names) else None
        if gpu is None:
            # NVML missing but CUDA works (e.g. inside some containers): ask torch instead.
            import torch

            gpu = torch.cuda.get_device_name(device_index)
        record.update(device_name=gpu, gpu_count=max(len(names), 1), nvml=reason or "ok")
        record["name"] = gpu.lower().replace("nvidia ", "").replace(" ", "-")
    else:
        _, reason = gpu_names()
        record.update(device_name=cpu, nvml=reason or "ok")
        record["name"] = f"cpu-{record['cpu_count']}core"
    return record
