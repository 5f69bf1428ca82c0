"""The inverse question: fewest workers meeting the deadline (bisection over simulated runs) and the
cheapest candidate hardware, on cases computed by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from capsim import simulate
from capsim.errors import CapsimInputError
from capsim.plan.batchjob_search import cheapest_hardware, fewest_workers
from capsim.scenario import Scenario
from tests.batchjob.helpers import batch_dict, batch_scenario
from tests.property.strategies import settings_for

# 1200 items split one partition per worker, batches of 100 at 1 s: W workers finish at
# ceil(12 / W) s (a partition of 1200/W items is ceil(12/W) batches). A 4 s deadline needs 3 workers.
JOB = {"dataset": {"items": 1200}, "deadline_s": 4.0, "search": {"min_workers": 1, "max_workers": 16}}


def test_fewest_workers_by_hand() -> None:
    answer = fewest_workers(batch_scenario(**JOB))
    assert answer.workers == 3
    probes = {p.workers: p for p in answer.probes}
    assert probes[3].met and probes[3].makespan_s == pytest.approx(4.0)
    assert not probes[2].met and probes[2].makespan_s == pytest.approx(6.0)  # one fewer was tried and missed
    assert probes[16].met  # the upper bound is checked first
    assert answer.usd == pytest.approx(3 * 4 / 3600 * 3.6)


def test_the_lower_bound_can_be_the_answer() -> None:
    answer = fewest_workers(batch_scenario(**{**JOB, "search": {"min_workers": 4, "max_workers": 8}}))
    assert answer.workers == 4


def test_no_answer_when_even_max_workers_misses() -> None:
    answer = fewest_workers(batch_scenario(**{**JOB, "search": {"min_workers": 1, "max_workers": 2}}))
    assert answer.workers is None and answer.summary is None
    assert [(p.workers, p.met) for p in answer.probes] == [(2, False)]


def test_cheapest_hardware_weighs_speed_against_price() -> None:
    # "fast": 0.5 s per batch at $10/h needs 2 workers (600 items each: 6 × 0.5 = 3 s), 6 worker-s:
    # $0.0167. The scenario's own hardware needs 3 workers × 4 s = 12 worker-s at $3.6/h: $0.012.
    fast = {"name": "fast", "usd_per_hour": 10.0, "service": {"kind": "deterministic", "mean_ms": 500.0}}
    job = {**JOB, "search": {**JOB["search"], "hardware": [fast]}}
    answers = cheapest_hardware(batch_scenario(**job))
    assert [(a.hardware, a.workers) for a in answers] == [("cpu", 3), ("fast", 2)]
    assert answers[0].usd == pytest.approx(0.012)
    assert answers[1].usd == pytest.approx(6 / 3600 * 10.0)
    # At $4/h the fast hardware costs 6 × 4 / 3600 = $0.0067 and wins.
    job["search"]["hardware"] = [{**fast, "usd_per_hour": 4.0}]
    assert cheapest_hardware(batch_scenario(**job))[0].hardware == "fast"


def test_a_spot_candidate_takes_its_price_from_the_catalogue() -> None:
    a10g = {"name": "A10G", "service": {"kind": "deterministic", "mean_ms": 500.0},
            "spot": {"fraction": 1.0, "interruptions_per_hour": 0.0}}  # fmt: skip
    answers = cheapest_hardware(batch_scenario(**{**JOB, "search": {**JOB["search"], "hardware": [a10g]}}))
    spot = next(a for a in answers if a.hardware.startswith("A10G"))
    assert spot.hardware == "A10G (100% spot)" and spot.workers == 2
    # The catalogue's g5.xlarge spot price, $0.40/h, for 2 workers × 3 s.
    assert spot.usd == pytest.approx(6 / 3600 * 0.40)


def test_a_candidate_needs_its_own_service_time() -> None:
    job = {**JOB, "search": {**JOB["search"], "hardware": [{"name": "T4"}]}}
    with pytest.raises(CapsimInputError) as info:
        cheapest_hardware(batch_scenario(**job))
    assert info.value.field == "serving.search.hardware[0].service"


def test_cli_solve_prints_the_answer_and_writes_json(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(batch_dict(**JOB)))
    proc = subprocess.run([sys.executable, "-m", "capsim.cli.main", "simulate", str(path), "--solve", "workers",
                           "--json", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["answer"]["workers"] == 3 and result["deadline_s"] == 4.0
    assert json.loads((tmp_path / "out" / "solve.json").read_text()) == result


@settings_for(max_examples=25)
@given(
    items=st.integers(50, 5000),
    batch_size=st.integers(1, 200),
    base_ms=st.sampled_from([0.0, 40.0]),
    startup_s=st.sampled_from([0.0, 30.0]),
    deadline_factor=st.floats(0.05, 1.2),
)
def test_bisection_agrees_with_a_linear_scan(
    items: int, batch_size: int, base_ms: float, startup_s: float, deadline_factor: float
) -> None:
    # Deterministic jobs split one partition per worker finish no later with more workers, so the
    # fewest workers meeting the deadline is the first count of a scan that meets it.
    service = {"kind": "linear", "base_ms": base_ms, "per_item_ms": 10.0}
    one_worker_s = simulate(batch_scenario(service=service, batch_size=batch_size, job_startup_s=startup_s,
                                           dataset={"items": items})).summary["makespan_s"]  # fmt: skip
    floor_s = startup_s + (base_ms + 10.0 * min(batch_size, items)) / 1000.0
    deadline_s = max(one_worker_s * deadline_factor, floor_s * 1.0001)
    job = batch_scenario(service=service, batch_size=batch_size, job_startup_s=startup_s, dataset={"items": items},
                         deadline_s=deadline_s, search={"min_workers": 1, "max_workers": 12})  # fmt: skip
    scan = [w for w in range(1, 13) if fewest_workers_at(job, w) <= deadline_s]
    assert fewest_workers(job).workers == (scan[0] if scan else None)


def fewest_workers_at(job: Scenario, workers: int) -> float:
    variant = job.model_copy(update={"serving": job.serving.model_copy(update={"workers": workers})})
    makespan_s = simulate(variant).summary["makespan_s"]
    assert makespan_s is not None
    return makespan_s
