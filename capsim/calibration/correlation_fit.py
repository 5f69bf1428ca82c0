"""White-box fit of `service.correlation`: how batch times of one executor run slow together.

From the batch log of each fit point, per executor (`instance`) in start order: each batch's time is
turned into a normal score within its own point and batch size (rank → Φ⁻¹((rank − ½) / n)), which
takes out the batch size and the point's level of speed (the profile's pooled marginal carries those)
and leaves the order in which fast and slow batches came. The scores' autocorrelation at lags
1..`MAX_LAG`, pooled over the sequences, is then fitted by the copula's own curve (see
capsim.servicetime.correlation):

- `latent` (the default): acf(k) = lag1 · decay^(k−1), least squares over lags 1..`MAX_LAG`: a slow
  speed state plus per-batch noise. The quiet CPU runs need it: the transformer's acf is 0.49, 0.44,
  0.39 at lags 1–3 and still 0.24 at lag 20, which no single AR(1) coefficient gives.
- `ar1`: decay = lag1 = the measured lag-1 autocorrelation (the plain Gaussian AR(1) in batch order).

Ranks rather than the times themselves make the estimate blind to the marginal's shape (heavy tails
would dominate a Pearson correlation of the times) and exactly what the copula needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from capsim.calibration.runfolder import LoadPoint
from capsim.calibration.whitebox import batches_inside

CorrelationForm = Literal["latent", "ar1"]
MAX_LAG = 20  # lags fitted: far enough to see the slow decay (0.2–0.3 at lag 20 on the CPU), near enough to be measured
MIN_PER_SIZE = 5  # a batch size seen fewer times in a sequence has no meaningful rank
MIN_PAIRS = 200  # fewer lag-1 pairs than this say too little about correlation (its noise is ~1/sqrt(pairs))
MIN_LAG1 = 0.02  # below this the fitted correlation is noise: the profile stays independent
_DECAYS = np.linspace(0.0, 0.999, 1000)


@dataclass(frozen=True)
class CorrelationEstimate:
    """The fitted correlation, the measured autocorrelation it was fitted to, and per point lag 1."""

    form: CorrelationForm
    lag1: float
    decay: float
    acf: list[float]  # measured, lags 1..MAX_LAG, pooled over the fit points
    pairs: int
    per_point: dict[str, dict[str, float]]

    def spec(self) -> dict[str, float]:
        """The `service.correlation` mapping."""
        return {"lag1": self.lag1, "decay": self.decay}

    def as_dict(self) -> dict[str, object]:
        """For provenance."""
        return {"form": self.form, **self.spec(), "acf_measured": self.acf, "pairs": self.pairs, "max_lag": MAX_LAG,
                "per_point": self.per_point}  # fmt: skip

    def describe(self) -> str:
        """One line for the console."""
        return f"lag-1 autocorrelation {self.lag1:.3f}, decay {self.decay:.3f} per batch ({self.form})"


def normal_score_sequences(point: LoadPoint) -> list[np.ndarray]:
    """Per executor of `point`: the normal scores of its batches' times in start order (NaN where the
    batch size was too rare in that sequence to rank)."""
    inside = batches_inside(point)
    if inside is None or inside.empty:
        return []
    sequences = []
    groups = inside.groupby("instance") if "instance" in inside.columns else [(0, inside)]
    for _, batches in groups:
        ordered = batches.sort_values("start_s")
        busy_s = (ordered["end_s"] - ordered["start_s"]).to_numpy(dtype=float)
        sizes = ordered["size"].to_numpy(dtype=np.int64)
        scores = np.full(busy_s.size, np.nan)
        for size in np.unique(sizes):
            mask = sizes == size
            n = int(mask.sum())
            if n < MIN_PER_SIZE:
                continue
            ranks = busy_s[mask].argsort(kind="stable").argsort(kind="stable")
            scores[mask] = normal_scores((ranks + 0.5) / n)
        sequences.append(scores)
    return sequences


_STANDARD_NORMAL = NormalDist()


def normal_scores(levels: np.ndarray) -> np.ndarray:
    """The standard normal quantile of each level in (0, 1) — scipy's `ndtri`, from the standard
    library so that calibration needs no scipy (a few microseconds a value; batch logs hold thousands)."""
    return np.array([_STANDARD_NORMAL.inv_cdf(float(level)) for level in levels], dtype=float)


def pooled_acf(sequences: list[np.ndarray], max_lag: int = MAX_LAG) -> tuple[np.ndarray, int]:
    """The autocorrelation at lags 1..`max_lag` pooled over `sequences` (pairs with a NaN skipped), and
    the number of lag-1 pairs."""
    acf = np.zeros(max_lag)
    pairs = 0
    for lag in range(1, max_lag + 1):
        products = squares_a = squares_b = 0.0
        count = 0
        for z in sequences:
            if z.size <= lag:
                continue
            a, b = z[:-lag], z[lag:]
            ok = np.isfinite(a) & np.isfinite(b)
            a, b = a[ok], b[ok]
            products += float(a @ b)
            squares_a += float(a @ a)
            squares_b += float(b @ b)
            count += int(ok.sum())
        acf[lag - 1] = products / np.sqrt(squares_a * squares_b) if squares_a > 0 and squares_b > 0 else 0.0
        if lag == 1:
            pairs = count
    return acf, pairs


def fit_acf(acf: np.ndarray, form: CorrelationForm) -> tuple[float, float]:
    """(lag1, decay) of the copula's curve lag1 · decay^(k−1) closest to `acf` (least squares), with
    0 ≤ lag1 ≤ decay < 1; `ar1` takes lag1 = decay = acf[0]."""
    if form == "ar1":
        value = float(np.clip(acf[0], 0.0, 0.99))
        return value, value
    lags = np.arange(acf.size)
    best = (np.inf, 0.0, 0.0)
    for decay in _DECAYS:
        curve = decay ** lags
        lag1 = float(np.clip((acf @ curve) / (curve @ curve), 0.0, decay))
        error = float(np.sum((acf - lag1 * curve) ** 2))
        if error < best[0]:
            best = (error, lag1, float(decay))
    return best[1], best[2]


def fit_correlation(points: list[LoadPoint], form: CorrelationForm = "latent") -> CorrelationEstimate | None:
    """The batch times' correlation from the fit points' batch logs; None when there are too few
    batches to tell or none was found (lag 1 below `MIN_LAG1`)."""
    sequences = []
    per_point = {}
    for point in points:
        own = normal_score_sequences(point)
        sequences += own
        own_acf, own_pairs = pooled_acf(own, max_lag=1)
        if own_pairs:
            per_point[point.label] = {"lag1_measured": round(float(own_acf[0]), 4), "pairs": own_pairs}
    acf, pairs = pooled_acf(sequences)
    if pairs < MIN_PAIRS:
        return None
    lag1, decay = fit_acf(acf, form)
    if lag1 < MIN_LAG1:
        return None
    return CorrelationEstimate(form, round(lag1, 4), round(max(decay, lag1), 4), [round(float(a), 4) for a in acf],
                               pairs, per_point)
