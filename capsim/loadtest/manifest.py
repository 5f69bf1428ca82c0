"""manifest.json: what was tested, how, with which software on which machine, and when."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("capsim", "locust", "gevent", "geventhttpclient", "hdrhistogram", "numpy", "pyarrow", "nvidia-ml-py")


def versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (without importing locust or gevent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict[str, Any]:
    """The load generator's machine (the target's hardware is in its own telemetry)."""
    memory_bytes = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes,
    }


def build_manifest(settings: dict[str, Any], target: dict[str, Any], start_s: float) -> dict[str, Any]:
    """The manifest of a run folder."""
    return {
        "kind": "capsim-loadtest",
        "format_version": 1,
        "target": target,
        "settings": settings,
        "command": sys.argv,
        "versions": versions(),
        "hardware": hardware(),
        "start_s": start_s,
        "start_utc": dt.datetime.fromtimestamp(start_s, tz=dt.UTC).isoformat(),
        "clock": "epoch seconds (time.time()) in every file of this folder",
    }
