"""The deterministic template copywriter: the fallback when no model-written candidate passes,
and the Chinese writer (SmolLM2 writes poor Chinese).

Templates are filled only from the item's metadata (title, first sentence of its text, genres,
year, category) and the user's controls (style words, stressed attributes, theme, the user's
taste keywords: lower-case nouns from the liked items' texts), so they cannot invent entities. Every filled combination is checked by the guardrails and the
best-scoring passing one is chosen (similarity to the item text plus a bonus per control term).
"""

from __future__ import annotations

import itertools
import re
from typing import Sequence

import numpy as np

from generation.control import item_terms, term_text, translate
from generation.copy.base import AdCopy, CopyDraft, CopyRequest, CopyWriter
from generation.copy.guardrails import Guardrails, first_reason, sanitise

__all__ = ["TemplateCopyWriter", "fill", "body_options"]

_EN = {
    "headline": ("{title}", "{title}: {Style0} and {style1}", "{theme}: {title}", "{Style0} {stress0}: {title}"),
    "tagline": ("A {style0} {stress0} pick, chosen for you.", "{Style0}, {style1} and made for your taste.",
                "Your next {stress0} favourite.", "Discover something {style0}.",
                "{Style0} {stress0} for fans of {keywords}."),
    "body": ("{first}", "{title}: {stresses}.", "{Style0} {stresses} for you. {first}", "{first} {theme}: {keywords}.",
             "{theme}: {style0} {stresses} with {keywords}.", "{Style0} {stresses} to discover."),
}
_ZH = {
    "headline": ("{title}", "{style0}{stress0}：{title}", "{theme}｜{title}", "{style0}{stress0}精选"),
    "tagline": ("{style0}又{style1}，为你而选", "你的下一部{stress0}心头好", "为喜欢{stress0}的你推荐", "{style0}之选，不容错过"),
    "body": ("{title}，{stresses}。", "{stresses}类好物推荐：{title}。", "{title}：{style0}、{style1}，值得一试。"),
}
_NEUTRAL_WORDS = {"en": ("great", "fresh"), "zh": ("精彩", "新鲜")}


def _first_sentence(text: str, limit: int) -> str:
    clean = sanitise(text)[0]
    sentences = re.findall(r"[^.!?]+[.!?]", clean) or ([clean] if clean else [])
    out = ""
    for s in sentences:
        if len(out) + len(s) + 1 > limit:
            break
        out = f"{out} {s.strip()}".strip()
    return out


def _slots(request: CopyRequest) -> dict[str, str]:
    item, controls = request.item, request.controls
    lang = controls.language
    words = [translate(w, lang) for w in controls.style_words] or list(_NEUTRAL_WORDS[lang])
    words += list(_NEUTRAL_WORDS[lang])
    stress = [term_text(t, lang) for t in (controls.stress or tuple(item_terms(item)))] or [
        "好物" if lang == "zh" else "pick"]
    # No "because you liked ...": other titles are entities outside the item's own metadata.
    theme = translate(controls.theme, lang) if controls.theme else ""
    stresses = ("、" if lang == "zh" else ", ").join(stress)
    keywords = list(controls.keywords) if lang == "en" else []
    return {
        "title": item.title, "style0": words[0], "style1": words[1], "Style0": words[0][:1].upper() + words[0][1:],
        "stress0": stress[0], "stresses": stresses, "theme": theme,
        "keywords": ", ".join(keywords[:-1]) + f" and {keywords[-1]}" if len(keywords) > 1 else "".join(keywords),
        # no text: templates that need a sentence about the item are skipped (repeating the title
        # instead made every body repeat the headline)
        "first": _first_sentence(item.text, 200),
    }


def _options(request: CopyRequest) -> dict[str, list[str]]:
    """Each field's filled templates, skipping those whose slots are empty for this request (no
    theme for a user without history, for example)."""
    table = _ZH if request.language == "zh" else _EN
    slots = _slots(request)
    out: dict[str, list[str]] = {}
    for name, templates in table.items():
        out[name] = []
        for t in templates:
            if all(slots[n] for n in re.findall(r"{(\w+)}", t)):
                text = re.sub(r"\s+", " ", t.format(**slots)).strip()
                if text not in out[name]:
                    out[name].append(text)
    return out


def body_options(request: CopyRequest) -> list[str]:
    """The filled body templates for ``request`` (a model-written headline and tagline take one)."""
    return _options(request)["body"]


def fill(request: CopyRequest) -> list[CopyDraft]:
    """Every filled draft (headline x tagline x body)."""
    options = _options(request)
    return [CopyDraft(h, t, b) for h, t, b in itertools.product(options["headline"], options["tagline"], options["body"])]


