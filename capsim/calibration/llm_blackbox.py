"""Black-box LLM calibration: step-time coefficients from the client's TTFT and token times alone.

For an endpoint capsim cannot look inside (vLLM, SGLang, TGI: no step log), the only data are what
the client saw — each request's send, first token, token gaps and last token. The fit searches for
the `llm_linear` coefficients — `base_ms`, `per_prefill_token_ms`, `per_decode_seq_ms` — and the
constant time outside the engine (`overhead_ms`) whose **replays through the simulator**, with the
run's exact send times and token counts (llm_replay.py), best match every fit point's measured mean
and p90 of TTFT, TPOT and E2E (`FIT_KEYS`) and the mean TTFT of the shortest, middle and longest
third of its prompts (`_ttft_by_prompt_loss`). Loss: the mean squared log ratio simulated /
measured, so every point and statistic counts by its relative error. The replays are deterministic
(given tokens, no noise in the step), so the loss is a deterministic function of the four numbers —
but a rough one at the scale of a step: a coefficient 1% off moves some requests into the next step
and their TTFT by a whole step. So the search (`fit_llm_black_box`) starts from two regressions on
the measurements (`_Coordinates.start`), samples in three shrinking boxes around the best point so
far, and only then polishes with Nelder–Mead (search.py), in coordinates shaped like the data.

What separates the parameters: a lone request's TPOT is base + per_decode_seq (one decoding
sequence); TTFT above it is the overhead plus a prefill that grows with the prompt; under load more
sequences decode per step, exposing per_decode_seq. `per_context_token_ms` and `per_request_ms` stay
0: from client timings they cannot be told apart from the other terms (the white box fits them when
the step log separates them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from capsim.calibration.llm_compare import measured_llm_stats, simulated_llm_stats
from capsim.calibration.llm_replay import LlmReplayModel, SimulatedLlm, replay_llm, replay_scenario
from capsim.calibration.llm_runfolder import LlmPoint
from capsim.calibration.replay import ReplayWorkspace
from capsim.calibration.search import nelder_mead
from capsim.errors import CapsimInputError

# Means first: a mean moves smoothly with the coefficients, where a percentile of a few hundred
# requests jumps whenever a request lands in another step; the p90s keep the fit honest about spread.
FIT_KEYS = (("ttft_ms", "mean"), ("tpot_ms", "mean"), ("latency_ms", "mean"), ("ttft_ms", "p90"), ("tpot_ms", "p90"),
            ("latency_ms", "p90"))  # fmt: skip
PARAMETERS = ("base_ms", "per_prefill_token_ms", "per_decode_seq_ms", "overhead_ms")
_FAILED_LOSS = 1e3  # a replay with nothing to compare is as bad as it gets
# The search: 60% of the evaluations sample uniformly in boxes of these half-widths (log and logit
# units) around the best point so far, then Nelder–Mead polishes from the best with this simplex.
_SAMPLED_SHARE = 0.6
_SAMPLE_BOXES = (np.array([0.7, 1.5, 0.5, 1.5]), np.array([0.25, 0.6, 0.15, 0.6]), np.array([0.08, 0.2, 0.05, 0.2]))
_POLISH_STEP = 0.05


@dataclass(frozen=True)
class LlmBlackBoxFit:
    """The fitted coefficients and overhead (ms), the loss and the search's statistics."""

    values_ms: dict[str, float]
    loss: float
    evaluations: int
    converged: bool

    def service(self) -> dict[str, Any]:
        """The step-time coefficients as an `llm_linear` mapping."""
        return {"kind": "llm_linear", **{k: v for k, v in self.values_ms.items() if k != "overhead_ms"}}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"values_ms": self.values_ms, "loss": self.loss, "evaluations": self.evaluations,
                "converged": self.converged, "fitted_on": [f"{d}.{p}" for d, p in FIT_KEYS]}  # fmt: skip


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class _Coordinates:
    """The search's coordinates, shaped like the data: x0 = log(overhead + per_prefill_token × mean
    prompt) — a lone request's TTFT above its step's base — x1 = logit of the overhead's share of it,
    x2 = log(base + per_decode_seq) — a lone request's TPOT — x3 = logit of per_decode_seq's share of
    it. The data pin x0 and x2 down first; the shares are what the loads and the prompt lengths separate."""

    mean_prompt: float

    def values(self, x: np.ndarray) -> dict[str, float]:
        ttft1, share = math.exp(x[0]), _sigmoid(x[1])
        tpot1, decode_share = math.exp(x[2]), _sigmoid(x[3])
        return {"base_ms": (1.0 - decode_share) * tpot1,
                "per_prefill_token_ms": (1.0 - share) * ttft1 / self.mean_prompt,
                "per_decode_seq_ms": decode_share * tpot1, "overhead_ms": share * ttft1}

    def start(self, points: list[LlmPoint], measured: list[dict[str, Any]]) -> np.ndarray:
        """A starting point by two regressions on the measurements. Decode: a request's mean TPOT is
        base + per_decode_seq × the sequences decoding beside it, which Little's law puts at the
        rate × the mean decode time (E2E − TTFT) — a line over the fit points' loads. Prefill: the
        mean TTFT of each third of the prompts is about a constant + per_prefill_token × its mean
        prompt — a line over the thirds; a fifth of the constant above one decode step is taken as
        overhead. Shares are clamped into (0.02, 0.98) so the search can move both ways."""
        decoding, tpot, prompts, ttft = [], [], [], []
        for point, m in zip(points, measured, strict=True):
            if m["tpot_ms"]["mean"] is None or m["ttft_ms"]["mean"] is None or m["latency_ms"]["mean"] is None:
                continue
            rate = point.point.rate_rps or m["throughput_rps"]
            decoding.append(rate * (m["latency_ms"]["mean"] - m["ttft_ms"]["mean"]) / 1e3)
            tpot.append(m["tpot_ms"]["mean"])
            inputs, _ = point.token_counts()
            ttft_ms = point.point.requests["ttft_ms"].to_numpy(dtype=float)
            for group in _prompt_groups(point):
                group = group & np.isfinite(ttft_ms)
                if group.any():
                    prompts.append(float(inputs[group].mean()))
                    ttft.append(float(ttft_ms[group].mean()))
        if not tpot:
            raise CapsimInputError("no completed request with more than one output token in the fit points: the "
                                   "black box has nothing to fit", source=str(points[0].point.run_dir))  # fmt: skip
        slope, base = np.polyfit(decoding, tpot, 1) if len(set(decoding)) > 1 else (0.0, tpot[0])
        lone = min(max(base + max(slope, 0.0), 1e-3), max(tpot))  # one decoding sequence
        decode_share = min(max(max(slope, 0.0) / lone, 0.02), 0.98)
        per_token, intercept = np.polyfit(prompts, ttft, 1) if len(set(prompts)) > 1 else (0.0, ttft[0])
        above = max(intercept - lone, 0.05 * lone)
        ttft1 = above + max(per_token, 1e-6) * self.mean_prompt
        share = min(max(above / ttft1, 0.02), 0.98)
        return np.array([math.log(ttft1), _logit(share), math.log(lone), _logit(decode_share)])


