"""Progress of a long run, on stderr: a live bar on a terminal, a plain line every few seconds otherwise.

A run that outlasts a few seconds says how far it is, even when stderr is a file or a pipe (a CI log,
`nohup`, `2> run.log`), where a live bar would print nothing useful. The library never reports
progress itself: `simulate()`, `run_sweep()` and the batch-job search take a callback, and the CLI
passes a `ProgressReporter`'s method. Only stderr is written, so `--json` stdout stays clean.

A plain line reads, for example::

    simulating quickstart: 3.2 h of 24 h simulated (13%), 41 s elapsed, ~4.5 min left
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from capsim.scenario import Scenario

PLAIN_INTERVAL_S = 5.0
"""Seconds between plain progress lines (and before the first: a shorter run prints none)."""

LIVE_AFTER_S = 1.5
"""A live bar appears only once a run has taken this long: shorter runs finish before it would help."""

Amount = Callable[[float, "float | None"], str]
"""Says how much is done: (done, total or None when unknown) -> '3.2 h of 24 h simulated'."""


def within_replication(
    progress: Callable[[float], None], replication: int, replications: int
) -> Callable[[float], None]:
    """A callback for one replication's fraction done that reports the fraction of all replications."""
    return lambda fraction: progress((replication + fraction) / replications)


_DURATION_UNITS = (("s", 1.0, 90.0), ("min", 60.0, 90 * 60.0), ("h", 3600.0, 48 * 3600.0), ("d", 86400.0, math.inf))
"""(unit, its length in seconds, the duration below which it is used)."""


def duration_text(seconds: float) -> str:
    """A duration a person reads at a glance: '41 s', '4.5 min', '3.2 h', '24 h', '2.5 d'."""
    unit, size_s = next((unit, size_s) for unit, size_s, below_s in _DURATION_UNITS if seconds < below_s)
    digits = 0 if unit == "s" else 1
    return f"{seconds / size_s:.{digits}f}".removesuffix(".0") + f" {unit}"


def simulated_time(done_s: float, total_s: float | None) -> str:
    """Simulated seconds: '3.2 h of 24 h simulated'."""
    if total_s is None:
        return f"{duration_text(done_s)} simulated"
    return f"{duration_text(done_s)} of {duration_text(total_s)} simulated"


def counted(noun: str) -> Amount:
    """Whole things done: '3 of 12 variants', or '5 simulations' when the total is unknown."""

    def amount(done: float, total: float | None) -> str:
        return f"{done:,.0f} {noun}" if total is None else f"{done:,.0f} of {total:,.0f} {noun}"

    return amount


def share(what: str) -> Amount:
    """A share of the work, done out of 1: '41% of the job's items'."""

    def amount(done: float, total: float | None) -> str:
        return f"{done / (total or 1.0):.0%} of {what}"

    return amount


class ProgressReporter:
    """Reports `done` out of `total` (None: unknown) for one run, on stderr.

    On a terminal (`live=None` asks the stream) a rich bar appears after `LIVE_AFTER_S` and goes when
    the run ends. Otherwise one plain line every `interval_s` (`PLAIN_INTERVAL_S` by default), the
    first after `interval_s` too, and a last line at `close()` if any was written. `enabled=False`
    (`--quiet`) writes nothing. `clock` and `stream` are there for tests.
    """

    def __init__(
        self,
        label: str,
        total: float | None,
        amount: Amount,
        *,
        enabled: bool = True,
        live: bool | None = None,
        interval_s: float | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self._amount = amount
        self._enabled = enabled
        self._stream = stream
        self._live = live if live is not None else self._out().isatty()
        self._interval_s = PLAIN_INTERVAL_S if interval_s is None else interval_s
        self._clock = clock
        self._started_s = clock()
        self._last_line_s = self._started_s
        self._lines = 0
        self._done = 0.0
        self._first_report: tuple[float, float] | None = None  # (clock, done) at the first update
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def _out(self) -> TextIO:
        # Looked up at each write, not kept: pytest's capsys and redirections swap sys.stderr.
        return self._stream if self._stream is not None else sys.stderr

    def update(self, done: float, total: float | None = None) -> None:
        """`done` so far, in the units of `total` (given here when it becomes known only as the run goes)."""
        self._done = done
        if total is not None:
            self.total = total
        if not self._enabled:
            return
        now_s = self._clock()
        if self._first_report is None:
            self._first_report = (now_s, done)
        if self._live:
            self._update_bar(now_s)
        elif now_s - self._last_line_s >= self._interval_s:
            self._write_line(now_s)

    def fraction(self, fraction: float) -> None:
        """The engine's callback: the fraction done (0..1) of `total`."""
        self.update(fraction * (self.total if self.total is not None else 1.0))

    def step(self, count: int = 1) -> None:
        """One more thing done (a probe of a search, a variant)."""
        self.update(self._done + count)

    def line(self, now_s: float) -> str:
        """The plain line for `now_s`: label, amount, share, time elapsed and an estimate of what is left."""
        elapsed_s = now_s - self._started_s
        parts = [f"{self.label}: {self._amount(self._done, self.total)}"]
        if self.total:
            done_share = min(max(self._done / self.total, 0.0), 1.0)
            parts[0] += f" ({done_share:.0%})"
            parts.append(f"{duration_text(elapsed_s)} elapsed")
            left_s = self.time_left_s(now_s)
            if left_s is not None:
                parts.append(f"~{duration_text(left_s)} left")
        else:
            parts.append(f"{duration_text(elapsed_s)} elapsed")
        return ", ".join(parts)

    def time_left_s(self, now_s: float) -> float | None:
        """A straight-line estimate from the pace since the first report — not since the start, which
        may hold set-up such as compiling the event loop (~20 s before the first simulated second) — or
        None before there is a pace to go by."""
        if self._first_report is None or not self.total or self._done >= self.total:
            return None
        first_s, first_done = self._first_report
        if self._done <= first_done or now_s <= first_s:
            return None
        return (now_s - first_s) * (self.total - self._done) / (self._done - first_done)

    def _write_line(self, now_s: float) -> None:
        out = self._out()
        out.write(self.line(now_s) + "\n")
        out.flush()
        self._last_line_s = now_s
        self._lines += 1

    def _update_bar(self, now_s: float) -> None:
        if self._bar is None:
            if now_s - self._started_s < LIVE_AFTER_S:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=self._out()), transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, amount="")
        said = self._amount(self._done, self.total)
        assert self._task is not None  # added with the bar
        self._bar.update(self._task, completed=self._done, total=self.total, amount=said)

    def close(self, outcome: str = "done") -> None:
        """End of the run: remove the bar, or say how it ended (`outcome`: 'done', 'interrupted') and
        how long it took if progress lines were written. Closing again writes nothing."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._lines:
            out = self._out()
            out.write(f"{self.label}: {outcome}, {self._amount(self._done, self.total)} "
                      f"in {duration_text(self._clock() - self._started_s)}\n")  # fmt: skip
            out.flush()
            self._lines = 0

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def simulation_reporter(scenario: Scenario, replications: int, *, enabled: bool = True) -> ProgressReporter:
    """The reporter for `simulate(scenario, replications=...)`: simulated time over all replications, or
    for a batch job (whose end is what the run finds out) the share of the job's items done."""
    label = f"simulating {scenario.name}"
    if scenario.serving.mode == "batch":
        what = "the job's items" if replications == 1 else f"the job's items over {replications} replications"
        return ProgressReporter(label, 1.0, share(what), enabled=enabled)
    return ProgressReporter(label, scenario.duration_s * replications, simulated_time, enabled=enabled)
