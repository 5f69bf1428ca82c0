"""The interface of a calibration mechanism: a part of the server, beyond its service time, that
white-box calibration fits from the run folders and the replay then simulates.

A mechanism is one module (frontend_fit.py, lateness_fit.py) that defines a `Mechanism`: its `name`
(its key in the profile's `provenance.calibration.fit_detail` and in `calibrate(mechanisms=...)`),
a `fit` from the fit points' load data to a `Fitted` result (or None when the data cannot tell), and
what it `requires` (the mechanisms it builds on). The `Fitted` result says which `serving` fields it
sets (`scenario_patch`), what the provenance records (`as_dict`), one line for the person running
the calibration (`describe`), and its own error on any set of load points (`error`: on the fit
points a residual, on the held-out points a prediction error). The registry is mechanisms.py.

The replay carries `serving.frontend` and `serving.overhead_ms` (accuracy.ReplayModel): every
mechanism left in calibration is a part of the server's front end, so a patch sets only those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from capsim.calibration.runfolder import LoadPoint

PATCHABLE = frozenset({"frontend", "overhead_ms"})  # the `serving` fields the replay takes from a calibration
ERROR_PERCENTILES = (50.0, 90.0, 99.0)  # the percentiles a mechanism's error compares
_FLOOR_MS = 1e-3  # below a microsecond a time is clock noise: log ratios stop there


class Fitted(Protocol):
    """What a mechanism fitted."""

    def scenario_patch(self) -> dict[str, Any]:
        """The `serving` fields it sets, as a nested mapping (`{"frontend": {...}}`; keys in `PATCHABLE`)."""
        ...

    def as_dict(self) -> dict[str, object]:
        """What the profile's provenance records (`calibration.fit_detail[name]`)."""
        ...

    def describe(self) -> str:
        """One line on what was fitted, for stderr."""
        ...

    def error(self, points: list[LoadPoint]) -> float | None:
        """How far the fitted mechanism is from what `points` measured (`quantile_log_error`), or
        None when those points do not show it."""
        ...


@dataclass(frozen=True)
class Mechanism:
    """A registered mechanism (see the module docstring)."""

    name: str
    title: str  # what it models, in the warnings ("the front end")
    fit: Callable[[list[LoadPoint]], Fitted | None]
    requires: tuple[str, ...] = ()
    default: bool = False  # fitted unless the caller says otherwise
    unfitted: str = ""  # the warning when it was asked for and the data could not tell


def quantile_log_error(modelled: np.ndarray, measured: np.ndarray) -> float:
    """The mean squared log ratio of modelled to measured percentiles (`ERROR_PERCENTILES`, times in
    ms, each at least a microsecond): 0 when they agree; 0.01 is about 10% off in each."""
    modelled_log = np.log(np.maximum(np.asarray(modelled, dtype=float), _FLOOR_MS))
    measured_log = np.log(np.maximum(np.asarray(measured, dtype=float), _FLOOR_MS))
    return float(np.mean((modelled_log - measured_log) ** 2))
