"""Cross-media retrieval: offline encoders, CrossCLIP-style alignment, FAISS index, evaluation.

Public names are imported lazily (on first attribute access), so ``import retrieval`` costs
nothing heavy: no torch, no faiss, no weights until they are used.
"""

import importlib as _importlib
import os as _os

# No model hub is reachable from the machines this engine targets by default; without this,
# transformers / sentence-transformers wait on network timeouts before using local files.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_EXPORTS = {
    "crossrec_core.errors": ("CrossrecError", "EmbeddingDimensionError", "ImageDecodeError", "IncompatibleIndexError",
                         "ModelLoadError", "UnknownIdError"),
    "retrieval.encoders": ("Encoder", "load_encoder"),
    "retrieval.align.model": ("AlignConfig", "AlignTrainingConfig", "AlignedModel"),
    "retrieval.align.train": ("PairData", "TrainResult", "train_aligned", "fit_aligned"),
    "retrieval.align.features": ("ImageFeatures", "TextFeatures", "extract_image_features", "extract_text_features"),
    "retrieval.align.embedder": ("ItemEmbedder", "ItemEmbeddings", "Embeddings", "load_item_embedder", "default_model_dir",
                                 "UntrainedModelError"),
    "retrieval.index": ("VectorIndex", "FaissIndex", "IndexConfig", "SearchResult", "create_index",
                        "choose_index_type", "recall_at_k", "INDEX_TYPES"),
    "retrieval.index_bench": ("run_index_benchmark", "IndexBenchReport"),
    "retrieval.search": ("CatalogueSearch", "SearchHit"),
    "retrieval.searcher": ("Searcher", "CatalogueItems", "RankedHit", "SignalScore", "load_catalogue_items"),
    "retrieval.hybrid": ("HybridConfig",),
    "retrieval.metrics": ("RetrievalMetrics", "retrieval_metrics"),
    "retrieval.evaluate": ("EvalOptions", "RetrievalEvalReport"),
    "retrieval.pipeline": ("train_retrieval", "run_retrieval_eval", "search_catalogue"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
