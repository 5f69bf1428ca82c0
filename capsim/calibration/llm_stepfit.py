"""White-box LLM calibration: the step-time coefficients fitted to an engine's per-step log.

The engine logs every step (llm_steplog.py): its duration and what it held — T prompt tokens, D
decoding sequences, C context tokens attended, N requests scheduled for the first time. The
step-time rule of `llm_linear` / `llm_fitted` (capsim/servicetime/llm_step.py `llm_step_time_s`) is

    step = base + per_prefill_token × T + per_decode_seq × D + per_context_token × C + per_request × N

and `fit_step_times` finds its five coefficients by non-negative least squares on the logged
durations (`scipy.optimize.nnls`: each coefficient is a time, so none may be negative — an
unconstrained fit trades a negative per-request term against a larger per-token one when the two
move together). A term is fitted only when the log can tell it apart from the others
(*identifiable*): its column is not constant zero and not a linear combination of the terms before
it (base, T, D, C, N in that order) — with every prompt of one length, N = T / length and the
per-request term is left at 0, named in `dropped`. Columns are scaled to unit size before the rank
test and the fit, so tokens (thousands) and requests (ones) weigh alike.

`step_errors` judges coefficients on any set of steps — the fitted ones (residuals) or steps of
load points held out of the fit (prediction error): RMSE in ms, and percentiles of the absolute
relative error |predicted − measured| / measured. Predictions are `llm_step_time_s` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capsim.errors import CapsimInputError
from capsim.servicetime.llm_service import LlmLinearService
from capsim.servicetime.llm_step import llm_step_time_s, step_params

# (coefficient, step-log column): the order in which terms enter the identifiability test.
TERMS: tuple[tuple[str, str | None], ...] = (
    ("base_ms", None),
    ("per_prefill_token_ms", "prefill_tokens"),
    ("per_decode_seq_ms", "decode_seqs"),
    ("per_context_token_ms", "context_tokens"),
    ("per_request_ms", "new_seqs"),
)
# A term whose scaled column adds less than this singular value (relative to the largest) is taken as
# a combination of the others: its coefficient could not be told apart from theirs.
_RANK_TOLERANCE = 1e-6
MIN_STEPS = 10


@dataclass(frozen=True)
class StepFit:
    """Fitted step-time coefficients (ms) and what the fit could and could not identify."""

    coefficients_ms: dict[str, float]
    terms: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    steps: int = 0

    def service(self) -> LlmLinearService:
        """The coefficients as an `llm_linear` service (what `llm_fitted` evaluates)."""
        return LlmLinearService.model_validate(self.coefficients_ms)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"coefficients_ms": self.coefficients_ms, "terms": self.terms, "dropped": self.dropped,
                "steps": self.steps}  # fmt: skip


def _columns(steps: pd.DataFrame) -> np.ndarray:
    cols = [np.ones(len(steps)) if column is None else steps[column].to_numpy(dtype=float) for _, column in TERMS]
    return np.column_stack(cols)


def _identifiable(design: np.ndarray) -> tuple[list[int], dict[int, str]]:
    """Indices of the terms the data separate (in TERMS order) and why the others were dropped."""
    kept: list[int] = []
    dropped: dict[int, str] = {}
    for j in range(design.shape[1]):
        column = design[:, j]
        if not np.any(column):
            dropped[j] = "never nonzero in the log"
            continue
        trial = design[:, [*kept, j]]
        trial = trial / np.abs(trial).max(axis=0)
        singular = np.linalg.svd(trial, compute_uv=False)
        if singular[-1] <= _RANK_TOLERANCE * singular[0]:
            names = ", ".join(TERMS[i][0] for i in kept)
            dropped[j] = f"a linear combination of {names} in this log (not identifiable; left at 0)"
            continue
        kept.append(j)
    return kept, dropped


def fit_step_times(steps: pd.DataFrame) -> StepFit:
    """Non-negative least-squares fit of the step-time coefficients to `steps` (module docstring)."""
    from scipy.optimize import nnls

    if len(steps) < MIN_STEPS:
        raise CapsimInputError(f"the step log of the fit points holds {len(steps)} step(s); a fit needs at least "
                               f"{MIN_STEPS}", field="--step-log")  # fmt: skip
    design = _columns(steps)
    kept, dropped = _identifiable(design)
    sub = design[:, kept]
    scale = np.abs(sub).max(axis=0)
    solution, _ = nnls(sub / scale, steps["duration_s"].to_numpy(dtype=float))
    coefficients = dict.fromkeys((name for name, _ in TERMS), 0.0)
    for j, value in zip(kept, solution / scale, strict=True):
        coefficients[TERMS[j][0]] = float(value) * 1e3
    return StepFit(coefficients_ms=coefficients, terms=[TERMS[j][0] for j in kept],
                   dropped={TERMS[j][0]: why for j, why in dropped.items()}, steps=len(steps))  # fmt: skip


def predicted_step_s(service: LlmLinearService, steps: pd.DataFrame) -> np.ndarray:
    """Each step's duration under `service`, by the simulator's own rule (`llm_step_time_s`)."""
    params = step_params(service, None, None)
    cols = [steps[c].to_numpy(dtype=float) for c in ("prefill_tokens", "decode_seqs", "context_tokens", "new_seqs")]
    return np.array([llm_step_time_s(params, t, d, c, n) for t, d, c, n in zip(*cols, strict=True)])


def step_errors(service: LlmLinearService, steps: pd.DataFrame) -> dict[str, Any]:
    """RMSE (ms) and the absolute relative error's mean and percentiles of `service` on `steps`."""
    measured_s = steps["duration_s"].to_numpy(dtype=float)
    error_s = predicted_step_s(service, steps) - measured_s
    positive = measured_s > 0
    relative = np.abs(error_s[positive] / measured_s[positive])
    out: dict[str, Any] = {"steps": len(steps), "rmse_ms": float(np.sqrt(np.mean(error_s**2)) * 1e3),
                           "mean_ms": float(np.mean(measured_s) * 1e3), "bias_ms": float(np.mean(error_s) * 1e3)}
    for name, q in (("mean", None), ("p50", 50), ("p90", 90), ("p99", 99)):
        value = (np.mean(relative) if q is None else np.percentile(relative, q)) if relative.size else None
        out[f"abs_rel_{name}"] = None if value is None else float(value)
    return out
