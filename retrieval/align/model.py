"""CrossCLIP-style aligned dual encoder over cached frozen-encoder features.

Image tower: the last ``trainable_stages`` MobileNetV2 stages (partially fine-tuned, the stages
below stay frozen and are cached), spatial tokens ``(B, 49, 1280)``, pooled (mean, or an attention
pool with one learned query per head), a residual adapter and a projection to the shared space
``D``. Text tower: frozen sentence embedding ``(B, Dt)``, a residual adapter and a projection.
With ``heads`` > 1 each tower has that many (adapter, projection) heads of ``D / heads``
dimensions, trained on their own losses and concatenated: an ensemble inside one vector. A
cross-attention fusion layer lets an item's text attend over its image tokens and gates the
result into one fused item vector. The baseline is the same class with one head, no adapters,
no fusion and no trainable stages: frozen features plus linear projections.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from retrieval.align.queries import QUERY_WRITERS
from retrieval.encoders.mobilenet import FEATURE_DIM, MobileNetV2
from crossrec_core.errors import ModelLoadError
from crossrec_core.persist import TRAINING_CONFIG_NAME, atomic_directory, load_split_configs, save_config

__all__ = ["AlignConfig", "AlignTrainingConfig", "split_settings", "ResidualAdapter", "AttentionPool", "CrossAttentionFusion", "AlignedModel", "TextTower", "MODEL_KIND"]

MODEL_KIND = "crossrec.AlignedModel"
TRAINING_KIND = f"{MODEL_KIND}.training"
N_STAGES = 19  # MobileNetV2 feature stages
POOLS = ("mean", "attention")
_SQRT_HALF = np.float32(math.sqrt(0.5))  # a float32 constant: a float64 one would turn the tower's products float64
_PREDATED = {"heads": 1, "image_pool": "mean"}  # fields added after the first checkpoints, with their old behaviour


@dataclass(frozen=True)
class AlignConfig:
    """Architecture of an aligned model (saved as ``config.json``): what is needed to rebuild it.
    How it was trained is ``AlignTrainingConfig``."""

    name: str = "crossclip"
    text_encoder: str = "minilm"        # name or local path understood by load_encoder
    image_encoder: str = "mobilenet_v2"
    text_dim: int = 384
    image_dim: int = FEATURE_DIM
    embed_dim: int = 256
    heads: int = 4                      # independent projection heads of embed_dim // heads each: an ensemble in one vector
    # top MobileNetV2 stages fine-tuned on cached stage-16 maps (3: the last 1x1 conv and two inverted
    # residual blocks; val Acc@1 with the attention pool 0.791 vs 0.743 / 0.740 with 2 / 1)
    trainable_stages: int = 3
    # "attention": one learned query per head over the 49 spatial tokens (val Acc@1 0.740 vs 0.703 "mean")
    image_pool: str = "attention"
    pool_key_dim: int = 128             # key width of the attention pool
    adapter_hidden: int = 256           # 0 = no adapters (baseline)
    fusion: bool = True                 # cross-attention fusion layer
    fusion_heads: int = 4
    init_temperature: float = 0.07
    learn_temperature: bool = True
    dropout: float = 0.1

    def __post_init__(self):
        if not isinstance(self.heads, int) or self.heads < 1 or self.embed_dim % self.heads:
            raise ValueError(f"heads={self.heads!r} must be an int >= 1 that divides embed_dim={self.embed_dim}")
        if self.image_pool not in POOLS:
            raise ValueError(f"image_pool={self.image_pool!r} is not one of {POOLS}")

    @property
    def split_stage(self) -> int:
        """First MobileNetV2 stage that is run live (below it, features are cached)."""
        return N_STAGES - self.trainable_stages if self.trainable_stages else N_STAGES

    @classmethod
    def baseline(cls, **overrides) -> "AlignConfig":
        """CLIP-style dual encoder: frozen encoders, linear projections (train it with
        ``AlignTrainingConfig.baseline()``)."""
        base = dict(name="baseline", trainable_stages=0, heads=1, image_pool="mean", adapter_hidden=0, fusion=False,
                    dropout=0.0)
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class AlignTrainingConfig:
    """How an aligned model is trained (saved as ``training_config.json``, not needed to use it)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 0.05
    text_loss_weight: float = 0.6       # text->image term: text is the less information-dense side
    fusion_loss_weight: float = 0.5
    image_views: int = 4                # cached augmented views per training image (0 = none)
    mirror_view: bool = True            # the mirrored photo as one more training view
    text_views: int = 6                 # cached augmented variants per text (0 = none)
    # chance that a training photo is paired with a text drawn from all its item's texts (paraphrases,
    # generated queries: ``PairData.text_item``) instead of its own; no effect when each item has one text
    item_text_prob: float = 0.5
    # keep the epoch with the best val image->text Acc@1 instead of the last (cosine-annealed) one;
    # off: on 296 val photos the per-epoch maximum is mostly noise and picked under-trained epochs
    select_epoch_on_val: bool = False
    # weight of an image<->image term between two views of the same image (one more image
    # forward per step): keeps an image's own look in the image space, which text alignment
    # alone lets fade (a generated poster should still find its source poster); 0: off
    view_loss_weight: float = 0.0
    # up to this many short shopper queries per item, written from its title, classes and
    # description (``retrieval.align.queries``), trained as more texts of that item; 0: off
    generated_queries: int = 0
    # who writes them: "templates" (deterministic), "lm" (doc2query with the local language model,
    # ``retrieval.encoders.llm``) or "both"
    query_writer: str = "templates"
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r} must be an int >= 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size!r} must be an int >= 2 (contrastive batches need negatives)")
        if not 0.0 <= self.item_text_prob <= 1.0:
            raise ValueError(f"item_text_prob={self.item_text_prob!r} must lie in [0, 1]")
        if not self.view_loss_weight >= 0.0:
            raise ValueError(f"view_loss_weight={self.view_loss_weight!r} must be >= 0")
        if not isinstance(self.generated_queries, int) or self.generated_queries < 0:
            raise ValueError(f"generated_queries={self.generated_queries!r} must be an int >= 0")
        if self.query_writer not in QUERY_WRITERS:
            raise ValueError(f"query_writer={self.query_writer!r} must be one of {QUERY_WRITERS}")
        if self.view_loss_weight > 0 and not (self.image_views or self.mirror_view):
            raise ValueError(f"view_loss_weight={self.view_loss_weight!r} needs a second view of each image: "
                             f"image_views >= 1 or mirror_view (got {self.image_views}, {self.mirror_view})")

    @classmethod
    def baseline(cls, **overrides) -> "AlignTrainingConfig":
        """The baseline's training: plain symmetric InfoNCE on the clean features, no augmentation."""
        base = dict(text_loss_weight=0.5, image_views=0, mirror_view=False, text_views=0)
        return cls(**{**base, **overrides})


