"""Per-variant results of a plan, kept so that an interrupted or widened plan resumes without
re-simulating (docs/plan.md, "Cache").

One entry is one replication's summary of one variant: `<key>-r<replication>.json`, where `key`
hashes the resolved variant scenario, the seed and the capsim version (`variant_key`). Replications
are numbered, so a variant that needs more of them adds only the missing ones
(`capsim.engine.simulate(first_replication=...)`), and `combine_replications` gives exactly what one
longer run would.

Where entries live: the plan's `--out DIR` is written as a whole at the end (capsim.output_folder),
so entries found while it runs go to a side folder `.DIR.plan-cache/` beside it, written one file at
a time (atomically) and kept when the plan is interrupted. A plan reads the side folder and the
`cache/` of the previous complete `DIR`; the new `DIR/cache/` holds all of them and the side folder
is removed once `DIR` is in place.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from capsim.atomic import atomic_write_json
from capsim.scenario import Scenario

CACHE_FOLDER = "cache"


def variant_key(scenario: Scenario, seed: int) -> str:
    """16 hex digits of SHA-256 over the resolved scenario (JSON, keys sorted, fields at their default
    value left out), the seed and capsim's version: equal keys are the same simulation.

    Defaults are left out so that the key survives the schema growing: a field added with a default
    that keeps the old behaviour (how the schema grows) would otherwise change every key and make a
    rerun after an upgrade, or after any commit that adds a field, read nothing back — which is what
    a rerun into the same --out did while the schema was growing under it. Setting a field to its
    default explicitly gives the same key as leaving it out, as it gives the same simulation."""
    from capsim import __version__

    resolved = scenario.model_dump(mode="json", exclude_defaults=True)
    text = json.dumps({"scenario": resolved, "seed": seed, "capsim": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def side_folder(out: Path) -> Path:
    """Where a plan writing `out` keeps the entries it finds while it runs."""
    return out.parent / f".{out.name}.plan-cache"


class ResultCache:
    """Replication summaries by (key, replication): read from earlier plans into `out`, written as
    found. Without `out` it is an in-memory dictionary only."""

    def __init__(self, out: Path | None = None) -> None:
        self.out = out
        self.entries: dict[str, dict[str, Any]] = {}
        if out is None:
            return
        for folder in (out / CACHE_FOLDER, side_folder(out)):
            if folder.is_dir():
                for path in sorted(folder.glob("*-r*.json")):
                    try:
                        self.entries[path.stem] = json.loads(path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        continue  # a damaged entry is simulated again

    @staticmethod
    def _name(key: str, replication: int) -> str:
        return f"{key}-r{replication}"

    def get(self, key: str, replication: int) -> dict[str, Any] | None:
        """The summary of replication `replication` of variant `key`, or None."""
        return self.entries.get(self._name(key, replication))

    def put(self, key: str, replication: int, summary: dict[str, Any]) -> None:
        """Keep a replication's summary (on disk in the side folder when the plan has an `out`)."""
        name = self._name(key, replication)
        self.entries[name] = summary
        if self.out is not None:
            folder = side_folder(self.out)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / f"{name}.json", summary)

    def write_to(self, folder: Path) -> list[Path]:
        """Every entry into `folder/cache/` (the plan's staged output folder); returns the files."""
        target = folder / CACHE_FOLDER
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for name, summary in sorted(self.entries.items()):
            path = target / f"{name}.json"
            atomic_write_json(path, summary)
            written.append(path)
        return written

    def discard_side_folder(self) -> None:
        """Remove the side folder once the complete plan folder holds its entries."""
        if self.out is not None:
            shutil.rmtree(side_folder(self.out), ignore_errors=True)
