"""`run_variants`: task order, one on_result per task, worker errors, Ctrl-C and bad clusters — the
same behaviour in this process, on local worker processes and on a Dask LocalCluster."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from capsim.errors import CapsimInputError
from capsim.plan.executor import Interrupted, VariantRunner, check_cluster, run_variants

# (jobs, cluster): in-process, a local process pool, a Dask LocalCluster.
WAYS = [(1, None), (2, None), (2, "local")]


def late_first(task: tuple[int, int]) -> int:
    """Finishes the earlier tasks last, so completion order is not task order."""
    index, total = task
    time.sleep(0.02 * (total - index))
    return index * index


def fails_on_three(index: int) -> int:
    if index == 3:
        raise CapsimInputError("expected something else", source="variant.yaml", field="serving.replicas")
    return index


def worker_pid(index: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def marks_and_sleeps(task: tuple[str, int]) -> int:
    """Leaves a file saying it started, then takes a while."""
    folder, index = task
    (Path(folder) / f"started-{index}").touch()
    time.sleep(0.3)
    return index


@pytest.mark.parametrize(("jobs", "cluster"), WAYS)
def test_results_come_back_in_task_order_with_one_on_result_per_task(jobs: int, cluster: str | None) -> None:
    tasks = [(i, 8) for i in range(8)]
    seen: list[tuple[int, int]] = []
    results = run_variants(late_first, tasks, jobs=jobs, cluster=cluster, on_result=lambda i, r: seen.append((i, r)))
    assert results == [i * i for i in range(8)]
    assert sorted(seen) == [(i, i * i) for i in range(8)]  # each index once, with its own result
    if jobs > 1:  # two at a time, later tasks shorter: some result arrives before an earlier task's
        assert [i for i, _ in seen] != list(range(8))


@pytest.mark.parametrize(("jobs", "cluster"), WAYS)
def test_a_worker_s_bad_input_comes_back_as_the_same_one_line_error(jobs: int, cluster: str | None) -> None:
    with pytest.raises(CapsimInputError) as exc:
        run_variants(fails_on_three, list(range(6)), jobs=jobs, cluster=cluster)
    assert exc.value.one_line() == "variant.yaml: serving.replicas: expected something else"
    assert exc.value.field == "serving.replicas"


@pytest.mark.parametrize(("jobs", "cluster"), WAYS)
def test_ctrl_c_keeps_what_finished_and_cancels_the_rest(tmp_path: Path, jobs: int, cluster: str | None) -> None:
    total = 24

    def stop_after_two(index: int, result: int) -> None:
        if len(list(tmp_path.glob("done-*"))) == 1:  # the second result in: Ctrl-C
            raise KeyboardInterrupt
        (tmp_path / f"done-{index}").touch()

    tasks = [(str(tmp_path), i) for i in range(total)]
    with pytest.raises(Interrupted) as exc:
        run_variants(marks_and_sleeps, tasks, jobs=jobs, cluster=cluster, on_result=stop_after_two)
    assert len(exc.value.finished) == 2 and exc.value.total == total
    assert all(exc.value.finished[i] == i for i in exc.value.finished)
    time.sleep(0.5)  # anything not cancelled would go on starting tasks meanwhile
    started = len(list(tmp_path.glob("started-*")))
    assert started <= 2 + 2 * jobs < total  # the two kept, those running then, and nothing after


def pid_then_sleep(task: tuple[str, int]) -> int:
    """Leaves its worker's pid in a file, then takes far longer than the test waits."""
    folder, index = task
    (Path(folder) / f"pid-{index}").write_text(str(os.getpid()))
    time.sleep(60)
    return index


def test_ctrl_c_ends_the_local_workers_still_running_a_task(tmp_path: Path) -> None:
    def ctrl_c_once_both_run(*_: object) -> None:
        if len(list(tmp_path.glob("pid-*"))) < 2:
            signal.alarm(1)  # not yet: look again in a second
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c_once_both_run)
    signal.alarm(1)
    try:
        with pytest.raises(Interrupted) as exc:
            run_variants(pid_then_sleep, [(str(tmp_path), i) for i in range(4)], jobs=2, cluster=None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert exc.value.finished == {}
    pids = [int(path.read_text()) for path in tmp_path.glob("pid-*")]
    assert len(pids) == 2
    for pid in pids:  # ended and reaped at once, not left to finish their minute
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_an_unreachable_scheduler_is_one_line_naming_cluster() -> None:
    with pytest.raises(CapsimInputError) as exc:
        run_variants(late_first, [(0, 1)], jobs=1, cluster="tcp://127.0.0.1:1")
    line = exc.value.one_line()
    assert line.startswith("--cluster: cannot reach the Dask scheduler at tcp://127.0.0.1:1")
    assert "\n" not in line


@pytest.mark.parametrize("address", ["127.0.0.1:8786", "tcp://", "cluster", ""])
def test_a_malformed_cluster_is_refused_before_anything_runs(address: str) -> None:
    with pytest.raises(CapsimInputError, match="expected 'local' or a Dask scheduler address"):
        check_cluster(address)


def test_no_tasks_start_no_cluster() -> None:
    assert run_variants(late_first, [], jobs=2, cluster="tcp://127.0.0.1:1") == []  # no connection tried


@pytest.mark.parametrize("cluster", [None, "local"])
def test_a_runner_keeps_its_workers_across_rounds_and_after_a_failed_one(cluster: str | None) -> None:
    with VariantRunner(jobs=2, cluster=cluster) as runner:
        pids = set()
        for _ in range(3):
            pids |= set(runner.run(worker_pid, list(range(6))))
        assert len(pids) <= 2 and os.getpid() not in pids  # the same two worker processes every round
        with pytest.raises(CapsimInputError):
            runner.run(fails_on_three, list(range(6)))
        assert runner.run(fails_on_three, [0, 1, 2]) == [0, 1, 2]  # the next round still runs
