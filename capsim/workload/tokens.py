"""Token counts of LLM requests: how many prompt tokens each request brings and how many it generates.

`workload.tokens.input` and `.output` are each one distribution of positive integers (docs/model.md
"Tokens"):

- `fixed {value}`: always `value`;
- `lognormal {mean, cv, max}`: a lognormal with that mean and coefficient of variation, rounded to
  the nearest integer; a draw whose rounded value is below 1 or above `max` is **redrawn** (never
  clipped), so the counts follow the lognormal conditioned on [0.5, max + 0.5) and no mass piles up
  at `max`. With a `max` that cuts the tail the mean is below `mean` (`expected_mean` says by how
  much);
- `empirical {file, column}`: uniform draws, with replacement, from the integers in one column of a
  CSV or Parquet file (ShareGPT- or trace-derived length lists);
- `trace {column}`: the counts recorded in the `trace` arrival's own file, row by row in the order
  the rows are replayed (the Azure LLM traces: `ContextTokens`, `GeneratedTokens`), looping with the
  replay.

Draws come from the named streams "tokens.input" and "tokens.output" (capsim.rng): the two sides
are independent, and changing one side's spec leaves the other side's counts unchanged (common
random numbers across paired scenarios).

Multi-turn sessions (`workload.session`) draw their turns' counts from these specs too
(capsim.workload.sessions; docs/model.md "Multi-turn sessions").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from capsim.errors import CapsimInputError
from capsim.input_model import InputModel

if TYPE_CHECKING:
    from capsim.rng import RandomStreams
    from capsim.workload.base import ArrivalProcess
    from capsim.workload.trace import TraceArrival

INPUT_STREAM = "tokens.input"
OUTPUT_STREAM = "tokens.output"
MIN_ACCEPTANCE = 0.01
"""A `max` must keep at least 1% of the lognormal's draws (the rest are redrawn): below that the
spec almost surely says something else than meant, and redrawing would cost over 100 draws a count."""
MAX_DRAWS_PER_ROUND = 1 << 22


class _TokenSpec(InputModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedTokens(_TokenSpec):
    """Every request has exactly `value` tokens."""

    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1)

    def expected_mean(self) -> float:
        """The mean count."""
        return float(self.value)


class LognormalTokens(_TokenSpec):
    """Lognormal with mean `mean` and coefficient of variation `cv`, rounded to an integer; draws
    outside [1, `max`] are redrawn (module docstring)."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    cv: float = Field(gt=0)
    max: int | None = Field(default=None, ge=1, description="largest count; larger draws are redrawn")

    @model_validator(mode="after")
    def _reachable(self) -> LognormalTokens:
        if self.acceptance() < MIN_ACCEPTANCE:
            raise ValueError(f"max ({self.max}) keeps {self.acceptance():.2g} of lognormal(mean {self.mean:g}, cv "
                             f"{self.cv:g}) draws, under 1%: raise max or lower mean")  # fmt: skip
        return self

    def _mu_sigma(self) -> tuple[float, float]:
        sigma2 = math.log1p(self.cv * self.cv)
        return math.log(self.mean) - 0.5 * sigma2, math.sqrt(sigma2)

    def _cdf(self, x: float) -> float:
        mu, sigma = self._mu_sigma()
        return 0.5 * math.erfc(-(math.log(x) - mu) / (sigma * math.sqrt(2.0))) if x > 0 else 0.0

    def acceptance(self) -> float:
        """Probability that one continuous draw rounds into [1, max]."""
        upper = 1.0 if self.max is None else self._cdf(self.max + 0.5)
        return upper - self._cdf(0.5)

    def expected_mean(self) -> float:
        """Mean of the counts: the lognormal's mean conditioned on [0.5, max + 0.5) (rounding aside)."""
        mu, sigma = self._mu_sigma()

        def partial(x: float) -> float:  # E[X; X < x] for the lognormal
            if x <= 0:
                return 0.0
            return self.mean * 0.5 * math.erfc(-(math.log(x) - mu - sigma * sigma) / (sigma * math.sqrt(2.0)))

        upper = self.mean if self.max is None else partial(self.max + 0.5)
        return (upper - partial(0.5)) / self.acceptance()


