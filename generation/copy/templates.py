"""The deterministic template copywriter: the fallback when no model-written candidate passes,
and the Chinese writer (SmolLM2 writes poor Chinese).

Templates are filled only from the item's metadata (title, first sentence of its text, genres,
year, category) and the user's controls (style words, stressed attributes, theme, a liked title),
so they cannot invent entities. Every filled combination is checked by the guardrails and the
best-scoring passing one is chosen (similarity to the item text plus a bonus per control term).
"""

from __future__ import annotations

import itertools
import re
from typing import Sequence

from generation.control import item_terms, term_text, translate
from generation.copy.base import AdCopy, CopyDraft, CopyRequest, CopyWriter
from generation.copy.guardrails import Guardrails, first_reason, sanitise

__all__ = ["TemplateCopyWriter", "fill"]

_EN = {
    "headline": ("{title}", "{title}: {Style0} and {style1}", "{theme}: {title}", "{Style0} {stress0}: {title}"),
    "tagline": ("A {style0} {stress0} pick, chosen for you.", "{Style0}, {style1} and made for your taste.",
                "Your next {stress0} favourite.", "Discover something {style0}."),
    "body": ("{first}", "{title}: {stresses}.", "{Style0} {stresses} for you. {first}"),
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
    return {
        "title": item.title, "style0": words[0], "style1": words[1], "Style0": words[0][:1].upper() + words[0][1:],
        "stress0": stress[0], "stresses": stresses, "theme": theme,
        "first": _first_sentence(item.text, 200) or f"{item.title}.",
    }


def fill(request: CopyRequest, limit: int = 24) -> list[CopyDraft]:
    """Up to ``limit`` filled drafts (headline x tagline x body), skipping templates whose slots
    are empty for this request (no theme for a user without history, for example)."""
    table = _ZH if request.language == "zh" else _EN
    slots = _slots(request)

    def usable(templates):
        out = []
        for t in templates:
            names = re.findall(r"{(\w+)}", t)
            if all(slots[n] for n in names):
                out.append(re.sub(r"\s+", " ", t.format(**slots)).strip())
        return out

    drafts = [CopyDraft(h, t, b) for h, t, b in itertools.product(usable(table["headline"]), usable(table["tagline"]),
                                                                 usable(table["body"]))]
    return drafts[:limit]


class TemplateCopyWriter(CopyWriter):
    """Deterministic copy from templates, chosen by the guardrail score."""

    name = "template"

    def __init__(self, guardrails: Guardrails | None = None):
        self.guardrails = guardrails or Guardrails()

    @property
    def fingerprint(self) -> str:
        return f"template:v1:{self.guardrails.fingerprint}"

    def write_batch(self, requests: Sequence[CopyRequest], *, seed: int = 0, fallback_reason: str = "") -> list[AdCopy]:
        """``seed`` is accepted for the common signature; templates do not sample."""
        out = []
        for request in requests:
            drafts = fill(request)
            reports = self.guardrails.check(drafts, request.item, request.controls)
            # The best passing draft; when none passes (e.g. a very long title), the best overall,
            # its report saying what failed.
            order = sorted(range(len(drafts)), key=lambda i: (not reports[i].passed, -reports[i].score, i))
            best = order[0]
            d, r = drafts[best], reports[best]
            out.append(AdCopy(
                item_id=request.item.item_id, user_id=request.controls.user_id, headline=d.headline, tagline=d.tagline,
                body=d.body, language=request.language, source="template", guardrails=r, candidates=len(drafts),
                writer=self.name, fallback_reason=fallback_reason or "template writer", rejected=first_reason(reports),
                sanitised=sanitise(request.item.text)[1],
            ))
        return out
