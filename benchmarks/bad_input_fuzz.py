"""Bad input at scale: thousands of mutated bundled scenarios, profiles, traces and catalogues through `capsim check`
(and `capsim sweep` for `--vary`), in this process, with the table of docs/bad-input.md as output.

Each case is one mutation class applied to one bundled file with one seed (tests/bad_input_mutations.py,
shared with tests/test_fuzz_bad_input.py). For every case it records the exit code, whether stderr
held a traceback or more than one line, whether the one line names the file, the wall time, and the
peak resident memory of the case (the kernel's high-water mark, reset before each case through
/proc/self/clear_refs). A case still running after --timeout-s counts as a hang; the address space is
capped at the start-up size + 2 GiB, so a runaway allocation ends as a MemoryError (exit 1), not as
the machine's memory.

    python benchmarks/bad_input_fuzz.py                # ~100 cases per class, about 5 minutes
    python benchmarks/bad_input_fuzz.py --per-class 20 --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import signal
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: tests/ is importable

from capsim.cli.main import main
from tests.bad_input_mutations import (
    CATALOGUE,
    CATALOGUE_CLASSES,
    PROFILE_CLASSES,
    PROFILES,
    SCENARIO_CLASSES,
    SCENARIOS,
    TRACE,
    TRACE_CLASSES,
    Case,
    make_case,
    prepare_workdir,
)

HEADROOM_BYTES = 2 * 1024**3


class _Hang(BaseException):
    """Raised by the alarm: a BaseException, so that the CLI's `except Exception` does not take it."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


@dataclass
class Row:
    """Results of one mutation class."""

    count: int = 0
    exits: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    hangs: int = 0
    tracebacks: int = 0
    not_one_line: int = 0
    unnamed: int = 0
    accepted_never_valid: int = 0
    worst_s: float = 0.0
    worst_peak_rss_mib: float = 0.0
    sample: str = ""
    failures: list[str] = field(default_factory=list)


def run_one(case: Case, workdir: Path, timeout_s: float, row: Row) -> None:
    """Run `case`, fold its outcome into `row`."""
    err, out = io.StringIO(), io.StringIO()
    _reset_peak_rss()
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    hung = False
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(list(case.argv))
    except _Hang:
        hung, code = True, -1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    elapsed_s = time.perf_counter() - start
    row.count += 1
    row.worst_s = max(row.worst_s, elapsed_s)
    row.worst_peak_rss_mib = max(row.worst_peak_rss_mib, _status_kib("VmHWM") / 1024)
    stderr = err.getvalue()
    where = f"{case.label} {case.original} seed {case.seed}"
    if hung:
        row.hangs += 1
        row.failures.append(f"{where}: still running after {timeout_s} s")
        return
    row.exits[code] += 1
    if "Traceback" in stderr:
        row.tracebacks += 1
    if code not in (0, 2):
        row.failures.append(f"{where}: exit {code}: {stderr.strip()[-300:]}")
    if code == 0 and case.must_reject:
        row.accepted_never_valid += 1
        row.failures.append(f"{where}: accepted an input that is never valid")
    if code == 2:
        lines = stderr.splitlines()
        if len(lines) != 1:
            row.not_one_line += 1
            row.failures.append(f"{where}: {len(lines)} lines: {stderr[:300]!r}")
        elif not any(name in lines[0] for name in (case.mutated_file.name, str(workdir), "--set", "--vary")):
            row.unnamed += 1
            row.failures.append(f"{where}: names no file: {lines[0][:300]}")
        elif not row.sample or len(lines[0]) < len(row.sample):
            row.sample = lines[0].replace(str(workdir) + "/", "")


def cases(per_class: int, workdir: Path) -> list[tuple[str, Path, str, int]]:
    """(kind, original, mutation, seed) for `per_class` cases of each class, cycling through the files."""
    plan = []
    kinds = (("scenario", SCENARIOS, SCENARIO_CLASSES), ("profile", PROFILES, PROFILE_CLASSES),
             ("trace", [TRACE], TRACE_CLASSES), ("catalogue", [CATALOGUE], CATALOGUE_CLASSES))  # fmt: skip
    for kind, originals, classes in kinds:
        for mutation in classes:
            plan += [(kind, originals[seed % len(originals)], mutation, seed) for seed in range(per_class)]
    return plan


def main_benchmark() -> int:
    """Run the cases and print the table; exit code 1 if any case broke a rule."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=100, help="cases per mutation class")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="a case running longer is a hang")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _on_alarm)
    rows: dict[str, Row] = defaultdict(Row)
    with tempfile.TemporaryDirectory(prefix="capsim-fuzz-") as tmp:
        workdir = prepare_workdir(Path(tmp))
        plan = cases(args.per_class, workdir)
        run_one(make_case(*plan[0], workdir), workdir, 60.0, Row())  # imports, outside the figures
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_status_kib("VmSize") * 1024 + HEADROOM_BYTES, hard))
        base_rss_mib = _status_kib("VmRSS") / 1024
        started = time.perf_counter()
        for kind, original, mutation, seed in plan:
            case = make_case(kind, original, mutation, seed, workdir)
            run_one(case, workdir, args.timeout_s, rows[case.label])
            case.mutated_file.unlink(missing_ok=True)
        total_s = time.perf_counter() - started
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print(f"{sum(r.count for r in rows.values())} cases in {total_s:.0f} s; resident memory after the imports "
          f"{base_rss_mib:.0f} MiB")
    print()
    print("| inputs | cases | exit 0 | exit 2 | exit 1 | hangs | tracebacks | not one line | never-valid accepted "
          "| worst time | worst peak RSS | shortest error line |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, row in rows.items():
        others = sum(n for code, n in row.exits.items() if code not in (0, 2))
        print(f"| {label} | {row.count} | {row.exits[0]} | {row.exits[2]} | {others} | {row.hangs} | {row.tracebacks} "
              f"| {row.not_one_line + row.unnamed} | {row.accepted_never_valid} | {row.worst_s:.2f} s "
              f"| {row.worst_peak_rss_mib:.0f} MiB | `{row.sample[:110]}` |")
    total = Row()
    for row in rows.values():
        total.count += row.count
        total.hangs += row.hangs
        total.tracebacks += row.tracebacks
        total.failures += row.failures
        for code, n in row.exits.items():
            total.exits[code] += n
    exit1 = sum(n for code, n in total.exits.items() if code not in (0, 2))
    print(f"\ntotal: {total.count} cases, exit 0: {total.exits[0]}, exit 2: {total.exits[2]}, exit 1: {exit1}, "
          f"hangs: {total.hangs}, tracebacks: {total.tracebacks}, rule broken: {len(total.failures)}")
    for failure in total.failures[:50]:
        print("FAIL", failure)
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main_benchmark())
