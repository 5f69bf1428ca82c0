"""Result folders are shareable and whole: files follow the umask, `--out` is staged and swapped in,
a killed run never leaves half a folder, and capsim never replaces a folder it did not write."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import capsim.output_folder as output_folder
from capsim.atomic import atomic_write, atomic_write_json, atomic_write_text
from capsim.cli.main import main
from capsim.errors import CapsimInputError
from capsim.loadtest.parts import write_table_atomic
from capsim.output_folder import MARKER_NAME, check_output_folder, staged_output_folder

ROOT = Path(__file__).resolve().parents[1]
QUICK = [str(ROOT / "scenarios" / "quickstart.yaml"), "--set", "duration_s=20", "--set", "warmup_s=0"]


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process's umask after a test that sets it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.fixture(params=[True, False], ids=["exchange", "two-renames"])
def swap(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with the atomic exchange and again with the two-rename fallback."""
    if not request.param:
        monkeypatch.setattr(output_folder, "_exchange", lambda a, b: False)
    return bool(request.param)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_folder(path: Path, files: dict[str, str]) -> None:
    with staged_output_folder(path, "test") as folder:
        for name, text in files.items():
            atomic_write_text(folder / name, text)


def contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir()) if p.name != MARKER_NAME}


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


# --- permissions -------------------------------------------------------------------------------


def test_cli_run_folder_is_0644_and_0755_under_umask_022(tmp_path: Path, umask: None) -> None:
    os.umask(0o022)
    out = tmp_path / "new" / "deeper" / "run"
    assert main(["simulate", *QUICK, "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "requests.parquet", "timeseries.parquet", "latency_cdf.png", MARKER_NAME} <= names
    assert {p.name: mode(p) for p in out.iterdir()} == dict.fromkeys(names, 0o644)
    assert mode(out) == mode(out.parent) == mode(out.parent.parent) == 0o755
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["command"] == "simulate" and sorted(names - {MARKER_NAME}) == marker["files"]


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                              (0o002, 0o664, 0o775)])  # fmt: skip
def test_every_writer_follows_the_umask(tmp_path: Path, umask: None, mask: int, file_mode: int, dir_mode: int) -> None:
    """JSON, pandas' parquet, pyarrow's parquet (the load tester's parts) and a profile: the temporary
    file is created with the umask and each library's own open keeps that mode."""
    from capsim.servicetime.profile_format import Profile

    os.umask(mask)
    out = tmp_path / "out"
    with staged_output_folder(out, "test") as folder:
        atomic_write_json(folder / "a.json", {"x": 1})
        atomic_write(folder / "b.parquet", lambda tmp: pd.DataFrame({"x": [1]}).to_parquet(tmp))
        write_table_atomic(folder / "parts" / "c.parquet", pa.table({"x": [1]}))
        Profile.from_samples({1: [1.0, 2.0]}).write(folder / "p.json")
    assert mode(out) == mode(out / "parts") == dir_mode
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 5 and {mode(p) for p in files} == {file_mode}


# --- the folder is replaced as a whole ------------------------------------------------------------


def test_rerun_removes_files_the_new_run_does_not_write(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["simulate", *QUICK, "--out", str(out)]) == 0
    assert (out / "requests.parquet").exists()
    assert main(["simulate", *QUICK, "--no-request-log", "--out", str(out)]) == 0
    assert not (out / "requests.parquet").exists() and not (out / "latency_cdf.png").exists()
    assert json.loads((out / MARKER_NAME).read_text())["files"] == sorted(
        p.name for p in out.iterdir() if p.name != MARKER_NAME)  # fmt: skip
    assert siblings(out) == []  # no staging or displaced folder left


def test_replaces_a_capsim_folder_and_keeps_nothing_behind(tmp_path: Path, swap: bool) -> None:
    out = tmp_path / "run"
    write_folder(out, {"a": "1", "b": "1"})
    write_folder(out, {"a": "2"})
    assert contents(out) == {"a": "2"}
    assert siblings(out) == []


def test_an_exception_while_writing_leaves_the_previous_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_folder(out, {"summary.json": "old", "requests.parquet": "old"})
    with pytest.raises(RuntimeError), staged_output_folder(out, "test") as folder:
        atomic_write_text(folder / "summary.json", "new")
        raise RuntimeError("the run failed before its parquet")
    assert contents(out) == {"summary.json": "old", "requests.parquet": "old"}
    assert siblings(out) == []


KILLED_WRITER = """
import os, sys
from pathlib import Path
import capsim.output_folder as of
from capsim.atomic import atomic_write_text
out, where = Path(sys.argv[1]), sys.argv[2]
if where == "swap":  # die between the two renames of the fallback swap
    of._exchange = lambda a, b: False
    rename = os.rename
    def rename_then_die(src, dst):
        rename(src, dst)
        if ".old-" in str(dst):
            os._exit(9)
    of.os.rename = rename_then_die
with of.staged_output_folder(out, "test") as folder:
    atomic_write_text(folder / "summary.json", "new")
    if where == "writing":
        os._exit(9)  # killed after the summary, before its parquet
    atomic_write_text(folder / "requests.parquet", "new")
"""


@pytest.mark.parametrize("where", ["writing", "swap"])
def test_a_killed_run_leaves_the_previous_folder_whole(tmp_path: Path, where: str) -> None:
    out = tmp_path / "run"
    previous = {"summary.json": "old", "requests.parquet": "old"}
    write_folder(out, previous)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(out), where],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 9, proc.stderr
    if where == "writing":
        assert contents(out) == previous  # the summary written before the kill is not in the folder
        assert [name.split("-")[0] for name in siblings(out)] == [".run.tmp"]
    else:  # the documented window: no folder, the previous one whole under a recognisable name
        assert not out.exists()
        (old,) = [tmp_path / name for name in siblings(out) if ".old-" in name]
        assert contents(old) == previous
    write_folder(out, {"summary.json": "next"})  # the next run cleans up what the dead one left
    assert contents(out) == {"summary.json": "next"}
    assert siblings(out) == []


