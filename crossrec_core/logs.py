"""Dropping one library's known, harmless log lines by their text, and nothing else of that logger.

A library that logs a warning the engine cannot act on (a deprecation inside another library,
advice that does not apply) fills a person's console with noise; raising that logger's level
would hide its real warnings too. Each caller says which message and why.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Iterator

__all__ = ["MessageFilter", "drop_log_messages", "log_messages_dropped"]


class MessageFilter(logging.Filter):
    """Drops the records whose formatted message matches ``pattern`` from its start (``re.match``)."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"pattern={pattern!r}: give a non-empty regular expression for the message's beginning")
        self.pattern = pattern
        self._regex = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return self._regex.match(record.getMessage()) is None


def _logger(name: str) -> logging.Logger:
    return logging.getLogger(None if name in ("", "root") else name)


def drop_log_messages(logger: str, pattern: str) -> None:
    """From now on, drop ``logger``'s records matching ``pattern`` (installed once: calling again
    with the same arguments adds nothing). ``logger`` "" or "root": records logged through the
    ``logging`` module's functions."""
    target = _logger(logger)
    if not any(isinstance(f, MessageFilter) and f.pattern == pattern for f in target.filters):
        target.addFilter(MessageFilter(pattern))


@contextmanager
def log_messages_dropped(logger: str, pattern: str) -> Iterator[None]:
    """Drop ``logger``'s records matching ``pattern`` inside the block only."""
    target = _logger(logger)
    dropped = MessageFilter(pattern)
    target.addFilter(dropped)
    try:
        yield
    finally:
        target.removeFilter(dropped)
