"""CrossCLIP-style alignment: model, feature caches, contrastive training, item embedder."""

from retrieval.align.embedder import ItemEmbedder, ItemEmbeddings, default_model_dir, load_item_embedder
from retrieval.align.features import ImageFeatures, TextFeatures, extract_image_features, extract_text_features
from retrieval.align.model import AlignConfig, AlignedModel, AlignTrainingConfig
from retrieval.align.train import PairData, TrainResult, fit_aligned, train_aligned

__all__ = [
    "AlignConfig", "AlignTrainingConfig", "AlignedModel", "ImageFeatures", "TextFeatures", "extract_image_features", "extract_text_features",
    "PairData", "TrainResult", "train_aligned", "fit_aligned", "ItemEmbedder", "ItemEmbeddings", "load_item_embedder",
    "default_model_dir",
]