def test_a_failed_swap_puts_the_previous_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    previous = {"summary.json": "old", "requests.parquet": "old"}
    write_folder(out, previous)
    monkeypatch.setattr(output_folder, "_exchange", lambda a, b: False)
    rename = os.rename

    def fail_moving_the_new_folder_in(src: Path, dst: Path) -> None:
        if ".run.tmp-" in str(src) and not os.path.lexists(dst):  # after the old folder was moved away
            raise OSError(errno.EIO, "Input/output error")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", fail_moving_the_new_folder_in)
    with pytest.raises(CapsimInputError, match="could not put the results in place") as info, \
            staged_output_folder(out, "test") as folder:  # fmt: skip
        atomic_write_text(folder / "summary.json", "new")
    monkeypatch.undo()
    assert contents(out) == previous
    (staging,) = [tmp_path / name for name in siblings(out)]
    assert str(staging) in str(info.value) and contents(staging) == {"summary.json": "new"}


def test_two_runs_into_one_folder_do_not_mix(tmp_path: Path, swap: bool) -> None:
    out = tmp_path / "run"
    with staged_output_folder(out, "test") as first, staged_output_folder(out, "test") as second:
        atomic_write_text(first / "a", "first")
        atomic_write_text(second / "a", "second")
        atomic_write_text(second / "b", "second")
        atomic_write_text(first / "c", "first")
    # `second` finished first and `first` last: the last to finish wins whole.
    assert contents(out) == {"a": "first", "c": "first"}
    assert siblings(out) == []


def test_concurrent_writers_leave_one_whole_folder(tmp_path: Path, swap: bool) -> None:
    out = tmp_path / "run"
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                write_folder(out, {f"{name}-{k}": f"{name}{i}" for k in range(3)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = contents(out)
    assert len(final) == 3 and len({text for text in final.values()}) == 1  # one writer's files, one run's
    assert siblings(out) == []


# --- what capsim refuses to replace ---------------------------------------------------------------


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["simulate", *QUICK, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


def test_refuses_a_folder_capsim_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    (home / ".bashrc").write_text("keep me")
    err = refused(capsys, "--out", str(home))
    assert "capsim did not write" in err and ".bashrc" in err and "projects/" in err
    assert (home / ".bashrc").read_text() == "keep me" and (home / "projects").is_dir()
    assert siblings(home) == []


def test_refuses_a_capsim_folder_the_user_added_a_file_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    write_folder(out, {"summary.json": "old"})
    (out / "notes.txt").write_text("mine")
    assert "notes.txt" in refused(capsys, "--out", str(out))
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case", ["file", "under-a-file", "damaged-marker", "current-folder"])
def test_refuses_bad_destinations(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch, case: str) -> None:  # fmt: skip
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under-a-file": tmp_path / "f" / "run"}.get(case, tmp_path / "run")
    if case == "damaged-marker":
        out.mkdir()
        (out / MARKER_NAME).write_text("{not json")
    if case == "current-folder":
        out.mkdir()
        monkeypatch.chdir(out)
        out = Path(".")
    expected = {"file": "not a folder", "under-a-file": "is a file", "damaged-marker": "unreadable",
                "current-folder": "current folder"}[case]  # fmt: skip
    assert expected in refused(capsys, "--out", str(out))
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_refuses_an_unwritable_parent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert "permission denied" in refused(capsys, "--out", str(locked / "run"))


def test_accepts_an_empty_folder_a_legacy_result_folder_and_a_link(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    write_folder(empty, {"a": "1"})
    assert contents(empty) == {"a": "1"}
    legacy = tmp_path / "legacy"  # written by a capsim from before the marker
    legacy.mkdir()
    for name in ("summary.json", "requests.parquet", ".summary.json.abc123.tmp"):
        (legacy / name).write_text("old")
    assert check_output_folder(legacy) == legacy.resolve()
    write_folder(legacy, {"summary.json": "new"})
    assert contents(legacy) == {"summary.json": "new"}
    link = tmp_path / "latest"
    link.symlink_to(legacy)
    write_folder(link, {"summary.json": "via link"})
    assert link.is_symlink() and contents(legacy) == {"summary.json": "via link"}


def test_sweep_writes_a_whole_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "stale.csv").write_text("mine")
    args = ["sweep", *QUICK, "--vary", "serving.replicas=1,2", "--jobs", "1", "--out", str(out)]
    assert main(args) == 2  # not capsim's: refused before the sweep runs
    assert "stale.csv" in capsys.readouterr().err
    (out / "stale.csv").unlink()
    assert main(args) == 0
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["command"] == "sweep" and "sweep.parquet" in marker["files"]
    assert str(out / "sweep.csv") in capsys.readouterr().out  # the final paths, not the staging folder's



def test_a_single_output_file_is_refused_when_it_is_a_folder_or_under_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    (tmp_path / "f").write_text("x")
    profile = str(ROOT / "scenarios" / "profiles" / "cnn-h100.json")
    transfer = ["hardware", "L4", "--transfer", profile, "--flops-per-item", "8e9", "--weight-bytes", "50e6"]
    for out, expected in ((tmp_path, "is a folder"), (tmp_path / "f" / "l4.json", "is a file, not a folder")):
        assert main([*transfer, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "--out" in err
    assert main([*transfer, "--out", str(tmp_path / "new" / "l4.json")]) == 0
    assert (tmp_path / "new" / "l4.json").is_file() and (tmp_path / "f").read_text() == "x"
