"""Bad inputs made from the bundled ones: the mutations behind tests/test_fuzz_bad_input.py and
benchmarks/bad_input_fuzz.py (which runs many more of them and prints the table in docs/bad-input.md).

A case is a bundled scenario or profile with one mutation, chosen by a class name and a seed, and
the `capsim check` command line that reads it. Every case is reproducible from (file, class, seed).
Values are kept out of the run-budget cases (e.g. `max_batch_size: 1000000000`), which the budget
check handles, by keeping replacement integers small; floats may be huge (1e300) but a huge float in
an integer field is refused as a float.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
PROFILES = sorted((REPO / "scenarios" / "profiles").glob("*.json"))
PROFILE_SCENARIO = ("measured-cnn-cpu.yaml", "profiles/cnn-cpu.json")
"""Profiles are read through this scenario, the mutated one swapped in for the profile it names."""
TRACE = REPO / "scenarios" / "data" / "azure-llm-2023-conv.csv"
TRACE_SCENARIO = ("trace-replay-moderation.yaml", "data/azure-llm-2023-conv.csv")
TRACE_ROWS = 2_000
"""Traces are cut to their first rows, so that a case reads a small measurement file."""
BAD_CELLS = ("inf", "-inf", "nan", "1e400", "", "x", "-1", "2023-13-45 99:99:99", "0", "1e300", '"', "1,2,3")

BAD_NUMBERS: tuple[Any, ...] = (float("inf"), float("-inf"), float("nan"), -1, 0, -0.5, 1e300, 10**30)
BAD_VALUES: tuple[Any, ...] = ("3", "1.5", "inf", "nan", True, False, None, [1, 2], {"a": 1}, "", "x" * 300)
BAD_SET_TEXTS = (".inf", "-.inf", ".nan", "inf", "nan", "1e400", "-1", "0", "true", "'3'", "[1, 2]", "{a: 1}", "",
                 "1e3", "{a: 1, a: 2}", "[" * 500, "*x", "&a [*a]", "!!binary x", "0x10", "1_0", "1:30")  # fmt: skip
BAD_VARY_TEXTS = ("1..inf", "1..1e300:1e-300", ".nan,1", "1..5:0", "5..1", "1..2:.inf", "a,a", "1e3..1e4:1e-3",
                  "{a: 1},{a: 2}", ".inf,1", "1..3")  # fmt: skip

SCENARIO_CLASSES = (
    "drop_key", "bad_number", "bad_value", "unknown_key", "duplicate_key", "deep_nest", "alias_bomb",
    "truncate", "random_bytes", "huge_file", "set_value", "vary_value",
)  # fmt: skip
PROFILE_CLASSES = (
    "drop_key", "bad_number", "bad_value", "unknown_key", "duplicate_key", "deep_nest", "truncate",
    "random_bytes", "decreasing_quantile", "negative_latency",
)  # fmt: skip
TRACE_CLASSES = ("bad_cell", "truncate", "random_bytes", "header", "one_instant")
CATALOGUE = REPO / "capsim" / "hardware" / "catalogue.yaml"
CATALOGUE_CLASSES = ("drop_key", "bad_number", "bad_value", "unknown_key", "duplicate_key", "deep_nest",
                     "alias_bomb", "truncate", "random_bytes")  # fmt: skip
"""The shipped catalogue, mutated and given as `--catalogue FILE` to the quickstart scenario."""


@dataclass(frozen=True)
class Case:
    """One mutated input: what was mutated, how, and the `capsim` arguments that read it."""

    kind: str  # "scenario", "profile", "trace" or "catalogue"
    original: str  # the bundled file's name
    mutation: str
    seed: int
    argv: tuple[str, ...]
    mutated_file: Path
    must_reject: bool  # an input no reading may accept (a non-finite number, a key twice, ...): exit 2

    @property
    def label(self) -> str:
        """`kind/mutation`: the row of the results table."""
        return f"{self.kind}/{self.mutation}"


def prepare_workdir(root: Path) -> Path:
    """A folder laid out like scenarios/ (profiles copied, data linked) where mutated files are written,
    so relative paths in the scenarios resolve."""
    root.mkdir(parents=True, exist_ok=True)
    profiles = root / "profiles"
    if not profiles.exists():
        shutil.copytree(REPO / "scenarios" / "profiles", profiles)
    data = root / "data"
    if not data.exists():
        data.symlink_to(REPO / "scenarios" / "data")
    return root


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) pair under `data`, mappings and lists included as their own entries."""
    out: list[tuple[tuple[Any, ...], Any]] = [(path, data)] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _leaves(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data[:40]):  # long lists (quantiles): the first 40 are plenty
            out += _leaves(value, (*path, i))
    return out


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _delete(data: Any, path: tuple[Any, ...]) -> None:
    for part in path[:-1]:
        data = data[part]
    del data[path[-1]]