class EmpiricalTokens(_TokenSpec):
    """Uniform draws with replacement from the integers in `column` of a CSV or Parquet `file`."""

    kind: Literal["empirical"] = "empirical"
    file: str = Field(min_length=1)
    column: str = Field(min_length=1)

    def values(self, field: str) -> np.ndarray:
        """The column's counts (int64), checked: integers >= 1, at least one row."""
        path = Path(self.file)
        return _positive_counts(_read_column(path, self.column, f"{field}.file"), self.file, self.column, field)

    def expected_mean(self) -> float:
        """The column's mean."""
        return float(self.values("workload.tokens").mean())


class TraceTokens(_TokenSpec):
    """The counts in `column` of the `trace` arrival's file, one per replayed row."""

    kind: Literal["trace"] = "trace"
    column: str | None = Field(default=None, description="default: ContextTokens (input), GeneratedTokens (output)")


TokenDistribution = Annotated[
    FixedTokens | LognormalTokens | EmpiricalTokens | TraceTokens, Field(discriminator="kind")
]
DEFAULT_TRACE_COLUMNS = {"input": "ContextTokens", "output": "GeneratedTokens"}


class TokensSpec(_TokenSpec):
    """`workload.tokens`: the prompt (`input`) and generated (`output`) token counts per request."""

    input: TokenDistribution
    output: TokenDistribution

    def resolve_paths(self, base_dir: Path) -> TokensSpec:
        """A copy whose relative `empirical` files are taken relative to `base_dir`."""
        update = {}
        for side in ("input", "output"):
            dist = getattr(self, side)
            if isinstance(dist, EmpiricalTokens) and not Path(dist.file).is_absolute():
                update[side] = dist.model_copy(update={"file": str(base_dir / dist.file)})
        return self.model_copy(update=update)

    def needs_trace(self) -> bool:
        """Whether a side reads the trace arrival's columns."""
        return isinstance(self.input, TraceTokens) or isinstance(self.output, TraceTokens)


