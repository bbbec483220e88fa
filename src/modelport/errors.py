"""Typed errors that say what is wrong and what to do.

Every error a user can cause is a ModelportError: the CLI prints its message on one line and
exits with its ``exit_code`` (2 for user errors, 1 for internal failures), never a traceback.
"""

from __future__ import annotations


class ModelportError(Exception):
    """Base class: a failure with a message that names the problem and the fix."""

    exit_code = 2


class UsageError(ModelportError):
    """Bad command-line or API arguments."""


class ModelLoadError(ModelportError):
    """The model source cannot be found or loaded."""


class UnknownTarget(ModelportError):
    """A target string that names no known runtime, device or precision."""


class MissingDependency(ModelportError):
    """A backend's runtime or toolchain is not installed; the message names the extra."""


class TargetUnavailable(ModelportError):
    """The target is known and installed but cannot run here (e.g. no CUDA device)."""


class ExportError(ModelportError):
    """torch -> ONNX export failed."""

    exit_code = 1


class ValidationError(ModelportError):
    """An artifact's outputs do not match the reference within tolerance."""

    exit_code = 1


class AccuracyBudgetExceeded(ModelportError):
    """A (quantized) artifact misses its accuracy budget; pass --allow-accuracy-drop to keep it."""


class CalibrationDataError(ModelportError):
    """Calibration or evaluation data is empty, malformed or does not fit the model."""


class InputError(ModelportError):
    """A feed dict does not match the session's inputs (name, dtype, rank or shape)."""


class BundleError(ModelportError):
    """A bundle is missing, incomplete, tampered with or from an unknown schema version."""


class BundleExists(ModelportError):
    """The output bundle exists already; pass --force to replace it."""


class BuildError(ModelportError):
    """A backend failed to build its artifact."""

    exit_code = 1


class UnsupportedOp(ModelportError):
    """An exporter or runtime cannot handle an operator of the model; the message names it."""


class OutputError(ModelportError):
    """An output cannot be written (disk full, read-only, permission); nothing half-written is left."""


class RuntimeFailure(ModelportError):
    """A runtime failed on a feed that passed every input check (out of memory, a runtime or
    backend bug): the runtime's own message, exit 1 (not the user's mistake)."""

    exit_code = 1
