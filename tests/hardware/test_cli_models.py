"""`capsim hardware --models` as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=ROOT)  # fmt: skip


def test_the_table_lists_every_model_with_its_kv_bytes() -> None:
    proc = capsim("hardware", "--models")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "│ Llama-3.1-8B " in line)
    assert "131,072" in row and "8.03B" in row and "32/8" in row
    assert "46.7B / 12.9B" in proc.stdout  # Mixtral: total and active


def test_one_model_as_json_and_an_unknown_name() -> None:
    proc = capsim("hardware", "--models", "llama-3.1-70b", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["name"], data["layers"], data["kv_heads"]) == ("Llama-3.1-70B", 80, 8)
    assert data["source"] == "https://huggingface.co/meta-llama/Llama-3.1-70B/blob/main/config.json"
    proc = capsim("hardware", "--models", "gpt-9")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "NAME: unknown model 'gpt-9'" in proc.stderr
