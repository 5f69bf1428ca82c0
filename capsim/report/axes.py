"""The conventions every capsim plot shares, each written once: how an SLO is named, how time runs
along an x axis, and how a latency tail is drawn.

* An SLO is named with its percentile wherever it is drawn ("SLO: p95 ≤ 200 ms"), never as a bare
  latency: a p99.9 target and a p50 target at the same milliseconds are different promises.
* Time: seconds for runs under half an hour, minutes up to three hours, hours beyond; a run of one
  day (22–24 h) reads as the hour of the day, 0–24 with a tick every 3 h, counted from the scenario's
  clock at t = 0 (`serving.clock_start_h`, or the diurnal arrival's `start_time_h`).
* A latency tail is a CCDF: the share of requests slower than x (1 − F) on a log axis with ticks
  written as percentages (10%, 1%, 0.1%, 0.01%), so p99 and p99.9 are as far apart as p90 and p99.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import ticker

_DAY_S = 86_400.0
_DAY_MIN_S = 22 * 3600.0  # a run this long or a little longer is "a day"
_DAY_MAX_S = _DAY_S + 60.0
_SECONDS_UP_TO_S = 1800.0
_MINUTES_UP_TO_S = 3 * 3600.0


def percentile_name(percentile: float) -> str:
    """`99.0` → `"p99"`, `99.9` → `"p99.9"`, `95` → `"p95"`."""
    return f"p{percentile:g}"


def slo_label(slo: dict[str, Any] | None, key: str = "latency_ms", metric: str = "") -> str | None:
    """`"SLO: p95 ≤ 200 ms"` from a summary's `slo` block; None when there is no latency target.
    `key` picks another bound of the block (an LLM run's `ttft_ms`, `tpot_ms`), named by `metric`
    ("SLO: p99 TTFT ≤ 1000 ms")."""
    if not slo or slo.get(key) is None:
        return None
    percentile = slo.get("percentile")
    name = percentile_name(float(percentile)) if percentile is not None else "latency"
    return f"SLO: {name}{' ' + metric if metric else ''} ≤ {float(slo[key]):g} ms"


@dataclass(frozen=True)
class TimeAxis:
    """Simulated seconds mapped to what the x axis shows (`values`), its label and tick spacing."""

    unit_s: float  # seconds per shown unit
    offset: float  # shown value at t = 0 (the hour of day at the start, for a day)
    label: str
    tick_step: float | None  # in shown units; None: matplotlib's choice
    wrap: float | None  # tick labels modulo this (24 for hours of the day)

    def values(self, time_s: Any) -> Any:
        """Shown x values of simulated times (seconds; scalars or arrays)."""
        return np.asarray(time_s, dtype=float) / self.unit_s + self.offset

    def apply(self, ax: Any, span_s: float) -> None:
        """Label `ax`'s x axis, set its limits to the run and its ticks."""
        ax.set_xlabel(self.label)
        ax.set_xlim(float(self.values(0.0)), float(self.values(span_s)))
        if self.tick_step is not None:
            ax.xaxis.set_major_locator(ticker.MultipleLocator(self.tick_step))
        if self.wrap is not None:
            wrap, end = self.wrap, float(self.values(span_s))

            def hour(value: float, _pos: object = None) -> str:
                # 24 at the right edge (the day's end), 0 for a midnight inside the run
                return f"{wrap:g}" if value > 0 and value % wrap == 0 and value >= end - 1e-9 else f"{value % wrap:g}"

            ax.xaxis.set_major_formatter(ticker.FuncFormatter(hour))


def time_axis(span_s: float, clock_start_h: float | None = None, since: str = "start") -> TimeAxis:
    """The x axis for a time series covering `span_s` simulated seconds (module docstring).
    `clock_start_h`: the hour of the day at t = 0, when the scenario has a clock; `since`: what t = 0 is."""
    if _DAY_MIN_S <= span_s <= _DAY_MAX_S and clock_start_h is not None:
        return TimeAxis(3600.0, clock_start_h, "hour of day", 3.0, 24.0)
    if span_s <= _SECONDS_UP_TO_S:
        return TimeAxis(1.0, 0.0, f"time since {since} (s)", None, None)
    if span_s <= _MINUTES_UP_TO_S:
        step = 10.0 if span_s <= 3600.0 else 20.0
        return TimeAxis(60.0, 0.0, f"time since {since} (min)", step, None)
    hours = span_s / 3600.0
    step = next(s for s in (1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, math.inf) if hours / s <= 12)
    return TimeAxis(3600.0, 0.0, f"time since {since} (hours)", None if math.isinf(step) else step, None)


def _count(value: float, _pos: object = None) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def count_axis(axis: Any) -> None:
    """Large counts written 250k, 1.5M rather than with a "1e6" offset above the axis."""
    axis.set_major_formatter(ticker.FuncFormatter(_count))


def _percent(value: float, _pos: object = None) -> str:
    return f"{100 * value:.10g}%"


def ccdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, share strictly slower) for a step plot of 1 − F; the last point (share 0,
    not drawable on a log axis) is dropped."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = ordered.size
    share = 1.0 - np.arange(1, n + 1) / max(n, 1)
    return ordered[:-1], share[:-1]


def tail_axes(ax: Any, smallest_share: float) -> None:
    """A CCDF's y axis: log scale from 100% down to the decade holding `smallest_share` (at least
    0.1%), ticks at each decade written as percentages."""
    floor = 10.0 ** math.floor(math.log10(max(min(smallest_share, 1e-3), 1e-9)))
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.0)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10.0, numticks=20))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(_percent))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylabel("share of requests slower (1 − CDF)")


def readable_log_axis(axis: Any) -> None:
    """A log axis (`ax.xaxis` or `ax.yaxis`) labelled with plain numbers at 1, 2 and 5 of each
    decade ("20", "50", "100"), not "2×10¹"."""
    axis.set_major_locator(ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0), numticks=30))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_locator(ticker.LogLocator(base=10.0, subs=tuple(range(1, 10)), numticks=30))

    def minor(value: float, _pos: object = None) -> str:
        # A narrow range shows only one or two of 1, 2, 5: label more of the minor ticks then.
        lo, hi = sorted(abs(v) for v in axis.get_view_interval())
        ratio = hi / lo if lo > 0 else math.inf
        digit = round(value / 10.0 ** math.floor(math.log10(value) + 1e-9)) if value > 0 else 0
        return f"{value:g}" if ratio < 3 or (ratio < 10 and digit in (3, 7)) else ""

    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def latency_axis(ax: Any, values: np.ndarray, which: str = "x", name: str = "latency", unit: str = "ms") -> None:
    """A latency (or other duration) axis: log scale with plain numbers when the values span more
    than a decade, else linear; labelled "<name> (<unit>[, log scale])"."""
    finite = values[np.isfinite(values) & (values > 0)]
    wide = bool(finite.size) and finite.max() / finite.min() > 10.0
    if wide:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        readable_log_axis(ax.xaxis if which == "x" else ax.yaxis)
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(f"{name} ({unit}{', log scale' if wide else ''})")


def latency_x_axis(ax: Any, latencies_ms: np.ndarray) -> None:
    """Latency in ms on x (see `latency_axis`)."""
    latency_axis(ax, latencies_ms, "x")
