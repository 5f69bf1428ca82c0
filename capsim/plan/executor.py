"""One way to run many independent variants: in this process, on local worker processes, or on Dask.

`run_variants(run_one, tasks, jobs=..., cluster=...)` calls `run_one(task)` for every task and returns
the results in task order, whatever the order in which they finish. Sweeps and plans both go through
it, so every rule below holds for both:

* `cluster=None`: `jobs` local worker processes (`concurrent.futures`, no dependency beyond the base
  install); `jobs=1` runs in this process, without a pool.
* `cluster="local"`: a Dask `LocalCluster` of `jobs` worker processes, one thread each (the data
  planes are single-threaded compiled loops; a second thread per worker would only contend for the GIL
  in the SimPy control plane).
* `cluster="tcp://HOST:PORT"` (any `scheme://` address Dask knows): an existing Dask scheduler; its
  workers are whatever the cluster has, so `jobs` is not used. A scheduler that cannot be reached
  within `CONNECT_TIMEOUT_S`, or that has no worker by then, is bad input naming `--cluster`, not a
  traceback (nor a run waiting for ever).

Dask is an optional extra (`pip install 'capsim[cluster]'`), imported only when a cluster is asked for.
`run_one` must be a module-level function and every task picklable (scenarios are pydantic models, which
are): Dask and the process pool both send them to other processes by pickling. On a remote cluster the
workers unpickle `run_one` by name, so they need the same capsim version installed, and any file a
task names (a trace, a profile) at the same path; each worker process compiles the data planes once
(numba's on-disk cache, `cache=True`, is shared by the workers of one machine) and reuses them for
every variant it runs.

Results stream: `on_result(index, result)` is called in this process as each task finishes, so a
caller can show progress or write a row at once. A task that raises stops the run: the tasks not
finished are cancelled (local workers still running one are ended) and the error is raised here; a
`CapsimInputError` stays one (one line for the CLI), whichever process raised it. Ctrl-C cancels what
has not finished and raises `Interrupted`, a `KeyboardInterrupt` that carries the results already in,
so the caller can keep them (a sweep writes them, marked partial); the local worker processes ignore
Ctrl-C themselves, so that this process alone decides what it means and none prints a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from capsim.errors import CapsimInputError

T = TypeVar("T")
R = TypeVar("R")

CONNECT_TIMEOUT_S = 10.0
"""How long to try to reach a Dask scheduler before calling its address bad."""

CLUSTER_SOURCE = "--cluster"
"""What a cluster error names: the flag the address came from."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `run_variants`: `finished` maps each task index that completed to its result."""

    def __init__(self, finished: dict[int, Any], total: int) -> None:
        super().__init__(f"interrupted after {len(finished)} of {total} tasks")
        self.finished = finished
        self.total = total


def check_cluster(cluster: str | None) -> None:
    """Refuse a `--cluster` value that is neither `local` nor a scheduler address (`tcp://HOST:PORT`)."""
    if cluster is None or cluster == "local":
        return
    scheme, sep, rest = cluster.partition("://")
    if not sep or not scheme or not rest:
        raise CapsimInputError(f"expected 'local' or a Dask scheduler address such as tcp://HOST:8786, got "
                               f"'{cluster}'", source=CLUSTER_SOURCE)  # fmt: skip


def run_variants(
    run_one: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int,
    cluster: str | None,
    on_result: Callable[[int, R], None] | None = None,
) -> list[R]:
    """Results in task order; on_result(index, result) as each finishes.

    `jobs` is the number of worker processes (local pool or LocalCluster; ignored by a remote
    cluster). Raises `Interrupted` on Ctrl-C, the first task's error if one fails, and
    `CapsimInputError` for a bad or unreachable `cluster`. The workers are started for this call and
    stopped after it; a caller with several rounds of tasks keeps them with a `VariantRunner`.
    """
    _check_jobs(jobs)
    with VariantRunner(jobs=min(jobs, max(1, len(tasks))), cluster=cluster) as runner:
        return runner.run(run_one, tasks, on_result)


def _check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")