def _dump(data: Any, as_json: bool) -> str:
    return json.dumps(data, indent=1) if as_json else yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


_ALWAYS_REJECTED = {"duplicate_key", "deep_nest", "alias_bomb", "huge_file", "decreasing_quantile", "negative_latency"}
_NON_FINITE_TEXTS = {".inf", "-.inf", ".nan", "1e400"}


def _non_finite(value: Any) -> bool:
    """A number no input may hold: a float that is not finite, or an integer beyond 64 bits."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, int) and abs(value) >= 2**63


def _mutate_data(data: Any, mutation: str, rng: random.Random, as_json: bool) -> tuple[str, bool]:
    """The mutated document, and whether it holds a value no schema may accept (non-finite)."""
    leaves = _leaves(data)
    numbers = [(p, v) for p, v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)]
    mappings = [(p, v) for p, v in leaves if isinstance(v, dict)] or [((), data)]
    non_finite = False
    if mutation == "drop_key":
        keyed = [p for p, _ in leaves if isinstance(p[-1], str)]
        _delete(data, rng.choice(keyed))
    elif mutation == "bad_number":
        path, _ = rng.choice(numbers)
        value = rng.choice(BAD_NUMBERS)
        non_finite = _non_finite(value)
        _set(data, path, value)
    elif mutation == "bad_value":
        path, _ = rng.choice(leaves)
        _set(data, path, rng.choice(BAD_VALUES))
    elif mutation == "unknown_key":
        path, mapping = rng.choice(mappings)
        mapping[rng.choice(["extra", "max_batch", "replicas_", "rate"])] = rng.choice([1, "x", None])
    elif mutation == "deep_nest":
        path, _ = rng.choice(leaves)
        depth = rng.choice([65, 200, 5_000, 50_000])
        marker = "DEEP_NEST_MARKER"
        _set(data, path, marker)
        nested = "[" * depth + "1" + "]" * depth
        return _dump(data, as_json).replace(json.dumps(marker) if as_json else marker, nested, 1), True
    elif mutation in ("decreasing_quantile", "negative_latency"):
        point = rng.choice(data["points"])
        q = point["quantiles_ms"]
        i = rng.randrange(1, len(q)) if mutation == "decreasing_quantile" else 0
        q[i] = q[i - 1] * 0.5 - 0.001 if mutation == "decreasing_quantile" else -rng.choice([0.001, 1.0, 1e6])
    else:
        raise ValueError(f"unknown data mutation {mutation}")
    return _dump(data, as_json), non_finite


def _mutate_text(text: str, mutation: str, rng: random.Random, as_json: bool) -> str | bytes:
    raw = text.encode()
    if mutation == "truncate":
        return raw[: rng.randrange(len(raw))]
    if mutation == "random_bytes":
        out = bytearray(raw)
        for _ in range(rng.choice([1, 3, 20])):
            start = rng.randrange(len(out))
            out[start : start + rng.randint(1, 8)] = rng.randbytes(rng.randint(1, 8))
        return bytes(out)
    if mutation == "huge_file":  # past the size bound (a comment, so only the size is wrong)
        return text + "#" + "x" * (3 * 1024 * 1024) + "\n"
    if mutation == "alias_bomb":
        lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, rng.choice([7, 9, 12]))]
        return text + "\n".join(lines) + "\n"
    if mutation == "duplicate_key":
        if as_json:
            data = json.loads(text)
            key = rng.choice(list(data))
            return text.rstrip()[:-1].rstrip() + f',\n "{key}": {json.dumps(data[key])}\n}}\n'
        lines = text.splitlines()
        keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*[A-Za-z_]\w*:(\s|$)", line)]
        i = rng.choice(keyed)
        return "\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]) + "\n"
    raise ValueError(f"unknown text mutation {mutation}")


_TEXT_MUTATIONS = {"truncate", "random_bytes", "huge_file", "alias_bomb", "duplicate_key"}


def _mutate_trace(text: str, mutation: str, rng: random.Random) -> tuple[str | bytes, bool]:
    """A mutated CSV trace, and whether no reading may accept it."""
    header, *rows = text.splitlines()[: TRACE_ROWS + 1]
    if mutation == "bad_cell":
        cell = rng.choice(BAD_CELLS)
        i = rng.randrange(len(rows))
        rows[i] = cell + rows[i][rows[i].index(",") :]
        return "\n".join([header, *rows]) + "\n", cell in ("inf", "-inf", "nan", "1e400", "", "x")
    if mutation == "header":
        return "\n".join([rng.choice(["", "time", "TIMESTAMP,TIMESTAMP,x", "a,b,c"]), *rows]) + "\n", False
    if mutation == "one_instant":
        stamp = rows[0].split(",")[0]
        return "\n".join([header, *(stamp + row[row.index(",") :] for row in rows)]) + "\n", True
    return _mutate_text("\n".join([header, *rows]) + "\n", mutation, rng, as_json=False), False


def _reading_scenario(workdir: Path, tag: str, reads: tuple[str, str], target: Path) -> Path:
    """A copy of a bundled scenario that reads `target` instead of the file it names."""
    name, named = reads
    scenario = workdir / f"reads-{tag}.yaml"
    text = (REPO / "scenarios" / name).read_text(encoding="utf-8")
    scenario.write_text(text.replace(named, str(target.relative_to(workdir))), encoding="utf-8")
    return scenario


def make_case(kind: str, original: Path, mutation: str, seed: int, workdir: Path) -> Case:
    """Write the mutated file into `workdir` (see `prepare_workdir`) and return its case."""
    rng = random.Random(f"{original.name}/{mutation}/{seed}")
    text = original.read_text(encoding="utf-8")
    as_json = kind == "profile"
    tag = f"{original.stem}-{mutation}-{seed}"
    if kind == "scenario":
        target = workdir / f"{tag}.yaml"
        argv: tuple[str, ...] = ("check", str(target))
        if mutation in ("set_value", "vary_value"):
            target.write_text(text, encoding="utf-8")
            data = yaml.safe_load(text)
            path = ".".join(str(p) for p in rng.choice(_leaves(data))[0])
            if mutation == "set_value":
                value_text = rng.choice(BAD_SET_TEXTS)
                argv = (*argv, "--set", f"{path}={value_text}")
                return Case(kind, original.name, mutation, seed, argv, target, value_text in _NON_FINITE_TEXTS)
            else:  # every variant is validated before any runs, and duration_s=-1 makes each one invalid
                vary = f"{path}={rng.choice(BAD_VARY_TEXTS)}"
                argv = ("sweep", str(target), "--vary", vary, "--vary", "duration_s=-1", "--jobs", "1", "--quiet")
            return Case(kind, original.name, mutation, seed, argv, target, True)
    elif kind == "trace":
        target = workdir / f"{tag}.csv"
        argv = ("check", str(_reading_scenario(workdir, tag, TRACE_SCENARIO, target)))
        content, must_reject = _mutate_trace(text, mutation, rng)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        return Case(kind, original.name, mutation, seed, argv, target, must_reject)
    elif kind == "catalogue":
        target = workdir / f"{tag}.yaml"
        argv = ("check", str(REPO / "scenarios" / "quickstart.yaml"), "--catalogue", str(target))
    else:
        target = workdir / "profiles" / f"{tag}.json"
        argv = ("check", str(_reading_scenario(workdir, tag, PROFILE_SCENARIO, target)))
    must_reject = mutation in _ALWAYS_REJECTED
    if mutation in _TEXT_MUTATIONS:
        content: str | bytes = _mutate_text(text, mutation, rng, as_json)
    else:
        content, non_finite = _mutate_data(json.loads(text) if as_json else yaml.safe_load(text), mutation, rng,
                                           as_json)  # fmt: skip
        must_reject = must_reject or non_finite
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    return Case(kind, original.name, mutation, seed, argv, target, must_reject)