def _read_column(path: Path, column: str, field: str) -> np.ndarray:
    """One column of a CSV (pandas) or Parquet (capsim.input_tables rules) file, with one-line errors."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        from capsim.input_tables import read_parquet_table

        table = read_parquet_table(path, {column: "number"})
        return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=float)
    if suffix not in (".csv", ".txt", ".gz"):
        raise CapsimInputError(f"expected a .csv or .parquet file, got '{path.suffix}'", source=str(path), field=field)
    if not path.is_file():
        raise CapsimInputError("file not found", source=str(path), field=field)
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=lambda name: name == column)
    except Exception as exc:  # pandas raises many kinds; the user needs one line
        raise CapsimInputError(f"cannot read: {exc}".splitlines()[0][:200], source=str(path), field=field) from None
    if column not in frame.columns:
        raise CapsimInputError(f"no column '{column}'", source=str(path), field=field.rsplit(".", 1)[0] + ".column")
    try:
        return pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        raise CapsimInputError(f"column '{column}' holds values that are not numbers", source=str(path),
                               field=field.rsplit(".", 1)[0] + ".column") from None  # fmt: skip


def _positive_counts(raw: np.ndarray, source: str, column: str, field: str) -> np.ndarray:
    """`raw` as int64 token counts, refusing empty columns, non-integers and counts below 1 (naming the row)."""
    if raw.size == 0:
        raise CapsimInputError(f"column '{column}' has no rows", source=source, field=field)
    bad = ~np.isfinite(raw) | (raw < 1) | (raw != np.floor(raw))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise CapsimInputError(f"row {row + 2}: column '{column}' must hold whole token counts >= 1, got {raw[row]!r}",
                               source=source, field=field)  # fmt: skip
    return raw.astype(np.int64)


def lognormal_counts(spec: LognormalTokens, n: int, rng: np.random.Generator) -> np.ndarray:
    """n rounded lognormal counts in [1, max], out-of-range draws redrawn (in order, so the result is
    a function of the stream alone: the generator's lognormal sequence does not depend on how it is
    chunked). At least `MIN_ACCEPTANCE` of the draws are kept, so this costs at most ~100 draws a count."""
    mu, sigma = spec._mu_sigma()
    upper = np.inf if spec.max is None else spec.max
    kept: list[np.ndarray] = []
    have = 0
    while have < n:
        # A little more than the expected need, so one round usually suffices; bounded memory per round.
        size = min(int((n - have) / spec.acceptance() * 1.05) + 16, MAX_DRAWS_PER_ROUND)
        draws = np.floor(rng.lognormal(mu, sigma, size=size) + 0.5)
        chunk = draws[(draws >= 1) & (draws <= upper)].astype(np.int64)
        kept.append(chunk)
        have += chunk.size
    return np.concatenate(kept)[:n] if kept else np.empty(0, dtype=np.int64)


def trace_token_column(arrival: TraceArrival, column: str, field: str) -> np.ndarray:
    """The counts in `column` of the trace arrival's file, in replay order (rows sorted by their
    timestamps, stably; the rows `skip_s` skips left out): entry i belongs to arrival i of one pass."""
    from capsim.workload.trace import load_trace_table, trace_offsets_in_file_order

    path = Path(arrival.path)
    if not path.is_file():
        raise CapsimInputError("trace file not found", source=arrival.path, field="workload.arrival.path")
    mtime_ns = path.stat().st_mtime_ns
    table = load_trace_table(str(path), mtime_ns)
    if column not in table.columns:
        raise CapsimInputError(f"no column '{column}' in the trace (columns: {', '.join(map(str, table.columns))})",
                               source=arrival.path, field=f"{field}.column")  # fmt: skip
    offsets = trace_offsets_in_file_order(str(path), mtime_ns, arrival.time_column, arrival.time_unit)
    order = np.argsort(offsets, kind="stable")
    kept = order[offsets[order] >= arrival.skip_s]
    import pandas as pd

    try:
        raw = pd.to_numeric(table[column], errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        raise CapsimInputError(f"column '{column}' holds values that are not numbers", source=arrival.path,
                               field=f"{field}.column") from None  # fmt: skip
    return _positive_counts(raw[kept], arrival.path, column, f"{field}.column")


def _draw(dist: object, side: str, n: int, rng: np.random.Generator, trace: TraceArrival | None) -> np.ndarray:
    return draw_counts(dist, f"workload.tokens.{side}", DEFAULT_TRACE_COLUMNS[side], n, rng, trace)


def draw_counts(dist: object, field: str, default_column: str, n: int, rng: np.random.Generator,
                trace: TraceArrival | None) -> np.ndarray:  # fmt: skip
    """n whole counts >= 1 from one of this module's distributions (also request sizes,
    capsim.workload.size); `field` names the spec in errors, `default_column` is a `trace` kind's
    column when it names none."""
    if isinstance(dist, FixedTokens):
        return np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, LognormalTokens):
        return lognormal_counts(dist, n, rng)
    if isinstance(dist, EmpiricalTokens):
        values = dist.values(field)
        return values[rng.integers(0, values.size, size=n)]
    if isinstance(dist, TraceTokens):
        if trace is None:
            raise CapsimInputError("kind trace reads the trace arrival's columns: it needs workload.arrival "
                                   "kind: trace", field=f"{field}.kind")  # fmt: skip
        values = trace_token_column(trace, dist.column or default_column, field)
        if n > values.size and not trace.loop:
            raise CapsimInputError(f"{n} requests but the trace holds {values.size} rows: the replay ends "
                                   "first unless workload.arrival.loop is true", field=field)  # fmt: skip
        return values[np.arange(n) % values.size]
    raise TypeError(f"not a token distribution: {dist!r}")  # pragma: no cover


def sample_token_counts(spec: TokensSpec, n: int, streams: RandomStreams,
                        arrival: ArrivalProcess | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(input_tokens, output_tokens) for the first `n` requests, each int64[n] of counts >= 1.

    Request i gets entry i of each. The sides draw from their own streams ("tokens.input",
    "tokens.output"), so each side's counts depend only on its own spec and the seed; a draw never
    depends on `n` beyond truncation (the first k of n draws are the k draws). `arrival` is the
    scenario's `workload.arrival`: `kind: trace` token counts read a `trace` arrival's file."""
    if n < 0:
        raise ValueError("n must be >= 0")
    from capsim.workload.trace import TraceArrival

    trace = arrival if isinstance(arrival, TraceArrival) else None
    return (_draw(spec.input, "input", n, streams.stream(INPUT_STREAM), trace),
            _draw(spec.output, "output", n, streams.stream(OUTPUT_STREAM), trace))  # fmt: skip
