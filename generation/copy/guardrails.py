"""Checks every copy candidate must pass, and prompt sanitising.

- **Entities**: numbers, and proper nouns, only from the item's own metadata (title, text,
  attribute values). English: a word is a proper-noun candidate when it is capitalised inside a
  sentence, all capitals, or (at a sentence start or in a Title Case headline) not among the 10,000
  commonest English words (wordfreq); Chinese: jieba's part-of-speech tags for person, place,
  organisation and other proper names (nr, ns, nt, nz) and Latin words inside the Chinese text.
- **Length** limits per field and language; **blocklist** (absolute and medical claims, the
  superlatives Chinese advertising law forbids, profanity); **degeneracy** (repeated trigrams,
  leftover format labels or chat markup).
- **Similarity** of the whole copy to the item text above a threshold: all-MiniLM-L6-v2 for
  English, multilingual e5 for Chinese (MiniLM has no Chinese).
- **Prompt injection**: item and user text go to the model as quoted data; passages that read as
  instructions ("ignore previous instructions", chat markup...) are removed first and reported,
  and are not part of the metadata that entity checks allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from generation.copy.base import CopyDraft, GuardrailReport
from generation.types import BLOCKLIST, ControlSignals, CreativeItem

__all__ = ["GuardrailConfig", "Guardrails", "sanitise", "allowed_text", "find_entities", "trigrams", "BLOCKLIST"]

_INJECTION = re.compile(
    r"(ignore|disregard|forget|override)\b[^.!?\n]{0,40}\b(instruction|prompt|rule|above|previous|task)s?"
    r"|\b(system prompt|you are now|act as|new instructions?|respond with|reply with|print|repeat after me)\b"
    r"|<\|[^|>]*\|>|</?(system|user|assistant|data)>|忽略.{0,10}(指令|提示|说明)|无视.{0,10}(指令|要求)",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?\n。！？]+[.!?。！？]?")
_CLAUSE = re.compile(r"[^.!?\n。！？:：|｜]+[.!?。！？:：|｜]?")  # a capital after ':' starts a clause
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_FORMAT_LEFTOVER = re.compile(r"\b(headline|tagline|body)\s*:|<\||\|>|```|\[/?INST\]", re.IGNORECASE)
_ZH_PROPER = ("nr", "ns", "nt", "nz", "nrt", "nrfg")


def sanitise(text: str) -> tuple[str, tuple[str, ...]]:
    """``text`` without the sentences that read as instructions to a model; returns (clean text,
    removed sentences)."""
    kept, removed = [], []
    for sentence in _SENTENCE.findall(text or ""):
        (removed if _INJECTION.search(sentence) else kept).append(sentence.strip())
    return " ".join(s for s in kept if s), tuple(s for s in removed if s)


def allowed_text(item: CreativeItem) -> str:
    """The metadata copy may quote from: title, sanitised text, attribute values and how the
    item's categories read in a sentence ("sci-fi", "科幻")."""
    from generation.control import item_terms, term_text

    terms = [term_text(t, lang) for t in item_terms(item) for lang in ("en", "zh")]
    return " ".join([item.title, sanitise(item.text)[0], item.category, *map(str, item.attributes.values()), *terms])


@lru_cache(maxsize=1)
def _common_english() -> frozenset[str]:
    """The 10,000 commonest English words plus the control lexicon's style words."""
    import wordfreq

    from generation.control import LEXICON

    return frozenset(wordfreq.top_n_list("en", 10_000)) | {w for words, _, _ in LEXICON.values() for w in words}


def _zh_proper_nouns(text: str) -> list[str]:
    import jieba.posseg

    return [w.word for w in jieba.posseg.cut(text) if w.flag in _ZH_PROPER and len(w.word) > 1]


def find_entities(text: str, language: str) -> tuple[list[str], list[str]]:
    """(proper-noun candidates, numbers) in ``text``."""
    numbers = _NUMBER.findall(text)
    common = _common_english()
    names: list[str] = []
    for sentence in _CLAUSE.findall(text):
        words = _WORD.findall(sentence)
        title_case = len(words) > 1 and all(w[0].isupper() for w in words)
        for pos, word in enumerate(words):
            bare = word.strip("'-")
            if not bare or not bare[0].isupper():
                continue
            if len(bare) > 1 and bare.isupper():
                names.append(bare)
            elif (pos == 0 or title_case) and bare.lower() in common:
                continue
            else:
                names.append(bare)
    if language == "zh":
        names += _zh_proper_nouns(text)
    return names, numbers


@dataclass(frozen=True)
class GuardrailConfig:
    """Limits in characters: English (headline, tagline, body), Chinese the same fields.
    ``min_similarity``: cosine of the copy to the item text; ``control_bonus``: added to a
    passing draft's score per style word / stressed attribute / taste keyword it uses (prefers
    personal copy)."""

    max_chars_en: tuple[int, int, int] = (60, 100, 240)
    max_chars_zh: tuple[int, int, int] = (24, 40, 100)
    min_chars: tuple[int, int, int] = (3, 6, 0)
    min_similarity: float = 0.25
    control_bonus: float = 0.05
    max_repeated_trigrams: int = 0

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity={self.min_similarity}: must be a cosine in [-1, 1]")


