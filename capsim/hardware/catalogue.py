"""Load the hardware catalogue, merge user files and inline overrides, and look entries up by name.

Layers merge in order: the shipped `catalogue.yaml`, then a user file (`--catalogue FILE`), then
inline entries (a scenario's `hardware:` block). A later layer's entry with the same name (matched
loosely, see `normalize_name`) replaces the earlier entry's fields one by one; a new name adds an
entry, which must then say its `kind`. Bare numbers in a layer take that layer's provenance, so an
override never inherits the shipped figure's source.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from capsim.errors import CapsimInputError
from capsim.hardware.spec import (
    DEFAULT_IDLE_FRACTION_OF_TDP,
    PROVIDER_FIGURE_FIELDS,
    HardwareSpec,
    ProviderSpec,
    expand_figures,
)
from capsim.input_files import load_yaml, read_yaml_file
from capsim.input_model import input_error

CATALOGUE_FORMAT = "capsim-catalogue/1"
_SHIPPED = "catalogue.yaml"
_TOP_LEVEL_KEYS = {"format", "facts", "facts_read_on", "assumptions", "providers", "hardware"}


def normalize_name(name: str) -> str:
    """Lower case without `-`, `_` or spaces: 'h100_sxm', 'H100 SXM' and 'H100-SXM' are one name."""
    return re.sub(r"[-_\s]+", "", name).lower()


def nearest_names(name: str, index: Mapping[str, str], n: int = 3) -> list[str]:
    """Up to `n` names nearest to `name`: those starting with what was typed first, then difflib's.

    `index` maps normalized spellings (names, aliases, instance types) to canonical names.
    """
    query = normalize_name(name.split("(", 1)[0]) or normalize_name(name)
    prefixed = [key for key in index if query and key.startswith(query)]
    close = difflib.get_close_matches(query, list(index), n=2 * n, cutoff=0.5)
    found: list[str] = []
    for key in [*prefixed, *close]:
        if index[key] not in found:
            found.append(index[key])
    return found[:n]


@dataclass
class Catalogue:
    """The merged catalogue: validated entries by canonical name, in file order.

    `raw` keeps each merged entry before validation so that `resolve_hardware` can apply overrides
    and re-derive what depends on them (unit prices from offers, idle power from TDP).
    """

    entries: dict[str, HardwareSpec]
    raw: dict[str, dict[str, Any]]
    files: list[str] = field(default_factory=list)
    providers: dict[str, ProviderSpec] = field(default_factory=dict)
    idle_fraction_of_tdp: float = DEFAULT_IDLE_FRACTION_OF_TDP
    facts_read_on: str | None = None

    def __iter__(self) -> Iterator[HardwareSpec]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        """Canonical names in catalogue order."""
        return list(self.entries)

    def canonical_name(self, name: str, field: str = "hardware.name") -> str:
        """The catalogue's own spelling of `name` (also an alias or a single instance type).

        A trailing parenthesised remark is ignored ('L4 (AWS g6.xlarge)' is L4). Unknown names raise
        a one-line error suggesting the nearest names.
        """
        index = self._index()
        for candidate in (name, name.split("(", 1)[0]):
            hit = index.get(normalize_name(candidate))
            if hit is not None:
                return hit
        suggestions = self.suggest(name)
        hint = f" (did you mean: {', '.join(suggestions)}?)" if suggestions else " (`capsim hardware` lists them)"
        raise CapsimInputError(f"unknown hardware '{name}'{hint}", field=field)

    def get(self, name: str, field: str = "hardware.name") -> HardwareSpec:
        """The entry called `name` (see `canonical_name` for how names match)."""
        return self.entries[self.canonical_name(name, field)]

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Up to `n` canonical names nearest to `name` (see `nearest_names`)."""
        return nearest_names(name, self._index(), n)

    def _index(self) -> dict[str, str]:
        """Normalized name → canonical name, for names, aliases and instance types."""
        index: dict[str, str] = {}
        instance_owner: dict[str, set[str]] = {}
        for spec in self.entries.values():
            for offer in spec.offers:
                instance_owner.setdefault(normalize_name(offer.instance_type), set()).add(spec.name)
        # Instance types first, so that a catalogue name or alias always wins over them.
        for key, owners in instance_owner.items():
            if len(owners) == 1:
                index[key] = next(iter(owners))
        for spec in self.entries.values():
            for alias in spec.aliases:
                index[normalize_name(alias)] = spec.name
        for spec in self.entries.values():
            index[normalize_name(spec.name)] = spec.name
        return index


