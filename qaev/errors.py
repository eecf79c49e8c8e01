"""User-facing errors: each carries a one-line message naming the file, layer or field."""
from __future__ import annotations

__all__ = ["QaevError", "ModelError", "ConfigError", "DataError", "WriteError", "Interrupted"]


class QaevError(Exception):
    """Base class for errors caused by the user's input; the CLI prints them in one line."""

    exit_code = 2


class ModelError(QaevError):
    """The ONNX model cannot be loaded, analysed or quantized."""


class ConfigError(QaevError, ValueError):
    """A config, table or option is malformed."""


class DataError(QaevError):
    """Calibration or evaluation data is missing or does not match the model."""


class WriteError(QaevError):
    """A file cannot be written (a full disk, no permission, a directory in the way)."""


class Interrupted(QaevError):
    """A command stopped by Ctrl-C or SIGTERM before it had anything to write; the message
    says what was kept. Exit code 130 (``exit_code`` is set to 143 for SIGTERM)."""

    exit_code = 130
