"""What a load test is asked to do, validated once, with errors that name the offending flag."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ValidationError

from capsim.errors import CapsimInputError
from capsim.input_model import InputModel
from capsim.loadtest.choices import DEFAULT_SCRAPE_INTERVAL_S, Endpoint, Protocol
from capsim.workload import (
    ArrivalSpec,
    ConstantArrival,
    DiurnalArrival,
    PoissonArrival,
    RateStep,
    StepsArrival,
    TraceArrival,
)
from capsim.workload.tokens import FixedTokens, LognormalTokens, TokenDistribution, TokensSpec, TraceTokens

SWEEP_KINDS = ("poisson", "constant")


class LoadTestSettings(InputModel):
    """All settings of one `capsim loadtest` invocation (recorded verbatim in manifest.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    protocol: Protocol = "json"
    model: str | None = None
    payload_path: str | None = None
    arrival: ArrivalSpec = Field(default_factory=lambda: PoissonArrival(rate_rps=10.0))
    duration_s: float = Field(default=60.0, gt=0)
    warmup_s: float = Field(default=5.0, ge=0)
    window_s: float = Field(default=5.0, gt=0)
    workers: int = Field(default=1, ge=0)
    remote_workers: int = Field(default=0, ge=0)
    master_bind_host: str = "127.0.0.1"
    master_port: int | None = None
    max_in_flight: int = Field(default=500, ge=1)
    closed_loop: bool = False
    users: int = Field(default=10, ge=1)
    think_time_ms: float = Field(default=0.0, ge=0)
    locustfile: str | None = None
    # Request names (Locust's `name`) that are inference besides the v2 infer route and /predict/MODEL
    # (records.request_kind): calibration fits only inference requests.
    inference_names: list[str] = Field(default_factory=list)
    sweep: list[float] | Literal["auto"] | None = None
    sweep_max_steps: int = Field(default=8, ge=1)
    seed: int = Field(default=0, ge=0)
    # Every scrape is work on the target (its /metrics, and the reference server's batch-log page)
    # that delays the requests beside it: on the 2-vCPU CPU box a 1 s scrape raised the unbatched
    # mlp's p99 by 38% (docs/loadtest.md, "Telemetry"). 10 s keeps that under the noise.
    scrape_interval_s: float = Field(default=DEFAULT_SCRAPE_INTERVAL_S, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    start_lead_s: float = Field(default=1.0, ge=0)
    flush_interval_s: float = Field(default=1.0, gt=0)
    # --protocol openai: which route, the token counts of each request (the simulator's
    # `workload.tokens`), whether to force the output length (ignore_eos + min_tokens), and the
    # goodput objectives.
    endpoint: Endpoint = "completions"
    tokens: TokensSpec | None = None
    force_length: bool = True
    slo_ttft_ms: float | None = Field(default=None, gt=0)
    slo_tpot_ms: float | None = Field(default=None, gt=0)

    @property
    def mode(self) -> Literal["open", "closed", "custom"]:
        """open (capsim's schedule), closed (N users with think time) or custom (a team's locustfile)."""
        if self.locustfile:
            return "custom"
        return "closed" if self.closed_loop else "open"

    @property
    def total_workers(self) -> int:
        """Worker processes taking part (this machine's plus remote ones); 1 when running in-process."""
        return max(self.workers + self.remote_workers, 1)


def parse_steps(text: str) -> list[RateStep]:
    """`"0:10,30:50"` → steps starting at 0 s with 10 req/s and at 30 s with 50 req/s."""
    steps = []
    for item in text.split(","):
        start, sep, rate = item.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            steps.append(RateStep(start_s=float(start), rate_rps=float(rate)))
        except (ValueError, ValidationError):
            raise CapsimInputError(
                f"expected START_S:RATE_RPS pairs separated by commas (e.g. 0:10,30:50), got {item!r}",
                field="--steps",
            ) from None
    return steps


DEFAULT_INPUT_TOKENS = 512
DEFAULT_OUTPUT_TOKENS = 128


def parse_tokens(text: str | None, flag: str, default: int) -> TokenDistribution:
    """`--input-tokens` / `--output-tokens`: `N` (every request), `lognormal:MEAN,CV[,MAX]` or
    `trace[:COLUMN]` (the `--arrival trace` file's column; default ContextTokens / GeneratedTokens)."""
    if text is None:
        return FixedTokens(value=default)
    kind, _, rest = text.strip().partition(":")
    try:
        if kind.isdigit():
            return FixedTokens(value=int(kind))
        if kind == "lognormal":
            numbers = [float(x) for x in rest.split(",")]
            if len(numbers) not in (2, 3) or (len(numbers) == 3 and numbers[2] != int(numbers[2])):
                raise ValueError
            return LognormalTokens(mean=numbers[0], cv=numbers[1], max=int(numbers[2]) if len(numbers) == 3 else None)
        if kind == "trace":
            return TraceTokens(column=rest or None)
    except ValidationError as exc:
        raise CapsimInputError(f"{exc.errors()[0]['msg']} (got {text!r})", field=flag) from None
    except ValueError:
        pass
    raise CapsimInputError(f"expected a count like 512, lognormal:MEAN,CV[,MAX] or trace[:COLUMN]; got {text!r}",
                           field=flag)


def parse_sweep(text: str | None) -> list[float] | Literal["auto"] | None:
    """`"auto"` or a comma-separated list of positive rates in req/s."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CapsimInputError(f"expected 'auto' or rates like 10,20,40, got {text!r}", field="--sweep") from None
    if not rates or any(r <= 0 for r in rates):
        raise CapsimInputError(f"expected 'auto' or positive rates like 10,20,40, got {text!r}", field="--sweep")
    return rates


def build_arrival(
    kind: str,
    rate_rps: float | None,
    duration_s: float,
    steps: str | None = None,
    trace: str | None = None,
    base_rate_rps: float | None = None,
    period_s: float | None = None,
) -> ArrivalSpec:
    """The arrival process named by `--arrival` and its flags (the same models the simulator uses)."""
    def need_rate() -> float:
        if rate_rps is None or rate_rps <= 0:
            raise CapsimInputError(f"--arrival {kind} needs a positive request rate in req/s", field="--rate")
        return rate_rps

    try:
        if kind == "poisson":
            return PoissonArrival(rate_rps=need_rate())
        if kind == "constant":
            return ConstantArrival(rate_rps=need_rate())
        if kind == "steps":
            if not steps:
                raise CapsimInputError("--arrival steps needs --steps START_S:RATE_RPS,...", field="--steps")
            return StepsArrival(steps=parse_steps(steps))
        if kind == "diurnal":
            peak = need_rate()
            period = period_s or duration_s
            # Start at the trough so that one period is a whole day shape: trough, peak at mid-period.
            start_h = (14.0 - period / 7200.0) % 24.0
            return DiurnalArrival(
                base_rps=base_rate_rps if base_rate_rps is not None else peak / 4.0,
                peak_rps=peak,
                peak_time_h=14.0,
                start_time_h=start_h,
                period_s=period,
            )
        if kind == "trace":
            if not trace:
                raise CapsimInputError("--arrival trace needs --trace FILE (CSV or Parquet)", field="--trace")
            if not Path(trace).is_file():
                raise CapsimInputError("file not found", source=trace, field="--trace")
            return TraceArrival(path=str(Path(trace).resolve()), rate_scale=rate_rps or 1.0)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CapsimInputError(f"{first['msg']}", field=f"--arrival {kind}") from None
    raise CapsimInputError(f"expected one of poisson, constant, steps, diurnal, trace; got {kind!r}", field="--arrival")


def validate_settings(settings: LoadTestSettings) -> None:
    """Cross-flag checks that pydantic cannot express; raises CapsimInputError naming the flag."""
    parts = urlsplit(settings.target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CapsimInputError(f"expected an http(s) URL like http://127.0.0.1:8000, got {settings.target!r}",
                               field="--target")
    if settings.protocol == "generic" and not settings.payload_path and not settings.locustfile:
        raise CapsimInputError("--protocol generic needs a request body file", field="--payload")
    if settings.payload_path and not Path(settings.payload_path).is_file():
        raise CapsimInputError("file not found", source=settings.payload_path, field="--payload")
    if settings.locustfile and not Path(settings.locustfile).is_file():
        raise CapsimInputError("file not found", source=settings.locustfile, field="--locustfile")
    if settings.locustfile and settings.closed_loop:
        raise CapsimInputError("use either --locustfile or --closed-loop, not both", field="--closed-loop")
    if settings.warmup_s >= settings.duration_s:
        raise CapsimInputError(
            f"warm-up ({settings.warmup_s:g} s) must be shorter than the run ({settings.duration_s:g} s)",
            field="--warmup",
        )
    if settings.sweep is not None:
        if settings.mode != "open":
            raise CapsimInputError("--sweep needs the open loop (no --closed-loop or --locustfile)", field="--sweep")
        if settings.arrival.kind not in SWEEP_KINDS:
            raise CapsimInputError(f"--sweep needs --arrival poisson or constant, not {settings.arrival.kind}",
                                   field="--sweep")
    if settings.protocol == "openai":
        if settings.mode != "open":
            raise CapsimInputError("--protocol openai streams on capsim's open loop (no --closed-loop or "
                                   "--locustfile)", field="--protocol")
        if settings.tokens is not None and settings.tokens.needs_trace() and settings.arrival.kind != "trace":
            raise CapsimInputError("token counts of kind trace are the trace's columns: they need --arrival trace",
                                   field="--input-tokens")
    elif settings.tokens is not None or settings.slo_ttft_ms is not None or settings.slo_tpot_ms is not None:
        raise CapsimInputError("token counts and TTFT/TPOT objectives are for --protocol openai",
                               field="--protocol")
    if settings.workers == 0 and settings.remote_workers == 0:
        raise CapsimInputError("need at least one worker (local or remote)", field="--workers")

