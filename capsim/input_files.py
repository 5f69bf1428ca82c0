"""Reading people's YAML and JSON: one strict, bounded reader for every file and flag value capsim parses.

Scenarios, hardware catalogues, `--set`/`--vary` values and service-time profiles all come through
here, so that these rules hold everywhere, each written once:

- **No key twice.** PyYAML and `json` keep the last of two equal keys silently; here it is an error
  naming the line (YAML) or the key (JSON).
- **YAML 1.2 numbers.** `1e3` and `2.5E-4` are floats (PyYAML's YAML 1.1 reads them as the strings
  '1e3' and '2.5E-4'). Integers stay integers: a field that counts (replicas, batch size, seed) wants
  `1000000` or `1_000_000`; `1e6` is a float and is refused there (docs/bad-input.md).
- **Only finite numbers.** `.inf`, `.nan`, `1e400` (which overflows to inf) and JSON's `NaN` and
  `Infinity` are refused wherever they appear, even inside free-form mappings, naming the field;
  so are integers outside 64 bits (`10**30` replicas would overflow the simulator's arrays).
- **Bounded.** At most `MAX_YAML_BYTES` / `MAX_JSON_BYTES`, `MAX_DEPTH` levels of nesting, and
  `MAX_VALUES` values once YAML aliases are expanded, so a 10,000-deep document or a "billion
  laughs" alias bomb is refused before anything walks it, in milliseconds and without recursion.

Every refusal is a `CapsimInputError` (one line, exit code 2).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from capsim.errors import CapsimInputError

if yaml.__with_libyaml__:  # libyaml's parser (about 3x faster); the composer above it stays in Python
    from yaml._yaml import CParser as _EventSource
else:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventSource(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


MAX_YAML_BYTES = 1024 * 1024
"""A scenario or catalogue is a few KB (the shipped catalogue 19 KB); 1 MiB of dense YAML (~250,000
values) takes 3 s on the loaded 2-core VM (docs/bad-input.md)."""
MAX_JSON_BYTES = 8 * 1024 * 1024
"""A profile is ~10 KB (1,000 batch sizes ~0.6 MB); a 5.6 MiB one reads and validates in 0.5 s."""
MAX_DEPTH = 64
"""Levels of nesting; the bundled files use at most 6."""
MAX_VALUES = 1_000_000
"""Scalars, lists and mappings in one document once aliases are expanded."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML12_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def _refuse(source: str, node_or_mark: Any, message: str) -> CapsimInputError:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return CapsimInputError(f"{where}{message}", source=source)


class _StrictComposer(Composer):
    """PyYAML's composer, refusing duplicate keys, deep nesting, recursive aliases and alias bombs."""

    source = "<yaml>"
    check_event: Callable[..., bool]  # provided by the event source (the parser) beside it
    peek_event: Callable[[], Any]

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._expanded: dict[int, int] = {}  # id(node) -> values under it with aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Any:
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._expanded:
                raise _refuse(self.source, mark, "an alias inside the node it refers to (recursive data)")
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _refuse(self.source, self.peek_event(), f"nested more than {MAX_DEPTH} levels deep")
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, SequenceNode):
            children: list[Node] = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        count = 1 + sum(self._expanded[id(child)] for child in children)
        if count > MAX_VALUES:
            raise _refuse(self.source, node, f"more than {MAX_VALUES:,} values once aliases are expanded")
        self._expanded[id(node)] = count
        return node

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
                continue  # `<<: *defaults` may be overridden key by key: that is what merge keys are for
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first_line:
                seen = first_line[key.tag, key.value]
                raise _refuse(self.source, key, f"duplicate key '{key.value}' (first written on line {seen})")
            first_line[key.tag, key.value] = line
        return node


class _StrictLoader(_StrictComposer, _EventSource, SafeConstructor, Resolver):
    """A SafeLoader with the rules of the module docstring."""

    def __init__(self, stream: str, source: str) -> None:
        _EventSource.__init__(self, stream)
        _StrictComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.source = source