class TemplateCopyWriter(CopyWriter):
    """Deterministic copy from templates, chosen by the guardrail score plus the user's taste.

    Encoding every combination (about 100) costs seconds per request; so each field option is
    encoded once, a combination's embedding is estimated as the length-weighted mean of its
    fields' (sentence encoders mean-pool tokens), every combination is screened with that
    estimate, and only the ``shortlist`` best are encoded and checked for real.

    Whose copy: the fillings differ by the user's words (style words, keywords, stressed
    attributes), and a passing draft's rank adds ``taste_weight`` x the controls'
    personalisation x its cosine to the mean of the user's ``taste_texts`` (the liked items'
    texts, guardrail encoder), so among faithful drafts the one that reads most like what the
    user liked wins. The similarity to the item text stays a hard floor (guardrails)."""

    name = "template"

    def __init__(self, guardrails: Guardrails | None = None, *, shortlist: int = 8, taste_weight: float = 2.0):
        if shortlist < 1:
            raise ValueError(f"shortlist={shortlist}: must be >= 1")
        if taste_weight < 0:
            raise ValueError(f"taste_weight={taste_weight}: must be >= 0")
        self.guardrails = guardrails or Guardrails()
        self.shortlist = shortlist
        self.taste_weight = taste_weight
        self._tastes: dict[tuple, np.ndarray] = {}  # one user's taste vector serves all their items

    @property
    def fingerprint(self) -> str:
        return f"template:v3:{self.shortlist}:{self.taste_weight}:{self.guardrails.fingerprint}"

    def _taste(self, request: CopyRequest) -> np.ndarray | None:
        """Unit mean vector of the user's taste texts (None: no history or no weight)."""
        texts, language = request.controls.taste_texts, request.language
        if not texts or not self.taste_weight or not request.controls.personalisation:
            return None
        key = (language, texts)
        if key not in self._tastes:
            if len(self._tastes) >= 256:
                self._tastes.clear()
            clean = [sanitise(t)[0] or "-" for t in texts]  # data, even when only encoded
            mean = np.asarray(self.guardrails.encoder(language).encode(clean), np.float64).mean(0)
            self._tastes[key] = mean / max(np.linalg.norm(mean), 1e-12)
        return self._tastes[key]

    def _ranked(self, request: CopyRequest, drafts: list[CopyDraft], vectors: np.ndarray, item_vector: np.ndarray,
                taste: np.ndarray | None):
        """Guardrail reports for ``drafts`` (rows of ``vectors``, not necessarily unit) and each
        draft's rank score (report score plus the taste term)."""
        norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        sims = (vectors @ item_vector) / norms
        reports = self.guardrails.check(drafts, request.item, request.controls, similarities=[float(x) for x in sims])
        bonus = (self.taste_weight * request.controls.personalisation * (vectors @ taste) / norms
                 if taste is not None else np.zeros(len(drafts)))
        return reports, [r.score + float(b) for r, b in zip(reports, bonus)]

    def _estimated(self, request: CopyRequest, drafts: list[CopyDraft], taste: np.ndarray | None):
        options = _options(request)
        texts = [t for name in ("headline", "tagline", "body") for t in options[name]]
        vectors = self.guardrails.encoder(request.language).encode([self.guardrails.item_text(request.item)] + texts)
        field = {t: (v, max(len(t), 1)) for t, v in zip(texts, vectors[1:])}
        means = []
        for d in drafts:
            parts = [field[t] for t in (d.headline, d.tagline, d.body) if t]
            means.append(sum(w * v for v, w in parts) / sum(w for _, w in parts))
        return self._ranked(request, drafts, np.stack(means), vectors[0], taste)

    def write_batch(self, requests: Sequence[CopyRequest], *, seed: int = 0, fallback_reason: str = "") -> list[AdCopy]:
        """``seed`` is accepted for the common signature; templates do not sample."""
        out = []
        for request in requests:
            drafts = fill(request)
            taste = self._taste(request)
            estimated, rank_score = self._estimated(request, drafts, taste)
            rank = sorted(range(len(drafts)), key=lambda i: (not estimated[i].passed, -rank_score[i], i))
            short = [drafts[i] for i in rank[: self.shortlist]]
            vectors = self.guardrails.encoder(request.language).encode(
                [self.guardrails.item_text(request.item)] + [d.text() or "-" for d in short])
            reports, scores = self._ranked(request, short, vectors[1:], vectors[0], taste)
            # The best passing draft; when none passes (e.g. a very long title), the best overall,
            # its report saying what failed.
            best = min(range(len(short)), key=lambda k: (not reports[k].passed, -scores[k], k))
            d, r = short[best], reports[best]
            out.append(AdCopy(
                item_id=request.item.item_id, user_id=request.controls.user_id, headline=d.headline, tagline=d.tagline,
                body=d.body, language=request.language, source="template", guardrails=r, candidates=len(drafts),
                writer=self.name, fallback_reason=fallback_reason or "template writer", rejected=first_reason(estimated),
                sanitised=sanitise(request.item.text)[1],
            ))
        return out
