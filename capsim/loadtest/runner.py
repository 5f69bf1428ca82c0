"""`capsim loadtest` as a library call: plan the steps, run Locust for each, write the run folder.

The parent process draws the open-loop schedule from the simulator's arrival process (named random
stream `loadtest/arrivals`), writes it with the run configuration into the run folder, starts Locust
(see process.py) and scrapes telemetry while it runs. Locust's processes send their rows back as
parquet parts; at the end (or on Ctrl-C / SIGTERM) the parts are merged into `requests.parquet`,
`telemetry.parquet` and `batches.parquet`, and `summary.json` is written — marked partial when the
run did not finish.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import capsim.loadtest as loadtest_pkg
from capsim.errors import CapsimInputError
from capsim.loadtest.analysis import lateness_remedy, read_worker_status, summarize_step
from capsim.loadtest.manifest import build_manifest
from capsim.loadtest.parts import read_request_parts, read_tables, write_json_atomic, write_table_atomic
from capsim.loadtest.process import LocustLaunch
from capsim.loadtest.records import LLM_COLUMNS, REQUEST_SCHEMA
from capsim.loadtest.server_logs import BATCH_LOG, STEP_LOG, serves_log
from capsim.loadtest.settings import LoadTestSettings, validate_settings
from capsim.loadtest.sweep import SweepPlanner, saturation_reason
from capsim.loadtest.target import (
    RequestSpec,
    base_url,
    build_request,
    check_reachable,
    default_model,
    is_local,
    openai_request_spec,
    server_config,
)
from capsim.loadtest.telemetry import TELEMETRY_SCHEMA, TelemetryCollector
from capsim.rng import RandomStreams

ARRIVAL_STREAM = "loadtest/arrivals"
# --protocol openai: each arrival's token counts come from the simulator's own streams
# ("tokens.input", "tokens.output": capsim.workload.tokens.sample_token_counts) under --seed.
HIST_INTERVAL_S = 5.0
EXTRA_WAIT_S = 30.0  # beyond the run's own length before a step is declared hung
DAMAGED_DIR = "damaged-parts"  # where a merge moves the parts it could not read (run folder relative)


def _note_machine_load(summary: dict[str, Any], load_before: float, workers: int) -> None:
    """Record this machine's load average around the step; when the generator's lateness made the
    step invalid, say how to get a valid one (`analysis.lateness_remedy`)."""
    cpus = os.cpu_count() or 1
    load = max(load_before, os.getloadavg()[0])
    summary["generator"]["machine"] = {"cpus": cpus, "load_average_max": round(load, 2)}
    lagged = any(r.startswith("generator lag") for r in summary["invalid_reasons"])
    summary["remedy"] = (lateness_remedy(summary["generator"]["cpu_percent_max"], workers, load, cpus)
                         if lagged else None)


class LoadTestError(Exception):
    """The load generator itself failed (Locust did not start, or crashed without data)."""


@dataclass
class StepOutcome:
    """One step's summary and whether it was cut short."""

    summary: dict[str, Any]
    interrupted: bool


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _prepare_out(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CapsimInputError("the run folder exists and is not empty; choose a new one", source=str(out_dir),
                               field="--out")
    out_dir.mkdir(parents=True, exist_ok=True)


def _step_arrival(settings: LoadTestSettings, rate_rps: float | None) -> Any:
    if rate_rps is None:
        return settings.arrival
    return settings.arrival.model_copy(update={"rate_rps": rate_rps})


class LoadTestRun:
    """One invocation: its folder, its telemetry and its steps."""

    def __init__(self, settings: LoadTestSettings, out_dir: Path, echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.out_dir = out_dir
        self.parts_dir = out_dir / "parts"
        self.echo = echo
        self.request: RequestSpec | None = None
        self.telemetry: TelemetryCollector | None = None
        self.batches = False
        self.steps = False  # the target serves the reference LLM server's step log (-> steps.parquet)
        # Parts that could not be read (path -> what is wrong): never merged, never deleted.
        self.damaged: dict[Path, str] = {}

    # ------------------------------------------------------------------ one step

    def _config(self, step_dir: Path, schedule_path: Path | None, step: int, rate_rps: float | None,
                tokens_path: Path | None = None) -> dict[str, Any]:  # fmt: skip
        s = self.settings
        return {
            "mode": s.mode,
            "step": step,
            "rate_rps": rate_rps,
            "parts_dir": str(step_dir),
            "schedule_path": str(schedule_path) if schedule_path else None,
            "tokens_path": str(tokens_path) if tokens_path else None,
            "expected_workers": s.total_workers,
            "request": self.request.model_dump() if self.request else None,
            "max_in_flight": s.max_in_flight,
            "request_timeout_s": s.request_timeout_s,
            "warmup_s": s.warmup_s,
            "duration_s": s.duration_s,
            "start_lead_s": s.start_lead_s if s.mode == "open" else 0.0,
            "flush_interval_s": s.flush_interval_s,
            "hist_interval_s": HIST_INTERVAL_S,
            "think_time_s": s.think_time_ms / 1000.0,
            # capsim's own request is inference by definition (whatever its path, e.g. --protocol generic)
            "inference_names": [*s.inference_names, *([self.request.name] if self.request else [])],
        }

    def _launch(self, step: int, config_path: Path) -> LocustLaunch:
        s = self.settings
        here = Path(loadtest_pkg.__file__).parent
        if s.mode == "open":
            files = [here / "locustfile_openloop.py"]
            users, run_time_s = s.total_workers, s.start_lead_s + s.duration_s + s.request_timeout_s + 5.0
        elif s.mode == "closed":
            files = [here / "locustfile_closedloop.py"]
            users, run_time_s = s.users, s.duration_s
        else:
            assert s.locustfile is not None
            files = [here / "locust_plugin.py", Path(s.locustfile).resolve()]
            users, run_time_s = s.users, s.duration_s
        return LocustLaunch(
            locustfiles=files, host=self._host(), config_path=config_path, log_dir=self.out_dir / "logs",
            users=users, spawn_rate=max(users, 1), run_time_s=run_time_s, local_workers=s.workers,
            remote_workers=s.remote_workers, master_bind_host=s.master_bind_host, master_port=s.master_port,
            label=f"step-{step:02d}", max_in_flight=s.max_in_flight,
        )

    def _host(self) -> str:
        return base_url(self.settings.target)

    def run_step(self, step: int, rate_rps: float | None) -> StepOutcome:
        """Run one step (one Locust run) and summarize it."""
        s = self.settings
        step_dir = self.parts_dir / f"step-{step:02d}"
        step_dir.mkdir(parents=True, exist_ok=True)
        arrival = _step_arrival(s, rate_rps)
        schedule = None
        schedule_path = tokens_path = None
        if s.mode == "open":
            schedule = arrival.times(RandomStreams(s.seed).stream(ARRIVAL_STREAM), s.duration_s)
            schedule_path = step_dir / "schedule.npy"
            np.save(schedule_path, schedule)
            if s.protocol == "openai":
                tokens_path = step_dir / "tokens.npy"
                np.save(tokens_path, draw_request_tokens(s, arrival, schedule.size))
        config_path = step_dir / "config.json"
        write_json_atomic(config_path, self._config(step_dir, schedule_path, step, rate_rps, tokens_path))
        launch = self._launch(step, config_path)
        if s.mode == "open":
            label = f"{rate_rps:g} req/s" if rate_rps else f"{s.arrival.kind} arrivals"
        else:
            label = f"{s.users} {s.mode}-loop users"
        self.echo(f"step {step}: {label} for {s.duration_s:g} s ({s.total_workers} worker process(es))")
        interrupted = False
        load_before = os.getloadavg()[0]
        # Locust's start-up and the master's wait for workers (up to 60 s for remote ones) come first.
        startup_s = 75.0 if s.remote_workers else 15.0
        limit_s = startup_s + s.start_lead_s + s.duration_s + s.request_timeout_s + EXTRA_WAIT_S
        try:
            launch.start()
            code = launch.wait(limit_s)
            if code is None:
                self.echo(f"step {step}: Locust did not finish within {limit_s:g} s; stopping it")
                launch.stop()
                interrupted = True
            else:
                launch.reap()
                if code < 0:  # killed by a signal (SIGKILL: -9): keep what its parts hold, say it is partial
                    self.echo(f"step {step}: the Locust master was killed (signal {-code}); keeping what was "
                              "measured until then")
                    interrupted = True
        except KeyboardInterrupt:
            self.echo("interrupted: stopping Locust and keeping what was measured")
            launch.stop()
            interrupted = True
        summary = self._summarize_step(step, step_dir, arrival, schedule, rate_rps, interrupted, launch)
        interrupted = interrupted or summary["partial"]  # a worker never sent its last rows
        _note_machine_load(summary, load_before, s.total_workers)
        return StepOutcome(summary, interrupted)

    def _summarize_step(
        self, step: int, step_dir: Path, arrival: Any, schedule: np.ndarray | None, rate_rps: float | None,
        interrupted: bool, launch: LocustLaunch | None,
    ) -> dict[str, Any]:
        s = self.settings
        table = read_request_parts(step_dir, self.damaged)
        statuses = read_worker_status(step_dir)
        start_s = _coordinator_start_s(step_dir / "coordinator.json")
        if start_s is None and table.num_rows:
            start_s = float(pc.min(table.column("intended_s")).as_py())
        elif start_s is None:
            if not interrupted and launch is not None:
                log = launch.log_dir / f"{launch.label}-master.log"
                lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.exists() else []
                raise LoadTestError(f"Locust recorded nothing (log: {log}){': ' + lines[-1] if lines else ''}")
            start_s = time.time()
        partial = interrupted or (bool(statuses) and not all(x.get("final") for x in statuses))
        summary = summarize_step(
            table, statuses, start_s=start_s, warmup_s=s.warmup_s, duration_s=s.duration_s, window_s=s.window_s,
            offered_rps=arrival.mean_rate_rps(s.duration_s), scheduled=schedule, mode=s.mode, partial=partial,
            slo_ttft_ms=s.slo_ttft_ms, slo_tpot_ms=s.slo_tpot_ms,
        )
        return {"step": step, "rate_rps": rate_rps, "start_s": start_s, **summary}

    # ------------------------------------------------------------------ whole run

    def _merge(self) -> None:
        """Merge the parts into the run folder's files; the parts go once merged."""
        tables = []
        for step_dir in sorted(self.parts_dir.glob("step-*")):
            table = read_request_parts(step_dir, self.damaged)
            step = int(step_dir.name.split("-")[1])
            tables.append(table.append_column("step", pa.array(np.full(table.num_rows, step, np.int32))))
        schema = REQUEST_SCHEMA.append(pa.field("step", pa.int32()))
        requests = pa.concat_tables(tables) if tables else schema.empty_table()
        if requests.num_rows:
            requests = requests.sort_by([("step", "ascending"), ("intended_s", "ascending")])
        if self.settings.protocol != "openai":
            # The streamed-LLM columns are null here: leave them out, so that a run folder says what
            # it measured by its columns (LLM calibration recognizes LLM runs by them).
            requests = requests.drop_columns([c for c in LLM_COLUMNS if c in requests.column_names])
        write_table_atomic(self.out_dir / "requests.parquet", requests)
        telemetry = read_tables(list(self.parts_dir.glob("telemetry-*.parquet")), TELEMETRY_SCHEMA, self.damaged)
        assert telemetry is not None
        write_table_atomic(self.out_dir / "telemetry.parquet", telemetry.sort_by("time_s"))
        for log, wanted in ((BATCH_LOG, self.batches), (STEP_LOG, self.steps)):
            parts = list(self.parts_dir.glob(f"{log.name}-*.parquet"))
            if wanted or parts:
                records = read_tables(parts, log.schema, self.damaged)
                assert records is not None
                write_table_atomic(self.out_dir / f"{log.name}.parquet", records.sort_by(log.id_field))
        # Verify before deleting: the merged file must read back with every row. Unreadable parts are
        # moved aside first, under the same names: what was measured is never deleted.
        if pq.read_metadata(self.out_dir / "requests.parquet").num_rows == requests.num_rows:
            for path, problem in sorted(self.damaged.items()):
                kept = self.out_dir / DAMAGED_DIR / path.relative_to(self.parts_dir)
                kept.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, kept)
                self.echo(f"warning: {path.relative_to(self.out_dir)}: {problem}; left out of the merge and "
                          f"kept as {kept.relative_to(self.out_dir)}")
            shutil.rmtree(self.parts_dir, ignore_errors=True)

    def _summary(
        self, steps: list[dict[str, Any]], partial: bool, stop_reason: str | None, status: str = "complete"
    ) -> dict[str, Any]:
        s = self.settings
        head: dict[str, Any] = {
            "target": s.target, "protocol": s.protocol, "model": s.model, "seed": s.seed,
            "arrival": s.arrival.model_dump(), "duration_s": s.duration_s, "warmup_s": s.warmup_s,
            "partial": partial,
        }
        if not steps:
            return {**head, "status": status, "steps": [], "valid": False, "invalid_reasons": ["no step completed"]}
        if s.sweep is None:
            body = dict(steps[0])
            body["partial"] = partial
        else:
            good = [x for x in steps if not x.get("saturated") and x["valid"]]
            chosen = max(good, key=lambda x: x["rate_rps"]) if good else steps[0]
            body = {**chosen, "summary_step": chosen["step"], "partial": partial, "steps": steps,
                    "curve": [{"rate_rps": x["rate_rps"], "achieved_rps": x["achieved_rps"],
                               "throughput_rps": x["throughput_rps"], "p50_ms": x["latency_ms"]["p50"],
                               "p99_ms": x["latency_ms"]["p99"], "valid": x["valid"], "stable": x["windows"]["stable"],
                               "saturated": x.get("saturated", False), **_llm_curve_point(x)} for x in steps],
                    "sweep": {"rates": s.sweep, "stop_reason": stop_reason,
                              "max_unsaturated_rps": max((x["rate_rps"] for x in good), default=None)}}
        if s.sweep is None:
            body.pop("step", None)
        telemetry = self.telemetry.describe() if self.telemetry else None
        # Rows of unreadable parts are not in these figures; the files are kept where the merge puts them.
        damaged = {f"{DAMAGED_DIR}/{path.relative_to(self.parts_dir)}": problem
                   for path, problem in sorted(self.damaged.items())}  # fmt: skip
        return {**head, **body, "partial": partial, "status": status, "telemetry": telemetry,
                **({"damaged_parts": damaged} if damaged else {})}

    def run(self) -> dict[str, Any]:
        """Run every step and write the folder; returns the summary (also in summary.json)."""
        s = self.settings
        validate_settings(s)
        check_reachable(s.target)
        if s.mode != "custom" and s.protocol in ("json", "kserve", "openai") and not s.model:
            s = self.settings = s.model_copy(update={"model": default_model(s.target, s.protocol)})
            self.echo(f"model: {s.model} (the only model the target serves)")
        if s.protocol == "openai":
            assert s.model is not None
            self.request = openai_request_spec(s.endpoint, s.model, s.force_length)
        elif s.mode != "custom":
            self.request = build_request(s.target, s.protocol, s.model, s.payload_path)
        self.batches = serves_log(base_url(s.target), BATCH_LOG)
        self.steps = s.protocol == "openai" and serves_log(base_url(s.target), STEP_LOG)
        _prepare_out(self.out_dir)
        self.parts_dir.mkdir()
        start_s = time.time()
        target_info = {"url": s.target, "protocol": s.protocol, "model": s.model, "local": is_local(s.target),
                       "reference_server": self.batches, "reference_llm_server": self.steps,
                       "request": self.request.model_dump(exclude={"body"}) if self.request else None,
                       "request_body_bytes": len(self.request.body or "") if self.request else None,
                       # The reference server's batching (or LLM scheduler) settings: what calibration
                       # replays the run with.
                       "server_config": server_config(s.target) if self.batches or s.protocol == "openai"
                       else None}
        manifest = build_manifest(s.model_dump(mode="json"), target_info, start_s)
        write_json_atomic(self.out_dir / "manifest.json", manifest)
        self.telemetry = TelemetryCollector(s.target, self.parts_dir, s.scrape_interval_s, nvml=is_local(s.target),
                                            batches=self.batches, steps=self.steps)
        self.telemetry.start()
        # A placeholder until the first step ends: a folder whose capsim died is never mistaken for a
        # finished run (`capsim loadtest-finalize DIR` summarizes what it holds).
        write_json_atomic(self.out_dir / "summary.json", self._summary([], True, None, status="running"))
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        steps: list[dict[str, Any]] = []
        partial = False
        planner = SweepPlanner(s.sweep, float(getattr(s.arrival, "rate_rps", 0.0)), s.sweep_max_steps) \
            if s.sweep is not None else None
        try:
            while True:
                rate = planner.next_rate(steps) if planner else (None if steps else 0.0)
                if rate is None:
                    break
                outcome = self.run_step(len(steps), rate if planner else None)
                if planner:
                    baseline = steps[0]["latency_ms"]["p99"] if steps else None
                    reason = saturation_reason(outcome.summary, baseline)
                    outcome.summary["saturated"] = reason is not None
                    outcome.summary["saturation_reason"] = reason
                steps.append(outcome.summary)
                write_json_atomic(self.out_dir / "summary.json", self._summary(steps, True, None, status="running"))
                self._report(outcome.summary)
                if outcome.interrupted:
                    partial = True
                    break
                if not planner:
                    break
        except KeyboardInterrupt:
            partial = True
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.telemetry.stop()
            self._merge()
            summary = self._summary(steps, partial, planner.stop_reason if planner else None,
                                    status="interrupted" if partial else "complete")
            write_json_atomic(self.out_dir / "summary.json", summary)
        return summary

    def _report(self, step: dict[str, Any]) -> None:
        lat = step["latency_ms"]
        unc = step["latency_uncorrected_ms"]
        lag = step["send_lag_ms"]
        flag = "valid" if step["valid"] else "INVALID: " + "; ".join(step["invalid_reasons"])
        if step.get("warnings"):
            flag += " (warning: " + "; ".join(step["warnings"]) + ")"
        self.echo(
            f"  sent {step['achieved_rps']} req/s, completed {step['throughput_rps']} req/s; "
            f"p50 {lat['p50']} ms, p99 {lat['p99']} ms (uncorrected p99 {unc['p99']} ms); "
            f"send lag p99 {lag['p99']} ms, {lag['late_share']:.2%} late; "
            f"{'stable' if step['windows']['stable'] else 'not stable'}; {flag}"
        )
        if step.get("remedy"):
            self.echo(f"  for a valid run: {step['remedy']}")
        if step.get("ttft_ms"):
            ttft, tpot, tokens = step["ttft_ms"], step["tpot_ms"], step["tokens"]
            def ms(value: float | None) -> str:
                return "-" if value is None else f"{value:.4g}"

            goodput = step["slo"]["goodput_rps"]
            self.echo(f"  TTFT p50 {ms(ttft['p50'])} ms, p99 {ms(ttft['p99'])} ms; TPOT p50 {ms(tpot['p50'])} ms, "
                      f"p99 {ms(tpot['p99'])} ms; {tokens['output_per_s']:.4g} output tokens/s"
                      + (f"; goodput {goodput:.4g} req/s" if goodput is not None else ""))
        by_name = step.get("by_name") or {}
        if len(by_name) > 1 or any(v["kind"] != "inference" for v in by_name.values()):
            for name, figures in by_name.items():
                self.echo(f"    {name} ({figures['kind']}): {figures['arrived']} requests, {figures['completed']} "
                          f"completed, p50 {figures['latency_ms']['p50']} ms, p99 {figures['latency_ms']['p99']} ms")


def _llm_curve_point(step: dict[str, Any]) -> dict[str, Any]:
    """A streamed-LLM step's point on the sweep's curve: TTFT and TPOT tails, output tokens/s."""
    if not step.get("ttft_ms"):
        return {}
    ttft, tpot = step["ttft_ms"], step["tpot_ms"]
    return {"ttft_p50_ms": ttft["p50"], "ttft_p99_ms": ttft["p99"], "tpot_p50_ms": tpot["p50"],
            "tpot_p99_ms": tpot["p99"], "output_tokens_per_s": step["tokens"]["output_per_s"],
            "goodput_rps": step["slo"]["goodput_rps"]}


def draw_request_tokens(settings: LoadTestSettings, arrival: Any, n: int) -> np.ndarray:
    """(input, output) token counts of the schedule's `n` arrivals, int32[n, 2]: the simulator's
    `sample_token_counts` on the same seed, so a load test and a simulation of the same workload
    send the same counts (`--input-tokens` / `--output-tokens`, default 512 / 128)."""
    from capsim.loadtest.settings import DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS
    from capsim.workload.tokens import FixedTokens, TokensSpec, sample_token_counts

    spec = settings.tokens or TokensSpec(input=FixedTokens(value=DEFAULT_INPUT_TOKENS),
                                         output=FixedTokens(value=DEFAULT_OUTPUT_TOKENS))
    inputs, outputs = sample_token_counts(spec, n, RandomStreams(settings.seed), arrival)
    return np.stack([inputs, outputs], axis=1).astype(np.int32)


def run_loadtest(settings: LoadTestSettings, out_dir: Path, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a load test described by `settings` into the run folder `out_dir`; returns the summary."""
    return LoadTestRun(settings, out_dir, echo).run()


def _coordinator_start_s(path: Path) -> float | None:
    """When the step's schedule began (the coordinator's record), or None when it is absent or damaged
    (the caller then takes the first intended send)."""
    try:
        start_s = json.loads(path.read_text(encoding="utf-8"))["start_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(start_s) if isinstance(start_s, (int, float)) and math.isfinite(start_s) else None


def _finalize_settings(manifest_path: Path) -> tuple[LoadTestSettings, bool]:
    """The run's settings and whether its target was the reference server, from `manifest.json`; a
    damaged manifest is an error naming it (nothing is touched: the parts stay for a later try)."""
    from pydantic import ValidationError

    from capsim.input_files import read_json_file
    from capsim.input_model import input_error

    manifest = read_json_file(manifest_path)
    source = str(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("settings"), dict):
        raise CapsimInputError("expected a JSON object with a settings object (written by capsim loadtest); the "
                               "parts/ folder is untouched", source=source, field="settings")  # fmt: skip
    target = manifest.get("target")
    if not isinstance(target, dict):
        raise CapsimInputError("expected an object (the load test's target)", source=source, field="target")
    try:
        settings = LoadTestSettings.model_validate(manifest["settings"])
    except ValidationError as exc:
        raise input_error(exc, manifest["settings"], source, prefix=("settings",)) from None
    return settings, bool(target.get("reference_server"))


def _step_config(step_dir: Path, echo: Callable[[str], None]) -> tuple[int, float | None]:
    """(step number, its rate) from `config.json`; from the folder's name, rate unknown, when it is damaged."""
    number = int(step_dir.name.split("-")[1])
    try:
        config = json.loads((step_dir / "config.json").read_text(encoding="utf-8"))
        rate = config.get("rate_rps")
        if rate is None or (isinstance(rate, (int, float)) and math.isfinite(rate) and rate >= 0):
            return number, rate
        problem = f"rate_rps is {rate!r}"
    except (OSError, ValueError, AttributeError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    echo(f"warning: {step_dir / 'config.json'}: unreadable ({problem}); step {number} summarized at the settings' rate")
    return number, None


def _step_schedule(step_dir: Path, echo: Callable[[str], None]) -> np.ndarray | None:
    """The step's planned send instants, or None when absent or damaged (lateness is then not judged)."""
    path = step_dir / "schedule.npy"
    if not path.is_file():
        return None
    try:
        schedule = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        echo(f"warning: {path}: unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
             "send lateness not judged for this step")
        return None
    return schedule if schedule.ndim == 1 and np.issubdtype(schedule.dtype, np.number) else None


def finalize_run(out_dir: Path, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Summarize a run folder whose `capsim loadtest` process died before merging (its `parts/` are
    still there): merge the parts and write summary.json, marked partial.

    A damaged part never stops it: every readable row is merged, the unreadable files are moved to
    `damaged-parts/` and named. Only when no request row at all can be read is it an error (exit 2),
    and then nothing is changed."""
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file() or not (out_dir / "parts").is_dir():
        raise CapsimInputError("not an unfinished run folder (needs manifest.json and parts/)", source=str(out_dir))
    settings, reference_server = _finalize_settings(manifest_path)
    run = LoadTestRun(settings, out_dir, echo)
    run.batches = reference_server
    steps = []
    for step_dir in sorted(run.parts_dir.glob("step-*")):
        if not step_dir.name.split("-")[1].isdigit():
            continue  # not a step folder of the load tester
        number, rate = _step_config(step_dir, echo)
        schedule = _step_schedule(step_dir, echo)
        steps.append(run._summarize_step(number, step_dir, _step_arrival(settings, rate), schedule, rate, True, None))
    readable = [p for p in run.parts_dir.rglob("requests-w*.parquet") if p not in run.damaged]
    if run.damaged and not sum(pq.read_metadata(p).num_rows for p in readable):
        first, problem = next(iter(sorted(run.damaged.items())))
        more = f" (and {len(run.damaged) - 1} more damaged parts)" if len(run.damaged) > 1 else ""
        raise CapsimInputError(f"{problem}{more}; no request row could be read, so nothing was changed",
                               source=str(first))  # fmt: skip
    run._merge()
    summary = run._summary(steps, True, "finalized after the run died", status="finalized")
    write_json_atomic(out_dir / "summary.json", summary)
    return summary
