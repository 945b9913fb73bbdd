"""Dataset manifests: the expected layout of each data set, checked before loading."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from crossrec_core.errors import DatasetNotFoundError

__all__ = ["Manifest", "load_manifest"]


@dataclass(frozen=True)
class Manifest:
    name: str
    folder: str
    source: str
    licence: str
    layout: dict
    counts: dict

    def check(self, data_dir: Path) -> Path:
        """Return ``data_dir/folder`` after checking every layout entry exists."""
        root = Path(data_dir) / self.folder
        missing = [rel for rel in self.layout if not (root / rel).exists()]
        if missing:
            expected = "\n".join(f"  {self.folder}/{rel}: {what}" for rel, what in self.layout.items())
            raise DatasetNotFoundError(
                f"data set {self.name!r} not found or incomplete under {str(data_dir)!r} "
                f"(missing: {', '.join(missing)}). Expected layout:\n{expected}"
            )
        return root


def load_manifest(name: str) -> Manifest:
    text = resources.files("crossrec_datasets").joinpath("manifests", f"{name}.json").read_text("utf-8")
    return Manifest(**json.loads(text))
