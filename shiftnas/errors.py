"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class ShiftnasError(Exception):
    """An error caused by user input or the environment (bad config, missing file, ...)."""


class ConfigError(ShiftnasError):
    """A configuration value is malformed or unknown."""


class DataError(ShiftnasError):
    """A data set cannot be found or read."""


class CheckpointError(ShiftnasError):
    """A checkpoint is missing or does not match the network it is loaded into."""


class ExportError(ShiftnasError):
    """ONNX export failed or the exported graph disagrees with PyTorch."""
