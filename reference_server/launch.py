"""Start the reference server as a subprocess and wait until it is ready: for tests, benchmarks and
the load-test harness. Imports neither torch nor the web stack.

    with ServerProcess(["--model", "mlp", "--max-batch-size", "8"], log_dir=tmp) as server:
        requests.get(server.url + "/v2/health/ready")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

_LISTENING = re.compile(r"reference_server: listening on (http://\S+)")


class ServerFailed(RuntimeError):
    """The server exited or did not become ready in time; the message ends with its log."""


class ServerProcess:
    """One `python -m reference_server` subprocess on a free loopback port (`--port 0`)."""

    def __init__(
        self,
        args: list[str],
        log_dir: Path,
        ready_timeout_s: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        if "--port" not in self.args:
            self.args += ["--port", "0"]
        self.log_dir = Path(log_dir)
        self.ready_timeout_s = ready_timeout_s
        self.env = env
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = self.log_dir / "server.stdout"
        self.stderr_path = self.log_dir / "server.stderr"

    def start(self) -> ServerProcess:
        """Launch, learn the port from the first stdout line, wait until ready (`ready_path`)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reference_server", *self.args], stdout=out, stderr=err, env=env
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"server exited with code {self.proc.returncode}\n{self.logs()}")
            if not self.url:
                match = _LISTENING.search(self.stdout_path.read_text(errors="replace"))
                if match:
                    self.url = match.group(1)
            if self.url and self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerFailed(f"server not ready after {self.ready_timeout_s:.0f} s\n{self.logs()}")

    @property
    def ready_path(self) -> str:
        """The readiness route: the LLM server's `/health`, or KServe v2's."""
        from reference_server.__main__ import llm_model_requested

        return "/health" if llm_model_requested(self.args) else "/v2/health/ready"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                return resp.status == 200 and json.loads(resp.read()).get("ready") is True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.url.rsplit(":", 1)[1])

    def logs(self) -> str:
        """Everything the server printed so far."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
