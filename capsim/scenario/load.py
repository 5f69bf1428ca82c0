"""Loading a scenario: YAML reading, `--set dotted.path=value` overrides, validation against the
schema (`capsim.scenario.schema`) with errors naming the file and field, and the figures the file
leaves out filled in from the hardware catalogue (`capsim.scenario.catalogue`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from capsim.errors import CapsimInputError
from capsim.hardware.mig import resolve_mig
from capsim.input_files import parse_value, read_yaml_file
from capsim.input_model import input_error
from capsim.scenario.catalogue import scenario_catalogue, transfer_service
from capsim.scenario.schema import Scenario
from capsim.serving.batchjob.checks import check_batch_job
from capsim.serving.spot import SpotCapacity

if TYPE_CHECKING:
    from capsim.hardware.catalogue import Catalogue
    from capsim.hardware.spec import HardwareSpec
    from capsim.serving.batchjob.schema import HardwareCandidate


def validate_scenario(data: Any, source: str, catalogue_path: str | Path | None = None) -> Scenario:
    """Validate a parsed scenario mapping; raise CapsimInputError naming the first bad field.
    Hardware and spot figures the file leaves out are filled in from the hardware catalogue: the
    shipped one, merged with `catalogue_path` (`--catalogue FILE`) and the scenario's inline
    `hardware.catalogue` fields."""
    if not isinstance(data, dict):
        raise CapsimInputError("expected a mapping of scenario fields at the top level", source=source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise input_error(exc, data, source, fields_doc="docs/scenarios.md") from None
    try:
        return _with_catalogue_figures(scenario, catalogue_path)
    except CapsimInputError as exc:
        raise CapsimInputError(exc.detail, source=exc.source or source, field=exc.field) from None


def _with_catalogue_figures(scenario: Scenario, catalogue_path: str | Path | None = None) -> Scenario:
    hardware = scenario.hardware
    spot: SpotCapacity | None = getattr(scenario.serving, "spot", None)
    needs_price = hardware.usd_per_hour is None
    needs_transfer = getattr(scenario.service, "transfer", None) is not None
    needs_spot = spot is not None and (
        spot.usd_per_hour is None or not spot.rate_known or "notice_s" not in spot.model_fields_set
    )
    wants_catalogue = hardware.catalogue is not None or catalogue_path is not None
    if hardware.mig is not None or hardware.sharing is not None:
        _check_shared_gpu(scenario)
    for name, stage in (getattr(scenario.serving, "stages", None) or {}).items():
        if stage.hardware is not None and (stage.hardware.mig is not None or stage.hardware.sharing is not None):
            raise CapsimInputError("GPU sharing (mig, sharing) is modelled for serving.mode realtime, not in a "
                                   "graph's stages", field=f"serving.stages.{name}.hardware")  # fmt: skip
    needs_mig = hardware.mig is not None and not hardware.mig.complete
    if not (needs_price or hardware.tdp_w is None or needs_transfer or needs_spot or wants_catalogue or needs_mig):
        return scenario
    from capsim.hardware import replica_usd_per_hour, resolve_hardware

    catalogue = scenario_catalogue(hardware, catalogue_path)
    try:
        spec = resolve_hardware(hardware.name, None, catalogue)
    except CapsimInputError as exc:
        if needs_price or needs_transfer:
            raise  # unknown name and nothing to go on: the message suggests the nearest names
        if needs_mig:
            assert hardware.mig is not None
            mig = resolve_mig(hardware.mig, hardware.name, None)
            return scenario.model_copy(update={"hardware": hardware.model_copy(update={"mig": mig})})
        if spot is not None and (spot.usd_per_hour is None or not spot.rate_known):
            raise CapsimInputError(
                f"{exc.detail}; serving.spot takes the figures it leaves out from the catalogue, so give "
                "serving.spot.usd_per_hour and an interruption rate, or describe it in hardware.catalogue",
                field=exc.field,
            ) from None
        return scenario  # a custom name with its own figures: nothing to fill in
    update: dict[str, Any] = {}
    if needs_mig:
        assert hardware.mig is not None
        update["mig"] = resolve_mig(hardware.mig, spec.name, spec.mig)
    if needs_price:
        update["usd_per_hour"] = replica_usd_per_hour(spec, hardware.gpus_per_replica)
    if hardware.tdp_w is None and spec.tdp_w.value is not None:
        update["tdp_w"] = spec.tdp_w.value * hardware.gpus_per_replica
        if hardware.idle_w is None and spec.idle_power_w.value is not None:
            update["idle_w"] = spec.idle_power_w.value * hardware.gpus_per_replica
    result = scenario.model_copy(update={"hardware": hardware.model_copy(update=update)})
    if needs_spot:
        assert spot is not None
        filled = _spot_from_catalogue(spot, spec, catalogue, hardware.gpus_per_replica)
        serving = scenario.serving.model_copy(update={"spot": filled})
        result = result.model_copy(update={"serving": serving})
    # A profile transfer happens in load_scenario, once relative paths are resolved.
    return result


def _check_shared_gpu(scenario: Scenario) -> None:
    """`hardware.mig` and `hardware.sharing` are modelled for a real-time fleet of one-GPU replicas
    on on-demand GPUs."""
    field = "hardware.mig" if scenario.hardware.mig is not None else "hardware.sharing"
    if scenario.serving.mode != "realtime":
        raise CapsimInputError(f"GPU sharing is modelled for serving.mode realtime, not {scenario.serving.mode}",
                               field=field)  # fmt: skip
    if scenario.hardware.gpus_per_replica != 1:
        raise CapsimInputError("replicas sharing a GPU use part of one: gpus_per_replica must be 1",
                               field="hardware.gpus_per_replica")  # fmt: skip
    if getattr(scenario.serving, "spot", None) is not None:
        raise CapsimInputError("spot capacity is not modelled for shared GPUs (a reclaimed GPU takes all its "
                               f"replicas): remove serving.spot or {field}", field=field)  # fmt: skip


def _spot_from_catalogue(
    spot: SpotCapacity, spec: HardwareSpec, catalogue: Catalogue, gpus_per_replica: int
) -> SpotCapacity:
    """`serving.spot` with the figures it leaves out taken from the catalogue entry and its provider."""
    from capsim.hardware import replica_usd_per_hour
    from capsim.hardware.spot import reclaimed_fraction_per_month, spot_notice_s, spot_provider

    def named(exc: CapsimInputError, field: str) -> CapsimInputError:
        return CapsimInputError(f"{exc.detail}; or set {field} in the scenario", field=field)

    if spot.provider is not None and spot.provider.lower() not in catalogue.providers:
        known = ", ".join(sorted(catalogue.providers)) or "none"
        raise CapsimInputError(f"unknown provider '{spot.provider}' (known: {known})", field="serving.spot.provider")
    update: dict[str, Any] = {}
    if spot.usd_per_hour is None:
        try:
            update["usd_per_hour"] = replica_usd_per_hour(spec, gpus_per_replica, "spot")
        except CapsimInputError as exc:
            raise named(exc, "serving.spot.usd_per_hour") from None
    if not spot.rate_known:
        try:
            figure = reclaimed_fraction_per_month(spec, catalogue, spot.provider)
        except CapsimInputError as exc:
            raise named(exc, "serving.spot.monthly_interruption_probability") from None
        update["monthly_interruption_probability"] = figure.value
    if "notice_s" not in spot.model_fields_set:
        try:
            update["notice_s"] = spot_notice_s(spot.provider or spot_provider(spec), catalogue)
        except CapsimInputError as exc:
            raise named(exc, "serving.spot.notice_s") from None
    return spot.model_copy(update=update)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` → (["a", "b", "c"], value parsed as YAML, so numbers and booleans keep their type;
    see `capsim.input_files.parse_value`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CapsimInputError(f"expected --set dotted.path=value, got '{text}'", source="--set")
    try:
        value = parse_value(raw, "--set")
    except CapsimInputError as exc:
        field = f"{key.strip()}.{exc.field}".replace(".[", "[") if exc.field else key.strip()
        raise CapsimInputError(exc.detail, source="--set", field=field) from None
    return [p for p in key.strip().split(".")], value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `data` with each `dotted.path=value` set (intermediate mappings are created)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise CapsimInputError(f"'{where}' is a value, not a section", source="--set", field=where)
            node = child
        node[path[-1]] = value
    return result


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with one-line errors (missing, too large, syntax, duplicate keys, non-finite
    numbers, nesting: `capsim.input_files`)."""
    return read_yaml_file(path)


