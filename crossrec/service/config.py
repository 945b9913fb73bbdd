"""``ServiceConfig``: what one service process loads and how it guards its routes.

Worker processes (``uvicorn --workers N``) each build the app from the environment: the parent
serialises the config into ``CROSSREC_SERVICE_CONFIG`` (JSON) and every worker reads it back, so
all workers load the same models and read the same live profile store.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from crossrec_core.errors import CrossrecError

__all__ = ["ServiceConfig", "ENV_CONFIG", "ENV_API_KEY", "ENV_API_KEY_FILE", "CATALOGUES"]

ENV_CONFIG = "CROSSREC_SERVICE_CONFIG"
ENV_API_KEY = "CROSSREC_API_KEY"
ENV_API_KEY_FILE = "CROSSREC_API_KEY_FILE"
CATALOGUES = ("grocery", "ml100k")


@dataclass(frozen=True)
class ServiceConfig:
    """``catalogues``: searchable catalogues by name; ``ranking_catalogue``: the one the ranking
    engine recommends from (recommendations and creatives use it). ``profile_store``: the live
    SQLite store the stream consumers write (None: the engine's saved snapshot, in memory).
    ``bootstrap``: Kafka for event ingestion and creative requests (None: write routes answer 503).
    The API key for writes comes from ``$CROSSREC_API_KEY`` or the file named by
    ``api_key_file``/``$CROSSREC_API_KEY_FILE``; without one, writes are refused."""

    catalogues: tuple[str, ...] = CATALOGUES
    ranking_catalogue: str = "ml100k"
    data_dir: str | None = None
    ranker_dir: str | None = None  # default: the engine `crossrec rank train` saved
    profile_store: str | None = None
    bootstrap: str | None = None
    topic_prefix: str = "crossrec"
    api_key_file: str | None = None
    max_upload_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # larger images are refused before they are decoded
    max_batch: int = 500  # events per POST
    max_k: int = 100
    publish_timeout_s: float = 5.0  # a publish not acknowledged by the broker within this is a 503
    heavy_threads: int = 4  # concurrent embedding/ranking calls per process
    torch_threads: int = 1
    # Recommendations kept per process, per (user, k, filters), while the user's profile is the same
    # object in the live store (it is rebuilt exactly when the user's events or demographics change):
    # a user asked again with nothing new costs no ranking. 0: off.
    recommend_cache: int = 4096
    # Text-search answers kept per process, per (catalogue, query, k, mode, filters): popular queries
    # repeat, and a loaded searcher does not change while serving. 0: off.
    search_cache: int = 4096
    creatives_dir: str | None = None  # finished creatives: <dir>/<user>/<item>/{poster.png,copy.json,...}
    creative_cache: str | None = None  # the creative worker's cache index (SQLite): creatives served from it
    assets_dir: str | None = None  # ... and its asset store (default: $CROSSREC_HOME/cache/assets)
    bandit_dir: str | None = None  # a generation.bandit state: picks the poster variant shown
    bandit_refresh_s: float = 5.0  # reopen the bandit (written by the feedback consumer) at most this often
    reports_dir: str | None = None  # evaluation charts (PNG) shown on the page
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are named

    def __post_init__(self) -> None:
        unknown = [c for c in self.catalogues if c not in CATALOGUES and not Path(c).is_dir()]
        if not self.catalogues or unknown:
            raise CrossrecError(f"catalogues={self.catalogues!r}: allowed {CATALOGUES} or catalogue folders")
        if self.ranking_catalogue not in self.catalogues:
            raise CrossrecError(f"ranking_catalogue={self.ranking_catalogue!r} is not one of catalogues={self.catalogues}")
        for name in ("max_upload_bytes", "max_image_pixels", "max_batch", "max_k", "heavy_threads", "torch_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CrossrecError(f"{name}={value!r}: must be a positive integer")
        for name in ("recommend_cache", "search_cache"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CrossrecError(f"{name}={value!r}: must be an integer >= 0 (0: off)")
        if not self.bandit_refresh_s > 0:
            raise CrossrecError(f"bandit_refresh_s={self.bandit_refresh_s!r}: must be > 0 seconds")
        if self.bandit_dir and not self.creative_cache:
            raise CrossrecError("bandit_dir is set without creative_cache: the bandit picks among the cached creatives' variants")
        if not self.publish_timeout_s > 0:
            raise CrossrecError(f"publish_timeout_s={self.publish_timeout_s!r}: must be > 0 seconds")

    def api_key(self) -> str | None:
        """The key write routes require, or None (writes refused)."""
        key = os.environ.get(ENV_API_KEY)
        path = self.api_key_file or os.environ.get(ENV_API_KEY_FILE)
        if not key and path:
            try:
                key = Path(path).read_text("utf-8").strip()
            except OSError as exc:
                raise CrossrecError(f"api_key_file={path!r}: cannot read it ({exc.strerror})") from None
        return key or None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "ServiceConfig":
        raw = os.environ.get(ENV_CONFIG)
        if not raw:
            return cls()
        data = json.loads(raw)
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})
