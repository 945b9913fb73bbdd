"""A synthetic shop shaped like real logs, written as a user-data folder.

Items have power-law popularity inside a two-level category tree, titles and descriptions built from
brands, colours, materials and a noun of their sub-category, prices (log-normal per category) and a
stock flag. Users have one to three favourite categories and power-law activity. Interactions come
in sessions (a burst of events a few seconds to minutes apart, mostly inside one category) along a
view -> click -> add_to_cart -> purchase funnel, with a few ratings. Everything is vectorised with
numpy; interactions are generated and written in chunks, so 10M rows stream to Parquet in bounded
memory. The folder follows the user-data layout (README "Your data"):

- ``catalogue.parquet``: item_id (str SKU), title, text, category, subcategory, brand, colour,
  material, price, in_stock, image (relative path or null)
- ``photos.parquet`` (only with ``images=True``): item_id, image: a shifted, noisy "shop photo"
- ``interactions.parquet``: user_id (str), item_id (str), timestamp (int64 s), kind, value (rating or
  price paid; null for views, clicks and carts)
- ``users.parquet``: user_id, age, country, signup (int64 s)
- ``synthetic.json``: the generator's settings
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from crossrec_core.persist import atomic_directory, atomic_write_text

__all__ = ["SynthConfig", "make_shop", "CATEGORIES", "KINDS"]

from crossrec_datasets.schema import KINDS

# category -> sub-category -> nouns. Several sub-categories per category so that "category" and
# "subcategory" are both meaningful filters and text signals.
CATEGORIES: dict[str, dict[str, tuple[str, ...]]] = {
    "Clothing": {"Tops": ("t-shirt", "shirt", "blouse", "hoodie"), "Outerwear": ("jacket", "coat", "parka"),
                 "Bottoms": ("jeans", "trousers", "shorts", "skirt")},
    "Shoes": {"Sneakers": ("sneakers", "trainers", "running shoes"), "Boots": ("boots", "ankle boots"),
              "Sandals": ("sandals", "flip-flops")},
    "Kitchen": {"Cookware": ("frying pan", "saucepan", "wok", "casserole"), "Tableware": ("mug", "plate", "bowl"),
                "Appliances": ("kettle", "toaster", "blender")},
    "Electronics": {"Audio": ("headphones", "speaker", "earbuds"), "Accessories": ("charger", "cable", "power bank"),
                    "Computing": ("keyboard", "mouse", "monitor stand")},
    "Home": {"Lighting": ("lamp", "ceiling light", "lantern"), "Textiles": ("cushion", "rug", "throw blanket"),
             "Decor": ("vase", "picture frame", "candle holder")},
    "Sports": {"Fitness": ("yoga mat", "dumbbell", "resistance band"), "Outdoor": ("tent", "sleeping bag", "backpack"),
               "Team sports": ("football", "basketball", "volleyball")},
    "Beauty": {"Skincare": ("moisturiser", "face serum", "cleanser"), "Hair": ("shampoo", "conditioner", "hair brush"),
               "Makeup": ("lipstick", "mascara", "eyeliner")},
    "Toys": {"Games": ("board game", "puzzle", "card game"), "Building": ("building blocks", "construction set"),
             "Plush": ("teddy bear", "plush rabbit", "plush dinosaur")},
    "Garden": {"Tools": ("shovel", "pruning shears", "rake"), "Planters": ("planter", "flower pot", "window box"),
               "Watering": ("watering can", "garden hose", "sprinkler")},
    "Office": {"Paper": ("notebook", "planner", "sketchbook"), "Writing": ("fountain pen", "pencil set", "marker set"),
               "Bags": ("laptop bag", "briefcase", "tote bag")},
}
COLOURS = {  # name -> RGB, used by the optional images so that colour is visible
    "black": (20, 20, 20), "white": (240, 240, 240), "red": (200, 30, 40), "blue": (30, 60, 190),
    "green": (40, 150, 60), "yellow": (230, 200, 40), "grey": (128, 128, 128), "pink": (235, 130, 170),
    "orange": (240, 130, 30), "purple": (120, 50, 160), "brown": (120, 75, 40), "beige": (220, 200, 160),
}
MATERIALS = ("cotton", "wool", "leather", "steel", "bamboo", "ceramic", "glass", "recycled plastic", "linen",
             "oak", "silicone", "canvas")
ADJECTIVES = ("classic", "lightweight", "durable", "compact", "premium", "everyday", "eco-friendly", "soft",
              "modern", "vintage", "waterproof", "handmade")
USES = ("daily use", "travel", "gifts", "the weekend", "small spaces", "families", "beginners", "professionals")
COUNTRIES = ("DE", "FR", "GB", "ES", "IT", "NL", "PL", "SE", "US", "CN")
_BRAND_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "to", "sil", "nor", "bel", "da", "zen", "ar", "qui", "ul")
_MAX_ITEMS = 50_000_000
_SHAPES = ("circle", "square", "triangle", "diamond", "stripes", "ring", "cross", "dots", "bars", "frame")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic shop (every figure is a rate or a shape, not a size).

    popularity_alpha: Zipf exponent of item popularity (1.0 ~ long tail of real shops).
    user_alpha: Zipf exponent of user activity. session_mean: mean events per session.
    in_category: share of sessions inside one of the user's favourite categories.
    kind_probs: probabilities of view, click, add_to_cart, purchase, rating per event.
    days: the time span of the log. chunk: interactions generated and written per chunk.
    image_size: side of the optional images, pixels.
    """

    popularity_alpha: float = 1.0
    user_alpha: float = 0.8
    session_mean: float = 5.0
    in_category: float = 0.8
    kind_probs: tuple[float, ...] = (0.62, 0.22, 0.08, 0.06, 0.02)
    days: int = 180
    start: int = 1_700_000_000
    chunk: int = 1_000_000
    image_size: int = 64

    def __post_init__(self) -> None:
        if len(self.kind_probs) != len(KINDS) or abs(sum(self.kind_probs) - 1.0) > 1e-6 or min(self.kind_probs) < 0:
            raise ValueError(f"kind_probs={self.kind_probs!r}: expected {len(KINDS)} probabilities for {KINDS} summing to 1")
        for name in ("popularity_alpha", "user_alpha"):
            if not 0.0 <= getattr(self, name) <= 3.0:
                raise ValueError(f"{name}={getattr(self, name)!r} is not in [0, 3]")
        if not 0.0 <= self.in_category <= 1.0:
            raise ValueError(f"in_category={self.in_category!r} is not in [0, 1]")
        if self.session_mean < 1 or self.days < 1 or self.chunk < 1000 or not 8 <= self.image_size <= 512:
            raise ValueError(f"session_mean={self.session_mean!r} (>= 1), days={self.days!r} (>= 1), chunk={self.chunk!r} "
                             f"(>= 1000), image_size={self.image_size!r} (8..512): out of range")


