"""`capsim serve` starts the server as a subprocess, and Ctrl-C stops both cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_capsim_serve_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    out_path = tmp_path / "stdout"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "capsim.cli.main", "serve", "--model", "transformer", "--port", "0",
             "--device", "cpu", "--max-batch-size", "4", "--torch-threads", "1"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            text = out_path.read_text(errors="replace")
            match = re.search(r"listening on (http://\S+)", text)
            url = match.group(1) if match else ""
            if url and "reference_server: ready" in text:
                break
            time.sleep(0.2)
        assert url and proc.poll() is None, out_path.read_text()
        meta = requests.get(url + "/v2/models/transformer", timeout=5).json()
        assert meta["inputs"] == [{"name": "input", "datatype": "INT64", "shape": [-1, 32]}]
        body = {"inputs": [{"name": "input", "shape": [2, 32], "datatype": "INT64", "data": list(range(64))}]}
        answer = requests.post(url + "/v2/models/transformer/infer", json=body, timeout=30)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [2, 128]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code in (0, 130, -signal.SIGINT), out_path.read_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v2/health/live", timeout=2)
