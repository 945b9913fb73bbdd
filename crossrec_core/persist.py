"""Persistence helpers: atomic writes and the ``save_pretrained``/``from_pretrained`` convention.

Every component keeps a frozen dataclass config. ``save_pretrained(dir)`` writes ``config.json``
(with the component's class name and a format version) beside its weights (safetensors), through a
temporary directory that is renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

from crossrec_core.errors import ModelLoadError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "atomic_directory",
    "save_config",
    "load_config",
    "load_split_configs",
    "saved_kind",
    "save_arrays",
    "load_arrays",
    "CONFIG_NAME",
    "TRAINING_CONFIG_NAME",
]

CONFIG_NAME = "config.json"
TRAINING_CONFIG_NAME = "training_config.json"  # how a model was trained, apart from what it is
C = TypeVar("C")
T = TypeVar("T")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """A report as indented UTF-8 JSON, written atomically; values JSON lacks (paths, numpy
    scalars) are written as their ``str``."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``path`` as a whole.

    A reader of ``path`` sees either the old complete directory or the new complete one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_config(config: Any, directory: str | os.PathLike, kind: str, name: str = CONFIG_NAME) -> None:
    """Write a dataclass ``config`` as ``name`` (``config.json``: the architecture;
    ``TRAINING_CONFIG_NAME``: the training settings) in ``directory``, tagged with ``kind``."""
    payload = {"kind": kind, "format_version": 1, "config": dataclasses.asdict(config)}
    atomic_write_text(Path(directory) / name, json.dumps(payload, indent=2, sort_keys=True))


def save_arrays(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """Numeric numpy arrays as one safetensors file, written atomically."""
    from safetensors.numpy import save

    import numpy as np

    atomic_write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))


def load_arrays(path: str | os.PathLike) -> dict[str, Any]:
    """The arrays of a safetensors file written by ``save_arrays``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ModelLoadError(f"{path}: cannot read the saved arrays ({exc})") from exc


def _read_payload(directory: str | os.PathLike, name: str = CONFIG_NAME) -> tuple[Path, dict]:
    file = Path(directory) / name
    if not file.is_file():
        raise ModelLoadError(f"{directory!s}: no {name}; expected a directory written by save_pretrained()")
    try:
        payload = json.loads(file.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise ModelLoadError(f"{file}: expected a JSON object, got {type(payload).__name__}")
    return file, payload


def saved_kind(directory: str | os.PathLike) -> str | None:
    """The ``kind`` recorded in ``directory``'s ``config.json`` (which class saved it)."""
    return _read_payload(directory)[1].get("kind")


def _config_values(file: Path, payload: dict, kind: str, allowed: set[str]) -> dict[str, Any]:
    """The ``config`` fields of a payload read from ``file``, checked to be of ``kind`` and among ``allowed``."""
    if payload.get("kind") != kind:
        raise ModelLoadError(f"{file.parent!s} holds a {payload.get('kind')!r}, not a {kind!r}")
    raw = payload.get("config", {})
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ModelLoadError(f"{file}: unknown config fields {unknown}; allowed: {sorted(allowed)}")
    # JSON has no tuples: restore them where the dataclass default is a tuple.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def load_config(cls: type[C], directory: str | os.PathLike, kind: str, predated: dict[str, Any] | None = None,
                name: str = CONFIG_NAME) -> C:
    """Read ``name`` (default ``config.json``) from ``directory`` into dataclass ``cls``; check it is of ``kind``.

    ``predated``: values for fields the file lacks because it was saved before they existed (the
    values that reproduce the saved model), instead of the dataclass defaults.
    """
    file, payload = _read_payload(directory, name)
    values = _config_values(file, payload, kind, {f.name for f in dataclasses.fields(cls)})
    return cls(**{**(predated or {}), **values})


def load_split_configs(config_cls: type[C], training_cls: type[T], directory: str | os.PathLike, kind: str,
                       predated: dict[str, Any] | None = None) -> tuple[C, T | None]:
    """(architecture, training) configs saved with ``save_config`` as ``config.json`` (``kind``) and
    ``TRAINING_CONFIG_NAME`` (``kind + ".training"``); training is ``None`` when none was saved.

    A directory saved before the two were apart has one ``config.json`` holding the fields of both:
    they are split between the classes (``predated`` as in ``load_config``, for the architecture).
    """
    if (Path(directory) / TRAINING_CONFIG_NAME).is_file():
        return (load_config(config_cls, directory, kind, predated),
                load_config(training_cls, directory, f"{kind}.training", name=TRAINING_CONFIG_NAME))
    file, payload = _read_payload(directory)
    own = {f.name for f in dataclasses.fields(config_cls)}
    trained = {f.name for f in dataclasses.fields(training_cls)}
    values = _config_values(file, payload, kind, own | trained)
    config = config_cls(**{**(predated or {}), **{k: v for k, v in values.items() if k in own}})
    mixed = {k: v for k, v in values.items() if k in trained}
    return config, training_cls(**mixed) if mixed else None
