"""Time-slicing and MPS (docs/model.md "GPU sharing"): hand-derived traces where a batch that starts
while other replicas of its GPU are busy is slowed exactly by `rules.interference_factor`
(1 + alpha × busy co-runners), and the bill counts whole GPUs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capsim import simulate
from capsim.errors import CapsimInputError
from tests.scenario_helpers import make_scenario, rows, trace_arrivals

MS = 1e-3


def run(tmp_path: Path, arrivals_ms: list[float], *overrides: str) -> dict[str, np.ndarray]:
    scenario = make_scenario("duration_s=1", "serving.load_balancer=round_robin", *overrides,
                             workload={"arrival": trace_arrivals(tmp_path, [t * MS for t in arrivals_ms])})  # fmt: skip
    return rows(simulate(scenario))


def test_time_slicing_two_replicas_on_one_gpu(tmp_path: Path) -> None:
    # 10 ms batches; round robin alternates replica 0 and 1, both on GPU 0.
    # 0: r0 alone -> 10.  5: r1 while r0 busy -> 2 x 10 = 20, ends 25.  30: r0, r1 idle -> 40.
    # 32: r1 while r0 busy -> 52.  45: r0 while r1 busy (until 52) -> 65.  70: r1 alone -> 80.
    r = run(tmp_path, [0, 5, 30, 32, 45, 70], "serving.replicas=2",
            "hardware.sharing={kind: time_slicing, replicas_per_gpu: 2}")  # fmt: skip
    assert r["replica"].tolist() == [0, 1, 0, 1, 0, 1]
    np.testing.assert_allclose(r["start_s"] / MS, [0, 5, 30, 32, 45, 70])
    np.testing.assert_allclose(r["end_s"] / MS, [10, 25, 40, 52, 65, 80])


def test_mps_slows_by_alpha_per_busy_corunner(tmp_path: Path) -> None:
    # The same arrivals under MPS with alpha 0.5: an overlapping batch takes 15 ms
    # (45: r0 while r1's batch of 32..47 runs -> 60).
    r = run(tmp_path, [0, 5, 30, 32, 45, 70], "serving.replicas=2",
            "hardware.sharing={kind: mps, replicas_per_gpu: 2, alpha: 0.5}")  # fmt: skip
    np.testing.assert_allclose(r["end_s"] / MS, [10, 20, 40, 47, 60, 80])


def test_only_replicas_on_the_same_gpu_interfere(tmp_path: Path) -> None:
    # Four replicas, two per GPU: replicas 0, 1 on GPU 0 and 2, 3 on GPU 1.
    # 0: r0 -> 10.  1: r1, r0 busy -> 21.  2: r2, r3 idle -> 12.  3: r3, r2 busy -> 23.
    r = run(tmp_path, [0, 1, 2, 3], "serving.replicas=4",
            "hardware.sharing={kind: time_slicing, replicas_per_gpu: 2}")  # fmt: skip
    assert r["replica"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(r["end_s"] / MS, [10, 21, 12, 23])
    # Three co-runners busy: a fourth replica on the same GPU takes 4 x 10 ms.
    r = run(tmp_path, [0, 1, 2, 3], "serving.replicas=4",
            "hardware.sharing={kind: time_slicing, replicas_per_gpu: 4}")  # fmt: skip
    np.testing.assert_allclose(r["end_s"] / MS, [10, 21, 32, 43])


def test_without_sharing_nothing_is_slowed(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 2, 3], "serving.replicas=4")
    np.testing.assert_allclose(r["end_s"] / MS, [10, 11, 12, 13])


@pytest.mark.parametrize(("replicas", "gpus"), [(2, 1), (3, 2), (4, 2)])
def test_shared_gpus_are_billed_whole(replicas: int, gpus: int) -> None:
    scenario = make_scenario("duration_s=3600", f"serving.replicas={replicas}", "hardware.usd_per_hour=2.0",
                             "hardware.sharing={kind: time_slicing, replicas_per_gpu: 2}")  # fmt: skip
    summary = simulate(scenario).summary
    assert summary["replicas"]["billed_gpus_mean"] == gpus
    assert summary["cost"]["usd"] == pytest.approx(2.0 * gpus)


@pytest.mark.parametrize(
    ("sharing", "message"),
    [
        ("{kind: mps, replicas_per_gpu: 2}", "MPS needs alpha"),
        ("{kind: time_slicing, replicas_per_gpu: 2, alpha: 0.5}", "leave alpha out"),
        ("{kind: sliced, replicas_per_gpu: 2}", "hardware.sharing.kind"),
    ],
)
def test_bad_sharing_is_a_one_line_error(sharing: str, message: str) -> None:
    with pytest.raises(CapsimInputError, match=message) as err:
        make_scenario(f"hardware.sharing={sharing}")
    assert "\n" not in str(err.value)


def test_mig_and_sharing_together_are_refused() -> None:
    with pytest.raises(CapsimInputError, match="mig or sharing, not both"):
        make_scenario("hardware.mig={profile: x, slices_per_gpu: 2, compute_share: 0.5}",
                      "hardware.sharing={kind: time_slicing, replicas_per_gpu: 2}")  # fmt: skip


def test_capacity_estimate_counts_a_saturated_gpu_once() -> None:
    from capsim.stability import estimate_capacity

    # 10 ms batches of 1: 100 rps per replica alone. Time-slicing 4 on a GPU: 4 replicas carry one
    # GPU's 100 rps (each batch 4x as long when all are busy); MPS with alpha 0.25: 4 / 1.75 x 100.
    alone = estimate_capacity(make_scenario("serving.replicas=4")).capacity_rps
    sliced = make_scenario("serving.replicas=4", "hardware.sharing={kind: time_slicing, replicas_per_gpu: 4}")
    mps = make_scenario("serving.replicas=4", "hardware.sharing={kind: mps, replicas_per_gpu: 4, alpha: 0.25}")
    assert alone == pytest.approx(400.0)
    assert estimate_capacity(sliced).capacity_rps == pytest.approx(100.0)
    assert estimate_capacity(mps).capacity_rps == pytest.approx(400.0 / 1.75)


def test_shared_gpu_energy_is_idle_per_gpu_plus_busy_time_bounded_by_the_gpus() -> None:
    # 3 replicas, 2 per GPU: 2 GPUs idle at 30 W; busy GPU-time min(busy replicas, 2) at 300 - 30 W more.
    scenario = make_scenario("duration_s=600", "serving.replicas=3", "workload.arrival.rate_rps=50",
                             "hardware.tdp_w=300", "hardware.idle_w=30",
                             "hardware.sharing={kind: time_slicing, replicas_per_gpu: 2}")  # fmt: skip
    summary = simulate(scenario).summary
    busy = summary["levels"]["busy_executors_mean"]
    assert 0 < busy < 2
    assert summary["energy"]["joules"] == pytest.approx(600 * (2 * 30.0 + busy * 270.0), rel=1e-9)
