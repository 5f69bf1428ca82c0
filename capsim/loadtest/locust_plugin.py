"""capsim's recording attached to Locust: imported only inside Locust processes.

This module (with the locustfiles next to it) is the only code in capsim that imports locust or
gevent: `import locust` monkey-patches the standard library, so capsim itself always runs Locust
as a subprocess and talks to it through files.

Roles. The *coordinator* is the Locust master (or the single local process); it reads the run
configuration written by `capsim loadtest` (path in $CAPSIM_LOADTEST_CONFIG), hands every worker its
share of the open-loop schedule and one common start time t0, and writes the rows workers send
back as parquet parts. A *worker* (a Locust worker, or the same local process) records every request
through Locust's `request` event — so a team's own locustfile gets the same recording — and ships
its rows to the coordinator every second. Talking through Locust's own messages, rather than files,
lets workers on other machines (`--master-host`) take part without a shared file system.

Messages: worker → coordinator `capsim_hello`, `capsim_records`, `capsim_done`;
coordinator → worker `capsim_config`, `capsim_flush`. In a single local process Locust delivers
them as direct calls.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from locust import events
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from capsim.loadtest.parts import write_json_atomic, write_request_part
from capsim.loadtest.records import NO_SERVER_TIMES, RequestRecorder, request_kind, server_times

CONFIG_ENV = "CAPSIM_LOADTEST_CONFIG"
PARENT_ENV = "CAPSIM_PARENT_PID"
HELLO_WAIT_S = 15.0  # how long the coordinator waits for all expected workers to introduce themselves
FLUSH_WAIT_S = 5.0  # how long the coordinator waits for workers' last rows when the run stops
# When the run is stopped, requests in flight get this long to answer (a response due in a few ms is a
# measurement); the rest are recorded as interrupted. Well inside FLUSH_WAIT_S.
IN_FLIGHT_GRACE_S = 1.0
logger = logging.getLogger("capsim.loadtest")


class WorkerState:
    """Everything one worker process knows about the run (module-level: one per process)."""

    def __init__(self) -> None:
        self.config: AsyncResult = AsyncResult()
        self.recorder = RequestRecorder()
        self.seq = 0
        self.final_sent = False
        self.stopping = False  # set when the coordinator asks for a final flush: stop dispatching
        self.counters: dict[str, Any] = {
            "scheduled": 0,
            "dispatched": 0,
            "cap_hits": 0,
            "in_flight_max": 0,
            "cpu_percent_max": 0.0,
        }
        self.last_hist_s = 0.0
        self.last_cpu = (time.process_time(), time.monotonic())
        self.cpu_start: tuple[float, float] | None = None  # set when the schedule starts
        self.flusher: Any = None
        self.inference_names: frozenset[str] = frozenset()  # names marked as inference (request_kind)
        # The open-loop sender (locust_senders), registered by the locustfile: the final flush asks it
        # about requests still in flight. None for closed-loop and custom locustfiles.
        self.sender: Any = None
        self.final_lock = Semaphore()


class CoordinatorState:
    """The coordinator's view: run configuration, workers in order of arrival, who has finished."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.parts_dir = Path(config["parts_dir"])
        self.hellos: list[str] = []
        self.assigned: dict[str, int] = {}
        self.final: set[int] = set()
        self.done: set[int] = set()
        self.quitting = False


WORKER = WorkerState()
COORD: CoordinatorState | None = None


def _runner_is_coordinator(runner: Any) -> bool:
    return isinstance(runner, MasterRunner | LocalRunner)


def _runner_is_worker(runner: Any) -> bool:
    return isinstance(runner, WorkerRunner | LocalRunner)


# ---------------------------------------------------------------- worker side


def wait_config(timeout_s: float = 60.0) -> dict[str, Any]:
    """The run configuration for this worker (blocks the calling greenlet until it has arrived)."""
    return WORKER.config.get(timeout=timeout_s)


