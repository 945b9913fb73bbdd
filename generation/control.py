"""A user's taste turned into :class:`~generation.types.ControlSignals`, at three granularities.

Whose taste: the user's *liked items*, each with a weight.

- MovieLens: items rated 4 or 5, weighted by recency (``recsys.profiles.event_weights``: the
  rating / 5 times 0.5 ** (age / half-life), age measured from the user's latest event), read
  from the live :class:`~recsys.profiles.ProfileStore`.
- Grocery: behaviour events (click, add to cart, purchase; views are too weak) of a user from the
  shopper simulator fed into a profile store the same way, or an explicit list of liked items.

Granularities (see ../shared/REFERENCE.md, "Controllable creative generation"):

- word: ``style_words`` and ``tone`` from the user's top categories (the lexicon below), the
  ``palette`` (k-means colours of the liked items' images, ``generation.style.palette``), the
  ``style_vector`` (weighted mean Magenta style vector of the liked images) and ``keywords``
  (:func:`taste_keywords`: nouns that recur in the liked items' texts).
- sentence: ``stress``, the item's own attributes (genres, categories) ordered by the user's
  affinity for them; only attributes the item has, so the copy cannot claim what is not there.
- campaign: ``theme``, from the user's top category alone, so every creative of one user's list
  shares it.

Users without history get :func:`neutral_controls`: no style words, tone ``clear``, no palette,
no style vector (posters keep the item's own style), ``stress`` the item's attributes in catalogue
order, theme ``""`` and personalisation 0.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from crossrec_core.errors import UnknownIdError
from generation.types import BLOCKLIST, NEUTRAL_TONE, ControlSignals, CreativeItem

__all__ = [
    "LikedItem", "ControlConfig", "LEXICON", "ZH_TERMS", "EN_TERMS", "term_text", "item_terms", "category_affinity", "liked_from_profile",
    "taste_keywords", "taste_texts",
    "controls_for", "neutral_controls", "translate",
]

# category -> (style words, tone, campaign theme). MovieLens genres and grocery categories.
LEXICON: dict[str, tuple[tuple[str, ...], str, str]] = {
    "Action": (("explosive", "fast-paced"), "bold", "Adrenaline picks"),
    "Adventure": (("epic", "daring"), "bold", "Journeys worth taking"),
    "Animation": (("colourful", "whimsical"), "playful", "Animated favourites"),
    "Children": (("heartwarming", "family"), "warm", "Family time"),
    "Comedy": (("witty", "feel-good"), "playful", "Laugh out loud"),
    "Crime": (("gritty", "tense"), "serious", "On the case"),
    "Documentary": (("true", "eye-opening"), "informative", "Real stories"),
    "Drama": (("moving", "powerful"), "earnest", "Stories that stay"),
    "Fantasy": (("magical", "enchanting"), "dreamy", "Worlds of wonder"),
    "FilmNoir": (("shadowy", "stylish"), "moody", "After dark"),
    "Horror": (("chilling", "dark"), "ominous", "Sleepless nights"),
    "Musical": (("melodic", "dazzling"), "joyful", "Sing along"),
    "Mystery": (("puzzling", "suspenseful"), "intriguing", "Solve it"),
    "Romance": (("romantic", "tender"), "warm", "Love stories"),
    "SciFi": (("futuristic", "mind-bending"), "curious", "Beyond tomorrow"),
    "Thriller": (("gripping", "suspenseful"), "tense", "Edge of your seat"),
    "War": (("harrowing", "heroic"), "serious", "Courage under fire"),
    "Western": (("rugged", "sweeping"), "laconic", "Frontier tales"),
    "Fruit": (("juicy", "sweet"), "fresh", "Fresh picks"),
    "Vegetables": (("crisp", "wholesome"), "fresh", "Garden goodness"),
    "Packages": (("creamy", "convenient"), "friendly", "Pantry staples"),
}

# Chinese forms of the lexicon and attribute names (templates fill Chinese copy with them).
ZH_TERMS: dict[str, str] = {
    "Action": "动作", "Adventure": "冒险", "Animation": "动画", "Children": "儿童", "Comedy": "喜剧", "Crime": "犯罪",
    "Documentary": "纪录", "Drama": "剧情", "Fantasy": "奇幻", "FilmNoir": "黑色电影", "Horror": "恐怖",
    "Musical": "歌舞", "Mystery": "悬疑", "Romance": "爱情", "SciFi": "科幻", "Thriller": "惊悚", "War": "战争",
    "Western": "西部", "Fruit": "水果", "Vegetables": "蔬菜", "Packages": "包装食品",
    "explosive": "火爆", "fast-paced": "快节奏", "epic": "史诗般", "daring": "大胆", "colourful": "多彩",
    "whimsical": "奇趣", "heartwarming": "温馨", "family": "合家欢", "witty": "妙趣横生", "feel-good": "轻松愉快",
    "gritty": "硬核", "tense": "紧张", "true": "真实", "eye-opening": "大开眼界", "moving": "动人", "powerful": "震撼",
    "magical": "魔幻", "enchanting": "迷人", "shadowy": "幽暗", "stylish": "有型", "chilling": "毛骨悚然",
    "dark": "暗黑", "melodic": "悦耳", "dazzling": "炫目", "puzzling": "烧脑", "suspenseful": "悬念迭起",
    "romantic": "浪漫", "tender": "温柔", "futuristic": "未来感", "mind-bending": "脑洞大开", "gripping": "扣人心弦",
    "harrowing": "惨烈", "heroic": "英勇", "rugged": "粗犷", "sweeping": "壮阔", "juicy": "多汁", "sweet": "香甜",
    "crisp": "爽脆", "wholesome": "健康", "creamy": "香浓", "convenient": "方便",
    "Adrenaline picks": "肾上腺素之选", "Journeys worth taking": "值得出发的旅程", "Animated favourites": "动画心头好",
    "Family time": "家庭时光", "Laugh out loud": "开怀一笑", "On the case": "追查到底", "Real stories": "真实故事",
    "Stories that stay": "难忘的故事", "Worlds of wonder": "奇妙世界", "After dark": "夜幕之后", "Sleepless nights": "无眠之夜",
    "Sing along": "一起唱", "Solve it": "解开谜团", "Love stories": "爱情故事", "Beyond tomorrow": "超越明天",
    "Edge of your seat": "屏息以待", "Courage under fire": "烽火勇气", "Frontier tales": "边疆传奇", "Fresh picks": "新鲜精选",
    "Garden goodness": "田园好味", "Pantry staples": "厨房常备",
}


# How attribute names read inside an English sentence.
EN_TERMS = {"SciFi": "sci-fi", "FilmNoir": "film noir", "Children": "family", "Packages": "pantry"}


def translate(term: str, language: str) -> str:
    """``term`` in ``language`` (English terms unchanged; unknown terms kept as they are)."""
    return ZH_TERMS.get(term, term) if language == "zh" else term


def term_text(term: str, language: str) -> str:
    """An attribute as it reads inside a sentence: "SciFi" -> "sci-fi" / "科幻"."""
    return translate(term, "zh") if language == "zh" else EN_TERMS.get(term, term).lower()


@dataclass(frozen=True)
class LikedItem:
    item: CreativeItem
    weight: float


@dataclass(frozen=True)
class ControlConfig:
    """``min_rating``: ratings that count as liked; ``max_images``: the most-weighted liked
    images used for palette and style vector (cost bound); ``palette_k`` colours; ``style_words``
    and ``stress`` are capped at these counts; ``taste_texts`` liked texts of up to
    ``taste_chars`` characters each are kept for choosing copy."""

    min_rating: float = 4.0
    max_images: int = 12
    palette_k: int = 5
    style_words: int = 4
    stress: int = 2
    keywords: int = 5
    taste_texts: int = 8
    taste_chars: int = 200
    personalisation: float = 0.5

    def __post_init__(self) -> None:
        if self.max_images < 1 or self.palette_k < 1:
            raise ValueError(f"max_images={self.max_images}, palette_k={self.palette_k}: both must be >= 1")
        if not 0.0 <= self.personalisation <= 1.0:
            raise ValueError(f"personalisation={self.personalisation!r}: must be in [0, 1]")


def item_terms(item: CreativeItem) -> list[str]:
    """The item's categories in catalogue order: MovieLens genres, or grocery category and group."""
    genres = item.attributes.get("genres", "")
    terms = [g.strip() for g in genres.split(",") if g.strip()] if genres else []
    for value in (item.category, item.attributes.get("group", "")):
        if value and value not in terms:
            terms.append(value)
    return terms