def load_scenario(
    path: str | Path, overrides: list[str] | None = None, catalogue_path: str | Path | None = None
) -> Scenario:
    """Read, override and validate a scenario file; relative paths in it are resolved against its folder.
    `catalogue_path` (`--catalogue FILE`) extends or overrides the shipped hardware catalogue."""
    path = Path(path)
    data = read_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise CapsimInputError("expected a mapping of scenario fields at the top level", source=str(path))
        data = apply_overrides(data, overrides)
    scenario = validate_scenario(data, str(path), catalogue_path).resolve_paths(path.parent)
    try:
        scenario = transfer_service(scenario, catalogue_path)
        if scenario.serving.mode == "batch":
            check_batch_scenario(scenario)
        return scenario
    except CapsimInputError as exc:
        raise CapsimInputError(exc.detail, source=exc.source or str(path), field=exc.field) from None


def on_candidate_hardware(scenario: Scenario, candidate: HardwareCandidate, field: str) -> dict[str, Any]:
    """The scenario's data (unvalidated) moved to a candidate's hardware: the candidate's price (or
    the catalogue's), its service time (or the scenario's profile, which `transfer_service` moves by
    roofline once validated), its spot terms (or none). Used by the batch job's hardware search and
    by `capsim plan`; `field` names the candidate in errors."""
    # An LLM roofline derives its step time from the hardware's catalogue figures (it moves with the
    # hardware); llm_linear / llm_fitted coefficients belong to the GPU they were fitted on.
    moves = getattr(scenario.service, "transfer", None) is not None or scenario.service.kind == "llm_roofline"
    if candidate.service is None and not moves:
        raise CapsimInputError(
            "give this hardware's service time (service: ...): the scenario's is not a profile transferred "
            "by roofline (service.transfer) nor an LLM roofline (llm_roofline), so it says nothing about "
            "other hardware",
            field=f"{field}.service",
        )
    data = scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["hardware"] = candidate.hardware_fields()
    if scenario.hardware.usd_per_kwh is not None:  # the electricity price is the site's, not the hardware's
        data["hardware"]["usd_per_kwh"] = scenario.hardware.usd_per_kwh
    if candidate.service is not None:
        data["service"] = candidate.service.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["serving"].pop("spot", None)
    if candidate.spot is not None:
        data["serving"]["spot"] = candidate.spot.model_dump(mode="json", exclude_none=True)
    return data