def _send_records(environment: Any, final: bool) -> None:
    rows = WORKER.recorder.drain_rows()
    now = time.time()
    data: dict[str, Any] = {"worker": WORKER.recorder.worker, "seq": WORKER.seq, "rows": rows, "final": final}
    WORKER.seq += 1
    runner = environment.runner
    # This process's CPU use since the last flush (Locust's own figure updates only every 5 s).
    cpu_s, wall_s = time.process_time(), time.monotonic()
    interval_s = wall_s - WORKER.last_cpu[1]
    cpu = 100.0 * (cpu_s - WORKER.last_cpu[0]) / max(interval_s, 1e-6)
    if interval_s >= 0.5:  # a short last interval (final flush) says little and reads high
        WORKER.last_cpu = (cpu_s, wall_s)
        if WORKER.config.ready():
            WORKER.counters["cpu_percent_max"] = max(WORKER.counters["cpu_percent_max"], cpu)
    if WORKER.cpu_start is not None:
        WORKER.counters["cpu_percent_mean"] = round(
            100.0 * (cpu_s - WORKER.cpu_start[0]) / max(wall_s - WORKER.cpu_start[1], 1e-6), 1)
    hist_every_s = float(WORKER.config.value.get("hist_interval_s", 5.0)) if WORKER.config.ready() else 5.0
    if final or now - WORKER.last_hist_s >= hist_every_s:
        WORKER.last_hist_s = now
        data["status"] = {
            "worker": WORKER.recorder.worker,
            "start_s": WORKER.recorder.start_s,
            "warmup_s": WORKER.recorder.warmup_s,
            "recorded": WORKER.recorder.recorded,
            "final": final,
            "updated_s": now,
            **WORKER.counters,
            "cpu_percent": cpu,
            "histograms": WORKER.recorder.histograms(),
        }
    if final:
        WORKER.final_sent = True
    runner.send_message("capsim_records", data)


def _flush_loop(environment: Any, interval_s: float) -> None:
    while not WORKER.final_sent:
        gevent.sleep(interval_s)
        if not WORKER.final_sent:
            _send_records(environment, final=False)


def final_flush(environment: Any) -> None:
    """Stop sending and ship this worker's last rows, every request sent so far among them.

    Requests still in flight get `IN_FLIGHT_GRACE_S` to answer; those that do not are recorded as
    `interrupted` (send time, no latency) rather than lost. Called on the coordinator's flush
    request, when Locust stops the test, and when the schedule is done; the lock makes a second
    caller wait for the first, so that no caller returns before the last rows have gone.
    """
    WORKER.stopping = True
    with WORKER.final_lock:
        if WORKER.final_sent:
            return
        sender = WORKER.sender
        if sender is not None:
            deadline = time.monotonic() + IN_FLIGHT_GRACE_S
            while sender.in_flight() and time.monotonic() < deadline:
                gevent.sleep(0.005)
            sender.abandon()
        _send_records(environment, final=True)


def finish(environment: Any) -> None:
    """Called by a worker's user when its schedule is done and its requests have drained."""
    final_flush(environment)
    environment.runner.send_message("capsim_done", {"worker": WORKER.recorder.worker})


def reset_cpu_meter() -> None:
    """Start measuring this worker's CPU use now (start-up work is not the load's cost)."""
    WORKER.last_cpu = WORKER.cpu_start = (time.process_time(), time.monotonic())
    WORKER.counters["cpu_percent_max"] = 0.0


def note_dispatch(cap_hit: bool, in_flight: int) -> None:
    """Count one scheduled send (and whether the in-flight cap held it back)."""
    WORKER.counters["dispatched"] += 1
    if cap_hit:
        WORKER.counters["cap_hits"] += 1
    if in_flight > WORKER.counters["in_flight_max"]:
        WORKER.counters["in_flight_max"] = in_flight


