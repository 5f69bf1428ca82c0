"""Keeping numba's on-disk cache of a compiled module honest about the files it compiles in."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def drop_stale_cache(folder: Path, module: str, depends_on: tuple[str, ...]) -> None:
    """numba keys a module's on-disk cache (`__pycache__/MODULE.*.nbi|nbc`) on the module's own file
    alone, but functions and constants it calls from `depends_on` (files in `folder`) are compiled
    into it: when any of them changed since the cache was written, drop the cache (the next run
    compiles afresh), so that an edited or added balancer is never served from a stale loop. Only
    the in-tree cache is checked: a NUMBA_CACHE_DIR elsewhere is the user's to clear."""
    stamp = hashlib.sha256(b"".join((folder / name).read_bytes() for name in depends_on)).hexdigest()
    cache_dir = folder / "__pycache__"
    marker = cache_dir / f"{module}.depends"
    try:
        if marker.read_text() == stamp:
            return
    except OSError:
        pass
    try:
        for stale in cache_dir.glob(f"{module}.*.nb[ic]"):
            stale.unlink(missing_ok=True)
        cache_dir.mkdir(exist_ok=True)
        partial = cache_dir / f"{module}.depends.{os.getpid()}"
        partial.write_text(stamp)
        partial.replace(marker)  # atomic: parallel test workers may get here at once
    except OSError:
        pass  # a read-only install: numba caches elsewhere, or not at all