_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789"))


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document under the module's rules; errors name `source` and the line."""
    if len(text) > MAX_YAML_BYTES:
        raise CapsimInputError(f"larger than {MAX_YAML_BYTES // 1024 // 1024} MiB (got {len(text):,} characters)",
                               source=source)  # fmt: skip
    loader = _StrictLoader(text, source)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        if "maximum nesting depth" in (exc.problem or ""):  # PyYAML >= 6.0.4's scanner stops deep flow
            raise _refuse(source, mark, f"nested more than {MAX_DEPTH} levels deep") from None  # nesting first
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = f"{exc.context}, {exc.problem}" if exc.context and exc.problem else exc.problem or exc.context
        raise CapsimInputError(f"invalid YAML: {where}{what}", source=source) from None
    except yaml.YAMLError as exc:
        raise CapsimInputError(f"invalid YAML: {' '.join(str(exc).split())}", source=source) from None
    except (ValueError, OverflowError, RecursionError) as exc:  # an int of 5,000 digits, a bad !!binary
        raise CapsimInputError(f"invalid YAML: {' '.join(str(exc).split())[:200]}", source=source) from None
    finally:
        loader.dispose()
    check_numbers(data, source)
    return data


def _read_text(path: Path, max_bytes: int, what: str) -> str:
    """The file's text, reading at most `max_bytes` + 1 bytes: the size a file reports is not trusted
    (files under /proc report 0 bytes and can yield gigabytes)."""
    if not path.is_file():
        raise CapsimInputError(f"{what} not found", source=str(path))
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise CapsimInputError(f"larger than {max_bytes // 1024 // 1024} MiB", source=str(path))
        return raw.decode("utf-8-sig")  # a leading byte-order mark is not part of the text
    except UnicodeDecodeError as exc:
        raise CapsimInputError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from None
    except OSError as exc:
        raise CapsimInputError(f"cannot read ({exc.strerror or exc})", source=str(path)) from None


def read_yaml_file(path: Path, what: str = "file") -> Any:
    """Read and parse a YAML file (see `load_yaml`); `what` names it when it is missing."""
    return load_yaml(_read_text(path, MAX_YAML_BYTES, what), str(path))


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key '{key}'")
        result[key] = value
    return result


def read_json_file(path: Path, what: str = "file") -> Any:
    """Read and parse a JSON file under the module's rules (no NaN/Infinity, no key twice, bounded).
    NaN and Infinity parse (json's extension), and are then refused naming their field."""
    text = _read_text(path, MAX_JSON_BYTES, what)
    try:
        data = json.loads(text, object_pairs_hook=_pairs_without_duplicates)
    except json.JSONDecodeError as exc:
        raise CapsimInputError(f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}",
                               source=str(path)) from None  # fmt: skip
    except RecursionError:
        raise CapsimInputError("not valid JSON: nested too deeply", source=str(path)) from None
    except ValueError as exc:  # a key twice (the hook above), or an integer of thousands of digits
        raise CapsimInputError(f"not valid JSON: {str(exc)[:200]}", source=str(path)) from None
    _check_depth(data, str(path))
    check_numbers(data, str(path))
    return data


def _check_depth(data: Any, source: str) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CapsimInputError(f"nested more than {MAX_DEPTH} levels deep", source=source)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def dotted_path(parts: tuple[str | int, ...] | list[str | int]) -> str:
    """`("points", 3, "quantiles_ms", 5)` → `points[3].quantiles_ms[5]`: a field as people write it."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


INT64_MAX = 2**63 - 1


def check_numbers(data: Any, source: str, prefix: tuple[str | int, ...] = ()) -> None:
    """Raise naming the first number in `data` (mappings and lists, walked without recursion) that is
    a float that is not finite, or an integer outside 64 bits. This covers free-form fields
    (`hardware.catalogue`, a profile's `provenance`) that no schema types; typed float fields also
    refuse non-finite values themselves (`capsim.input_model`)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, prefix)]
    seen: set[int] = set()  # aliases share objects: walk each once
    while stack:
        node, path = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                raise CapsimInputError(f"expected a finite number (got {node})", source=source,
                                       field=dotted_path(path) or None)  # fmt: skip
        elif isinstance(node, int) and not -INT64_MAX <= node <= INT64_MAX:
            raise CapsimInputError(f"expected an integer within ±{INT64_MAX:.3g} (64 bits) (got {node:.3g})",
                                   source=source, field=dotted_path(path) or None)  # fmt: skip
        elif isinstance(node, (dict, list)):
            if id(node) in seen:
                continue
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((child, (*path, key if isinstance(key, int) else str(key))) for key, child in items)


def parse_value(text: str, source: str) -> Any:
    """A command-line value (`--set path=VALUE`, `--vary path=V1,V2`) read as YAML, so that `4` is an
    integer, `2.5` and `1e3` floats, `true` a boolean and `{kind: gpu}` a mapping. Text that is not
    valid YAML is taken as a string; the rules of the module docstring still apply."""
    if not text.strip():
        return ""
    try:
        return load_yaml(text, source)
    except CapsimInputError as exc:
        if exc.detail.startswith("invalid YAML"):
            return text
        raise