def _check_count(name: str, value: int, minimum: int, maximum: int = _MAX_ITEMS * 20) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
        raise ValueError(f"{name}={value!r}: expected an integer in [{minimum}, {maximum}]")
    return int(value)


def _zipf_weights(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) probabilities ~ rank^-alpha with the ranks shuffled over the ids."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** alpha
    rng.shuffle(w)
    return w / w.sum()


def _brands(rng: np.random.Generator, n: int) -> np.ndarray:
    parts = rng.choice(np.array(_BRAND_SYLLABLES), size=(n, 2))
    names = np.char.capitalize(np.char.add(parts[:, 0], parts[:, 1]))
    return np.unique(names)


@dataclass(frozen=True)
class _Catalogue:
    frame: pl.DataFrame        # written as catalogue.parquet
    category: np.ndarray       # (n_items,) int: top category of each item
    cdf: np.ndarray            # (n_items,) category index + cumulative popularity inside it (items sorted by category)
    order: np.ndarray          # (n_items,) item index of each cdf position
    colour: np.ndarray         # (n_items,) int
    shape: np.ndarray          # (n_items,) int


def _catalogue(n_items: int, config: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    cats = list(CATEGORIES)
    subs = [(c, s) for c in cats for s in CATEGORIES[c]]
    sub_cat = np.array([cats.index(c) for c, _ in subs])
    sub = rng.integers(0, len(subs), n_items)
    cat = sub_cat[sub]
    noun_lists = [CATEGORIES[c][s] for c, s in subs]
    noun = _nouns(sub, noun_lists, rng)
    # brands: a few per category, each with its own price level
    brand_pool = _brands(rng, 200)
    brand_idx = (cat * 7 + rng.integers(0, 7, n_items)) % len(brand_pool)
    brand = brand_pool[brand_idx]
    colour_names = np.array(list(COLOURS))
    colour = rng.integers(0, len(colour_names), n_items)
    material = np.array(MATERIALS)[rng.integers(0, len(MATERIALS), n_items)]
    adjective = np.array(ADJECTIVES)[rng.integers(0, len(ADJECTIVES), n_items)]
    use = np.array(USES)[rng.integers(0, len(USES), n_items)]
    base_price = np.exp(rng.normal(3.0, 0.6, len(cats)))
    brand_level = np.exp(rng.normal(0.0, 0.3, len(brand_pool)))
    price = np.round(np.floor(base_price[cat] * brand_level[brand_idx] * np.exp(rng.normal(0, 0.35, n_items))) + 0.99, 2)
    popularity = _zipf_weights(n_items, config.popularity_alpha, rng)
    ids = np.char.add("SKU", np.char.zfill(np.arange(n_items).astype(str), 7))
    frame = pl.DataFrame({
        "item_id": ids, "category": np.array(cats)[cat], "subcategory": np.array([s for _, s in subs])[sub],
        "brand": brand, "colour": colour_names[colour], "material": material, "_noun": noun,
        "_adj": adjective, "_use": use, "price": price, "in_stock": rng.random(n_items) < 0.93,
    })
    frame = frame.with_columns(
        pl.concat_str([pl.col("brand"), pl.col("colour"), pl.col("material"), pl.col("_noun")], separator=" ").alias("title"),
    ).with_columns(
        pl.concat_str([
            pl.col("title"), pl.lit(". A "), pl.col("_adj"), pl.lit(" "), pl.col("_noun"), pl.lit(" in "), pl.col("colour"),
            pl.lit(", made of "), pl.col("material"), pl.lit(" by "), pl.col("brand"), pl.lit(". "),
            pl.col("category"), pl.lit(" > "), pl.col("subcategory"), pl.lit(". Ideal for "), pl.col("_use"), pl.lit("."),
        ]).alias("text"),
    ).select("item_id", "title", "text", "category", "subcategory", "brand", "colour", "material", "price", "in_stock")
    order = np.argsort(cat, kind="stable")
    w = popularity[order]
    c = cat[order]
    # inside each category, cumulative popularity normalised to (0, 1], offset by the category index,
    # so one searchsorted over (category + u) samples an item of that category by popularity
    sums = np.bincount(c, weights=w, minlength=len(cats))
    cum = np.cumsum(w)
    starts = np.concatenate([[0.0], np.cumsum(sums)[:-1]])
    cdf = c + (cum - starts[c]) / np.where(sums[c] > 0, sums[c], 1.0)
    return _Catalogue(frame, cat, cdf, order, colour, sub % len(_SHAPES))


def _nouns(sub: np.ndarray, noun_lists: list[tuple[str, ...]], rng: np.random.Generator) -> np.ndarray:
    out = np.empty(len(sub), dtype=object)
    for s, nouns in enumerate(noun_lists):
        mask = sub == s
        out[mask] = np.array(nouns, dtype=object)[rng.integers(0, len(nouns), int(mask.sum()))]
    return out.astype(str)


def _users(n_users: int, config: SynthConfig, n_cats: int, rng: np.random.Generator) -> tuple[pl.DataFrame, np.ndarray]:
    ids = np.char.add("U", np.char.zfill(np.arange(n_users).astype(str), 7))
    frame = pl.DataFrame({
        "user_id": ids, "age": rng.integers(18, 76, n_users).astype(np.int64),
        "country": np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), n_users)],
        "signup": (config.start - rng.integers(0, 3 * 365 * 86400, n_users)).astype(np.int64),
    })
    favourites = rng.integers(0, n_cats, (n_users, 3))  # (U, 3): sessions pick one of these
    return frame, favourites


