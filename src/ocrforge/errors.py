"""User-facing errors: the CLI prints these as one clear message instead of a traceback. No heavy imports here."""


class OcrforgeError(Exception):
    """Base of every error caused by input (config, data, files), not by a bug."""


class ConfigError(OcrforgeError, ValueError):
    """A config that cannot run; the message lists every problem found."""


class DataError(OcrforgeError, ValueError):
    """A dataset that cannot be built at all (missing path, empty set); the message says which and why."""


class CheckpointError(OcrforgeError, ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


class ParityError(OcrforgeError, RuntimeError):
    """ONNX Runtime disagrees with PyTorch by more than the configured tolerance."""
