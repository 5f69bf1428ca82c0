"""Every bundled scenario, run as a user runs it: wall time, CPU time and peak memory of
`capsim simulate scenarios/NAME.yaml --json` in its own process (issue 14's target: each under 60 s
and 1 GB on a 2-core machine).

Each scenario runs in a fresh interpreter, so the figures include start-up and, on the first run after
a change to a compiled loop, numba's compile (`--warm` runs each once first, untimed, so that the
table shows the cached case a user sees from the second run on). Peak memory is the child's maximum
resident set (`wait4`'s ru_maxrss). Prints one row per scenario and the worst of each column.

    python benchmarks/bundled_scenarios.py [--warm] [--only NAME ...] [--no-request-log]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WALL_LIMIT_S = 60.0
MEMORY_LIMIT_MB = 1024.0


def run_one(scenario: Path, extra: list[str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MB, exit code) of one `capsim simulate` process."""
    cli = "from capsim.cli.main import main; main()"
    command = [sys.executable, "-c", cli, "simulate", str(scenario), "--json", "--quiet", *extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall_s = time.perf_counter() - started
    assert child.stderr is not None
    stderr = child.stderr.read().decode(errors="replace").strip()
    child.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  {scenario.name}: exit {code}: {stderr.splitlines()[-1] if stderr else ''}", file=sys.stderr)
    return wall_s, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="run each scenario once, untimed, first")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (file stems) to run")
    parser.add_argument("--no-request-log", action="store_true", help="pass --no-request-log (bounded memory)")
    args = parser.parse_args()
    extra = ["--no-request-log"] if args.no_request_log else []
    scenarios = sorted((REPO / "scenarios").glob("*.yaml"))
    if args.only:
        scenarios = [s for s in scenarios if s.stem in set(args.only)]
    print(f"{'scenario':34} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}  within 60 s / 1 GB")
    worst = [0.0, 0.0, 0.0]
    failures = 0
    for scenario in scenarios:
        if args.warm:
            run_one(scenario, extra)
        wall_s, cpu_s, peak_mb, code = run_one(scenario, extra)
        ok = code == 0 and wall_s < WALL_LIMIT_S and peak_mb < MEMORY_LIMIT_MB
        failures += not ok
        worst = [max(worst[0], wall_s), max(worst[1], cpu_s), max(worst[2], peak_mb)]
        print(f"{scenario.stem:34} {wall_s:8.1f} {cpu_s:8.1f} {peak_mb:8.0f}  {'yes' if ok else 'NO'}")
    print(f"{'worst':34} {worst[0]:8.1f} {worst[1]:8.1f} {worst[2]:8.0f}  "
          f"{len(scenarios) - failures} of {len(scenarios)} within")  # fmt: skip


if __name__ == "__main__":
    main()