class VariantRunner:
    """`run_variants` for several rounds of tasks on the same workers: the local process pool, the
    LocalCluster or the connection to a scheduler starts at the first round that needs it and stays
    until `close()` (or the end of a `with` block), so a search that sends out many small rounds does
    not pay a cluster's start (seconds) and its workers' imports and compile-cache loads each round.

    A round that fails or is interrupted ends the local worker processes it was using (the next round
    starts new ones); a Dask cluster stays, its unfinished tasks cancelled.
    """

    def __init__(self, *, jobs: int, cluster: str | None) -> None:
        check_cluster(cluster)
        _check_jobs(jobs)
        self.jobs = jobs
        self.cluster = cluster
        self._pool: ProcessPoolExecutor | None = None
        self._client: Any = None
        self._local: Any = None

    def run(
        self, run_one: Callable[[T], R], tasks: Sequence[T], on_result: Callable[[int, R], None] | None = None
    ) -> list[R]:
        """Results in task order; on_result(index, result) as each finishes (see `run_variants`)."""
        if not tasks:  # no cluster started, no connection made, for nothing to run
            return []
        finished: dict[int, R] = {}

        def collect(index: int, result: R) -> None:
            finished[index] = result
            if on_result is not None:
                on_result(index, result)

        try:
            if self.cluster is not None:
                self._run_on_dask(run_one, tasks, collect)
            elif self.jobs == 1 or len(tasks) == 1:
                for index, task in enumerate(tasks):
                    collect(index, run_one(task))
            else:
                self._run_on_processes(run_one, tasks, collect)
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted):
                raise
            raise Interrupted(dict(finished), len(tasks)) from None
        return [finished[index] for index in range(len(tasks))]

    def _run_on_processes(
        self, run_one: Callable[[T], R], tasks: Sequence[T], collect: Callable[[int, R], None]
    ) -> None:
        """Every task on the pool of local processes (started at the first such round); `collect` as each finishes."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=_ignore_interrupts)
        pool = self._pool
        clean = False
        try:
            index_of: dict[Future[R], int] = {pool.submit(run_one, task): i for i, task in enumerate(tasks)}
            pending = set(index_of)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=index_of.__getitem__):
                    collect(index_of[future], future.result())
            clean = True
        finally:
            if not clean:  # an error or Ctrl-C: the variants still running are not waited for
                self._pool = None
                _stop_now(pool)

    def _run_on_dask(self, run_one: Callable[[T], R], tasks: Sequence[T], collect: Callable[[int, R], None]) -> None:
        """Every task on the Dask cluster; `collect` as each finishes."""
        client = self._dask_client()  # first: it says which package is missing, when one is
        from distributed import as_completed

        futures = []
        try:
            # pure=False: two equal tasks (a variant listed twice) are still two runs with their own results.
            futures = client.map(run_one, list(tasks), pure=False)
            index_of = {future.key: i for i, future in enumerate(futures)}
            for future in as_completed(futures, loop=client.loop):
                collect(index_of[future.key], future.result())
        finally:
            if futures:
                client.cancel(futures)  # those not finished, when an error or Ctrl-C stopped the round

    def _dask_client(self) -> Any:
        """The Dask client, started at the first round (`local`: with a LocalCluster of `jobs` processes)."""
        if self._client is not None:
            return self._client
        import logging

        import dask  # noqa: F401  # first: without the extra, the one-line error names dask, the package to install
        from distributed import Client, LocalCluster

        if self.cluster != "local":
            self._client = _connect(Client, str(self.cluster))
            return self._client
        # On 127.0.0.1 only; no dashboard, and the scheduler's HTTP routes on a free port (by default
        # they take 8787, or warn that it is taken); no worker log: a task's error comes back through
        # its future (one line for bad input), and the worker would print it again, with its
        # traceback, as 'Compute Failed'.
        with _interrupts_ignored():  # the worker processes start with Ctrl-C ignored: see _ignore_interrupts
            self._local = LocalCluster(
                n_workers=self.jobs, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                silence_logs=logging.CRITICAL,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            )  # fmt: skip
        self._client = Client(self._local, set_as_default=False)
        return self._client

    def close(self) -> None:
        """Stop the workers this runner started (a remote cluster's workers stay: only the connection goes)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        client, self._client = self._client, None
        if client is not None:
            client.close()
        local, self._local = self._local, None
        if local is not None:
            local.close()

    def __enter__(self) -> VariantRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _ignore_interrupts() -> None:
    # Ctrl-C goes to the whole foreground process group; only the parent decides what it means
    # (keep what finished, cancel the rest), so a worker must not die half-way through a result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _interrupts_ignored() -> Iterator[None]:
    """Ctrl-C ignored while processes are started (a disposition of SIG_IGN survives their exec, and
    asyncio then leaves it alone), then restored here; a no-op off the main thread, where Python
    cannot change signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel a pool's queued tasks and end its worker processes now, not after their running tasks
    (Python 3.14 has `terminate_workers()`; before it, the pool's process table is the only handle on
    them, and `shutdown()` clears it: it is read first)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def _connect(client_type: Any, address: str) -> Any:
    """A Dask client on the scheduler at `address`; one line naming --cluster when it cannot be reached."""
    try:
        _probe(address)
        client = client_type(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CapsimInputError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S:.0f} s "
                               f"({reason}); start one with 'dask scheduler' and 'dask worker ADDRESS', or use "
                               "--cluster local", source=CLUSTER_SOURCE) from None  # fmt: skip
    try:  # a scheduler without workers would leave the run waiting for ever at 0 done
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        client.close()
        raise CapsimInputError(f"the Dask scheduler at {address} has no workers after {CONNECT_TIMEOUT_S:.0f} s; "
                               f"start some with 'dask worker {address}'", source=CLUSTER_SOURCE) from None  # fmt: skip
    return client


def _probe(address: str) -> None:
    """For a `tcp://HOST:PORT` address, one plain connection first: a refused port fails at once (Dask's
    client retries a refused connection until its timeout)."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp":
        return
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected tcp://HOST:PORT")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
        pass


def default_jobs() -> int:
    """Worker processes when none is asked for: one per CPU."""
    return os.cpu_count() or 1