@functools.cache
def _shipped_document() -> dict[str, Any]:
    text = resources.files("capsim.hardware").joinpath(_SHIPPED).read_text(encoding="utf-8")
    return _parse_document(text, source=f"capsim/hardware/{_SHIPPED}")


def _parse_document(text: str, source: str) -> dict[str, Any]:
    return _check_document(load_yaml(text, source), source)


def _check_document(data: Any, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CapsimInputError("expected a mapping with a 'hardware' key", source=source)
    unknown = sorted(str(key) for key in set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        raise CapsimInputError(f"unknown key (expected one of: {', '.join(sorted(_TOP_LEVEL_KEYS))})",
                               source=source, field=str(unknown[0]))  # fmt: skip
    if data.get("format", CATALOGUE_FORMAT) != CATALOGUE_FORMAT:
        raise CapsimInputError(f"expected '{CATALOGUE_FORMAT}'", source=source, field="format")
    for key in ("hardware", "providers"):
        block = data.get(key) or {}
        if not isinstance(block, dict) or not all(isinstance(v, dict) for v in block.values()):
            raise CapsimInputError("expected a mapping of name → entry", source=source, field=key)
    assumptions = data.get("assumptions") or {}
    idle = assumptions.get("idle_fraction_of_tdp", 0.0) if isinstance(assumptions, dict) else None
    if not isinstance(idle, (int, float)) or isinstance(idle, bool) or not 0 <= idle <= 1:
        raise CapsimInputError(f"expected a mapping with idle_fraction_of_tdp between 0 and 1 (got {idle!r})",
                               source=source, field="assumptions")  # fmt: skip
    return data


def _one_line(exc: ValidationError, data: Any, field: str, source: str | None = None) -> CapsimInputError:
    """The first pydantic error as a one-line `CapsimInputError` under `field`."""
    return input_error(exc, data, source, prefix=(field,), fields_doc="docs/hardware.md")


def _validate(name: str, raw: dict[str, Any], idle_fraction: float, source: str) -> HardwareSpec:
    data = {"idle_fraction_of_tdp": idle_fraction, **raw, "name": name}
    try:
        return HardwareSpec.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, data, f"hardware.{name}", source) from None


class _Merger:
    """Accumulates layers of raw entries by canonical name, remembering which file set each last."""

    def __init__(self) -> None:
        self.raw: dict[str, dict[str, Any]] = {}
        self.source: dict[str, str] = {}
        self._by_key: dict[str, str] = {}  # normalized name or alias → canonical name

    def add_layer(self, hardware: Mapping[str, Any], default_provenance: dict[str, Any], source: str) -> None:
        for name, entry in hardware.items():
            spec_source = entry.get("spec_source")
            default = dict(spec_source) if isinstance(spec_source, dict) else default_provenance
            expanded = copy.deepcopy(expand_figures(dict(entry), default))
            canonical = self._by_key.get(normalize_name(str(name)))
            if canonical is None:
                canonical = str(name)
                self.raw[canonical] = {}
            self.raw[canonical].update(expanded)
            self.source[canonical] = source
            aliases = self.raw[canonical].get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise CapsimInputError(f"expected a list of names (got {aliases!r})"[:200], source=source,
                                       field=f"hardware.{name}.aliases")  # fmt: skip
            for key in [canonical, *aliases]:
                self._by_key[normalize_name(str(key))] = canonical


def _read_user_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CapsimInputError("catalogue file not found", source=str(path), field="--catalogue")
    return _check_document(read_yaml_file(path, "catalogue file"), str(path))


def load_catalogue(
    extra_path: str | Path | None = None, inline: Mapping[str, Mapping[str, Any]] | None = None
) -> Catalogue:
    """The shipped catalogue merged with an optional user file and optional inline entries.

    `inline` maps names to entry fields, as a scenario would carry them. Every error is a one-line
    `CapsimInputError` naming the file and the field path (for example
    `my.yaml: hardware.H100-SXM.tdp_w.value: Input should be a valid number`).
    """
    shipped = _shipped_document()
    shipped_source = f"capsim/hardware/{_SHIPPED}"
    idle_fraction = float((shipped.get("assumptions") or {}).get("idle_fraction_of_tdp", DEFAULT_IDLE_FRACTION_OF_TDP))
    merger = _Merger()
    merger.add_layer(shipped["hardware"], {}, shipped_source)
    providers = _merge_providers({}, shipped.get("providers") or {}, {}, shipped_source)
    files = [shipped_source]
    if extra_path is not None:
        path = Path(extra_path)
        user = _read_user_file(path)
        idle_fraction = float((user.get("assumptions") or {}).get("idle_fraction_of_tdp", idle_fraction))
        merger.add_layer(
            user.get("hardware") or {}, {"source": f"user catalogue {path}", "confidence": "user"}, str(path)
        )
        providers = _merge_providers(
            providers,
            user.get("providers") or {},
            {"source": f"user catalogue {path}", "confidence": "user"},
            str(path),
        )
        files.append(str(path))
    if inline:
        merger.add_layer(inline, {"source": "inline hardware entry", "confidence": "user"}, "inline hardware")
    known = {normalize_name(n): n for n, body in merger.raw.items() if "kind" in body}
    for name, body in merger.raw.items():
        if "kind" not in body:  # most likely a misspelt name meant to override an entry
            hint = nearest_names(name, known)
            did_you_mean = f" (did you mean: {', '.join(hint)}?)" if hint else ""
            raise CapsimInputError(f"not in the catalogue, so a new entry: it must say kind: gpu or cpu{did_you_mean}",
                                   source=merger.source[name], field=f"hardware.{name}")  # fmt: skip
    entries = {name: _validate(name, body, idle_fraction, merger.source[name]) for name, body in merger.raw.items()}
    return Catalogue(entries=entries, raw=merger.raw, files=files, providers=providers,
                     idle_fraction_of_tdp=idle_fraction, facts_read_on=str(shipped.get("facts_read_on")))  # fmt: skip


def _merge_providers(providers: dict[str, ProviderSpec], layer: Mapping[str, Any], default: dict[str, Any],
                     source: str) -> dict[str, ProviderSpec]:  # fmt: skip
    """Providers merge like entries: by lower-case name, field by field, bare numbers taking `default`."""
    out = dict(providers)
    for name, fields in layer.items():
        key = str(name).lower()
        base = out[key].model_dump(exclude={"name"}) if key in out else {}
        body = {**base, **expand_figures(dict(fields), default, PROVIDER_FIGURE_FIELDS), "name": key}
        try:
            out[key] = ProviderSpec.model_validate(body)
        except ValidationError as exc:
            raise _one_line(exc, body, f"providers.{name}", source) from None
    return out


def resolve_hardware(name: str, overrides: Mapping[str, Any] | None, catalogue: Catalogue,
                     field: str = "hardware") -> HardwareSpec:  # fmt: skip
    """The catalogue entry `name` with `overrides` applied, as a scenario's `hardware:` block gives it.

    `overrides` holds entry fields: figures as bare numbers (`tdp_w: 300`,
    `on_demand_usd_per_hour: 0.7`, marked confidence `user`) or full figure mappings, and any other
    entry field (`offers`, `description`). Derived figures follow the overrides: a new `tdp_w` moves
    the estimated idle power, new `offers` move the unit prices. An unknown name raises a one-line
    error with the nearest names, unless `overrides` says `kind:` — then it is a new entry.
    Errors name `field` (default `hardware`), e.g. `hardware.tdp_w.value: ...`.
    """
    overrides = dict(overrides or {})
    overrides.pop("name", None)
    try:
        canonical = catalogue.canonical_name(name, field=f"{field}.name")
        base = copy.deepcopy(catalogue.raw[canonical])
    except CapsimInputError:
        if "kind" not in overrides:
            raise
        canonical, base = name, {}
    layer = expand_figures(overrides, {"source": "inline hardware override", "confidence": "user"})
    merged = {**base, **layer}
    data = {"idle_fraction_of_tdp": catalogue.idle_fraction_of_tdp, **merged, "name": canonical}
    try:
        return HardwareSpec.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, data, field) from None