def category_affinity(liked: Sequence[LikedItem]) -> dict[str, float]:
    """Weights over the liked items' categories summing to 1 (each item's weight split over its
    categories)."""
    totals: dict[str, float] = {}
    for entry in liked:
        terms = item_terms(entry.item)
        for t in terms:
            totals[t] = totals.get(t, 0.0) + entry.weight / len(terms)
    total = sum(totals.values())
    return {t: w / total for t, w in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))} if total > 0 else {}


# Never used as taste words: they would tell a user what an ad infers about their sexuality,
# health, religion or ethnicity, or put drugs and gore in ad copy.
_SENSITIVE = frozenset({
    "lesbian", "lesbians", "gay", "gays", "homosexual", "homosexuality", "sexual", "sexuality", "transsexual", "drug",
    "drugs", "addict", "addiction", "heroin", "cocaine", "alcoholic", "alcoholism", "cancer", "aids", "disease",
    "illness", "religion", "religious", "jewish", "muslim", "christian", "catholic", "race", "racism", "racist",
    "suicide", "rape", "abortion", "pregnancy", "prostitute", "prostitutes", "prostitution", "nazi", "nazis", "slave",
    "slaves", "slavery", "slaughter", "victim", "victims", "corpse",
})
# A word reads as a noun in a tag list when the liked texts show it as the head of a noun
# phrase: after a determiner and before punctuation or a function word ("the crew of ...").
_DETERMINERS = frozenset({"a", "an", "the", "his", "her", "their", "its", "our", "your"})
_AFTER_NOUN = frozenset({
    ".", ",", ";", ":", "!", "?", "of", "in", "to", "and", "or", "but", "who", "whose", "with", "is", "was", "are", "were",
    "for", "from", "on", "at", "that", "as", "by", "has", "have", "had", "he", "she", "they", "into", "when", "while",
})
_KEYWORD_TOKEN = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*|[.,;:!?]")


