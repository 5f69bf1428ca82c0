"""MIG slices (docs/model.md "GPU sharing"): the catalogue's profiles, a replica's service time on a
slice, the bill per physical GPU and the energy of shared GPUs, all checked by hand."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capsim import simulate
from capsim.engine import _billed_gpus
from capsim.errors import CapsimInputError
from capsim.hardware import load_catalogue
from capsim.hardware.cost import gpus_for_slices
from capsim.hardware.mig import MigSlice, mig_service_scale, resolve_mig
from capsim.metrics.steps import StepSeries
from capsim.servicetime.parametric import LognormalService
from capsim.servicetime.scaled import ScaledService
from tests.scenario_helpers import make_scenario, rows, trace_arrivals

MS = 1e-3
A100_80GB_USD_PER_H = 3.67  # the catalogue's on-demand price per GPU (Azure NC24ads_A100_v4)


@pytest.mark.parametrize(
    ("replicas", "slices_per_gpu", "gpus"),
    [(0, 7, 0), (1, 7, 1), (7, 7, 1), (8, 7, 2), (14, 7, 2), (15, 7, 3), (3, 2, 2), (4, 1, 4)],
)
def test_gpus_billed_for_slices_by_hand(replicas: int, slices_per_gpu: int, gpus: int) -> None:
    assert gpus_for_slices(replicas, slices_per_gpu) == gpus


def test_billed_gpus_follow_every_change_of_the_billed_replicas() -> None:
    billed = StepSeries(3)
    for t_s, replicas in ((10.0, 8), (20.0, 7), (30.0, 15), (40.0, 0)):
        billed.set(t_s, replicas)
    gpus = _billed_gpus(billed, 7)
    assert gpus.times_s == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert gpus.values == [1, 2, 1, 3, 0]
    # 10 s each at 1, 2, 1 and 3 GPUs, then none: 70 GPU-seconds by t = 50 s.
    assert gpus.area_at(np.array([50.0]))[0] == pytest.approx(70.0)


def test_catalogue_profiles_are_consistent_with_their_names_and_the_gpu() -> None:
    catalogue = load_catalogue()
    with_mig = {spec.name for spec in catalogue if spec.mig is not None}
    assert with_mig == {"A100-40GB", "A100-80GB", "H100-SXM", "H200"}
    for name in sorted(with_mig):
        spec = catalogue.get(name)
        assert spec.mig is not None
        assert "docs.nvidia.com/datacenter/tesla/mig-user-guide" in spec.mig.source
        gpu_memory_gb = spec.require("memory_gb", "test")
        full = [p for p in spec.mig.profiles.values() if p.compute_sevenths == 7]
        assert len(full) == 1 and full[0].per_gpu == 1 and full[0].memory_gb == pytest.approx(gpu_memory_gb)
        for profile, p in spec.mig.profiles.items():
            match = re.fullmatch(r"(\d)g\.(\d+)gb", profile)
            assert match, profile
            assert int(match.group(1)) == p.compute_sevenths
            assert float(match.group(2)) == p.memory_gb <= gpu_memory_gb
            assert p.per_gpu * p.compute_sevenths <= 7  # never more SMs than the GPU has
            assert p.per_gpu * p.memory_gb <= gpu_memory_gb * 1.02  # nor more memory (H200's 18 GB x 7 = 126)
        one = spec.mig.profiles[min(spec.mig.profiles, key=lambda n: spec.mig.profiles[n].memory_gb)]  # type: ignore[union-attr]
        assert (one.compute_sevenths, one.per_gpu) == (1, 7)  # the smallest slice: 7 per GPU


def test_a100_profiles_as_the_mig_user_guide_lists_them() -> None:
    profiles = load_catalogue().get("A100-40GB").mig
    assert profiles is not None
    got = {name: (p.compute_sevenths, p.per_gpu) for name, p in profiles.profiles.items()}
    assert got == {"1g.5gb": (1, 7), "1g.10gb": (1, 4), "2g.10gb": (2, 3), "3g.20gb": (3, 2),
                   "4g.20gb": (4, 1), "7g.40gb": (7, 1)}  # fmt: skip


def test_resolve_fills_figures_from_the_profile_and_keeps_those_given() -> None:
    profiles = load_catalogue().get("A100-80GB").mig
    got = resolve_mig(MigSlice(profile="3g.40gb"), "A100-80GB", profiles)
    assert (got.slices_per_gpu, got.compute_share, got.service_scale) == (2, pytest.approx(3 / 7), pytest.approx(7 / 3))
    measured = resolve_mig(MigSlice(profile="1g.10gb", service_scale=2.5), "A100-80GB", profiles)
    assert (measured.slices_per_gpu, measured.service_scale) == (7, 2.5)
    assert mig_service_scale(1) == 7.0 and mig_service_scale(7) == 1.0
    with pytest.raises(CapsimInputError, match=r"no MIG profile '1g\.5gb' \(profiles: 1g\.10gb"):
        resolve_mig(MigSlice(profile="1g.5gb"), "A100-80GB", profiles)


def test_scaled_service_multiplies_mean_and_compiled_form() -> None:
    base = LognormalService(mean_ms=4.0, cv=0.3)
    scaled = ScaledService(base=base, factor=7.0)
    assert scaled.mean_s(8) == pytest.approx(7.0 * base.mean_s(8))
    table, base_table = scaled.batch_time_table(8), base.batch_time_table(8)
    assert table is not None and base_table is not None
    np.testing.assert_allclose(table.scale_s, 7.0 * base_table.scale_s)
    assert (table.loc, table.sigma, table.form) == (base_table.loc, base_table.sigma, base_table.form)
    a, b = scaled.sampler(np.random.default_rng(3)), base.sampler(np.random.default_rng(3))
    assert [a(2) for _ in range(5)] == pytest.approx([7.0 * b(2) for _ in range(5)])


def _mig_scenario(tmp_path: Path, arrivals_ms: list[float], *overrides: str):  # type: ignore[no-untyped-def]
    return make_scenario(
        "duration_s=1", "hardware.name=A100-80GB", "hardware.usd_per_hour=null", *overrides,
        workload={"arrival": trace_arrivals(tmp_path, [t * MS for t in arrivals_ms])},
    )  # fmt: skip


def test_a_replica_on_a_slice_takes_seven_sevenths_over_its_compute_share(tmp_path: Path) -> None:
    # 10 ms on the whole GPU is 70 ms on a 1g slice: request 1 waits for request 0's batch.
    r = rows(simulate(_mig_scenario(tmp_path, [0, 10, 200], "hardware.mig=1g.10gb")))
    np.testing.assert_allclose(r["start_s"] / MS, [0, 70, 200])
    np.testing.assert_allclose(r["end_s"] / MS, [70, 140, 270])
    # On a 3g slice: 10 × 7/3 ms.
    r = rows(simulate(_mig_scenario(tmp_path, [0, 10, 200], "hardware.mig=3g.40gb")))
    np.testing.assert_allclose(r["end_s"] / MS, [70 / 3, 140 / 3, 200 + 70 / 3])
    # Measured on the slice itself: unchanged.
    r = rows(simulate(_mig_scenario(tmp_path, [0, 10, 200], "hardware.mig={profile: 1g.10gb, service_scale: 1}")))
    np.testing.assert_allclose(r["end_s"] / MS, [10, 20, 210])


@pytest.mark.parametrize(("replicas", "gpus"), [(7, 1), (8, 2)])
def test_the_bill_is_per_physical_gpu(replicas: int, gpus: int) -> None:
    scenario = make_scenario(
        "duration_s=3600", "warmup_s=0", "hardware.name=A100-80GB", "hardware.usd_per_hour=null",
        "hardware.mig=1g.10gb", f"serving.replicas={replicas}", "workload.arrival.rate_rps=5",
    )  # fmt: skip
    summary = simulate(scenario).summary
    assert scenario.hardware.usd_per_hour == A100_80GB_USD_PER_H  # per GPU, not per slice
    assert summary["replicas"]["billed_gpus_mean"] == gpus
    assert summary["cost"]["usd"] == pytest.approx(gpus * A100_80GB_USD_PER_H)
    # Energy: every billed GPU idles at 15% of its 400 W TDP; a busy 1g slice adds 1/7 of the rest.
    busy_slices = summary["levels"]["busy_executors_mean"]
    joules = 3600 * (gpus * 60.0 + busy_slices * (400.0 - 60.0) / 7)
    assert summary["energy"]["joules"] == pytest.approx(joules, rel=1e-9)
    assert summary["service"]["service_scale"] == 7.0
    from capsim.report.tables import summary_table

    rows = dict(zip(summary_table(summary).columns[0].cells, summary_table(summary).columns[1].cells, strict=True))
    assert rows["GPUs billed (mean)"] == str(gpus)


@pytest.mark.slow  # three CLI processes (~7 s)
def test_bad_mig_input_is_one_line_exit_2(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nduration_s: 10\nworkload: {arrival: {kind: poisson, rate_rps: 1}}\n"
        "service: {kind: deterministic, mean_ms: 5}\nhardware: {name: A100-80GB, mig: 1g.5gb}\n"
        "serving: {mode: realtime, replicas: 1}\n"
    )
    cases = {
        (): "hardware.mig.profile: A100-80GB has no MIG profile '1g.5gb'",
        ("--set", "hardware.name=L4"): "hardware.mig: L4 has no MIG profiles in the catalogue",
        ("--set", "hardware.mig={profile: 1g.10gb, slices: 2}"): "hardware.mig.slices: unknown key",
    }
    for extra, message in cases.items():
        done = subprocess.run([sys.executable, "-m", "capsim.cli.main", "simulate", str(scenario), *extra],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr


def test_the_planner_bounds_a_mig_line_from_below_by_its_gpu_price_per_slice() -> None:
    # capsim plan prunes a line when its cost bound exceeds the best found: the bound must stay
    # below the real bill, ceil(n / 7) GPUs, or MIG lines would be pruned wrongly.
    from capsim import load_scenario
    from capsim.plan.rules import SafetyRules
    from capsim.plan.space import build_candidates

    scenario = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "small-models-mig-a100.yaml")
    rules = SafetyRules()
    _, (line,) = build_candidates(scenario, [(None, "A100-80GB")], [], rules, 64)
    assert line.usd_per_hour_per_replica() == pytest.approx(A100_80GB_USD_PER_H / 7)
    for replicas in (2, 7, 8, 13):
        assert line.cost_lower_bound(replicas, rules) <= gpus_for_slices(replicas, 7) * A100_80GB_USD_PER_H + 1e-12


def test_an_autoscaled_fleet_adds_slices_and_gpus_as_it_grows() -> None:
    # An HPA grows 2 replicas on 1g.10gb slices past 7, 14 and 21: each new seventh replica opens a
    # GPU. The bill is the integral of ceil(billed replicas / 7) over the window, from the run's own
    # record of every change of the billed replicas.
    duration_s, warmup_s = 900.0, 100.0
    scenario = make_scenario(
        f"duration_s={duration_s}", f"warmup_s={warmup_s}", "hardware.name=A100-80GB", "hardware.usd_per_hour=null",
        "hardware.mig=1g.10gb", "serving.replicas=2", "workload.arrival.rate_rps=500",
        "serving.autoscaling={kind: hpa, min_replicas: 2, max_replicas: 20, metric: utilization, target: 0.6}",
    )  # fmt: skip
    result = simulate(scenario)
    changes = result.replications[0].replica_changes["billed"]
    assert max(v for _, v in changes) > 14  # it did open a third GPU
    times = np.array([t for t, _ in changes] + [np.inf])
    gpus = np.array([-(-int(v) // 7) for _, v in changes])
    overlap = np.clip(np.minimum(times[1:], duration_s) - np.maximum(times[:-1], warmup_s), 0.0, None)
    gpu_hours = float((gpus * overlap).sum()) / 3600.0
    summary = result.summary
    assert summary["replicas"]["billed_gpus_mean"] == pytest.approx(gpu_hours * 3600.0 / (duration_s - warmup_s))
    assert summary["cost"]["usd"] == pytest.approx(gpu_hours * A100_80GB_USD_PER_H)


@pytest.mark.parametrize("where", ["hardware.mig", "serving.stages.ranking.hardware.mig"])
def test_mig_outside_a_realtime_fleet_is_refused(where: str) -> None:
    from capsim import load_scenario

    path = Path(__file__).resolve().parents[2] / "scenarios" / "search-pipeline-chain.yaml"
    with pytest.raises(CapsimInputError, match=r"modelled for serving\.mode realtime") as err:
        load_scenario(path, [f"{where}=1g.10gb"])
    assert "\n" not in str(err.value)
