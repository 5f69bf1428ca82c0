"""The plan's search finds what an exhaustive evaluation of the same space finds, with less work; and
each safety rule changes the pick in a case built for it."""

from __future__ import annotations

from pathlib import Path

from capsim.plan.cache import ResultCache
from capsim.plan.rules import SafetyRules, meets_slo
from capsim.plan.run import PlanRequest, run_plan
from capsim.sweep import parse_axis, run_sweep
from tests.plan.helpers import SCENARIO, pick_config, plan, write_scenario


def test_search_finds_the_exhaustive_pick_and_the_sweep_agrees(tmp_path: Path) -> None:
    path = write_scenario(tmp_path)
    searched = plan(path, windows=(0, 2, 5))
    exhaustive = plan(path, windows=(0, 2, 5), exhaustive=True)
    assert pick_config(searched) == pick_config(exhaustive) is not None
    assert searched.document["simulations"] < exhaustive.document["simulations"] / 2
    # The same grid through `capsim sweep`'s runner (3 replications, the same seed): its summaries,
    # judged by the same rule, give the same cheapest meeting configuration.
    result = run_sweep(path, [parse_axis("serving.batching.max_wait_ms=0,2,5"), parse_axis("serving.replicas=2..10")],
                       replications=3, jobs=1)  # fmt: skip
    slo = {"latency_ms": SCENARIO["slo"]["latency_ms"], "percentile": SCENARIO["slo"]["percentile"]}
    meeting = [(row["usd_per_hour"], row["tail_latency_ms"], row["serving.replicas"],
                row["serving.batching.max_wait_ms"]) for row, summary in zip(result.rows, result.summaries, strict=True)
               if meets_slo(summary, slo).status == "meets" and not row["unstable"]]  # fmt: skip
    _, _, replicas, window = min(meeting)
    _, count, pick_window, _ = pick_config(searched) or ()
    assert (count, pick_window) == (replicas, window)


def test_every_pick_row_is_consistent_and_pruned_rows_cost_more(tmp_path: Path) -> None:
    run = plan(write_scenario(tmp_path), windows=(0, 2, 5))
    level = run.document["levels"][0]
    pick = level["pick"]
    assert pick["status"] == "meets" and pick["tail_ms"] + pick["tail_ci95_ms"] <= 15
    assert pick["cost_usd_per_month"] == pick["cost_usd_per_h"] * 730
    assert pick["rho_peak"] <= 0.8 and pick["replicas"] >= 2
    for row in level["candidates"]:
        if row["status"] == "pruned":
            assert row["cost_usd_per_h"] > pick["cost_usd_per_h"]
        if row["status"] == "meets":
            assert row["cost_usd_per_h"] >= pick["cost_usd_per_h"]


def test_headroom_rule_changes_the_pick(tmp_path: Path) -> None:
    # A loose SLO (1 s) is met by the smallest stable fleet: 2 replicas carry 2,000 req/s at 75% of
    # their full-batch capacity (2,667 req/s); 80% headroom allows that, 70% asks for 3.
    path = write_scenario(tmp_path, slo={"latency_ms": 1000, "percentile": 99})
    assert pick_config(plan(path))[1] == 2  # type: ignore[index]
    tight = plan(path, rules=SafetyRules(max_utilization=0.7))
    assert pick_config(tight)[1] == 3  # type: ignore[index]
    assert tight.document["levels"][0]["pick"]["rho_peak"] <= 0.7


def test_redundancy_rules_change_the_pick(tmp_path: Path) -> None:
    # 300 req/s: one replica is enough for the SLO; redundancy asks for 2; N+1 for one more than
    # the smallest fleet meeting the SLO.
    path = write_scenario(tmp_path, workload={"arrival": {"kind": "poisson", "rate_rps": 300}})
    assert pick_config(plan(path, rules=SafetyRules(min_replicas=1)))[1] == 1  # type: ignore[index]
    assert pick_config(plan(path))[1] == 2  # type: ignore[index]
    n_plus_one = plan(path, rules=SafetyRules(min_replicas=1, n_plus_one=True))
    assert pick_config(n_plus_one)[1] == 2  # type: ignore[index]
    one = next(r for r in n_plus_one.document["levels"][0]["candidates"] if r["replicas"] == 1)
    assert one["status"] == "fails" and one["reason"].startswith("N+1")


def test_confidence_rule_changes_the_pick(tmp_path: Path) -> None:
    # The SLO target set a hair above 3 replicas' measured p99: the point estimate meets it, but the
    # 95% interval straddles it at every replication count up to the cap, so 3 is undecided and
    # the pick moves to 4; with the target 5% higher, 3 is the pick.
    path = write_scenario(tmp_path)
    rows = plan(path, exhaustive=True, max_replicas=4).document["levels"][0]["candidates"]
    tail_3 = next(r["tail_ms"] for r in rows if r["replicas"] == 3)
    rules = SafetyRules(initial_replications=3, max_replications=3)
    close = plan(path, f"slo.latency_ms={tail_3 * 1.0001}", rules=rules)
    row_3 = next(r for r in close.document["levels"][0]["candidates"] if r["replicas"] == 3)
    assert row_3["status"] == "undecided" and row_3["tail_ms"] <= tail_3 * 1.0001
    assert pick_config(close)[1] == 4  # type: ignore[index]
    assert pick_config(plan(path, f"slo.latency_ms={tail_3 * 1.05}", rules=rules))[1] == 3  # type: ignore[index]


