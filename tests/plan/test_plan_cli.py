"""`capsim plan` end to end (in-process): the plan folder and its cache, "no configuration meets the
SLO" as an answer, bad input as one line with exit 2, and the traps it warns about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capsim.cli.main import main
from capsim.plan.space import Candidate
from capsim.plan.traps import find_traps, scaling_trap, service_traps
from capsim.scenario import load_scenario
from capsim.sweep import parse_axis
from tests.plan.helpers import write_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # three plans, each writing its pick's run folder (plots): ~8 s on the shared VM
def test_plan_folder_then_a_rerun_resumes_from_its_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_scenario(tmp_path)
    out = tmp_path / "plan"
    code, stdout, _ = run(capsys, str(path), "--max-wait-ms", "0,2", "--max-replicas", "8", "--out", str(out))
    assert code == 0 and "pick: 3 × gpu-x" in stdout
    first = json.loads((out / "plan.json").read_text())
    assert first["format"] == "capsim-plan/1" and first["simulations"] > 0 and first["cached_simulations"] == 0
    assert first["pick_folders"] == ["pick"] and (out / "pick" / "summary.json").is_file()
    assert json.loads((out / "capsim-output.json").read_text())["command"] == "plan"
    assert len(list((out / "cache").glob("*.json"))) == first["simulations"]
    assert (out / "candidates.csv").read_text().count("\n") == 1 + len(first["levels"][0]["candidates"])
    assert not (tmp_path / ".plan.plan-cache").exists()  # the side folder goes once the folder is in place

    code, _, _ = run(capsys, str(path), "--max-wait-ms", "0,2", "--max-replicas", "8", "--out", str(out))
    again = json.loads((out / "plan.json").read_text())
    assert code == 0 and again["simulations"] == 0 and again["requests_simulated"] == 0
    assert again["cached_simulations"] == first["simulations"]
    assert again["levels"][0]["pick"] == first["levels"][0]["pick"]

    # Widening the space simulates only what is new: every new cache entry is a 5 ms configuration.
    before = {p.name for p in (out / "cache").glob("*.json")}
    code, _, _ = run(capsys, str(path), "--max-wait-ms", "0,2,5", "--max-replicas", "8", "--out", str(out))
    wider = json.loads((out / "plan.json").read_text())
    added = {p.name for p in (out / "cache").glob("*.json")} - before
    assert code == 0 and before <= {p.name for p in (out / "cache").glob("*.json")}
    assert 0 < wider["simulations"] == len(added) and wider["cached_simulations"] > 0
    new_keys = {r["key"] for r in wider["levels"][0]["candidates"] if r["max_wait_ms"] == 5}
    assert {name.rsplit("-r", 1)[0] for name in added} <= new_keys


def test_a_variant_s_cache_key_is_the_same_in_every_process(tmp_path: Path) -> None:
    # The key must not depend on anything run-dependent (hash randomisation of sets, dict order,
    # the time): two processes with different hash seeds give the same keys, HPA and hardware included.
    import os
    import subprocess
    import sys

    path = write_scenario(tmp_path)
    code = ("import sys; from pathlib import Path; from capsim.plan.cache import variant_key; "
            "from capsim.scenario import load_scenario; "
            "print(variant_key(load_scenario(Path(sys.argv[1]), sys.argv[2:]), 3))")  # fmt: skip
    hpa = 'serving.autoscaling={"kind": "hpa", "min_replicas": 2, "max_replicas": 8, "metric": "rps", "target": 900}'
    keys = [subprocess.run([sys.executable, "-c", code, str(path), hpa], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]  # fmt: skip
    assert keys[0] == keys[1] and len(keys[0].strip()) == 16


def test_a_cache_key_leaves_defaults_out_so_a_growing_schema_keeps_it(tmp_path: Path) -> None:
    # A field the schema adds with a default is absent from older variants and at its default in
    # newer ones: the key must not see it. Shown with fields that exist: set explicitly to their
    # default, the key is unchanged; set to anything else, it changes.
    from capsim.plan.cache import variant_key

    path = write_scenario(tmp_path)
    plain = variant_key(load_scenario(path), 7)
    assert variant_key(load_scenario(path, ["serving.instances_per_replica=1", "description="]), 7) == plain
    assert variant_key(load_scenario(path, ["serving.instances_per_replica=2"]), 7) != plain
    assert variant_key(load_scenario(path), 8) != plain


def test_no_configuration_meeting_the_slo_is_an_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_scenario(tmp_path, slo={"latency_ms": 5, "percentile": 99})  # below one batch's service time
    code, stdout, _ = run(capsys, str(path), "--max-replicas", "4", "--json")
    document = json.loads(stdout)
    level = document["levels"][0]
    assert code == 0 and level["pick"] is None
    assert 1 <= len(level["closest"]) <= 3 and all(r["status"] == "fails" for r in level["closest"])
    attainments = [r["slo_attainment"] for r in level["closest"]]
    assert attainments == sorted(attainments, reverse=True)
    code, stdout, _ = run(capsys, str(path), "--max-replicas", "4")
    assert code == 0 and "no configuration meets the SLO" in stdout


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--hardware", "Z99"], "--hardware"),
        (["--hardware", ","], "--hardware"),
        (["--max-utilization", "1.5"], "--max-utilization"),
        (["--replications", "1"], "--replications"),
        (["--replications", "4", "--max-replications", "3"], "--max-replications"),
        (["--max-wait-ms", "2,x"], "--max-wait-ms"),
        (["--vary", "serving.replicas"], "--vary"),
        (["--set", "slo=null"], "slo"),
        (["--cluster", "nonsense"], "--cluster"),
        (["--hardware", "T4"], "service"),  # a parametric service says nothing about other hardware
        (["--max-replicas", "1", "--min-replicas", "1"], "--max-replicas"),  # 2,000 req/s needs 2 for headroom
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], names: str
) -> None:
    code, stdout, stderr = run(capsys, str(write_scenario(tmp_path)), *args)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and names in stderr


def test_a_mode_it_does_not_plan_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(capsys, str(SCENARIOS / "iot-anomaly-streaming.yaml"))
    assert code == 2 and "serving.mode" in stderr and stderr.count("\n") == 1


def test_utilization_scaling_in_front_of_batching_is_a_trap(tmp_path: Path) -> None:
    path = write_scenario(tmp_path)
    hpa = '{"kind": "hpa", "min_replicas": 2, "max_replicas": 8, "metric": "%s", "target": %s}'
    on_utilization = load_scenario(path, ["serving.autoscaling=" + hpa % ("utilization", 0.6)])
    assert scaling_trap(on_utilization)["kind"] == "utilization_scaling_with_batching"  # type: ignore[index]
    assert scaling_trap(load_scenario(path, ["serving.autoscaling=" + hpa % ("rps", 500)])) is None
    unbatched = ["serving.batching.max_batch_size=1", "serving.autoscaling=" + hpa % ("utilization", 0.6)]
    assert scaling_trap(load_scenario(path, unbatched)) is None


def test_a_varied_field_that_changes_nothing_is_a_trap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_scenario(tmp_path, slo={"latency_ms": 1000, "percentile": 99})
    code, stdout, stderr = run(capsys, str(path), "--vary", "name=a,b", "--max-replicas", "3", "--json")
    traps = json.loads(stdout)["traps"]
    assert code == 0 and [t["kind"] for t in traps] == ["ineffective_axis"]
    assert "warning: --vary name" in stderr


def test_service_times_used_beyond_their_measurement_are_traps() -> None:
    measured = SCENARIOS / "measured-cnn-h100.yaml"
    transferred = load_scenario(measured, ["service.transfer={}", 'hardware={"name": "T4"}'])
    kinds = [t["message"] for t in service_traps(transferred, "T4")]
    assert any("roofline transfer" in m for m in kinds)
    beyond = load_scenario(measured, ["serving.batching.max_batch_size=128"])
    assert any("beyond the largest measured batch" in t["message"] for t in service_traps(beyond, "H100"))
    assert service_traps(load_scenario(measured), "H100") == []


def test_find_traps_reports_each_once(tmp_path: Path) -> None:
    scenario = load_scenario(write_scenario(tmp_path))
    axes = [parse_axis("name=a,b")]
    variants = [load_scenario(write_scenario(tmp_path), [f"name={n}"]) for n in ("a", "b")]
    candidate = Candidate(0, 0, "gpu-x", {}, {}, scenario.model_dump(mode="json", exclude_none=True), "fixed", 2, 4)
    traps = find_traps(scenario, axes, variants, [candidate, candidate])
    assert [t["kind"] for t in traps] == ["ineffective_axis"]


def test_a_batch_job_is_planned_by_its_worker_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1,000 items in 10 partitions, one batch of 100 each at 1 s: ten 1 s batches. 2 workers take 5 s,
    # 3 take 4 s, so a 4 s deadline needs 3.
    job = {"name": "job", "duration_s": 1000.0, "seed": 1, "service": {"kind": "deterministic", "mean_ms": 1000.0},
           "hardware": {"name": "cpu", "usd_per_hour": 3.6},
           "serving": {"mode": "batch", "dataset": {"items": 1000, "partitions": 10}, "workers": 1,
                       "batch_size": 100, "deadline_s": 4.0,
                       "search": {"min_workers": 1, "max_workers": 16}}}  # fmt: skip
    code, stdout, _ = run(capsys, str(write_scenario(tmp_path, job)), "--json")
    document = json.loads(stdout)
    pick = document["levels"][0]["pick"]
    assert code == 0 and document["kind"] == "batch" and document["space"]["searched"] == "workers"
    assert document["slo"] == {"deadline_s": 4.0}
    assert pick["replicas"] == 3 and pick["makespan_s"] <= 4.0
    assert all(r["status"] == "fails" for r in document["levels"][0]["candidates"] if r["replicas"] < 3)


def test_a_plan_beyond_the_run_budget_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worst case: 1 line x (2 + 2 + 3 = 7 counts over 2..8) x 12 replications of 60,000 requests.
    monkeypatch.setenv("CAPSIM_MAX_RUN_S", "1")
    path = str(write_scenario(tmp_path))
    code, stdout, stderr = run(capsys, path, "--max-replicas", "8")
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert "this plan's worst case (1 lines x 7 counts x 12 replications)" in stderr and "--force" in stderr
    code, stdout, _ = run(capsys, path, "--max-replicas", "8", "--force")
    assert code == 0 and "pick: 3 × gpu-x" in stdout
