"""Held-out discipline: which load points a calibration fits on and which it is judged on.

An error measured on the points a model was fitted to says how well it *fits*; capacity planning
needs how well it *predicts*, so `capsim calibrate --holdout RULE` keeps some points out of the fit
and reports the error on them. Rules:

* `alternate` — within each server configuration, points sorted by offered load, every second one
  (the 2nd, 4th, …) is held out: the fit sees the lightest load and interpolates between loads;
* `highest` — the highest load of each configuration (extrapolation towards saturation);
* `server:GLOB` — every point whose server configuration (`b<max batch>-w<window ms>-i<instances>`,
  e.g. `server:b1-w0-i1`; for LLM runs the engine's `s<max_num_seqs>-t<token budget>-cp|nocp`)
  matches: fit on some configurations, predict another;
* a glob over point labels (`run-folder-name`, or `run-folder-name#step` for a sweep step), e.g.
  `'cnn-b32-*'` to hold out a whole configuration, or several separated by commas.

Every configuration keeps at least one point in the fit unless the rule names it explicitly by glob.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from itertools import groupby

from capsim.calibration.runfolder import LoadPoint
from capsim.errors import CapsimInputError

RULES = ("alternate", "highest")


def _config_key(point: LoadPoint) -> str:
    return point.server.key() if point.server is not None else f"unknown:{point.run_dir.name}"


def _by_config(points: list[LoadPoint], key: Callable[[LoadPoint], str]) -> list[list[LoadPoint]]:
    ordered = sorted(points, key=lambda p: (key(p), p.rate_rps or 0.0, p.label))
    return [list(group) for _, group in groupby(ordered, key=key)]


def split(points: list[LoadPoint], rule: str | None,
          config_key: Callable[[LoadPoint], str] = _config_key) -> tuple[list[LoadPoint], list[LoadPoint]]:
    """(fit points, held-out points) under `rule` (None: everything is fitted, nothing held out).
    `config_key` labels a point's server configuration (LLM points: the engine's scheduler,
    llm_runfolder.scheduler_key)."""
    if rule is None:
        return list(points), []
    held: set[int] = set()
    if rule == "alternate":
        for group in _by_config(points, config_key):
            held.update(id(p) for p in group[1::2])
    elif rule == "highest":
        for group in _by_config(points, config_key):
            if len(group) > 1:
                held.add(id(group[-1]))
    elif rule.startswith("server:"):
        pattern = rule.removeprefix("server:")
        held.update(id(p) for p in points if fnmatch.fnmatchcase(config_key(p), pattern))
        if not held:
            keys = ", ".join(sorted({config_key(p) for p in points}))
            raise CapsimInputError(f"no server configuration matches {pattern!r} (configurations: {keys})",
                                   field="--holdout")
    else:
        patterns = [p.strip() for p in rule.split(",") if p.strip()]
        held.update(id(p) for p in points if any(fnmatch.fnmatchcase(p.label, pat) for pat in patterns))
        if not held:
            labels = ", ".join(p.label for p in points)
            raise CapsimInputError(f"no load point matches {rule!r} (points: {labels}); expected alternate, "
                                   "highest, server:GLOB or a glob over these labels", field="--holdout")
    fit = [p for p in points if id(p) not in held]
    holdout = [p for p in points if id(p) in held]
    if not fit:
        raise CapsimInputError(f"{rule!r} holds out every load point; nothing is left to fit", field="--holdout")
    if not holdout:
        raise CapsimInputError(f"{rule!r} holds out nothing: every configuration has a single load point "
                               "(give more load levels, or a glob naming the points to hold out)", field="--holdout")
    return fit, holdout
