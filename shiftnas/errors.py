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


def one_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of a library exception's message (its type's name when it has none), to wrap in
    a :class:`ShiftnasError`; ``with_type`` prefixes the type (``RuntimeError: ...``)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if with_type:
        return f"{type(exc).__name__}: {first}".rstrip(": ")
    return first or type(exc).__name__
