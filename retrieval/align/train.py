"""Contrastive training of ``AlignedModel`` on cached features."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from retrieval.align.features import (
    ImageFeatures, TextFeatures, cpu_autocast, extract_image_features, extract_text_features, lift_features,
)
from retrieval.align.model import AlignConfig, AlignedModel, AlignTrainingConfig
from retrieval.encoders import Encoder, MobileNetV2Encoder, load_encoder
from retrieval.images import ImageInput
from retrieval.metrics import retrieval_metrics

__all__ = ["PairData", "TrainResult", "train_aligned", "fit_aligned", "model_image_inputs", "embed_cached"]


@dataclass(frozen=True)
class PairData:
    """Images with the index of their own text: ``image_text (N,)`` indexes ``texts``.

    ``text_item (T,)`` (optional) names the item of each text: texts of one item (its
    description, paraphrases, generated queries) are positives of each other and of every image
    of that item, and training pairs a photo with any of them (``AlignTrainingConfig.item_text_prob``).
    Without it each text is its own item: several images may share a text (photos of one
    product) and every pair with the same text is a positive."""

    images: ImageFeatures
    image_text: np.ndarray
    texts: TextFeatures
    text_item: np.ndarray | None = None

    def __post_init__(self):
        if len(self.image_text) != len(self.images.clean):
            raise ValueError(f"image_text has {len(self.image_text)} entries for {len(self.images.clean)} images")
        n_texts = len(self.texts.clean)
        if len(self.image_text) and (self.image_text.min() < 0 or self.image_text.max() >= n_texts):
            raise ValueError(f"image_text holds indices outside [0, {n_texts}): it must index the {n_texts} texts")
        if self.text_item is not None and len(self.text_item) != n_texts:
            raise ValueError(f"text_item has {len(self.text_item)} entries for {n_texts} texts; give one item per text")

    @property
    def items_of_texts(self) -> np.ndarray:
        """``(T,)`` int64 item index of each text (each text its own item without ``text_item``)."""
        if self.text_item is None:
            return np.arange(len(self.texts.clean))
        return np.unique(self.text_item, return_inverse=True)[1].reshape(-1).astype(np.int64)

    @property
    def image_items(self) -> np.ndarray:
        """``(N,)`` item index of each image, in the numbering of ``items_of_texts``."""
        return self.items_of_texts[self.image_text]


@dataclass
class TrainResult:
    model: AlignedModel
    training: AlignTrainingConfig = field(default_factory=AlignTrainingConfig)  # how ``model`` was trained
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def model_image_inputs(model_config: AlignConfig, feats: ImageFeatures, encoder: MobileNetV2Encoder,
                       training: AlignTrainingConfig | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's image inputs: ``feats`` lifted to its first live stage (a no-op when the
    caller lifted them already with ``lift_features``), and, given ``training``, its training
    views: up to ``image_views`` augmented views, then the mirrored photo when ``mirror_view``."""
    lifted = lift_features(feats, encoder, model_config.split_stage)
    if training is None:
        return lifted.clean, None
    parts = []
    if lifted.views is not None and training.image_views:
        parts.append(lifted.views[:, : training.image_views])
    if lifted.mirrored is not None and training.mirror_view:
        parts.append(lifted.mirrored.unsqueeze(1))
    return lifted.clean, torch.cat(parts, dim=1) if parts else None


@torch.inference_mode()
def embed_cached(model: AlignedModel, image_inputs: torch.Tensor, batch: int = 512,
                 return_tokens: bool = False):
    """Aligned image vectors ``(N, D)`` (and tokens) from model inputs made by ``model_image_inputs``."""
    model.eval()
    zs, toks = [], []
    for i in range(0, len(image_inputs), batch):
        with cpu_autocast():
            z, t = model.encode_image(image_inputs[i : i + batch], return_tokens=True)
        zs.append(z.float())
        if return_tokens:
            toks.append(t.float())
    z = torch.cat(zs) if zs else torch.zeros((0, model.config.embed_dim))
    return (z, torch.cat(toks)) if return_tokens else z


def _view(clean: torch.Tensor, views: torch.Tensor | None, idx: torch.Tensor, pick: np.ndarray | None) -> torch.Tensor:
    """Rows ``idx`` of the training images, each as view ``pick`` (0: the clean image, k: the
    k-th augmented view; None: clean)."""
    if views is None or pick is None:
        return clean[idx]
    pick = torch.as_tensor(pick)
    return torch.where((pick == 0).view(-1, *([1] * (clean.dim() - 1))), clean[idx], views[idx, (pick - 1).clamp(min=0)])


