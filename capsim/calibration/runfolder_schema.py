"""What calibration reads from a run folder's `manifest.json` and `summary.json`, typed.

The load tester writes many more keys (capsim/loadtest/manifest.py, runner.py); these views name only
the ones that calibration, validation and provenance use, with the types they need, so that a
damaged or hand-edited file is one line naming the file and the field ("manifest.json:
settings.duration_s: Input should be a valid number (got 'long')") rather than a traceback deep in
a fit. Keys not listed here are ignored, as they always were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from capsim.errors import CapsimInputError
from capsim.input_files import read_json_file
from capsim.input_model import InputModel, input_error


class _View(InputModel):
    """A view of a JSON object written by the load tester: strict types, other keys ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ArrivalView(_View):
    """`settings.arrival`: the offered rate of a single-rate run."""

    rate_rps: float | None = Field(default=None, ge=0)


class SettingsView(_View):
    """`settings`: the load test's schedule."""

    warmup_s: float | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, gt=0)
    arrival: ArrivalView | None = None


class ServerConfigValues(_View):
    """`target.server_config.config`: how the reference server batched (its /debug/config)."""

    max_batch_size: int | None = Field(default=None, ge=1)
    max_wait_ms: float = Field(default=0.0, ge=0)
    instances: int = Field(default=1, ge=1)
    queue_capacity: int | None = Field(default=None, ge=0)
    timeout_ms: float | None = Field(default=None, ge=0)


class ServerReport(_View):
    """`target.server_config`: what the target reported about itself."""

    config: ServerConfigValues | None = None
    hardware: dict[str, Any] | None = None
    version: str | None = None


class TargetView(_View):
    """`target`: what was load-tested."""

    model: str | None = None
    server_config: ServerReport | None = None


class ManifestView(_View):
    """`manifest.json`."""

    settings: SettingsView = SettingsView()
    target: TargetView | None = None
    hardware: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None


class StepView(_View):
    """One step of `summary.json` (a sweep's `steps[i]`, or the summary itself for a one-step run)."""

    step: int = 0
    start_s: float | None = None
    rate_rps: float | None = Field(default=None, ge=0)
    valid: bool = True
    partial: bool = False
    invalid_reasons: list[str] = Field(default_factory=list)


class SummaryView(StepView):
    """`summary.json`."""

    status: str | None = None
    model: str | None = None
    warmup_s: float | None = Field(default=None, ge=0)
    duration_s: float | None = Field(default=None, gt=0)
    steps: list[StepView] | None = None


def read_view(path: Path, view: type[_View]) -> tuple[_View, dict[str, Any]]:
    """The JSON object at `path` checked against `view`: (the typed view, the whole object). Errors
    are one line naming the file and, for a wrong type, the field."""
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise CapsimInputError(f"expected a JSON object, got {type(data).__name__}", source=str(path))
    try:
        return view.model_validate(data), data
    except ValidationError as exc:
        raise input_error(exc, data, str(path)) from None


def read_manifest(path: Path) -> tuple[ManifestView, dict[str, Any]]:
    """`manifest.json`, typed where calibration reads it, and whole."""
    view, data = read_view(path, ManifestView)
    assert isinstance(view, ManifestView)
    return view, data


def read_summary(path: Path) -> SummaryView:
    """`summary.json`, typed where calibration reads it."""
    view, _ = read_view(path, SummaryView)
    assert isinstance(view, SummaryView)
    return view
