"""Black-box LLM calibration: step-time coefficients from the client's TTFT and ITL alone.

For an endpoint capsim cannot look inside (vLLM, SGLang, TGI: no step log), the only data are what
the client saw — each request's send, first token, token gaps and last token. The fit searches for
the `llm_linear` coefficients — `base_ms`, `per_prefill_token_ms`, `per_decode_seq_ms` — and the
constant time outside the engine (`overhead_ms`) whose **replays through the simulator**, with the
run's exact send times and token counts (llm_replay.py), best match the measured TTFT p50/p90/p99,
TPOT p50/p90/p99, ITL p50/p90 and E2E p50/p99 of every fit point (loss: the mean squared log ratio
simulated / measured, so every point and percentile counts by its relative error). The replays are
deterministic (given tokens, no noise in the step), so the loss is a deterministic function of the
four numbers; Nelder–Mead (search.py) searches their logarithms (all stay positive), restarting
twice from its best point with smaller simplices, as the real-time black box does (blackbox.py).

What separates the parameters: a lone request's TPOT is base + per_decode_seq (one decoding
sequence), TTFT minus the overhead is a prefill step, which grows with the prompt, and under load
the number of decoding sequences per step grows, exposing per_decode_seq. `per_context_token_ms`
and `per_request_ms` stay 0: from client timings they cannot be told apart from the other terms
(the white box fits them when the step log separates them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from capsim.calibration.llm_compare import measured_llm_stats, simulated_llm_stats
from capsim.calibration.llm_replay import LlmReplayModel, replay_llm, replay_scenario
from capsim.calibration.llm_runfolder import LlmPoint
from capsim.calibration.replay import ReplayWorkspace
from capsim.calibration.search import nelder_mead
from capsim.errors import CapsimInputError

FIT_KEYS = (("ttft_ms", "p50"), ("ttft_ms", "p90"), ("ttft_ms", "p99"), ("tpot_ms", "p50"), ("tpot_ms", "p90"),
            ("tpot_ms", "p99"), ("itl_ms", "p50"), ("itl_ms", "p90"), ("latency_ms", "p50"),
            ("latency_ms", "p99"))  # fmt: skip
PARAMETERS = ("base_ms", "per_prefill_token_ms", "per_decode_seq_ms", "overhead_ms")
_FAILED_LOSS = 1e3  # a replay with nothing to compare is as bad as it gets
_RESTART_STEPS = (1.0, 0.4, 0.15)  # initial simplex sizes (log space) of the search and its restarts
_FLOOR_MS = 1e-6  # the search's lower end for a coefficient (log space cannot reach 0)


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


def _start(points: list[LlmPoint], measured: list[dict[str, Any]]) -> np.ndarray:
    """A starting point from the lightest fit point: a lone decode makes TPOT; a prefill makes the
    TTFT above it; Little's law gives the sequences decoding together."""
    lightest = int(np.argmin([p.point.rate_rps or 0.0 for p in points]))
    m = measured[lightest]
    tpot = m["tpot_ms"]["p50"] or m["itl_ms"]["p50"]
    ttft = m["ttft_ms"]["p50"]
    if tpot is None or ttft is None:
        raise CapsimInputError("no completed request with more than one output token in the fit points: the "
                               "black box has nothing to fit", source=str(points[lightest].point.run_dir))  # fmt: skip
    inputs, _ = points[lightest].token_counts()
    rate = points[lightest].point.rate_rps or 1.0
    running = max(1.0, rate * (m["latency_ms"]["mean"] or tpot) / 1e3)
    values = [0.7 * tpot, max(ttft - tpot, 0.1 * tpot) / max(float(np.mean(inputs)), 1.0),
              0.3 * tpot / running, 0.05 * ttft]
    return np.log(np.maximum(values, _FLOOR_MS))


def _values(x: np.ndarray) -> dict[str, float]:
    return {name: float(math.exp(v)) for name, v in zip(PARAMETERS, x, strict=True)}


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


def fit_llm_black_box(points: list[LlmPoint], workspace: ReplayWorkspace, *, max_evaluations: int = 150
                      ) -> LlmBlackBoxFit:  # fmt: skip
    """Search the coefficients and overhead whose replays best match `points` (module docstring)."""
    measured = [measured_llm_stats(p) for p in points]
    prepared = [replay_scenario(p, {"kind": "llm_linear", "base_ms": 1.0, "per_prefill_token_ms": 0.0,
                                    "per_decode_seq_ms": 0.0}, workspace) for p in points]  # fmt: skip

    def loss(x: np.ndarray) -> float:
        values = _values(x)
        model = LlmReplayModel(service={"kind": "llm_linear", **{k: v for k, v in values.items()
                                                                  if k != "overhead_ms"}},
                               overhead_ms=values["overhead_ms"])  # fmt: skip
        total = 0.0
        for point, m, ready in zip(points, measured, prepared, strict=True):
            sim = replay_llm(point, model, workspace, ready)
            total += _loss(m, simulated_llm_stats(point, sim))
        return total / len(points)

    x = _start(points, measured)
    evaluations = 0
    best_loss = math.inf
    converged = False
    per_round = max(max_evaluations // len(_RESTART_STEPS), 10)
    for step in _RESTART_STEPS:
        result = nelder_mead(loss, x, step, max_evaluations=per_round)
        evaluations += result.evaluations
        if result.loss <= best_loss:
            x, best_loss, converged = result.x, result.loss, result.converged
    return LlmBlackBoxFit(values_ms=_values(x), loss=best_loss, evaluations=evaluations, converged=converged)
