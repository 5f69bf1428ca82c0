"""Calibration and validation: measured run folders → service-time profiles, and how far simulation
is from measurement (`capsim calibrate`, `capsim validate`; docs/validation.md)."""

from capsim.calibration.calibrate import CalibrationResult, calibrate
from capsim.calibration.runfolder import LoadPoint, ServerSettings, read_run_folder, read_run_folders
from capsim.calibration.validate import ValidationResult, validate_run, write_validation

__all__ = [
    "CalibrationResult",
    "LoadPoint",
    "ServerSettings",
    "ValidationResult",
    "calibrate",
    "read_run_folder",
    "read_run_folders",
    "validate_run",
    "write_validation",
]