def _loss(measured: dict[str, Any], simulated: dict[str, Any]) -> float:
    terms = []
    for dist, key in FIT_KEYS:
        m, s = measured[dist][key], simulated[dist][key]
        if m is None:
            continue
        if s is None or s <= 0 or m <= 0:
            return _FAILED_LOSS
        terms.append(math.log(s / m) ** 2)
    return float(np.mean(terms)) if terms else _FAILED_LOSS


def _prompt_groups(point: LlmPoint) -> list[np.ndarray]:
    """The measured requests split into thirds by prompt length (masks over the rows)."""
    inputs, _ = point.token_counts()
    mask = point.point.measured_mask()
    cuts = np.quantile(inputs[mask], [1 / 3, 2 / 3]) if mask.any() else np.zeros(2)
    return [mask & (inputs <= cuts[0]), mask & (inputs > cuts[0]) & (inputs <= cuts[1]), mask & (inputs > cuts[1])]


def _ttft_by_prompt_loss(point: LlmPoint, groups: list[np.ndarray], sim: SimulatedLlm) -> float:
    """Squared log ratio of the mean TTFT of each third of the prompts (short, middle, long),
    simulated / measured, averaged: how TTFT grows with the prompt is what separates the prefill time
    per token from the constant overhead, which the pooled percentiles cannot tell apart."""
    measured_ms = point.point.requests["ttft_ms"].to_numpy(dtype=float)
    simulated_ms = (sim.first_token_s - sim.sent_s) * 1e3
    terms = []
    for group in groups:
        both = group & np.isfinite(measured_ms) & np.isfinite(simulated_ms)
        if not both.any():
            continue
        m, s = float(np.mean(measured_ms[both])), float(np.mean(simulated_ms[both]))
        if m <= 0 or s <= 0:
            return _FAILED_LOSS
        terms.append(math.log(s / m) ** 2)
    return float(np.mean(terms)) if terms else 0.0


def fit_llm_black_box(points: list[LlmPoint], workspace: ReplayWorkspace, *, max_evaluations: int = 150
                      ) -> LlmBlackBoxFit:  # fmt: skip
    """Search the coefficients and overhead whose replays best match `points` (module docstring)."""
    measured = [measured_llm_stats(p) for p in points]
    groups = [_prompt_groups(p) for p in points]
    coords = _Coordinates(max(float(np.mean(np.concatenate([p.token_counts()[0] for p in points]))), 1.0))
    prepared = [replay_scenario(p, {"kind": "llm_linear", "base_ms": 1.0, "per_prefill_token_ms": 0.0,
                                    "per_decode_seq_ms": 0.0}, workspace) for p in points]  # fmt: skip

    def loss(x: np.ndarray) -> float:
        values = coords.values(x)
        model = LlmReplayModel(service={"kind": "llm_linear", **{k: v for k, v in values.items()
                                                                  if k != "overhead_ms"}},
                               overhead_ms=values["overhead_ms"])  # fmt: skip
        total = 0.0
        for point, m, thirds, ready in zip(points, measured, groups, prepared, strict=True):
            sim = replay_llm(point, model, workspace, ready)
            total += _loss(m, simulated_llm_stats(point, sim)) + _ttft_by_prompt_loss(point, thirds, sim)
        return total / len(points)

    x = coords.start(points, measured)
    best_loss = loss(x)
    evaluations = 1
    # Random search in shrinking boxes first: the loss is rough at the scale of a step (a request that
    # lands in another step moves its TTFT by a whole step), which traps a simplex started far away.
    rng = np.random.default_rng(0)
    sampled = int(max_evaluations * _SAMPLED_SHARE)
    for half_width in _SAMPLE_BOXES:
        for _ in range(sampled // len(_SAMPLE_BOXES)):
            trial = x + rng.uniform(-1.0, 1.0, x.size) * half_width
            value = loss(trial)
            evaluations += 1
            if value < best_loss:
                x, best_loss = trial, value
    result = nelder_mead(loss, x, _POLISH_STEP, max_evaluations=max(max_evaluations - evaluations, 10))
    evaluations += result.evaluations
    if result.loss <= best_loss:
        x, best_loss = result.x, result.loss
    return LlmBlackBoxFit(values_ms=coords.values(x), loss=best_loss, evaluations=evaluations,
                          converged=result.converged)  # fmt: skip