def taste_keywords(liked: Sequence[LikedItem], n: int = 3) -> tuple[str, ...]:
    """Up to ``n`` nouns that recur in the liked items' texts, most characteristic first.

    A word counts when it is written in lower case (so no names or titles), seen as the head of a
    noun phrase at least once ("the outlaws of ...": a noun, not a verb or an adjective), not among the most
    common English words, and in at least two liked texts (one overview's quirk is not taste).
    Score: the summed weights of the liked items using it times its rarity (7 - Zipf frequency,
    wordfreq). Blocklisted and sensitive words (sexuality, health, religion, ethnicity, drugs,
    gore) never appear.
    """
    from wordfreq import zipf_frequency

    blocked = {w for w in BLOCKLIST["en"] if " " not in w}
    weight: dict[str, float] = {}
    seen_in: dict[str, int] = {}
    noun: set[str] = set()
    for entry in liked:
        tokens = _KEYWORD_TOKEN.findall(entry.item.text or "")
        words = set()
        for prev, word, after in zip([""] + tokens, tokens, tokens[1:] + ["."]):
            if not word.islower() or len(word) < 4 or word.endswith(("ly", "'s")):
                continue
            words.add(word)
            if prev.lower() in _DETERMINERS and after.lower() in _AFTER_NOUN:
                noun.add(word)
        for word in words:
            weight[word] = weight.get(word, 0.0) + entry.weight
            seen_in[word] = seen_in.get(word, 0) + 1
    scored = []
    for word, w in weight.items():
        if word not in noun or seen_in[word] < 2 or word in blocked or word in _SENSITIVE:
            continue
        zipf = zipf_frequency(word, "en")
        if 1.5 <= zipf <= 5.0:
            scored.append((-w * (7.0 - zipf), word))
    return tuple(word for _, word in sorted(scored)[:n])


def taste_texts(liked: Sequence[LikedItem], n: int = 8, chars: int = 200) -> tuple[str, ...]:
    """The openings (up to ``chars`` characters, at a word boundary) of the ``n`` most-weighted
    liked items' texts; titles are not included (copy never quotes other items, and the eval
    masks their titles). Writers only encode them (never prompt with them or quote them)."""
    out = []
    for entry in sorted(liked, key=lambda e: -e.weight):
        text = " ".join((entry.item.text or "").split())
        if text:
            out.append(text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0])
        if len(out) >= n:
            break
    return tuple(out)


def liked_from_profile(profile, items: Mapping[str, CreativeItem], *, half_life_days: float = 30.0,
                       min_rating: float = 4.0) -> list[LikedItem]:
    """The liked items of a :class:`~recsys.profiles.UserProfile`: ratings >= ``min_rating`` and
    clicks, adds to cart and purchases, recency-weighted; items missing from ``items`` are
    skipped. A missing profile (None) has none."""
    from recsys.profiles import event_weights

    if profile is None or not profile.history:
        return []
    history = profile.history
    weights = event_weights([h[1] for h in history], [h[2] for h in history], np.array([h[3] for h in history]),
                            half_life_days)
    merged: dict[str, float] = {}
    for (item_id, kind, value, _), w in zip(history, weights):
        liked = (kind == "rating" and value is not None and value >= min_rating) or kind in ("click", "add_to_cart", "purchase")
        if liked and str(item_id) in items:
            merged[str(item_id)] = merged.get(str(item_id), 0.0) + float(w)
    return [LikedItem(items[i], w) for i, w in sorted(merged.items(), key=lambda kv: -kv[1]) if w > 0]