def _multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    target = positives.float() / positives.float().sum(dim=1, keepdim=True)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _val_acc1(model: AlignedModel, val_inputs: torch.Tensor, val: PairData) -> float:
    """Val image->text Acc@1: the top text is one of the photo's item's texts."""
    img = embed_cached(model, val_inputs)
    with torch.inference_mode():
        txt = model.encode_text(val.texts.clean)
    scores = (img @ txt.T).numpy()
    relevant = val.image_items[:, None] == val.items_of_texts[None, :]
    return retrieval_metrics(scores, relevant).acc1


class _ItemTexts:
    """Draws, per training photo, one text among all texts of its item (uniformly)."""

    def __init__(self, data: PairData):
        items = data.items_of_texts
        self.order = np.argsort(items, kind="stable")
        counts = np.bincount(items)
        self.start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.count = counts
        self.any_extra = bool((counts > 1).any())

    def draw(self, item: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.order[self.start[item] + (rng.random(len(item)) * self.count[item]).astype(np.int64)]


def train_aligned(config: AlignConfig, data: PairData, val: PairData | None = None,
                  training: AlignTrainingConfig | None = None, encoder: MobileNetV2Encoder | None = None,
                  progress: bool = True) -> TrainResult:
    """Train an aligned model of architecture ``config`` with ``training`` (default
    ``AlignTrainingConfig()``); with ``val``, record val image->text Acc@1 per epoch and, when
    ``training.select_epoch_on_val``, keep the best epoch (else the last)."""
    training = training or AlignTrainingConfig()
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)
    encoder = encoder or MobileNetV2Encoder()
    model = AlignedModel(config, backbone=encoder.model if config.trainable_stages else None)
    clean, views = model_image_inputs(config, data.images, encoder, training)
    val_inputs = model_image_inputs(config, val.images, encoder)[0] if val is not None else None
    keep = np.flatnonzero(data.images.ok)
    own_text = torch.as_tensor(data.image_text, dtype=torch.long)
    image_items = data.image_items
    labels = torch.as_tensor(image_items, dtype=torch.long)  # positives: same item
    item_texts = _ItemTexts(data)
    text_views = data.texts.views if training.text_views and data.texts.views is not None else None

    backbone_params = list(model.top.parameters()) if model.top is not None else []
    backbone_ids = {id(p) for p in backbone_params}
    head_params = [p for p in model.parameters() if id(p) not in backbone_ids and p.requires_grad]
    groups = [{"params": head_params, "lr": training.lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": training.backbone_lr})
    opt = torch.optim.AdamW(groups, weight_decay=training.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(keep) / training.batch_size))
    total = steps_per_epoch * training.epochs
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))

    result = TrainResult(model=model, training=training)
    best_state, best_score = None, -1.0
    start = time.perf_counter()
    bar = tqdm(range(training.epochs), desc=f"train {config.name}", disable=not progress)
    for epoch in bar:
        model.train()
        if model.top is not None:  # frozen BatchNorm statistics: batches are small and skewed
            for m in model.top.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        order = rng.permutation(keep)
        losses = []
        for b in range(steps_per_epoch):
            idx = torch.as_tensor(order[b * training.batch_size : (b + 1) * training.batch_size])
            if len(idx) < 2:
                continue
            pick = None if views is None else rng.integers(0, views.shape[1] + 1, len(idx))  # 0: the clean image
            x = _view(clean, views, idx, pick)
            x2 = None
            if pick is not None and training.view_loss_weight > 0:  # another view of each image, never the same one
                x2 = _view(clean, views, idx, (pick + rng.integers(1, views.shape[1] + 1, len(idx))) % (views.shape[1] + 1))
            lab = labels[idx]
            own = own_text[idx]
            if text_views is not None:
                tpick = torch.as_tensor(rng.integers(0, text_views.shape[1] + 1, len(idx)))
                t = torch.where((tpick == 0).view(-1, 1), data.texts.clean[own], text_views[own, (tpick - 1).clamp(min=0)])
            else:
                t = data.texts.clean[own]
            if item_texts.any_extra and training.item_text_prob > 0:
                swap = torch.as_tensor(rng.random(len(idx)) < training.item_text_prob)
                other = torch.as_tensor(item_texts.draw(image_items[idx.numpy()], rng))
                t = torch.where(swap.view(-1, 1), data.texts.clean[other], t)
            with cpu_autocast():
                zi, tokens = model.encode_image(x, return_tokens=True)
                zt = model.encode_text(t)
                pos = lab.view(-1, 1) == lab.view(1, -1)
                w = training.text_loss_weight
                # every head learns on its own loss: the heads stay an ensemble, not one wider head
                loss = sum((1 - w) * _multi_positive_nce(logits, pos) + w * _multi_positive_nce(logits.T, pos)
                           for logits in model.scale * model.head_similarities(zi.float(), zt.float())) / config.heads
                if config.fusion:
                    fused = model.fuse(zt, zi, tokens).float()
                    loss = loss + training.fusion_loss_weight * _multi_positive_nce(model.scale * zi.float() @ fused.T, pos)
                if x2 is not None:
                    zi2 = model.encode_image(x2).float()
                    loss = loss + training.view_loss_weight * sum(
                        _multi_positive_nce(logits, pos) for logits in model.scale * model.head_similarities(zi.float(), zi2)
                    ) / config.heads
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "temperature": float(1.0 / model.scale.detach()), "seconds": time.perf_counter() - start}
        if val is not None:
            record["val_i2t_acc@1"] = _val_acc1(model, val_inputs, val)
            if training.select_epoch_on_val and record["val_i2t_acc@1"] > best_score:
                best_score = record["val_i2t_acc@1"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                result.best_epoch = epoch + 1
        result.history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("loss", "val_i2t_acc@1")})
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = training.epochs
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def fit_aligned(images: Sequence[ImageInput | None], texts: Sequence[str], labels: Sequence, *,
                text_labels: Sequence[Hashable] | None = None, config: AlignConfig | None = None,
                training: AlignTrainingConfig | None = None, val_fraction: float = 0.1, encoder: MobileNetV2Encoder | None = None,
                text_encoder: Encoder | None = None, cache_dir: str | os.PathLike | None = None,
                progress: bool = True) -> TrainResult:
    """Train an aligned model from raw data in one call: architecture ``config`` (its text encoder)
    with ``training``'s own settings: its ``image_views``, ``mirror_view`` and ``text_views``
    augmentation and its seed.

    ``labels (N,)``: per image, the index of its text in ``texts``; with ``text_labels (T,)``
    (several texts per item: descriptions, paraphrases, queries) both name items instead, and an
    image's own text is the first text of its item. ``val_fraction`` of the decodable images
    (at least 2; 0: none) are held out for the per-epoch val Acc@1 in the history."""
    config = config or AlignConfig()
    training = training or AlignTrainingConfig()
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must lie in [0, 1)")
    if len(images) != len(labels):
        raise ValueError(f"images has {len(images)} entries but labels has {len(labels)}; give one label per image")
    if text_labels is None:
        image_text = np.asarray(labels, dtype=np.int64)
    else:
        if len(text_labels) != len(texts):
            raise ValueError(f"text_labels has {len(text_labels)} entries for {len(texts)} texts; give one per text")
        first: dict = {}
        for i, key in enumerate(text_labels):
            first.setdefault(key, i)
        unknown = [key for key in labels if key not in first]
        if unknown:
            raise ValueError(f"labels {unknown[:5]} name no item of text_labels: every image needs at least one text")
        image_text = np.array([first[key] for key in labels], dtype=np.int64)
    encoder = encoder or MobileNetV2Encoder()
    text_encoder = text_encoder or load_encoder(config.text_encoder)
    feats = extract_image_features(images, views=training.image_views, mirror=training.mirror_view, seed=training.seed,
                                   encoder=encoder, cache_dir=cache_dir, progress=progress)
    text_feats = extract_text_features(texts, views=training.text_views, seed=training.seed, encoder=text_encoder,
                                       cache_dir=cache_dir, progress=progress)
    text_item = None if text_labels is None else np.array(_item_numbers(text_labels), dtype=np.int64)
    usable = np.flatnonzero(feats.ok)
    if len(usable) < 2:
        raise ValueError(f"{len(usable)} of {len(images)} images decode; training needs at least 2 ({feats.errors})")
    order = np.random.default_rng(training.seed).permutation(usable)
    n_val = max(2, int(round(len(order) * val_fraction))) if val_fraction > 0 and len(order) >= 4 else 0
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    pair = lambda idx: PairData(feats.subset(idx), image_text[idx], text_feats, text_item)  # noqa: E731
    return train_aligned(config, pair(train_idx), pair(val_idx) if n_val else None, training, encoder=encoder,
                         progress=progress)


def _item_numbers(keys: Sequence[Hashable]) -> list[int]:
    """Dense item numbers of hashable keys, in order of first appearance."""
    seen: dict = {}
    return [seen.setdefault(k, len(seen)) for k in keys]