def candidate_scenario(scenario: Scenario, candidate: HardwareCandidate, index: int) -> Scenario:
    """A batch job on one of its `serving.search.hardware` candidates (number `index`): the
    candidate's price (or the catalogue's), its service time (or the scenario's profile transferred
    to it by roofline), its spot terms (or none); errors name the candidate."""
    field = f"serving.search.hardware[{index}]"
    data = on_candidate_hardware(scenario, candidate, field)
    data["serving"]["search"] = {**data["serving"].get("search", {}), "hardware": []}
    try:
        return transfer_service(validate_scenario(data, field))
    except CapsimInputError as exc:
        raise CapsimInputError(exc.detail, field=f"{field}: {exc.field}" if exc.field else field) from None


def check_batch_scenario(scenario: Scenario) -> None:
    """The load-time checks of a batch job: each `serving.search.hardware` candidate is a valid
    scenario of its own (`candidate_scenario`) that passes `check_batch_job`, and so does the job."""
    search = getattr(scenario.serving, "search", None)
    for i, candidate in enumerate(search.hardware if search is not None else ()):
        on_candidate = candidate_scenario(scenario, candidate, i)  # its errors name the candidate already
        try:
            check_batch_job(on_candidate)
        except CapsimInputError as exc:
            raise CapsimInputError(exc.detail, field=f"serving.search.hardware[{i}]: {exc.field}") from None
    check_batch_job(scenario)
