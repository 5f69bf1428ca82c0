"""Which kind of run folder a path is, and reading its files for a report.

A folder is capsim's when it holds the marker `capsim-output.json` (written by `simulate --out`,
`simulate --solve --out`, `sweep --out`, `plan --out`; capsim/output_folder.py), whose `command`
names the kind, or a load test's `manifest.json` (`"kind": "capsim-loadtest"`; capsim/loadtest/
manifest.py). A simulate folder of an LLM engine (its summary has `ttft_ms`) is the `llm` kind. A
load-test folder that `capsim validate` has compared with the simulator also holds
`validation.json`: it is reported as a validation. Anything else is refused with one line (exit 2):
the report never guesses what a folder holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capsim.errors import CapsimInputError
from capsim.input_files import read_json_file
from capsim.output_folder import MARKER_FORMAT, MARKER_NAME

LOADTEST_KIND = "capsim-loadtest"
VALIDATION_FILE = "validation.json"  # capsim/calibration/validate.py writes it (imported lazily there)

KIND_OF_COMMAND = {"simulate": "simulate", "simulate --solve": "solve", "sweep": "sweep", "plan": "plan"}
"""The marker's `command` → the report kind that shows it."""


@dataclass
class RunFolder:
    """A run folder capsim wrote: where it is, what kind it is, and its marker or manifest."""

    path: Path
    kind: str
    about: dict[str, Any]  # the marker (capsim-output.json) or the load test's manifest.json
    label: str | None = None  # how the report names the run; default: the folder's name
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """How the report labels the run: `label`, else the folder's own name."""
        return self.label or self.path.resolve().name

    def has(self, name: str) -> bool:
        """Whether the folder holds the file `name`."""
        return (self.path / name).is_file()

    def json(self, name: str) -> Any:
        """The JSON file `name` (read once); a missing or damaged file is one line naming it."""
        if name not in self._cache:
            if not self.has(name):
                raise CapsimInputError(f"{self.kind} run folder without {name}; was it written completely?",
                                       source=str(self.path))  # fmt: skip
            self._cache[name] = read_json_file(self.path / name, "run folder file")
        return self._cache[name]

    def parquet(self, name: str) -> Any:
        """The parquet file `name` as a pandas DataFrame, or None when the folder has none."""
        if not self.has(name):
            return None
        import pandas as pd

        try:
            return pd.read_parquet(self.path / name)
        except (OSError, ValueError) as exc:
            raise CapsimInputError(f"cannot read {name} ({' '.join(str(exc).split())[:200]})",
                                   source=str(self.path)) from None  # fmt: skip


def _marker_kind(path: Path, marker: Any) -> tuple[str, dict[str, Any]]:
    if not (isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT):
        raise CapsimInputError(f"{MARKER_NAME} is not a capsim marker (expected format {MARKER_FORMAT})",
                               source=str(path))  # fmt: skip
    command = str(marker.get("command"))
    kind = KIND_OF_COMMAND.get(command)
    if kind is None:
        known = ", ".join(sorted(KIND_OF_COMMAND))
        raise CapsimInputError(f"written by 'capsim {command}', which capsim report cannot show (it shows: {known}, "
                               "loadtest, validate)", source=str(path))  # fmt: skip
    return kind, marker


def open_run_folder(path: Path) -> RunFolder:
    """The run folder at `path` with its kind; CapsimInputError (one line, exit 2) when `path` is not a
    folder capsim wrote."""
    if not path.exists():
        raise CapsimInputError("no such folder", source=str(path))
    if not path.is_dir():
        raise CapsimInputError("is a file; expected a run folder written by capsim (simulate --out, sweep --out, "
                               "plan --out, loadtest --out)", source=str(path))  # fmt: skip
    if (path / MARKER_NAME).is_file():
        kind, about = _marker_kind(path, read_json_file(path / MARKER_NAME, "run folder marker"))
        run = RunFolder(path, kind, about)
        if kind == "simulate" and run.has("summary.json") and "ttft_ms" in (run.json("summary.json") or {}):
            run.kind = "llm"  # an LLM engine's run: judged by TTFT and TPOT (llm_report.py)
        return run
    if (path / "manifest.json").is_file():
        manifest = read_json_file(path / "manifest.json", "run folder manifest")
        if isinstance(manifest, dict) and manifest.get("kind") == LOADTEST_KIND:
            kind = "validate" if (path / VALIDATION_FILE).is_file() else "loadtest"
            return RunFolder(path, kind, manifest)
    raise CapsimInputError(f"not a run folder written by capsim (no {MARKER_NAME}, and no manifest.json of a load "
                           "test); give a folder from simulate --out, sweep --out, plan --out or loadtest --out",
                           source=str(path))  # fmt: skip