def _interaction_chunk(n: int, t0: float, t1: float, cat: _Catalogue, favourites: np.ndarray, user_p: np.ndarray,
                       item_ids: np.ndarray, user_ids: np.ndarray, prices: np.ndarray, config: SynthConfig,
                       rng: np.random.Generator) -> pl.DataFrame:
    """``n`` events in sessions starting in [t0, t1), sorted by time."""
    n_cats = len(CATEGORIES)
    lengths = rng.geometric(1.0 / config.session_mean, size=int(n / config.session_mean) + 16)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n) + 1]
    lengths[-1] -= lengths.sum() - n
    n_sessions = len(lengths)
    s_user = rng.choice(len(user_p), size=n_sessions, p=user_p)
    fav = favourites[s_user, rng.integers(0, favourites.shape[1], n_sessions)]
    s_cat = np.where(rng.random(n_sessions) < config.in_category, fav, rng.integers(0, n_cats, n_sessions))
    s_start = rng.uniform(t0, t1, n_sessions)
    session = np.repeat(np.arange(n_sessions), lengths)
    # items inside the session's category, by popularity
    u = rng.random(n)
    pos = np.searchsorted(cat.cdf, s_cat[session] + u, side="left").clip(0, len(cat.cdf) - 1)
    item = cat.order[pos]
    gaps = rng.exponential(45.0, n)  # seconds between events of a session
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    elapsed = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], lengths)
    ts = (s_start[session] + elapsed).astype(np.int64)
    kind = rng.choice(len(KINDS), size=n, p=np.asarray(config.kind_probs))
    value = np.full(n, np.nan)
    is_rating, is_purchase = kind == KINDS.index("rating"), kind == KINDS.index("purchase")
    value[is_rating] = rng.choice([1, 2, 3, 4, 5], size=int(is_rating.sum()), p=[0.05, 0.08, 0.2, 0.37, 0.3])
    value[is_purchase] = prices[item[is_purchase]]
    order = np.argsort(ts, kind="stable")
    return pl.DataFrame({
        "user_id": user_ids[s_user[session]][order], "item_id": item_ids[item][order], "timestamp": ts[order],
        "kind": np.array(KINDS)[kind][order], "value": value[order],
    }).with_columns(pl.col("value").fill_nan(None))


