"""Long runs say how far they are on stderr, also when stderr is not a terminal; stdout stays clean."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

import capsim.progress
from capsim import load_scenario, simulate
from capsim.cli.main import main
from capsim.progress import ProgressReporter, counted, duration_text, share, simulated_time

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def _plain(total: float | None, amount: capsim.progress.Amount, label: str = "simulating x",
           enabled: bool = True) -> tuple[ProgressReporter, io.StringIO, FakeClock]:  # fmt: skip
    clock, stream = FakeClock(), io.StringIO()
    reporter = ProgressReporter(label, total, amount, enabled=enabled, live=False, interval_s=5.0,
                                stream=stream, clock=clock)  # fmt: skip
    return reporter, stream, clock


def test_durations_read_at_a_glance() -> None:
    durations_s = (41, 270, 11_520, 86_400, 216_000)
    assert [duration_text(s) for s in durations_s] == ["41 s", "4.5 min", "3.2 h", "24 h", "2.5 d"]


def test_plain_lines_every_interval_with_share_elapsed_and_time_left() -> None:
    reporter, stream, clock = _plain(86_400.0, simulated_time)
    for t_s, done_s in [(1, 1_000), (4.9, 5_000), (5.0, 10_800), (7, 12_000), (10.2, 21_600), (12, 30_000)]:
        clock.now_s = 100.0 + t_s
        reporter.update(done_s)
    assert stream.getvalue().splitlines() == [
        "simulating x: 3 h of 24 h simulated (12%), 5 s elapsed, ~31 s left",
        "simulating x: 6 h of 24 h simulated (25%), 10 s elapsed, ~29 s left",
    ]
    clock.now_s = 100.0 + 14
    reporter.fraction(1.0)
    reporter.close()
    assert stream.getvalue().splitlines()[-1] == "simulating x: done, 24 h of 24 h simulated in 14 s"


def test_an_interrupted_run_says_so_once() -> None:
    reporter, stream, clock = _plain(10.0, counted("variants"))
    clock.now_s += 6.0
    reporter.update(3)
    reporter.close("interrupted")
    reporter.close()  # the `with` block's exit after the caller's own close: nothing more
    assert stream.getvalue().splitlines()[-1] == "simulating x: interrupted, 3 of 10 variants in 6 s"


def test_time_left_leaves_out_the_set_up_before_the_first_report() -> None:
    reporter, stream, clock = _plain(600.0, simulated_time)
    clock.now_s += 20.0  # compiling the event loop: nothing simulated yet
    reporter.update(3.0)
    assert stream.getvalue() == "simulating x: 3 s of 10 min simulated (0%), 20 s elapsed\n"  # not "~67 min left"
    clock.now_s += 5.0
    reporter.update(303.0)
    last = stream.getvalue().splitlines()[-1]
    assert last == "simulating x: 5 min of 10 min simulated (50%), 25 s elapsed, ~5 s left"


def test_a_short_run_prints_nothing_and_quiet_prints_nothing() -> None:
    reporter, stream, clock = _plain(60.0, simulated_time)
    clock.now_s += 4.0
    reporter.update(60.0)
    reporter.close()
    assert stream.getvalue() == ""
    quiet, quiet_stream, quiet_clock = _plain(60.0, simulated_time, enabled=False)
    for step in range(1, 20):
        quiet_clock.now_s += step
        quiet.update(step)
    quiet.close()
    assert quiet_stream.getvalue() == ""


def test_counts_with_an_unknown_total_and_shares() -> None:
    reporter, stream, clock = _plain(None, counted("simulations"), label="solving job for workers")
    clock.now_s += 6.0
    reporter.step()
    reporter.step()
    assert stream.getvalue() == "solving job for workers: 1 simulations, 6 s elapsed\n"
    sweep, sweep_stream, sweep_clock = _plain(None, counted("variants"), label="sweeping s.yaml")
    sweep_clock.now_s += 5.0
    sweep.update(3, 12)  # the sweep learns its total with its first result
    assert sweep_stream.getvalue() == "sweeping s.yaml: 3 of 12 variants (25%), 5 s elapsed\n"  # no pace yet
    sweep_clock.now_s += 5.0
    sweep.update(6)
    last = sweep_stream.getvalue().splitlines()[-1]
    assert last == "sweeping s.yaml: 6 of 12 variants (50%), 10 s elapsed, ~10 s left"
    assert share("the job's items")(0.41, 1.0) == "41% of the job's items"


def test_the_engine_reports_fractions_in_every_mode() -> None:
    """simulate() calls the callback as simulated time (or a job's items) advances: never backwards,
    ending at 1, over all replications — streaming and async runs included."""
    for name, overrides in [("quickstart", ["duration_s=20", "warmup_s=2"]),
                            ("iot-anomaly-streaming", ["duration_s=60", "warmup_s=6"]),
                            ("async-image-processing", ["duration_s=300", "warmup_s=30"]),
                            ("nightly-scoring-t4", [])]:  # fmt: skip
        scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml", overrides)
        seen: list[float] = []
        simulate(scenario, replications=2, keep_requests=False, progress=seen.append)
        assert seen, name
        assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0), name
        assert any(0.0 < f < 0.5 for f in seen), name  # the first replication reports before it ends


def test_cli_simulate_prints_progress_lines_on_a_non_terminal_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, with stderr captured (not a TTY) and a zero interval: plain lines on stderr, and
    stdout is exactly the JSON summary."""
    monkeypatch.setattr(capsim.progress, "PLAIN_INTERVAL_S", 0.0)
    argv = ["simulate", str(ROOT / "scenarios/quickstart.yaml"), "--json", "--set", "duration_s=30",
            "--set", "warmup_s=3"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["scenario"] == "quickstart"
    lines = [line for line in captured.err.splitlines() if line.startswith("simulating quickstart")]
    assert len(lines) > 10
    assert re.fullmatch(r"simulating quickstart: \d+ s of 30 s simulated \(\d+%\), \d+ s elapsed(, ~\d+ s left)?",
                        lines[0]), lines[0]  # fmt: skip
    assert lines[-1].startswith("simulating quickstart: done, 30 s of 30 s simulated in ")

    assert main([*argv, "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert json.loads(quiet.out)["scenario"] == "quickstart"
    assert "simulating" not in quiet.err


def test_cli_sweep_and_solve_report_on_stderr(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setattr(capsim.progress, "PLAIN_INTERVAL_S", 0.0)
    sweep = ["sweep", str(ROOT / "scenarios/quickstart.yaml"), "--vary", "serving.replicas=1,2", "--jobs", "1",
             "--json", "--set", "duration_s=10", "--set", "warmup_s=1"]  # fmt: skip
    assert main(sweep) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["rows"]) == 2
    assert "sweeping quickstart.yaml: 1 of 2 variants (50%)" in captured.err

    solve = ["simulate", str(ROOT / "scenarios/nightly-scoring-t4.yaml"), "--solve", "workers", "--json"]
    assert main(solve) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["solve"] == "workers"
    assert re.search(r"^solving nightly-scoring-t4 for workers: 1 simulations, \d+ s elapsed$", captured.err, re.M)


def test_a_terminal_gets_a_live_bar_not_lines() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock, stream = FakeClock(), Terminal()
    reporter = ProgressReporter("simulating x", 100.0, simulated_time, interval_s=0.0, stream=stream, clock=clock)
    reporter.update(10.0)
    assert stream.getvalue() == ""  # a run shorter than LIVE_AFTER_S draws nothing
    clock.now_s += capsim.progress.LIVE_AFTER_S
    reporter.update(50.0)
    reporter.close()
    assert "simulating x" in stream.getvalue() and "elapsed" not in stream.getvalue()
