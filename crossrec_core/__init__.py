"""The shared base every crossrec package imports: errors, persistence, paths, plot and log helpers.

It imports nothing else of the engine, so it sits below ``crossrec_datasets``.
"""

from crossrec_core.errors import (
    CrossrecError, DataFormatError, DatasetNotFoundError, EmbeddingDimensionError, ImageDecodeError, IncompatibleIndexError,
    ModelLoadError, UnknownIdError,
)
from crossrec_core.paths import (
    BROKER_DIR_ENV, CROSSREC_HOME_ENV, DATA_DIR_ENV, cache_dir, crossrec_home, default_broker_dir, models_dir,
    resolve_data_dir,
)
from crossrec_core.logs import MessageFilter, drop_log_messages, log_messages_dropped
from crossrec_core.lru import LRUCache
from crossrec_core.persist import atomic_directory, atomic_write_bytes, atomic_write_text, load_config, save_config
from crossrec_core.reports import Report

__all__ = [
    "CrossrecError", "DataFormatError", "DatasetNotFoundError", "EmbeddingDimensionError", "ImageDecodeError", "IncompatibleIndexError",
    "ModelLoadError", "UnknownIdError",
    "BROKER_DIR_ENV", "CROSSREC_HOME_ENV", "DATA_DIR_ENV", "cache_dir", "crossrec_home", "default_broker_dir",
    "models_dir", "resolve_data_dir",
    "atomic_directory", "atomic_write_bytes", "atomic_write_text", "load_config", "save_config",
    "LRUCache", "Report", "MessageFilter", "drop_log_messages", "log_messages_dropped",
]
