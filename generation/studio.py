"""One call makes a full creative for (user, item).

controls (whose taste) -> copy candidates (``CopyWriter``, batched, guardrails, template fallback)
-> poster variants (``PosterGenerator``) -> scores (``PosterScorer``) -> gate (``QualityGate``:
regenerate with new seeds, then fall back to the best-ranked variant, said in ``scores.json``)
-> trust (AI-generated label, watermark, signed C2PA manifest) -> ``poster.png``, ``copy.json``,
``scores.json`` in the output folder, and the same bytes in the content-addressed asset store.

Identical requests (same user profile version, item and settings) are served from the creative
cache: the files are copied out of the asset store, no model runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from crossrec_core.errors import UnknownIdError
from crossrec_core.persist import atomic_write_bytes, atomic_write_text
from generation.assets import AssetStore
from generation.cache import NEUTRAL_OWNER, CacheKey, CreativeCache, settings_hash, user_owner
from generation.control import ControlConfig, LikedItem, controls_for, require_item
from generation.copy import AdCopy, CopyWriter
from generation.types import LANGUAGES, ControlSignals, CreativeItem

__all__ = ["StudioConfig", "Rendered", "PosterOption", "CreativeResult", "Studio", "OUTPUT_FILES"]

OUTPUT_FILES = ("poster.png", "copy.json", "scores.json")


@dataclass(frozen=True)
class StudioConfig:
    """``variants`` per attempt; ``attempts``: how many rounds of variants (new seeds) before
    falling back to the best-ranked failing one; ``personalisation`` the style weight (0: the
    item's own style, 1: the user's)."""

    shape: str = "square"
    variants: int = 4
    attempts: int = 2
    personalisation: float = 0.5
    language: str = "en"
    seed: int = 0

    def __post_init__(self) -> None:
        from generation.poster import check_shape

        check_shape(self.shape)
        if not 1 <= self.variants <= 64 or not 1 <= self.attempts <= 8:
            raise ValueError(f"variants={self.variants} must be in 1..64 and attempts={self.attempts} in 1..8")
        if not 0.0 <= self.personalisation <= 1.0:
            raise ValueError(f"personalisation={self.personalisation!r}: must be in [0, 1]")
        if self.language not in LANGUAGES:
            raise ValueError(f"language={self.language!r}: allowed {LANGUAGES}")


@dataclass
class Rendered:
    """A creative before trust and files: the copy, the chosen variant and every score.
    ``servable``: the chosen variant first, then the other variants of its attempt that passed
    the gate, each with its total score (None unscored): the posters a bandit may pick among."""

    controls: ControlSignals
    copy: AdCopy
    poster: Any  # PosterVariant
    scores: dict[str, Any]
    gate_passed: bool
    timings: dict[str, float] = field(default_factory=dict)
    servable: list[tuple[Any, float | None]] = field(default_factory=list)


@dataclass(frozen=True)
class PosterOption:
    """One stored poster variant of a creative: its asset id, style family and total score."""

    asset_id: str
    family: str
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"asset_id": self.asset_id, "family": self.family, "score": self.score}


@dataclass(frozen=True)
class CreativeResult:
    out_dir: Path | None
    item_id: str
    user_id: str | None
    copy: AdCopy
    scores: dict[str, Any]
    gate_passed: bool
    cache_hit: bool
    assets: dict[str, str]  # file name -> asset id
    payload_id: int
    posters: tuple[PosterOption, ...] = ()  # every stored variant, the chosen (assets["poster.png"]) first

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir) if self.out_dir else None, "item_id": self.item_id, "user_id": self.user_id,
                "gate_passed": self.gate_passed, "cache_hit": self.cache_hit, "assets": dict(self.assets),
                "payload_id": self.payload_id, "copy_source": self.copy.source}


class Studio:
    """Makes creatives for one catalogue. Components load their models on first use; pass
    shared ones (the worker and the service keep one studio per process)."""

    def __init__(self, items: Mapping[str, CreativeItem], *, copy_writer: CopyWriter | None = None,
                 poster_generator=None, scorer=None, gate=None, assets: AssetStore | None = None,
                 cache: CreativeCache | None = None, config: StudioConfig = StudioConfig(),
                 control_config: ControlConfig = ControlConfig(), style_model=None):
        if not items:
            raise ValueError("items: the catalogue is empty")
        self.items = items
        self.config = config
        self.control_config = control_config
        self._style_model = style_model
        self._copy_writer = copy_writer
        self._poster_generator = poster_generator
        self._scorer = scorer
        self._gate = gate
        self.assets = assets if assets is not None else AssetStore()
        self.cache = cache

    # -- components (lazy: importing the studio loads no model) ---------------------------------
    @property
    def style_model(self):
        if self._style_model is None:
            from generation.style import StyleModel

            self._style_model = StyleModel()
        return self._style_model

    @property
    def copy_writer(self) -> CopyWriter:
        if self._copy_writer is None:
            from generation.copy import LanguageModelCopyWriter

            self._copy_writer = LanguageModelCopyWriter()
        return self._copy_writer

    @property
    def poster_generator(self):
        if self._poster_generator is None:
            from generation.poster import LayoutPosterGenerator

            self._poster_generator = LayoutPosterGenerator(style_model=self.style_model,
                                                           reference=self.style_reference())
        return self._poster_generator

    def style_reference(self, sample: int = 64):
        """The catalogue's average look (mean style vector and colour of a seeded sample of
        ``sample`` item images) that posters steer away from by the user's deviation; None for a
        catalogue without readable images."""
        import numpy as np

        from crossrec_core.errors import ImageDecodeError
        from generation.style import StyleReference, open_rgb

        paths = sorted(str(it.image) for it in self.items.values() if it.image is not None)
        if not paths:
            return None
        rng = np.random.default_rng(0)
        picked = [paths[k] for k in sorted(rng.choice(len(paths), min(sample, len(paths)), replace=False))]
        readable = []
        for path in picked:
            try:
                readable.append(open_rgb(path, "item.image"))
            except ImageDecodeError:
                continue
        return StyleReference.of(readable, self.style_model) if readable else None

    @property
    def scorer(self):
        if self._scorer is None:
            from generation.scoring import PosterScorer

            self._scorer = PosterScorer(style_model=self.style_model,
                                        text_reader=getattr(self.poster_generator, "text_reader", None))
        return self._scorer

    @property
    def gate(self):
        if self._gate is None:
            from generation.scoring import QualityGate

            self._gate = QualityGate()
        return self._gate

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Everything besides (user, item) that decides the output: part of the cache key."""
        return {"studio": asdict(replace(self.config, **overrides)), "controls": asdict(self.control_config),
                "copy": self.copy_writer.fingerprint, "poster": getattr(self.poster_generator, "name", "poster"),
                "version": 2}  # 2: the poster layout with the mat and no text band

    # -- the pipeline ---------------------------------------------------------------------------
    def controls(self, item: CreativeItem, user_id: str | None, liked: Sequence[LikedItem], *,
                 personalisation: float | None = None, language: str | None = None) -> ControlSignals:
        return controls_for(user_id, liked, item, language=language or self.config.language,
                            personalisation=self.config.personalisation if personalisation is None else personalisation,
                            config=self.control_config, style_model=self.style_model)

    def render(self, item: CreativeItem, controls: ControlSignals, *, liked: Sequence[LikedItem] = (),
               copy: AdCopy | None = None, score: bool = True, seed: int | None = None) -> Rendered:
        """Copy, poster variants, scores and the gate for one request (nothing written)."""
        from generation.poster import PosterCopy

        cfg = self.config
        seed = cfg.seed if seed is None else seed
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if copy is None:
            copy = self.copy_writer.write(item, controls, seed=seed)
        timings["copy_s"] = time.perf_counter() - t0
        badge = item.attributes.get("year", "") or item.attributes.get("group", "")
        text = PosterCopy(headline=_clip(copy.headline, 200), tagline=_clip(copy.tagline, 200), badge=badge,
                          language=copy.language)
        references = [e.item.image for e in sorted(liked, key=lambda e: -e.weight) if e.item.image is not None][:8]
        attempts: list[dict[str, Any]] = []
        chosen, chosen_scores, passed, servable = None, None, False, []
        for attempt in range(cfg.attempts if score else 1):
            t1 = time.perf_counter()
            variants = self.poster_generator.generate(item, text, controls, n_variants=cfg.variants, shape=cfg.shape,
                                                      seed=seed + attempt * cfg.variants)
            timings[f"posters_s_{attempt}"] = time.perf_counter() - t1
            if not score:
                chosen, servable = variants[0], [(variants[0], None)]
                break
            t2 = time.perf_counter()
            scores = self.scorer.score(variants, item, controls, style_references=references)
            best, decisions = self.gate.select(scores)
            timings[f"scores_s_{attempt}"] = time.perf_counter() - t2
            ranked = self.scorer.rank(scores)
            attempts.append({"variants": [{**v.to_dict(), "scores": s.to_dict(), "gate": d.to_dict()}
                                          for v, s, d in zip(variants, scores, decisions)]})
            if best is not None:
                chosen, chosen_scores, passed = variants[best], scores[best], True
                servable = [(variants[best], scores[best].total)] + [
                    (v, s.total) for i, (v, s, d) in enumerate(zip(variants, scores, decisions)) if d.passed and i != best]
                break
            if chosen is None or scores[ranked[0]].total > chosen_scores.total:
                chosen, chosen_scores = variants[ranked[0]], scores[ranked[0]]
                servable = [(chosen, chosen_scores.total)]  # a fallback: no other variant passed the gate
        report = {
            "item_id": item.item_id, "user_id": controls.user_id, "ai_generated": True,
            "gate": {"passed": passed, "fallback": None if passed or not score else
                     f"no variant passed in {len(attempts)} attempt(s): kept the best-ranked one"},
            "chosen": {"seed": chosen.seed, "extra": dict(chosen.extra),
                       **({"scores": chosen_scores.to_dict()} if chosen_scores else {})},
            "copy": {"source": copy.source, "fallback_reason": copy.fallback_reason, "guardrails": copy.guardrails.to_dict(),
                     "rejected": copy.rejected},
            "controls": _controls_summary(controls), "attempts": attempts, "poster_notes": list(chosen.notes),
        }
        timings["total_s"] = time.perf_counter() - t0
        report["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        return Rendered(controls, copy, chosen, report, passed, timings, servable)

    def make(self, item_id: str, *, user_id: str | None = None, liked: Sequence[LikedItem] = (),
             profile_version: int | None = None, out_dir: str | os.PathLike | None = None) -> CreativeResult:
        """A full creative; ``out_dir`` (if given) receives :data:`OUTPUT_FILES`. ``liked`` is
        the user's taste (empty: the neutral default); ``profile_version`` (from
        ``ProfileStore.user_version``) enables the cache for a user; a user given only by a
        ``liked`` list is cached under a hash of that list."""
        from generation.trust import protect_image

        item = require_item(self.items, item_id)
        owner = _owner(user_id, liked, profile_version)
        settings = settings_hash(self.settings())
        key = CacheKey("creative", owner, item.item_id, settings)
        record = self.cache.get(key) if self.cache is not None else None
        if record is not None:
            try:
                if out_dir is not None:
                    for name, asset_id in record["assets"].items():
                        atomic_write_bytes(Path(out_dir) / name, self.assets.get(asset_id))
                copy = AdCopy.from_dict(json.loads(self.assets.get(record["assets"]["copy.json"])))
                scores = json.loads(self.assets.get(record["assets"]["scores.json"]))
                chosen = scores.get("chosen") or {}
                posters = tuple(PosterOption(p["asset_id"], p["family"], p["score"]) for p in record.get("posters", ())) \
                    or (PosterOption(record["assets"]["poster.png"], str((chosen.get("extra") or {}).get("family") or "photo"),
                                     (chosen.get("scores") or {}).get("total")),)  # a record from before "posters"
                for option in posters:
                    self.assets.path(option.asset_id)  # pruned: make it again
                return CreativeResult(Path(out_dir) if out_dir else None, item.item_id, copy.user_id, copy, scores,
                                      bool(record["gate_passed"]), True, dict(record["assets"]), int(record["payload_id"]),
                                      posters)
            except (UnknownIdError, KeyError):
                pass  # the store was pruned under the index: make it again
        controls = self.controls(item, user_id, liked)
        rendered = self.render(item, controls, liked=liked)
        folder = Path(out_dir) if out_dir is not None else self.assets.root / ".staging" / key.digest
        folder.mkdir(parents=True, exist_ok=True)
        metadata = {"item_id": item.item_id, "user_id": str(user_id or ""), "copy_source": rendered.copy.source,
                    "gate_passed": str(rendered.gate_passed).lower()}
        protected = protect_image(rendered.poster.image, folder / "poster.png", title=f"{item.title} (crossrec creative)",
                                  metadata=metadata)
        rendered.scores["trust"] = {"label": "AI-generated", "watermark_id": protected.payload_id, "c2pa": "signed"}
        atomic_write_text(folder / "copy.json", json.dumps(rendered.copy.to_dict(), indent=2, ensure_ascii=False))
        atomic_write_text(folder / "scores.json", json.dumps(rendered.scores, indent=2, ensure_ascii=False, default=float))
        refs = {name: self.assets.put_file(folder / name).asset_id for name in OUTPUT_FILES}
        posters = [PosterOption(refs["poster.png"], _family(rendered.poster), rendered.servable[0][1])]
        # the other servable variants, labelled and watermarked like the chosen one, so a bandit can
        # show any of them (each under its own watermark payload)
        for n, (variant, total) in enumerate(rendered.servable[1:], start=1):
            path = folder / f"poster-{n}.png"
            protect_image(variant.image, path, title=f"{item.title} (crossrec creative)", metadata=metadata)
            posters.append(PosterOption(self.assets.put_file(path).asset_id, _family(variant), total))
            path.unlink()
        if out_dir is None:
            for name in OUTPUT_FILES:
                (folder / name).unlink(missing_ok=True)
            folder.rmdir()
        if self.cache is not None:
            self.cache.put(key, {"assets": refs, "gate_passed": rendered.gate_passed, "payload_id": protected.payload_id,
                                 "posters": [p.to_dict() for p in posters]})
        return CreativeResult(Path(out_dir) if out_dir else None, item.item_id, controls.user_id, rendered.copy,
                              rendered.scores, rendered.gate_passed, False, refs, protected.payload_id, tuple(posters))


def _owner(user_id: str | None, liked: Sequence[LikedItem], profile_version: int | None) -> str:
    if not liked:
        return NEUTRAL_OWNER
    if user_id is not None and profile_version is not None:
        return user_owner(user_id, profile_version)
    return "liked:" + settings_hash({"user": user_id, "liked": [(e.item.item_id, round(e.weight, 6)) for e in liked]})


def _family(variant) -> str:
    """A poster variant's style family (``extra["family"]``; "photo" when its generator names none)."""
    return str(variant.extra.get("family") or "photo")


def _controls_summary(c: ControlSignals) -> dict[str, Any]:
    return {"user_id": c.user_id, "style_words": list(c.style_words), "tone": c.tone,
            "palette": [list(p) for p in c.palette], "stress": list(c.stress), "theme": c.theme,
            "language": c.language, "personalisation": c.personalisation,
            "style_vector": c.style_vector is not None, "neutral": c.user_id is None}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