def _write_images(folder: Path, cat: _Catalogue, ids: list[str], size: int, rng: np.random.Generator) -> pl.DataFrame:
    """Catalogue images (shape = sub-category, fill = colour) and one shifted, noisy photo per item."""
    from PIL import Image, ImageDraw

    colours = list(COLOURS.values())
    (folder / "images").mkdir()
    (folder / "photos").mkdir()
    photo_rows = []
    for i, item_id in enumerate(ids):
        fill = colours[cat.colour[i]]
        for kind, shift, noise in (("images", 0, 0.0), ("photos", size // 8, 18.0)):
            bg = (250, 250, 250) if kind == "images" else tuple(int(v) for v in rng.integers(90, 200, 3))
            im = Image.new("RGB", (size, size), bg)
            d = ImageDraw.Draw(im)
            dx, dy = (rng.integers(-shift, shift + 1, 2) if shift else (0, 0))
            box = [size // 5 + dx, size // 5 + dy, 4 * size // 5 + dx, 4 * size // 5 + dy]
            shape = _SHAPES[cat.shape[i]]
            if shape == "circle":
                d.ellipse(box, fill=fill)
            elif shape == "square":
                d.rectangle(box, fill=fill)
            elif shape == "triangle":
                d.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=fill)
            elif shape == "diamond":
                cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
                d.polygon([(cx, box[1]), (box[2], cy), (cx, box[3]), (box[0], cy)], fill=fill)
            elif shape == "ring":
                d.ellipse(box, outline=fill, width=max(2, size // 10))
            elif shape == "cross":
                w = size // 10
                d.rectangle([box[0], (box[1] + box[3]) // 2 - w, box[2], (box[1] + box[3]) // 2 + w], fill=fill)
                d.rectangle([(box[0] + box[2]) // 2 - w, box[1], (box[0] + box[2]) // 2 + w, box[3]], fill=fill)
            elif shape == "dots":
                r = size // 12
                for cx in (box[0] + r, box[2] - r):
                    for cy in (box[1] + r, box[3] - r):
                        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            elif shape == "frame":
                d.rectangle(box, outline=fill, width=max(2, size // 10))
            else:  # stripes and bars: horizontal or vertical bands
                for k in range(box[1], box[3], max(4, size // 8)):
                    band = [box[0], k, box[2], k + max(2, size // 16)] if shape == "stripes" else [k, box[1], k + max(2, size // 16), box[3]]
                    d.rectangle(band, fill=fill)
            if noise:
                arr = np.asarray(im, dtype=np.float32) + rng.normal(0, noise, (size, size, 3))
                im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
            im.save(folder / kind / f"{item_id}.png")
        photo_rows.append(f"photos/{item_id}.png")
    return pl.DataFrame({"item_id": ids, "image": photo_rows})


def make_shop(out_dir: str | os.PathLike, *, n_items: int, n_users: int, n_interactions: int, seed: int = 0,
              images: bool = False, config: SynthConfig | None = None, progress: bool = False) -> Path:
    """Write a synthetic shop to ``out_dir`` (replaced as a whole, atomically) and return it.

    ``images``: also write a small PNG per item (``images/``) and one query photo per item
    (``photos/`` + ``photos.parquet``); meant for small catalogues (about 1 ms per image).
    Interactions are generated ``config.chunk`` at a time and streamed into one Parquet file.
    """
    n_items = _check_count("n_items", n_items, 1, _MAX_ITEMS)
    n_users = _check_count("n_users", n_users, 1, _MAX_ITEMS)
    n_interactions = _check_count("n_interactions", n_interactions, 0)
    seed = _check_count("seed", seed, 0, 2**32 - 1)
    config = config or SynthConfig()
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        cat = _catalogue(n_items, config, rng)
        frame = cat.frame
        item_ids = frame["item_id"].to_numpy()
        if images:
            photos = _write_images(tmp, cat, item_ids.tolist(), config.image_size, rng)
            photos.write_parquet(tmp / "photos.parquet")
            frame = frame.with_columns(pl.concat_str([pl.lit("images/"), pl.col("item_id"), pl.lit(".png")]).alias("image"))
        else:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("image"))
        frame.write_parquet(tmp / "catalogue.parquet")
        users, favourites = _users(n_users, config, len(CATEGORIES), rng)
        users.write_parquet(tmp / "users.parquet")
        user_ids = users["user_id"].to_numpy()
        user_p = _zipf_weights(n_users, config.user_alpha, rng)
        prices = frame["price"].to_numpy()
        del frame
        n_chunks = max(1, -(-n_interactions // config.chunk))
        span = config.days * 86400.0
        parts = tmp / ".parts"
        parts.mkdir()
        chunks = range(n_chunks)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="interactions", unit="chunk")
        for k in chunks:
            n = min(config.chunk, n_interactions - k * config.chunk)
            t0 = config.start + span * k / n_chunks
            chunk = _interaction_chunk(max(n, 0), t0, t0 + span / n_chunks, cat, favourites, user_p, item_ids,
                                       user_ids, prices, config, rng) if n > 0 else _empty_interactions()
            chunk.write_parquet(parts / f"{k:05d}.parquet")
        # chunks cover consecutive time windows: concatenated in order, the file is sorted by time
        pl.scan_parquet(sorted(parts.glob("*.parquet"))).sink_parquet(tmp / "interactions.parquet")
        shutil.rmtree(parts)
        atomic_write_text(tmp / "synthetic.json", json.dumps({
            "generator": "crossrec_datasets.synthetic", "n_items": n_items, "n_users": n_users,
            "n_interactions": n_interactions, "seed": seed, "images": images, "config": asdict(config),
        }, indent=2))
    return out


def _empty_interactions() -> pl.DataFrame:
    return pl.DataFrame(schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64, "kind": pl.Utf8,
                                "value": pl.Float64})