def split_settings(settings: dict) -> tuple[dict, dict]:
    """One flat dict of ``AlignConfig`` and ``AlignTrainingConfig`` fields (CLI flags, eval
    overrides) as (architecture, training) keyword arguments; a name that is a field of neither
    raises ``ValueError`` listing both."""
    arch = {f.name for f in fields(AlignConfig)}
    train = {f.name for f in fields(AlignTrainingConfig)}
    unknown = sorted(set(settings) - arch - train)
    if unknown:
        raise ValueError(f"unknown aligned-model settings {unknown}; architecture fields: {sorted(arch)}, "
                         f"training fields: {sorted(train)}")
    return ({k: v for k, v in settings.items() if k in arch}, {k: v for k, v in settings.items() if k in train})


class ResidualAdapter(nn.Module):
    """z + W2 gelu(W1 z): a bottleneck that starts as the identity (W2 = 0)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.up(self.drop(F.gelu(self.down(self.norm(z)))))


def _head(dim: int, c: AlignConfig) -> tuple[nn.Module, nn.Linear]:
    """(adapter, projection) of one head: a residual adapter (identity without adapters) and a
    linear map to ``embed_dim // heads``."""
    adapter = ResidualAdapter(dim, c.adapter_hidden, c.dropout) if c.adapter_hidden else nn.Identity()
    return adapter, nn.Linear(dim, c.embed_dim // c.heads)


class AttentionPool(nn.Module):
    """Learned queries attend over spatial tokens (CLIP's attention pool, values left as the
    tokens): a fine-grained product may be decided by a part of the photo that mean pooling
    washes out. Zero-init queries give uniform weights, so training starts from mean pooling."""

    def __init__(self, dim: int, key_dim: int, queries: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, key_dim, bias=False)
        self.query = nn.Parameter(torch.zeros(queries, key_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, T, C)`` -> one pooled vector per query ``(B, Q, C)``."""
        keys = self.key(self.norm(tokens))
        weights = torch.softmax(torch.einsum("btk,qk->bqt", keys, self.query) / math.sqrt(keys.shape[-1]), dim=-1)
        return torch.einsum("bqt,btc->bqc", weights, tokens)


class CrossAttentionFusion(nn.Module):
    """Text query attends over image tokens; a learned gate mixes the attended image evidence
    with the text and pooled image embeddings (residual path keeps both unimodal signals)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.gate = nn.Sequential(nn.Linear(3 * dim, dim), nn.Sigmoid())
        self.out = nn.Linear(dim, dim)

    def forward(self, text: torch.Tensor, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``text (B, D)``, ``image (B, D)``, ``tokens (B, T, D)`` -> fused ``(B, D)``."""
        attended, _ = self.attn(self.norm_q(text).unsqueeze(1), self.norm_kv(tokens), self.norm_kv(tokens))
        attended = attended.squeeze(1)
        g = self.gate(torch.cat([text, image, attended], dim=-1))
        return text + image + self.out(g * attended + (1 - g) * (text * image))


class TextTower:
    """The text tower of an eval-mode ``AlignedModel`` as a few stacked numpy operations.

    ``encode_text`` runs about 40 small torch modules per query (a LayerNorm, two adapter
    linears, a GELU and a projection per head); for one short query their dispatch costs several
    times the arithmetic (3.5 ms per query in the quiet 100k search benchmark). Here the heads
    share one normalisation, and their adapters and projections run as batched matrix products
    over the head axis: the same vectors to float rounding (checked by a test), no dropout."""

    def __init__(self, model: "AlignedModel"):
        from scipy.special import erf

        self._erf = erf
        c = model.config
        heads = [(model.text_adapter, model.text_proj)] + [(h[0], h[1]) for h in model.text_extra]
        grab = lambda t: np.ascontiguousarray(t.detach().float().numpy())  # noqa: E731
        self.adapters = bool(c.adapter_hidden)
        if self.adapters:
            self.eps = heads[0][0].norm.eps
            self.ln_w = np.stack([grab(a.norm.weight) for a, _ in heads])[:, None, :]        # (K, 1, Dt)
            self.ln_b = np.stack([grab(a.norm.bias) for a, _ in heads])[:, None, :]
            self.down_w = np.stack([grab(a.down.weight.T) for a, _ in heads])                # (K, Dt, H)
            self.down_b = np.stack([grab(a.down.bias) for a, _ in heads])[:, None, :]
            self.up_w = np.stack([grab(a.up.weight.T) for a, _ in heads])                    # (K, H, Dt)
            self.up_b = np.stack([grab(a.up.bias) for a, _ in heads])[:, None, :]
        self.proj_w = np.stack([grab(p.weight.T) for _, p in heads])                         # (K, Dt, D/K)
        self.proj_b = np.stack([grab(p.bias) for _, p in heads])[:, None, :]

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """Frozen sentence embeddings ``(B, Dt)`` -> aligned ``(B, D)`` float32."""
        x = np.asarray(feats, dtype=np.float32)[None]                                        # (1, B, Dt)
        if self.adapters:
            mu = x.mean(-1, keepdims=True)
            normed = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + self.eps)
            hidden = normed * self.ln_w + self.ln_b                                          # (K, B, Dt)
            hidden = hidden @ self.down_w + self.down_b
            hidden = 0.5 * hidden * (1.0 + self._erf(hidden * _SQRT_HALF))                   # exact GELU, as torch's
            x = x + hidden @ self.up_w + self.up_b
        z = x @ self.proj_w + self.proj_b                                                    # (K, B, D/K)
        z = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
        return (np.concatenate(list(z), axis=-1) / math.sqrt(len(z))).astype(np.float32)


class AlignedModel(nn.Module):
    """Maps cached features into one space where images, texts and fused items compare by cosine."""

    def __init__(self, config: AlignConfig, backbone: MobileNetV2 | None = None):
        super().__init__()
        self.config = config
        c = config
        if c.trainable_stages:
            if backbone is None:
                raise ValueError("trainable_stages > 0 needs the MobileNetV2 backbone to copy its top stages from")
            self.top = copy.deepcopy(backbone.features[c.split_stage :])
        else:
            self.top = None
        self.pool = AttentionPool(c.image_dim, c.pool_key_dim, c.heads) if c.image_pool == "attention" else None
        self.image_adapter, self.image_proj = _head(c.image_dim, c)
        self.text_adapter, self.text_proj = _head(c.text_dim, c)
        # heads 2..K; head 1 keeps the single-head names, so checkpoints saved before heads existed load
        self.image_extra = nn.ModuleList(nn.Sequential(*_head(c.image_dim, c)) for _ in range(c.heads - 1))
        self.text_extra = nn.ModuleList(nn.Sequential(*_head(c.text_dim, c)) for _ in range(c.heads - 1))
        if c.fusion:
            self.token_proj = nn.Linear(c.image_dim, c.embed_dim)
            self.fusion = CrossAttentionFusion(c.embed_dim, c.fusion_heads, c.dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / c.init_temperature)), requires_grad=c.learn_temperature)

    # -- towers -------------------------------------------------------------------------------
    def image_tokens(self, cached: torch.Tensor) -> torch.Tensor:
        """Cached stage features ``(B, C, H, W)`` -> tokens ``(B, H*W, 1280)``."""
        maps = cached.float() if self.top is None else self.top(cached.float())
        return maps.flatten(2).transpose(1, 2)

    @staticmethod
    def _ensemble(first: torch.Tensor, extra: nn.ModuleList, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Head k maps ``inputs[k]``; each head's output normalised, concatenated and scaled to
        unit norm: the cosine of two such vectors is the mean of the heads' cosines."""
        parts = [first] + [head(x) for head, x in zip(extra, inputs[1:])]
        return torch.cat([F.normalize(p, dim=-1) for p in parts], dim=-1) / math.sqrt(len(parts))

    def encode_image(self, cached: torch.Tensor, return_tokens: bool = False):
        tokens = self.image_tokens(cached)
        if self.pool is None:
            pooled = [tokens.mean(dim=1)] * self.config.heads
        else:  # each head pools with its own query
            pooled = list(self.pool(tokens).unbind(1))
        z = self._ensemble(self.image_proj(self.image_adapter(pooled[0])), self.image_extra, pooled)
        return (z, tokens) if return_tokens else z

    def encode_text(self, feats: torch.Tensor) -> torch.Tensor:
        """Frozen sentence embeddings ``(B, Dt)`` -> aligned ``(B, D)``."""
        feats = feats.float()
        return self._ensemble(self.text_proj(self.text_adapter(feats)), self.text_extra, [feats] * self.config.heads)

    def text_tower(self) -> "TextTower":
        """``encode_text`` as stacked numpy arrays for one-query search (see ``TextTower``)."""
        return TextTower(self)

    def head_similarities(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-head cosines ``(K, A, B)`` of aligned vectors ``a (A, D)`` and ``b (B, D)``."""
        k = self.config.heads
        return torch.einsum("ikd,jkd->kij", a.view(len(a), k, -1), b.view(len(b), k, -1)) * k

    def fuse(self, text_z: torch.Tensor, image_z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Fused item vector ``(B, D)``; without a fusion layer, the normalised sum."""
        if not self.config.fusion:
            return F.normalize(text_z + image_z, dim=-1)
        return F.normalize(self.fusion(text_z, image_z, self.token_proj(tokens)), dim=-1)

    def digest(self) -> str:
        """Short hash of the weights: indexes record it, so a retrained model cannot reuse them."""
        h = hashlib.sha1()
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)

    # -- persistence --------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, training: AlignTrainingConfig | None = None) -> Path:
        """``config.json`` (the architecture), the weights and, given ``training``, how they were
        trained (``training_config.json``)."""
        with atomic_directory(directory) as tmp:
            save_config(self.config, tmp, MODEL_KIND)
            if training is not None:
                save_config(training, tmp, TRAINING_KIND, TRAINING_CONFIG_NAME)
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(tmp / "model.safetensors"))
        return Path(directory)

    @staticmethod
    def load_training_config(directory: str | os.PathLike) -> AlignTrainingConfig | None:
        """How the saved model in ``directory`` was trained (``None`` when that was not saved);
        read from ``config.json`` for models saved before the two configs were apart."""
        return load_split_configs(AlignConfig, AlignTrainingConfig, directory, MODEL_KIND, predated=_PREDATED)[1]

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "AlignedModel":
        # models saved before the split have the training settings in config.json: they are read and left out
        config = load_split_configs(AlignConfig, AlignTrainingConfig, directory, MODEL_KIND, predated=_PREDATED)[0]
        weights = Path(directory) / "model.safetensors"
        try:
            state = load_file(str(weights))
        except Exception as exc:
            raise ModelLoadError(f"{weights}: cannot read safetensors ({exc})") from exc
        model = cls(config, backbone=MobileNetV2() if config.trainable_stages else None)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"{weights} does not fit its config.json: {exc}") from exc
        return model.eval()