def neutral_controls(item: CreativeItem, *, language: str = "en", config: ControlConfig = ControlConfig()) -> ControlSignals:
    """The documented default for users without history (see the module docstring)."""
    return ControlSignals(user_id=None, tone=NEUTRAL_TONE, stress=tuple(item_terms(item)[: config.stress]),
                          language=language, personalisation=0.0)


class _StyleCache:
    """Style vectors and palettes of image files, computed once per process."""

    def __init__(self, style_model=None):
        self.style_model = style_model
        self.vectors: dict[str, np.ndarray] = {}
        self.palettes: dict[tuple, np.ndarray] = {}  # one user's palette serves all their items

    def model(self):
        if self.style_model is None:
            from generation.style import StyleModel

            self.style_model = StyleModel()
        return self.style_model

    def palette(self, paths, k: int) -> np.ndarray:
        from generation.style import palette

        key = (tuple(map(str, paths)), k)
        if key not in self.palettes:
            self.palettes[key] = palette(list(paths), k=k)
        return self.palettes[key]

    def vector(self, path) -> np.ndarray:
        key = str(path)
        if key not in self.vectors:
            self.vectors[key] = self.model().style_vector([path])[0]
        return self.vectors[key]


_DEFAULT_STYLES = _StyleCache()
_STYLE_CACHES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # one cache per shared style model


def _styles_for(style_model) -> _StyleCache:
    if style_model is None:
        return _DEFAULT_STYLES
    if style_model not in _STYLE_CACHES:
        _STYLE_CACHES[style_model] = _StyleCache(style_model)
    return _STYLE_CACHES[style_model]


def controls_for(user_id: str | None, liked: Sequence[LikedItem], item: CreativeItem, *, language: str = "en",
                 personalisation: float | None = None, config: ControlConfig = ControlConfig(),
                 style_model=None) -> ControlSignals:
    """The controls for making ``item``'s creative for the user who liked ``liked``.

    No liked items gives :func:`neutral_controls`. Liked items without a readable image add to
    the categories but not to palette or style vector.
    """
    if not liked:
        return neutral_controls(item, language=language, config=config)
    from crossrec_core.errors import ImageDecodeError

    weight = config.personalisation if personalisation is None else personalisation
    affinity = category_affinity(liked)
    top = [t for t in affinity if t in LEXICON]
    words: list[str] = []
    for t in top:
        words += [w for w in LEXICON[t][0] if w not in words]
    tone = LEXICON[top[0]][1] if top else NEUTRAL_TONE
    theme = LEXICON[top[0]][2] if top else ""
    own = item_terms(item)
    stress = sorted(own, key=lambda t: (-affinity.get(t, 0.0), own.index(t)))[: config.stress]

    styles = _styles_for(style_model)
    images, vectors, weights = [], [], []
    for entry in sorted(liked, key=lambda e: -e.weight):
        if entry.item.image is None or len(images) >= config.max_images:
            continue
        try:
            vectors.append(styles.vector(entry.item.image))
        except ImageDecodeError:
            continue
        images.append(entry.item.image)
        weights.append(entry.weight)
    colours: tuple = ()
    style_vector = None
    if images:
        w = np.asarray(weights, np.float64)
        style_vector = tuple(float(v) for v in (w @ np.stack(vectors)) / w.sum())
        colours = tuple(tuple(int(c) for c in rgb) for rgb in styles.palette(images, config.palette_k))
    return ControlSignals(
        user_id=None if user_id is None else str(user_id), style_words=tuple(words[: config.style_words]), tone=tone,
        palette=colours, style_vector=style_vector, stress=tuple(stress), theme=theme, language=language,
        personalisation=float(weight), liked_titles=tuple(e.item.title for e in liked[:5]),
        keywords=taste_keywords(liked, config.keywords) if language == "en" else (),
        taste_texts=taste_texts(liked, config.taste_texts, config.taste_chars),
    )


def with_language(controls: ControlSignals, language: str) -> ControlSignals:
    """The same controls for copy in another language."""
    return replace(controls, language=language)


def require_item(items: Mapping[str, CreativeItem], item_id: str) -> CreativeItem:
    """``items[item_id]`` or an :class:`UnknownIdError` naming it."""
    try:
        return items[str(item_id)]
    except KeyError:
        raise UnknownIdError(f"item {item_id!r} is not in the catalogue ({len(items)} items)") from None
