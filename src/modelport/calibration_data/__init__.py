"""Calibration and evaluation data: one set of feed dicts shared by every backend."""

from modelport.calibration_data.dataset import MIN_CALIBRATION_SAMPLES, CalibrationSet
from modelport.calibration_data.loaders import from_npz_dir, from_text_file, load_source

__all__ = [
    "MIN_CALIBRATION_SAMPLES",
    "CalibrationSet",
    "from_npz_dir",
    "from_text_file",
    "load_source",
]
