"""Rewrite the golden summaries of the bundled scenarios (run deliberately, then review the diff)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.golden.golden_runs import GOLDEN_DIR, OVERRIDES, golden_summary, scenario_paths


def main() -> None:
    if len(sys.argv) > 1:  # it takes no arguments: `--help` must not rewrite every golden file
        print(__doc__.strip(), "\nUsage: python tests/golden/regenerate.py")
        return
    for path in scenario_paths():
        summary = golden_summary(path)
        record = {"scenario_file": f"scenarios/{path.name}", "overrides": OVERRIDES[path.stem], "summary": summary}
        (GOLDEN_DIR / f"{path.stem}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path.stem}.json")


if __name__ == "__main__":
    main()