def test_each_traffic_level_gets_its_own_pick(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, slo={"latency_ms": 1000, "percentile": 99})
    run = plan(path, vary=("workload.arrival.rate_rps=1000,4000",))
    levels = run.document["levels"]
    assert [level["load"] for level in levels] == [{"workload.arrival.rate_rps": 1000},
                                                   {"workload.arrival.rate_rps": 4000}]  # fmt: skip
    # The headroom floor at each level: ceil(rate / (1,333 x 0.8)) and at least 2.
    assert [pick_config(run, i)[1] for i in range(2)] == [2, 4]  # type: ignore[index]


def test_candidate_hardware_from_the_scenario_competes_on_cost(tmp_path: Path) -> None:
    # gpu-y is half the speed (8 ms + 1 ms per item: 667 req/s per replica with full batches) at 0.4
    # USD/h. Under a loose SLO the headroom floor decides: gpu-x needs 2 replicas (2.0 USD/h),
    # gpu-y ceil(2,000 / (667 x 0.8)) = 4 (1.6 USD/h), so gpu-y wins; --hardware picks one of them.
    slow = {"kind": "linear", "base_ms": 8.0, "per_item_ms": 1.0, "cv": 0.1}
    space = {"hardware": [{"name": "gpu-x", "usd_per_hour": 1.0, "service": SCENARIO["service"]},
                          {"name": "gpu-y", "usd_per_hour": 0.4, "service": slow}]}  # fmt: skip
    path = write_scenario(tmp_path, plan=space, slo={"latency_ms": 1000, "percentile": 99})
    run = plan(path)
    assert pick_config(run)[:2] == ("gpu-y", 4)  # type: ignore[index]
    assert [h["name"] for h in run.document["provenance"]["hardware"]] == ["gpu-x", "gpu-y"]
    assert run.document["space"]["hardware"] == ["gpu-x", "gpu-y"]
    only_x = run_plan(PlanRequest(scenario_path=path, hardware=["gpu-x"]), ResultCache())
    assert pick_config(only_x)[:2] == ("gpu-x", 2)  # type: ignore[index]


def test_an_autoscaled_line_is_searched_at_each_floor_of_the_rule(tmp_path: Path) -> None:
    # 5,000 req/s at 1,333 req/s per replica with full batches: the mean load within 80% takes
    # ceil(5000 / 1066.7) = 5 warm replicas; the scenario's own floor is 4, the redundancy floor 2.
    from capsim.plan.rules import SafetyRules
    from capsim.plan.space import build_candidates, hardware_candidates
    from capsim.scenario import load_scenario

    hpa = '{"kind": "hpa", "min_replicas": 4, "max_replicas": 12, "metric": "rps", "target": 900}'
    scenario = load_scenario(write_scenario(tmp_path), ["workload.arrival.rate_rps=5000", f"serving.autoscaling={hpa}",
                                                                  "serving.replicas=4"])
    _, lines = build_candidates(scenario, hardware_candidates(scenario, []), [], SafetyRules(), 12)
    assert [line.floor for line in lines] == [2, 4, 5] and [line.index for line in lines] == [0, 1, 2]
    assert [line.at(8).serving.autoscaling.min_replicas for line in lines] == [2, 4, 5]  # type: ignore[union-attr]
    assert "min_replicas=4" in lines[1].label
    _, few = build_candidates(scenario, hardware_candidates(scenario, []), [], SafetyRules(), 4)
    assert [line.floor for line in few] == [2, 4]  # a floor above the bound is not a line


def test_a_fixed_fleet_over_a_day_names_its_busiest_hour(tmp_path: Path) -> None:
    # Steps: 100 req/s for the first hour, 1,500 from 1 h 30 min to 2 h, 300 after: hour 1 averages
    # (100 x 1800 + 1500 x 1800) / 3600 = 800 req/s, the busiest.
    from capsim.plan.day import binding_hour, hourly_offered_rps
    from capsim.scenario import load_scenario

    steps = ('workload.arrival={"kind": "steps", "steps": [{"start_s": 0, "rate_rps": 100}, '
             '{"start_s": 5400, "rate_rps": 1500}, {"start_s": 7200, "rate_rps": 300}]}')  # fmt: skip
    day = load_scenario(write_scenario(tmp_path), [steps, "duration_s=10800"])
    assert list(hourly_offered_rps(day)) == [100.0, 800.0, 300.0]  # type: ignore[arg-type]
    assert binding_hour(day) == {"hour": 1, "clock_h": 1.0, "offered_rps": 800.0}
    assert binding_hour(load_scenario(write_scenario(tmp_path))) is None  # 30 s of Poisson arrivals
