"""The hardware catalogue as one scenario sees it, and the profile transfer it drives.

Kept apart from `capsim.scenario.load` (which fills the catalogue's prices and power into a validated
scenario) because the batch-job search builds candidate scenarios on other hardware and needs the
same transfer step: it imports this small module instead of a private function of the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from capsim.errors import CapsimInputError

if TYPE_CHECKING:
    from capsim.hardware.catalogue import Catalogue
    from capsim.scenario.schema import Hardware, Scenario


def scenario_catalogue(hardware: Hardware, catalogue_path: str | Path | None = None) -> Catalogue:
    """The catalogue a scenario sees: shipped, then `catalogue_path`, then its inline `hardware.catalogue`.

    Inline fields are keyed by the catalogue's own spelling of `hardware.name` (so 'A10G (AWS g5.xlarge)'
    overrides the A10G entry); an unknown name with `kind:` becomes a new entry. Errors in inline fields
    name them as the user wrote them: `hardware.catalogue.<field>`.
    """
    from capsim.hardware import load_catalogue

    catalogue = load_catalogue(catalogue_path)
    if not hardware.catalogue:
        return catalogue
    try:
        key = catalogue.canonical_name(hardware.name)
    except CapsimInputError:
        if "kind" not in hardware.catalogue:
            raise CapsimInputError(
                f"'{hardware.name}' is not in the catalogue, so hardware.catalogue defines a new entry "
                "and must say kind: gpu or cpu",
                field="hardware.catalogue.kind",
            ) from None
        key = hardware.name.split("(", 1)[0].strip() or hardware.name
    try:
        return load_catalogue(catalogue_path, inline={key: hardware.catalogue})
    except CapsimInputError as exc:
        if exc.source != "inline hardware":
            raise
        field = exc.field or ""
        prefix = f"hardware.{key}"
        inline_field = "hardware.catalogue" + field[len(prefix):] if field.startswith(prefix) else field
        raise CapsimInputError(exc.detail, field=inline_field) from None


def transfer_service(scenario: Scenario, catalogue_path: str | Path | None = None) -> Scenario:
    """Transfer a measured profile to the scenario's hardware when `service.transfer` asks for it
    (done once relative paths are resolved); otherwise the scenario unchanged."""
    service = scenario.service
    if getattr(service, "transfer", None) is None:
        return scenario
    from capsim.hardware import resolve_hardware

    catalogue = scenario_catalogue(scenario.hardware, catalogue_path)
    target = resolve_hardware(scenario.hardware.name, None, catalogue)
    return scenario.model_copy(update={"service": service.on_hardware(target, catalogue)})  # type: ignore[union-attr]
