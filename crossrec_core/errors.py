"""Exception types shared by the engine.

Every public boundary raises one of these (or ``ValueError``/``FileNotFoundError`` for plain bad
arguments) with a message naming the argument, the value and what is allowed.
"""

from __future__ import annotations

__all__ = [
    "CrossrecError",
    "ModelLoadError",
    "IncompatibleIndexError",
    "UnknownIdError",
    "EmbeddingDimensionError",
    "ImageDecodeError",
    "DatasetNotFoundError",
    "DataFormatError",
    "InvalidQueryError",
    "ResourceNotFoundError",
]


class CrossrecError(Exception):
    """Base class of the engine's own errors."""


class ModelLoadError(CrossrecError):
    """A checkpoint or pretrained weight could not be loaded (missing, corrupt or mismatched)."""


class IncompatibleIndexError(CrossrecError):
    """An index was built with another model or dimension than the one asked to use it."""


class UnknownIdError(CrossrecError, KeyError):
    """An item or user id is not known to the component asked about it."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class EmbeddingDimensionError(CrossrecError, ValueError):
    """Vectors of the wrong width were given to a component."""


class ImageDecodeError(CrossrecError, ValueError):
    """An image file is missing, truncated or not an image."""


class DatasetNotFoundError(CrossrecError, FileNotFoundError):
    """A data set is missing or not laid out as its manifest says."""


class DataFormatError(CrossrecError, ValueError):
    """A data file is unreadable or does not follow the user-data schema (the message names the
    file, the column or row, and what is expected)."""


class InvalidQueryError(CrossrecError, ValueError):
    """A search query or its filters cannot be answered as given (empty, too long, unknown field)."""


class ResourceNotFoundError(CrossrecError, FileNotFoundError):
    """A packaged lexical resource (a dictionary, WordNet) is not installed where expected."""
