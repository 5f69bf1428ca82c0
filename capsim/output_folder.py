"""A result folder (`--out DIR`) written as a whole: `staged_output_folder(path)`.

The contract, for every command that writes a result folder (`simulate --out`, `simulate --solve
--out`, `sweep --out`):

- The run writes into a staging folder beside the destination, `.DIR.tmp-<pid>-<random>`, and only
  when every file is written is that folder swapped into place. A run that is killed leaves either
  the previous complete folder or none, never a summary without its parquet files.
- Two runs into the same folder each have their own staging folder; the last to finish wins whole.
- A rerun replaces the folder: files the new run does not write are gone.
- The folder holds `capsim-output.json` (the marker: command, version, time, the files written and,
  when run from the CLI, the command line that reproduces the folder).
  capsim replaces only a folder that is empty or holds nothing but files capsim wrote, so `--out ~`
  or `--out .` is refused (exit 2, one line) rather than deleting anything of the user's; so are a
  destination that is a file, under a file, or in a folder that cannot be written.

The swap: where Linux's renameat2(RENAME_EXCHANGE) is available (glibc >= 2.28 and a file system that
supports it: ext4, xfs, btrfs, tmpfs...) the new folder and the old one trade places in one atomic
step. Elsewhere it takes two renames (old folder away to `.DIR.old-<pid>-<random>`, new one in); a
crash between the two leaves no DIR but the previous complete folder under that recognisable name.
Every run first removes the staging and displaced folders of processes that no longer exist.

The load-test run folder (`capsim loadtest`) is deliberately not staged: it is written as data
arrives so that nothing measured is lost when a run dies.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import json
import os
import re
import secrets
import shlex
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capsim.errors import CapsimInputError

MARKER_NAME = "capsim-output.json"
MARKER_FORMAT = "capsim-output/1"

LEGACY_OUTPUT_NAMES = frozenset({
    "summary.json", "timeseries.parquet", "requests.parquet", "queue_utilization.png", "latency_cdf.png",
    "replicas_over_time.png", "job_progress.png", "lag_over_time.png", "queue_depth.png", "sweep.csv",
    "sweep.parquet", "summaries.json", "cost_vs_p99.png", "cost_vs_makespan.png", "solve.json",
})  # fmt: skip
"""Files a capsim from before the marker wrote into result folders (frozen: new outputs are listed
by the marker). A folder holding only these is recognised as capsim's, so upgrading does not make a
rerun into an old result folder fail."""

_SWAP_ATTEMPTS = 20  # each retry means another run swapped its folder in meanwhile
_NAME_KEEP = 200  # of DIR's name in the sibling names, which must stay under NAME_MAX (255 bytes)
_SIBLING = re.compile(r"(tmp|old)-(\d+)-[0-9a-f]{12}")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _refuse(path: Path, flag: str, message: str) -> CapsimInputError:
    return CapsimInputError(message, source=str(path), field=flag)


def _sibling_prefix(target: Path) -> str:
    return f".{target.name[:_NAME_KEEP]}."


def _new_sibling(target: Path, kind: str) -> Path:
    """A fresh name `.DIR.<kind>-<pid>-<random>` beside `target` (not created)."""
    return target.parent / f"{_sibling_prefix(target)}{kind}-{os.getpid()}-{secrets.token_hex(6)}"


def _read_marker(folder_fd: int) -> dict[str, Any] | None:
    """The marker of the open folder, None when it has none; raises ValueError when it is damaged."""
    try:
        fd = os.open(MARKER_NAME, os.O_RDONLY, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            marker = json.loads(handle.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{MARKER_NAME} is unreadable ({exc})") from None
    if not (isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT
            and isinstance(marker.get("files"), list)):  # fmt: skip
        raise ValueError(f"{MARKER_NAME} is not a capsim marker (expected format {MARKER_FORMAT})")
    return marker


def _files(folder: Path) -> list[str]:
    """Every file under `folder` as a relative POSIX path (symbolic links not followed)."""
    return [(Path(root).relative_to(folder) / name).as_posix() for root, _, names in os.walk(folder) for name in names]


def _is_legacy_output(name: str) -> bool:
    # A leftover temporary of the old per-file atomic writes: `.summary.json.<random>.tmp`.
    if name.startswith(".") and name.endswith(".tmp"):
        return any(name.startswith(f".{known}.") for known in LEGACY_OUTPUT_NAMES)
    return name in LEGACY_OUTPUT_NAMES


def foreign_entries(folder: Path, limit: int = 4) -> list[str]:
    """What in `folder` capsim did not write (relative paths, at most `limit`, a foreign folder named
    once): the files its marker does not list, or, without a marker, anything but the files of an
    older capsim. Empty: capsim may replace the folder. Raises ValueError when the marker is damaged.

    Stops at `limit`, so that `--out ~` is refused at once rather than after reading the whole home.
    The marker and the entries are read through one open handle, so that they belong to the same
    folder even while another run swaps a new one in at this path."""
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _foreign_in(folder_fd, limit)
    finally:
        os.close(folder_fd)


def _foreign_in(folder_fd: int, limit: int) -> list[str]:
    marker = _read_marker(folder_fd)
    if marker is None:
        listed, parents = set(), set()
    else:
        listed = {str(f) for f in marker["files"]} | {MARKER_NAME}
        parents = {p.as_posix() for f in listed for p in Path(f).parents} - {"."}
    foreign: list[str] = []
    for root, dirs, names, _ in os.fwalk(".", dir_fd=folder_fd):
        base = Path(root)
        for name in sorted(dirs):
            if (base / name).as_posix() not in parents:
                foreign.append((base / name).as_posix() + "/")
                dirs.remove(name)  # named once; its contents are not looked at
        for name in sorted(names):
            rel = (base / name).as_posix()
            if rel not in listed and not (marker is None and base == Path(".") and _is_legacy_output(name)):
                foreign.append(rel)
        if len(foreign) >= limit:
            break
    return foreign[:limit]


def _ownership_problem(target: Path) -> str | None:
    """Why capsim may not replace the existing `target`, or None when it may (or it is gone: another
    run may be swapping it)."""
    if not os.path.lexists(target):
        return None
    if not target.is_dir() or target.is_symlink():
        return "exists and is not a folder"
    try:
        foreign = foreign_entries(target)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        return f"{exc}; choose another folder or remove it"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
    return (f"holds {shown}, which capsim did not write; capsim replaces the whole folder: move them out or "
            "choose a new or empty folder")  # fmt: skip


def _check_parent(path: Path, target: Path, flag: str) -> None:
    """Refuse a destination under a file, or whose folder (the nearest that exists) cannot be written."""
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _refuse(path, flag, f"{ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _refuse(path, flag, f"cannot create files in {ancestor} (permission denied)")


def check_output_file(path: Path, flag: str) -> None:
    """Refuse (CapsimInputError, exit 2) a destination for one file (`-o PROFILE`, `--out FILE`) that
    is a folder, lies under a file or in a folder that cannot be written: before the work, not after."""
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise _refuse(path, flag, "is a folder; expected a file path")
    _check_parent(path, target, flag)


def check_output_folder(path: Path, flag: str = "--out") -> Path:
    """Refuse (CapsimInputError, exit 2) a destination capsim must not replace; returns the real path
    the folder will have (a symbolic link to a folder is followed, and stays a link).

    Call it before a long run, so that a bad `--out` costs nothing; `staged_output_folder` checks again."""
    target = Path(os.path.realpath(path))
    if target.parent == target:
        raise _refuse(path, flag, "is the root folder; choose a new or empty folder")
    _check_parent(path, target, flag)
    if not target.exists():
        return target
    if not target.is_dir():
        raise _refuse(path, flag, "exists and is not a folder")
    cwd = Path(os.path.realpath(os.getcwd()))
    if cwd == target or target in cwd.parents:
        raise _refuse(path, flag, "is the current folder or holds it; capsim replaces the whole folder, so "
                      "choose a new or empty folder")  # fmt: skip
    problem = _ownership_problem(target)
    if problem is not None:
        raise _refuse(path, flag, problem)
    return target


def _pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_abandoned(target: Path) -> list[Path]:
    """Remove the staging and displaced folders beside `target` left by processes that no longer
    exist (a run killed while writing, or between the two renames of a swap); returns them."""
    prefix = _sibling_prefix(target)
    removed = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            if not entry.name.startswith(prefix):
                continue
            match = _SIBLING.fullmatch(entry.name[len(prefix):])
            if match and int(match.group(2)) != os.getpid() and _pid_is_gone(int(match.group(2))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


_COMMAND_LINE: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("capsim_argv", default=None)


def record_command_line(argv: list[str]) -> None:
    """Remember the CLI's arguments (capsim/cli/main.py calls this), so that a folder's marker says
    how to reproduce it (`command_line`, for the report's provenance)."""
    _COMMAND_LINE.set(tuple(argv))


def _write_marker(staging: Path, command: str) -> None:
    from capsim import __version__
    from capsim.atomic import atomic_write_json

    files = sorted(rel for rel in _files(staging) if rel != MARKER_NAME)
    argv = _COMMAND_LINE.get()
    atomic_write_json(staging / MARKER_NAME, {
        "format": MARKER_FORMAT, "command": command, "capsim_version": __version__,
        "written_utc": datetime.now(UTC).isoformat(timespec="seconds"), "files": files,
        **({"command_line": shlex.join(["capsim", *argv])} if argv is not None else {}),
    })  # fmt: skip


_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (renameat2 RENAME_EXCHANGE); False where the system or the file
    system cannot, or `b` is gone."""
    global _renameat2
    if _renameat2 is None:
        try:
            _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        except (AttributeError, OSError):  # not glibc >= 2.28 (musl, macOS)
            _renameat2 = False
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOENT):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(staging: Path, target: Path) -> list[Path]:
    """Put the complete `staging` folder at `target`; returns the displaced old folders to remove.
    On failure the last displaced folder is put back where it was, if nothing took its place."""
    displaced: list[Path] = []
    try:
        return _swap_attempts(staging, target, displaced)
    except BaseException:
        if displaced and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                os.rename(displaced[-1], target)
        raise


def _swap_attempts(staging: Path, target: Path, displaced: list[Path]) -> list[Path]:
    for _ in range(_SWAP_ATTEMPTS):
        try:
            os.rename(staging, target)  # target absent or an empty folder: one atomic step
            return displaced
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        problem = _ownership_problem(target)  # someone may have changed it during the run
        if problem is not None:
            raise CapsimInputError(problem)
        if _exchange(staging, target):
            return [*displaced, staging]  # the staging name now holds the old folder
        away = _new_sibling(target, "old")
        try:
            os.rename(target, away)
        except FileNotFoundError:
            continue  # another run moved it meanwhile
        displaced.append(away)
        # A crash here leaves no target: the old folder is complete at `away`, the new one at `staging`.
    raise OSError(errno.EBUSY, "other runs kept replacing the folder", str(target))


@contextlib.contextmanager
def staged_output_folder(path: Path, command: str, flag: str = "--out") -> Iterator[Path]:
    """Yield a new empty staging folder beside `path`; on normal exit mark it as capsim's and swap it
    into place of `path` as a whole (see the module's docstring for the contract). On an exception
    the staging folder is removed and `path` is untouched.

    `command` names what wrote the folder (recorded in the marker). Bad destinations raise
    CapsimInputError naming `path` and `flag`."""
    target = check_output_folder(path, flag)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(target)
        staging = _new_sibling(target, "tmp")
        staging.mkdir()  # default mode: 0o777 less the umask
    except OSError as exc:
        raise _refuse(path, flag, f"cannot create the folder ({exc.strerror})") from None
    try:
        yield staging
        _write_marker(staging, command)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        displaced = _swap_in(staging, target)
    except (OSError, CapsimInputError) as exc:
        reason = exc.detail if isinstance(exc, CapsimInputError) else exc.strerror
        raise _refuse(path, flag, f"could not put the results in place ({reason}); they are complete in "
                      f"{staging}") from None  # fmt: skip
    for old in displaced:
        shutil.rmtree(old, ignore_errors=True)
