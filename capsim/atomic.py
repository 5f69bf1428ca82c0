"""Atomic file writes: a reader (or an interrupted run) never sees half a file.

Every file capsim writes goes through `atomic_write`: the data goes to a temporary file beside the
destination, which is then renamed into place (`os.replace` is atomic on POSIX).

Permissions: the temporary file is created by `create_exclusive` with mode 0o666, so the kernel
applies the user's umask (and any default ACL of the folder) exactly as for a file any other program
creates: umask 022 gives 0644, umask 077 gives 0600. `tempfile.mkstemp` is not used because it
creates 0600 files whatever the umask, and the rename keeps that mode, so every output was private.
Nor is the umask read and applied by hand: the only portable way to read it is `os.umask`, which
*sets* it for the whole process, racing with any other thread creating a file meanwhile.

No fsync: the rename protects against a killed process (the case that matters for a run), not
against a power cut.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CREATE_ATTEMPTS = 100  # random 48-bit names: a collision is already unlikely once


def create_exclusive(path: Path) -> bool:
    """Create `path` as a new empty file with the user's umask; False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def temp_path_beside(path: Path) -> Path:
    """Create and return a new empty hidden file `.NAME.RANDOM.tmp` in `path`'s folder (user's umask)."""
    for _ in range(_CREATE_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        if create_exclusive(tmp):
            return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place.

    `write` may open the path itself (pandas, pyarrow, matplotlib do); truncating an existing file
    keeps its mode, so the result has the user's umask. Missing parent folders are created with the
    default mode (0o777 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def atomic_write_text(path: Path, text: str) -> None:
    """Write text (UTF-8) atomically."""
    atomic_write(path, lambda tmp: _write_text(tmp, text))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON (indented, trailing newline) atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
