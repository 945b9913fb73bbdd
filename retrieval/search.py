"""Cross-media catalogue search: items embedded by an ``ItemEmbedder``, indexed per space.

Three spaces are indexed for every item: ``image`` (catalogue image), ``text`` (item text) and
``fused`` (cross-attention fusion of both). A text query against ``image`` is text->image search,
an image query against ``text`` is image->text, an image query against ``image`` is image->image;
``fused`` matches either kind of query against whole items.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from retrieval.align.embedder import ItemEmbedder
from crossrec_core.errors import IncompatibleIndexError, ModelLoadError
from retrieval.images import ImageInput
from retrieval.index import FaissIndex, create_index
from crossrec_core.persist import atomic_directory, atomic_write_text

__all__ = ["SPACES", "SearchHit", "CatalogueSearch", "BuildReport", "ItemVectorSearch", "search_item_vectors"]

SPACES = ("fused", "image", "text")


@dataclass(frozen=True)
class SearchHit:
    item_id: int
    score: float
    metadata: dict | None


@dataclass(frozen=True)
class BuildReport:
    """What an upsert did: items indexed, and items whose image was skipped (with the reason)."""

    indexed: int
    image_skipped: dict[int, str]


class CatalogueSearch:
    """Search a catalogue by text or image; add, update and remove items by id."""

    def __init__(self, embedder: ItemEmbedder, indexes: dict[str, FaissIndex]):
        missing = set(SPACES) - set(indexes)
        if missing:
            raise ValueError(f"indexes lacks spaces {sorted(missing)}")
        self.embedder = embedder
        self.indexes = indexes

    @classmethod
    def empty(cls, embedder: ItemEmbedder, expected_size: int = 10_000, kind: str = "auto") -> "CatalogueSearch":
        return cls(embedder, {s: create_index(embedder.dim, expected_size=expected_size, kind=kind,
                                              fingerprint=f"{embedder.fingerprint}|{s}") for s in SPACES})

    def __len__(self) -> int:
        return len(self.indexes["fused"])

    def upsert(self, ids: Sequence[int], texts: Sequence[str | None], images: Sequence[ImageInput | None],
               metadata: Sequence[dict | None] | None = None) -> BuildReport:
        """Embed and (re)index items; an item with an undecodable image is indexed by its text
        (and left out of the image space), so nothing valid is lost."""
        ids_arr = np.asarray(ids, dtype=np.int64)
        emb = self.embedder.embed(list(texts), list(images))
        self.indexes["fused"].add(ids_arr, emb.fused, metadata)
        for space, vectors, ok in (("image", emb.image, emb.image_ok), ("text", emb.text, emb.text_ok)):
            present = np.isin(ids_arr[~ok], self.indexes[space].ids())
            if present.any():  # an update that lost this modality must not leave the old vector
                self.indexes[space].remove(ids_arr[~ok][present])
            if ok.any():
                meta = [metadata[i] for i in np.flatnonzero(ok)] if metadata is not None else None
                self.indexes[space].add(ids_arr[ok], vectors[ok], meta)
        skipped = {int(ids_arr[i]): emb.errors.get(int(i), "") for i in np.flatnonzero(~emb.image_ok)}
        return BuildReport(indexed=len(ids_arr), image_skipped=skipped)

    def remove(self, ids: Sequence[int]) -> int:
        """Remove items from every space; returns how many were in the catalogue."""
        ids_arr = np.asarray(ids, dtype=np.int64)
        removed = self.indexes["fused"].remove(ids_arr)  # raises UnknownIdError for unknown ids
        for space in ("image", "text"):
            self.indexes[space].remove(ids_arr, missing_ok=True)
        return removed

    def _search(self, query: np.ndarray, k: int, space: str) -> list[SearchHit]:
        if space not in SPACES:
            raise ValueError(f"space={space!r} is not one of {SPACES}")
        return self._hits(self.indexes[space], query, k)

    @staticmethod
    def _hits(index: FaissIndex, query: np.ndarray, k: int) -> list[SearchHit]:
        result = index.search(query[None, :], k)
        meta = result.hit_metadata()[0]
        return [SearchHit(int(i), float(s), m) for i, s, m in zip(result.ids[0], result.scores[0], meta) if i >= 0]

    def search_text(self, text: str, k: int = 10, space: str = "fused") -> list[SearchHit]:
        return self._search(self.embedder.embed_text([text]).vectors[0], k, space)

    def search_image(self, image: ImageInput, k: int = 10, space: str = "fused") -> list[SearchHit]:
        return self._search(self.embedder.embed_query_image(image), k, space)

    def save(self, directory: str | os.PathLike) -> Path:
        with atomic_directory(directory) as tmp:
            for space, index in self.indexes.items():
                index.save(tmp / space)
            atomic_write_text(tmp / "catalogue.json", json.dumps(
                {"embedder": self.embedder.fingerprint, "model_dir": self.embedder.source, "spaces": list(SPACES)}))
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, embedder: ItemEmbedder) -> "CatalogueSearch":
        """Reopen a saved catalogue; an index built with another model raises IncompatibleIndexError."""
        directory = Path(directory)
        if not (directory / "catalogue.json").is_file():
            raise ModelLoadError(f"{str(directory)!r} holds no catalogue (catalogue.json missing)")
        indexes = {}
        for space in SPACES:
            try:
                indexes[space] = FaissIndex.load(directory / space, expected_fingerprint=f"{embedder.fingerprint}|{space}")
            except IncompatibleIndexError as exc:
                raise IncompatibleIndexError(f"catalogue {str(directory)!r} was built with another model: {exc}") from exc
        return cls(embedder, indexes)


class ItemVectorSearch:
    """Search the item vectors a catalogue brings (``Dataset.item_vectors()``, e.g. from a CLIP the
    user runs elsewhere) by a query vector of the same model, or by text through ``query_encoder``:
    a local checkpoint of that model (a sentence-transformers directory, or a CLIP/SigLIP one whose
    text tower made the vectors; ``retrieval.encoders.load_encoder``). The engine cannot encode
    for a model it does not have: without one, text queries go to ``retrieval.searcher.Searcher``,
    which searches the item texts with the engine's own encoders.

    The flat inner-product index is built once per vector content and saved under ``cache_dir``
    (default ``$CROSSREC_HOME/cache/item_vectors/<fingerprint>``); later searches load it. Hits carry
    the engine's int64 id and, in the metadata, the user's ``item_id`` and title.
    """

    def __init__(self, dataset, query_encoder=None, cache_dir: str | os.PathLike | None = None) -> None:
        """``dataset``: a ``crossrec_datasets.Dataset``; ``query_encoder``: an ``Encoder``, a local
        model directory, or None (query vectors only)."""
        from crossrec_core.errors import DataFormatError
        from crossrec_core.paths import cache_dir as default_cache_dir

        vectors = dataset.item_vectors()
        if vectors is None:
            raise DataFormatError(f"{dataset.root}: the catalogue brings no item vectors (item_vectors.npy or a column "
                                  "'embedding'); search it by text or image instead")
        self.dim, self.source = vectors.dim, vectors.source
        if isinstance(query_encoder, (str, os.PathLike)):
            query_encoder = _local_query_encoder(query_encoder)
        if query_encoder is not None and query_encoder.dim != self.dim:
            raise ValueError(f"query_encoder {query_encoder.fingerprint!r} makes {query_encoder.dim}-d vectors; the item "
                             f"vectors ({vectors.source}) are {self.dim}-d: give the checkpoint of the model that made them")
        self.query_encoder = query_encoder
        # The rows' ids and titles come from the catalogue: the saved index is keyed by both contents.
        key = hashlib.sha256(f"{vectors.fingerprint}|{dataset.fingerprint()}".encode()).hexdigest()[:20]
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir("item_vectors") / key
        try:
            self.index = FaissIndex.load(folder, expected_fingerprint=key, expected_dim=self.dim)
        except (FileNotFoundError, IncompatibleIndexError, ModelLoadError):
            cat = dataset.catalogue().select("item_id", "title").collect()
            ids = cat.select(dataset.items.to_internal("item_id")).to_series().to_numpy()
            self.index = create_index(self.dim, expected_size=len(ids), kind="flat", fingerprint=key)
            self.index.add(ids, vectors.vectors, [{"item_id": i, "title": t} for i, t in cat.iter_rows()])
            self.index.save(folder)

    def search_vector(self, query: np.ndarray, k: int = 10) -> list[SearchHit]:
        """The ``k`` items nearest to ``query`` ``(D,)`` (any scale: it is normalised)."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim or not np.isfinite(query).all() or not np.linalg.norm(query):
            raise ValueError(f"query vector of shape {query.shape}: expected {self.dim} finite values, not all zero "
                             f"(the dimension of {self.source})")
        return CatalogueSearch._hits(self.index, query / np.linalg.norm(query), k)

    def search_text(self, text: str, k: int = 10) -> list[SearchHit]:
        """The ``k`` items nearest to ``text`` encoded by the query encoder."""
        if self.query_encoder is None:
            raise ValueError("no query_encoder: give the local checkpoint of the model that made the item vectors, or "
                             "search the item texts with the engine's own encoders (retrieval.searcher.Searcher)")
        return self.search_vector(self.query_encoder.encode([text])[0], k)


def _local_query_encoder(name):
    from retrieval.encoders import load_encoder

    encoder = load_encoder(str(name), modality="text")  # raises naming what is allowed
    if encoder.modality != "text":
        raise ValueError(f"query_encoder={str(name)!r} is an {encoder.modality} encoder; text queries need a text one")
    return encoder


def search_item_vectors(dataset, query: np.ndarray, k: int = 10) -> list[SearchHit]:
    """The ``k`` catalogue items nearest to ``query`` ``(D,)`` among the vectors the catalogue brings
    (``ItemVectorSearch.search_vector``)."""
    return ItemVectorSearch(dataset).search_vector(query, k)
