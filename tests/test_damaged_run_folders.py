"""Damaged measurement files: every reader of a run folder (calibrate, validate, loadtest-finalize)
answers one line naming the file and what is wrong, exit code 2, and `loadtest-finalize` keeps every
readable part and every byte of the damaged ones."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from capsim.cli.main import main
from capsim.loadtest.parts import write_request_part
from capsim.loadtest.settings import LoadTestSettings

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "data" / "h100" / "runs" / "cnn-b32-w2-u30"  # a real run folder, 640 KB
PROFILE = ROOT / "scenarios" / "profiles" / "cnn-h100.json"

Damage = Callable[[Path], None]


def _bytes(name: str, content: bytes) -> Damage:
    def damage(folder: Path) -> None:
        (folder / name).write_bytes(content)

    return damage


def _truncated(name: str) -> Damage:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return damage


def _json_set(name: str, path: list[str], value: object) -> Damage:
    def damage(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (folder / name).write_text(json.dumps(data))

    return damage


def _parquet_edit(name: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Damage:
    def damage(folder: Path) -> None:
        edit(pd.read_parquet(folder / name)).to_parquet(folder / name)

    return damage


def _folder_instead(name: str) -> Damage:
    def damage(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()

    return damage


# (damage, the file named, words of what is wrong)
CASES: dict[str, tuple[Damage, str, str]] = {
    "manifest empty": (_bytes("manifest.json", b""), "manifest.json", "not valid JSON: line 1"),
    "manifest truncated": (_truncated("manifest.json"), "manifest.json", "not valid JSON: line"),
    "manifest binary": (_bytes("manifest.json", bytes(range(256))), "manifest.json", "not UTF-8"),
    "manifest a list": (_bytes("manifest.json", b"[1, 2]"), "manifest.json", "expected a JSON object"),
    "manifest a folder": (_folder_instead("manifest.json"), "manifest.json", "not found"),
    "manifest duration text": (_json_set("manifest.json", ["settings", "duration_s"], "long"), "manifest.json",
                               "settings.duration_s"),
    "manifest batch size text": (_json_set("manifest.json", ["target", "server_config", "config", "max_batch_size"],
                                           "32"), "manifest.json", "target.server_config.config.max_batch_size"),
    "manifest target a string": (_json_set("manifest.json", ["target"], "x"), "manifest.json", "target"),
    "summary empty": (_bytes("summary.json", b""), "summary.json", "not valid JSON"),
    "summary truncated": (_truncated("summary.json"), "summary.json", "not valid JSON"),
    "summary a string": (_bytes("summary.json", b'"done"'), "summary.json", "expected a JSON object"),
    "summary start text": (_json_set("summary.json", ["start_s"], "now"), "summary.json", "start_s"),
    "summary steps text": (_json_set("summary.json", ["steps"], "x"), "summary.json", "steps"),
    "summary valid text": (_json_set("summary.json", ["valid"], "yes"), "summary.json", "valid"),
    "requests empty": (_bytes("requests.parquet", b""), "requests.parquet", "not a parquet file (empty"),
    "requests truncated": (_truncated("requests.parquet"), "requests.parquet", "not a parquet file"),
    "requests JSON": (_bytes("requests.parquet", b'{"a": 1}'), "requests.parquet", "not a parquet file"),
    "requests a folder": (_folder_instead("requests.parquet"), "requests.parquet", "found a folder"),
    "requests no sent_s": (_parquet_edit("requests.parquet", lambda f: f.drop(columns=["sent_s"])),
                           "requests.parquet", "missing column(s) sent_s"),
    "requests sent_s text": (_parquet_edit("requests.parquet", lambda f: f.assign(sent_s=f["sent_s"].astype(str))),
                             "requests.parquet", "column sent_s: expected numbers"),
    "requests step text": (_parquet_edit("requests.parquet", lambda f: f.assign(step="a")),
                           "requests.parquet", "column step: expected integers"),
    "batches truncated": (_truncated("batches.parquet"), "batches.parquet", "not a parquet file"),
    "batches no size": (_parquet_edit("batches.parquet", lambda f: f.drop(columns=["size"])), "batches.parquet",
                        "missing column(s) size"),
    "batches size text": (_parquet_edit("batches.parquet", lambda f: f.assign(size=f["size"].astype(str))),
                          "batches.parquet", "column size: expected numbers"),
}  # fmt: skip


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(RUN, folder)
    return folder


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_calibrate_names_the_damaged_file(case: str, run_folder: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    damage, name, words = CASES[case]
    damage(run_folder)
    assert main(["calibrate", str(run_folder), "-o", str(tmp_path / "profile.json")]) == 2
    line = _one_line(capsys)
    assert str(run_folder / name) in line and words in line, line
    assert not (tmp_path / "profile.json").exists()


VALIDATE_CASES = ["manifest truncated", "summary steps text", "requests sent_s text", "batches no size"]


@pytest.mark.parametrize("case", VALIDATE_CASES)
def test_validate_names_the_damaged_file(case: str, run_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage, name, words = CASES[case]
    damage(run_folder)
    assert main(["validate", str(run_folder), "--profile", str(PROFILE)]) == 2
    line = _one_line(capsys)
    assert str(run_folder / name) in line and words in line, line


def test_a_huge_batch_size_in_the_manifest_allocates_nothing() -> None:
    from capsim.calibration.compare import batch_distribution

    # Was a dense array up to max_batch_size: 10^12 asked numpy for 7.3 TiB.
    shares = batch_distribution(np.array([1, 2, 2, *[32] * 32]), 10**12)  # one batch each of 1, 2 and 32
    assert len(shares) == 41 and shares["1"] == shares["2"] == shares["17-32"] == pytest.approx(1 / 3)


# -- loadtest-finalize: keep what can be read, keep the bytes of what cannot ----------------------------


def _unfinished_run(tmp_path: Path, parts: int = 3) -> Path:
    """A run folder as a killed `capsim loadtest` leaves it: manifest.json and parts/, no summary."""
    out = tmp_path / "unfinished"
    step_dir = out / "parts" / "step-00"
    step_dir.mkdir(parents=True)
    settings = LoadTestSettings(target="http://127.0.0.1:9", model="m", duration_s=10.0, warmup_s=1.0)
    (out / "manifest.json").write_text(json.dumps({"settings": settings.model_dump(mode="json"), "target": {}}))
    (step_dir / "config.json").write_text(json.dumps({"step": 0, "rate_rps": None}))
    start_s = 1_795_000_000.0
    for seq in range(parts):
        times = start_s + np.arange(seq * 10, seq * 10 + 10) * 0.3
        n = times.size
        rows = {"intended_s": list(times), "sent_s": list(times), "latency_ms": [5.0] * n,
                "latency_corrected_ms": [5.0] * n, "status": [200] * n, "bytes": [10] * n, "error": [None] * n,
                "name": ["/predict/m"] * n, "worker": [0] * n}  # fmt: skip
        write_request_part(step_dir, 0, seq, rows)
    return out


def test_finalize_keeps_every_readable_part_and_the_damaged_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _unfinished_run(tmp_path)
    parts = sorted((out / "parts" / "step-00").glob("requests-w*.parquet"))
    damaged = parts[1]
    damaged.write_bytes(damaged.read_bytes()[:100])  # a worker killed mid-write, no atomic rename
    torn = damaged.read_bytes()
    assert main(["loadtest-finalize", str(out)]) == 0
    said = capsys.readouterr()
    assert damaged.name in said.out + said.err
    assert pq.read_table(out / "requests.parquet").num_rows == 20  # the two readable parts, every row
    kept = out / "damaged-parts" / "step-00" / damaged.name
    assert kept.read_bytes() == torn  # nothing measured is deleted
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finalized"
    assert list(summary["damaged_parts"]) == [f"damaged-parts/step-00/{damaged.name}"]


def test_finalize_with_nothing_readable_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _unfinished_run(tmp_path, parts=2)
    parts = sorted((out / "parts" / "step-00").glob("requests-w*.parquet"))
    for part in parts:
        part.write_bytes(b"")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["loadtest-finalize", str(out)]) == 2
    line = _one_line(capsys)
    assert parts[0].name in line and "no request row could be read" in line
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize(
    ("manifest", "words"),
    [(b"{", "not valid JSON"), (b"[]", "settings object"), (b'{"settings": {"target": 5}, "target": {}}',
                                                           "settings.target")],
)
def test_finalize_with_a_damaged_manifest_keeps_the_parts(
    manifest: bytes, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _unfinished_run(tmp_path)
    (out / "manifest.json").write_bytes(manifest)
    assert main(["loadtest-finalize", str(out)]) == 2
    line = _one_line(capsys)
    assert "manifest.json" in line and words in line, line
    assert len(list((out / "parts").rglob("requests-w*.parquet"))) == 3


def test_finalize_survives_a_damaged_step_config_and_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _unfinished_run(tmp_path)
    (out / "parts" / "step-00" / "config.json").write_text("{not json")
    (out / "parts" / "step-00" / "schedule.npy").write_bytes(b"\x93NUMPY garbage")
    (out / "parts" / "step-00" / "coordinator.json").write_text('{"start_s": "soon"}')
    assert main(["loadtest-finalize", str(out)]) == 0
    said = capsys.readouterr().out
    assert "config.json" in said and "schedule.npy" in said
    assert pq.read_table(out / "requests.parquet").num_rows == 30