def _on_config(environment: Any, msg: Any) -> None:
    config = dict(msg.data)
    WORKER.inference_names = frozenset(config.get("inference_names") or ())
    WORKER.recorder.configure(float(config["start_s"]), float(config["warmup_s"]), worker=int(config["index"]))
    WORKER.counters["scheduled"] = len(config.get("schedule") or [])
    WORKER.config.set(config)
    WORKER.last_cpu = (time.process_time(), time.monotonic())
    if WORKER.flusher is None:
        WORKER.flusher = gevent.spawn(_flush_loop, environment, float(config.get("flush_interval_s", 1.0)))


def _on_flush(environment: Any, msg: Any) -> None:
    # Its own greenlet: the grace for requests in flight must not hold up Locust's message loop.
    WORKER.stopping = True
    gevent.spawn(final_flush, environment)


def _error_text(exception: BaseException | None) -> str | None:
    if exception is None:
        return None
    return f"{type(exception).__name__}: {exception}"[:300]


def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    response: Any = None,
    context: dict[str, Any] | None = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    **kwargs: Any,
) -> None:
    sent_s = start_time if start_time is not None else time.time() - response_time / 1000.0
    intended_s = (context or {}).get("capsim_intended_s", sent_s)
    status = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
    headers = getattr(response, "headers", None)
    server = server_times(headers.get) if headers is not None and hasattr(headers, "get") else NO_SERVER_TIMES
    kind = request_kind(name, kwargs.get("url"), WORKER.inference_names)
    WORKER.recorder.record(
        intended_s, sent_s, float(response_time), status, int(response_length or 0), _error_text(exception), name,
        server, kind,
    )


# ---------------------------------------------------------------- coordinator side


def _on_hello(environment: Any, msg: Any) -> None:
    assert COORD is not None
    node = msg.node_id
    if node not in COORD.hellos:
        COORD.hellos.append(node)


def _on_records(environment: Any, msg: Any) -> None:
    assert COORD is not None
    data = msg.data
    worker = int(data["worker"])
    write_request_part(COORD.parts_dir, worker, int(data["seq"]), data["rows"])
    if data.get("status") is not None:
        write_json_atomic(COORD.parts_dir / f"worker-{worker:03d}.json", data["status"])
    if data.get("final"):
        COORD.final.add(worker)


def _on_done(environment: Any, msg: Any) -> None:
    assert COORD is not None
    COORD.done.add(int(msg.data["worker"]))
    if len(COORD.done) >= len(COORD.assigned) and not COORD.quitting:
        COORD.quitting = True
        logger.info("capsim: all %d workers finished their schedules", len(COORD.done))
        gevent.spawn(environment.runner.quit)  # a fresh greenlet: quit() kills the runner's own


def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if COORD is None or not _runner_is_coordinator(runner):
        return
    expected = int(COORD.config.get("expected_workers", 1))
    deadline = time.monotonic() + HELLO_WAIT_S
    while len(COORD.hellos) < expected and time.monotonic() < deadline:
        gevent.sleep(0.05)
    workers = list(COORD.hellos)
    if not workers:
        logger.error("capsim: no worker introduced itself; nothing will be recorded")
        return
    config = COORD.config
    start_s = time.time() + float(config.get("start_lead_s", 1.0))
    schedule: list[float] = []
    tokens: list[list[int]] = []
    if config.get("schedule_path"):
        import numpy as np

        schedule = np.load(config["schedule_path"]).tolist()
        if config.get("tokens_path"):  # streamed LLM requests: (input, output) tokens of each arrival
            tokens = np.load(config["tokens_path"]).tolist()
    shared = {k: v for k, v in config.items() if k not in ("schedule_path", "tokens_path", "parts_dir")}
    for index, node in enumerate(workers):
        COORD.assigned[node] = index
        # Round-robin split: the union of the workers' schedules is exactly the drawn process.
        mine = schedule[index :: len(workers)] if schedule else []
        payload = {**shared, "index": index, "n_workers": len(workers), "start_s": start_s, "schedule": mine,
                   "tokens": tokens[index :: len(workers)]}
        runner.send_message("capsim_config", payload, client_id=None if isinstance(runner, LocalRunner) else node)
    write_json_atomic(
        COORD.parts_dir / "coordinator.json", {"start_s": start_s, "workers": len(workers), "nodes": workers}
    )


