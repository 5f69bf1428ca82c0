"""Can this profile stand for the server in this run? Checks made before any replay.

* The model: a profile measured on one model says nothing about another; when both the profile and
  the run name their model and the names differ, that is an error.
* The hardware: a profile from other hardware is allowed (a what-if) but warned about, when both
  the profile and the run's server name their hardware.
* The batch sizes: the simulator interpolates between a profile's measured batch sizes and
  extrapolates along the outermost two. A profile with a single batch size has no slope at all, so it
  cannot stand for a server that forms larger batches; that is an error. Batches larger than the
  largest measured size are extrapolated, which is only a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from capsim.calibration.runfolder import LoadPoint
from capsim.errors import CapsimInputError
from capsim.servicetime import Profile


def profile_model(profile: Profile) -> str | None:
    """The model name a profile was measured on, if it says."""
    name = profile.model.get("name") if isinstance(profile.model, dict) else None
    return str(name) if name else None


def observed_max_batch(point: LoadPoint) -> int | None:
    """The largest batch the server formed in this step (from the batch log or X-Batch-Size)."""
    if point.batches is not None and len(point.batches):
        return int(point.batches["size"].max())
    rows = point.requests
    if "server_batch_size" in rows.columns and rows["server_batch_size"].notna().any():
        return int(np.nanmax(rows["server_batch_size"].to_numpy(dtype=float)))
    return None


def check_profile_for(profile: Profile, profile_path: Path | str, point: LoadPoint) -> list[str]:
    """Raise CapsimInputError when `profile` cannot replay `point`; return warnings otherwise."""
    source = str(profile_path)
    name = profile_model(profile)
    if name and point.model and name != point.model:
        raise CapsimInputError(f"the profile is for model {name!r}, but {point.run_dir} measured {point.model!r}",
                               source=source, field="model.name")
    sizes = [p.batch_size for p in profile.points]
    server_max = point.server.max_batch_size if point.server is not None else None
    formed = observed_max_batch(point)
    needs = max(x for x in (server_max, formed, 1) if x is not None)
    if len(sizes) < 2 and needs > 1:
        seen = f", and formed batches of up to {formed}" if formed else ""
        raise CapsimInputError(
            f"the profile has only batch size {sizes[0]}, but the server in {point.label} batches up to "
            f"{server_max}{seen}: need at least 2 measured batch sizes to interpolate between (calibrate from "
            "loads that fill larger batches, or `capsim profile --batch-sizes 1,2,4,...`)",
            source=source, field="points")
    warnings = []
    measured_on = ((point.manifest.get("target") or {}).get("server_config") or {}).get("hardware") or {}
    profiled_on = profile.hardware or {}
    for key in ("name", "device_name"):
        if measured_on.get(key) and profiled_on.get(key) and measured_on[key] != profiled_on[key]:
            warnings.append(f"{point.label}: the profile was measured on {profiled_on[key]!r}, this run's server "
                            f"on {measured_on[key]!r} ({key}); expect the service times to differ")
            break
    if formed is not None and formed > sizes[-1]:
        warnings.append(f"{point.label}: batches of up to {formed} exceed the profile's largest measured size "
                        f"{sizes[-1]}; their times are extrapolated")
    return warnings
