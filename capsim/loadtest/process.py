"""Starting, watching and stopping the Locust processes of one step.

Locust always runs as separate processes (`python -m locust`): importing it would monkey-patch this
process with gevent. A master plus N local workers (and room for remote ones that connect with
`--master-host`); the master only coordinates and writes, the workers send. They run in their own session so that a
Ctrl-C in the terminal reaches only capsim, which then stops them in order: the master first (it
collects the workers' last rows), the workers after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_S = 15.0


SELECT_MAX_CONNECTIONS = 900  # select() handles file descriptors below 1024 only


def gevent_backend_env(max_in_flight: int) -> dict[str, str]:
    """GEVENT_BACKEND for the Locust processes: libev's `select` backend when the connections fit.

    select() takes its timeout in microseconds, epoll in whole milliseconds: with select, timers
    fire within ~0.1 ms and the open-loop scheduler can sleep almost to each send time instead of
    spinning through the last millisecond. select() only handles file descriptors below 1024, so
    with more than 900 requests in flight per worker the default (epoll) stays. libev's io_uring
    backend would be as precise, but it aborts under load ("io_uring_enter did not consume all
    sqes"), so it is not used. A backend set by the user in the environment is left alone.
    """
    if "GEVENT_BACKEND" in os.environ or max_in_flight > SELECT_MAX_CONNECTIONS:
        return {}
    return {"GEVENT_BACKEND": "select"}


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocustLaunch:
    """What to start: locustfiles, target, users, run-time bound and the distributed layout."""

    locustfiles: list[Path]
    host: str
    config_path: Path
    log_dir: Path
    users: int
    spawn_rate: float
    run_time_s: float
    local_workers: int = 1
    remote_workers: int = 0
    master_bind_host: str = "127.0.0.1"
    master_port: int | None = None
    label: str = "step"
    max_in_flight: int = 1000
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _base(self) -> list[str]:
        files = ",".join(str(p) for p in self.locustfiles)
        return [sys.executable, "-m", "locust", "-f", files, "--loglevel", "INFO"]

    def _spawn(self, args: list[str], role: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{self.label}-{role}.log", "wb")  # noqa: SIM115  (owned by the child)
        env = {**os.environ, **gevent_backend_env(self.max_in_flight), "CAPSIM_LOADTEST_CONFIG": str(self.config_path),
               "CAPSIM_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        """Start the master (or the single process) and the local workers."""
        common = ["--headless", "--host", self.host, "-u", str(self.users), "-r", f"{self.spawn_rate:g}",
                  "--run-time", f"{max(int(self.run_time_s + 0.999), 1)}s", "--only-summary",
                  "--exit-code-on-error", "0", "--stop-timeout", "5"]
        # Always a master, even for one worker: the master writes the parquet parts, so the worker's
        # event loop never stalls on a write (an in-process write holds it for milliseconds).
        port = self.master_port or free_port()
        self._spawn([*self._base(), *common, "--master", "--expect-workers",
                     str(self.local_workers + self.remote_workers), "--expect-workers-max-wait", "60",
                     "--master-bind-host", self.master_bind_host, "--master-bind-port", str(port)], "master")
        for i in range(self.local_workers):
            self._spawn([*self._base(), "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                        f"worker{i}")

    @property
    def coordinator(self) -> subprocess.Popen[bytes]:
        """The master (or the single local process)."""
        return self.procs[0]

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the coordinator to exit (its workers follow); None on timeout."""
        try:
            return self.coordinator.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def running(self) -> bool:
        """Whether the coordinator is still running."""
        return self.coordinator.poll() is None

    def stop(self) -> None:
        """Graceful stop: SIGINT to the coordinator (it asks workers for their last rows), then the
        rest; anything still alive after the grace period is killed."""
        if self.procs and self.running():
            # SIGINT first (Locust's Ctrl-C path); a master still starting up may not act on it yet,
            # SIGTERM (Locust's own handler, same clean shutdown) follows after a few seconds.
            self._signal(self.coordinator, signal.SIGINT)
            if self.wait(STOP_GRACE_S / 3) is None:
                self._signal(self.coordinator, signal.SIGTERM)
                self.wait(STOP_GRACE_S * 2 / 3)
        deadline = time.monotonic() + 5.0
        for proc in self.procs[1:]:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def reap(self, timeout_s: float = 10.0) -> None:
        """After the coordinator has exited: give workers a moment to follow, then stop them."""
        deadline = time.monotonic() + timeout_s
        for proc in self.procs[1:]:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
