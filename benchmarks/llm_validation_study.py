"""The LLM validation study: the reference LLM server measured at several loads and two scheduler
settings, calibrated on some points, judged on the others (docs/validation.md "LLM calibration").

For each engine configuration (chunked prefill on, and off with a larger token budget) it starts
`capsim serve --model MODEL` on 127.0.0.1, runs one `capsim loadtest --protocol openai --sweep`
over the loads (the run folder gets the server's step log as steps.parquet), and stops the server.
Then:

1. repeatability floor: the lowest load of the first configuration is measured twice; the relative
   difference of the two measurements' TTFT, TPOT, E2E and throughput is the floor no model can be
   held below;
2. `capsim calibrate` white box on all folders, `--holdout alternate` (fit the 1st and 3rd loads of
   each configuration, predict the 2nd), and `--holdout server:*nocp` (fit chunked prefill on,
   predict it off);
3. the same with `--method black-box` (client timings only).

It prints the held-out tables and writes everything under --out. Figures depend on the machine:
run it on a quiet one and record the date and hardware with the results.

    python benchmarks/llm_validation_study.py --out runs/llm-study --loads 2,4,6 --duration 40
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {
    "cp": ["--max-num-seqs", "32", "--max-num-batched-tokens", "256", "--enable-chunked-prefill"],
    "nocp": ["--max-num-seqs", "32", "--max-num-batched-tokens", "1024", "--no-enable-chunked-prefill"],
}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def capsim(*args: str) -> list[str]:
    """The command line of a capsim command in this interpreter."""
    return [sys.executable, "-c", "import sys; from capsim.cli.main import main; sys.exit(main(sys.argv[1:]))", *args]


def wait_ready(port: int, timeout_s: float) -> None:
    """Wait until the server answers /health."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server on port {port} not ready after {timeout_s:.0f} s")


def measure(out: Path, name: str, config: list[str], args: argparse.Namespace, loads: str) -> Path:
    """Serve, load-test a sweep of `loads`, stop the server; returns the run folder."""
    port = free_port()
    run = out / name
    with (out / f"{name}.server.log").open("w") as log:
        server = subprocess.Popen(capsim("serve", "--model", args.model, "--port", str(port), *config),
                                  stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)  # fmt: skip
    try:
        wait_ready(port, 120)
        subprocess.run(capsim("loadtest", "--protocol", "openai", "--target", f"http://127.0.0.1:{port}",
                              "--sweep", loads, "--duration", str(args.duration), "--warmup", str(args.warmup),
                              "--input-tokens", args.input_tokens, "--output-tokens", args.output_tokens,
                              "--out", str(run)), check=True)  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(30)
    return run


def repeatability(first: Path, second: Path) -> dict[str, float | None]:
    """How far two measurements of the same point are: the relative difference of the second run's
    statistics from the first run's lowest load, on the keys the targets judge (no model involved)."""
    from capsim.calibration.llm_compare import TARGETS, measured_llm_stats
    from capsim.calibration.llm_runfolder import read_llm_points

    one = measured_llm_stats(read_llm_points([first])[0])
    two = measured_llm_stats(read_llm_points([second])[0])
    out: dict[str, float | None] = {}
    for key in TARGETS:
        name, _, sub = key.partition(".")
        a, b = (one[name][sub], two[name][sub]) if sub else (one[name], two[name])
        out[key] = (b - a) / a if a and b is not None else None
    return out


def main() -> None:
    """Run the study (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="llm-tiny")
    parser.add_argument("--loads", default="2,4,6", help="offered req/s, comma-separated (3 or more)")
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--input-tokens", default="lognormal:200,0.5,800")
    parser.add_argument("--output-tokens", default="lognormal:60,0.5,200")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs = {name: measure(args.out, name, config, args, args.loads) for name, config in CONFIGS.items()}
    first = args.loads.split(",")[0]
    repeat = measure(args.out, "cp-repeat", CONFIGS["cp"], args, first)
    results = {"started_utc": started, "model": args.model, "loads": args.loads, "duration_s": args.duration}
    for method in ("white-box", "black-box"):
        for rule in ("alternate", "server:*nocp"):
            fit = args.out / f"fit-{method}-{rule.replace(':', '_').replace('*', '')}.json"
            subprocess.run(capsim("calibrate", *map(str, runs.values()), "-o", str(fit), "--method", method,
                                  "--holdout", rule), check=True)  # fmt: skip
            doc = json.loads(fit.read_text())
            results[f"{method} {rule}"] = doc["provenance"]["calibration"]["holdout"]["errors"]
    results["repeatability floor"] = repeatability(runs["cp"], repeat)
    (args.out / "study.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
