"""`capsim serve --model llm-tiny` starts the LLM server as a subprocess, and Ctrl-C stops both."""

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


def test_capsim_serve_llm_tiny_streams_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    out_path = tmp_path / "stdout"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "capsim.cli.main", "serve", "--model", "llm-tiny", "--port", "0", "--device", "cpu",
             "--num-gpu-blocks", "64", "--torch-threads", "1", "--step-log", str(tmp_path / "steps.jsonl")],
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
        body = {"prompt": "hello", "max_tokens": 4, "ignore_eos": True, "stream": True}
        with requests.post(url + "/v1/completions", json=body, stream=True, timeout=60) as resp:
            lines = [line for line in resp.iter_lines() if line]
        assert len(lines) == 5 and lines[-1] == b"data: [DONE]"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code in (0, 130, -signal.SIGINT), out_path.read_text()
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 4  # one prefill step, three decodes
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/health", timeout=2)