def _collect_final_rows(environment: Any) -> None:
    """Ask every worker that has not sent its last rows to do so, and wait a little for them."""
    if COORD is None:
        return
    runner = environment.runner
    missing = {node: i for node, i in COORD.assigned.items() if i not in COORD.final}
    for node in missing:
        runner.send_message("capsim_flush", {}, client_id=None if isinstance(runner, LocalRunner) else node)
    deadline = time.monotonic() + FLUSH_WAIT_S
    while any(i not in COORD.final for i in missing.values()) and time.monotonic() < deadline:
        gevent.sleep(0.05)


def _on_test_stopping(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        WORKER.stopping = True
        if WORKER.config.ready():
            final_flush(environment)
    if _runner_is_coordinator(runner):
        _collect_final_rows(environment)


def _on_quitting(environment: Any, **_kwargs: Any) -> None:
    # SIGTERM/SIGINT to a Locust process: keep what was measured.
    _on_test_stopping(environment)


def _warm_up(parts_dir: Path) -> None:
    """Pay first-call costs (parquet writer and codec setup, numpy paths, histogram encoding)
    before the schedule starts: the first write otherwise stalls the event loop for ~0.2 s."""
    recorder = RequestRecorder()
    recorder.configure(0.0, 0.0)
    recorder.record(0.0, 0.0, 1.0, 200, 1, None, "warm-up")
    rows = recorder.drain_rows()
    recorder.histograms()
    path = write_request_part(parts_dir, 999, 0, rows)
    if path is not None:
        path.unlink()


def _watch_parent(environment: Any, parent_pid: int) -> None:
    """Quit when the `capsim loadtest` that started this process is gone (killed with SIGKILL, say):
    Locust runs in its own session and would otherwise keep loading the target until --run-time."""
    while True:
        gevent.sleep(1.0)
        if os.getppid() != parent_pid:
            logger.warning("capsim: the parent process %d is gone; stopping", parent_pid)
            environment.runner.quit()
            return


@events.init.add_listener
def _on_init(environment: Any, **_kwargs: Any) -> None:
    global COORD
    runner = environment.runner
    if runner is None:
        return
    if _runner_is_coordinator(runner):
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise RuntimeError(f"capsim's locust plugin needs ${CONFIG_ENV} (run it through `capsim loadtest`)")
        COORD = CoordinatorState(json.loads(Path(path).read_text(encoding="utf-8")))
        COORD.parts_dir.mkdir(parents=True, exist_ok=True)
        _warm_up(COORD.parts_dir)
        runner.register_message("capsim_hello", _on_hello)
        runner.register_message("capsim_records", _on_records)
        runner.register_message("capsim_done", _on_done)
    if _runner_is_worker(runner):
        if COORD is None:
            recorder = RequestRecorder()
            recorder.configure(0.0, 0.0)
            recorder.record(0.0, 0.0, 1.0, 200, 1, None, "warm-up")
            recorder.drain_rows()
            recorder.histograms()
        runner.register_message("capsim_config", _on_config)
        runner.register_message("capsim_flush", _on_flush)
        environment.events.request.add_listener(_on_request)
        runner.send_message("capsim_hello", {"pid": os.getpid()})
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit():
        gevent.spawn(_watch_parent, environment, int(parent))
    environment.events.test_start.add_listener(_on_test_start)
    environment.events.test_stopping.add_listener(_on_test_stopping)
    environment.events.quitting.add_listener(_on_quitting)
