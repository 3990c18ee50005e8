"""The package's one error hierarchy.

Library code raises these; the entry points (`cli.run`) turn an `InputError` into one line on
stderr and exit status 2. Each module re-exports the classes it raises under their usual names
(`checkpoint.CheckpointError`, `image_io.ImageError`, ...), so callers can catch either.

    Error
    +-- InputError (also a ValueError): something the caller gave cannot be used
    |   +-- ImageError, StyleError, CheckpointError, WeightsError, DatasetError,
    |       DataError, ConfigError, ExportError, DependencyError, VideoError,
    |       MemoryBudgetError
    +-- TrainingError (also a RuntimeError): a run that cannot go on (diverged, no usable data)
    +-- StorageError (also an OSError): the file system failed while an output was written (disk
        full, file too large, I/O error); exit status 1, the earlier outputs are kept
"""


class Error(Exception):
    """Base of every error this package raises on purpose."""


class InputError(Error, ValueError):
    """A file, flag or argument that cannot be used; the message says which and why."""


class ImageError(InputError):
    """An image that cannot be read or written (the message starts with the file name)."""


class StyleError(InputError):
    """A style selection that does not fit the model: unknown name, index out of range, bad weights."""


class CheckpointError(InputError):
    """A checkpoint that does not exist, does not load, or does not match what was asked."""


class WeightsError(InputError):
    """Loss-network (VGG) weights that are missing, unreadable or of another network."""


class DatasetError(InputError):
    """A style dataset (TFRecord of Gram matrices) that cannot be written or read."""


class DataError(InputError):
    """A content source that does not exist, is empty or cannot be read."""


class ConfigError(InputError):
    """Training or evaluation settings that do not fit each other or the style dataset."""


class ExportError(InputError):
    """An export target that cannot be written."""


class DependencyError(InputError):
    """An optional extra that a feature needs is not installed (the message names the extra)."""


class VideoError(InputError):
    """A video that cannot be read, has no frames, or cannot be written."""


class MemoryBudgetError(InputError):
    """A photo that cannot be stylized within the memory budget (the message says what would)."""


class TrainingError(Error, RuntimeError):
    """A training run that cannot go on (the loss diverged); the last good checkpoint is kept."""


class StorageError(Error, OSError):
    """An output that could not be written in full because the file system failed (disk full,
    file too large, I/O error), not because of the path given; the message names the output."""


def file_failure(path, error):
    """The one line reporting `error` for the input file `path` in a run over several files:
    the message's first line, prefixed with `path` unless it already starts with it (an
    ImageError names its file; other errors are about it without saying so)."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return message if message.startswith(path) else f"{path}: {message}"
