"""Which rate to run next in a `--sweep`: a given list, or an upward search until saturation.

A step is *saturated* when the target no longer keeps up with the offered load: completed
throughput below 95% of the rate actually sent, more than 1% of measured requests rejected, timed
out or failed, or a corrected p99 more than ten times the first step's (the knee of the
latency-throughput curve). `auto` doubles the rate until a step saturates, then bisects between the
last good and the first saturated rate (two more steps), within `sweep_max_steps` steps in all. A
step the generator could not deliver (invalid) ends the search: beyond it nothing can be measured.
"""

from __future__ import annotations

from typing import Any

THROUGHPUT_SHORTFALL = 0.95
FAILED_SHARE_LIMIT = 0.01
P99_KNEE_FACTOR = 10.0
REFINE_STEPS = 2


def saturation_reason(step: dict[str, Any], baseline_p99_ms: float | None) -> str | None:
    """Why `step` counts as saturated, or None."""
    req = step["requests"]
    arrived = max(req["arrived"], 1)
    failed = req["rejected"] + req["timed_out"] + req["errors"]
    if failed / arrived > FAILED_SHARE_LIMIT:
        return f"{failed / arrived:.1%} of requests rejected, timed out or failed"
    achieved = step.get("achieved_rps") or 0.0
    if achieved > 0 and (step.get("throughput_rps") or 0.0) < THROUGHPUT_SHORTFALL * achieved:
        return f"throughput {step['throughput_rps']:.1f} req/s below 95% of the {achieved:.1f} req/s sent"
    p99 = step["latency_ms"].get("p99")
    if baseline_p99_ms and p99 and p99 > P99_KNEE_FACTOR * baseline_p99_ms:
        return f"p99 {p99:.1f} ms above {P99_KNEE_FACTOR:g}x the first step's {baseline_p99_ms:.1f} ms"
    return None


class SweepPlanner:
    """Yields the rate of each step from the results so far."""

    def __init__(self, rates: list[float] | str, start_rps: float, max_steps: int) -> None:
        self.fixed = rates if isinstance(rates, list) else None
        self.start_rps = start_rps
        self.max_steps = max_steps
        self.stop_reason: str | None = None

    def next_rate(self, done: list[dict[str, Any]]) -> float | None:
        """The next rate to run, or None when the sweep is over (`stop_reason` says why)."""
        if done and done[-1].get("partial"):
            self.stop_reason = "interrupted"
            return None
        if self.fixed is not None:
            if len(done) < len(self.fixed):
                return self.fixed[len(done)]
            self.stop_reason = "all rates run"
            return None
        if len(done) >= self.max_steps:
            self.stop_reason = f"reached --sweep-max-steps ({self.max_steps})"
            return None
        if not done:
            return self.start_rps
        if not done[-1]["valid"] and not done[-1].get("saturated"):
            self.stop_reason = "the generator could not deliver the last step's rate"
            return None
        first_bad = next((i for i, s in enumerate(done) if s.get("saturated")), None)
        if first_bad is None:
            return 2.0 * float(done[-1]["rate_rps"])
        good = [float(s["rate_rps"]) for s in done if not s.get("saturated")]
        if not good:
            self.stop_reason = "the first step is already saturated; lower --rate"
            return None
        if len(done) - 1 - first_bad >= REFINE_STEPS:
            self.stop_reason = "saturation bracketed"
            return None
        low = max(good)
        high = min(float(s["rate_rps"]) for s in done if s.get("saturated"))
        if high <= low * 1.05:
            self.stop_reason = "saturation bracketed within 5%"
            return None
        return (low + high) / 2.0
