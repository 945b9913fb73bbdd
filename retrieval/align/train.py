"""Contrastive training of ``AlignedModel`` on cached features."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from retrieval.align.features import ImageFeatures, TextFeatures, cpu_autocast, lift_features
from retrieval.align.model import AlignConfig, AlignedModel
from retrieval.encoders import MobileNetV2Encoder
from retrieval.metrics import retrieval_metrics

__all__ = ["PairData", "TrainResult", "train_aligned", "model_image_inputs", "embed_cached"]


@dataclass(frozen=True)
class PairData:
    """Images with the index of their text: ``image_text (N,)`` indexes ``texts``. Several images
    may share a text (photos of one product); every pair with the same text is a positive."""

    images: ImageFeatures
    image_text: np.ndarray
    texts: TextFeatures

    def __post_init__(self):
        if len(self.image_text) != len(self.images.clean):
            raise ValueError(f"image_text has {len(self.image_text)} entries for {len(self.images.clean)} images")
        n_texts = len(self.texts.clean)
        if len(self.image_text) and (self.image_text.min() < 0 or self.image_text.max() >= n_texts):
            raise ValueError(f"image_text holds indices outside [0, {n_texts}): it must index the {n_texts} texts")


@dataclass
class TrainResult:
    model: AlignedModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def model_image_inputs(model_config: AlignConfig, feats: ImageFeatures, encoder: MobileNetV2Encoder,
                       include_views: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's image inputs: ``feats`` lifted to its first live stage (a no-op when the
    caller lifted them already with ``lift_features``), and its training views: up to
    ``image_views`` augmented views, then the mirrored photo when ``mirror_view``."""
    lifted = lift_features(feats, encoder, model_config.split_stage)
    if not include_views:
        return lifted.clean, None
    parts = []
    if lifted.views is not None and model_config.image_views:
        parts.append(lifted.views[:, : model_config.image_views])
    if lifted.mirrored is not None and model_config.mirror_view:
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


def _multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    target = positives.float() / positives.float().sum(dim=1, keepdim=True)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _val_acc1(model: AlignedModel, val_inputs: torch.Tensor, val: PairData) -> float:
    img = embed_cached(model, val_inputs)
    with torch.inference_mode():
        txt = model.encode_text(val.texts.clean)
    scores = (img @ txt.T).numpy()
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[np.arange(len(scores)), val.image_text] = True
    return retrieval_metrics(scores, relevant).acc1


def train_aligned(config: AlignConfig, data: PairData, val: PairData | None = None,
                  encoder: MobileNetV2Encoder | None = None, progress: bool = True) -> TrainResult:
    """Train an aligned model; with ``val``, record val image->text Acc@1 per epoch and, when
    ``config.select_epoch_on_val``, keep the best epoch (else the last)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    encoder = encoder or MobileNetV2Encoder()
    model = AlignedModel(config, backbone=encoder.model if config.trainable_stages else None)
    clean, views = model_image_inputs(config, data.images, encoder)
    val_inputs = model_image_inputs(config, val.images, encoder, include_views=False)[0] if val is not None else None
    keep = np.flatnonzero(data.images.ok)
    labels = torch.as_tensor(data.image_text, dtype=torch.long)
    text_views = data.texts.views if config.text_views and data.texts.views is not None else None

    backbone_params = list(model.top.parameters()) if model.top is not None else []
    backbone_ids = {id(p) for p in backbone_params}
    head_params = [p for p in model.parameters() if id(p) not in backbone_ids and p.requires_grad]
    groups = [{"params": head_params, "lr": config.lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": config.backbone_lr})
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(keep) / config.batch_size))
    total = steps_per_epoch * config.epochs
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))

    result = TrainResult(model=model)
    best_state, best_score = None, -1.0
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"train {config.name}", disable=not progress)
    for epoch in bar:
        model.train()
        if model.top is not None:  # frozen BatchNorm statistics: batches are small and skewed
            for m in model.top.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        order = rng.permutation(keep)
        losses = []
        for b in range(steps_per_epoch):
            idx = torch.as_tensor(order[b * config.batch_size : (b + 1) * config.batch_size])
            if len(idx) < 2:
                continue
            if views is not None:
                pick = torch.as_tensor(rng.integers(0, views.shape[1] + 1, len(idx)))
                x = torch.where((pick == 0).view(-1, *([1] * (clean.dim() - 1))), clean[idx],
                                views[idx, (pick - 1).clamp(min=0)])
            else:
                x = clean[idx]
            lab = labels[idx]
            if text_views is not None:
                tpick = torch.as_tensor(rng.integers(0, text_views.shape[1] + 1, len(idx)))
                t = torch.where((tpick == 0).view(-1, 1), data.texts.clean[lab], text_views[lab, (tpick - 1).clamp(min=0)])
            else:
                t = data.texts.clean[lab]
            with cpu_autocast():
                zi, tokens = model.encode_image(x, return_tokens=True)
                zt = model.encode_text(t)
                pos = lab.view(-1, 1) == lab.view(1, -1)
                w = config.text_loss_weight
                # every head learns on its own loss: the heads stay an ensemble, not one wider head
                loss = sum((1 - w) * _multi_positive_nce(logits, pos) + w * _multi_positive_nce(logits.T, pos)
                           for logits in model.scale * model.head_similarities(zi.float(), zt.float())) / config.heads
                if config.fusion:
                    fused = model.fuse(zt, zi, tokens).float()
                    loss = loss + config.fusion_loss_weight * _multi_positive_nce(model.scale * zi.float() @ fused.T, pos)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "temperature": float(1.0 / model.scale.detach()), "seconds": time.perf_counter() - start}
        if val is not None:
            record["val_i2t_acc@1"] = _val_acc1(model, val_inputs, val)
            if config.select_epoch_on_val and record["val_i2t_acc@1"] > best_score:
                best_score = record["val_i2t_acc@1"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                result.best_epoch = epoch + 1
        result.history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("loss", "val_i2t_acc@1")})
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = config.epochs
    result.seconds = time.perf_counter() - start
    model.eval()
    return result
