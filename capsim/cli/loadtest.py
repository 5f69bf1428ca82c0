"""`capsim loadtest`: drive a target with Locust on an open-loop schedule and write a run folder.

Also `capsim loadtest-worker`, the command to run on other machines to join a distributed run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from capsim.cli.app import app
from capsim.errors import CapsimInputError
from capsim.loadtest.choices import DEFAULT_SCRAPE_INTERVAL_S, ArrivalKind, Endpoint, Protocol

if TYPE_CHECKING:
    from capsim.workload.tokens import TokensSpec

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_STREAM_TIMEOUT_S = 300.0  # --protocol openai: a long answer streams for minutes under load


def _positive(value: float | None, flag: str, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise CapsimInputError(f"expected a number {'>=' if allow_zero else '>'} 0, got {value:g}", field=flag)


def _scenario_tokens(path: Path, flags_given: bool) -> TokensSpec:
    """`workload.tokens` of the scenario at `path` (its relative files resolved against its folder)."""
    from capsim.scenario.load import load_scenario

    if flags_given:
        raise CapsimInputError("give either --tokens-from or --input-tokens/--output-tokens", field="--tokens-from")
    if not path.is_file():
        raise CapsimInputError("file not found", source=str(path), field="--tokens-from")
    workload = load_scenario(path).workload
    if workload is None or workload.tokens is None:
        raise CapsimInputError("the scenario has no workload.tokens", source=str(path), field="--tokens-from")
    return workload.tokens


@app.command("loadtest")
def loadtest_command(
    target: Annotated[str, typer.Option(help="base URL of the server, e.g. http://127.0.0.1:8000 (generic: the "
                                        "full URL to POST to)")],
    out: Annotated[Path, typer.Option(help="run folder to create (must not exist or be empty)")],
    protocol: Annotated[Protocol, typer.Option(help="json: POST /predict/MODEL; kserve: KServe v2 / Triton "
                                               "infer; generic: POST --payload to --target; openai: streamed "
                                               "/v1/completions or /v1/chat/completions (vLLM, SGLang, "
                                               "TGI...)")] = "json",
    model: Annotated[str | None, typer.Option(help="model name (json, kserve, openai; default: the target's only "
                                            "model, from its repository index or GET /v1/models)")] = None,
    endpoint: Annotated[Endpoint, typer.Option(help="--protocol openai: completions or chat")] = "completions",
    input_tokens: Annotated[str | None, typer.Option(help="--protocol openai: prompt tokens per request: N, "
                                                     "lognormal:MEAN,CV[,MAX] or trace[:COLUMN] (default 512)")] = None,
    output_tokens: Annotated[str | None, typer.Option(help="--protocol openai: output tokens per request (max_tokens), "
                                                      "same forms (default 128)")] = None,
    tokens_from: Annotated[Path | None, typer.Option(help="--protocol openai: token counts from a scenario's "
                                                     "workload.tokens (instead of --input/--output-tokens)")] = None,
    force_length: Annotated[bool, typer.Option(help="--protocol openai: send ignore_eos and min_tokens so that the "
                                               "server generates exactly the output count (vLLM, SGLang)")] = True,
    slo_ttft_ms: Annotated[float | None, typer.Option(help="--protocol openai: TTFT objective for goodput")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="--protocol openai: TPOT objective for goodput")] = None,
    payload: Annotated[Path | None, typer.Option(help="request body file (default for json/kserve: an example "
                                                 "input built from the model's metadata)")] = None,
    arrival: Annotated[ArrivalKind, typer.Option(help="arrival process of the open loop")] = "poisson",
    rate: Annotated[float | None, typer.Option(help="mean rate in req/s (diurnal: the peak; trace: time "
                                               "compression factor)")] = None,
    duration: Annotated[float, typer.Option(help="seconds of load per step, warm-up included")] = 60.0,
    steps: Annotated[str | None, typer.Option(help="--arrival steps: START_S:RATE_RPS,... e.g. 0:10,30:50")] = None,
    trace: Annotated[Path | None, typer.Option(help="--arrival trace: CSV/Parquet file of request timestamps")] = None,
    base_rate: Annotated[float | None, typer.Option(help="--arrival diurnal: trough rate in req/s "
                                                    "(default rate/4)")] = None,
    period: Annotated[float | None, typer.Option(help="--arrival diurnal: period in s (default: --duration)")] = None,
    workers: Annotated[int, typer.Option(help="Locust worker processes on this machine (1: a single process)")] = 1,
    remote_workers: Annotated[int, typer.Option(help="workers that will join from other machines "
                                                "(see docs/loadtest.md)")] = 0,
    master_bind_host: Annotated[str, typer.Option(help="interface the master listens on for workers")] = "127.0.0.1",
    master_port: Annotated[int | None, typer.Option(help="master port (default: a free one)")] = None,
    max_in_flight: Annotated[int, typer.Option(help="cap on concurrent requests per worker; hits are "
                                               "reported and make the run invalid")] = 500,
    closed_loop: Annotated[bool, typer.Option("--closed-loop", help="classic Locust: --users users with "
                                              "--think-time-ms (no schedule)")] = False,
    users: Annotated[int, typer.Option(help="users for --closed-loop or --locustfile")] = 10,
    think_time_ms: Annotated[float, typer.Option(help="--closed-loop think time per user")] = 0.0,
    locustfile: Annotated[Path | None, typer.Option(help="your own locustfile, run with capsim's recording "
                                                    "attached")] = None,
    inference_name: Annotated[list[str] | None, typer.Option(
        help="a request name (Locust's name=) that is inference, besides the v2 infer route and /predict/MODEL; "
        "repeatable. Only inference requests are summarized and calibrated")] = None,
    sweep: Annotated[str | None, typer.Option(help="rates to run one after another (10,20,40) or 'auto' "
                                              "(double from --rate until saturation)")] = None,
    sweep_max_steps: Annotated[int, typer.Option(help="most steps of --sweep auto")] = 8,
    warmup: Annotated[float, typer.Option(help="seconds at the start of each step left out of the summary")] = 5.0,
    window: Annotated[float, typer.Option(help="measurement window in s for the stability check")] = 5.0,
    seed: Annotated[int, typer.Option(help="seed of the arrival schedule")] = 0,
    scrape_interval: Annotated[float, typer.Option(
        help="seconds between scrapes of the target's /metrics (and the reference server's batch log); each scrape "
        "is work on the target that delays the requests beside it")] = DEFAULT_SCRAPE_INTERVAL_S,
    request_timeout: Annotated[float | None, typer.Option(help="client timeout per request in s (default 10; "
                                                          "--protocol openai: 300, for the whole stream)")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print only the summary JSON on stdout")] = False,
) -> None:
    """Load test a server with Locust (open loop by default) and write a run folder."""
    from capsim.loadtest.runner import LoadTestError, run_loadtest
    from capsim.loadtest.settings import (
        DEFAULT_INPUT_TOKENS,
        DEFAULT_OUTPUT_TOKENS,
        LoadTestSettings,
        build_arrival,
        parse_sweep,
        parse_tokens,
    )
    from capsim.workload.tokens import TokensSpec

    for value, flag in ((duration, "--duration"), (window, "--window"), (scrape_interval, "--scrape-interval"),
                        (request_timeout, "--request-timeout"), (period, "--period"), (slo_ttft_ms, "--slo-ttft-ms"),
                        (slo_tpot_ms, "--slo-tpot-ms")):
        _positive(value, flag)
    for value, flag in ((warmup, "--warmup"), (think_time_ms, "--think-time-ms"), (base_rate, "--base-rate")):
        _positive(value, flag, allow_zero=True)
    for count, flag in ((workers, "--workers"), (remote_workers, "--remote-workers")):
        if count < 0:
            raise CapsimInputError(f"expected an integer >= 0, got {count}", field=flag)
    for count, flag in ((max_in_flight, "--max-in-flight"), (users, "--users"), (sweep_max_steps, "--sweep-max-steps")):
        if count < 1:
            raise CapsimInputError(f"expected an integer >= 1, got {count}", field=flag)
    if seed < 0:
        raise CapsimInputError(f"expected an integer >= 0, got {seed}", field="--seed")
    sweep_rates = parse_sweep(sweep)
    if isinstance(sweep_rates, list) and rate is None:
        rate = sweep_rates[0]  # each step replaces the rate; the first one stands for the run
    if sweep_rates == "auto" and rate is None:
        raise CapsimInputError("--sweep auto starts from --rate: give the first rate in req/s", field="--rate")
    needs_rate = arrival in ("poisson", "constant", "diurnal") and not (closed_loop or locustfile)
    if needs_rate and rate is None:
        raise CapsimInputError(f"--arrival {arrival} needs the rate in req/s", field="--rate")
    arrival_spec = build_arrival(arrival, rate if rate is not None else 1.0, duration, steps=steps,
                                 trace=str(trace) if trace else None, base_rate_rps=base_rate, period_s=period)
    llm = protocol == "openai"
    for given, flag in ((input_tokens, "--input-tokens"), (output_tokens, "--output-tokens"),
                        (tokens_from, "--tokens-from"), (slo_ttft_ms, "--slo-ttft-ms"), (slo_tpot_ms, "--slo-tpot-ms")):
        if given is not None and not llm:
            raise CapsimInputError("is for --protocol openai (streamed LLM requests)", field=flag)
    tokens = None
    if tokens_from is not None:
        tokens = _scenario_tokens(tokens_from, input_tokens is not None or output_tokens is not None)
    elif llm:
        tokens = TokensSpec(input=parse_tokens(input_tokens, "--input-tokens", DEFAULT_INPUT_TOKENS),
                            output=parse_tokens(output_tokens, "--output-tokens", DEFAULT_OUTPUT_TOKENS))
    if request_timeout is None:
        request_timeout = DEFAULT_STREAM_TIMEOUT_S if llm else DEFAULT_TIMEOUT_S
    settings = LoadTestSettings(
        target=target, protocol=protocol, model=model, payload_path=str(payload) if payload else None,
        arrival=arrival_spec, duration_s=duration, warmup_s=warmup, window_s=window, workers=workers,
        remote_workers=remote_workers, master_bind_host=master_bind_host, master_port=master_port,
        max_in_flight=max_in_flight, closed_loop=closed_loop, users=users, think_time_ms=think_time_ms,
        locustfile=str(locustfile) if locustfile else None, inference_names=list(inference_name or []),
        sweep=sweep_rates, sweep_max_steps=sweep_max_steps,
        seed=seed, scrape_interval_s=scrape_interval, request_timeout_s=request_timeout,
        endpoint=endpoint, tokens=tokens, force_length=force_length, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms,
    )
    echo = (lambda text: print(text, file=sys.stderr)) if json_output else print
    try:
        summary = run_loadtest(settings, out, echo=echo)
    except LoadTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if json_output:
        print(json.dumps(summary))
    else:
        print(f"run folder: {out}")
    if summary.get("partial"):
        raise typer.Exit(130)


@app.command("loadtest-finalize")
def loadtest_finalize_command(
    run_folder: Annotated[Path, typer.Argument(help="run folder of a `capsim loadtest` that died mid-run")],
) -> None:
    """Merge the parts of an unfinished run folder and write its summary (marked partial)."""
    from capsim.loadtest.runner import finalize_run

    summary = finalize_run(run_folder)
    print(f"run folder: {run_folder} ({summary['requests']['arrived'] if summary.get('requests') else 0} "
          "measured requests, partial)")


@app.command("loadtest-worker")
def loadtest_worker_command(
    master_host: Annotated[str, typer.Option(help="address of the machine running `capsim loadtest "
                                             "--remote-workers N`")],
    master_port: Annotated[int, typer.Option(help="its --master-port")] = 5557,
    locustfile: Annotated[Path | None, typer.Option(help="the same --locustfile as the master, if any")] = None,
    closed_loop: Annotated[bool, typer.Option("--closed-loop", help="the master runs --closed-loop")] = False,
) -> None:
    """Join a distributed `capsim loadtest` from another machine as one Locust worker process."""
    import capsim.loadtest as pkg

    here = Path(pkg.__file__).parent
    if locustfile is not None:
        files = f"{here / 'locust_plugin.py'},{locustfile.resolve()}"
    else:
        files = str(here / ("locustfile_closedloop.py" if closed_loop else "locustfile_openloop.py"))
    args = [sys.executable, "-m", "locust", "-f", files, "--worker", "--master-host", master_host,
            "--master-port", str(master_port)]
    os.execv(sys.executable, args)