class Guardrails:
    """Checks drafts for one item at a time, in batches. Encoders load on first use; pass
    ``english``/``chinese`` encoders to share loaded ones."""

    def __init__(self, config: GuardrailConfig = GuardrailConfig(), *, english=None, chinese=None):
        self.config = config
        self._encoders = {"en": english, "zh": chinese}

    def encoder(self, language: str):
        if self._encoders[language] is None:
            from retrieval.encoders import E5Encoder, SentenceTransformerEncoder

            self._encoders[language] = SentenceTransformerEncoder() if language == "en" else E5Encoder()
        return self._encoders[language]

    @property
    def fingerprint(self) -> str:
        return f"guardrails:{self.config}"

    def item_text(self, item: CreativeItem) -> str:
        """What the copy's similarity is measured against."""
        return item.title + ". " + (sanitise(item.text)[0] or item.title)

    def check(self, drafts: Sequence[CopyDraft], item: CreativeItem, controls: ControlSignals, *,
              similarities: Sequence[float] | None = None) -> list[GuardrailReport]:
        """One report per draft (similarities computed in one batch, or given: a writer that
        pre-screens many drafts passes estimates, then checks its short list for real)."""
        if not drafts:
            return []
        language = controls.language
        allowed = allowed_text(item)
        allowed_lower = allowed.lower()
        allowed_numbers = set(_NUMBER.findall(allowed))
        if similarities is None:
            vectors = self.encoder(language).encode([self.item_text(item)] + [d.text() or "-" for d in drafts])
            similarities = vectors[1:] @ vectors[0]
        terms = [t.lower() for t in (*controls.style_words, *controls.stress, *controls.keywords) if t]
        title = set(trigrams(item.title))
        return [self._one(d, float(s), language, allowed_lower, allowed_numbers, terms, title)
                for d, s in zip(drafts, similarities)]

    def _one(self, draft: CopyDraft, sim: float, language: str, allowed_lower: str, allowed_numbers: set[str],
             terms: list[str], title: set[tuple[str, ...]]) -> GuardrailReport:
        cfg = self.config
        reasons: list[str] = []
        limits = cfg.max_chars_en if language == "en" else cfg.max_chars_zh
        for name, value, low, high in zip(("headline", "tagline", "body"), (draft.headline, draft.tagline, draft.body),
                                          cfg.min_chars, limits):
            if len(value.strip()) < low:
                reasons.append(f"{name} empty or shorter than {low} characters")
            elif len(value) > high:
                reasons.append(f"{name} longer than {high} characters ({len(value)})")
        text = draft.text()
        lower = text.lower()
        blocked = [w for w in BLOCKLIST[language] + (BLOCKLIST["en"] if language == "zh" else ())
                   if re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", lower)]
        if blocked:
            reasons.append(f"blocklisted: {', '.join(blocked)}")
        if _FORMAT_LEFTOVER.search(text) or _INJECTION.search(text):
            reasons.append("format labels, markup or instructions in the copy")
        # the title may appear in the headline and again in the body (separate lines)
        if language == "en" and _repeated_trigrams(text, title) > cfg.max_repeated_trigrams:
            reasons.append("repetitive (a word trigram repeats)")
        if language == "zh" and not re.search(r"[\u4e00-\u9fff]", text):
            reasons.append("not Chinese")
        # Each field is its own line (poster, page), so each starts a sentence: checked as one
        # run-on string, the tagline's first word read as a capital inside a sentence.
        names, numbers = [], []
        for value in (draft.headline, draft.tagline, draft.body):
            found = find_entities(value, language)
            names += found[0]
            numbers += found[1]
        bad_names = sorted({n for n in names if n.lower() not in allowed_lower})
        bad_numbers = sorted({n for n in numbers if n not in allowed_numbers})
        entities_ok = not bad_names and not bad_numbers
        if bad_names:
            reasons.append(f"names not in the item metadata: {', '.join(bad_names[:5])}")
        if bad_numbers:
            reasons.append(f"numbers not in the item metadata: {', '.join(bad_numbers[:5])}")
        if sim < cfg.min_similarity:
            reasons.append(f"similarity to the item text {sim:.3f} < {cfg.min_similarity}")
        used = sum(1 for t in terms if t in lower)
        return GuardrailReport(not reasons, tuple(reasons), sim, sim + cfg.control_bonus * used, entities_ok)


def trigrams(text: str) -> list[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return list(zip(words, words[1:], words[2:]))


def _repeated_trigrams(text: str, allowed: set[tuple[str, ...]] = frozenset()) -> int:
    """Word trigrams that occur more than once, not counting the ``allowed`` ones."""
    grams = [g for g in trigrams(text) if g not in allowed]
    return len(grams) - len(set(grams))


def first_reason(reports: Iterable[GuardrailReport]) -> dict[str, int]:
    """Rejections counted by kind (the text before any ':' or figure of the first reason)."""
    counts: dict[str, int] = {}
    for r in reports:
        if not r.passed:
            kind = re.split(r"[:(<]| \d", r.reasons[0])[0].strip()
            counts[kind] = counts.get(kind, 0) + 1
    return counts
